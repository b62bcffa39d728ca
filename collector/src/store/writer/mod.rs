//! The single store writer: one thread owns the write connection and commits what
//! ingest sends it in groups.
//!
//! Requests arrive on a bounded channel; the thread takes the first, drains up to
//! `max_group - 1` more that are already waiting, applies each inside its own
//! savepoint (so one bad request fails alone), commits once, and only then answers
//! every request of the group. An answer of `Ok` therefore means "on disk": ingest
//! acknowledges a sequence number to the agent only after it.
//!
//! Store maintenance (compaction, retention) writes through here too, as
//! [`Request::Maintain`] jobs inside the same group transactions: the maintenance
//! thread only reads and encodes (on a read-only connection), never holds SQLite's
//! write lock while the writer waits, and its writes are durable with the writer's
//! own commit (issue 17; docs/BENCHMARKS.md measures what this and the maintenance
//! pace did to ingest's p99 ack latency).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tandem_proto::util::now_ms;

use rusqlite::{Connection, OptionalExtension, params};
use tandem_proto::v1::{Gap, GapReason, Inventory, MetricBatch, PatchReport, PostureReport};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;

mod reports;
mod values;

#[cfg(test)]
use reports::{MAX_CHANGES_PER_DEVICE, MAX_CHANGES_PER_INVENTORY};
use reports::{write_inventory, write_patch, write_posture};
use values::{SeriesCache, write_values};

/// Who a write is for: taken from the client certificate, never from a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    pub tenant: String,
    pub device_id: String,
}

/// What the agent said about itself in its Hello.
#[derive(Debug, Clone, Default)]
pub struct DeviceFacts {
    pub hostname: String,
    pub os_family: String,
    pub os_version: String,
    pub agent_version: String,
    pub boot_time_unix: i64,
}

/// The result of writing a batch or report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Newly stored.
    Stored,
    /// This (device, seq) was stored before; nothing was written again.
    Duplicate,
}

/// Counters about the writer, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub commits: AtomicU64,
    pub commit_failures: AtomicU64,
    pub batches_stored: AtomicU64,
    pub batches_duplicate: AtomicU64,
    pub values_stored: AtomicU64,
}

/// Sizing of the writer.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Requests that may wait for the writer. When full, ingest waits (backpressure
    /// reaches the agents through HTTP/2 flow control) instead of buffering without bound.
    pub queue_len: usize,
    /// Most requests committed in one transaction.
    pub max_group: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            queue_len: 4096,
            max_group: 256,
        }
    }
}

/// A write for the writer thread (and, once committed, for the alert engine).
pub enum Request {
    Hello {
        who: DeviceIdentity,
        facts: DeviceFacts,
    },
    Batch {
        device_id: String,
        batch: MetricBatch,
    },
    Patch {
        device_id: String,
        report: PatchReport,
    },
    Gap {
        device_id: String,
        gap: Gap,
    },
    Inventory {
        device_id: String,
        inventory: Inventory,
    },
    /// Posture, backups and custom-check states (issue #14).
    Posture {
        device_id: String,
        report: PostureReport,
    },
    /// A live copy of a batch: values only, no ledger, no acked_seq.
    Live {
        device_id: String,
        batch: MetricBatch,
    },
    /// A store maintenance write (see [`MaintenanceHandle::run`]); never handed to
    /// the alert engine.
    Maintain(Job),
}

/// A maintenance write, run by the writer in its own savepoint of a group
/// transaction: an error rolls back this job alone.
pub(crate) type Job = Box<dyn Fn(&Connection) -> Result<(), StoreError> + Send>;

enum Reply {
    /// Answers a Hello with the device's highest committed seq.
    Hello(oneshot::Sender<Result<u64, StoreError>>),
    Write(oneshot::Sender<Result<Outcome, StoreError>>),
    /// Answers a maintenance job once its group is committed.
    Maintain(oneshot::Sender<Result<(), StoreError>>),
}

/// A cloneable handle that sends work to the writer thread.
#[derive(Clone)]
pub struct Writer {
    /// Bounded so a slow disk slows ingest down rather than growing memory.
    tx: mpsc::Sender<(Request, Reply)>,
    pub stats: Arc<WriterStats>,
}

/// Owns the writer thread; joining it waits until every queued request is committed
/// and the connection is closed.
pub struct WriterThread {
    join: JoinHandle<()>,
}

impl WriterThread {
    /// Waits for the writer to finish. It finishes once every [`Writer`] is dropped.
    pub fn join(self) {
        if self.join.join().is_err() {
            tracing::error!("store writer thread panicked");
        }
    }
}

