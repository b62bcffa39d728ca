//! The store conformance suite (issue 17 item 1): what callers rely on, written
//! against the traits of [`super::api`] only — never SQL — so a second backend
//! is proved by instantiating the same suite for it (one `#[test]` per behaviour
//! per backend; see [`sqlite`] for how).
//!
//! A file per trait ([`alerts`] and [`silences`] for `AlertStore`, [`notify`],
//! [`escalation`], [`admin`] with `Names`, [`console_query`], [`console_admin`]);
//! the fixture, the record builders they share and the SQLite harness are here.
//!
//! Every test gets a fresh store holding the **standard fixture**, which a backend
//! writes in its own way ([`sqlite_fixture`] for SQLite):
//! - tenants `acme` and `globex`; site `hq` in `acme`;
//! - device `d1` (acme, windows "Windows 11", last seen 500) with patch report 1
//!   (time 100, ok, reboot required, since unknown) whose pending security updates
//!   were first seen at 50 and "unknown" (0), and report 2 (time 200) that failed;
//! - device `d2` (acme, linux, last seen 600), no patch report, revoked at 700,
//!   tagged `prod` and `db`; a certificate of d1 expiring at 9,000 and one at 8,000
//!   (serials `01`, `02`);
//! - revocation 1 (d2, every certificate), renew request 1 (d1), patch-check
//!   request 1 (d1).

use super::api::{InstanceChange, InstanceRow, NotifyStore, RecordEvent, RecordRow};

// --- store7a ---
mod console_query;
// --- end store7a ---

mod admin;
mod alerts;
mod escalation;
mod notify;
mod silences;

// The behaviours, for the harness below.
use admin::{
    administrative_commands, names_are_checked,
    revocations_are_durable_and_a_duplicate_certificate_conflicts,
};
use alerts::{
    a_round_loads_back_identically, ack_clears_on_ok, alerts_list_by_filter,
    an_incident_opens_once_per_firing_and_resolves,
    devices_load_with_their_latest_good_patch_report, history_accumulates,
    revoked_devices_and_tags_are_read,
};
use escalation::escalation_steps_loops_and_resolution;
use notify::{
    a_test_delivery_is_queued_each_time,
    a_transition_opens_and_resolves_its_incident_in_the_engine_transaction,
    outbox_queues_once_then_sent_retry_and_dead_letter, snooze_and_resolve_by_hand,
    suppressed_incidents_stay_off_the_feed_until_the_window_ends,
};
use silences::{
    a_silence_is_listed_until_it_ends_or_is_lifted, a_silence_of_unknown_names_is_refused,
    no_maintenance_windows_in_the_fixture,
};

fn instance(state: &str) -> InstanceRow {
    InstanceRow {
        rule: "cpu".into(),
        device_id: "d1".into(),
        dimension: String::new(),
        tenant: "acme".into(),
        state: state.into(),
        severity: (state != "ok").then(|| "warning".into()),
        since_ms: 5,
        breach_start_ms: 1,
        breach_samples: 3,
        recover_start_ms: 0,
        last_sample_ms: 5,
        last_arrival_ms: 6,
        last_value: 97.5,
        stale: false,
        flapping: true,
        suppressed: false,
        changes: vec![1, 5],
    }
}

fn transition(at_ms: i64, from: &'static str, to: &'static str) -> RecordRow {
    RecordRow {
        at_ms,
        event: RecordEvent::Transition { from, to },
        state: to,
        severity: Some("warning"),
        value: 95.0,
        suppressed: false,
    }
}

fn change(state: &str, records: Vec<RecordRow>) -> InstanceChange {
    InstanceChange {
        instance: instance(state),
        records,
    }
}

fn firing() -> InstanceChange {
    change(
        "firing",
        vec![
            transition(1, "ok", "pending"),
            transition(5, "pending", "firing"),
        ],
    )
}

fn fire(at_ms: i64, suppressed: bool) -> RecordRow {
    RecordRow {
        suppressed,
        ..transition(at_ms, "pending", "firing")
    }
}

fn episode(records: Vec<RecordRow>) -> InstanceChange {
    let state = records.last().map_or("ok", |r| r.state);
    change(state, records)
}

fn feed_kinds<S: NotifyStore>(s: &S) -> Vec<(i64, String)> {
    s.feed_after(0, 1000)
        .unwrap()
        .into_iter()
        .map(|e| (e.incident_id, e.kind))
        .collect()
}

