//! `tandem-agent`: samples this machine's health, spools each sample to disk, and
//! streams the spool to the collector over mutual-TLS gRPC.
#![forbid(unsafe_code)]

pub mod collect;
pub mod config;
pub mod platform;
pub mod spool;
pub mod uplink;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_proto::v1::{AgentFrame, agent_frame};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

pub use config::AgentConfig;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Spool(#[from] spool::SpoolError),
    #[error(transparent)]
    Uplink(#[from] uplink::UplinkError),
    #[error(transparent)]
    Sampler(#[from] collect::SamplerError),
    #[error("background task failed")]
    Join,
}

/// Runs the agent until `shutdown` resolves: sampling, spooling, streaming.
pub async fn run(cfg: AgentConfig, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    // Fail early, with the file name, if the TLS files or URL are unusable.
    uplink::endpoint(&cfg)?;
    let state_dir = cfg.state_dir.clone();
    let max = cfg.spool_max_bytes;
    let spool = tokio::task::spawn_blocking(move || spool::Spool::open(&state_dir, max))
        .await
        .map_err(|_| AgentError::Join)??;
    let pending = spool.len();
    let spool = Arc::new(Mutex::new(spool));
    let sampler = tokio::task::spawn_blocking(collect::Sampler::new)
        .await
        .map_err(|_| AgentError::Join)??;
    let new_data = Arc::new(Notify::new());
    let (interval_tx, interval_rx) = watch::channel(cfg.interval);
    let stop_sampling = CancellationToken::new();
    let stop_uplink = CancellationToken::new();
    tracing::info!(collector = %cfg.collector_url, interval_secs = cfg.interval.as_secs(), spooled = pending, "agent started");

    let cfg = Arc::new(cfg);
    let sampling = tokio::spawn(sample_loop(
        sampler,
        spool.clone(),
        new_data.clone(),
        interval_rx,
        stop_sampling.clone(),
    ));
    let shared = uplink::Shared {
        spool,
        new_data,
        interval: interval_tx,
    };
    let uplink = tokio::spawn(uplink::run(cfg, shared, stop_uplink.clone()));

    shutdown.await;
    tracing::info!("agent stopping");
    // Stop producing first, so the uplink's final flush sees the last sample.
    stop_sampling.cancel();
    let _ = sampling.await;
    stop_uplink.cancel();
    let _ = uplink.await;
    tracing::info!("agent stopped");
    Ok(())
}

async fn sample_loop(
    sampler: collect::Sampler,
    spool: Arc<Mutex<spool::Spool>>,
    new_data: Arc<Notify>,
    mut interval: watch::Receiver<Duration>,
    stop: CancellationToken,
) {
    let sampler = Arc::new(Mutex::new(sampler));
    // sysinfo needs a short gap between two CPU refreshes to compute usage.
    tokio::time::sleep(Duration::from_millis(500)).await;
    loop {
        let sampler2 = sampler.clone();
        let spool2 = spool.clone();
        let pushed = tokio::task::spawn_blocking(move || {
            let reading = sampler2.lock().unwrap_or_else(|p| p.into_inner()).sample();
            let mut spool = spool2.lock().unwrap_or_else(|p| p.into_inner());
            spool.push(|seq| AgentFrame {
                kind: Some(agent_frame::Kind::Batch(reading.to_batch(seq))),
            })
        })
        .await;
        match pushed {
            Ok(Ok(seq)) => {
                tracing::debug!(seq, "sample spooled");
                new_data.notify_one();
            }
            Ok(Err(err)) => tracing::error!(error = %err, "cannot write to the spool; sample lost"),
            Err(_) => tracing::error!("sampler task failed"),
        }
        let period = *interval.borrow_and_update();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
            _ = interval.changed() => {}
        }
    }
}