/// What one group commit made durable, handed on (to the alert engine) only after
/// `commit()` returned: nothing is evaluated that could still be rolled back.
pub struct CommittedGroup {
    pub committed_ms: i64,
    /// When the commit returned, to measure commit-to-transition latency.
    pub committed_at: std::time::Instant,
    pub items: Vec<Committed>,
}

/// One committed request, as it was queued. Duplicates and failed requests are not
/// included.
pub(crate) type Committed = Request;

/// Where committed groups go. Bounded: when the engine falls behind, the writer
/// waits, and ingest backpressure reaches the agents, rather than alerts being lost.
pub(crate) type CommitSink = std::sync::mpsc::SyncSender<CommittedGroup>;

/// A pending answer from the writer.
pub(crate) type Pending = oneshot::Receiver<Result<Outcome, StoreError>>;

impl Writer {
    /// Starts the writer thread on `conn`.
    #[cfg(test)]
    pub(crate) fn spawn(
        conn: Connection,
        config: WriterConfig,
    ) -> std::io::Result<(Writer, WriterThread)> {
        Self::spawn_with_sink(conn, config, None)
    }

    /// Starts the writer thread; after each commit, what was stored goes to `sink`.
    pub fn spawn_with_sink(
        conn: Connection,
        config: WriterConfig,
        sink: Option<CommitSink>,
    ) -> std::io::Result<(Writer, WriterThread)> {
        let mut conn = conn;
        // The acknowledging commit syncs inside the lock (see store::sync_after_unlock).
        super::sync_in_lock(&mut conn).map_err(std::io::Error::other)?;
        let (tx, rx) = mpsc::channel(config.queue_len.max(1));
        let stats = Arc::new(WriterStats::default());
        let thread_stats = stats.clone();
        let join = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                run(
                    conn,
                    rx,
                    config.max_group.max(1),
                    &thread_stats,
                    sink.as_ref(),
                )
            })?;
        Ok((Writer { tx, stats }, WriterThread { join }))
    }

    /// Records (or refreshes) a device and returns its highest committed seq.
    pub async fn hello(&self, who: DeviceIdentity, facts: DeviceFacts) -> Result<u64, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((Request::Hello { who, facts }, Reply::Hello(reply)))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Queues a batch; waits only for room in the queue. The returned receiver
    /// resolves once the batch's group is committed.
    pub async fn submit_batch(
        &self,
        device_id: String,
        batch: MetricBatch,
    ) -> Result<Pending, StoreError> {
        self.submit(Request::Batch { device_id, batch }).await
    }

    /// Queues a patch report, like [`Writer::submit_batch`].
    pub(crate) async fn submit_patch(
        &self,
        device_id: String,
        report: PatchReport,
    ) -> Result<Pending, StoreError> {
        self.submit(Request::Patch { device_id, report }).await
    }

    /// Queues an inventory, like [`Writer::submit_batch`].
    pub(crate) async fn submit_inventory(
        &self,
        device_id: String,
        inventory: Inventory,
    ) -> Result<Pending, StoreError> {
        self.submit(Request::Inventory {
            device_id,
            inventory,
        })
        .await
    }

    /// Queues a posture report, like [`Writer::submit_batch`].
    pub(crate) async fn submit_posture(
        &self,
        device_id: String,
        report: PostureReport,
    ) -> Result<Pending, StoreError> {
        self.submit(Request::Posture { device_id, report }).await
    }

    /// Queues a gap record, like [`Writer::submit_batch`].
    pub(crate) async fn submit_gap(
        &self,
        device_id: String,
        gap: Gap,
    ) -> Result<Pending, StoreError> {
        self.submit(Request::Gap { device_id, gap }).await
    }

    /// Queues a live copy of a batch: its values are stored (once per series and
    /// instant), nothing else.
    pub(crate) async fn submit_live(
        &self,
        device_id: String,
        batch: MetricBatch,
    ) -> Result<Pending, StoreError> {
        self.submit(Request::Live { device_id, batch }).await
    }

    async fn submit(&self, req: Request) -> Result<Pending, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((req, Reply::Write(reply)))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        Ok(rx)
    }

    /// Most requests that can wait for the writer.
    pub(crate) fn queue_capacity(&self) -> usize {
        self.tx.max_capacity()
    }

    /// Requests waiting for the writer right now.
    pub(crate) fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// A handle for the store maintenance thread. It does not keep the writer
    /// running: once every [`Writer`] is gone the writer stops as before, and the
    /// handle's jobs fail with [`StoreError::WriterGone`], so a shutdown never waits
    /// for a maintenance pass.
    pub(crate) fn maintenance(&self) -> MaintenanceHandle {
        MaintenanceHandle {
            tx: self.tx.downgrade(),
            stats: self.stats.clone(),
        }
    }
}

