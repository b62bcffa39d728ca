//! `tandem-agent`: samples this machine's health, spools each sample to disk, and
//! streams the spool to the collector over mutual-TLS gRPC.
//!
//! This file is the wiring: [`run`] opens the spool, starts every task and owns it
//! (`tasks`). The collection jobs are in `jobs`, making a config ready to run
//! (enrollment, `enrollment.toml`) in `startup`, applying a reloaded one in [`reload`].
// `deny`, not `forbid`: the platform modules that call the OS through FFI allow it
// on their `mod` line (`platform/windows.rs` and `platform/wua.rs` for Win32 and
// COM, `platform/glibc.rs` for one mallopt call, `service/windows.rs` for the SCM
// entry point). Nothing else may.
#![deny(unsafe_code)]

pub mod backup;
pub(crate) mod budget;
pub mod checks;
pub(crate) mod clock;
pub mod collect;
pub mod config;
pub mod enroll;
pub mod identity;
pub mod inventory;
mod jobs;
pub mod patches;
pub mod platform;
pub mod posture;
pub(crate) mod reload;
pub mod service;
pub mod spool;
pub mod spool_handle;
mod startup;
mod tasks;
pub mod uplink;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::sync::{Notify, watch};

use crate::jobs::{inventory::inventory_loop, patch::patch_loop, sample};
use crate::spool_handle::SpoolHandle;
use crate::tasks::{Stage, Tasks};

pub use config::AgentConfig;
pub use startup::{TOKEN_ENV, complete, prepare};

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
    #[error(transparent)]
    Task(#[from] tasks::TaskError),
    #[error(transparent)]
    Enroll(#[from] enroll::EnrollError),
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error(
        "this device has no identity yet ({} is missing): run `tandem-agent enroll --token TOKEN`, or set enroll_token in the config or TANDEM_ENROLL_TOKEN",
        .0.display()
    )]
    NotEnrolled(std::path::PathBuf),
    #[error(
        "no collector to stream to: collector_url is not set in the config and {} does not exist",
        .0.display()
    )]
    NoCollector(std::path::PathBuf),
}

/// Runs the agent until `shutdown` resolves: sampling, spooling, streaming. With
/// `config_path`, edits of that file apply without a restart (see [`reload`]).
pub async fn run(
    cfg: AgentConfig,
    config_path: Option<PathBuf>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    // Waiting for the collector to enroll must not make the agent deaf to a stop.
    let mut shutdown = std::pin::pin!(shutdown);
    let cfg = tokio::select! {
        cfg = prepare(cfg) => cfg?,
        _ = &mut shutdown => {
            tracing::info!("agent stopping before it could enroll");
            return Ok(());
        }
    };
    // Fail early, with the file name, if the TLS files or URL are unusable.
    uplink::endpoint(&cfg)?;
    let state_dir = cfg.state_dir.clone();
    let bounds = cfg.spool_bounds();
    let spool = tokio::task::spawn_blocking(move || {
        clock::load(&state_dir);
        spool::Spool::open(&state_dir, bounds)
    })
    .await
    .map_err(|_| AgentError::Join)??;
    let pending = spool.len();
    let spool = SpoolHandle::new(spool);
    let sampler = tokio::task::spawn_blocking(collect::Sampler::new)
        .await
        .map_err(|_| AgentError::Join)??;
    let new_data = Arc::new(Notify::new());
    let (interval_tx, interval_rx) = watch::channel(cfg.interval);
    tracing::info!(collector = %cfg.collector_url, interval_secs = cfg.interval.as_secs(), spooled = pending, "agent started");

    // Every task is owned here and stops in stage order (crate::tasks).
    let mut tasks = Tasks::new();
    let cfg = Arc::new(cfg);
    let (cfg_tx, cfg_rx) = watch::channel(cfg.clone());
    if let Some(path) = config_path {
        match reload::watch(path, cfg_tx, tasks.stop_token(Stage::Reload)) {
            Ok(watcher) => tasks.spawn("config watch", Stage::Reload, watcher),
            Err(err) => {
                tracing::warn!(error = %err, "cannot watch the config file; edits apply on restart only");
            }
        }
    }
    tasks.spawn(
        "config applier",
        Stage::Reload,
        reload::apply_reloads(
            cfg_rx.clone(),
            spool.clone(),
            interval_tx.clone(),
            tasks.stop_token(Stage::Reload),
        ),
    );
    // Set by the sampler loop's budget governor, read by the patch loop.
    let shedding = Arc::new(AtomicBool::new(false));
    // Posture, backups and custom checks (issue #14): found by their own loops,
    // sent as metrics by the sampler and as PostureReport frames when changed.
    let posture_shared =
        posture::report::Shared::new(&cfg.state_dir, spool.clone(), new_data.clone());
    let checks_cpu_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let produce = tasks.stop_token(Stage::Produce);
    tasks.spawn(
        "posture",
        Stage::Produce,
        posture::report::posture_loop(cfg_rx.clone(), posture_shared.clone(), produce.clone()),
    );
    tasks.spawn(
        "backup watch",
        Stage::Produce,
        posture::report::backup_loop(cfg_rx.clone(), posture_shared.clone(), produce.clone()),
    );
    tasks.spawn(
        "custom checks",
        Stage::Produce,
        posture::report::checks_loop(
            cfg_rx.clone(),
            posture_shared.clone(),
            shedding.clone(),
            checks_cpu_ms.clone(),
            produce.clone(),
        ),
    );
    tasks.spawn(
        "sampler",
        Stage::Produce,
        sample::sample_loop(
            sampler,
            spool.clone(),
            new_data.clone(),
            interval_rx,
            cfg_rx.clone(),
            sample::SamplerShared {
                shedding: shedding.clone(),
                reported: posture_shared.reported.clone(),
                checks_cpu_ms,
            },
            produce.clone(),
        ),
    );
    let (check_patches_tx, check_patches_rx) = tokio::sync::mpsc::channel(1);
    tasks.spawn(
        "patch check",
        Stage::Produce,
        patch_loop(
            cfg_rx.clone(),
            spool.clone(),
            new_data.clone(),
            shedding,
            check_patches_rx,
            produce.clone(),
        ),
    );
    tasks.spawn(
        "inventory",
        Stage::Produce,
        inventory_loop(cfg_rx.clone(), spool.clone(), new_data.clone(), produce),
    );
    let renew_now = Arc::new(Notify::new());
    tasks.spawn(
        "certificate renewal",
        Stage::Last,
        identity::renew_loop(
            cfg.clone(),
            renew_now.clone(),
            tasks.stop_token(Stage::Last),
        ),
    );
    let shared = uplink::Shared {
        spool,
        new_data,
        interval: interval_tx,
        renew_now,
        check_patches: check_patches_tx,
    };
    tasks.spawn(
        "uplink",
        Stage::Uplink,
        uplink::run(cfg_rx, shared, tasks.stop_token(Stage::Uplink)),
    );

    let result = tasks.run_until(shutdown).await;
    tracing::info!("agent stopped");
    Ok(result?)
}

#[cfg(test)]
pub(crate) use platform::test_fixture;
