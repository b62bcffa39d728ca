//! The engine thread: fed every committed group by the store writer (after its
//! `commit()`), woken at least every `tick` for time-based conditions, and committing
//! each round's transitions to SQLite before anything else happens.
//!
//! It owns its own write connection, used only for the alert tables: the store
//! writer stays the only writer of telemetry, and SQLite serialises the two (WAL,
//! busy timeout). Rounds batch whatever is queued, so under load one transaction
//! carries many transitions.
//!
//! Rule files are watched (polled on each tick: names, sizes and modification times
//! of `*.toml` in the directory). A changed directory is loaded and checked in full;
//! only a clean load replaces the running rules, a bad edit is logged with file,
//! line and column and the running set stays.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

use super::engine::Engine;
use super::persist::{self, PersistError};
use super::rules::{self, RuleSet};
use crate::store::writer::{CommitSink, Committed, CommittedGroup};

/// Committed groups that may wait for the engine before the writer waits.
const QUEUE_GROUPS: usize = 1024;
/// Most groups evaluated in one round (one alert transaction).
const MAX_ROUND_GROUPS: usize = 256;
/// Commit-to-transition latencies kept for the benchmark.
const MAX_LATENCIES: usize = 1 << 20;

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
    /// Microseconds from a sample's commit to its transitions' commit, for rounds
    /// that had transitions.
    pub latencies_us: Mutex<Vec<u64>>,
}

/// Owns the engine thread; it stops once every [`CommitSink`] is dropped (after the
/// store writer stops), saving what is left.
pub struct AlertService {
    join: JoinHandle<()>,
    pub stats: Arc<AlertStats>,
}

impl AlertService {
    /// Loads devices and instance state from `conn`, then starts the thread. With
    /// `watch`, the rules are reloaded when files in that directory change.
    pub fn spawn(
        mut conn: Connection,
        rules: RuleSet,
        tick: Duration,
        watch: Option<PathBuf>,
    ) -> Result<(CommitSink, AlertService), ServiceError> {
        let mut engine = Engine::new(rules);
        for (id, d) in persist::load_devices(&conn)? {
            engine.restore_device(id, d);
        }
        let instances = persist::load_instances(&conn)?;
        let resumed = instances.len();
        let now = now_ms();
        for (k, tenant, inst) in instances {
            engine.restore_instance(k, tenant, inst, now);
        }
        engine.start_grace(now);
        let watch = watch.map(|dir| RulesWatch {
            stamp: stamp(&dir),
            dir,
        });
        for r in &engine.rule_set().rules {
            if !r.kind.is_fed() {
                tracing::info!(rule = %r.name, "rule kind has no data source yet; not evaluated");
            }
        }
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
                if let Err(e) = conn.busy_handler(Some(retry_soon)) {
                    tracing::warn!(error = %e, "cannot set the alert connection's busy handler");
                }
                run(&mut conn, &mut engine, &rx, tick, &st, watch);
                if let Err((_, e)) = conn.close() {
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

/// SQLite busy handler: try again in 0.5 ms, for up to 30 s.
fn retry_soon(attempt: i32) -> bool {
    std::thread::sleep(Duration::from_micros(500));
    attempt < 60_000
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The site a device enrolled into (`None` for none, or if it cannot be read:
/// site-scoped rules then treat the device as site-less until the next hello).
fn site_of(conn: &Connection, device_id: &str) -> Option<String> {
    conn.query_row(
        "SELECT s.name FROM devices d JOIN sites s ON s.id = d.site_id WHERE d.id = ?1",
        [device_id],
        |r| r.get(0),
    )
    .ok()
}

/// When the device's newest certificate expires (`None` if none is recorded).
fn cert_expiry_of(conn: &Connection, device_id: &str) -> Option<i64> {
    conn.query_row(
        "SELECT max(not_after_ms) FROM certificates WHERE device_id = ?1",
        [device_id],
        |r| r.get(0),
    )
    .ok()
    .flatten()
}

fn apply(conn: &Connection, engine: &mut Engine, g: CommittedGroup, stats: &AlertStats) {
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
            Committed::Gap { .. } | Committed::Inventory { .. } => {}
        }
    }
}

/// The rules directory and what it looked like when last loaded.
struct RulesWatch {
    dir: PathBuf,
    stamp: Vec<(PathBuf, u64, Option<SystemTime>)>,
}

/// Names, sizes and modification times of the rule files: cheap to take each tick.
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

fn reload_if_changed(w: &mut RulesWatch, engine: &mut Engine) {
    let now = stamp(&w.dir);
    if now == w.stamp {
        return;
    }
    // Remembered even when the load fails: a bad edit is reported once, not per tick.
    w.stamp = now;
    match rules::load_dir(&w.dir) {
        Ok(set) => {
            tracing::info!(
                dir = %w.dir.display(),
                rules = set.rules.len(),
                windows = set.windows.len(),
                "alert rules reloaded"
            );
            engine.replace_rules(set, now_ms());
        }
        Err(e) => {
            for p in &e.problems {
                tracing::error!(problem = %p, "rule file problem; the running rules stay");
            }
        }
    }
}

/// How often certificate expiry dates are re-read (renewals need no new hello).
const CERT_REFRESH: Duration = Duration::from_secs(60);

fn refresh_cert_expiries(conn: &Connection, engine: &mut Engine) {
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
    conn: &mut Connection,
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
        let first = match rx.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
            Ok(g) => Some(g),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                open = false;
                None
            }
        };
        let started = Instant::now();
        let before = engine.evaluations;
        let mut oldest: Option<Instant> = None;
        if let Some(g) = first {
            oldest = Some(g.committed_at);
            apply(conn, engine, g, stats);
            for _ in 1..MAX_ROUND_GROUPS {
                match rx.try_recv() {
                    Ok(g) => {
                        oldest = Some(oldest.map_or(g.committed_at, |o| o.min(g.committed_at)));
                        apply(conn, engine, g, stats);
                    }
                    Err(_) => break,
                }
            }
        }
        if Instant::now() >= next_tick || !open {
            if let Some(w) = watch.as_mut() {
                reload_if_changed(w, engine);
            }
            if Instant::now() >= next_cert_refresh {
                refresh_cert_expiries(conn, engine);
                next_cert_refresh = Instant::now() + CERT_REFRESH;
            }
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
        if let Some(o) = oldest
            && n > 0
            && let Ok(mut l) = stats.latencies_us.lock()
            && l.len() < MAX_LATENCIES
        {
            l.push(o.elapsed().as_micros() as u64);
        }
    }
}