/// Sends maintenance writes to the writer thread (see [`Writer::maintenance`]).
#[derive(Clone)]
pub(crate) struct MaintenanceHandle {
    tx: mpsc::WeakSender<(Request, Reply)>,
    stats: Arc<WriterStats>,
}

impl MaintenanceHandle {
    /// Values the writer has stored since it started (what paces steady compaction).
    pub(crate) fn values_stored(&self) -> u64 {
        self.stats.values_stored.load(Ordering::Relaxed)
    }

    /// Runs `job` inside the writer's next group transaction, queued behind the
    /// ingest already waiting, and returns its result once that transaction is
    /// committed (durable as the group's acknowledgements are). An error of the job
    /// rolls back what it wrote and nothing else. Blocks: call it from a thread of
    /// its own, never from an async task.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        job: impl Fn(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let slot = Arc::new(Mutex::new(None));
        let out = slot.clone();
        let job: Job = Box::new(move |conn| {
            let v = job(conn)?;
            *out.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
            Ok(())
        });
        let (reply, answer) = oneshot::channel();
        // Upgraded only for the send: a queued job is committed with the rest of
        // the queue at shutdown, but a waiting handle keeps nothing alive.
        let tx = self.tx.upgrade().ok_or(StoreError::WriterGone)?;
        tx.blocking_send((Request::Maintain(job), Reply::Maintain(reply)))
            .map_err(|_| StoreError::WriterGone)?;
        drop(tx);
        answer
            .blocking_recv()
            .map_err(|_| StoreError::WriterGone)??;
        let v = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        v.ok_or(StoreError::WriterGone)
    }
}

/// What the writer thread remembers between groups.
#[derive(Default)]
struct State {
    cache: SeriesCache,
    /// Devices with a failed write since their last Hello. Nothing later of theirs is
    /// written until they reconnect: the stored sequence high-water mark (what
    /// Welcome reports) must never step over a batch that was not stored, or the
    /// agent would drop that batch from its spool.
    halted: std::collections::HashSet<String>,
    /// The alert engine stopped taking committed groups (said once, not per commit).
    sink_gone: bool,
}

impl Request {
    fn device_id(&self) -> &str {
        match self {
            Request::Hello { who, .. } => &who.device_id,
            Request::Batch { device_id, .. }
            | Request::Patch { device_id, .. }
            | Request::Gap { device_id, .. }
            | Request::Inventory { device_id, .. }
            | Request::Posture { device_id, .. }
            | Request::Live { device_id, .. } => device_id,
            Request::Maintain(_) => "",
        }
    }
}

fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<(Request, Reply)>,
    max_group: usize,
    stats: &WriterStats,
    sink: Option<&CommitSink>,
) {
    let mut state = State::default();
    let mut group = Vec::with_capacity(max_group);
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        while group.len() < max_group {
            match rx.try_recv() {
                Ok(item) => group.push(item),
                Err(_) => break,
            }
        }
        commit_group(&mut conn, &mut state, &mut group, stats, sink);
    }
    // Every sender is gone: all queued work is committed. Closing the connection
    // checkpoints the WAL.
    if let Err((_, err)) = conn.close() {
        tracing::warn!(error = %err, "closing the database failed");
    }
    tracing::info!("store writer stopped");
}

enum Answer {
    Hello(Result<u64, StoreError>),
    Write(Result<Outcome, StoreError>),
    Maintain(Result<(), StoreError>),
}

