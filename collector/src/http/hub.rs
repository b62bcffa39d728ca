//! One watcher of the feed for every open stream: a task reads the newest feed event
//! id every `poll` and publishes it on a `watch` channel; each stream (the MSP feed,
//! the console's events) sleeps on that channel and reads its own page only when the
//! feed has moved. 200 open feeds used to be 200 connections polled 4–5 times a
//! second each; now they are one query per `poll` and a page read per stream per
//! new event, on pooled connections.
//!
//! Invariants:
//! - the published id only grows, and every event with an id at or below it was
//!   committed before it was published (SQLite assigns ids under the write lock, in
//!   commit order), so a stream that read after seeing `head` has seen all of them;
//! - the task starts with the first subscriber, polls only while someone listens,
//!   and ends at `stop` (which also ends every stream: see `feed_sse`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::pool::Pool;

/// A handle on the shared feed watcher (cheap to clone).
#[derive(Clone)]
pub struct FeedHub(Arc<Inner>);

struct Inner {
    pool: Arc<Pool>,
    poll: Duration,
    stop: CancellationToken,
    head: OnceLock<watch::Sender<i64>>,
}

impl FeedHub {
    pub fn new(pool: Arc<Pool>, poll: Duration, stop: CancellationToken) -> FeedHub {
        FeedHub(Arc::new(Inner {
            pool,
            poll,
            stop,
            head: OnceLock::new(),
        }))
    }

    /// The newest feed event id, updated as events are added. The first call starts
    /// the watcher (so it must come from inside the runtime).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.0
            .head
            .get_or_init(|| {
                let (tx, _) = watch::channel(0);
                tokio::spawn(watch_feed(self.0.clone(), tx.clone()));
                tx
            })
            .subscribe()
    }
}

async fn watch_feed(hub: Arc<Inner>, tx: watch::Sender<i64>) {
    loop {
        tokio::select! {
            _ = hub.stop.cancelled() => break,
            _ = tokio::time::sleep(hub.poll) => {}
        }
        if tx.receiver_count() == 0 {
            continue;
        }
        let pool = hub.pool.clone();
        let turn = pool.gate().await;
        let read = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let c = pool.get().map_err(|e| e.to_string())?;
            c.query_row("SELECT coalesce(max(id), 0) FROM feed_events", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| e.to_string())
        })
        .await;
        match read {
            Ok(Ok(id)) => {
                tx.send_if_modified(|head| {
                    let moved = id > *head;
                    if moved {
                        *head = id;
                    }
                    moved
                });
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "feed watcher: read failed; retrying"),
            Err(e) => tracing::warn!(error = %e, "feed watcher: read task failed; retrying"),
        }
    }
}
