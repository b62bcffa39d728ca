//! Applies edits of `collector.toml` without a restart.
//!
//! A `notify` watcher on the file's directory feeds a task that waits for the edit
//! to settle, parses and checks the file, and publishes what can change at once
//! (time limits, the sample interval pushed to agents) on a watch channel; open
//! streams pick it up and push new settings to their agents. A bad edit is logged
//! with file, line and column, and the running configuration stays. Keys that need
//! a restart (listen address, data dir, store sizing) are reported as such.

use std::path::PathBuf;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};
use crate::fswatch::{self, SETTLE};
use crate::grpc::ingest::LiveConfig;
use crate::server::live_config;

/// Starts watching `path`; `running` is the configuration in force.
pub fn watch(
    path: PathBuf,
    mut running: Config,
    tx: watch::Sender<LiveConfig>,
    stop: CancellationToken,
) -> Result<JoinHandle<()>, notify::Error> {
    let dir = path
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let name = path.file_name().map(|n| n.to_owned());
    // Bounded: a burst of events only needs to wake the task once.
    let (ev_tx, mut ev_rx) = mpsc::channel::<()>(1);
    let watcher = fswatch::watch_dir(
        &dir,
        move |p| p.file_name() == name.as_deref(),
        move || {
            let _ = ev_tx.try_send(());
        },
    )?;
    Ok(tokio::spawn(async move {
        // The watcher lives as long as this task.
        let _watcher = watcher;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                ev = ev_rx.recv() => if ev.is_none() { return },
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(SETTLE) => {}
            }
            while ev_rx.try_recv().is_ok() {}
            let p = path.clone();
            match tokio::task::spawn_blocking(move || config::load(&p)).await {
                Ok(Ok(new)) => {
                    if new.listen != running.listen
                        || new.data_dir != running.data_dir
                        || new.writer.queue_len != running.writer.queue_len
                        || new.writer.max_group != running.writer.max_group
                    {
                        tracing::warn!(
                            "listen, data_dir and [store] changes take effect at the next restart"
                        );
                    }
                    let live = live_config(&new);
                    if live != *tx.borrow() {
                        let _ = tx.send(live);
                        tracing::info!(
                            sample_interval_secs = new.sample_interval_secs,
                            "configuration reloaded"
                        );
                    }
                    running = new;
                }
                Ok(Err(err)) => {
                    tracing::error!(problems = %err, "config reload rejected; keeping the running configuration");
                }
                Err(_) => tracing::error!("config reload task failed"),
            }
        }
    }))
}
