//! The alert engine end to end: the real agent binary sampling this machine, the
//! real collector with a rules directory, alert state read from the real SQLite file
//! and through the `alerts` CLI.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tandem_tests::{CollectorProc, Feeder, Site, bin, wait_for};
use tokio::process::{Child, Command};

/// Fires on any machine: some memory is always in use.
const MEM_LOW: &str = r#"
[[rule]]
name = "mem-low-threshold"
kind = "threshold"
metric = "mem.used.percent"
warning = { above = THRESHOLD }
for_secs = 2
min_samples = 2
"#;

const OFFLINE: &str = r#"
[[rule]]
name = "offline"
kind = "offline"
after_secs = 3
"#;

/// Never fires: no load average is that high.
const QUIET: &str = r#"
[[rule]]
name = "load-absurd"
kind = "threshold"
metric = "load.1m"
critical = { above = 1000000 }
"#;

fn write_rules(site: &Site, threshold: f64) -> PathBuf {
    let dir = site.dir.path().join("rules");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("test.toml"),
        MEM_LOW.replace("THRESHOLD", &threshold.to_string()),
    )
    .unwrap();
    std::fs::write(dir.join("fleet.toml"), format!("{OFFLINE}{QUIET}")).unwrap();
    dir
}

const ALERTS_TOML: &str = "[alerts]\nrules_dir = \"rules\"\ntick_secs = 1\n";

/// Provisions and starts a real agent sampling every second.
async fn start_agent(site: &Site, collector: &CollectorProc, device: &str) -> Child {
    let toml = site
        .provision_agent_toml(&collector.url(), "acme", device)
        .await
        .unwrap();
    site.spawn_agent(&toml, device).unwrap()
}

