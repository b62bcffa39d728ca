//! What the agent last found about posture, backups and custom checks, and the
//! three slow loops that find it:
//!
//! - [`posture_loop`]: every `posture_interval` (plus up to 10 % jitter; one at start);
//! - [`backup_loop`]: each `[[backup]]` every `check_interval_secs`, and a `path`
//!   source also right after a change under it (a `notify` watch, debounced);
//! - [`checks_loop`]: each `[[check]]` every `interval_secs`, one at a time, skipped
//!   while the agent sheds work; the CPU time its commands used is added to
//!   `checks_cpu_ms`, which the budget governor counts as the agent's own.
//!
//! Every loop writes into one [`Reported`]; the sampler turns it into metrics at
//! each sample ([`Reported::push_metrics`]: backup ages are computed at sample time
//! from the last success, so an alert can fire without a new report). After each
//! change a loop calls [`send_if_changed`]: a `PostureReport` frame is spooled only
//! when its fingerprint (without seq and time; custom checks by status and reason,
//! not value) differs from the last one spooled (kept in the state dir, across
//! restarts) or that one is older than the spool's age bound, as for the inventory.
//!
//! Every blocking step (tools, file walks, commands) runs on a plain thread, as the
//! patch check does, so a hanging tool neither holds the runtime nor shutdown.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_proto::v1::{self, AgentFrame, agent_frame};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::{Check, State};
use crate::backup::{BackupState, Source};
use crate::checks::CheckResult;
use crate::config::AgentConfig;

/// File name of the last spooled report's fingerprint, under the state dir.
pub(crate) const SENT_FILE: &str = "posture_sent.sha256";

/// The latest of everything; `None`/empty until first found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Reported {
    pub posture: Option<Vec<Check>>,
    pub backups: BTreeMap<String, BackupState>,
    pub checks: BTreeMap<String, CheckResult>,
}

impl Reported {
    /// The metrics of this state at `now_ms` (see docs/METRICS.md): posture
    /// pass/unknown per check, backup age and staleness, custom check status and
    /// value. An unknown posture check is never sent as a pass, an unknown backup
    /// has no age.
    pub fn push_metrics(&self, reading: &mut crate::collect::Reading, now_ms: i64) {
        for c in self.posture.iter().flatten() {
            match c.state {
                State::Pass => reading.push_value("posture.pass", c.check, 1.0),
                State::Fail => reading.push_value("posture.pass", c.check, 0.0),
                State::Unknown => {}
            }
            reading.push_value(
                "posture.unknown",
                c.check,
                f64::from(u8::from(c.state == State::Unknown)),
            );
            for (name, v) in &c.values {
                reading.push_value(name, "", *v);
            }
        }
        for b in self.backups.values() {
            if let Some(age) = b.age_secs(now_ms) {
                reading.push_value("backup.age.seconds", b.name.clone(), age);
            }
            if let Some(stale) = b.stale(now_ms) {
                reading.push_value("backup.stale", b.name.clone(), f64::from(u8::from(stale)));
            }
            reading.push_value(
                "backup.error",
                b.name.clone(),
                f64::from(u8::from(b.error.is_some())),
            );
        }
        for c in self.checks.values() {
            reading.push_value("check.status", c.name.clone(), f64::from(c.status));
            if let Some(v) = c.value {
                reading.push_value("check.value", c.name.clone(), v);
            }
        }
    }

    /// The wire's frame with sequence number `seq`, stamped `now_ms`.
    pub(crate) fn to_wire(&self, seq: u64, now_ms: i64) -> v1::PostureReport {
        let t = crate::patches::wire_text;
        v1::PostureReport {
            seq,
            time_unix_ms: now_ms,
            checks: self.posture.iter().flatten().map(Check::to_wire).collect(),
            backups: self
                .backups
                .values()
                .map(|b| v1::BackupStatus {
                    name: t(&b.name),
                    source: b.source.to_owned(),
                    last_success_unix_ms: b.last_success_unix_ms.unwrap_or(0),
                    max_age_secs: i64::try_from(b.max_age_secs).unwrap_or(i64::MAX),
                    error: b.error.as_deref().map(t).unwrap_or_default(),
                    evidence: t(&b.evidence),
                })
                .collect(),
            custom_checks: self
                .checks
                .values()
                .map(|c| v1::CustomCheckStatus {
                    name: t(&c.name),
                    status: u32::from(c.status),
                    reason: c.reason.as_deref().map(t).unwrap_or_default(),
                })
                .collect(),
        }
    }
}

