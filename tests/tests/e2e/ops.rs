//! Operator-facing behaviour (issue 16, items 6–13): file watchers that reload once
//! per real edit, names that are checked, clear refusals, CLI answers that do not
//! mislead. Real binaries, real files, real mTLS on loopback.

use std::time::Duration;

use tandem_tests::{AgentProc, Site, free_port, wait_for};

fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

/// How long a watcher is observed with nothing edited. The old watchers reloaded
/// two to three times a second, so this window saw five or more reloads.
const QUIET: Duration = Duration::from_secs(2);

/// Item 6: the collector's config and rules watchers reload once per real edit,
/// never on their own reads, and a bad edit is reported once.
#[tokio::test]
async fn collector_watchers_reload_once_per_edit() {
    let site = Site::new().await.unwrap();
    std::fs::create_dir_all(site.dir.path().join("rules")).unwrap();
    let extra = "sample_interval_secs = 5\n[alerts]\nrules_dir = \"rules\"\ntick_secs = 1\n";
    let collector = site.start_collector(extra).await.unwrap();
    let cfg = site.dir.path().join("collector.toml");
    let good = std::fs::read_to_string(&cfg).unwrap();

    // Quiet: the rules watcher's one load right after it starts, then nothing.
    tokio::time::sleep(QUIET).await;
    let log = collector.log();
    assert_eq!(
        count(&log, "config file changed"),
        0,
        "config reloaded with nothing edited:\n{log}"
    );
    assert!(
        count(&log, "alert rules unchanged") <= 1,
        "rules reloaded with nothing edited:\n{log}"
    );

    // A bad edit: one error line, however long it stays.
    std::fs::write(&cfg, format!("{good}bogus_key = 1\n")).unwrap();
    wait_for(
        Duration::from_secs(10),
        "the bad edit to be reported",
        || async { collector.log().contains("config reload rejected") },
    )
    .await
    .unwrap();
    tokio::time::sleep(QUIET).await;
    let log = collector.log();
    assert_eq!(
        count(&log, "config reload rejected"),
        1,
        "a bad edit reported more than once:\n{log}"
    );

    // The fix: one reload.
    std::fs::write(
        &cfg,
        good.replace("sample_interval_secs = 5", "sample_interval_secs = 7"),
    )
    .unwrap();
    wait_for(
        Duration::from_secs(10),
        "the fixed edit to load",
        || async { collector.log().contains("configuration reloaded") },
    )
    .await
    .unwrap();
    tokio::time::sleep(QUIET).await;
    let log = collector.log();
    assert_eq!(count(&log, "configuration reloaded"), 1, "{log}");
    assert_eq!(count(&log, "config file changed"), 2, "{log}");

    // A bad rule file: one line per problem, once.
    std::fs::write(
        site.dir.path().join("rules/bad.toml"),
        "[[rule]]\nnope = 1\n",
    )
    .unwrap();
    wait_for(
        Duration::from_secs(10),
        "the bad rule file to be reported",
        || async { collector.log().contains("rule file problem") },
    )
    .await
    .unwrap();
    let first = count(&collector.log(), "rule file problem");
    tokio::time::sleep(QUIET).await;
    let log = collector.log();
    assert_eq!(
        count(&log, "rule file problem"),
        first,
        "a bad rule file reported again with nothing edited:\n{log}"
    );
}

/// Item 6: the agent's config watcher reloads once per real edit and reports a
/// bad edit once.
#[tokio::test]
async fn agent_watcher_reloads_once_per_edit() {
    let site = Site::new().await.unwrap();
    let collector = site.start_collector("").await.unwrap();
    let dir = site.provision_agent("watched", &collector.url(), "").await;
    let agent = AgentProc::start(&dir).await;
    let toml = dir.join("agent.toml");
    let good = std::fs::read_to_string(&toml).unwrap();
    wait_for(Duration::from_secs(20), "the agent to deliver", || async {
        site.acked_seq("watched") > 0
    })
    .await
    .unwrap();

    tokio::time::sleep(QUIET).await;
    let log = agent.log();
    assert_eq!(
        count(&log, "config file changed"),
        0,
        "agent reloaded with nothing edited:\n{log}"
    );

    std::fs::write(&toml, format!("{good}bogus_key = 1\n")).unwrap();
    wait_for(
        Duration::from_secs(10),
        "the bad edit to be reported",
        || async { agent.log().contains("config reload rejected") },
    )
    .await
    .unwrap();
    tokio::time::sleep(QUIET).await;
    let log = agent.log();
    assert_eq!(
        count(&log, "config reload rejected"),
        1,
        "a bad edit reported more than once:\n{log}"
    );
    std::fs::write(&toml, &good).unwrap();
    wait_for(Duration::from_secs(10), "the fix to be read", || async {
        count(&agent.log(), "config file changed") == 2
    })
    .await
    .unwrap();
    tokio::time::sleep(QUIET).await;
    assert_eq!(count(&agent.log(), "config file changed"), 2);
    assert_eq!(count(&agent.log(), "config reload rejected"), 1);
    collector.kill9().await; // and reaped: the next collector on this data dir needs its lock
}

