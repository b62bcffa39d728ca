//! The sampler loop: every interval, one sample of this machine, with the agent's
//! own footprint judged by the budget governor first, spooled as a batch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_proto::v1::{AgentFrame, agent_frame};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::{SAMPLE_LOST, spool_job};
use crate::config::AgentConfig;
use crate::spool_handle::SpoolHandle;
use crate::{budget, clock, collect, platform, posture};

/// What the sampler loop shares with the other loops.
pub(crate) struct SamplerShared {
    /// Set by the budget governor, read by the patch and custom-check loops.
    pub(crate) shedding: Arc<AtomicBool>,
    /// What the posture, backup and custom-check loops found: sent with every sample.
    pub(crate) reported: Arc<Mutex<posture::report::Reported>>,
    /// CPU time the custom checks' commands used, counted in the budget.
    pub(crate) checks_cpu_ms: Arc<std::sync::atomic::AtomicU64>,
}

/// Samples every interval and spools each reading. Before each sample it measures
/// the agent's own footprint and lets the budget governor decide whether optional
/// work is shed (published in `shedding` for the patch loop); the configured
/// services and the budget follow config reloads.
pub(crate) async fn sample_loop(
    sampler: collect::Sampler,
    spool: SpoolHandle,
    new_data: Arc<Notify>,
    mut interval: watch::Receiver<Duration>,
    mut cfg: watch::Receiver<Arc<AgentConfig>>,
    shared: SamplerShared,
    stop: CancellationToken,
) {
    let SamplerShared {
        shedding,
        reported,
        checks_cpu_ms,
    } = shared;
    let first = cfg.borrow_and_update().clone();
    let mut sampler = sampler;
    sampler.set_services(&first.services);
    let governor = budget::Governor::new(first.budget);
    let state = Arc::new(Mutex::new((sampler, governor)));
    let started = std::time::Instant::now();
    // sysinfo needs a short gap between two CPU refreshes to compute usage.
    tokio::time::sleep(Duration::from_millis(500)).await;
    loop {
        let reloaded = cfg
            .has_changed()
            .unwrap_or(false)
            .then(|| cfg.borrow_and_update().clone());
        let state2 = state.clone();
        let state_dir2 = first.state_dir.clone();
        let shedding2 = shedding.clone();
        let reported2 = reported.clone();
        let checks_cpu = checks_cpu_ms.load(Ordering::Relaxed);
        let pushed = spool_job(&spool, &new_data, SAMPLE_LOST, move |spool| {
            let mut guard = state2.lock().unwrap_or_else(|p| p.into_inner());
            let (sampler, governor) = &mut *guard;
            if let Some(c) = reloaded {
                sampler.set_services(&c.services);
                governor.set_budget(c.budget);
            }
            let verdict = platform::self_usage().map(|mut u| {
                u.cpu_ms += checks_cpu;
                governor.observe(started.elapsed().as_millis() as u64, u)
            });
            if let Some(v) = &verdict {
                match &v.change {
                    Some(budget::Change::Started(why)) => {
                        tracing::warn!(over = %why, shed = budget::SHED, "agent over its budget; shedding optional work")
                    }
                    Some(budget::Change::Stopped) => {
                        tracing::info!("agent back under its budget; optional work resumed")
                    }
                    None => {}
                }
                sampler.set_shedding(v.shedding);
                shedding2.store(v.shedding, Ordering::Relaxed);
            }
            let mut reading = sampler.sample();
            // Stamped with the collector's time (see `clock`); the offset is a metric.
            if let Some(offset) = clock::offset_ms() {
                reading.time_unix_ms = clock::corrected(reading.time_unix_ms, offset);
                reading.push("agent.clock_offset_ms", "", offset as f64);
                reading.push(
                    "agent.clock_skew_secs",
                    "",
                    (offset.unsigned_abs() / 1000) as f64,
                );
            }
            clock::save_if_changed(&state_dir2);
            let at = reading.time_unix_ms;
            reported2
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_metrics(&mut reading, at);
            if let Some(v) = verdict {
                if let Some(c) = v.cpu_ms_per_min {
                    reading.push("agent.cpu_ms_per_min", "", c);
                }
                reading.push("agent.rss_bytes", "", v.rss_bytes as f64);
                reading.push("agent.shedding", "", f64::from(u8::from(v.shedding)));
            }
            drop(guard);
            let seq = spool.blocking(|s| {
                s.push(|seq| AgentFrame {
                    kind: Some(agent_frame::Kind::Batch(reading.to_batch(seq))),
                })
            })?;
            Ok(Some((seq, ())))
        })
        .await;
        match pushed {
            Ok(Some((seq, ()))) => tracing::debug!(seq, "sample spooled"),
            Ok(None) => {}
            Err(err) => {
                tracing::error!(error = %err, "sampling failed");
                return;
            }
        }
        let period = *interval.borrow_and_update();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
            _ = interval.changed() => {}
        }
    }
}
