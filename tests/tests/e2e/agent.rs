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
        "fs.used.percent",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
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
