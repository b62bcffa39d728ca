//! In-process figures for `GET /metrics` (issue 15 item 2): what the database
//! cannot tell at scrape time. Plain atomics in one process-wide [`Counters`]; the
//! code that does the work adds to them with one line (a commit timer, a refusal,
//! a notification attempt), and the serving collector registers the figures it
//! already keeps (the store writer's and the alert engine's stats, the open
//! streams) with [`register`].
//!
//! Invariants: recording never blocks on I/O and never fails; counters only grow
//! (a collector restarted in the same process keeps counting, as Prometheus
//! expects of a `_total`); no label carries a tenant, device or any customer data.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Upper bounds of the commit-latency buckets, in seconds.
pub(crate) const COMMIT_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Refusal reasons counted on the telemetry stream: the names of
/// `tandem_proto::Refusal`, then `tls_handshake` (a peer the TLS layer refused:
/// no or a wrong certificate, a timeout; both gRPC listeners).
const REASONS: [&str; 9] = [
    "bad_input",
    "wrong_identity",
    "out_of_order",
    "unavailable",
    "revoked",
    "no_identity",
    "rate_limited",
    "not_permitted",
    "tls_handshake",
];

/// A fixed-bucket histogram of durations (Prometheus `histogram`).
pub(crate) struct DurationHistogram {
    buckets: [AtomicU64; COMMIT_BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl DurationHistogram {
    const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; COMMIT_BUCKETS.len()],
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub(crate) fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = COMMIT_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// Observations so far.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// Renders what a serving collector already counts elsewhere (the writer's, the
/// alert engine's and the stream count: `crate::stats`), at scrape time. A closure,
/// so this module stays a leaf that the writer and the listeners can call into.
type Sources = Arc<dyn Fn(&mut String) + Send + Sync>;

/// The process's counters.
pub(crate) struct Counters {
    refusals: [AtomicU64; REASONS.len()],
    /// Store commits (one transaction of grouped requests), timed from the start of
    /// the group to its answers.
    pub(crate) commit: DurationHistogram,
    /// Notification attempts: (channel, result) → count.
    notifications: Mutex<Vec<(&'static str, &'static str, u64)>>,
    queue_depth: AtomicU64,
    queue_capacity: AtomicU64,
    sources: Mutex<Option<Sources>>,
}

static COUNTERS: Counters = Counters {
    refusals: [const { AtomicU64::new(0) }; REASONS.len()],
    commit: DurationHistogram::new(),
    notifications: Mutex::new(Vec::new()),
    queue_depth: AtomicU64::new(0),
    queue_capacity: AtomicU64::new(0),
    sources: Mutex::new(None),
};

/// The process's counters.
#[cfg(test)]
pub(crate) fn get() -> &'static Counters {
    &COUNTERS
}

/// Records the time until it is dropped as one store commit.
pub(crate) struct CommitTimer(Instant);

impl Drop for CommitTimer {
    fn drop(&mut self) {
        COUNTERS.commit.observe(self.0.elapsed());
    }
}

impl CommitTimer {
    /// How long since the commit began (the store writer logs slow groups with it).
    pub(crate) fn elapsed(&self) -> std::time::Duration {
        self.0.elapsed()
    }
}

/// Starts timing a store commit (`let _t = counters::commit_timer();`).
pub(crate) fn commit_timer() -> CommitTimer {
    CommitTimer(Instant::now())
}

/// Counts a telemetry stream ended by the collector with `status` (a refusal).
pub(crate) fn ingest_refused(status: &tonic::Status) {
    let revoked = status
        .metadata()
        .get(tandem_proto::REFUSAL_METADATA)
        .is_some_and(|v| v.as_bytes() == b"revoked");
    // The stream's refusals are built from tandem_proto::Refusal; its code names
    // the reason, except that permission-denied is `revoked` (with its metadata) or
    // `wrong_identity` (the stream grants nothing, so never `not_permitted`).
    let reason = match status.code() {
        _ if revoked => "revoked",
        tonic::Code::PermissionDenied => "wrong_identity",
        code => tandem_proto::ALL_REFUSALS
            .iter()
            .find(|r| r.grpc_code() == code)
            .map_or("unavailable", |r| r.name()),
    };
    count_refusal(reason);
}

/// Counts a TLS handshake refused on a gRPC listener.
pub(crate) fn tls_refused() {
    count_refusal("tls_handshake");
}

fn count_refusal(reason: &str) {
    if let Some(i) = REASONS.iter().position(|r| *r == reason) {
        COUNTERS.refusals[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts one notification attempt: `result` is `sent`, `failed` (will retry) or
/// `dead` (dead-lettered).
pub(crate) fn notification(channel: &'static str, result: &'static str) {
    let mut n = COUNTERS
        .notifications
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    match n.iter_mut().find(|(c, r, _)| *c == channel && *r == result) {
        Some(e) => e.2 += 1,
        None => n.push((channel, result, 1)),
    }
}

/// A serving collector's own figures, from now on (the last registration wins).
pub(crate) fn register(sources: impl Fn(&mut String) + Send + Sync + 'static) {
    *COUNTERS.sources.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(sources));
}

/// The writer's queue depth and capacity, as last sampled (`crate::stats`).
pub(crate) fn set_queue(depth: usize, capacity: usize) {
    COUNTERS.queue_depth.store(depth as u64, Ordering::Relaxed);
    COUNTERS
        .queue_capacity
        .store(capacity as u64, Ordering::Relaxed);
}

pub(crate) fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Appends the exposition text of these counters.
pub(crate) fn render(out: &mut String) {
    let c = &COUNTERS;
    let src = c.sources.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    if let Some(f) = &src {
        f(out);
    }
    head(
        out,
        "tandem_store_write_queue",
        "gauge",
        "Requests waiting for the store writer (sampled every 250 ms).",
    );
    let _ = writeln!(out, "tandem_store_write_queue {}", load(&c.queue_depth));
    head(
        out,
        "tandem_store_write_queue_capacity",
        "gauge",
        "Most requests that can wait for the store writer.",
    );
    let _ = writeln!(
        out,
        "tandem_store_write_queue_capacity {}",
        load(&c.queue_capacity)
    );
    head(
        out,
        "tandem_store_commit_seconds",
        "histogram",
        "Store commits (one transaction of grouped requests), from start to answers.",
    );
    let mut cumulative = 0;
    for (i, b) in COMMIT_BUCKETS.iter().enumerate() {
        cumulative += load(&c.commit.buckets[i]);
        let _ = writeln!(
            out,
            "tandem_store_commit_seconds_bucket{{le=\"{b}\"}} {cumulative}"
        );
    }
    let count = load(&c.commit.count);
    let _ = writeln!(
        out,
        "tandem_store_commit_seconds_bucket{{le=\"+Inf\"}} {count}"
    );
    let _ = writeln!(
        out,
        "tandem_store_commit_seconds_sum {}",
        load(&c.commit.sum_nanos) as f64 / 1e9
    );
    let _ = writeln!(out, "tandem_store_commit_seconds_count {count}");
    head(
        out,
        "tandem_ingest_refusals_total",
        "counter",
        "Telemetry streams the collector ended with a refusal, and TLS handshakes refused, by reason.",
    );
    for (i, r) in REASONS.iter().enumerate() {
        let _ = writeln!(
            out,
            "tandem_ingest_refusals_total{{reason=\"{r}\"}} {}",
            load(&c.refusals[i])
        );
    }
    head(
        out,
        "tandem_notifications_total",
        "counter",
        "Notification delivery attempts since start, by channel and result (sent, failed: will retry, dead: dead-lettered).",
    );
    let n = c
        .notifications
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for channel in ["email", "webhook"] {
        for result in ["sent", "failed", "dead"] {
            let v = n
                .iter()
                .find(|(c, r, _)| *c == channel && *r == result)
                .map_or(0, |e| e.2);
            let _ = writeln!(
                out,
                "tandem_notifications_total{{channel=\"{channel}\",result=\"{result}\"}} {v}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_named_by_their_reason() {
        let before = |r: &str| {
            get().refusals[REASONS.iter().position(|x| *x == r).unwrap()].load(Ordering::Relaxed)
        };
        let (bad, revoked, wrong) = (
            before("bad_input"),
            before("revoked"),
            before("wrong_identity"),
        );
        ingest_refused(&tandem_proto::Refusal::BadInput.status("x"));
        ingest_refused(&tandem_proto::Refusal::Revoked.status("x"));
        ingest_refused(&tandem_proto::Refusal::WrongIdentity.status("x"));
        assert_eq!(before("bad_input"), bad + 1);
        assert_eq!(before("revoked"), revoked + 1);
        assert_eq!(before("wrong_identity"), wrong + 1);
    }

    #[test]
    fn the_commit_histogram_is_cumulative() {
        let h = DurationHistogram::new();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(30));
        assert_eq!(h.count(), 3);
        assert_eq!(h.buckets[0].load(Ordering::Relaxed), 1);
        assert_eq!(h.buckets[6].load(Ordering::Relaxed), 1, "0.05 s bucket");
        let in_buckets: u64 = h.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum();
        assert_eq!(in_buckets, 2, "30 s is only in +Inf");
    }
}
