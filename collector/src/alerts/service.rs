//! The engine thread: fed every committed group by the store writer (after its
//! `commit()`), woken at least every `tick` for time-based conditions, and committing
//! each round's transitions to SQLite before anything else happens.
//!
//! It owns its own write connection, used only for the alert tables: the store
//! writer stays the only writer of telemetry, and SQLite serialises the two (WAL,
//! busy timeout). Rounds batch whatever is queued, so under load one transaction
//! carries many transitions.
//!
//! Rule files are watched with `notify` (the directory, for `*.toml`; see
//! [`tandem_proto::util::fswatch`]). Once edits settle, the directory is loaded and checked in
//! full; only a clean load replaces the running rules, a bad edit is logged with
//! file, line and column and the running set stays. Where no watch can be set up
//! (inotify limits), the directory is polled on each tick instead (names, sizes and
//! modification times), so edits are never silently ignored.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use tandem_proto::util::now_ms;

use super::engine::Engine;
use super::latency::Histogram;
use super::persist::{self, PersistError};
use super::rules::{self, RuleSet};
use super::silence;
use crate::store::Db;
use crate::store::api::AlertStore;
use crate::store::writer::{CommitSink, Committed, CommittedGroup};
use tandem_proto::util::fswatch;

/// Committed groups that may wait for the engine before the writer waits.
const QUEUE_GROUPS: usize = 1024;
/// Most groups evaluated in one round (one alert transaction).
const MAX_ROUND_GROUPS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("loading alert state: {0}")]
    Load(#[from] PersistError),
    #[error("cannot start the alert engine thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Counters of the engine thread, for logs and the benchmark.
#[derive(Debug, Default)]
pub struct AlertStats {
    /// Committed groups applied to the engine.
    pub groups: AtomicU64,
    pub evaluations: AtomicU64,
    /// Time spent evaluating (not persisting), in nanoseconds.
    pub eval_nanos: AtomicU64,
    pub persist_nanos: AtomicU64,
    pub records: AtomicU64,
    pub persist_failures: AtomicU64,
    /// Microseconds from a sample's commit to the commit of the state transition it
    /// caused, every transition counted (a fixed-size histogram, whatever the
    /// uptime). Transitions of the timer (`for` expiring, offline) are not included:
    /// no sample caused them.
    pub latencies_us: Mutex<Histogram>,
}

/// Owns the engine thread; it stops once every [`CommitSink`] is dropped (after the
/// store writer stops), saving what is left.
pub struct AlertService {
    join: JoinHandle<()>,
    pub stats: Arc<AlertStats>,
}

impl AlertService {
    /// Loads devices and instance state from `db` (the engine's own store handle,
    /// used for nothing else), then starts the thread. With `watch`, the rules are
    /// reloaded when files in that directory change.
    pub fn spawn(
        mut conn: Db,
        rules: RuleSet,
        tick: Duration,
        watch: Option<PathBuf>,
    ) -> Result<(CommitSink, AlertService), ServiceError> {
        let mut engine = Engine::new(rules);
        for (id, d) in persist::load_devices(&conn)? {
            engine.restore_device(id, d);
        }
        refresh_operator_state(&conn, &mut engine, now_ms());
        let instances = persist::load_instances(&conn)?;
        let resumed = instances.len();
        let now = now_ms();
        for (k, tenant, inst) in instances {
            engine.restore_instance(k, tenant, inst, now);
        }
        engine.start_grace(now);
        let watch = watch.map(RulesWatch::start);
        tracing::info!(
            rules = engine.rule_set().rules.len(),
            windows = engine.rule_set().windows.len(),
            resumed,
            "alert engine starting"
        );
        let (tx, rx) = mpsc::sync_channel(QUEUE_GROUPS);
        let stats = Arc::new(AlertStats::default());
        let st = stats.clone();
        let join = std::thread::Builder::new()
            .name("alert-engine".into())
            .spawn(move || {
                // The connection only writes alert tables; a busy telemetry writer
                // makes it wait, not fail. Under full ingest the store writer is in a
                // transaction almost all the time, and SQLite's default busy handler
                // sleeps up to 100 ms between tries, missing the short gaps between
                // its commits; retrying every 0.5 ms catches them.
                // Issue 15: the console shows what this engine loaded.
                let path = conn.path();
                super::published::publish(
                    path.as_deref().and_then(|p| p.to_str()),
                    engine.rule_set(),
                );
                if let Err(e) = conn.retry_busy_often() {
                    tracing::warn!(error = %e, "cannot set the alert connection's busy handler");
                }
                run(&mut conn, &mut engine, &rx, tick, &st, watch);
                log_summary(&st);
                if let Err(e) = conn.close() {
                    tracing::warn!(error = %e, "closing the alert connection failed");
                }
                tracing::info!("alert engine stopped");
            })
            .map_err(ServiceError::Thread)?;
        Ok((tx, AlertService { join, stats }))
    }

    /// Waits for the thread (after the writer, and so every sink, is gone).
    pub fn join(self) {
        if self.join.join().is_err() {
            tracing::error!("alert engine thread panicked");
        }
    }
}

/// One line at shutdown with what the engine did over the collector's life; the
/// load generator (`loadgen --rules`) reads its latency figures from it.
fn log_summary(stats: &AlertStats) {
    let lat = stats
        .latencies_us
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    let ms = |p: f64| lat.quantile(p).map_or(-1.0, |us| us as f64 / 1000.0);
    tracing::info!(
        groups = stats.groups.load(Ordering::Relaxed),
        evaluations = stats.evaluations.load(Ordering::Relaxed),
        eval_ms = stats.eval_nanos.load(Ordering::Relaxed) / 1_000_000,
        persist_ms = stats.persist_nanos.load(Ordering::Relaxed) / 1_000_000,
        records = stats.records.load(Ordering::Relaxed),
        persist_failures = stats.persist_failures.load(Ordering::Relaxed),
        timed_transitions = lat.count(),
        commit_to_transition_p50_ms = ms(0.5),
        commit_to_transition_p99_ms = ms(0.99),
        commit_to_transition_max_ms = ms(1.0),
        "alert engine summary"
    );
}

/// The site a device enrolled into (`None` for none, or if it cannot be read:
/// site-scoped rules then treat the device as site-less until the next hello).
fn site_of(store: &impl AlertStore, device_id: &str) -> Option<String> {
    store.site_of(device_id).ok().flatten()
}

/// When the device's newest certificate expires (`None` if none is recorded).
fn cert_expiry_of(store: &impl AlertStore, device_id: &str) -> Option<i64> {
    store.cert_expiry_of(device_id).ok().flatten()
}

fn apply(conn: &Db, engine: &mut Engine, g: CommittedGroup, stats: &AlertStats) {
    stats.groups.fetch_add(1, Ordering::Relaxed);
    for item in g.items {
        match item {
            Committed::Hello { who, facts } => {
                engine.on_hello(
                    &who.device_id,
                    &who.tenant,
                    &facts.os_family,
                    &facts.os_version,
                    g.committed_ms,
                );
                engine.set_site(&who.device_id, site_of(conn, &who.device_id));
                engine.set_cert_expiry(&who.device_id, cert_expiry_of(conn, &who.device_id));
            }
            // A live copy counts as a batch: that is what keeps alerts current while a
            // backlog drains. Its durable copy arrives later and the state machine
            // ignores those samples as older than what it has seen.
            Committed::Batch { device_id, batch } | Committed::Live { device_id, batch } => {
                engine.on_batch(&device_id, &batch, g.committed_ms)
            }
            Committed::Patch { device_id, report } => {
                engine.on_patch(&device_id, &report, g.committed_ms)
            }
            // A gap record carries no samples.
            Committed::Gap { .. }
            | Committed::Inventory { .. }
            | Committed::Posture { .. }
            | Committed::Maintain(_) => {}
        }
    }
}

/// The rules directory and how its edits are noticed.
struct RulesWatch {
    dir: PathBuf,
    how: Noticing,
}

enum Noticing {
    /// `notify` events (a bounded channel of one: a burst only needs one wake-up),
    /// and when the last burst settles.
    Events {
        _watcher: notify::RecommendedWatcher,
        events: mpsc::Receiver<()>,
        due: Option<Instant>,
    },
    /// No watch possible: what the directory looked like when last loaded, compared
    /// on each tick.
    Polling(Vec<(PathBuf, u64, Option<SystemTime>)>),
}

/// How long the engine thread may sleep while a watch is active: it wakes to see
/// rule-file events (they cannot wake it; only committed data and ticks do).
const WATCH_POLL: Duration = Duration::from_millis(250);

impl RulesWatch {
    fn start(dir: PathBuf) -> RulesWatch {
        let (tx, rx) = mpsc::sync_channel(1);
        let watcher = fswatch::watch_dir(
            &dir,
            |p| p.extension().is_some_and(|x| x == "toml"),
            move || {
                let _ = tx.try_send(());
            },
        );
        let how = match watcher {
            // One load right after the watch exists: an edit made between the
            // caller's first load and this point raised no event.
            Ok(w) => Noticing::Events {
                _watcher: w,
                events: rx,
                due: Some(Instant::now()),
            },
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the rules directory; checking it on every tick instead");
                Noticing::Polling(stamp(&dir))
            }
        };
        RulesWatch { dir, how }
    }

    /// The longest the engine thread should sleep now.
    fn max_sleep(&self) -> Option<Duration> {
        match &self.how {
            Noticing::Events { due: Some(d), .. } => {
                Some(d.saturating_duration_since(Instant::now()))
            }
            Noticing::Events { .. } => Some(WATCH_POLL),
            Noticing::Polling(_) => None,
        }
    }

    /// Reloads if files changed and (for events) the edit has settled. `ticked`:
    /// this round is a tick (polling compares the directory only then).
    fn check(&mut self, engine: &mut Engine, ticked: bool) {
        let changed = match &mut self.how {
            Noticing::Events { events, due, .. } => {
                while events.try_recv().is_ok() {
                    *due = Some(Instant::now() + fswatch::SETTLE);
                }
                match *due {
                    Some(d) if Instant::now() >= d => {
                        *due = None;
                        true
                    }
                    _ => false,
                }
            }
            Noticing::Polling(last) => {
                if !ticked {
                    return;
                }
                let now = stamp(&self.dir);
                // Remembered even when the load fails: a bad edit is reported once.
                let changed = now != *last;
                *last = now;
                changed
            }
        };
        if changed {
            reload(&self.dir, engine);
        }
    }
}

