//! Applies edits of `collector.toml` without a restart.
//!
//! A `notify` watcher on the file's directory feeds a task that waits for the edit
//! to settle, parses and checks the file, and publishes what can change at once
//! (time limits, the sample interval pushed to agents) on a watch channel; open
//! streams pick it up and push new settings to their agents. A bad edit is logged
//! with file, line and column, and the running configuration stays. Keys that need
//! a restart (listen address, data dir, store sizing) are reported as such.
//! Only a change of the file's bytes is a reload ([`tandem_proto::util::fswatch::Contents`]): the
//! reload's own read and a bad edit left in place cost nothing and log nothing.

use std::path::PathBuf;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};
use crate::grpc::ingest::LiveConfig;
use tandem_proto::util::fswatch::FileChanges;
use tandem_proto::v1::Settings;

/// What of `config` applies to open streams.
pub(crate) fn live_config(config: &Config) -> LiveConfig {
    LiveConfig {
        limits: config.limits,
        settings: Settings {
            sample_interval_secs: config.sample_interval_secs,
            renew_now: false,
        },
    }
}

/// Starts watching `path`; `running` is the configuration in force.
pub(crate) fn watch(
    path: PathBuf,
    mut running: Config,
    tx: watch::Sender<LiveConfig>,
    stop: CancellationToken,
) -> Result<JoinHandle<()>, notify::Error> {
    let mut changes = FileChanges::watch(path.clone())?;
    Ok(tokio::spawn(async move {
        while changes.changed(&stop).await {
            tracing::debug!(path = %path.display(), "config file changed; reloading");
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
