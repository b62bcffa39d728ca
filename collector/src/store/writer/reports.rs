//! The writer's per-kind report writes: inventories (with their bounded change
//! history), posture reports and patch reports. Each runs inside the group's
//! savepoint for its request and claims its seq in the ledger first.

use std::collections::HashMap;

use rusqlite::params;
use tandem_proto::v1::{Inventory, PatchReport, PostureReport, PostureState, UpdateClassification};

use super::{Outcome, claim_seq};
use crate::store::StoreError;

/// Stores an inventory as the device's latest (unless a higher seq is stored
/// already), replaces its software list when the inventory carries one, and records
/// what was added and removed since the previous list.
pub(super) fn write_inventory(
    tx: &rusqlite::Transaction<'_>,
    device_id: &str,
    inv: &Inventory,
    now: i64,
) -> Result<Outcome, StoreError> {
    // n_values 0: the ledger's count is of sample values (and, for a patch report,
    // its updates); an inventory holds neither, and counting its programs would
    // make value checks over the ledger (e2e `assert_exactly_once`) miscount.
    if !claim_seq(tx, device_id, inv.seq, 0, now)? {
        return Ok(Outcome::Duplicate);
    }
    let newer_stored: bool = tx
        .query_row(
            "SELECT count(*) FROM inventories WHERE device_id = ?1 AND seq > ?2",
            params![device_id, inv.seq as i64],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)?;
    if newer_stored {
        // A late frame (a gap filled after a newer inventory): the ledger has it,
        // the latest stays the latest.
        return Ok(Outcome::Stored);
    }
    tx.execute(
        "INSERT OR REPLACE INTO inventories (device_id, seq, time_ms, received_ms, os_name,
            os_version, os_build, kernel, arch, hw_vendor, hw_model, hw_serial, cpu_model,
            cpu_cores, memory_bytes, software_source, software_error, software_count)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        params![
            device_id,
            inv.seq as i64,
            inv.time_unix_ms,
            now,
            inv.os_name,
            inv.os_version,
            inv.os_build,
            inv.kernel,
            inv.arch,
            inv.hw_vendor,
            inv.hw_model,
            inv.hw_serial,
            inv.cpu_model,
            inv.cpu_cores,
            // SQLite integers are signed; no machine has 2^63 bytes of memory.
            i64::try_from(inv.memory_bytes).unwrap_or(i64::MAX),
            inv.software_source,
            inv.software_error,
            inv.software.len() as i64
        ],
    )?;
    if !inv.software_error.is_empty() {
        // The list could not be read: keep the last good one rather than record
        // every program as removed.
        return Ok(Outcome::Stored);
    }
    let mut old: HashMap<(String, String), i64> = HashMap::new();
    let had_list = {
        let mut st =
            tx.prepare_cached("SELECT name, version FROM inventory_software WHERE device_id = ?1")?;
        let rows = st.query_map([device_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let mut any = false;
        for row in rows {
            *old.entry(row?).or_default() += 1;
            any = true;
        }
        any || tx
            .query_row(
                "SELECT count(*) FROM inventory_changes WHERE device_id = ?1",
                [device_id],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)?
    };
    let mut new: HashMap<(String, String), i64> = HashMap::new();
    for sw in &inv.software {
        *new.entry((sw.name.clone(), sw.version.clone()))
            .or_default() += 1;
    }
    if had_list {
        let mut changes: Vec<(&str, &String, &String)> = Vec::new();
        for ((name, version), n) in &new {
            if old
                .get(&(name.clone(), version.clone()))
                .copied()
                .unwrap_or(0)
                < *n
            {
                changes.push(("added", name, version));
            }
        }
        for ((name, version), n) in &old {
            if new
                .get(&(name.clone(), version.clone()))
                .copied()
                .unwrap_or(0)
                < *n
            {
                changes.push(("removed", name, version));
            }
        }
        record_changes(tx, device_id, inv, &changes)?;
    }
    tx.execute(
        "DELETE FROM inventory_software WHERE device_id = ?1",
        [device_id],
    )?;
    let mut ins = tx.prepare_cached(
        "INSERT INTO inventory_software (device_id, name, version, publisher) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for sw in &inv.software {
        ins.execute(params![device_id, sw.name, sw.version, sw.publisher])?;
    }
    Ok(Outcome::Stored)
}

/// Most change rows one inventory records; beyond it one `truncated` row says how
/// many were left out. A dist-upgrade of a few thousand packages fits; a device
/// that swaps a 50,000-program list each time no longer adds 100,000 rows.
pub(crate) const MAX_CHANGES_PER_INVENTORY: usize = 5_000;
/// Most change rows kept per device; the oldest go first.
pub(crate) const MAX_CHANGES_PER_DEVICE: i64 = 20_000;

/// Writes the changes of one inventory within the bounds above.
pub(super) fn record_changes(
    tx: &rusqlite::Transaction<'_>,
    device_id: &str,
    inv: &Inventory,
    changes: &[(&str, &String, &String)],
) -> Result<(), StoreError> {
    let mut ch = tx.prepare_cached(
        "INSERT INTO inventory_changes (device_id, seq, time_ms, change, name, version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (change, name, version) in changes.iter().take(MAX_CHANGES_PER_INVENTORY) {
        ch.execute(params![
            device_id,
            inv.seq as i64,
            inv.time_unix_ms,
            change,
            name,
            version
        ])?;
    }
    if changes.len() > MAX_CHANGES_PER_INVENTORY {
        let left_out = changes.len() - MAX_CHANGES_PER_INVENTORY;
        ch.execute(params![
            device_id,
            inv.seq as i64,
            inv.time_unix_ms,
            "truncated",
            format!("{left_out} more changes not recorded"),
            ""
        ])?;
        tracing::warn!(device = %device_id, seq = inv.seq, changes = changes.len(),
            recorded = MAX_CHANGES_PER_INVENTORY, "inventory change history truncated");
    }
    tx.execute(
        "DELETE FROM inventory_changes WHERE rowid IN (
             SELECT rowid FROM inventory_changes WHERE device_id = ?1
             ORDER BY time_ms DESC, rowid DESC LIMIT -1 OFFSET ?2)",
        params![device_id, MAX_CHANGES_PER_DEVICE],
    )?;
    Ok(())
}