/// A fresh SQLite store (a real file in a temp dir) with the standard fixture.
/// The dir lives as long as the returned guard.
pub(crate) fn sqlite_fixture() -> (tempfile::TempDir, super::Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = super::Db::open(&dir.path().join("t.db")).unwrap();
    db.connection()
        .execute_batch(
            "INSERT INTO tenants (id, name, created_ms) VALUES (1, 'acme', 0), (2, 'globex', 0);
             INSERT INTO sites (id, tenant_id, name, created_ms) VALUES (1, 1, 'hq', 0);
             INSERT INTO devices (id, tenant_id, site_id, os_family, os_version, first_seen_ms, last_seen_ms)
                VALUES ('d1', 1, 1, 'windows', 'Windows 11', 0, 500);
             INSERT INTO devices (id, tenant_id, os_family, os_version, first_seen_ms, last_seen_ms, revoked_ms)
                VALUES ('d2', 1, 'linux', '', 0, 600, 700);
             INSERT INTO device_tags (device_id, tag, created_ms) VALUES ('d2', 'prod', 0), ('d2', 'db', 0);
             INSERT INTO certificates VALUES ('01', 'd1', 9000, 0, 'enroll'), ('02', 'd1', 8000, 0, 'enroll');
             INSERT INTO revocations (id, device_id, serial, created_ms) VALUES (1, 'd2', NULL, 700);
             INSERT INTO renew_requests (id, device_id, created_ms) VALUES (1, 'd1', 800);
             INSERT INTO patch_check_requests (id, device_id, created_ms) VALUES (1, 'd1', 800);
             INSERT INTO patch_reports VALUES ('d1', 1, 100, 'wu', '', 1, 0, 0);
             INSERT INTO patch_reports VALUES ('d1', 2, 200, 'wu', 'failed', 0, 0, 0);
             INSERT INTO pending_updates VALUES ('d1', 1, 'kb1', '', '', 'security', '', 50);
             INSERT INTO pending_updates VALUES ('d1', 1, 'kb2', '', '', 'security', '', 0);
             INSERT INTO pending_updates VALUES ('d1', 1, 'kb3', '', '', 'other', '', 10);",
        )
        .unwrap();
    (dir, db)
}

/// Appends `n` feed events of a tenant (for tests of feed readers; incidents
/// write them in production).
pub(crate) fn add_feed_events(db: &super::Db, tenant: &str, severity: &str, n: usize) {
    for _ in 0..n {
        db.connection()
            .execute(
                "INSERT INTO feed_events (incident_id, tenant, severity, kind, at_ms, body)
                 VALUES (0, ?1, ?2, 'opened', 0, '{}')",
                [tenant, severity],
            )
            .unwrap();
    }
}

/// The suite instantiated for SQLite: one `#[test]` per behaviour. A second
/// backend adds a module like this one with its own fixture.
mod sqlite {
    macro_rules! conformance {
        ($($name:ident),* $(,)?) => {$(
            #[test]
            fn $name() {
                let (_dir, db) = super::sqlite_fixture();
                super::$name(db);
            }
        )*};
    }
    conformance!(
        a_round_loads_back_identically,
        history_accumulates,
        ack_clears_on_ok,
        alerts_list_by_filter,
        an_incident_opens_once_per_firing_and_resolves,
        devices_load_with_their_latest_good_patch_report,
        revoked_devices_and_tags_are_read,
        a_silence_is_listed_until_it_ends_or_is_lifted,
        a_silence_of_unknown_names_is_refused,
        names_are_checked,
        no_maintenance_windows_in_the_fixture,
        a_transition_opens_and_resolves_its_incident_in_the_engine_transaction,
        suppressed_incidents_stay_off_the_feed_until_the_window_ends,
        snooze_and_resolve_by_hand,
        outbox_queues_once_then_sent_retry_and_dead_letter,
        a_test_delivery_is_queued_each_time,
        escalation_steps_loops_and_resolution,
        administrative_commands,
    );

    #[test]
    fn revocations_are_durable_and_a_duplicate_certificate_conflicts() {
        let (dir, db) = super::sqlite_fixture();
        super::revocations_are_durable_and_a_duplicate_certificate_conflicts(db, |db| {
            db.close().unwrap();
            crate::store::Db::open(&dir.path().join("t.db")).unwrap()
        });
    }
}

// --- store7b ---
mod console_admin;
// --- end store7b ---