/// A hex SHA-256 of a report without its seq and time.
pub(crate) fn fingerprint(r: &v1::PostureReport) -> String {
    use prost::Message;
    let bare = v1::PostureReport {
        seq: 0,
        time_unix_ms: 0,
        ..r.clone()
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, &bare.encode_to_vec());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// What the three loops share.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) reported: Arc<Mutex<Reported>>,
    pub(crate) spool: crate::spool_handle::SpoolHandle,
    pub(crate) new_data: Arc<Notify>,
    /// Serialises [`send_if_changed`] (three loops call it) with the record it keeps.
    pub(crate) last_sent: Arc<Mutex<crate::inventory::LastSent>>,
}

impl Shared {
    pub(crate) fn new(
        state_dir: &std::path::Path,
        spool: crate::spool_handle::SpoolHandle,
        new_data: Arc<Notify>,
    ) -> Shared {
        Shared {
            reported: Arc::new(Mutex::new(Reported::default())),
            spool,
            new_data,
            last_sent: Arc::new(Mutex::new(crate::inventory::LastSent::named(
                state_dir, SENT_FILE,
            ))),
        }
    }

    fn update(&self, f: impl FnOnce(&mut Reported)) {
        f(&mut self.reported.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// Spools a `PostureReport` if the state differs from the last one spooled (or
/// that is older than `max_age_ms`). Blocking (spool I/O): call in `spawn_blocking`.
pub(crate) fn send_if_changed(shared: &Shared, max_age_ms: i64) {
    let last = shared.last_sent.lock().unwrap_or_else(|p| p.into_inner());
    let snapshot = shared
        .reported
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if snapshot.posture.is_none() {
        // The first report waits for the first posture check: backups and custom
        // checks found before it go out with it (one frame at start-up, not three).
        return;
    }
    let now = now_ms();
    let fp = fingerprint(&snapshot.to_wire(0, 0));
    if last.is_current(&fp, now, max_age_ms) {
        tracing::debug!("posture report unchanged; not sent");
        return;
    }
    let pushed = shared.spool.blocking(|s| {
        s.push(|seq| AgentFrame {
            kind: Some(agent_frame::Kind::PostureReport(snapshot.to_wire(seq, now))),
        })
    });
    match pushed {
        Ok(seq) => {
            if let Err(err) = last.set(&fp, now) {
                tracing::warn!(error = %err, "cannot record the posture report sent");
            }
            let count = |s: State| {
                snapshot
                    .posture
                    .iter()
                    .flatten()
                    .filter(|c| c.state == s)
                    .count()
            };
            tracing::info!(
                seq,
                pass = count(State::Pass),
                fail = count(State::Fail),
                unknown = count(State::Unknown),
                backups = snapshot.backups.len(),
                custom_checks = snapshot.checks.len(),
                "posture report changed; spooled"
            );
            shared.new_data.notify_one();
        }
        Err(err) => tracing::error!(error = %err, "cannot write to the spool; posture report lost"),
    }
}

use tandem_proto::util::now_ms;

fn max_age_ms(cfg: &AgentConfig) -> i64 {
    i64::try_from(cfg.spool_max_age.as_millis()).unwrap_or(i64::MAX)
}

/// Runs `f` on a plain thread; `None` if stopped first or the thread failed.
async fn on_thread<T: Send + 'static>(
    name: &str,
    stop: &CancellationToken,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    if let Err(err) = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = tx.send(f());
        })
    {
        tracing::warn!(error = %err, thread = name, "cannot start a thread");
        return None;
    }
    tokio::select! {
        _ = stop.cancelled() => None,
        r = rx => r.ok(),
    }
}

