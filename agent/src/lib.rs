//! `tandem-agent`: samples this machine's health, spools each sample to disk, and
//! streams the spool to the collector over mutual-TLS gRPC.
#![forbid(unsafe_code)]

pub mod collect;
pub mod config;
pub mod platform;
pub mod reload;
pub mod spool;
pub mod uplink;

use std::future::Future;
use std::path::PathBuf;
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

/// Runs the agent until `shutdown` resolves: sampling, spooling, streaming. With
/// `config_path`, edits of that file apply without a restart (see [`reload`]).
pub async fn run(
    cfg: AgentConfig,
    config_path: Option<PathBuf>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    // Fail early, with the file name, if the TLS files or URL are unusable.
    uplink::endpoint(&cfg)?;
    let state_dir = cfg.state_dir.clone();
    let bounds = cfg.spool_bounds();
    let spool = tokio::task::spawn_blocking(move || spool::Spool::open(&state_dir, bounds))
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
    let stop_reload = CancellationToken::new();
    tracing::info!(collector = %cfg.collector_url, interval_secs = cfg.interval.as_secs(), spooled = pending, "agent started");

    let (cfg_tx, cfg_rx) = watch::channel(Arc::new(cfg));
    let watcher = match config_path {
        Some(path) => match reload::watch(path, cfg_tx, stop_reload.clone()) {
            Ok(handle) => Some(handle),
            Err(err) => {
                tracing::warn!(error = %err, "cannot watch the config file; edits apply on restart only");
                None
            }
        },
        None => None,
    };
    let applier = tokio::spawn(apply_reloads(
        cfg_rx.clone(),
        spool.clone(),
        interval_tx.clone(),
        stop_reload.clone(),
    ));
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
    let uplink = tokio::spawn(uplink::run(cfg_rx, shared, stop_uplink.clone()));

    shutdown.await;
    tracing::info!("agent stopping");
    stop_reload.cancel();
    if let Some(w) = watcher {
        let _ = w.await;
    }
    let _ = applier.await;
    // Stop producing first, so the uplink's final flush sees the last sample.
    stop_sampling.cancel();
    let _ = sampling.await;
    stop_uplink.cancel();
    let _ = uplink.await;
    tracing::info!("agent stopped");
    Ok(())
}

/// Applies the parts of a reloaded config that live outside the uplink: the sample
/// interval and the spool bounds. (The uplink watches the config itself.)
async fn apply_reloads(
    mut cfg: watch::Receiver<Arc<AgentConfig>>,
    spool: Arc<Mutex<spool::Spool>>,
    interval: watch::Sender<Duration>,
    stop: CancellationToken,
) {
    let mut current = cfg.borrow_and_update().clone();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            r = cfg.changed() => if r.is_err() { return },
        }
        let new = cfg.borrow_and_update().clone();
        if new.interval != current.interval {
            let _ = interval.send(new.interval);
        }
        if new.spool_bounds() != current.spool_bounds() {
            let spool = spool.clone();
            let bounds = new.spool_bounds();
            let r = tokio::task::spawn_blocking(move || {
                spool
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .set_bounds(bounds)
            })
            .await;
            if let Ok(Err(err)) = r {
                tracing::error!(error = %err, "applying new spool bounds failed");
            }
        }
        if new.state_dir != current.state_dir {
            tracing::warn!("state_dir changed: takes effect at the next restart");
        }
        tracing::info!(
            interval_secs = new.interval.as_secs(),
            "configuration reloaded"
        );
        current = new;
    }
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
