//! Notifications end to end (issue #12): the real collector with rules and policies,
//! devices reporting over real mTLS with certificates the collector's CA issued, a
//! real SMTP server process (Debian's python3-aiosmtpd, installed by
//! tests/run-all.sh) writing a maildir, a real HTTP receiver for webhooks, and the
//! SSE feed and ack links over real HTTP on loopback (the feed with an API token:
//! issue 15 made it need a login from every address).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_tests::{CollectorProc, Feeder, Site, bin, free_port, wait_for};
use tokio::process::{Child, Command};

/// The Python with Debian's aiosmtpd (a pyenv shim earlier on PATH may lack it).
const PYTHON: &str = "/usr/bin/python3";

/// A real SMTP server: `python3 -m aiosmtpd` with the Mailbox handler (a maildir).
struct Smtp {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Smtp {
    fn new(root: &Path) -> Smtp {
        Smtp {
            child: None,
            port: free_port(),
            dir: root.join("maildir"),
        }
    }

    async fn start(&mut self) {
        let out = std::process::Command::new(PYTHON)
            .args(["-c", "import aiosmtpd"])
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "python3-aiosmtpd is missing: run tests/run-all.sh (it installs it) or `apt-get install python3-aiosmtpd`"
        );
        let child = Command::new(PYTHON)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&self.dir)
            .kill_on_drop(true)
            .spawn()
            .expect("start aiosmtpd");
        self.child = Some(child);
        let port = self.port;
        wait_for(
            Duration::from_secs(10),
            "the SMTP server to listen",
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            },
        )
        .await
        .unwrap();
    }

    async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }

    /// Every mail received so far, oldest first.
    fn mails(&self) -> Vec<Mail> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(rd) = std::fs::read_dir(self.dir.join(sub)) else {
                continue;
            };
            for e in rd.flatten() {
                if let Ok(raw) = std::fs::read_to_string(e.path()) {
                    out.push((
                        e.metadata().and_then(|m| m.modified()).ok(),
                        Mail::parse(&raw),
                    ));
                }
            }
        }
        out.sort_by_key(|(t, _)| *t);
        out.into_iter().map(|(_, m)| m).collect()
    }

    fn mails_to(&self, to: &str) -> Vec<Mail> {
        self.mails()
            .into_iter()
            .filter(|m| m.to.contains(to))
            .collect()
    }
}

#[derive(Debug, Clone)]
struct Mail {
    to: String,
    subject: String,
    message_id: String,
    in_reply_to: String,
    references: String,
    /// The whole message, quoted-printable decoded.
    text: String,
}

impl Mail {
    fn parse(raw: &str) -> Mail {
        let raw = raw.replace("\r\n", "\n");
        let (head, _) = raw.split_once("\n\n").unwrap_or((&raw, ""));
        let unfolded = head.replace("\n ", " ").replace("\n\t", " ");
        let h = |name: &str| {
            unfolded
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                })
                .unwrap_or_default()
        };
        Mail {
            to: h("To"),
            subject: h("Subject"),
            message_id: h("Message-ID"),
            in_reply_to: h("In-Reply-To"),
            references: h("References"),
            text: qp_decode(&raw),
        }
    }

    /// The acknowledge link in the text part.
    fn ack_link(&self) -> Option<String> {
        let at = self.text.find("Acknowledge (stops further escalation): ")?;
        let rest = &self.text[at + "Acknowledge (stops further escalation): ".len()..];
        Some(rest.split_whitespace().next()?.to_owned())
    }
}

fn qp_decode(s: &str) -> String {
    let s = s.replace("=\n", "");
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

const RULES: &str = r#"
[[rule]]
name = "cpu-high"
kind = "threshold"
metric = "cpu.percent"
# Test clients send this synthetic name; the agent's catalogue does not have it.
custom_metric = true
critical = { above = 90 }
"#;

fn setup_files(site: &Site, policies: &str) {
    let root = site.dir.path();
    std::fs::create_dir_all(root.join("rules")).unwrap();
    std::fs::write(root.join("rules/r.toml"), RULES).unwrap();
    std::fs::create_dir_all(root.join("policies")).unwrap();
    std::fs::write(root.join("policies/p.toml"), policies).unwrap();
}

fn collector_toml(smtp_port: u16, http_port: u16, group_wait_secs: u32) -> String {
    format!(
        "[alerts]\nrules_dir = \"rules\"\ntick_secs = 1\n\
         [notify]\npolicies_dir = \"policies\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {smtp_port}\n\
         smtp_tls = \"none\"\nfrom = \"Tandem <tandem@msp.example>\"\nmsp_name = \"Example MSP\"\n\
         group_wait_secs = {group_wait_secs}\nretry_base_secs = 1\nretry_max_secs = 2\n\
         [http]\nlisten = \"127.0.0.1:{http_port}\"\n"
    )
}

async fn wait_mails(
    smtp: &Smtp,
    collector: &CollectorProc,
    to: &str,
    n: usize,
    within: Duration,
) -> Vec<Mail> {
    let r = wait_for(within, &format!("{n} mail(s) to {to}"), || {
        let k = smtp.mails_to(to).len();
        async move { k >= n }
    })
    .await;
    if let Err(e) = r {
        panic!(
            "{e}; mails: {:#?}\ncollector log:\n{}",
            smtp.mails()
                .iter()
                .map(|m| (&m.to, &m.subject))
                .collect::<Vec<_>>(),
            collector.log()
        );
    }
    smtp.mails_to(to)
}

/// Collects the feed's events in the background (the library's own client).
fn follow_feed(
    http: SocketAddr,
    tenant: Option<&'static str>,
    token: &str,
) -> Arc<Mutex<Vec<(i64, String, serde_json::Value)>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    let access = tandem_collector::http::tail::Access::token(token);
    tokio::spawn(async move {
        let _ = tandem_collector::http::tail::follow(
            &format!("http://{http}"),
            tenant,
            None,
            &access,
            |e| {
                ev.lock()
                    .unwrap()
                    .push((e.id, e.kind.clone(), e.data.clone()));
                true
            },
        )
        .await;
    });
    events
}

const FLOW_POLICY: &str = r#"
[[tenant]]
name = "acme"
zone = "Europe/Berlin"
contacts = ["it@acme.example"]

[[tenant]]
name = "globex"
zone = "America/New_York"
contacts = ["it@globex.example"]

