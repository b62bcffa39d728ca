//! Reads of the posture tables (migration 0012): a device's latest posture, backups
//! and custom-check states, and the per-tenant summary the console will show
//! (counts of pass / fail / unknown per check, devices with stale backups).
//!
//! Invariant: `unknown` is counted on its own, never as a pass; a backup whose last
//! success is unknown is counted as "unknown", not as fresh.

use rusqlite::Connection;

/// One posture check of a device.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct CheckRow {
    pub(crate) check: String,
    pub(crate) state: String,
    pub(crate) evidence: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) reason: String,
}

/// One backup of a device, with its age and staleness at the query's `now`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct BackupRow {
    pub(crate) name: String,
    pub(crate) source: String,
    /// 0 = unknown (`error` says why).
    pub(crate) last_success_ms: i64,
    pub(crate) max_age_secs: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) error: String,
    pub(crate) evidence: String,
    /// None when unknown.
    pub(crate) age_secs: Option<i64>,
    pub(crate) stale: Option<bool>,
}

/// One custom check's state.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct CustomCheckRow {
    pub(crate) name: String,
    pub(crate) status: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) reason: String,
}

/// A device's latest posture report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct DevicePosture {
    pub(crate) seq: i64,
    pub(crate) time_ms: i64,
    pub(crate) checks: Vec<CheckRow>,
    pub(crate) backups: Vec<BackupRow>,
    pub(crate) custom_checks: Vec<CustomCheckRow>,
}