/// Stores a posture report as the device's latest (unless a higher seq is stored
/// already): its checks, backups and custom checks replace the previous ones.
pub(super) fn write_posture(
    tx: &rusqlite::Transaction<'_>,
    device_id: &str,
    r: &PostureReport,
    now: i64,
) -> Result<Outcome, StoreError> {
    // n_values 0, as for an inventory: the ledger counts sample values.
    if !claim_seq(tx, device_id, r.seq, 0, now)? {
        return Ok(Outcome::Duplicate);
    }
    let newer_stored: bool = tx
        .query_row(
            "SELECT count(*) FROM posture_reports WHERE device_id = ?1 AND seq > ?2",
            params![device_id, r.seq as i64],
            |row| row.get::<_, i64>(0),
        )
        .map(|n| n > 0)?;
    if newer_stored {
        return Ok(Outcome::Stored);
    }
    tx.execute(
        "INSERT OR REPLACE INTO posture_reports (device_id, seq, time_ms, received_ms)
         VALUES (?1, ?2, ?3, ?4)",
        params![device_id, r.seq as i64, r.time_unix_ms, now],
    )?;
    for table in ["posture_checks", "backup_states", "custom_check_states"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE device_id = ?1"),
            [device_id],
        )?;
    }
    let mut ins = tx.prepare_cached(
        "INSERT OR REPLACE INTO posture_checks (device_id, check_name, state, evidence, reason)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for c in &r.checks {
        // Validation refused every other value.
        let state = match PostureState::try_from(c.state) {
            Ok(PostureState::Pass) => "pass",
            Ok(PostureState::Fail) => "fail",
            _ => "unknown",
        };
        ins.execute(params![device_id, c.check, state, c.evidence, c.reason])?;
    }
    let mut ins = tx.prepare_cached(
        "INSERT OR REPLACE INTO backup_states (device_id, name, source, last_success_ms,
            max_age_secs, error, evidence) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for b in &r.backups {
        ins.execute(params![
            device_id,
            b.name,
            b.source,
            b.last_success_unix_ms,
            b.max_age_secs,
            b.error,
            b.evidence
        ])?;
    }
    let mut ins = tx.prepare_cached(
        "INSERT OR REPLACE INTO custom_check_states (device_id, name, status, reason)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for c in &r.custom_checks {
        ins.execute(params![device_id, c.name, c.status, c.reason])?;
    }
    Ok(Outcome::Stored)
}

pub(super) fn write_patch(
    tx: &rusqlite::Transaction<'_>,
    device_id: &str,
    report: &PatchReport,
    now: i64,
) -> Result<Outcome, StoreError> {
    if !claim_seq(tx, device_id, report.seq, report.updates.len() as u64, now)? {
        return Ok(Outcome::Duplicate);
    }
    tx.execute(
        "INSERT INTO patch_reports (device_id, seq, time_ms, source, error, reboot_required,
            reboot_since_ms, last_install_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            device_id,
            report.seq as i64,
            report.time_unix_ms,
            report.source,
            report.error,
            report.reboot_required,
            report.reboot_required_since_unix_ms,
            report.last_install_unix_ms
        ],
    )?;
    let mut ins = tx.prepare_cached(
        "INSERT INTO pending_updates (device_id, report_seq, name, current_version, new_version,
            classification, advisory_id, first_seen_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for u in &report.updates {
        let class = match UpdateClassification::try_from(u.classification) {
            Ok(UpdateClassification::Security) => "security",
            Ok(UpdateClassification::Other) => "other",
            _ => "unknown",
        };
        ins.execute(params![
            device_id,
            report.seq as i64,
            u.name,
            u.current_version,
            u.new_version,
            class,
            u.advisory_id,
            u.first_seen_unix_ms
        ])?;
    }
    Ok(Outcome::Stored)
}
