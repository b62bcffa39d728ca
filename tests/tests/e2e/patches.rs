//! Patch checks on the collector's request, and the device inventory: the real
//! agent against the real collector.

use std::time::Duration;

use tandem_tests::{AgentProc, Site, wait_for};

fn patch_reports(site: &Site, device: &str) -> i64 {
    site.count(&format!(
        "SELECT count(*) FROM patch_reports WHERE device_id = '{device}'"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_check_patches_runs_a_check_now_and_waits_for_an_offline_device() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let collector = site.start_collector("").await.unwrap();
    // A day between checks: every report after the first is the CLI's doing.
    let dir = site
        .provision_agent("patchy", &collector.url(), "patch_interval_secs = 86400\n")
        .await;
    let agent = AgentProc::start(&dir).await;
    wait_for(
        Duration::from_secs(150),
        "the start-up patch report",
        || {
            let n = patch_reports(&site, "patchy");
            async move { n >= 1 }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.log()));

    let out = site.cli_ok(&["device", "check-patches", "patchy"]).await;
    assert!(out.contains("asked to check its patches"), "{out}");
    wait_for(Duration::from_secs(150), "a requested patch report", || {
        let n = patch_reports(&site, "patchy");
        async move { n >= 2 }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", agent.log(), collector.log()));
    assert!(
        agent
            .log()
            .contains("collector asked for a patch check now")
    );

    // Asked while the agent is down: delivered when it connects again.
    assert!(agent.terminate().await, "agent stops cleanly");
    site.cli_ok(&["device", "check-patches", "patchy"]).await;
    let before = patch_reports(&site, "patchy");
    let agent = AgentProc::start(&dir).await;
    wait_for(
        Duration::from_secs(60),
        "the waiting request delivered",
        || {
            let n = agent
                .log()
                .matches("collector asked for a patch check now")
                .count();
            async move { n >= 2 }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", agent.log(), collector.log()));
    // The start-up check answers it, or a second check does (coalesced or not).
    wait_for(
        Duration::from_secs(150),
        "a report after the restart",
        || {
            let n = patch_reports(&site, "patchy");
            async move { n > before }
        },
    )
    .await
    .unwrap();

    // Unknown devices are refused with a pointer to the list.
    let (ok, _, err) = site.cli(&["device", "check-patches", "ghost"]).await;
    assert!(!ok);
    assert!(err.contains("no device \"ghost\""), "{err}");
    assert!(agent.terminate().await);
}