async fn spool_if_changed(shared: &Shared, max_age_ms: i64) {
    let s = shared.clone();
    let _ = tokio::task::spawn_blocking(move || send_if_changed(&s, max_age_ms)).await;
}

/// Collects the posture at start and every `posture_interval` (plus jitter).
pub(crate) async fn posture_loop(
    mut cfg: watch::Receiver<Arc<AgentConfig>>,
    shared: Shared,
    stop: CancellationToken,
) {
    use rand::Rng;
    loop {
        let timeout = cfg.borrow().patch_timeout;
        let found = on_thread("posture", &stop, move || super::collect(timeout)).await;
        if stop.is_cancelled() {
            return;
        }
        // None: the thread could not start (logged); try again next interval.
        if let Some(checks) = found {
            for c in checks.iter().filter(|c| c.state == State::Unknown) {
                tracing::debug!(check = c.check, reason = %c.reason, "posture check unknown");
            }
            shared.update(|r| r.posture = Some(checks));
            let max_age = max_age_ms(&cfg.borrow());
            spool_if_changed(&shared, max_age).await;
        }
        let done = tokio::time::Instant::now();
        let mut cfg_open = true;
        loop {
            let base = cfg.borrow_and_update().posture_interval;
            let jitter = rand::rng().random_range(Duration::ZERO..=base / 10);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(done + base + jitter) => break,
                r = cfg.changed(), if cfg_open => cfg_open = r.is_ok(),
            }
        }
    }
}

/// Reads each configured backup at start, every `check_interval_secs`, and a
/// `path` source again ~1 s after files under it change. A config reload starts
/// over with the new list.
pub(crate) async fn backup_loop(
    mut cfg: watch::Receiver<Arc<AgentConfig>>,
    shared: Shared,
    stop: CancellationToken,
) {
    use notify::{RecursiveMode, Watcher};
    loop {
        let current = cfg.borrow_and_update().clone();
        let backups = current.backups.clone();
        let names: Vec<String> = backups.iter().map(|b| b.name.clone()).collect();
        shared.update(|r| r.backups.retain(|n, _| names.contains(n)));
        if backups.is_empty() {
            spool_if_changed(&shared, max_age_ms(&current)).await;
            tokio::select! {
                _ = stop.cancelled() => return,
                r = cfg.changed() => if r.is_err() { return } else { continue },
            }
        }
        // A change under a watched path wakes the loop (bounded: one pending
        // wake-up is enough).
        let (tx, mut changed) = tokio::sync::mpsc::channel::<usize>(16);
        let mut watchers = Vec::new();
        for (i, b) in backups.iter().enumerate() {
            if let Source::Path(dir) = &b.source {
                let tx = tx.clone();
                let w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                    // Opening and reading (the loop's own walk) are no change.
                    if res.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
                        let _ = tx.try_send(i);
                    }
                })
                .and_then(|mut w| w.watch(dir, RecursiveMode::Recursive).map(|()| w));
                match w {
                    Ok(w) => watchers.push(w),
                    Err(err) => {
                        tracing::warn!(backup = %b.name, path = %dir.display(), error = %err,
                        "cannot watch the backup path; it is checked every check_interval_secs only")
                    }
                }
            }
        }
        drop(tx);
        let now = tokio::time::Instant::now();
        let mut due: Vec<tokio::time::Instant> = vec![now; backups.len()];
        'run: loop {
            let now = tokio::time::Instant::now();
            let run: Vec<usize> = (0..backups.len()).filter(|&i| due[i] <= now).collect();
            if !run.is_empty() {
                let cfgs: Vec<_> = run.iter().map(|&i| backups[i].clone()).collect();
                let states = on_thread("backup-check", &stop, move || {
                    cfgs.iter().map(crate::backup::check).collect::<Vec<_>>()
                })
                .await;
                if stop.is_cancelled() {
                    return;
                }
                // None: the thread could not start (logged); the next round retries.
                let states = states.unwrap_or_default();
                for &i in &run {
                    due[i] = now + Duration::from_secs(backups[i].check_interval_secs);
                }
                for s in states {
                    if let Some(err) = &s.error {
                        tracing::debug!(backup = %s.name, error = %err, "backup age unknown");
                    }
                    shared.update(|r| {
                        r.backups.insert(s.name.clone(), s);
                    });
                }
                spool_if_changed(&shared, max_age_ms(&current)).await;
            }
            let next = due
                .iter()
                .min()
                .copied()
                .unwrap_or(now + Duration::from_secs(3600));
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(next) => {}
                r = cfg.changed() => {
                    if r.is_err() { return }
                    break 'run;
                }
                Some(i) = changed.recv() => {
                    // Let a backup finish writing, then look once for the burst.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    while changed.try_recv().is_ok() {}
                    due[i] = tokio::time::Instant::now();
                }
            }
        }
        drop(watchers);
    }
}