fn commit_group(
    conn: &mut Connection,
    state: &mut State,
    group: &mut Vec<(Request, Reply)>,
    stats: &WriterStats,
    sink: Option<&CommitSink>,
) {
    let commit_timer = crate::counters::commit_timer(); // issue 15: /metrics commit latency
    let now = now_ms();
    let mut answers = Vec::with_capacity(group.len());
    let mut values_in_group = 0u64;
    // Where a slow group's time went (logged at debug level, see SLOW_COMMIT).
    let mut maintenance = std::time::Duration::ZERO;
    let mut commit_took = std::time::Duration::ZERO;
    let result = (|| -> Result<(), rusqlite::Error> {
        let tx = conn.transaction()?;
        for (req, _) in group.iter() {
            let device = req.device_id();
            if matches!(req, Request::Hello { .. }) {
                state.halted.remove(device);
            } else if state.halted.contains(device) {
                answers.push(Answer::Write(Err(StoreError::Halted {
                    device_id: device.to_owned(),
                })));
                continue;
            }
            // Prepared once per connection: parsing these per request was a
            // measurable share of the writer's time (store2 brief, perf profile).
            tx.prepare_cached("SAVEPOINT req")?.execute([])?;
            let cache = &mut state.cache;
            let answer = match req {
                Request::Maintain(job) => {
                    let t = std::time::Instant::now();
                    let a = Answer::Maintain(job(&tx));
                    maintenance += t.elapsed();
                    a
                }
                Request::Hello { who, facts } => Answer::Hello(write_hello(&tx, who, facts, now)),
                Request::Batch { device_id, batch } => Answer::Write(
                    write_batch(&tx, cache, device_id, batch, now).map(|(o, n)| {
                        values_in_group += n;
                        o
                    }),
                ),
                Request::Patch { device_id, report } => {
                    Answer::Write(write_patch(&tx, device_id, report, now))
                }
                Request::Gap { device_id, gap } => {
                    Answer::Write(write_gap(&tx, device_id, gap, now))
                }
                Request::Inventory {
                    device_id,
                    inventory,
                } => Answer::Write(write_inventory(&tx, device_id, inventory, now)),
                Request::Posture { device_id, report } => {
                    Answer::Write(write_posture(&tx, device_id, report, now))
                }
                Request::Live { device_id, batch } => {
                    Answer::Write(write_values(&tx, cache, device_id, batch).map(|n| {
                        values_in_group += n;
                        Outcome::Stored
                    }))
                }
            };
            match answer {
                // A failed maintenance job undoes its own writes; it is nobody's
                // device and creates no series.
                Answer::Maintain(Err(_)) => tx.execute_batch("ROLLBACK TO req; RELEASE req")?,
                Answer::Hello(Err(_)) | Answer::Write(Err(_)) => {
                    tx.execute_batch("ROLLBACK TO req; RELEASE req")?;
                    // The cache may hold ids of series rolled back just now.
                    state.cache.clear();
                    state.halted.insert(device.to_owned());
                }
                _ => {
                    tx.prepare_cached("RELEASE req")?.execute([])?;
                }
            }
            answers.push(answer);
        }
        let t = std::time::Instant::now();
        let committed = tx.commit();
        commit_took = t.elapsed();
        committed
    })();
    let took = commit_timer.elapsed();
    if took >= SLOW_COMMIT {
        tracing::debug!(
            took_ms = took.as_millis() as u64,
            maintenance_ms = maintenance.as_millis() as u64,
            commit_ms = commit_took.as_millis() as u64,
            requests = group.len(),
            "slow store group commit"
        );
    }

    match result {
        Ok(()) => {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats
                .values_stored
                .fetch_add(values_in_group, Ordering::Relaxed);
            let mut committed = Vec::new();
            for ((req, reply), answer) in group.drain(..).zip(answers) {
                if sink.is_some()
                    && matches!(
                        answer,
                        Answer::Hello(Ok(_)) | Answer::Write(Ok(Outcome::Stored))
                    )
                {
                    committed.push(req);
                }
                match (&answer, &reply) {
                    (Answer::Write(Ok(Outcome::Stored)), _) => {
                        stats.batches_stored.fetch_add(1, Ordering::Relaxed);
                    }
                    (Answer::Write(Ok(Outcome::Duplicate)), _) => {
                        stats.batches_duplicate.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
                send_answer(reply, answer);
            }
            if let (Some(sink), false) = (sink, committed.is_empty() || state.sink_gone) {
                let group = CommittedGroup {
                    committed_ms: now,
                    committed_at: std::time::Instant::now(),
                    items: committed,
                };
                if sink.send(group).is_err() {
                    state.sink_gone = true;
                    tracing::error!("alert engine stopped; committed data is no longer evaluated");
                }
            }
        }
        Err(err) => {
            // Nothing of this group is on disk (disk full, I/O error): every request
            // fails and nothing is acknowledged; agents keep their data and retry.
            stats.commit_failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %err, requests = group.len(), "store commit failed");
            state.cache.clear();
            for (req, reply) in group.drain(..) {
                if !matches!(req, Request::Maintain(_)) {
                    state.halted.insert(req.device_id().to_owned());
                }
                let e = || StoreError::CommitFailed(err.to_string());
                match reply {
                    Reply::Hello(r) => {
                        let _ = r.send(Err(e()));
                    }
                    Reply::Write(r) => {
                        let _ = r.send(Err(e()));
                    }
                    Reply::Maintain(r) => {
                        let _ = r.send(Err(e()));
                    }
                }
            }
        }
    }
}

/// A group that takes this long is logged at debug level with the time its
/// maintenance jobs and its `COMMIT` took.
const SLOW_COMMIT: std::time::Duration = std::time::Duration::from_millis(20);

fn send_answer(reply: Reply, answer: Answer) {
    // A dropped receiver means the stream ended meanwhile; the data is stored anyway
    // and the agent learns its seq from the next Welcome.
    match (reply, answer) {
        (Reply::Hello(r), Answer::Hello(a)) => {
            let _ = r.send(a);
        }
        (Reply::Write(r), Answer::Write(a)) => {
            let _ = r.send(a);
        }
        (Reply::Maintain(r), Answer::Maintain(a)) => {
            let _ = r.send(a);
        }
        // A request is answered in the kind it was asked in (commit_group).
        (Reply::Hello(r), _) => {
            let _ = r.send(Err(StoreError::WriterGone));
        }
        (Reply::Write(r), _) => {
            let _ = r.send(Err(StoreError::WriterGone));
        }
        (Reply::Maintain(r), _) => {
            let _ = r.send(Err(StoreError::WriterGone));
        }
    }
}

fn write_hello(
    tx: &rusqlite::Transaction<'_>,
    who: &DeviceIdentity,
    facts: &DeviceFacts,
    now: i64,
) -> Result<u64, StoreError> {
    tx.execute(
        "INSERT INTO tenants (name, created_ms) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
        params![who.tenant, now],
    )?;
    let tenant_id: i64 = tx.query_row(
        "SELECT id FROM tenants WHERE name = ?1",
        params![who.tenant],
        |r| r.get(0),
    )?;
    let existing: Option<(i64, i64)> = tx
        .query_row(
            "SELECT tenant_id, acked_seq FROM devices WHERE id = ?1",
            params![who.device_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match existing {
        Some((existing_tenant, acked)) => {
            if existing_tenant != tenant_id {
                return Err(StoreError::TenantMismatch {
                    device_id: who.device_id.clone(),
                });
            }
            // last_seen_ms is left alone: it means data arrived (see claim_seq),
            // and a handshake that delivers nothing must not look like liveness.
            tx.execute(
                "UPDATE devices SET hostname = ?2, os_family = ?3, os_version = ?4, agent_version = ?5,
                    boot_time_unix = ?6 WHERE id = ?1",
                params![
                    who.device_id,
                    facts.hostname,
                    facts.os_family,
                    facts.os_version,
                    facts.agent_version,
                    facts.boot_time_unix
                ],
            )?;
            Ok(acked.max(0) as u64)
        }
        None => {
            tx.execute(
                "INSERT INTO devices (id, tenant_id, hostname, os_family, os_version, agent_version,
                    boot_time_unix, first_seen_ms, last_seen_ms, acked_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 0)",
                params![
                    who.device_id,
                    tenant_id,
                    facts.hostname,
                    facts.os_family,
                    facts.os_version,
                    facts.agent_version,
                    facts.boot_time_unix,
                    now
                ],
            )?;
            Ok(0)
        }
    }
}

/// Claims `(device, seq)` in the ledger; false if it was claimed before.
pub(super) fn claim_seq(
    tx: &rusqlite::Transaction<'_>,
    device_id: &str,
    seq: u64,
    n: u64,
    now: i64,
) -> rusqlite::Result<bool> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO batches (device_id, seq, received_ms, n_values) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let inserted = stmt.execute(params![device_id, seq as i64, now, n as i64])?;
    if inserted == 1 {
        let mut bump = tx.prepare_cached(
            "UPDATE devices SET acked_seq = MAX(acked_seq, ?2), last_seen_ms = ?3 WHERE id = ?1",
        )?;
        bump.execute(params![device_id, seq as i64, now])?;
    }
    Ok(inserted == 1)
}

fn write_batch(
    tx: &rusqlite::Transaction<'_>,
    cache: &mut SeriesCache,
    device_id: &str,
    batch: &MetricBatch,
    now: i64,
) -> Result<(Outcome, u64), StoreError> {
    let n_values = batch
        .samples
        .iter()
        .flat_map(|s| s.values.iter())
        .filter(|v| !v.is_nan())
        .count() as u64;
    if !claim_seq(tx, device_id, batch.seq, n_values, now)? {
        return Ok((Outcome::Duplicate, 0));
    }
    let inserted = write_values(tx, cache, device_id, batch)?;
    Ok((Outcome::Stored, inserted))
}

fn write_gap(
    tx: &rusqlite::Transaction<'_>,
    device_id: &str,
    gap: &Gap,
    now: i64,
) -> Result<Outcome, StoreError> {
    if !claim_seq(tx, device_id, gap.seq, 0, now)? {
        return Ok(Outcome::Duplicate);
    }
    let reason = match GapReason::try_from(gap.reason) {
        Ok(GapReason::SpoolFull) => "spool_full",
        Ok(GapReason::TooOld) => "too_old",
        Ok(GapReason::Refused) => "refused",
        Ok(GapReason::AgentDisk) => "agent_disk",
        Ok(GapReason::Corrupt) => "corrupt",
        _ => "unspecified",
    };
    tx.execute(
        "INSERT INTO gaps (device_id, seq, first_dropped_seq, last_dropped_seq, oldest_ms,
            newest_ms, reason, reported_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            device_id,
            gap.seq as i64,
            gap.first_dropped_seq as i64,
            gap.last_dropped_seq as i64,
            gap.oldest_unix_ms,
            gap.newest_unix_ms,
            reason,
            gap.time_unix_ms
        ],
    )?;
    tracing::warn!(device = %device_id, first = gap.first_dropped_seq, last = gap.last_dropped_seq, reason, "agent reported a gap in its data");
    Ok(Outcome::Stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_proto::v1::{Sample, SeriesKey};

    fn batch(seq: u64, t: i64) -> MetricBatch {
        MetricBatch {
            seq,
            series: vec![
                SeriesKey {
                    name: "cpu.total.percent".into(),
                    dimension: String::new(),
                },
                SeriesKey {
                    name: "fs.used.bytes".into(),
                    dimension: "/".into(),
                },
            ],
            samples: vec![Sample {
                time_unix_ms: t,
                values: vec![12.5, f64::NAN],
            }],
        }
    }

    fn who() -> DeviceIdentity {
        DeviceIdentity {
            tenant: "acme".into(),
            device_id: "d1".into(),
        }
    }

    #[tokio::test]
    async fn stores_once_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (w, t) =
            Writer::spawn(super::super::open(&path).unwrap(), WriterConfig::default()).unwrap();
        assert_eq!(w.hello(who(), DeviceFacts::default()).await.unwrap(), 0);
        let a = w
            .submit_batch("d1".into(), batch(1, 1000))
            .await
            .unwrap()
            .await
            .unwrap()
            .unwrap();
        let b = w
            .submit_batch("d1".into(), batch(1, 1000))
            .await
            .unwrap()
            .await
            .unwrap()
            .unwrap();
        assert_eq!((a, b), (Outcome::Stored, Outcome::Duplicate));
        w.submit_batch("d1".into(), batch(2, 2000))
            .await
            .unwrap()
            .await
            .unwrap()
            .unwrap();
        assert_eq!(w.hello(who(), DeviceFacts::default()).await.unwrap(), 2);
        drop(w);
        t.join();

        let conn = super::super::open(&path).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM samples", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            n, 2,
            "NaN values are not stored, the duplicate is not stored twice"
        );
    }

    fn inv(seq: u64, software: &[(&str, &str)], error: &str) -> Inventory {
        Inventory {
            seq,
            time_unix_ms: seq as i64 * 1000,
            os_name: "Debian GNU/Linux".into(),
            software_source: "dpkg".into(),
            software_error: error.into(),
            software: software
                .iter()
                .map(|(n, v)| tandem_proto::v1::Software {
                    name: (*n).into(),
                    version: (*v).into(),
                    publisher: String::new(),
                })
                .collect(),
            ..Default::default()
        }
    }

    /// Issue #10: each inventory that swapped its software list added 100,000 change
    /// rows. Now one inventory records at most MAX_CHANGES_PER_INVENTORY rows plus a
    /// `truncated` row, and a device keeps at most MAX_CHANGES_PER_DEVICE.
    #[tokio::test]
    async fn inventory_change_history_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (w, t) =
            Writer::spawn(super::super::open(&path).unwrap(), WriterConfig::default()).unwrap();
        w.hello(who(), DeviceFacts::default()).await.unwrap();
        let n = 3_000;
        for seq in 1..=5u64 {
            let names: Vec<(String, String)> = (0..n)
                .map(|i| (format!("pkg-{seq}-{i}"), "1.0".to_owned()))
                .collect();
            let list: Vec<(&str, &str)> = names
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            w.submit_inventory("d1".into(), inv(seq, &list, ""))
                .await
                .unwrap()
                .await
                .unwrap()
                .unwrap();
        }
        drop(w);
        t.join();
        let conn = super::super::open(&path).unwrap();
        let per_seq = |seq: i64| -> (i64, i64) {
            conn.query_row(
                "SELECT count(*), sum(change = 'truncated') FROM inventory_changes
                 WHERE device_id = 'd1' AND seq = ?1",
                [seq],
                |r| Ok((r.get(0)?, r.get::<_, Option<i64>>(1)?.unwrap_or(0))),
            )
            .unwrap()
        };
        // Every swap is 6,000 changes: 5,000 recorded and one row saying so.
        assert_eq!(per_seq(5), (MAX_CHANGES_PER_INVENTORY as i64 + 1, 1));
        let total: i64 = conn
            .query_row(
                "SELECT count(*) FROM inventory_changes WHERE device_id = 'd1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            total, MAX_CHANGES_PER_DEVICE,
            "four swaps of 5,001 rows, capped"
        );
        let note: String = conn
            .query_row(
                "SELECT name FROM inventory_changes WHERE change = 'truncated' AND seq = 5",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(note, "1000 more changes not recorded");
        // The oldest went first.
        assert_eq!(
            per_seq(2).0,
            5_001 - 4,
            "the 4 rows over the cap were seq 2's"
        );
        assert_eq!(per_seq(3).0, 5_001);
    }

    #[tokio::test]
    async fn inventory_keeps_the_latest_list_and_records_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (w, t) =
            Writer::spawn(super::super::open(&path).unwrap(), WriterConfig::default()).unwrap();
        w.hello(who(), DeviceFacts::default()).await.unwrap();
        for i in [
            inv(1, &[("bash", "5.1"), ("curl", "7")], ""),
            // A replay changes nothing.
            inv(1, &[("bash", "9")], ""),
            inv(2, &[("bash", "5.2"), ("curl", "7"), ("jq", "1.6")], ""),
            // The list could not be read: the facts update, the last list stays.
            inv(
                3,
                &[],
                "dpkg-query did not finish within 120 s and was killed",
            ),
        ] {
            w.submit_inventory("d1".into(), i)
                .await
                .unwrap()
                .await
                .unwrap()
                .unwrap();
        }
        drop(w);
        t.join();
        let conn = super::super::open(&path).unwrap();
        let (seq, err): (i64, String) = conn
            .query_row(
                "SELECT seq, software_error FROM inventories WHERE device_id = 'd1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(seq, 3);
        assert!(err.contains("did not finish"));
        let mut st = conn
            .prepare("SELECT name || ' ' || version FROM inventory_software ORDER BY name")
            .unwrap();
        let list: Vec<String> = st
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(list, ["bash 5.2", "curl 7", "jq 1.6"]);
        let mut st = conn
            .prepare(
                "SELECT seq, change, name, version FROM inventory_changes ORDER BY change, name",
            )
            .unwrap();
        let changes: Vec<(i64, String, String, String)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            changes,
            [
                (2, "added".into(), "bash".into(), "5.2".into()),
                (2, "added".into(), "jq".into(), "1.6".into()),
                (2, "removed".into(), "bash".into(), "5.1".into()),
            ]
        );
    }

    #[tokio::test]
    async fn only_what_was_committed_reaches_the_alert_sink() {
        let dir = tempfile::tempdir().unwrap();
        let (sink, committed) = std::sync::mpsc::sync_channel(16);
        let (w, t) = Writer::spawn_with_sink(
            super::super::open(&dir.path().join("t.db")).unwrap(),
            WriterConfig::default(),
            Some(sink),
        )
        .unwrap();
        // Before the Hello the batch fails (no device row): nothing is handed on.
        let failed = w.submit_batch("d1".into(), batch(1, 1000)).await.unwrap();
        assert!(failed.await.unwrap().is_err());
        w.hello(who(), DeviceFacts::default()).await.unwrap();
        for _ in 0..2 {
            // The second is a duplicate: stored once, handed on once.
            let p = w.submit_batch("d1".into(), batch(1, 1000)).await.unwrap();
            p.await.unwrap().unwrap();
        }
        drop(w);
        t.join();
        let kinds: Vec<&str> = committed
            .try_iter()
            .flat_map(|g| g.items)
            .map(|c| match c {
                Committed::Hello { .. } => "hello",
                Committed::Batch { .. } => "batch",
                Committed::Patch { .. } => "patch",
                Committed::Live { .. } => "live",
                Committed::Gap { .. } => "gap",
                Committed::Inventory { .. } => "inventory",
                Committed::Posture { .. } => "posture",
                Committed::Maintain(_) => "maintenance",
            })
            .collect();
        assert_eq!(kinds, ["hello", "batch"]);
    }

    /// Issue 17: compaction and retention write through the writer. A job's writes
    /// are committed with a group and its result comes back only then; a failed job
    /// undoes its own writes and nothing else, and the alert engine never sees one.
    #[tokio::test]
    async fn maintenance_jobs_commit_in_the_writers_groups_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (sink, committed) = std::sync::mpsc::sync_channel(16);
        let (w, t) = Writer::spawn_with_sink(
            super::super::open(&path).unwrap(),
            WriterConfig::default(),
            Some(sink),
        )
        .unwrap();
        w.hello(who(), DeviceFacts::default()).await.unwrap();
        let m = w.maintenance();
        let (ok, failed) = tokio::task::spawn_blocking(move || {
            let insert = |c: &Connection, d: &str| {
                c.execute(
                    "INSERT INTO chunks (device_id, start_ms, n_values, blob) VALUES (?1, 0, 1, x'00')",
                    [d],
                )
            };
            let ok = m.run(move |c| Ok(insert(c, "kept")? * 7));
            let failed = m.run(move |c| -> Result<(), StoreError> {
                insert(c, "undone")?;
                Err(StoreError::CommitFailed("job failed on purpose".into()))
            });
            (ok, failed)
        })
        .await
        .unwrap();
        assert_eq!(ok.unwrap(), 7);
        assert!(
            failed.unwrap_err().to_string().contains("on purpose"),
            "the job's own error comes back"
        );
        // The writer still serves ingest, and the job's writes are on disk.
        let p = w.submit_batch("d1".into(), batch(1, 1000)).await.unwrap();
        assert_eq!(p.await.unwrap().unwrap(), Outcome::Stored);
        drop(w);
        t.join();
        let conn = super::super::open(&path).unwrap();
        let devices: Vec<String> = conn
            .prepare("SELECT device_id FROM chunks")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(devices, ["kept"]);
        let handed_on: usize = committed.try_iter().map(|g| g.items.len()).sum();
        assert_eq!(handed_on, 2, "the hello and the batch, no maintenance job");
    }

    /// The maintenance thread's handle keeps nothing alive: once ingest's handles
    /// are gone the writer stops (a shutdown never waits for a maintenance pass),
    /// and a job sent after that fails with WriterGone instead of hanging.
    #[tokio::test]
    async fn a_maintenance_handle_does_not_keep_the_writer_running() {
        let dir = tempfile::tempdir().unwrap();
        let (w, t) = Writer::spawn(
            super::super::open(&dir.path().join("t.db")).unwrap(),
            WriterConfig::default(),
        )
        .unwrap();
        let m = w.maintenance();
        drop(w);
        let (done, joined) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            t.join();
            let _ = done.send(());
        });
        joined
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the writer kept running for the maintenance handle");
        let late = tokio::task::spawn_blocking(move || m.run(|_| Ok(())))
            .await
            .unwrap();
        assert!(matches!(late, Err(StoreError::WriterGone)), "{late:?}");
    }

    #[tokio::test]
    async fn a_device_cannot_move_to_another_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let (w, _t) = Writer::spawn(
            super::super::open(&dir.path().join("t.db")).unwrap(),
            WriterConfig::default(),
        )
        .unwrap();
        w.hello(who(), DeviceFacts::default()).await.unwrap();
        let other = DeviceIdentity {
            tenant: "globex".into(),
            device_id: "d1".into(),
        };
        assert!(w.hello(other, DeviceFacts::default()).await.is_err());
    }

    #[tokio::test]
    async fn after_a_failed_write_nothing_more_is_stored_until_hello() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (w, t) =
            Writer::spawn(super::super::open(&path).unwrap(), WriterConfig::default()).unwrap();
        // No Hello yet: the device row is missing, so the series insert fails its
        // foreign key — a per-request failure inside an otherwise good group.
        let first = w.submit_batch("d1".into(), batch(1, 1000)).await.unwrap();
        let second = w.submit_batch("d1".into(), batch(2, 2000)).await.unwrap();
        assert!(first.await.unwrap().is_err());
        assert!(
            matches!(second.await.unwrap(), Err(StoreError::Halted { .. })),
            "seq 2 must not be stored past the failed seq 1"
        );
        // Reconnecting clears it; the agent resends 1 and 2.
        assert_eq!(w.hello(who(), DeviceFacts::default()).await.unwrap(), 0);
        for seq in [1, 2] {
            let o = w
                .submit_batch("d1".into(), batch(seq, seq as i64 * 1000))
                .await
                .unwrap();
            assert_eq!(o.await.unwrap().unwrap(), Outcome::Stored);
        }
        drop(w);
        t.join();
    }
}