fn state_of(site: &Site, rule: &str, device: &str) -> Option<(String, bool)> {
    site.db()
        .query_row(
            "SELECT state, suppressed FROM alert_instances WHERE rule = ?1 AND device_id = ?2",
            [rule, device],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok()
}

async fn wait_state(
    site: &Site,
    collector: &CollectorProc,
    rule: &str,
    device: &str,
    want: &str,
    within: Duration,
) {
    let r = wait_for(within, &format!("{rule} on {device} to be {want}"), || {
        let s = state_of(site, rule, device);
        async move { s.is_some_and(|(s, _)| s == want) }
    })
    .await;
    if let Err(e) = r {
        panic!(
            "{e}; state {:?}; collector log:\n{}",
            state_of(site, rule, device),
            collector.log()
        );
    }
}

async fn cli(args: &[&str], data_dir: &Path) -> (bool, String) {
    let out = Command::new(bin("tandem-collector"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_threshold_fires_and_resolves_across_a_restart() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    write_rules(&site, 0.01);
    let collector = site.start_collector(ALERTS_TOML).await.unwrap();
    let port = collector.addr.port();
    let mut agent = start_agent(&site, &collector, "agent-a").await;

    wait_state(
        &site,
        &collector,
        "mem-low-threshold",
        "agent-a",
        "firing",
        Duration::from_secs(30),
    )
    .await;
    let (ok, out) = cli(
        &["alerts", "list", "--state", "firing", "--tenant", "acme"],
        &site.data_dir(),
    )
    .await;
    assert!(ok, "{out}");
    assert!(
        out.contains("mem-low-threshold") && out.contains("agent-a"),
        "{out}"
    );
    // A tenant that does not exist is an error, not "no alerts" (issue 16, item 9).
    let (ok, out) = cli(&["alerts", "list", "--tenant", "globex"], &site.data_dir()).await;
    assert!(!ok && out.contains("no such tenant"), "{out}");

    // Acknowledge it with the CLI (a second writer next to the running collector).
    let id: i64 = site
        .db()
        .query_row(
            "SELECT id FROM alert_instances WHERE rule = 'mem-low-threshold'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let (ok, out) = cli(
        &["alerts", "ack", &id.to_string(), "--by", "tester"],
        &site.data_dir(),
    )
    .await;
    assert!(ok, "{out}");
    let (ok, out) = cli(&["alerts", "ack", "999999"], &site.data_dir()).await;
    assert!(!ok && out.contains("no alert #999999"), "{out}");

    // Raise the threshold out of reach and restart: the persisted FIRING instance
    // resumes, sees the recover condition, and resolves.
    assert!(collector.terminate().await, "clean shutdown");
    write_rules(&site, 1000.0);
    std::fs::write(
        site.dir.path().join("collector.toml"),
        format!(
            "data_dir = \"collector\"\n[telemetry]\nlisten = \"127.0.0.1:{port}\"\n{ALERTS_TOML}"
        ),
    )
    .unwrap();
    let collector = site.start_collector("").await.unwrap();
    wait_state(
        &site,
        &collector,
        "mem-low-threshold",
        "agent-a",
        "ok",
        Duration::from_secs(60),
    )
    .await;

    let history: Vec<(String, String)> = {
        let db = site.db();
        let mut stmt = db
            .prepare(
                "SELECT h.event, h.to_state FROM alert_history h JOIN alert_instances a ON a.id = h.instance_id
                 WHERE a.rule = 'mem-low-threshold' ORDER BY h.id",
            )
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let transitions: Vec<&str> = history
        .iter()
        .filter(|(e, _)| e == "transition")
        .map(|(_, s)| s.as_str())
        .collect();
    assert_eq!(
        transitions,
        ["pending", "firing", "recovering", "ok"],
        "{history:?}"
    );
    assert!(history.iter().any(|(e, _)| e == "ack"), "{history:?}");
    let acked: Option<i64> = site
        .db()
        .query_row(
            "SELECT acked_ms FROM alert_instances WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(acked, None, "the ack ends with the episode");
    assert!(
        state_of(&site, "load-absurd", "agent-a").is_none(),
        "a quiet rule leaves no instance"
    );

    let _ = agent.start_kill();
    let _ = agent.wait().await;
    assert!(collector.terminate().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_agent_raises_offline_within_its_window_and_nothing_else() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    write_rules(&site, 0.01);
    let collector = site.start_collector(ALERTS_TOML).await.unwrap();
    let mut agent = start_agent(&site, &collector, "agent-b").await;
    wait_state(
        &site,
        &collector,
        "mem-low-threshold",
        "agent-b",
        "firing",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        state_of(&site, "offline", "agent-b").is_none(),
        "reporting: not offline"
    );

    let _ = agent.start_kill();
    let _ = agent.wait().await;
    let killed = Instant::now();
    wait_state(
        &site,
        &collector,
        "offline",
        "agent-b",
        "firing",
        Duration::from_secs(20),
    )
    .await;
    // after_secs = 3 plus one 1 s tick, plus slack for a loaded CI machine.
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(8), "offline after {took:?}");

    // Let a few more ticks pass, then: exactly one active, unsuppressed alert for the
    // device — the offline one; the threshold alert is inhibited, not re-raised.
    let ticks = Instant::now();
    wait_for(
        Duration::from_secs(10),
        "the inhibition to be recorded",
        || {
            let s = state_of(&site, "mem-low-threshold", "agent-b");
            let waited = ticks.elapsed() > Duration::from_secs(3);
            async move { waited && s.is_some_and(|(_, suppressed)| suppressed) }
        },
    )
    .await
    .unwrap();
    let active: Vec<(String, bool)> = {
        let db = site.db();
        let mut stmt = db
            .prepare("SELECT rule, suppressed FROM alert_instances WHERE device_id = 'agent-b' AND state != 'ok' ORDER BY rule")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(
        active,
        [
            ("mem-low-threshold".to_string(), true),
            ("offline".to_string(), false)
        ],
        "one offline alert; the device's other alert is suppressed"
    );
    let (ok, out) = cli(
        &["alerts", "history", "--device", "agent-b"],
        &site.data_dir(),
    )
    .await;
    assert!(ok && out.contains("suppressed"), "{out}");
    assert!(collector.terminate().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_edit_is_reloaded_and_a_bad_edit_keeps_the_running_rules() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let rules = write_rules(&site, 0.01);
    // A long tick: edits must be noticed by the file watch, not by the timer.
    let collector = site
        .start_collector("[alerts]\nrules_dir = \"rules\"\ntick_secs = 120\n")
        .await
        .unwrap();
    let mut agent = start_agent(&site, &collector, "agent-c").await;
    wait_state(
        &site,
        &collector,
        "mem-low-threshold",
        "agent-c",
        "firing",
        Duration::from_secs(30),
    )
    .await;

    // A bad edit: reported with file, line and column; the running rule stays.
    std::fs::write(
        rules.join("test.toml"),
        "[[rule]]\nname = \"mem-low-threshold\"\nkind = \"threshold\"\nmetric = \"mem.used.percent\"\nwarning = { above = \"high\" }\n",
    )
    .unwrap();
    let r = wait_for(
        Duration::from_secs(10),
        "the bad edit to be reported",
        || {
            let log = collector.log();
            async move { log.contains("test.toml:5:") && log.contains("the running rules stay") }
        },
    )
    .await;
    if let Err(e) = r {
        panic!("{e}; collector log:\n{}", collector.log());
    }
    assert_eq!(
        state_of(&site, "mem-low-threshold", "agent-c").map(|(s, _)| s),
        Some("firing".to_string())
    );

    // A good edit raises the threshold out of reach: reloaded, and the alert resolves
    // without a restart.
    let edited = Instant::now();
    write_rules(&site, 1000.0);
    wait_state(
        &site,
        &collector,
        "mem-low-threshold",
        "agent-c",
        "ok",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        edited.elapsed() < Duration::from_secs(10),
        "reloaded {:?} after the edit: the watch, not the 120 s tick",
        edited.elapsed()
    );
    assert!(collector.log().contains("alert rules reloaded"));
    let _ = agent.start_kill();
    let _ = agent.wait().await;
    assert!(collector.terminate().await);
}

/// Rules for the tag and silence test: a rule only for devices tagged `server`.
const TAGGED: &str = r#"
[[rule]]
name = "hot-server"
kind = "threshold"
metric = "test.temp"
custom_metric = true
warning = { above = 50 }
scope = { tags = ["server"] }
"#;

fn suppressed_of(site: &Site, rule: &str, device: &str) -> Option<bool> {
    state_of(site, rule, device).map(|(_, s)| s)
}

async fn wait_suppressed(site: &Site, collector: &CollectorProc, device: &str, want: bool) {
    let r = wait_for(
        Duration::from_secs(20),
        &format!("hot-server on {device} suppressed = {want}"),
        || {
            let s = suppressed_of(site, "hot-server", device);
            async move { s == Some(want) }
        },
    )
    .await;
    if let Err(e) = r {
        panic!("{e}; collector log:\n{}", collector.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_silences_from_the_cli_reach_a_running_collector() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let dir = site.dir.path().join("rules");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("t.toml"), TAGGED).unwrap();
    let collector = site.start_collector(ALERTS_TOML).await.unwrap();
    let feeder = Feeder::start(
        collector.addr,
        &site.issue("acme", "dev-1"),
        Duration::from_millis(200),
        &[("test.temp", "", 90.0)],
    )
    .await
    .unwrap();

    // Hot, but not tagged `server`: several batches and ticks later, nothing.
    let acked = feeder.acked.clone();
    wait_for(Duration::from_secs(20), "10 batches stored", || {
        let n = acked.load(std::sync::atomic::Ordering::SeqCst);
        async move { n >= 10 }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(state_of(&site, "hot-server", "dev-1"), None, "untagged");

    let (ok, out) = cli(&["device", "tag", "dev-1", "Server"], &site.data_dir()).await;
    assert!(
        !ok && out.contains("\"Server\"") && out.contains("lowercase"),
        "{out}"
    );
    let (ok, out) = cli(
        &["device", "tag", "dev-1", "server", "rack-4"],
        &site.data_dir(),
    )
    .await;
    assert!(ok && out.contains("tagged server, rack-4"), "{out}");
    let (ok, out) = cli(&["device", "list"], &site.data_dir()).await;
    assert!(ok && out.contains("rack-4,server"), "{out}");
    wait_state(
        &site,
        &collector,
        "hot-server",
        "dev-1",
        "firing",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(suppressed_of(&site, "hot-server", "dev-1"), Some(false));

    // Silence it from the CLI: suppressed while it lasts, still firing.
    let (ok, out) = cli(
        &[
            "alerts",
            "silence",
            "--for",
            "1h",
            "--device",
            "dev-9",
            "--comment",
            "typo",
        ],
        &site.data_dir(),
    )
    .await;
    assert!(!ok && out.contains("no device \"dev-9\""), "{out}");
    let (ok, out) = cli(
        &[
            "alerts",
            "silence",
            "--for",
            "1h",
            "--device",
            "dev-1",
            "--rule",
            "hot-server",
            "--comment",
            "replacing the fan",
        ],
        &site.data_dir(),
    )
    .await;
    assert!(ok, "{out}");
    let id: i64 = out
        .lines()
        .find_map(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no silence id in {out:?}"));
    wait_suppressed(&site, &collector, "dev-1", true).await;
    assert_eq!(
        state_of(&site, "hot-server", "dev-1").map(|(s, _)| s),
        Some("firing".to_string()),
        "evaluation goes on"
    );
    let (ok, out) = cli(&["alerts", "silences"], &site.data_dir()).await;
    assert!(
        ok && out.contains(&format!("#{id}"))
            && out.contains("active")
            && out.contains("replacing the fan"),
        "{out}"
    );

    let (ok, out) = cli(&["alerts", "unsilence", &id.to_string()], &site.data_dir()).await;
    assert!(ok && out.contains("removed"), "{out}");
    wait_suppressed(&site, &collector, "dev-1", false).await;
    let (ok, out) = cli(&["alerts", "silences"], &site.data_dir()).await;
    assert!(ok && out.contains("no silences"), "{out}");
    let flags: Vec<(String, bool)> = {
        let db = site.db();
        let mut stmt = db
            .prepare(
                "SELECT h.event, h.suppressed FROM alert_history h JOIN alert_instances a ON a.id = h.instance_id
                 WHERE a.rule = 'hot-server' AND h.event != 'transition' ORDER BY h.id",
            )
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(
        flags,
        [
            ("suppressed".to_string(), true),
            ("unsuppressed".to_string(), false)
        ],
        "one record when the silence began, one when it was lifted"
    );

    // Untagged: out of the rule's scope, its alert is closed although still hot.
    let (ok, out) = cli(&["device", "untag", "dev-1", "server"], &site.data_dir()).await;
    assert!(ok && out.contains("untagged server"), "{out}");
    wait_state(
        &site,
        &collector,
        "hot-server",
        "dev-1",
        "ok",
        Duration::from_secs(20),
    )
    .await;
    drop(feeder);
    assert!(collector.terminate().await);
}

/// The agent's contract: `service.up{name}` = 1 running, 0 not.
const SERVICE: &str = r#"
[[rule]]
name = "svc-down"
kind = "service_down"
service = ["nginx", "cron"]
for_secs = 2
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_service_fires_after_for_and_resolves_when_it_runs_again() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let dir = site.dir.path().join("rules");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("svc.toml"), SERVICE).unwrap();
    let collector = site.start_collector(ALERTS_TOML).await.unwrap();
    let feeder = Feeder::start(
        collector.addr,
        &site.issue("acme", "web-1"),
        Duration::from_millis(250),
        &[
            ("service.up", "nginx", 1.0),
            ("service.up", "cron", 1.0),
            ("service.up", "sshd", 1.0),
        ],
    )
    .await
    .unwrap();
    let acked = feeder.acked.clone();
    let acks = move || acked.load(std::sync::atomic::Ordering::SeqCst);
    let a0 = acks();
    wait_for(Duration::from_secs(20), "batches stored", || {
        let n = acks();
        async move { n >= a0 + 4 }
    })
    .await
    .unwrap();
    assert_eq!(state_of(&site, "svc-down", "web-1"), None, "all running");

    // nginx stops; sshd too, but the rule does not watch it.
    feeder.set(&[
        ("service.up", "nginx", 0.0),
        ("service.up", "cron", 1.0),
        ("service.up", "sshd", 0.0),
    ]);
    let stopped = Instant::now();
    let nginx = || {
        site.db()
            .query_row(
                "SELECT state, severity FROM alert_instances WHERE rule = 'svc-down' AND device_id = 'web-1' AND dimension = 'nginx'",
                [],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)),
            )
            .ok()
    };
    let r = wait_for(Duration::from_secs(20), "nginx down to fire", || {
        let s = nginx();
        async move { s.is_some_and(|(s, _)| s == "firing") }
    })
    .await;
    if let Err(e) = r {
        panic!("{e}; {:?}; log:\n{}", nginx(), collector.log());
    }
    assert!(
        stopped.elapsed() >= Duration::from_secs(2),
        "for_secs = 2 holds it pending first"
    );
    assert_eq!(nginx().and_then(|(_, s)| s).as_deref(), Some("critical"));
    let dims: Vec<String> = {
        let db = site.db();
        let mut stmt = db
            .prepare("SELECT dimension FROM alert_instances WHERE rule = 'svc-down' ORDER BY 1")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(dims, ["nginx"], "one instance per down service it watches");
    let (ok, out) = cli(&["alerts", "list", "--state", "firing"], &site.data_dir()).await;
    assert!(
        ok && out.contains("svc-down") && out.contains("nginx"),
        "{out}"
    );

    // Started again: resolves.
    feeder.set(&[
        ("service.up", "nginx", 1.0),
        ("service.up", "cron", 1.0),
        ("service.up", "sshd", 1.0),
    ]);
    let r = wait_for(Duration::from_secs(20), "nginx to resolve", || {
        let s = nginx();
        async move { s.is_some_and(|(s, _)| s == "ok") }
    })
    .await;
    if let Err(e) = r {
        panic!("{e}; {:?}; log:\n{}", nginx(), collector.log());
    }
    drop(feeder);
    assert!(collector.terminate().await);
}
