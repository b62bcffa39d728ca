//! Posture, backup freshness and local custom checks (issue #14): the real agent on
//! this machine against the real collector with a rules directory, state read from
//! the real SQLite file and through `inspect` and `posture`.

use std::time::Duration;

use tandem_tests::{AgentProc, Site, wait_for};

const RULES: &str = r#"
[[rule]]
name = "backup-old"
kind = "threshold"
metric = "backup.age.seconds"
dimension = "*"
warning = { above = 4 }

[[rule]]
name = "custom-check"
kind = "threshold"
metric = "check.status"
dimension = "*"
warning = { above = 0.5 }
critical = { above = 1.5 }
"#;

fn alert_state(site: &Site, rule: &str, device: &str, dim: &str) -> Option<String> {
    site.db()
        .query_row(
            "SELECT state FROM alert_instances WHERE rule = ?1 AND device_id = ?2 AND dimension = ?3",
            [rule, device, dim],
            |r| r.get(0),
        )
        .ok()
}

fn custom_check(site: &Site, device: &str, name: &str) -> Option<(i64, String)> {
    site.db()
        .query_row(
            "SELECT status, reason FROM custom_check_states WHERE device_id = ?1 AND name = ?2",
            [device, name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok()
}

fn pid_alive(pid: &str) -> bool {
    // Gone, or a zombie waiting for a reaper (containers without an init).
    std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_posture_backup_alert_and_custom_checks() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let rules = site.dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("posture.toml"), RULES).unwrap();
    let collector = site
        .start_collector("[alerts]\nrules_dir = \"rules\"\ntick_secs = 1\n")
        .await
        .unwrap();
    let backups = site.dir.path().join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    std::fs::write(backups.join("monday.tar"), "x").unwrap();
    let pidfile = site.dir.path().join("slow.pid");
    let extra = format!(
        "interval_secs = 1\npatch_interval_secs = 86400\n\
         [[backup]]\nname = \"nas\"\npath = \"{}\"\nmax_age_secs = 60\ncheck_interval_secs = 600\n\
         [[check]]\nname = \"slow\"\ncommand = [\"sleep 30 & echo $! > {}; wait\"]\nshell = true\ninterval_secs = 600\ntimeout_secs = 1\n\
         [[check]]\nname = \"garbage\"\ncommand = [\"printf\", \"\\\\377\\\\376\\\\001\\\\n\"]\ninterval_secs = 600\n\
         [[check]]\nname = \"answer\"\ncommand = [\"echo\", \"42\"]\ninterval_secs = 600\nexpect_value = true\n",
        backups.display(),
        pidfile.display()
    );
    let dir = site
        .provision_agent("post-1", &collector.url(), &extra)
        .await;
    let agent = AgentProc::start(&dir).await;

    // The real posture of this machine: every check, each pass, fail or unknown;
    // an unknown one says why, a known one says what it read.
    wait_for(
        Duration::from_secs(60),
        "a posture report with the custom checks",
        || {
            let n =
                site.count("SELECT count(*) FROM custom_check_states WHERE device_id = 'post-1'");
            let p = site.count("SELECT count(*) FROM posture_checks WHERE device_id = 'post-1'");
            async move { n == 3 && p > 0 }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", agent.log(), collector.log()));
    let checks: Vec<(String, String, String, String)> = {
        let db = site.db();
        let mut st = db
            .prepare("SELECT check_name, state, evidence, reason FROM posture_checks WHERE device_id = 'post-1' ORDER BY check_name")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let names: Vec<&str> = checks.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "antivirus",
            "auto_updates",
            "disk_encryption",
            "firewall",
            "local_admins",
            "screen_lock",
            "ssh_password_auth",
            "ssh_root_login"
        ]
    );
    for (name, state, evidence, reason) in &checks {
        match state.as_str() {
            "unknown" => assert!(!reason.is_empty(), "{name}: unknown without a reason"),
            "pass" | "fail" => assert!(!evidence.is_empty(), "{name}: {state} without evidence"),
            other => panic!("{name}: state {other}"),
        }
        eprintln!("{name:<18} {state:<8} {evidence}{reason}");
    }
    // Linux reports no antivirus state: unknown, never a pass.
    assert_eq!(checks[0].1, "unknown");

    // The timed-out check: critical with the reason, and its child killed.
    let (status, reason) = custom_check(&site, "post-1", "slow").unwrap();
    assert_eq!(status, 2, "{reason}");
    assert!(
        reason.contains("did not finish within 1 s and was killed"),
        "{reason}"
    );
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    wait_for(Duration::from_secs(5), "the check's child killed", || {
        let alive = pid_alive(&pid);
        async move { !alive }
    })
    .await
    .unwrap();
    // Garbage output: a clear error, not a crash (the agent goes on sending).
    let (status, reason) = custom_check(&site, "post-1", "garbage").unwrap();
    assert_eq!(status, 3);
    assert!(reason.contains("output is not text"), "{reason}");
    assert_eq!(
        custom_check(&site, "post-1", "answer").unwrap(),
        (0, String::new())
    );
    wait_for(Duration::from_secs(20), "check.value{answer} = 42 stored", || {
        let n = site.count(
            "SELECT count(*) FROM samples v JOIN series s ON s.id = v.series_id
             WHERE s.device_id = 'post-1' AND s.name = 'check.value' AND s.dimension = 'answer' AND v.value = 42",
        );
        async move { n > 0 }
    })
    .await
    .unwrap();
    wait_for(
        Duration::from_secs(20),
        "custom-check critical for slow",
        || {
            let s = alert_state(&site, "custom-check", "post-1", "slow");
            async move { s.as_deref() == Some("firing") }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", collector.log()));

    // The backup ages past its window (4 s in the rule): the alert fires; a new
    // file (seen through the watch, not the 10-minute recheck) clears it.
    wait_for(Duration::from_secs(30), "backup-old firing", || {
        let s = alert_state(&site, "backup-old", "post-1", "nas");
        async move { s.as_deref() == Some("firing") }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", agent.log(), collector.log()));
    std::fs::write(backups.join("tuesday.tar"), "y").unwrap();
    wait_for(Duration::from_secs(20), "backup-old back to ok", || {
        let s = alert_state(&site, "backup-old", "post-1", "nas");
        async move { s.as_deref() == Some("ok") }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", agent.log(), collector.log()));
    wait_for(
        Duration::from_secs(10),
        "the new backup's report stored",
        || {
            let ev: String = site
            .db()
            .query_row(
                "SELECT evidence FROM backup_states WHERE device_id = 'post-1' AND name = 'nas'",
                [],
                |r| r.get(0),
            )
            .unwrap_or_default();
            async move { ev.contains("tuesday.tar") }
        },
    )
    .await
    .unwrap();

    // inspect and the tenant summary show it.
    let out = site.cli_ok(&["inspect", "--device", "post-1"]).await;
    assert!(out.contains("  posture: "), "{out}");
    assert!(out.contains("antivirus          unknown"), "{out}");
    assert!(out.contains("backup nas: fresh (path)"), "{out}");
    assert!(out.contains("check slow: critical: "), "{out}");
    let out = site.cli_ok(&["posture", "--tenant", "acme"]).await;
    assert!(
        out.contains("tenant acme: 1 devices reporting posture"),
        "{out}"
    );
    assert!(
        out.contains("custom check slow on post-1: critical"),
        "{out}"
    );
    let json = site.cli_ok(&["posture", "--json"]).await;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let av = v[0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "antivirus")
        .unwrap();
    assert_eq!(
        (av["pass"].as_i64(), av["unknown"].as_i64()),
        (Some(0), Some(1))
    );
    let (ok, _, err) = site.cli(&["posture", "--tenant", "nobody"]).await;
    assert!(!ok);
    assert!(err.contains("no tenant \"nobody\""), "{err}");
    assert!(agent.terminate().await, "agent stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_once_posture_prints_checks_with_evidence() {
    let out = tokio::process::Command::new(tandem_tests::bin("tandem-agent"))
        .args(["collect", "--once", "--posture"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = v["posture"]["posture"].as_array().unwrap();
    assert_eq!(checks.len(), 8, "{checks:?}");
    for c in checks {
        match c["state"].as_str().unwrap() {
            "unknown" => assert!(!c["reason"].as_str().unwrap().is_empty(), "{c}"),
            _ => assert!(!c["evidence"].as_str().unwrap().is_empty(), "{c}"),
        }
    }
    let values = v["values"].as_array().unwrap();
    assert!(
        values.iter().any(|x| x["name"] == "posture.unknown"
            && x["dimension"] == "antivirus"
            && x["value"] == 1.0),
        "the metrics are printed too"
    );
    assert!(
        !values
            .iter()
            .any(|x| x["name"] == "posture.pass" && x["dimension"] == "antivirus"),
        "an unknown check has no pass metric"
    );
}
