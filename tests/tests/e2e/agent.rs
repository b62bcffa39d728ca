//! The real agent binary against the real collector binary.

use std::time::Duration;

use tandem_tests::{Site, bin, wait_for};
use tokio::process::Command;

fn agent_last_seq(state: &std::path::Path) -> u64 {
    std::fs::read_to_string(state.join("last_seq"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_once_prints_a_sample_as_json() {
    let out = Command::new(bin("tandem-agent"))
        .args(["collect", "--once"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["name"].as_str())
        .collect();
    for want in [
        "cpu.usage.percent",
        "mem.total.bytes",
        "mem.used.percent",
        "swap.total.bytes",
        "load.1m",
        "system.uptime.secs",
        "system.boot.time.unix",
        "fs.used.percent",
        // Every machine has processes; the agent measures itself on Linux.
        "process.top.mem.bytes",
        "agent.rss_bytes",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    // The kernel's own counters: one read of a /proc file each, Linux only.
    if cfg!(target_os = "linux") {
        for want in [
            "cpu.idle.percent",
            "mem.cached.bytes",
            "files.open",
            "system.threads",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
    }
    // The collector refuses a batch naming a series twice.
    let mut keys: Vec<(String, String)> = v["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["name"].as_str().unwrap().to_owned(),
                x["dimension"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "a series named twice");
    let mem = v["values"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "mem.total.bytes")
        .unwrap();
    assert!(mem["value"].as_f64().unwrap() > 1e6, "a real memory size");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_samples_survive_a_collector_crash_and_arrive_exactly_once() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let collector = site.start_collector("").await.unwrap();
    let port = collector.addr.port();
    // Provision the agent exactly as an operator would, with the CLI.
    let toml_path = site
        .provision_agent_toml(&collector.url(), "acme", "agent-1")
        .await
        .unwrap();
    let agent_dir = toml_path.parent().unwrap().to_path_buf();
    let mut agent = site.spawn_agent(&toml_path, "agent").unwrap();

    let stored =
        |site: &Site| site.count("SELECT count(*) FROM batches WHERE device_id = 'agent-1'");
    wait_for(Duration::from_secs(30), "3 batches from the agent", || {
        let n = stored(&site);
        async move { n >= 3 }
    })
    .await
    .unwrap();
    let host: String = site
        .db()
        .query_row(
            "SELECT hostname FROM devices WHERE id = 'agent-1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(host, hostname::get().unwrap().to_string_lossy());

    // Crash the collector; the agent keeps sampling into its spool meanwhile.
    collector.kill9().await;
    let state = agent_dir.join("state");
    let at_kill = agent_last_seq(&state);
    wait_for(
        Duration::from_secs(30),
        "the agent to spool during the outage",
        || {
            let n = agent_last_seq(&state);
            async move { n >= at_kill + 3 }
        },
    )
    .await
    .unwrap();
    std::fs::write(
        site.dir.path().join("collector.toml"),
        format!(
            "data_dir = \"collector\"\n[enrollment]\nlisten = \"127.0.0.1:0\"\n[telemetry]\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    )
    .unwrap();
    let collector = site.start_collector("").await.unwrap();
    assert_eq!(collector.addr.port(), port);

    // The agent reconnects (backoff up to a few seconds) and drains its spool.
    let spooled = agent_last_seq(&state) as i64;
    wait_for(Duration::from_secs(90), "the spool to drain", || {
        let n = site.count("SELECT coalesce(max(acked_seq),0) FROM devices WHERE id = 'agent-1'");
        async move { n >= spooled }
    })
    .await
    .unwrap();

    // Stop the agent cleanly, then: every seq it ever assigned is stored, once.
    let pid = agent.id().unwrap();
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let status = tokio::time::timeout(Duration::from_secs(20), agent.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "agent exits 0 on SIGTERM");
    let last = agent_last_seq(&state) as i64;
    let (n, min, max): (i64, i64, i64) = site
        .db()
        .query_row(
            "SELECT count(*), min(seq), max(seq) FROM batches WHERE device_id = 'agent-1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    eprintln!(
        "agent log:\n{}\ncollector log:\n{}",
        std::fs::read_to_string(site.dir.path().join("agent.log")).unwrap_or_default(),
        collector.log()
    );
    assert_eq!((min, max), (1, last), "from the first sample to the last");
    assert_eq!(n, last, "no gap, nothing twice");
    let left = std::fs::read_dir(state.join("spool")).unwrap().count();
    assert_eq!(
        left, 0,
        "the agent's spool is empty once everything is acknowledged"
    );
    assert!(collector.terminate().await);
}

/// `collect --once --services` on this machine. Where systemd runs (PID 1), a unit
/// that runs here is 1 and a unit that does not exist is 0. Without systemd (this
/// build container: `systemctl` answers "System has not been booted with systemd"),
/// the agent must send no `service.up` at all, never a made-up 0, and say why; the
/// parser itself is tested on `systemctl show` output in the agent's unit tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_once_reports_configured_services_or_says_why_not() {
    let out = Command::new(bin("tandem-agent"))
        .args([
            "collect",
            "--once",
            "--services",
            "systemd-journald,tandem-no-such-unit",
        ])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let up: Vec<(String, f64)> = v["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["name"] == "service.up")
        .map(|x| {
            (
                x["dimension"].as_str().unwrap().to_owned(),
                x["value"].as_f64().unwrap(),
            )
        })
        .collect();
    if std::path::Path::new("/run/systemd/system").exists() {
        assert_eq!(
            up,
            [
                ("systemd-journald".to_owned(), 1.0),
                ("tandem-no-such-unit".to_owned(), 0.0)
            ],
            "{stderr}"
        );
        assert!(stderr.contains("does not exist"), "{stderr}");
    } else {
        eprintln!("systemd is not PID 1 here: checking that nothing is made up");
        assert!(up.is_empty(), "{up:?}");
        assert!(
            stderr.contains("service.up not reported"),
            "the reason is logged: {stderr}"
        );
    }
}

/// A budget no agent can meet (0 ms of CPU a minute, 0 MiB) drives the real agent
/// into shedding from its first sample: `agent.shedding` = 1 arrives at the real
/// collector with the measurements, the optional top-process scan never runs, and
/// the log names what was shed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_over_its_budget_sheds_optional_work_and_reports_it() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let collector = site.start_collector("").await.unwrap();
    let dir = site
        .provision_agent(
            "frugal",
            &collector.url(),
            "[budget]\ncpu_ms_per_min = 0\nrss_mib = 0\n",
        )
        .await;
    let agent = tandem_tests::AgentProc::start(&dir).await;
    let latest = |name: &str| -> Option<f64> {
        site.db()
            .query_row(
                "SELECT v.value FROM samples v JOIN series s ON s.id = v.series_id
                 WHERE s.device_id = 'frugal' AND s.name = ?1 ORDER BY v.ts_ms DESC LIMIT 1",
                [name],
                |r| r.get(0),
            )
            .ok()
    };
    wait_for(
        Duration::from_secs(60),
        "agent.shedding = 1 and a CPU rate at the collector",
        || {
            let ok =
                latest("agent.shedding") == Some(1.0) && latest("agent.cpu_ms_per_min").is_some();
            async move { ok }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log()));
    let rss = latest("agent.rss_bytes").unwrap();
    assert!(rss > 1e6, "a real RSS: {rss}");
    let shed = site.count(
        "SELECT count(*) FROM series WHERE device_id = 'frugal' AND name LIKE 'process.top.%'",
    );
    assert_eq!(shed, 0, "the top-process scan was shed");
    let log = agent.log();
    assert!(
        log.contains("shedding optional work") && log.contains("top processes"),
        "{log}"
    );
    assert!(agent.terminate().await);
    assert!(collector.terminate().await);
}