/// Item 7: `rules check` refuses a metric name the agent never sends, suggests the
/// closest known one, and takes `custom_metric = true` as the explicit escape.
#[tokio::test]
async fn rules_check_refuses_unknown_metric_names() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.toml");
    let rule = "[[rule]]\nname = \"cpu\"\nkind = \"threshold\"\nmetric = \"cpu.usage.precent\"\nwarning = { above = 90 }\n";
    std::fs::write(&file, rule).unwrap();
    let out = tokio::process::Command::new(tandem_tests::bin("tandem-collector"))
        .args(["rules", "check"])
        .arg(&file)
        .env("RUST_BACKTRACE", "0")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a typo passed the check:\n{err}");
    assert!(
        err.contains("typo.toml:4:10: rule \"cpu\": unknown metric \"cpu.usage.precent\" (did you mean \"cpu.usage.percent\"?)"),
        "{err}"
    );
    std::fs::write(
        &file,
        rule.replace("precent\"\n", "precent\"\ncustom_metric = true\n"),
    )
    .unwrap();
    let out = tokio::process::Command::new(tandem_tests::bin("tandem-collector"))
        .args(["rules", "check"])
        .arg(&file)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `tandem-collector ARGS` (no `--data-dir` added); (success, stdout, stderr).
async fn collector_cli(args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(tandem_tests::bin("tandem-collector"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Item 9: an unknown device or tenant is "no such …" with a non-zero exit, and a
/// read command aimed at a folder that is not a data dir creates nothing there.
#[tokio::test]
async fn unknown_names_and_wrong_data_dirs_are_errors() {
    let site = Site::new().await.unwrap();
    site.cli_ok(&["tenant", "create", "acme"]).await;

    let (ok, out, err) = site.cli(&["inspect", "--device", "nope"]).await;
    assert!(!ok, "inspect of an unknown device succeeded: {out}");
    assert!(err.contains("no such device: \"nope\""), "{err}");
    let (ok, out, err) = site.cli(&["alerts", "list", "--tenant", "nobody"]).await;
    assert!(!ok, "alerts of an unknown tenant succeeded: {out}");
    assert!(err.contains("no such tenant: \"nobody\""), "{err}");
    let (ok, _, err) = site.cli(&["alerts", "list", "--device", "nope"]).await;
    assert!(!ok && err.contains("no such device"), "{err}");
    let (ok, _, err) = site.cli(&["site", "list", "--tenant", "nobody"]).await;
    assert!(!ok && err.contains("no such tenant"), "{err}");
    // A known tenant with nothing firing is a plain, successful answer.
    let out = site.cli_ok(&["alerts", "list", "--tenant", "acme"]).await;
    assert!(out.contains("no alerts"), "{out}");

    let elsewhere = tempfile::tempdir().unwrap();
    let dir = elsewhere.path().to_str().unwrap();
    for args in [
        &["device", "list", "--data-dir", dir][..],
        &["tenant", "list", "--data-dir", dir],
        &["token", "list", "--data-dir", dir],
        &["inspect", "--data-dir", dir],
        &["alerts", "list", "--data-dir", dir],
        &["alerts", "history", "--data-dir", dir],
    ] {
        let (ok, out, err) = collector_cli(args).await;
        assert!(
            !ok,
            "{args:?} succeeded on a folder that is not a data dir: {out}"
        );
        assert!(err.contains("not a Tandem data dir"), "{args:?}: {err}");
    }
    let left: Vec<_> = std::fs::read_dir(elsewhere.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "read commands left files behind: {left:?}");
}

/// Issue 11 item 3: every listing takes --tenant and --json and says when it is
/// empty; the data dir comes from --data-dir, else --config's `data_dir`, else
/// $TANDEM_DATA_DIR.
#[tokio::test]
async fn listings_filter_by_tenant_print_json_and_find_the_data_dir() {
    let site = Site::new().await.unwrap();
    let out = site.cli_ok(&["tenant", "list"]).await;
    assert!(out.starts_with("no tenants yet"), "{out}");
    for t in ["acme", "globex"] {
        site.cli_ok(&["tenant", "create", t]).await;
        site.cli_ok(&["site", "create", "--tenant", t, "hq"]).await;
    }
    let out = site.cli_ok(&["tenant", "list", "--tenant", "globex"]).await;
    assert!(out.contains("globex") && !out.contains("acme"), "{out}");
    let json = site
        .cli_ok(&["site", "list", "--tenant", "acme", "--json"])
        .await;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v.as_array().map(|a| a.len()), Some(1), "{json}");
    assert_eq!(v[0]["tenant"], "acme", "{json}");
    let out = site.cli_ok(&["device", "list", "--tenant", "acme"]).await;
    assert!(out.starts_with("no devices yet"), "{out}");
    let out = site.cli_ok(&["token", "list", "--tenant", "acme"]).await;
    assert!(out.starts_with("no enrollment tokens yet"), "{out}");
    let json = site.cli_ok(&["token", "list", "--json"]).await;
    assert_eq!(json.trim(), "[]");
    let out = site
        .cli_ok(&["alerts", "history", "--tenant", "acme"])
        .await;
    assert!(out.contains("no alert history yet"), "{out}");
    let out = site
        .cli_ok(&["alerts", "list", "--severity", "critical"])
        .await;
    assert!(out.contains("no alerts active"), "{out}");
    let (ok, _, err) = site.cli(&["token", "list", "--tenant", "nobody"]).await;
    assert!(!ok && err.contains("no such tenant"), "{err}");

    // Without --data-dir: $TANDEM_DATA_DIR, and --config's data_dir before it.
    let run = |args: &[&str], env: Option<&std::path::Path>| {
        let mut cmd = std::process::Command::new(tandem_tests::bin("tandem-collector"));
        cmd.args(args).env_remove("TANDEM_DATA_DIR");
        if let Some(dir) = env {
            cmd.env("TANDEM_DATA_DIR", dir);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&["tenant", "list"], Some(&site.data_dir()));
    assert!(
        ok && out.contains("acme") && out.contains("globex"),
        "{out}{err}"
    );
    let cfg = site.dir.path().join("cli.toml");
    std::fs::write(
        &cfg,
        format!("data_dir = {:?}\n", site.data_dir().display().to_string()),
    )
    .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let (ok, out, err) = run(
        &["tenant", "list", "--config", cfg.to_str().unwrap()],
        Some(elsewhere.path()),
    );
    assert!(
        ok && out.contains("acme"),
        "--config wins over the environment: {out}{err}"
    );
    let (ok, _, err) = run(&["tenant", "list"], Some(elsewhere.path()));
    assert!(!ok && err.contains("not a Tandem data dir"), "{err}");
}

/// A Telemetry client over real mTLS that verifies the server as `domain`.
async fn client_as(
    addr: std::net::SocketAddr,
    creds: &tandem_tests::Creds,
    domain: &str,
) -> anyhow::Result<tandem_proto::v1::telemetry_client::TelemetryClient<tonic::transport::Channel>>
{
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&creds.ca_pem))
        .domain_name(domain)
        .identity(Identity::from_pem(
            creds.cert_pem.as_deref().unwrap(),
            creds.key_pem.as_deref().unwrap(),
        ));
    let ch = Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await?;
    Ok(tandem_proto::v1::telemetry_client::TelemetryClient::new(ch))
}

/// Item 12: `pki server-cert --name` gives the server certificate a new name under
/// the same CA; a device enrolled before keeps connecting, now by the new name.
#[tokio::test]
async fn server_cert_is_reissued_with_a_new_name_under_the_same_ca() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let creds = site.issue("acme", "before-rename");
    let ca_before = site.ca_pem();

    let collector = site.start_collector("").await.unwrap();
    let refused = client_as(collector.addr, &creds, "collector.example.net").await;
    let Err(refused) = refused else {
        panic!("the old certificate already had the name");
    };
    let err = format!("{refused:#}");
    assert!(err.contains("not valid for name"), "{err}");
    collector.kill9().await; // and reaped: the next collector on this data dir needs its lock

    let out = site
        .cli_ok(&["pki", "server-cert", "--name", "collector.example.net"])
        .await;
    assert!(
        out.contains("names now:") && out.contains("collector.example.net"),
        "{out}"
    );
    assert_eq!(site.ca_pem(), ca_before, "the CA changed");

    let collector = site.start_collector("").await.unwrap();
    let mut c = client_as(collector.addr, &creds, "collector.example.net")
        .await
        .unwrap();
    let (_stream, welcome) = tandem_tests::Stream::hello(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", collector.log()));
    assert_eq!(welcome.device_id, "before-rename");
}

/// Item 10: `token create` refuses an address on the telemetry port (or any port
/// but the enrollment listener's, unless port-forwarded), and an agent given such a
/// token anyway says which port it reached and that it is the telemetry port.
#[tokio::test]
async fn a_token_aimed_at_the_telemetry_port_is_named_as_such() {
    let site = Site::new().await.unwrap();
    let (tport, eport) = (free_port(), free_port());
    let cfg = site.dir.path().join("collector.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"collector\"\n[enrollment]\nlisten = \"127.0.0.1:{eport}\"\n[telemetry]\nlisten = \"127.0.0.1:{tport}\"\n"
        ),
    )
    .unwrap();
    let cfg_s = cfg.to_str().unwrap();
    site.cli_ok(&["tenant", "create", "acme"]).await;
    let create = |addr: String, extra: &'static [&'static str]| {
        let site = &site;
        async move {
            let mut args = vec!["token", "create", "--tenant", "acme", "--config", cfg_s];
            args.extend_from_slice(&["--address", &addr]);
            args.extend_from_slice(extra);
            site.cli(&args).await
        }
    };
    let (ok, _, err) = create(format!("localhost:{tport}"), &[]).await;
    assert!(!ok, "a token on the telemetry port was made");
    assert!(
        err.contains(&format!("--address port {tport} is the telemetry listener")),
        "{err}"
    );
    let (ok, _, err) = create(format!("localhost:{tport}"), &["--port-forwarded"]).await;
    assert!(!ok && err.contains("telemetry listener"), "{err}");
    let (ok, _, err) = create("localhost:9".into(), &[]).await;
    assert!(!ok && err.contains("--port-forwarded"), "{err}");
    let (ok, good, err) = create(format!("localhost:{eport}"), &[]).await;
    assert!(ok, "{err}");

    // The same token with the telemetry port, as a hand-edited one would be.
    let mut t = tandem_proto::token::EnrollToken::parse(good.trim()).unwrap();
    t.address = format!("localhost:{tport}");
    let collector = site.start_collector("").await.unwrap();
    assert_eq!(collector.addr.port(), tport);
    let agent = site.dir.path().join("lost");
    std::fs::create_dir_all(&agent).unwrap();
    std::fs::write(agent.join("agent.toml"), "interval_secs = 1\n").unwrap();
    let out = tokio::process::Command::new(tandem_tests::bin("tandem-agent"))
        .args(["enroll", "--token", &t.encode(), "--config"])
        .arg(agent.join("agent.toml"))
        .env("RUST_BACKTRACE", "0")
        .env_remove("TANDEM_ENROLL_TOKEN")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("reached port {tport}")) && err.contains("telemetry port"),
        "{err}"
    );
    assert!(!err.contains("intercepts"), "{err}");
    // The right port still enrolls.
    let out = tokio::process::Command::new(tandem_tests::bin("tandem-agent"))
        .args(["enroll", "--token", good.trim(), "--config"])
        .arg(agent.join("agent.toml"))
        .env_remove("TANDEM_ENROLL_TOKEN")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Item 8: a revoked device's agent says it was revoked and must be re-enrolled,