[[policy]]
name = "msp"
default = true
  [[policy.step]]
  after_secs = 0
  targets = ["feed", "email:noc@msp.example"]
  [[policy.step]]
  after_secs = 3
  targets = ["contacts"]
  [[policy.step]]
  after_secs = 9
  targets = ["email:boss@msp.example"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_mail_ack_link_feed_and_threaded_resolution() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let mut smtp = Smtp::new(site.dir.path());
    smtp.start().await;
    setup_files(&site, FLOW_POLICY);
    let http_port = free_port();
    let collector = site
        .start_collector(&collector_toml(smtp.port, http_port, 1))
        .await
        .unwrap();
    let http: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    wait_for(
        Duration::from_secs(10),
        "the HTTP listener",
        || async move { tokio::net::TcpStream::connect(http).await.is_ok() },
    )
    .await
    .unwrap();
    let token = site.cli_ok(&["token", "create-api", "tests"]).await;
    let token = token.trim();
    let feed = follow_feed(http, None, token);
    let acme_feed = follow_feed(http, Some("acme"), token);
    // `alerts tail` as an operator runs it on the collector host (it mints its own
    // token in the data dir).
    let mut tail = Command::new(bin("tandem-collector"))
        .args([
            "alerts",
            "tail",
            "--url",
            &format!("http://{http}"),
            "--tenant",
            "acme",
        ])
        .arg("--data-dir")
        .arg(site.data_dir())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // let the followers connect (their start is "now")

    let acme = Feeder::start(
        collector.addr,
        &site.issue("acme", "pc-acme"),
        Duration::from_millis(300),
        &[("cpu.percent", "", 99.0)],
    )
    .await
    .unwrap();
    let globex = Feeder::start(
        collector.addr,
        &site.issue("globex", "pc-globex"),
        Duration::from_millis(300),
        &[("cpu.percent", "", 99.0)],
    )
    .await
    .unwrap();

    // The opening is on the feed at once (the engine commits it with the transition).
    let f = feed.clone();
    wait_for(Duration::from_secs(10), "two openings on the feed", || {
        let n = f.lock().unwrap().iter().filter(|e| e.1 == "opened").count();
        async move { n >= 2 }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", collector.log()));
    let opened_at: i64 = site.count("SELECT max(opened_ms) FROM incidents");
    let seen_ms = tandem_tests::now_ms();
    assert!(
        seen_ms - opened_at < 3000,
        "on the feed {} ms after the transition",
        seen_ms - opened_at
    );
    assert!(
        acme_feed
            .lock()
            .unwrap()
            .iter()
            .all(|e| e.2["incident"]["tenant"] == "acme"),
        "the tenant filter: {:?}",
        acme_feed.lock().unwrap()
    );

    // Step 0 to the NOC at once, step 1 to each tenant's contact after 3 s.
    let noc = wait_mails(
        &smtp,
        &collector,
        "noc@msp.example",
        2,
        Duration::from_secs(10),
    )
    .await;
    assert!(
        noc.iter()
            .any(|m| m.subject.contains("CRITICAL: cpu-high on test-host (acme)")),
        "{noc:#?}"
    );
    let it = wait_mails(
        &smtp,
        &collector,
        "it@acme.example",
        1,
        Duration::from_secs(15),
    )
    .await;
    let first = &it[0];
    assert_eq!(
        first.subject,
        "[Tandem] CRITICAL: cpu-high on test-host (acme)"
    );
    assert!(
        first.message_id.starts_with("<tandem.") && first.message_id.ends_with("@tandem.invalid>"),
        "{first:?}"
    );
    for want in [
        "Which machine:   test-host (site -, acme)",
        "Nobody at Example MSP has acknowledged it yet",
        "Do you need to act? Yes",
    ] {
        assert!(
            first.text.contains(want),
            "{want:?} not in:\n{}",
            first.text
        );
    }
    assert!(
        first.text.contains(" CET") || first.text.contains(" CEST"),
        "since, in acme's zone:\n{}",
        first.text
    );
    let gx = wait_mails(
        &smtp,
        &collector,
        "it@globex.example",
        1,
        Duration::from_secs(10),
    )
    .await;
    assert!(
        gx.iter()
            .all(|m| m.text.contains("(site -, globex)") && !m.text.contains("acme")),
        "a tenant's contact gets only its own alerts: {gx:#?}"
    );
    assert!(
        smtp.mails_to("it@acme.example")
            .iter()
            .all(|m| !m.text.contains("globex"))
    );

    // Acknowledge through the link: GET shows a button (prefetchers do nothing), POST acks.
    let link = first
        .ack_link()
        .unwrap_or_else(|| panic!("no ack link in\n{}", first.text));
    let path = link
        .strip_prefix(&format!("http://{http}"))
        .expect("link on the listener")
        .to_owned();
    let (status, body) = http_request(http, "GET", &path, "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<form method=post>"), "{body}");
    assert_eq!(
        site.count("SELECT count(*) FROM incidents WHERE state = 'acked'"),
        0,
        "GET does not ack"
    );
    let (status, body) = http_request(http, "POST", &path, "note=looking+at+it").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Acknowledged"), "{body}");
    let (status, _) = http_request(http, "POST", &format!("{path}x"), "").await;
    assert_eq!(status, 403, "a tampered link is refused");
    let (by, note): (String, String) = site
        .db()
        .query_row(
            "SELECT acked_by, ack_note FROM incidents WHERE tenant = 'acme'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (by.as_str(), note.as_str()),
        ("it@acme.example (mail link)", "looking at it")
    );

    // Step 2 (9 s) goes out for globex, never for the acknowledged acme incident.
    let boss = wait_mails(
        &smtp,
        &collector,
        "boss@msp.example",
        1,
        Duration::from_secs(15),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let boss_now = smtp.mails_to("boss@msp.example");
    assert_eq!(boss_now.len(), 1, "{boss:#?}");
    assert!(boss_now[0].subject.contains("(globex)"), "{boss_now:#?}");

    // Recovery: the resolved mail goes to those told (NOC, acme IT), threads under
    // the first mail, and says how long it lasted and who acknowledged.
    acme.set(&[("cpu.percent", "", 5.0)]);
    let it = wait_mails(
        &smtp,
        &collector,
        "it@acme.example",
        2,
        Duration::from_secs(15),
    )
    .await;
    let resolved = &it[1];
    assert!(
        resolved
            .subject
            .starts_with("Re: [Tandem] RESOLVED CRITICAL: cpu-high on test-host (acme)"),
        "{resolved:?}"
    );
    assert_eq!(resolved.in_reply_to, first.message_id);
    assert!(resolved.references.contains(&first.message_id));
    assert!(
        resolved.text.contains("lasted")
            && resolved
                .text
                .contains("acknowledged by it@acme.example (mail link)"),
        "{}",
        resolved.text
    );
    assert!(
        smtp.mails_to("boss@msp.example")
            .iter()
            .all(|m| !m.subject.contains("(acme)")),
        "boss was never told of acme: no resolved mail"
    );

    let kinds: Vec<String> = acme_feed
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.1.clone())
        .collect();
    assert_eq!(
        kinds,
        vec!["opened", "escalated", "acked", "resolved"],
        "acme's feed"
    );
    let acked = acme_feed
        .lock()
        .unwrap()
        .iter()
        .find(|e| e.1 == "acked")
        .map(|e| e.2.clone())
        .unwrap();
    assert_eq!(acked["incident"]["ack_note"], "looking at it");

    // The feed resumes after Last-Event-ID with nothing lost or repeated.
    let all: Vec<i64> = feed.lock().unwrap().iter().map(|e| e.0).collect();
    let resumed = collect_from(http, all[1], token).await;
    assert_eq!(resumed, all[2..].to_vec(), "resume after event {}", all[1]);

    // `alerts tail` printed the acme events as one line each.
    let mut out = tail.stdout.take().unwrap();
    let _ = tail.start_kill();
    let mut text = String::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::io::AsyncReadExt::read_to_string(&mut out, &mut text),
    )
    .await;
    assert!(
        text.lines()
            .any(|l| l.contains("opened") && l.contains("cpu-high on test-host (acme)")),
        "tail printed:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("acked") && l.contains("looking at it")),
        "tail printed:\n{text}"
    );

    // One info line per opening and resolution.
    let log = collector.log();
    assert_eq!(log.matches("incident opened").count(), 2, "{log}");
    assert_eq!(log.matches("incident resolved").count(), 1, "{log}");
    // The delivery log shows every attempt.
    let (ok, out, _) = site.cli(&["notify", "log"]).await;
    assert!(
        ok && out.contains("step1.0") && out.contains("it@acme.example") && out.contains("sent"),
        "{out}"
    );
    drop((acme, globex));
    assert!(collector.terminate().await);
    smtp.stop().await;
}

