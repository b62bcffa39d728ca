//! Applies edits of `agent.toml` without a restart.
//!
//! A `notify` watcher on the file's directory (editors replace files rather than
//! write them in place) feeds a task that waits for the edit to settle, parses the
//! file, and publishes the new config on a watch channel. A file that does not parse
//! or check is reported with file, line and column, and the running configuration
//! stays.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{self, AgentConfig};

/// Edits closer together than this are taken as one.
const SETTLE: Duration = Duration::from_millis(300);

/// Starts watching `path`. The returned task ends on `stop`.
pub fn watch(
    path: PathBuf,
    tx: watch::Sender<Arc<AgentConfig>>,
    stop: CancellationToken,
) -> Result<JoinHandle<()>, notify::Error> {
    let dir = path
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let name = path.file_name().map(|n| n.to_owned());
    // Bounded: a burst of events only needs to wake the task once.
    let (ev_tx, mut ev_rx) = mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && ev.paths.iter().any(|p| p.file_name() == name.as_deref())
        {
            let _ = ev_tx.try_send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(tokio::spawn(async move {
        // The watcher lives as long as this task.
        let _watcher = watcher;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                ev = ev_rx.recv() => if ev.is_none() { return },
            }
            // Let the edit settle (write + rename, or several writes).
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(SETTLE) => {}
            }
            while ev_rx.try_recv().is_ok() {}
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
    }))
}