/// then retries slowly; the collector logs the refused handshakes once; the
/// device's alerts are closed and it gains no offline alert.
#[tokio::test]
async fn a_revoked_device_is_told_so_and_its_alerts_close() {
    let site = Site::new().await.unwrap();
    let rules = site.dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("r.toml"),
        "[[rule]]\nname = \"up\"\nkind = \"threshold\"\nmetric = \"system.uptime.secs\"\nwarning = { above = 1 }\n\
         [[rule]]\nname = \"gone\"\nkind = \"offline\"\nafter_secs = 3\n",
    )
    .unwrap();
    let collector = site
        .start_collector("[alerts]\nrules_dir = \"rules\"\ntick_secs = 1\n")
        .await
        .unwrap();
    let dir = site.provision_agent("doomed", &collector.url(), "").await;
    let agent = AgentProc::start(&dir).await;
    let firing = |rule: &str| {
        site.count(&format!(
            "SELECT count(*) FROM alert_instances WHERE device_id = 'doomed' AND rule = '{rule}' AND state = 'firing'"
        ))
    };
    wait_for(
        Duration::from_secs(20),
        "the uptime alert to fire",
        || async { firing("up") == 1 },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", collector.log()));

    site.cli_ok(&["device", "revoke", "doomed", "--yes"]).await;
    wait_for(
        Duration::from_secs(15),
        "the agent to say it was revoked",
        || async { agent.log().contains("re-enroll") },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.log()));
    wait_for(
        Duration::from_secs(10),
        "the device's alerts to close",
        || async { firing("up") == 0 },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", collector.log()));
    // Longer than the offline rule's window: no offline alert for a revoked device,
    // and the agent does not hammer the collector.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(firing("gone"), 0, "a revoked device went 'offline'");
    assert_eq!(firing("up"), 0);
    let alog = agent.log();
    assert_eq!(
        count(&alog, "re-enroll"),
        1,
        "the agent repeats the revocation message:\n{alog}"
    );
    assert!(
        count(&alog, "uplink failed") <= 1,
        "fast retries after revocation:\n{alog}"
    );
    let clog = collector.log();
    assert!(
        count(&clog, "revoked certificate refused") <= 1,
        "the collector logs every refused retry:\n{clog}"
    );
}