/// Names, sizes and modification times of the rule files (the polling fallback).
fn stamp(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
        .map(|e| {
            let meta = e.metadata().ok();
            (
                e.path(),
                meta.as_ref().map_or(0, |m| m.len()),
                meta.and_then(|m| m.modified().ok()),
            )
        })
        .collect();
    v.sort();
    v
}

fn reload(dir: &Path, engine: &mut Engine) {
    match rules::load_dir(dir) {
        // The load right after the watch started usually finds what the caller
        // loaded: nothing to replace (and no rate/forecast history to drop).
        Ok(set) if set == *engine.rule_set() => {
            tracing::debug!(dir = %dir.display(), "alert rules unchanged");
        }
        Ok(set) => {
            tracing::info!(
                dir = %dir.display(),
                rules = set.rules.len(),
                windows = set.windows.len(),
                "alert rules reloaded"
            );
            engine.replace_rules(set, now_ms());
            super::published::republish(engine.rule_set());
        }
        Err(e) => {
            for p in &e.problems {
                tracing::error!(problem = %p, "rule file problem; the running rules stay");
            }
        }
    }
}

/// Re-reads what operators change with the CLI or the console while the collector
/// runs: device tags, silences and maintenance windows. Cheap (small tables), so it runs on every tick; a failed
/// read keeps what the engine had.
fn refresh_operator_state(conn: &Db, engine: &mut Engine, now_ms: i64) {
    match persist::load_tags(conn) {
        Ok(tags) => engine.set_tags(tags, now_ms),
        Err(e) => tracing::warn!(error = %e, "cannot read device tags; keeping the previous ones"),
    }
    match silence::load(conn, now_ms) {
        Ok(s) => engine.set_silences(s),
        Err(e) => tracing::warn!(error = %e, "cannot read silences; keeping the previous ones"),
    }
    // Issue 15: maintenance windows made from the console API, beside the files'.
    match super::maintenance::load_db(conn, now_ms) {
        Ok(w) => engine.set_db_windows(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read maintenance windows; keeping the previous ones")
        }
    }
    // `device revoke` / `device remove` run in another process: their devices leave
    // the fleet here, within a tick (their alerts close, no offline alert follows).
    match persist::load_revoked_devices(conn) {
        Ok(ids) => {
            let newly: Vec<String> = ids
                .into_iter()
                .filter(|id| engine.retire_device(id, now_ms))
                .collect();
            match newly.len() {
                0 => {}
                1 => {
                    tracing::info!(device = %newly[0], "revoked device out of alerting; its alerts are closed")
                }
                n => tracing::info!(
                    devices = n,
                    "revoked devices out of alerting; their alerts are closed"
                ),
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read revoked devices"),
    }
}

/// How often certificate expiry dates are re-read (renewals need no new hello).
const CERT_REFRESH: Duration = Duration::from_secs(60);

fn refresh_cert_expiries(conn: &Db, engine: &mut Engine) {
    match persist::load_cert_expiries(conn) {
        Ok(rows) => {
            for (device, not_after) in rows {
                engine.set_cert_expiry(&device, Some(not_after));
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read certificate expiry dates"),
    }
}

fn run(
    conn: &mut Db,
    engine: &mut Engine,
    rx: &mpsc::Receiver<CommittedGroup>,
    tick: Duration,
    stats: &AlertStats,
    mut watch: Option<RulesWatch>,
) {
    let mut next_tick = Instant::now();
    let mut next_cert_refresh = Instant::now() + CERT_REFRESH;
    let mut open = true;
    while open {
        let mut wait = next_tick.saturating_duration_since(Instant::now());
        if let Some(max) = watch.as_ref().and_then(RulesWatch::max_sleep) {
            wait = wait.min(max);
        }
        let first = match rx.recv_timeout(wait) {
            Ok(g) => Some(g),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                open = false;
                None
            }
        };
        let started = Instant::now();
        let before = engine.evaluations;
        // (commit time of a group, transitions its samples caused), for the latency.
        let mut caused: Vec<(Instant, u64)> = Vec::new();
        let mut apply_timed = |engine: &mut Engine, g: CommittedGroup| {
            let (at, n0) = (g.committed_at, engine.fed_transitions);
            apply(conn, engine, g, stats);
            if engine.fed_transitions > n0 {
                caused.push((at, engine.fed_transitions - n0));
            }
        };
        if let Some(g) = first {
            apply_timed(engine, g);
            for _ in 1..MAX_ROUND_GROUPS {
                match rx.try_recv() {
                    Ok(g) => apply_timed(engine, g),
                    Err(_) => break,
                }
            }
        }
        let ticked = Instant::now() >= next_tick || !open;
        if let Some(w) = watch.as_mut() {
            w.check(engine, ticked);
        }
        if ticked {
            if Instant::now() >= next_cert_refresh {
                refresh_cert_expiries(conn, engine);
                next_cert_refresh = Instant::now() + CERT_REFRESH;
            }
            refresh_operator_state(conn, engine, now_ms());
            engine.tick(now_ms());
            next_tick = Instant::now() + tick;
        }
        let changes = engine.take_changes();
        stats
            .evaluations
            .fetch_add(engine.evaluations - before, Ordering::Relaxed);
        stats
            .eval_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        if changes.is_empty() {
            continue;
        }
        let persist_start = Instant::now();
        let n: usize = changes.iter().map(|c| c.records.len()).sum();
        if let Err(e) = persist::save(conn, &changes, now_ms()) {
            // Nothing of the round is stored (one transaction): keep it for the next
            // round rather than lose history.
            stats.persist_failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, records = n, "saving alert transitions failed; retrying next round");
            engine.requeue(changes);
            continue;
        }
        stats
            .persist_nanos
            .fetch_add(persist_start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        stats.records.fetch_add(n as u64, Ordering::Relaxed);
        for c in &changes {
            for r in &c.records {
                tracing::debug!(
                    rule = %c.key.rule,
                    device = %c.key.device_id,
                    dimension = %c.key.dimension,
                    event = r.event.kind(),
                    state = r.state.as_str(),
                    value = r.value,
                    suppressed = r.suppressed,
                    "alert"
                );
            }
        }
        if !caused.is_empty()
            && let Ok(mut l) = stats.latencies_us.lock()
        {
            for (at, n) in caused {
                l.record(at.elapsed().as_micros() as u64, n);
            }
        }
    }
}