/// The device's latest posture report, if it ever sent one.
pub(crate) fn device_posture(
    conn: &Connection,
    device_id: &str,
    now_ms: i64,
) -> rusqlite::Result<Option<DevicePosture>> {
    use rusqlite::OptionalExtension;
    let Some((seq, time_ms)) = conn
        .query_row(
            "SELECT seq, time_ms FROM posture_reports WHERE device_id = ?1",
            [device_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
    else {
        return Ok(None);
    };
    let mut st = conn.prepare(
        "SELECT check_name, state, evidence, reason FROM posture_checks
         WHERE device_id = ?1 ORDER BY check_name",
    )?;
    let checks = st
        .query_map([device_id], |r| {
            Ok(CheckRow {
                check: r.get(0)?,
                state: r.get(1)?,
                evidence: r.get(2)?,
                reason: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut st = conn.prepare(
        "SELECT name, source, last_success_ms, max_age_secs, error, evidence FROM backup_states
         WHERE device_id = ?1 ORDER BY name",
    )?;
    let backups = st
        .query_map([device_id], |r| {
            let last: i64 = r.get(2)?;
            let max_age: i64 = r.get(3)?;
            let age = (last > 0).then(|| (now_ms - last).max(0) / 1000);
            Ok(BackupRow {
                name: r.get(0)?,
                source: r.get(1)?,
                last_success_ms: last,
                max_age_secs: max_age,
                error: r.get(4)?,
                evidence: r.get(5)?,
                age_secs: age,
                stale: age.map(|a| a > max_age),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut st = conn.prepare(
        "SELECT name, status, reason FROM custom_check_states WHERE device_id = ?1 ORDER BY name",
    )?;
    let custom_checks = st
        .query_map([device_id], |r| {
            Ok(CustomCheckRow {
                name: r.get(0)?,
                status: r.get(1)?,
                reason: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(DevicePosture {
        seq,
        time_ms,
        checks,
        backups,
        custom_checks,
    }))
}

/// Pass / fail / unknown counts of one check across a tenant's devices.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct CheckCounts {
    pub(crate) check: String,
    pub(crate) pass: i64,
    pub(crate) fail: i64,
    pub(crate) unknown: i64,
}

/// A device with a stale (or unknown) backup.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct StaleBackup {
    pub(crate) device_id: String,
    pub(crate) hostname: String,
    pub(crate) name: String,
    /// None: the agent cannot tell (see `error`).
    pub(crate) age_secs: Option<i64>,
    pub(crate) max_age_secs: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) error: String,
}

/// One tenant's posture summary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct TenantSummary {
    pub(crate) tenant: String,
    /// Devices of the tenant that sent a posture report.
    pub(crate) devices_reporting: i64,
    pub(crate) checks: Vec<CheckCounts>,
    /// Backups older than their window, and those whose age is unknown.
    pub(crate) stale_backups: Vec<StaleBackup>,
    /// Custom checks critical now (status 2): (device, check).
    pub(crate) critical_custom_checks: Vec<(String, String)>,
}

/// Every tenant's summary (or only `tenant`'s), by tenant name.
pub(crate) fn tenant_summaries(
    conn: &Connection,
    tenant: Option<&str>,
    now_ms: i64,
) -> rusqlite::Result<Vec<TenantSummary>> {
    let mut tenants: Vec<String> = conn
        .prepare("SELECT name FROM tenants ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if let Some(t) = tenant {
        tenants.retain(|n| n == t);
    }
    let mut out = Vec::new();
    for t in tenants {
        let devices_reporting: i64 = conn.query_row(
            "SELECT count(*) FROM posture_reports p JOIN devices d ON d.id = p.device_id
             JOIN tenants t ON t.id = d.tenant_id WHERE t.name = ?1",
            [&t],
            |r| r.get(0),
        )?;
        let mut st = conn.prepare(
            "SELECT c.check_name,
                    sum(c.state = 'pass'), sum(c.state = 'fail'), sum(c.state = 'unknown')
             FROM posture_checks c JOIN devices d ON d.id = c.device_id
             JOIN tenants t ON t.id = d.tenant_id WHERE t.name = ?1
             GROUP BY c.check_name ORDER BY c.check_name",
        )?;
        let checks = st
            .query_map([&t], |r| {
                Ok(CheckCounts {
                    check: r.get(0)?,
                    pass: r.get(1)?,
                    fail: r.get(2)?,
                    unknown: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut st = conn.prepare(
            "SELECT b.device_id, d.hostname, b.name, b.last_success_ms, b.max_age_secs, b.error
             FROM backup_states b JOIN devices d ON d.id = b.device_id
             JOIN tenants t ON t.id = d.tenant_id WHERE t.name = ?1
             ORDER BY b.device_id, b.name",
        )?;
        let stale_backups = st
            .query_map([&t], |r| {
                let last: i64 = r.get(3)?;
                Ok(StaleBackup {
                    device_id: r.get(0)?,
                    hostname: r.get(1)?,
                    name: r.get(2)?,
                    age_secs: (last > 0).then(|| (now_ms - last).max(0) / 1000),
                    max_age_secs: r.get(4)?,
                    error: r.get(5)?,
                })
            })?
            .filter(|b| {
                b.as_ref()
                    .map_or(true, |b| b.age_secs.is_none_or(|a| a > b.max_age_secs))
            })
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut st = conn.prepare(
            "SELECT c.device_id, c.name FROM custom_check_states c JOIN devices d ON d.id = c.device_id
             JOIN tenants t ON t.id = d.tenant_id WHERE t.name = ?1 AND c.status = 2
             ORDER BY c.device_id, c.name",
        )?;
        let critical_custom_checks = st
            .query_map([&t], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        out.push(TenantSummary {
            tenant: t,
            devices_reporting,
            checks,
            stale_backups,
            critical_custom_checks,
        });
    }
    Ok(out)
}

/// `inspect`'s lines for a device's posture, one per item.
pub(crate) fn lines(p: Option<&DevicePosture>) -> Vec<String> {
    let Some(p) = p else {
        return vec!["posture: no report yet".into()];
    };
    let mut out = Vec::new();
    let count = |s: &str| p.checks.iter().filter(|c| c.state == s).count();
    out.push(format!(
        "posture: {} pass, {} fail, {} unknown (report seq {})",
        count("pass"),
        count("fail"),
        count("unknown"),
        p.seq
    ));
    for c in &p.checks {
        if c.state == "unknown" {
            out.push(format!("  {:<18} unknown  {}", c.check, c.reason));
        } else {
            out.push(format!("  {:<18} {:<8} {}", c.check, c.state, c.evidence));
        }
    }
    for b in &p.backups {
        out.push(match (b.age_secs, b.stale) {
            (Some(age), Some(stale)) => format!(
                "backup {}: {} ({}), last success {} ago, window {}{}",
                b.name,
                if stale { "STALE" } else { "fresh" },
                b.source,
                human_secs(age),
                human_secs(b.max_age_secs),
                if b.evidence.is_empty() {
                    String::new()
                } else {
                    format!("; {}", b.evidence)
                }
            ),
            _ => format!("backup {}: unknown ({}): {}", b.name, b.source, b.error),
        });
    }
    for c in &p.custom_checks {
        let s = match c.status {
            0 => "ok",
            1 => "warning",
            2 => "critical",
            _ => "unknown",
        };
        out.push(if c.reason.is_empty() {
            format!("check {}: {s}", c.name)
        } else {
            format!("check {}: {s}: {}", c.name, c.reason)
        });
    }
    out
}

fn human_secs(s: i64) -> String {
    if s < 120 {
        format!("{s} s")
    } else if s < 7200 {
        format!("{} min", s / 60)
    } else if s < 172_800 {
        format!("{} h", s / 3600)
    } else {
        format!("{} d", s / 86_400)
    }
}

/// `tandem-collector posture`'s text for the summaries.
pub(crate) fn summary_text(all: &[TenantSummary]) -> String {
    let mut s = String::new();
    if all.is_empty() {
        s.push_str("no such tenant\n");
    }
    for t in all {
        s.push_str(&format!(
            "tenant {}: {} devices reporting posture\n",
            t.tenant, t.devices_reporting
        ));
        for c in &t.checks {
            s.push_str(&format!(
                "  {:<18} pass {:>4}  fail {:>4}  unknown {:>4}\n",
                c.check, c.pass, c.fail, c.unknown
            ));
        }
        if t.stale_backups.is_empty() {
            s.push_str("  backups: none stale\n");
        }
        for b in &t.stale_backups {
            match b.age_secs {
                Some(a) => s.push_str(&format!(
                    "  stale backup {} on {} ({}): {} old, window {}\n",
                    b.name,
                    b.device_id,
                    b.hostname,
                    human_secs(a),
                    human_secs(b.max_age_secs)
                )),
                None => s.push_str(&format!(
                    "  backup {} on {} ({}): age unknown: {}\n",
                    b.name, b.device_id, b.hostname, b.error
                )),
            }
        }
        for (d, c) in &t.critical_custom_checks {
            s.push_str(&format!("  custom check {c} on {d}: critical\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::writer::{DeviceFacts, DeviceIdentity, Writer, WriterConfig};
    use tandem_proto::v1::{
        BackupStatus, CustomCheckStatus, PostureCheck, PostureReport, PostureState,
    };

    #[tokio::test]
    async fn reports_are_stored_replaced_and_summarised() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = crate::store::open(&path).unwrap();
        let (w, thread) = Writer::spawn(conn, WriterConfig::default()).unwrap();
        for (dev, tenant) in [("d1", "acme"), ("d2", "acme"), ("d3", "other")] {
            w.hello(
                DeviceIdentity {
                    device_id: dev.into(),
                    tenant: tenant.into(),
                },
                DeviceFacts {
                    hostname: format!("{dev}-host"),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        }
        let now = 1_800_000_000_000i64;
        let report = |seq: u64, fw: PostureState, last: i64| PostureReport {
            seq,
            time_unix_ms: now,
            checks: vec![
                PostureCheck {
                    check: "firewall".into(),
                    state: fw as i32,
                    evidence: "ufw".into(),
                    reason: if fw == PostureState::Unknown {
                        "no tool".into()
                    } else {
                        String::new()
                    },
                },
                PostureCheck {
                    check: "disk_encryption".into(),
                    state: PostureState::Unknown as i32,
                    evidence: String::new(),
                    reason: "container".into(),
                },
            ],
            backups: vec![BackupStatus {
                name: "nas".into(),
                source: "path".into(),
                last_success_unix_ms: last,
                max_age_secs: 3600,
                error: if last == 0 {
                    "gone".into()
                } else {
                    String::new()
                },
                evidence: String::new(),
            }],
            custom_checks: vec![CustomCheckStatus {
                name: "raid".into(),
                status: 2,
                reason: "timed out".into(),
            }],
        };
        let submit = |dev: &str, r| {
            let w = w.clone();
            let dev = dev.to_owned();
            async move {
                w.submit_posture(dev, r)
                    .await
                    .unwrap()
                    .await
                    .unwrap()
                    .unwrap()
            }
        };
        submit("d1", report(1, PostureState::Fail, now - 7200 * 1000)).await;
        submit("d2", report(1, PostureState::Pass, now - 60 * 1000)).await;
        submit("d3", report(1, PostureState::Unknown, 0)).await;
        // A newer report replaces the old one whole.
        submit("d2", report(2, PostureState::Unknown, now - 60 * 1000)).await;
        drop(w);
        thread.join();

        let conn = crate::store::open_read_only(&path).unwrap();
        let p = device_posture(&conn, "d2", now).unwrap().unwrap();
        assert_eq!(p.seq, 2);
        assert_eq!(p.checks.len(), 2);
        assert!(p.checks.iter().all(|c| c.state == "unknown"));
        assert_eq!(p.backups[0].age_secs, Some(60));
        assert_eq!(p.backups[0].stale, Some(false));
        assert!(device_posture(&conn, "nope", now).unwrap().is_none());

        let all = tenant_summaries(&conn, None, now).unwrap();
        assert_eq!(all.len(), 2);
        let acme = &all[0];
        assert_eq!(acme.tenant, "acme");
        assert_eq!(acme.devices_reporting, 2);
        let fw = acme.checks.iter().find(|c| c.check == "firewall").unwrap();
        assert_eq!(
            (fw.pass, fw.fail, fw.unknown),
            (0, 1, 1),
            "unknown is not a pass"
        );
        assert_eq!(acme.stale_backups.len(), 1);
        assert_eq!(acme.stale_backups[0].device_id, "d1");
        assert_eq!(acme.stale_backups[0].age_secs, Some(7200));
        assert_eq!(acme.critical_custom_checks.len(), 2);
        let other = tenant_summaries(&conn, Some("other"), now).unwrap();
        assert_eq!(
            other[0].stale_backups[0].age_secs, None,
            "unknown age is listed"
        );
        let text = summary_text(&all);
        assert!(
            text.contains("firewall           pass    0  fail    1  unknown    1"),
            "{text}"
        );
        let l = lines(Some(&p));
        assert!(
            l[0].starts_with("posture: 0 pass, 0 fail, 2 unknown"),
            "{l:?}"
        );
        assert!(
            l.iter()
                .any(|x| x.starts_with("backup nas: fresh (path), last success 60 s ago")),
            "{l:?}"
        );
        assert!(
            l.iter().any(|x| x == "check raid: critical: timed out"),
            "{l:?}"
        );
    }
}