/// Item 8: `device remove` asks for the device id unless --yes, keeps the data by
/// default, deletes it with --purge, and cuts the device off either way.
#[tokio::test]
async fn device_remove_confirms_and_keeps_or_purges() {
    use tokio::io::AsyncWriteExt;
    let site = Site::new().await.unwrap();
    let collector = site.start_collector("").await.unwrap();
    let keep = site.provision_agent("keep-me", &collector.url(), "").await;
    let purge = site.provision_agent("purge-me", &collector.url(), "").await;
    let a = AgentProc::start(&keep).await;
    let b = AgentProc::start(&purge).await;
    let samples = |d: &str| {
        site.count(&format!(
            "SELECT count(*) FROM samples WHERE series_id IN (SELECT id FROM series WHERE device_id = '{d}')"
        ))
    };
    wait_for(
        Duration::from_secs(20),
        "both agents to deliver samples",
        || async { samples("keep-me") > 0 && samples("purge-me") > 0 },
    )
    .await
    .unwrap();
    a.kill9().await;
    b.kill9().await;

    let device_cmd = |verb: &'static str, args: Vec<String>, answer: &'static str| {
        let data_dir = site.data_dir();
        async move {
            let mut child = tokio::process::Command::new(tandem_tests::bin("tandem-collector"))
                .args(["device", verb])
                .args(&args)
                .arg("--data-dir")
                .arg(data_dir)
                .env("RUST_BACKTRACE", "0")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(answer.as_bytes()).await.unwrap();
            drop(stdin);
            let out = child.wait_with_output().await.unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    // A wrong answer changes nothing, for remove and for revoke.
    let (ok, _, err) = device_cmd("remove", vec!["keep-me".into()], "yes\n").await;
    assert!(!ok && err.contains("not confirmed"), "{err}");
    assert!(err.contains("its data is kept"), "{err}");
    let (ok, _, err) = device_cmd("revoke", vec!["keep-me".into()], "y\n").await;
    assert!(!ok && err.contains("not confirmed"), "{err}");
    assert!(err.contains("must be re-enrolled"), "{err}");
    assert_eq!(
        site.count("SELECT count(*) FROM devices WHERE revoked_ms IS NOT NULL"),
        0
    );
    // Typed back: removed, data kept.
    let (ok, out, err) = device_cmd("remove", vec!["keep-me".into()], "keep-me\n").await;
    assert!(ok, "{err}");
    assert!(out.contains("its data is kept"), "{out}");
    assert!(samples("keep-me") > 0);
    // --purge --yes: no question, data gone.
    let before = samples("purge-me");
    assert!(before > 0);
    let (ok, out, err) = device_cmd(
        "remove",
        vec!["purge-me".into(), "--purge".into(), "--yes".into()],
        "",
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("rows of its data deleted"), "{out}");
    assert_eq!(samples("purge-me"), 0);
    assert_eq!(
        site.count(
            "SELECT count(*) FROM devices WHERE removed_ms IS NOT NULL AND revoked_ms IS NOT NULL"
        ),
        2
    );
    let (ok, _, err) = device_cmd("remove", vec!["nobody".into(), "--yes".into()], "").await;
    assert!(!ok && err.contains("no such device"), "{err}");

    // Cut off: the running collector refuses the removed device's agent.
    let b = AgentProc::start(&purge).await;
    wait_for(
        Duration::from_secs(15),
        "the removed agent to be told",
        || async { b.log().contains("re-enroll") },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", b.log()));
    collector.kill9().await; // and reaped: the next collector on this data dir needs its lock
}

/// Item 13: refused handshakes are a warning an operator sees, but one a minute
/// however many a scanner makes; so are rate-limited enrollment attempts.
#[tokio::test]
async fn refusals_a_peer_can_repeat_are_logged_once_a_minute() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let collector = site
        .start_collector_with("", "attempts_per_minute = 1")
        .await
        .unwrap();
    let anonymous = tandem_tests::Creds {
        ca_pem: site.ca_pem(),
        cert_pem: None,
        key_pem: None,
    };
    for _ in 0..5 {
        let attempt = async {
            let mut c = tandem_tests::client(collector.addr, &anonymous).await?;
            tandem_tests::Stream::hello(&mut c).await
        };
        assert!(attempt.await.is_err());
    }
    wait_for(
        Duration::from_secs(10),
        "a refused handshake to be logged",
        || async { collector.log().contains("tls handshake refused") },
    )
    .await
    .unwrap();

    site.cli_ok(&["tenant", "create", "acme"]).await;
    let token = site
        .cli_ok(&[
            "token",
            "create",
            "--tenant",
            "acme",
            "--address",
            &collector.enroll_addr.to_string(),
        ])
        .await;
    let mut t = tandem_proto::token::EnrollToken::parse(token.trim()).unwrap();
    t.secret = [7; 32];
    let agent = site.dir.path().join("guesser");
    std::fs::create_dir_all(&agent).unwrap();
    std::fs::write(agent.join("agent.toml"), "interval_secs = 1\n").unwrap();
    for _ in 0..4 {
        let out = tokio::process::Command::new(tandem_tests::bin("tandem-agent"))
            .args(["enroll", "--token", &t.encode(), "--config"])
            .arg(agent.join("agent.toml"))
            .env_remove("TANDEM_ENROLL_TOKEN")
            .output()
            .await
            .unwrap();
        assert!(!out.status.success());
    }
    wait_for(
        Duration::from_secs(10),
        "a rate-limited attempt to be logged",
        || async { collector.log().contains("enrollment attempt rate-limited") },
    )
    .await
    .unwrap();
    let log = collector.log();
    let warn_lines = |needle: &str| {
        log.lines()
            .filter(|l| l.contains(" WARN ") && l.contains(needle))
            .count()
    };
    assert_eq!(warn_lines("tls handshake refused"), 1, "{log}");
    assert_eq!(warn_lines("enrollment attempt rate-limited"), 1, "{log}");
}

/// `tandem-collector alerts list | head -1`: a reader that closed the pipe has what it
/// wanted, so each listing ends quietly and successfully instead of panicking on the
/// broken pipe (Rust ignores SIGPIPE). The reader is closed before the command starts,
/// so every write fails with EPIPE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_into_a_closed_pipe_end_quietly() {
    let site = Site::new().await.unwrap();
    site.cli_ok(&["tenant", "create", "acme"]).await;
    for args in [
        &["alerts", "list"][..],
        &["alerts", "list", "--json"],
        &["alerts", "history"],
        &["alerts", "silences"],
        &["notify", "log"],
        &["user", "list"],
        &["tenant", "list"],
        &["device", "list"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(tandem_tests::bin("tandem-collector"))
            .args(args)
            .arg("--data-dir")
            .arg(site.data_dir())
            .env("RUST_BACKTRACE", "0")
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && err.is_empty(),
            "{args:?} into a closed pipe: {}\n{err}",
            out.status
        );
    }
}
