//! What a serving collector already counts elsewhere — the store writer's, the alert
//! engine's and the open telemetry streams — rendered for `/metrics` through
//! [`crate::counters::register`], and the writer's queue depth sampled into it.
//! (Here rather than in `counters`, which the writer and the listeners call into and
//! which therefore depends on nothing.)

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::alerts::service::AlertStats;
use crate::counters::head;
use crate::store::writer::{Writer, WriterStats};

/// Registers the figures of a serving collector with `/metrics`.
pub(crate) fn register(
    writer: Arc<WriterStats>,
    alerts: Option<Arc<AlertStats>>,
    streams: Arc<AtomicI64>,
) {
    crate::counters::register(move |out| render(out, &writer, alerts.as_deref(), &streams));
}

fn render(out: &mut String, w: &WriterStats, alerts: Option<&AlertStats>, streams: &AtomicI64) {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    head(
        out,
        "tandem_ingest_values_total",
        "counter",
        "Sample values stored (rate() of it is ingest values per second).",
    );
    let _ = writeln!(out, "tandem_ingest_values_total {}", load(&w.values_stored));
    head(
        out,
        "tandem_ingest_batches_total",
        "counter",
        "Metric batches answered by the store, by outcome.",
    );
    let _ = writeln!(
        out,
        "tandem_ingest_batches_total{{outcome=\"stored\"}} {}",
        load(&w.batches_stored)
    );
    let _ = writeln!(
        out,
        "tandem_ingest_batches_total{{outcome=\"duplicate\"}} {}",
        load(&w.batches_duplicate)
    );
    head(
        out,
        "tandem_store_commit_failures_total",
        "counter",
        "Store transactions that failed (nothing of them acknowledged).",
    );
    let _ = writeln!(
        out,
        "tandem_store_commit_failures_total {}",
        load(&w.commit_failures)
    );
    head(
        out,
        "tandem_agents_connected",
        "gauge",
        "Telemetry streams open now (one per connected agent).",
    );
    let _ = writeln!(
        out,
        "tandem_agents_connected {}",
        streams.load(Ordering::Relaxed).max(0)
    );
    if let Some(a) = alerts {
        head(
            out,
            "tandem_alert_evaluations_total",
            "counter",
            "Rule evaluations by the alert engine.",
        );
        let _ = writeln!(
            out,
            "tandem_alert_evaluations_total {}",
            load(&a.evaluations)
        );
        head(
            out,
            "tandem_alert_evaluation_seconds_total",
            "counter",
            "Time the alert engine spent evaluating (not persisting).",
        );
        let _ = writeln!(
            out,
            "tandem_alert_evaluation_seconds_total {}",
            load(&a.eval_nanos) as f64 / 1e9
        );
        let (n, p50, p99) = {
            let h = a.latencies_us.lock().unwrap_or_else(|p| p.into_inner());
            (h.count(), h.quantile(0.5), h.quantile(0.99))
        };
        head(
            out,
            "tandem_alert_transition_latency_seconds",
            "summary",
            "From a sample's commit to the commit of the alert transition it caused.",
        );
        for (q, v) in [("0.5", p50), ("0.99", p99)] {
            if let Some(v) = v {
                let _ = writeln!(
                    out,
                    "tandem_alert_transition_latency_seconds{{quantile=\"{q}\"}} {}",
                    v as f64 / 1e6
                );
            }
        }
        let _ = writeln!(out, "tandem_alert_transition_latency_seconds_count {n}");
    }
}

/// Samples the writer's queue depth every 250 ms until `stop` (the writer's
/// channel is private to it; holding a handle is fine while serving, and it is
/// dropped at shutdown before the writer drains).
pub(crate) async fn sample_queue(writer: Writer, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        crate::counters::set_queue(writer.queue_depth(), writer.queue_capacity());
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
    }
}
