//! Enrollment at boot, as a package's or MSI's first start does it: the agent is
//! started with a token (here the installer's token file) while the collector is
//! not up yet; it keeps retrying and enrolls within one backoff step once the
//! collector listens, removes the used token file, and ignores a token given later.

use std::path::Path;
use std::time::{Duration, Instant};

use tandem_tests::{Site, bin, free_port, wait_for};
use tokio::process::{Child, Command};

fn spawn(dir: &Path, log: &str, token_env: Option<&str>) -> Child {
    let logf = std::fs::File::create(dir.join(log)).unwrap();
    let mut cmd = Command::new(bin("tandem-agent"));
    cmd.arg("run")
        .arg("--config")
        .arg(dir.join("agent.toml"))
        .env("RUST_LOG", "info")
        .env_remove("TANDEM_ENROLL_TOKEN")
        .stderr(logf)
        .kill_on_drop(true);
    if let Some(t) = token_env {
        cmd.env("TANDEM_ENROLL_TOKEN", t);
    }
    cmd.spawn().unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

async fn stop(mut child: Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
    }
    let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_waits_for_the_collector_and_uses_the_token_file_once() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let (tport, eport) = (free_port(), free_port());
    std::fs::write(
        site.dir.path().join("collector.toml"),
        format!(
            "data_dir = \"collector\"\n[enrollment]\nlisten = \"127.0.0.1:{eport}\"\n[telemetry]\nlisten = \"127.0.0.1:{tport}\"\n"
        ),
    )
    .unwrap();
    site.cli_ok(&["tenant", "create", "acme"]).await;
    let token = site
        .cli_ok(&[
            "token",
            "create",
            "--address",
            &format!("127.0.0.1:{eport}"),
            "--tenant",
            "acme",
        ])
        .await
        .trim()
        .to_owned();

    // The installer left the token in a file; nothing listens yet.
    let dir = site.dir.path().join("agent");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("agent.toml"),
        "interval_secs = 1\nenroll_retry_max_secs = 2\n",
    )
    .unwrap();
    let token_file = dir.join("enroll.token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let mut agent = spawn(&dir, "agent.log", None);
    let log = || read(&dir.join("agent.log"));
    let retries = || log().matches("cannot enroll yet; retrying").count();
    wait_for(Duration::from_secs(20), "three failed attempts", || {
        let n = retries();
        async move { n >= 3 }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", log()));
    assert!(
        agent.try_wait().unwrap().is_none(),
        "the agent keeps retrying instead of exiting:\n{}",
        log()
    );
    assert!(log().contains("attempt=1"), "{}", log());
    assert!(token_file.exists(), "the token file stays until it is used");

    // The collector comes up: enrolled within one backoff step (2 s, +20 % jitter),
    // plus the handshake on a loaded machine.
    let collector = site.start_collector("").await.unwrap();
    let up = Instant::now();
    wait_for(Duration::from_secs(20), "the agent to enroll", || {
        let ok = dir.join("state/enrollment.toml").exists();
        async move { ok }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", log()));
    let took = up.elapsed();
    assert!(
        took < Duration::from_millis(2400) + Duration::from_secs(4),
        "enrolled {took:?} after the collector started"
    );
    let enrollment = read(&dir.join("state/enrollment.toml"));
    let device = enrollment
        .lines()
        .find_map(|l| l.strip_prefix("device_id = "))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("no device_id in {enrollment}"));
    wait_for(Duration::from_secs(20), "batches from the agent", || {
        let n = site.count(&format!(
            "SELECT count(*) FROM batches WHERE device_id = '{device}'"
        ));
        async move { n >= 2 }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", log()));
    // One warning per attempt, and the success line counts them all.
    let failed = retries();
    assert!(
        log().contains(&format!("attempts={}", failed + 1)),
        "{failed} warnings, one per attempt:\n{}",
        log()
    );
    assert!(!token_file.exists(), "the used token file is removed");
    assert!(log().contains("used enrollment token file removed"));
    stop(agent).await;

    // A token for an enrolled device (the installer run again) is ignored, once.
    std::fs::write(&token_file, &token).unwrap();
    let again = spawn(&dir, "again.log", Some(&token));
    let log2 = || read(&dir.join("again.log"));
    wait_for(Duration::from_secs(20), "the restarted agent", || {
        let s = log2().contains("agent started");
        async move { s }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", log2()));
    assert_eq!(
        log2().matches("enrollment token ignored").count(),
        1,
        "{}",
        log2()
    );
    assert!(log2().contains(&device), "{}", log2());
    assert!(!log2().contains("cannot enroll"), "{}", log2());
    assert!(!token_file.exists(), "a token not needed is removed too");
    assert!(
        read(&dir.join("state/enrollment.toml")).contains(&device),
        "same device"
    );
    stop(again).await;
    assert!(collector.terminate().await);
}
