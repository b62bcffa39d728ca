//! Applies edits of `agent.toml` without a restart.
//!
//! A `notify` watcher on the file's directory (editors replace files rather than
//! write them in place) feeds a task that waits for the edit to settle, parses the
//! file, and publishes the new config on a watch channel. A file that does not parse
//! or check is reported with file, line and column, and the running configuration
//! stays. The watching itself is `tandem_proto::util::fswatch` (shared with the collector):
//! the task reloads once per real change of the file's bytes, so its own reads and
//! a bad edit left in place do not make it reload (or log) again.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tandem_proto::util::fswatch::FileChanges;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{self, AgentConfig};
use crate::spool_handle::SpoolHandle;

/// Starts watching `path`; the returned task (for the caller to spawn and own)
/// ends on `stop`.
pub(crate) fn watch(
    path: PathBuf,
    tx: watch::Sender<Arc<AgentConfig>>,
    stop: CancellationToken,
) -> Result<impl Future<Output = ()> + Send + 'static, notify::Error> {
    let mut changes = FileChanges::watch(path.clone())?;
    Ok(async move {
        while changes.changed(&stop).await {
            tracing::debug!(path = %path.display(), "config file changed; reloading");
            let p = path.clone();
            let parsed = tokio::task::spawn_blocking(move || {
                config::load(&p)
                    .map_err(|e| e.to_string())
                    .and_then(|c| crate::complete(c).map_err(|e| e.to_string()))
            })
            .await;
            match parsed {
                Ok(Ok(new)) => {
                    let changed = {
                        let cur = tx.borrow();
                        format!("{:?}", **cur) != format!("{new:?}")
                    };
                    if changed {
                        let _ = tx.send(Arc::new(new));
                    }
                }
                Ok(Err(err)) => {
                    tracing::error!(problems = %err, "config reload rejected; keeping the running configuration");
                }
                Err(_) => tracing::error!("config reload task failed"),
            }
        }
    })
}

/// Applies the parts of a reloaded config that live outside the uplink: the sample
/// interval and the spool bounds. (The uplink watches the config itself.)
pub(crate) async fn apply_reloads(
    mut cfg: watch::Receiver<Arc<AgentConfig>>,
    spool: SpoolHandle,
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
            let bounds = new.spool_bounds();
            match spool.run(move |s| s.set_bounds(bounds)).await {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => tracing::error!(error = %err, "applying new spool bounds failed"),
                Err(err) => {
                    tracing::error!(error = %err, "applying new spool bounds failed");
                    return;
                }
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