/// Reads the feed from after `after` (Last-Event-ID) until it goes quiet.
async fn collect_from(http: SocketAddr, after: i64, token: &str) -> Vec<i64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(http).await.unwrap();
    s.write_all(
        format!("GET /api/v1/feed HTTP/1.1\r\nHost: {http}\r\nAuthorization: Bearer {token}\r\nLast-Event-ID: {after}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(1500), s.read(&mut chunk)).await
    {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    text.lines()
        .filter_map(|l| {
            l.strip_prefix("id: ")
                .or(l.strip_prefix("id:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .collect()
}

/// One HTTP/1.1 request with a form body; returns (status, body).
async fn http_request(addr: SocketAddr, method: &str, path: &str, form: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

const RESTART_POLICY: &str = r#"
[[policy]]
name = "msp"
default = true
  [[policy.step]]
  after_secs = 0
  targets = ["email:noc@msp.example"]
  [[policy.step]]
  after_secs = 8
  targets = ["email:oncall@msp.example"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_down_delays_but_never_loses_or_doubles_and_a_killed_collector_sends_its_pending_step_once()
 {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let mut smtp = Smtp::new(site.dir.path());
    setup_files(&site, RESTART_POLICY);
    let http_port = free_port();
    let toml = collector_toml(smtp.port, http_port, 1);
    let collector = site.start_collector(&toml).await.unwrap();
    let feeder = Feeder::start(
        collector.addr,
        &site.issue("acme", "pc-1"),
        Duration::from_millis(300),
        &[("cpu.percent", "", 99.0)],
    )
    .await
    .unwrap();
    // The SMTP server is down: step 0 fails and is retried.
    wait_for(Duration::from_secs(15), "two failed attempts", || {
        let n = site.count("SELECT count(*) FROM notify_log WHERE result = 'retry'");
        async move { n >= 2 }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", collector.log()));
    smtp.start().await;
    let noc = wait_mails(
        &smtp,
        &collector,
        "noc@msp.example",
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(noc.len(), 1);
    wait_for(Duration::from_secs(10), "step 0 recorded as sent", || {
        let n = site.count("SELECT count(*) FROM notify_outbox WHERE status = 'sent'");
        async move { n >= 1 }
    })
    .await
    .unwrap();
    let (ok, out, _) = site.cli(&["notify", "log", "--incident", "1"]).await;
    assert!(ok && out.contains("retry") && out.contains("sent"), "{out}");

    // Killed with step 1 (8 s after opening) pending: after the restart it goes out
    // on time, once; step 0 is not sent again.
    let opened: i64 = site.count("SELECT opened_ms FROM incidents");
    assert!(
        tandem_tests::now_ms() - opened < 7000,
        "still before step 1"
    );
    drop(feeder);
    collector.kill9().await;
    let collector = site.start_collector("").await.unwrap();
    let oncall = wait_mails(
        &smtp,
        &collector,
        "oncall@msp.example",
        1,
        Duration::from_secs(20),
    )
    .await;
    // The server's accept comes before the dispatcher records it.
    wait_for(Duration::from_secs(10), "the delivery recorded as sent", || {
        let n = site.count(
            "SELECT count(*) FROM notify_outbox WHERE recipient = 'oncall@msp.example' AND sent_ms IS NOT NULL",
        );
        async move { n == 1 }
    })
    .await
    .unwrap();
    let sent_ms: i64 =
        site.count("SELECT sent_ms FROM notify_outbox WHERE recipient = 'oncall@msp.example'");
    assert!(sent_ms >= opened + 8000, "not before its delay");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(smtp.mails_to("oncall@msp.example").len(), 1, "{oncall:#?}");
    assert_eq!(
        smtp.mails_to("noc@msp.example").len(),
        1,
        "step 0 not repeated"
    );
    assert!(collector.terminate().await);
    smtp.stop().await;
}

const STORM_POLICY: &str = r#"
[[policy]]
name = "msp"
default = true
  [[policy.step]]
  after_secs = 0
  targets = ["email:noc@msp.example"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_50_incidents_of_a_tenant_is_one_grouped_mail() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let mut smtp = Smtp::new(site.dir.path());
    smtp.start().await;
    setup_files(&site, STORM_POLICY);
    let collector = site
        .start_collector(&collector_toml(smtp.port, free_port(), 4))
        .await
        .unwrap();
    let names: Vec<String> = (0..50).map(|i| format!("core{i}")).collect();
    let values: Vec<(&str, &str, f64)> = names
        .iter()
        .map(|n| ("cpu.percent", n.as_str(), 99.0))
        .collect();
    let feeder = Feeder::start(
        collector.addr,
        &site.issue("acme", "big-1"),
        Duration::from_millis(300),
        &values,
    )
    .await
    .unwrap();
    wait_for(Duration::from_secs(10), "50 incidents", || {
        let n = site.count("SELECT count(*) FROM incidents");
        async move { n >= 50 }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", collector.log()));
    let mails = wait_mails(
        &smtp,
        &collector,
        "noc@msp.example",
        1,
        Duration::from_secs(15),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mails_now = smtp.mails_to("noc@msp.example");
    assert_eq!(
        mails_now.len(),
        1,
        "{:#?}",
        mails.iter().map(|m| &m.subject).collect::<Vec<_>>()
    );
    assert_eq!(mails_now[0].subject, "[Tandem] 50 alerts for acme");
    assert_eq!(mails_now[0].text.matches("Which machine:").count(), 50);
    drop(feeder);
    assert!(collector.terminate().await);
    smtp.stop().await;
}

/// A receiver answering 500 to the first call, then 200 (the `flaky` hook), and
/// 410 always (the `gone` hook); records every call.
/// (hook, status answered, headers, body) of one call.
type Call = (String, u16, axum::http::HeaderMap, String);

#[derive(Clone, Default)]
struct Receiver {
    calls: Arc<Mutex<Vec<Call>>>,
}

async fn start_receiver() -> (SocketAddr, Receiver) {
    use axum::routing::post;
    let r = Receiver::default();
    let (c1, c2) = (r.clone(), r.clone());
    let app = axum::Router::new()
        .route(
            "/flaky",
            post(move |h: axum::http::HeaderMap, body: String| async move {
                let mut calls = c1.calls.lock().unwrap();
                let status = if calls.iter().any(|c| c.0 == "flaky") {
                    200
                } else {
                    500
                };
                calls.push(("flaky".into(), status, h, body));
                axum::http::StatusCode::from_u16(status).unwrap()
            }),
        )
        .route(
            "/gone",
            post(move |h: axum::http::HeaderMap, body: String| async move {
                c2.calls.lock().unwrap().push(("gone".into(), 410, h, body));
                axum::http::StatusCode::GONE
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (addr, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_answering_500_then_200_gets_one_signed_delivery_and_a_4xx_is_dead_lettered() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let (addr, recv) = start_receiver().await;
    std::fs::write(site.dir.path().join("hook.secret"), "s3cret\n").unwrap();
    let policy = format!(
        r#"
[[webhook]]
name = "flaky"
url = "http://{addr}/flaky"
secret_file = "../hook.secret"

[[webhook]]
name = "gone"
url = "http://{addr}/gone"
format = "slack"

[[policy]]
name = "msp"
default = true
  [[policy.step]]
  after_secs = 0
  targets = ["webhook:flaky", "webhook:gone"]
"#
    );
    setup_files(&site, &policy);
    // `policies check` says what is wrong, where.
    std::fs::write(
        site.dir.path().join("bad.toml"),
        "[[policy]]\nname = \"x\"\n  [[policy.step]]\n  targets = [\"pager:1\"]\n",
    )
    .unwrap();
    let out = Command::new(bin("tandem-collector"))
        .args(["policies", "check"])
        .arg(site.dir.path().join("bad.toml"))
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("bad.toml:4:14: target \"pager:1\""),
        "{err}"
    );

    let collector = site
        .start_collector(&collector_toml(free_port(), free_port(), 0))
        .await
        .unwrap();
    let feeder = Feeder::start(
        collector.addr,
        &site.issue("acme", "pc-1"),
        Duration::from_millis(300),
        &[("cpu.percent", "", 99.0)],
    )
    .await
    .unwrap();
    wait_for(
        Duration::from_secs(20),
        "the flaky hook accepted, the gone hook dead",
        || {
            let n =
                site.count("SELECT count(*) FROM notify_outbox WHERE status IN ('sent', 'dead')");
            async move { n >= 2 }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", collector.log()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls = recv.calls.lock().unwrap().clone();
    let flaky: Vec<_> = calls.iter().filter(|c| c.0 == "flaky").collect();
    assert_eq!(
        flaky.iter().map(|c| c.1).collect::<Vec<_>>(),
        vec![500, 200],
        "exactly one accepted delivery"
    );
    let (_, _, h, body) = flaky[1];
    let ts = h["x-tandem-timestamp"].to_str().unwrap();
    let sig = h["x-tandem-signature"].to_str().unwrap();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"s3cret");
    let tag = ring::hmac::sign(&key, format!("{ts}.{body}").as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        sig,
        format!("v1={hex}"),
        "the signature is HMAC-SHA256 over timestamp.body"
    );
    assert_eq!(
        h["x-tandem-idempotency-key"], flaky[0].2["x-tandem-idempotency-key"],
        "a retry keeps its key"
    );
    let doc: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(doc["schema"], "tandem.notify/v1");
    assert_eq!(doc["incident"]["rule"], "cpu-high");
    assert_eq!(doc["incident"]["device_id"], "pc-1");
    let gone: Vec<_> = calls.iter().filter(|c| c.0 == "gone").collect();
    assert_eq!(gone.len(), 1, "a 4xx is not retried");
    assert!(
        gone[0].3.contains("\"text\""),
        "slack format: {}",
        gone[0].3
    );
    let (ok, out, _) = site.cli(&["notify", "log"]).await;
    assert!(ok && out.contains("dead") && out.contains("410"), "{out}");
    drop(feeder);
    assert!(collector.terminate().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_test_sends_to_every_target_and_a_bad_policy_edit_keeps_the_running_set() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let mut smtp = Smtp::new(site.dir.path());
    smtp.start().await;
    setup_files(&site, FLOW_POLICY);
    let collector = site
        .start_collector(&collector_toml(smtp.port, free_port(), 0))
        .await
        .unwrap();
    let out = Command::new(bin("tandem-collector"))
        .args(["notify", "test", "--tenant", "acme", "--config"])
        .arg(site.dir.path().join("collector.toml"))
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for to in ["noc@msp.example", "it@acme.example", "boss@msp.example"] {
        assert!(text.contains(&format!("email {to}: sent (250")), "{text}");
        let m = wait_mails(&smtp, &collector, to, 1, Duration::from_secs(5)).await;
        assert_eq!(m[0].subject, "[Tandem] Test message for acme");
    }
    assert!(
        smtp.mails_to("it@globex.example").is_empty(),
        "globex's contact is not in acme's policy"
    );
    // A bad edit is reported with file:line:column and the running set stays.
    std::fs::write(
        site.dir.path().join("policies/p.toml"),
        FLOW_POLICY.replace("America/New_York", "Mars/Olympus"),
    )
    .unwrap();
    let r = wait_for(Duration::from_secs(10), "the bad edit reported", || {
        let l = collector.log();
        async move { l.contains("escalation policies not reloaded") }
    })
    .await;
    r.unwrap_or_else(|e| panic!("{e}\n{}", collector.log()));
    let log = collector.log();
    assert!(
        log.contains("p.toml:9:8: \"Mars/Olympus\" is not an IANA time zone"),
        "{log}"
    );
    assert!(collector.terminate().await);
    smtp.stop().await;
}

/// `demo` shows the whole path: the real agent samples this machine, the demo rule
/// fires within a minute, its mail is written as an .eml file within two minutes,
/// and the feed's URL and the mail folder are printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_fires_an_alert_and_writes_its_mail_into_the_printed_folder() {
    use tokio::io::AsyncBufReadExt;
    crate::crypto();
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let mut demo = Command::new(bin("tandem-collector"))
        .args(["demo", "--listen", "127.0.0.1:0", "--dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("demo.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(demo.stdout.take().unwrap()).lines();
    let (mut feed, mut folder) = (None, None);
    while feed.is_none() || folder.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("demo prints its banner")
            .unwrap()
            .expect("demo exited");
        if let Some(rest) = line.trim().strip_prefix("live feed") {
            feed = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(rest) = line.trim().strip_prefix("mail folder") {
            folder = Some(PathBuf::from(rest.trim()));
        }
    }
    let (feed, folder) = (feed.unwrap(), folder.unwrap());
    assert!(
        feed.starts_with("http://127.0.0.1:") && feed.ends_with("/api/v1/feed"),
        "{feed}"
    );
    assert_eq!(folder, dir.path().join("mail"));
    let base = feed.trim_end_matches("/api/v1/feed").to_owned();
    // The feed needs a token (issue 15): one from the demo's data dir.
    let out = Command::new(bin("tandem-collector"))
        .args(["token", "create-api", "demo-test", "--data-dir"])
        .arg(dir.path().join("collector"))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let access =
        tandem_collector::http::tail::Access::token(String::from_utf8_lossy(&out.stdout).trim());
    let opened = Arc::new(Mutex::new(None));
    let o2 = opened.clone();
    let follower = tokio::spawn(async move {
        let _ = tandem_collector::http::tail::follow(&base, None, None, &access, |e| {
            if e.kind == "opened" {
                *o2.lock().unwrap() = Some(std::time::Instant::now());
                return false;
            }
            true
        })
        .await;
    });
    let f = folder.clone();
    let r = wait_for(
        Duration::from_secs(120),
        "an .eml file of the demo rule in the mail folder",
        || {
            // Other default-pack alerts (posture) may be mailed first or beside it.
            let n = std::fs::read_dir(&f)
                .map(|d| {
                    d.flatten()
                        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                        .filter(|e| {
                            std::fs::read_to_string(e.path())
                                .is_ok_and(|t| t.contains("demo-memory-in-use"))
                        })
                        .count()
                })
                .unwrap_or(0);
            async move { n >= 1 }
        },
    )
    .await;
    if let Err(e) = r {
        panic!(
            "{e}\n{}",
            std::fs::read_to_string(dir.path().join("demo.log")).unwrap_or_default()
        );
    }
    let mailed = started.elapsed();
    let fired = opened.lock().unwrap().map(|t| t.duration_since(started));
    follower.abort();
    let fired = fired.expect("the opening was on the feed before the mail");
    assert!(fired < Duration::from_secs(60), "fired after {fired:?}");
    assert!(mailed < Duration::from_secs(120), "mailed after {mailed:?}");
    let eml = std::fs::read_dir(&folder)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .find(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("demo-memory-in-use")))
        .unwrap();
    let mail = Mail::parse(&std::fs::read_to_string(eml.path()).unwrap());
    assert_eq!(mail.to, "noc@msp.example");
    assert!(
        // The demo's own rule is in the mail; it may be grouped with other alerts of
        // the default pack that fire on this machine at the same time (posture rules).
        mail.text.contains("demo-memory-in-use") && mail.subject.contains("demo"),
        "{mail:?}"
    );
    eprintln!("demo: alert on the feed after {fired:?}, mail written after {mailed:?}");
    let _ = demo.start_kill();
    let _ = demo.wait().await;
}

/// A rule file with RULES and a one-off maintenance window over `device`, from a
/// minute ago until `until_ms` (UTC).
fn rules_with_window(device: &str, until_ms: i64) -> String {
    let civil = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .unwrap()
            .strftime("%Y-%m-%dT%H:%M:%S")
            .to_string()
    };
    format!(
        "{RULES}\n[[maintenance]]\nname = \"patch night\"\nstart = \"{}\"\nend = \"{}\"\nscope = {{ devices = [\"{device}\"] }}\n",
        civil(tandem_tests::now_ms() - 60_000),
        civil(until_ms)
    )
}

const PAUSE_POLICY: &str = r#"
[[policy]]
name = "msp"
default = true
  [[policy.step]]
  after_secs = 0
  targets = ["email:noc@msp.example"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_and_silences_pause_notification_and_one_still_firing_at_the_end_is_sent_once()
{
    crate::crypto();
    let site = Site::new().await.unwrap();
    let mut smtp = Smtp::new(site.dir.path());
    smtp.start().await;
    setup_files(&site, PAUSE_POLICY);
    // The window and the silences end together, 20 s from now (the collector
    // starting and the devices firing take a few of them). A whole second: the
    // window is written to the rules file at second precision, so an end with
    // milliseconds would end the window up to 999 ms before `end_ms`.
    let end_ms = (tandem_tests::now_ms() + 20_000).div_euclid(1000) * 1000 + 1000;
    std::fs::write(
        site.dir.path().join("rules/r.toml"),
        rules_with_window("pc-maint", end_ms),
    )
    .unwrap();
    let collector = site
        .start_collector(&collector_toml(smtp.port, free_port(), 0))
        .await
        .unwrap();
    // The devices report a good value first (a silence names known devices).
    let mut feeders = Vec::new();
    for dev in ["pc-maint", "pc-silenced", "pc-heals"] {
        feeders.push(
            Feeder::start(
                collector.addr,
                &site.issue("acme", dev),
                Duration::from_millis(300),
                &[("cpu.percent", "", 5.0)],
            )
            .await
            .unwrap(),
        );
    }
    wait_for(Duration::from_secs(10), "three devices known", || {
        let n = site.count("SELECT count(*) FROM devices WHERE id LIKE 'pc-%'");
        async move { n >= 3 }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", collector.log()));
    let until = jiff::Timestamp::from_millisecond(end_ms)
        .unwrap()
        .to_string();
    for dev in ["pc-silenced", "pc-heals"] {
        site.cli_ok(&[
            "alerts",
            "silence",
            "--until",
            &until,
            "--device",
            dev,
            "--comment",
            "e2e: pause",
        ])
        .await;
    }
    // Let the running engine read the silences (every tick, 1 s here).
    tokio::time::sleep(Duration::from_secs(2)).await;
    for f in &feeders {
        f.set(&[("cpu.percent", "", 99.0)]);
    }
    wait_for(
        Duration::from_secs(10),
        "three incidents opened while suppressed",
        || {
            let n = site.count("SELECT count(*) FROM incidents WHERE suppressed = 1");
            async move { n >= 3 }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", collector.log()));
    // One heals inside its silence: never sent, not even when the silence ends.
    tokio::time::sleep(Duration::from_secs(2)).await;
    feeders[2].set(&[("cpu.percent", "", 5.0)]);
    wait_for(
        Duration::from_secs(10),
        "the healed incident resolved",
        || {
            let n = site.count("SELECT count(*) FROM incidents WHERE state = 'resolved'");
            async move { n >= 1 }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", collector.log()));
    let before_end = tandem_tests::now_ms();
    assert!(
        before_end < end_ms - 1000,
        "the test was too slow to look inside the window ({} ms left)",
        end_ms - before_end
    );
    assert_eq!(
        site.count("SELECT count(*) FROM notify_outbox"),
        0,
        "nothing is notified inside a window or silence"
    );
    assert!(smtp.mails().is_empty(), "{:#?}", smtp.mails());
    assert_eq!(
        site.count("SELECT count(*) FROM feed_events"),
        0,
        "nor shown on the feed"
    );

    // The window and the silences end with two alerts still firing: each is sent
    // once (both due at the same moment, they may share one grouped mail).
    let left = (end_ms - tandem_tests::now_ms()).max(0) as u64;
    wait_for(
        Duration::from_millis(left + 15_000),
        "two deliveries sent",
        || {
            let n = site.count("SELECT count(*) FROM notify_outbox WHERE status = 'sent'");
            async move { n >= 2 }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", collector.log()));
    let first_sent: i64 = site.count("SELECT min(sent_ms) FROM notify_outbox");
    assert!(
        first_sent >= end_ms,
        "a mail went out {} ms before the window ended",
        end_ms - first_sent
    );
    // Several more ticks and dispatcher sweeps: nothing more comes.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let sent: Vec<(String, String)> = {
        let db = site.db();
        let mut s = db
            .prepare(
                "SELECT i.device_id, o.status FROM notify_outbox o JOIN incidents i ON i.id = o.incident_id ORDER BY i.device_id",
            )
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(
        sent,
        vec![
            ("pc-maint".to_owned(), "sent".to_owned()),
            ("pc-silenced".to_owned(), "sent".to_owned())
        ],
        "one delivery each, none for the one that healed inside its silence"
    );
    let mails = smtp.mails_to("noc@msp.example");
    let blocks: usize = mails
        .iter()
        .map(|m| m.text.matches("What is wrong:").count())
        .sum();
    assert_eq!(
        blocks,
        2,
        "two incidents in the mails received: {:#?}",
        mails.iter().map(|m| &m.subject).collect::<Vec<_>>()
    );
    let kinds: Vec<(String, String)> = {
        let db = site.db();
        let mut s = db
            .prepare("SELECT i.device_id, f.kind FROM feed_events f JOIN incidents i ON i.id = f.incident_id ORDER BY f.id")
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let mut opened: Vec<&str> = kinds
        .iter()
        .filter(|k| k.1 == "opened")
        .map(|k| k.0.as_str())
        .collect();
    opened.sort();
    assert_eq!(
        opened,
        vec!["pc-maint", "pc-silenced"],
        "the healed one never appears on the feed: {kinds:?}"
    );
    drop(feeders);
    assert!(collector.terminate().await);
    smtp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_and_ack_timeout_reopenings_reach_the_webhook_signed() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let (addr, recv) = start_receiver().await;
    std::fs::write(site.dir.path().join("hook.secret"), "s3cret\n").unwrap();
    // `/flaky` answers 500 once, then 200: the opening is retried once.
    let policy = format!(
        r#"
[[webhook]]
name = "hook"
url = "http://{addr}/flaky"
secret_file = "../hook.secret"

[[policy]]
name = "msp"
default = true
ack_timeout_secs = 4
  [[policy.step]]
  after_secs = 0
  targets = ["webhook:hook"]
"#
    );
    setup_files(&site, &policy);
    let collector = site
        .start_collector(&collector_toml(free_port(), free_port(), 0))
        .await
        .unwrap();
    let feeder = Feeder::start(
        collector.addr,
        &site.issue("acme", "pc-1"),
        Duration::from_millis(300),
        &[("cpu.percent", "", 99.0)],
    )
    .await
    .unwrap();
    let accepted = |recv: &Receiver| -> Vec<serde_json::Value> {
        recv.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.1 == 200)
            .map(|c| serde_json::from_str(&c.3).unwrap())
            .collect()
    };
    let r = recv.clone();
    wait_for(Duration::from_secs(20), "the opening accepted", || {
        let n = accepted(&r).len();
        async move { n >= 1 }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", collector.log()));
    let id: i64 = site.count("SELECT max(id) FROM incidents");
    site.cli_ok(&[
        "incidents",
        "ack",
        &id.to_string(),
        "--by",
        "alice",
        "--note",
        "rebooting it",
    ])
    .await;
    // The ack is sent, then the ack times out (4 s): reopened, and the loop's
    // first step goes out again.
    let r = recv.clone();
    wait_for(
        Duration::from_secs(20),
        "acked, reopened and opened again",
        || {
            let n = accepted(&r).len();
            async move { n >= 4 }
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{:?}\n{}",
            accepted(&recv)
                .iter()
                .map(|d| d["event"]["kind"].clone())
                .collect::<Vec<_>>(),
            collector.log()
        )
    });
    feeder.set(&[("cpu.percent", "", 5.0)]);
    let r = recv.clone();
    wait_for(Duration::from_secs(15), "the resolution", || {
        let n = accepted(&r).len();
        async move { n >= 5 }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", collector.log()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let docs = accepted(&recv);
    let kinds: Vec<&str> = docs
        .iter()
        .map(|d| d["event"]["kind"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        kinds,
        vec!["opened", "acked", "reopened", "opened", "resolved"],
        "{docs:#?}"
    );
    let acked = &docs[1];
    assert_eq!(acked["schema"], "tandem.notify/v1");
    assert_eq!(acked["incident"]["state"], "acked");
    assert_eq!(acked["incident"]["acked_by"], "alice");
    assert_eq!(acked["incident"]["ack_note"], "rebooting it");
    assert_eq!(docs[2]["incident"]["state"], "open");
    // Every accepted call is signed over its own body, with its own key.
    let calls = recv.calls.lock().unwrap().clone();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"s3cret");
    let mut keys = std::collections::BTreeSet::new();
    for (_, status, h, body) in calls.iter().filter(|c| c.1 == 200) {
        let ts = h["x-tandem-timestamp"].to_str().unwrap();
        let tag = ring::hmac::sign(&key, format!("{ts}.{body}").as_bytes());
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            h["x-tandem-signature"].to_str().unwrap(),
            format!("v1={hex}")
        );
        assert!(
            keys.insert(h["x-tandem-idempotency-key"].to_str().unwrap().to_owned()),
            "a key twice ({status}): {keys:?}"
        );
    }
    assert!(
        keys.iter().any(|k| k.contains(":acked.0:webhook:hook"))
            && keys.iter().any(|k| k.contains(":reopened.1:webhook:hook")),
        "{keys:?}"
    );
    drop(feeder);
    assert!(collector.terminate().await);
}

/// Opens the feed and returns the status line and headers, and the stream to read on.
async fn open_feed(addr: SocketAddr, token: Option<&str>) -> (u16, tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    s.write_all(
        format!(
            "GET /api/v1/feed HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{auth}\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await.unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, s)
}

/// The feed needs a login from every address, loopback included (issue 15 item 2
/// ended issue 12's "loopback only until the console's login exists"); a feed-only
/// token of `token create-api` opens it, and real events flow to the reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_needs_an_api_token_on_loopback_too() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let root = site.dir.path();
    std::fs::create_dir_all(root.join("rules")).unwrap();
    std::fs::write(root.join("rules/r.toml"), RULES).unwrap();
    let port = free_port();
    let collector = site
        .start_collector(&format!(
            "[alerts]\nrules_dir = \"rules\"\ntick_secs = 1\n[http]\nlisten = \"127.0.0.1:{port}\"\n"
        ))
        .await
        .unwrap();
    let far: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for(
        Duration::from_secs(10),
        "the HTTP listener",
        || async move { tokio::net::TcpStream::connect(far).await.is_ok() },
    )
    .await
    .unwrap();
    let (status, _) = open_feed(far, None).await;
    assert_eq!(status, 401, "from {far} without a token");
    let (status, _) = open_feed(far, Some("not-a-token")).await;
    assert_eq!(status, 401, "from {far} with a made-up token");
    let token = site.cli_ok(&["token", "create-api", "noc-screen"]).await;
    let token = token.trim();
    assert!(token.len() >= 32, "{token:?}");
    let stored: String = site
        .db()
        .query_row("SELECT sha256_hex FROM api_tokens", [], |r| r.get(0))
        .unwrap();
    assert!(!stored.contains(token), "the token itself is not stored");
    let (status, mut stream) = open_feed(far, Some(token)).await;
    assert_eq!(status, 200, "from {far} with the token");
    // And events flow to the remote reader.
    let feeder = Feeder::start(
        collector.addr,
        &site.issue("acme", "pc-1"),
        Duration::from_millis(300),
        &[("cpu.percent", "", 99.0)],
    )
    .await
    .unwrap();
    let mut got = String::new();
    let read = tokio::time::timeout(Duration::from_secs(15), async {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 4096];
        while !got.contains("event: opened") {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await;
    assert!(
        read.is_ok() && got.contains("event: opened") && got.contains("\"tenant\":\"acme\""),
        "the remote reader got:\n{got}\n{}",
        collector.log()
    );
    drop(feeder);
    assert!(collector.terminate().await);
}

/// The decoded body of the first MIME part of `raw` whose type is `mime`.
fn mime_part(raw: &str, mime: &str) -> Option<String> {
    let raw = raw.replace("\r\n", "\n");
    let at = raw
        .to_ascii_lowercase()
        .find(&format!("content-type: {mime}"))?;
    let part = &raw[at..];
    let (head, body) = part.split_once("\n\n")?;
    let body = body.split("\n--").next().unwrap_or(body);
    let cte = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-transfer-encoding")
                .then(|| v.trim().to_ascii_lowercase())
        })
        .unwrap_or_default();
    Some(match cte.as_str() {
        "quoted-printable" => qp_decode(body),
        "base64" => {
            const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut bits = 0u32;
            let mut n = 0;
            let mut out = Vec::new();
            for c in body.bytes() {
                let Some(v) = A.iter().position(|&a| a == c) else {
                    continue;
                };
                bits = (bits << 6) | v as u32;
                n += 6;
                if n >= 8 {
                    n -= 8;
                    out.push((bits >> n) as u8);
                }
            }
            String::from_utf8_lossy(&out).into_owned()
        }
        _ => body.to_owned(),
    })
}

/// Screenshots `url` in real headless Debian Chromium (installed by
/// tests/run-all.sh) into `png`, with a fresh profile.
async fn screenshot(url: &str, png: &Path) {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chromium is missing: run tests/run-all.sh (it installs it) or `apt-get install chromium`");
    let profile = tempfile::tempdir().unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--screenshot={}", png.display()))
            .arg("--window-size=1000,800")
            .arg(url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium took over 90 s")
    .unwrap();
    let bytes = std::fs::read(png).unwrap_or_else(|e| {
        panic!(
            "chromium wrote no screenshot ({e}): {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG: {}",
        png.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ack_page_and_a_problem_mail_render_in_headless_chromium() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let mut smtp = Smtp::new(site.dir.path());
    smtp.start().await;
    setup_files(&site, FLOW_POLICY);
    let http_port = free_port();
    let collector = site
        .start_collector(&collector_toml(smtp.port, http_port, 1))
        .await
        .unwrap();
    let feeder = Feeder::start(
        collector.addr,
        &site.issue("acme", "pc-acme-17"),
        Duration::from_millis(300),
        &[("cpu.percent", "", 97.5)],
    )
    .await
    .unwrap();
    let it = wait_mails(
        &smtp,
        &collector,
        "it@acme.example",
        1,
        Duration::from_secs(20),
    )
    .await;
    let raw = ["new", "cur"]
        .iter()
        .filter_map(|d| std::fs::read_dir(smtp.dir.join(d)).ok())
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .find(|r| r.contains("To: it@acme.example"))
        .expect("the raw .eml");
    let html = mime_part(&raw, "text/html").unwrap_or_else(|| panic!("no HTML part:\n{raw}"));
    for want in [
        "cpu-high",
        "test-host",
        "acme",
        "/ack/",
        "Do you need to act?",
    ] {
        assert!(
            html.contains(want),
            "{want:?} not in the HTML part:\n{html}"
        );
    }
    let out = site.dir.path().join("shots");
    std::fs::create_dir_all(&out).unwrap();
    let mail_html = out.join("mail.html");
    std::fs::write(&mail_html, &html).unwrap();
    let mail_png = out.join("notify-mail.png");
    screenshot(&format!("file://{}", mail_html.display()), &mail_png).await;

    let link = it[0].ack_link().expect("ack link");
    let ack_png = out.join("notify-ack-page.png");
    screenshot(&link, &ack_png).await;
    assert_eq!(
        site.count("SELECT count(*) FROM incidents WHERE state = 'acked'"),
        0,
        "a browser opening the link does not acknowledge"
    );
    // A rendered page with text is far larger than a blank one (about 3 KB).
    for p in [&mail_png, &ack_png] {
        let len = std::fs::metadata(p).unwrap().len();
        assert!(len > 12_000, "{} is {len} bytes: blank?", p.display());
    }
    // `TANDEM_UPDATE_SCREENSHOTS=1` keeps them for docs/NOTIFICATIONS.md.
    if std::env::var_os("TANDEM_UPDATE_SCREENSHOTS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
        for p in [&mail_png, &ack_png] {
            std::fs::copy(p, docs.join(p.file_name().unwrap())).unwrap();
        }
    }
    drop(feeder);
    assert!(collector.terminate().await);
    smtp.stop().await;
}

/// The HTTP listener with TLS (issue 15): the acknowledge link in a real mail is
/// `https://`, and a TLS client trusting only the collector CA gets the ack page
/// from it and acknowledges through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_links_are_https_on_a_tls_listener_and_served_with_the_collector_ca() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let mut smtp = Smtp::new(site.dir.path());
    smtp.start().await;
    setup_files(&site, PAUSE_POLICY);
    let http_port = free_port();
    let collector = site
        .start_collector(&format!(
            "{}tls = true\n",
            collector_toml(smtp.port, http_port, 1)
        ))
        .await
        .unwrap();
    let http: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    wait_for(
        Duration::from_secs(10),
        "the HTTP listener",
        || async move { tokio::net::TcpStream::connect(http).await.is_ok() },
    )
    .await
    .unwrap();
    let _feeder = Feeder::start(
        collector.addr,
        &site.issue("acme", "pc-acme"),
        Duration::from_millis(300),
        &[("cpu.percent", "", 99.0)],
    )
    .await
    .unwrap();
    let mails = wait_mails(
        &smtp,
        &collector,
        "noc@msp.example",
        1,
        Duration::from_secs(15),
    )
    .await;
    let mail = &mails[0];
    let link = mail
        .ack_link()
        .unwrap_or_else(|| panic!("no ack link in\n{}", mail.text));
    let base = format!("https://127.0.0.1:{http_port}");
    assert!(
        link.starts_with(&format!("{base}/ack/")),
        "the link is https on the listener: {link}"
    );
    assert!(
        !mail.text.contains(&format!("http://127.0.0.1:{http_port}")),
        "no plain-http link anywhere in the mail:\n{}",
        mail.text
    );
    let path = link.strip_prefix(&base).unwrap().to_owned();
    let ca = tandem_collector::http::tail::client_tls(
        &tandem_collector::pki::PkiPaths::new(&site.data_dir()).ca_cert,
    )
    .unwrap();
    let (status, _, body) =
        crate::listener::request("127.0.0.1", http_port, Some(&ca), "GET", &path, &[], "")
            .await
            .unwrap_or_else(|e| panic!("GET {link} over TLS with the collector CA: {e}"));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("<form method=post>") && body.contains("cpu-high"),
        "the ack page: {body}"
    );
    assert_eq!(
        site.count("SELECT count(*) FROM incidents WHERE state = 'acked'"),
        0,
        "GET does not ack"
    );
    let (status, _, body) = crate::listener::request(
        "127.0.0.1",
        http_port,
        Some(&ca),
        "POST",
        &path,
        &[("content-type", "application/x-www-form-urlencoded")],
        "note=via+https",
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Acknowledged"), "{body}");
    assert_eq!(
        site.count(
            "SELECT count(*) FROM incidents WHERE state = 'acked' AND ack_note = 'via https'"
        ),
        1
    );
    // Plain HTTP to that port gets no page.
    let plain = tokio::time::timeout(
        Duration::from_secs(8),
        crate::listener::request("127.0.0.1", http_port, None, "GET", &path, &[], ""),
    )
    .await;
    assert!(
        !matches!(plain, Ok(Ok((200, _, _)))),
        "plain HTTP must not be served: {plain:?}"
    );
    smtp.stop().await;
    assert!(collector.terminate().await);
}

/// Reads SSE events (`id:` lines) from a feed response until `n` were seen or
/// `limit` passed; returns the ids in the order received.
async fn read_feed_ids(body: &mut hyper::body::Incoming, n: usize, limit: Duration) -> Vec<i64> {
    use http_body_util::BodyExt;
    let mut ids = Vec::new();
    let mut pending = String::new();
    let _ = tokio::time::timeout(limit, async {
        while ids.len() < n {
            let Some(Ok(frame)) = body.frame().await else {
                return;
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.push_str(&String::from_utf8_lossy(&data));
            while let Some(end) = pending.find('\n') {
                let line: String = pending.drain(..=end).collect();
                if let Some(id) = line.trim_end().strip_prefix("id: ") {
                    ids.push(id.parse().expect("an event id is a number"));
                }
            }
        }
    })
    .await;
    ids
}

/// A reader that resumes from further back than the feed hub keeps in memory (its
/// latest 2,048 events) reads the older events from the database and then the
/// hub's, in order, none missing and none twice; after a drop it resumes with
/// `Last-Event-ID` where it stopped, and a new event still reaches it live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_resumed_from_far_back_reads_the_database_then_the_hub_with_no_gap() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let root = site.dir.path();
    std::fs::create_dir_all(root.join("rules")).unwrap();
    std::fs::write(root.join("rules/r.toml"), RULES).unwrap();
    let port = free_port();
    let collector = site
        .start_collector(&format!(
            "[alerts]\nrules_dir = \"rules\"\ntick_secs = 1\n[http]\nlisten = \"127.0.0.1:{port}\"\n"
        ))
        .await
        .unwrap();
    let token = site.cli_ok(&["token", "create-api", "noc-screen"]).await;
    let token = token.trim().to_owned();
    // 3,000 incidents (one per dimension), each an `opened` event on the feed.
    const N: usize = 3_000;
    let dims: Vec<String> = (0..N).map(|i| format!("core{i}")).collect();
    let creds = site.issue("acme", "pc-many");
    let mut c = tandem_tests::client(collector.addr, &creds).await.unwrap();
    let (mut s, _) = tandem_tests::Stream::hello(&mut c).await.unwrap();
    for (k, part) in dims.chunks(1_000).enumerate() {
        let values: Vec<(&str, &str, f64)> = part
            .iter()
            .map(|d| ("cpu.percent", d.as_str(), 99.0))
            .collect();
        s.send(tandem_tests::values_batch(
            k as u64 + 1,
            tandem_tests::now_ms(),
            &values,
        ))
        .await
        .unwrap();
        s.next_ack().await.unwrap();
    }
    wait_for(Duration::from_secs(30), "3,000 feed events", || {
        let n = site.count("SELECT count(*) FROM feed_events");
        async move { n >= N as i64 }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", collector.log()));
    let stored: Vec<i64> = {
        let db = site.db();
        let mut q = db
            .prepare("SELECT id FROM feed_events ORDER BY id")
            .unwrap();
        q.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(stored.len(), N);
    let open = |resume: Option<i64>| {
        let token = token.clone();
        async move {
            let (mut sender, driver) =
                tandem_collector::http::tail::connect("127.0.0.1", port, None)
                    .await
                    .unwrap();
            let mut req = hyper::Request::get("/api/v1/feed?since=0")
                .header(hyper::header::HOST, format!("127.0.0.1:{port}"))
                .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
            if let Some(id) = resume {
                req = req.header("last-event-id", id.to_string());
            }
            let resp = sender
                .send_request(
                    req.body(http_body_util::Empty::<bytes::Bytes>::new())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            (resp.into_body(), driver)
        }
    };
    // From the start: the first 1,500 (all below the hub's floor: database pages).
    let (mut body, driver) = open(None).await;
    let first = read_feed_ids(&mut body, 1_500, Duration::from_secs(30)).await;
    drop(body);
    driver.abort();
    assert_eq!(first, stored[..1_500], "the first pages, in order");
    // Resumed where it stopped: the rest, across the database/hub boundary.
    let (mut body, _driver) = open(first.last().copied()).await;
    let rest = read_feed_ids(&mut body, N - 1_500, Duration::from_secs(30)).await;
    assert_eq!(rest, stored[1_500..], "the rest, none missing or twice");
    // And the stream is live: a new incident arrives on it.
    s.send(tandem_tests::values_batch(
        100,
        tandem_tests::now_ms(),
        &[("cpu.percent", "core-live", 99.0)],
    ))
    .await
    .unwrap();
    s.next_ack().await.unwrap();
    let live = read_feed_ids(&mut body, 1, Duration::from_secs(15)).await;
    let newest = site.count("SELECT max(id) FROM feed_events");
    assert_eq!(
        live,
        vec![newest],
        "the new event, live\n{}",
        collector.log()
    );
    assert!(newest > stored[N - 1]);
    drop((s, c));
    assert!(collector.terminate().await);
}
