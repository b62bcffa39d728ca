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

    // Asked while the agent is down: delivered when it connects again. The
    // collector must have taken the request in before the agent restarts: its
    // start-up patch report would otherwise answer the request first, and an
    // answered request is rightly never sent (the CI run of 2026-12-04 saw that).
    assert!(agent.terminate().await, "agent stops cleanly");
    site.cli_ok(&["device", "check-patches", "patchy"]).await;
    wait_for(
        Duration::from_secs(30),
        "the collector to take in the request for the offline device",
        || {
            let n = collector
                .log()
                .matches("asking the device to check its patches")
                .count();
            async move { n >= 2 }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", collector.log()));
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
    // The start-up check answers it, or one more check right after it does.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_is_stored_and_not_sent_again_while_unchanged() {
    crate::crypto();
    // The package list must not change between the two runs.
    let _turn = crate::HOST_PACKAGES.lock().await;
    let site = Site::new().await.unwrap();
    let collector = site.start_collector("").await.unwrap();
    let dir = site
        .provision_agent("inv-1", &collector.url(), "patch_interval_secs = 86400\n")
        .await;
    let agent = AgentProc::start(&dir).await;
    let inv_seq = |site: &Site| {
        site.count("SELECT coalesce(max(seq), 0) FROM inventories WHERE device_id = 'inv-1'")
    };
    wait_for(Duration::from_secs(120), "an inventory stored", || {
        let n = inv_seq(&site);
        async move { n > 0 }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", agent.log(), collector.log()));
    let first = inv_seq(&site);
    let (os, source, error, count): (String, String, String, i64) = site
        .db()
        .query_row(
            "SELECT os_name, software_source, software_error, software_count
             FROM inventories WHERE device_id = 'inv-1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert!(!os.is_empty(), "an OS name");
    if std::path::Path::new("/usr/bin/dpkg-query").exists() {
        assert_eq!(source, "dpkg");
        assert_eq!(error, "", "dpkg-query answers on this machine");
        assert!(count > 100, "a real package list: {count}");
    } else {
        assert!(
            count > 0 || !error.is_empty(),
            "a list or an error, never silence"
        );
    }
    assert_eq!(
        site.count("SELECT count(*) FROM inventory_software WHERE device_id = 'inv-1'"),
        count,
        "every program stored"
    );
    assert_eq!(
        site.count("SELECT count(*) FROM inventory_changes WHERE device_id = 'inv-1'"),
        0,
        "the first list is not a change"
    );

    // inspect shows the inventory and the patch status.
    wait_for(Duration::from_secs(150), "a patch report", || {
        let n = site.count("SELECT count(*) FROM patch_reports WHERE device_id = 'inv-1'");
        async move { n > 0 }
    })
    .await
    .unwrap();
    let out = site.cli_ok(&["inspect", "--device", "inv-1"]).await;
    assert!(out.contains(&format!("inventory: {os}")), "{out}");
    assert!(
        out.contains(&format!("{count} programs ({source})")),
        "{out}"
    );
    assert!(out.contains("  patches: "), "{out}");
    assert!(!out.contains("patches: no report yet"), "{out}");
    let json = site
        .cli_ok(&["inspect", "--device", "inv-1", "--json", "--software"])
        .await;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["inventory"]["software_count"], count);
    assert_eq!(v[0]["software"].as_array().unwrap().len() as i64, count);
    assert!(v[0]["patches"]["source"].is_string(), "{json}");

    // A restart with nothing changed sends no new inventory.
    assert!(agent.terminate().await, "agent stops cleanly");
    assert!(dir.join("state/inventory_sent.sha256").exists());
    let agent = AgentProc::start(&dir).await;
    wait_for(
        Duration::from_secs(120),
        "the unchanged inventory skipped",
        || {
            let skipped = agent.log().contains("inventory unchanged; not sent");
            async move { skipped }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.log()));
    assert_eq!(inv_seq(&site), first, "no new inventory stored");
    assert!(agent.terminate().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_once_inventory_prints_os_and_software() {
    let out = tokio::process::Command::new(tandem_tests::bin("tandem-agent"))
        .args(["collect", "--once", "--inventory"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let inv = &v["inventory"];
    assert!(!inv["os_name"].as_str().unwrap().is_empty(), "{inv}");
    assert!(inv["cpu_cores"].as_u64().unwrap() >= 1);
    assert!(inv["memory_bytes"].as_u64().unwrap() > 1_000_000);
    let software = inv["software"].as_array().unwrap();
    // A list, or an error saying why there is none: never silence.
    assert!(
        !software.is_empty() || inv["software_error"].is_string(),
        "{inv}"
    );
    assert!(v["values"].is_array(), "the sample is still printed");
}