/// Runs each configured custom check at start and every `interval_secs`, one at a
/// time, while the agent is not shedding work (a skipped run keeps the last
/// result). The CPU time of each run (reaped children, where the platform reads
/// it) is added to `checks_cpu_ms`.
pub(crate) async fn checks_loop(
    mut cfg: watch::Receiver<Arc<AgentConfig>>,
    shared: Shared,
    shedding: Arc<AtomicBool>,
    checks_cpu_ms: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    loop {
        let current = cfg.borrow_and_update().clone();
        let checks = current.checks.clone();
        let names: Vec<String> = checks.iter().map(|c| c.name.clone()).collect();
        shared.update(|r| r.checks.retain(|n, _| names.contains(n)));
        let start = tokio::time::Instant::now();
        let mut due: Vec<tokio::time::Instant> = vec![start; checks.len()];
        loop {
            let now = tokio::time::Instant::now();
            if let Some(i) = (0..checks.len())
                .filter(|&i| due[i] <= now)
                .min_by_key(|&i| due[i])
            {
                due[i] = now + Duration::from_secs(checks[i].interval_secs);
                if shedding.load(Ordering::Relaxed) {
                    tracing::debug!(check = %checks[i].name, "custom check skipped: the agent is over its budget");
                    continue;
                }
                let c = checks[i].clone();
                let cpu = checks_cpu_ms.clone();
                let result = on_thread("custom-check", &stop, move || {
                    let before = crate::platform::children_cpu_ms();
                    let r = crate::checks::run(&c);
                    if let (Some(b), Some(a)) = (before, crate::platform::children_cpu_ms()) {
                        cpu.fetch_add(a.saturating_sub(b), Ordering::Relaxed);
                    }
                    r
                })
                .await;
                if stop.is_cancelled() {
                    return;
                }
                // None: the thread could not start (logged); retried next interval.
                let Some(result) = result else { continue };
                match &result.reason {
                    Some(why) => {
                        tracing::warn!(check = %result.name, status = result.status, reason = %why, "custom check failed to give a clean result")
                    }
                    None => {
                        tracing::debug!(check = %result.name, status = result.status, value = ?result.value, "custom check ran")
                    }
                }
                shared.update(|r| {
                    r.checks.insert(result.name.clone(), result);
                });
                spool_if_changed(&shared, max_age_ms(&current)).await;
                continue;
            }
            let next = due.iter().min().copied();
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = async {
                    match next {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                } => {}
                r = cfg.changed() => {
                    if r.is_err() { return }
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> Reported {
        let mut r = Reported {
            posture: Some(vec![
                Check::pass(crate::platform::facts::posture::FIREWALL, "ufw: active"),
                Check::unknown(crate::platform::facts::posture::ANTIVIRUS, "not reported")
                    .with_value("av.signature.age.days", 3.0),
            ]),
            ..Default::default()
        };
        r.backups.insert(
            "nas".into(),
            BackupState {
                name: "nas".into(),
                source: "path",
                last_success_unix_ms: Some(10_000),
                max_age_secs: 5,
                error: None,
                evidence: "newest file x".into(),
            },
        );
        r.backups.insert(
            "veeam".into(),
            BackupState {
                name: "veeam".into(),
                source: "command",
                last_success_unix_ms: None,
                max_age_secs: 5,
                error: Some("exit 1".into()),
                evidence: String::new(),
            },
        );
        r.checks.insert(
            "raid".into(),
            CheckResult {
                name: "raid".into(),
                status: 2,
                value: Some(1.5),
                reason: None,
                output: "degraded".into(),
            },
        );
        r
    }

    #[test]
    fn metrics_never_count_unknown_as_pass_and_ages_follow_the_clock() {
        let mut reading = crate::collect::Reading::default();
        state().push_metrics(&mut reading, 20_000);
        let got: Vec<(String, String, f64)> = reading
            .values
            .iter()
            .map(|v| (v.name.to_owned(), v.dimension.clone(), v.value))
            .collect();
        let has = |n: &str, d: &str, v: f64| got.contains(&(n.into(), d.into(), v));
        assert!(has("posture.pass", "firewall", 1.0), "{got:?}");
        assert!(has("posture.unknown", "firewall", 0.0));
        assert!(has("posture.unknown", "antivirus", 1.0));
        assert!(
            !got.iter()
                .any(|(n, d, _)| n == "posture.pass" && d == "antivirus"),
            "unknown is not sent as a pass or a fail"
        );
        assert!(has("av.signature.age.days", "", 3.0));
        assert!(has("backup.age.seconds", "nas", 10.0));
        assert!(has("backup.stale", "nas", 1.0));
        assert!(has("backup.error", "veeam", 1.0));
        assert!(
            !got.iter()
                .any(|(n, d, _)| n == "backup.age.seconds" && d == "veeam")
        );
        assert!(has("check.status", "raid", 2.0));
        assert!(has("check.value", "raid", 1.5));
    }

    #[test]
    fn fingerprint_ignores_seq_time_and_check_values() {
        let a = state();
        let mut b = state();
        b.checks.get_mut("raid").unwrap().value = Some(99.0);
        assert_eq!(
            fingerprint(&a.to_wire(1, 5)),
            fingerprint(&b.to_wire(9, 77))
        );
        b.checks.get_mut("raid").unwrap().status = 0;
        assert_ne!(fingerprint(&a.to_wire(1, 5)), fingerprint(&b.to_wire(1, 5)));
        let w = a.to_wire(3, 4);
        assert_eq!(
            w.backups[1].last_success_unix_ms, 0,
            "unknown is 0 on the wire"
        );
        assert_eq!(w.checks[1].state, v1::PostureState::Unknown as i32);
    }

    #[test]
    fn a_report_is_spooled_once_per_change() {
        let dir = tempfile::tempdir().unwrap();
        let spool = crate::spool::Spool::open(
            dir.path(),
            crate::spool::Bounds {
                max_bytes: 1 << 20,
                max_age: Duration::from_secs(3600),
            },
        )
        .unwrap();
        let shared = Shared::new(
            dir.path(),
            crate::spool_handle::SpoolHandle::new(spool),
            Arc::new(Notify::new()),
        );
        shared.update(|r| {
            *r = state();
            r.posture = None;
        });
        send_if_changed(&shared, i64::MAX);
        assert_eq!(
            shared.spool.blocking(|s| s.len()),
            0,
            "waits for the posture"
        );
        shared.update(|r| *r = state());
        send_if_changed(&shared, i64::MAX);
        send_if_changed(&shared, i64::MAX);
        assert_eq!(shared.spool.blocking(|s| s.len()), 1);
        shared.update(|r| {
            r.checks.get_mut("raid").unwrap().status = 0;
        });
        send_if_changed(&shared, i64::MAX);
        assert_eq!(shared.spool.blocking(|s| s.len()), 2);
        let (_, frame) = shared.spool.blocking(|s| s.next_after(0)).unwrap().unwrap();
        assert!(matches!(
            frame.kind,
            Some(agent_frame::Kind::PostureReport(_))
        ));
    }
}
