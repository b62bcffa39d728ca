//! One reader of the feed for every open stream: a task reads the feed events added
//! since its last look, every `poll`, and publishes the most recent ones on a
//! `watch` channel; each stream (the MSP feed, the console's events) sleeps on that
//! channel and takes its tenant's events from the published list in memory. 200 open
//! feeds used to be 200 connections polled 4–5 times a second each (and, with the
//! first version of this hub, 200 page reads per new event); now they are one query
//! per `poll` while someone listens.
//!
//! Invariants:
//! - a published [`Recent`] holds every event with `floor < id <= head`, oldest
//!   first; `head` only grows while the watcher runs;
//! - an event with an id at or below `head` was committed before `head` was
//!   published (SQLite assigns ids under the write lock, in commit order), so a
//!   stream that read the database after seeing `head` has seen all of them;
//! - a stream whose cursor is below `floor` (it resumed from far back, or the list
//!   was trimmed past it) reads the database instead, until it is within the list;
//! - the task starts with the first subscriber and polls only while someone
//!   listens; after an idle spell it starts over from the newest id (streams that
//!   need older events read them from the database); it ends at `stop` (which also
//!   ends every stream: see `feed_sse`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::pool::Pool;

/// Events the watcher keeps in memory: a burst of this many within one poll is
/// still served to every stream without a database read.
const KEEP: usize = 2048;
/// Most events read in one poll (the next poll reads on).
const READ_LIMIT: i64 = 1000;

/// One feed event, as the streams need it: the store's row (issue 17).
pub(crate) use crate::store::api::FeedEventRow as FeedEvent;
use crate::store::api::NotifyStore;

/// The most recent feed events (see the invariants above).
#[derive(Debug)]
pub(crate) struct Recent {
    pub floor: i64,
    pub head: i64,
    pub events: Vec<Arc<FeedEvent>>,
}

impl Recent {
    /// Before the watcher's first read: nothing is known, every stream reads the
    /// database.
    fn unknown() -> Recent {
        Recent {
            floor: i64::MAX,
            head: 0,
            events: Vec::new(),
        }
    }

    /// The first `limit` events after `cursor` that `keep` accepts, or `None` when
    /// events after `cursor` may be missing here (`cursor < floor`).
    pub(crate) fn after(
        &self,
        cursor: i64,
        keep: impl Fn(&FeedEvent) -> bool,
        limit: usize,
    ) -> Option<Vec<Arc<FeedEvent>>> {
        if cursor < self.floor {
            return None;
        }
        let from = self.events.partition_point(|e| e.id <= cursor);
        Some(
            self.events[from..]
                .iter()
                .filter(|e| keep(e))
                .take(limit)
                .cloned()
                .collect(),
        )
    }
}

/// A handle on the shared feed watcher (cheap to clone).
#[derive(Clone)]
pub(crate) struct FeedHub(Arc<Inner>);

struct Inner {
    pool: Arc<Pool>,
    poll: Duration,
    stop: CancellationToken,
    recent: OnceLock<watch::Sender<Arc<Recent>>>,
}

impl FeedHub {
    pub(crate) fn new(pool: Arc<Pool>, poll: Duration, stop: CancellationToken) -> FeedHub {
        FeedHub(Arc::new(Inner {
            pool,
            poll,
            stop,
            recent: OnceLock::new(),
        }))
    }

    /// The most recent feed events, updated as events are added. The first call
    /// starts the watcher (so it must come from inside the runtime).
    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<Recent>> {
        self.0
            .recent
            .get_or_init(|| {
                let (tx, _) = watch::channel(Arc::new(Recent::unknown()));
                tokio::spawn(watch_feed(self.0.clone(), tx.clone()));
                tx
            })
            .subscribe()
    }
}

async fn watch_feed(hub: Arc<Inner>, tx: watch::Sender<Arc<Recent>>) {
    loop {
        tokio::select! {
            _ = hub.stop.cancelled() => break,
            _ = tokio::time::sleep(hub.poll) => {}
        }
        if tx.receiver_count() == 0 {
            // Idle: start over from the newest id when someone listens again.
            if tx.borrow().floor != i64::MAX {
                tx.send_replace(Arc::new(Recent::unknown()));
            }
            continue;
        }
        let known = tx.borrow().clone();
        let read = hub
            .pool
            .run(move |c| read_since(&*c, &known).map_err(|e| e.to_string()))
            .await;
        match read {
            Ok(Ok(Some(next))) => {
                tx.send_replace(Arc::new(next));
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "feed watcher: read failed; retrying"),
            Err(e) => tracing::warn!(error = %e, "feed watcher: read task failed; retrying"),
        }
    }
}

/// What `known` becomes with the events added since: `None` when nothing was added.
fn read_since(
    c: &impl NotifyStore,
    known: &Recent,
) -> Result<Option<Recent>, crate::store::StoreError> {
    if known.floor == i64::MAX {
        let head = c.feed_head()?;
        return Ok(Some(Recent {
            floor: head,
            head,
            events: Vec::new(),
        }));
    }
    let new: Vec<Arc<FeedEvent>> = c
        .feed_after(known.head, READ_LIMIT)?
        .into_iter()
        .map(Arc::new)
        .collect();
    let Some(last) = new.last() else {
        return Ok(None);
    };
    let head = last.id;
    let mut events: Vec<Arc<FeedEvent>> = known.events.iter().chain(&new).cloned().collect();
    let mut floor = known.floor;
    if events.len() > KEEP {
        let cut = events.len() - KEEP;
        floor = events[cut - 1].id;
        events.drain(..cut);
    }
    Ok(Some(Recent {
        floor,
        head,
        events,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: i64, tenant: &str, critical: bool) -> Arc<FeedEvent> {
        Arc::new(FeedEvent {
            id,
            incident_id: 0,
            tenant: tenant.into(),
            critical,
            kind: "opened".into(),
            body: "{}".into(),
        })
    }

    #[test]
    fn recent_events_are_served_only_when_none_after_the_cursor_can_be_missing() {
        let r = Recent {
            floor: 10,
            head: 14,
            events: vec![
                ev(11, "acme", false),
                ev(12, "globex", true),
                ev(13, "acme", true),
                ev(14, "acme", false),
            ],
        };
        let ids =
            |v: Option<Vec<Arc<FeedEvent>>>| v.map(|v| v.iter().map(|e| e.id).collect::<Vec<_>>());
        assert_eq!(
            ids(r.after(9, |_| true, 10)),
            None,
            "11's predecessors may be missing"
        );
        assert_eq!(ids(r.after(10, |_| true, 10)), Some(vec![11, 12, 13, 14]));
        assert_eq!(
            ids(r.after(12, |e| e.tenant == "acme", 10)),
            Some(vec![13, 14])
        );
        assert_eq!(ids(r.after(10, |e| e.critical, 10)), Some(vec![12, 13]));
        assert_eq!(ids(r.after(10, |_| true, 2)), Some(vec![11, 12]));
        assert_eq!(ids(r.after(14, |_| true, 10)), Some(vec![]));
        assert_eq!(ids(Recent::unknown().after(0, |_| true, 10)), None);
    }

    #[test]
    fn the_watcher_reads_on_from_its_head_and_trims_to_keep() {
        // A real store file; its feed rows written by the store's test fixture.
        let (_dir, c) = crate::store::conformance::sqlite_fixture();
        crate::store::conformance::add_feed_events(&c, "acme", "warning", 1);
        let first = read_since(&c, &Recent::unknown()).unwrap().unwrap();
        assert_eq!(
            (first.floor, first.head, first.events.len()),
            (1, 1, 0),
            "starts at the newest id"
        );
        assert!(read_since(&c, &first).unwrap().is_none(), "nothing new");
        let add =
            |n: usize| crate::store::conformance::add_feed_events(&c, "globex", "critical", n);
        add(3);
        let second = read_since(&c, &first).unwrap().unwrap();
        assert_eq!((second.floor, second.head), (1, 4));
        assert_eq!(
            second.events.iter().map(|e| e.id).collect::<Vec<_>>(),
            [2, 3, 4]
        );
        assert!(second.events[0].critical && second.events[0].tenant == "globex");
        // Past KEEP, the oldest go and the floor rises with them: no gap is hidden.
        let mut r = second;
        add(KEEP + 10);
        while let Some(next) = read_since(&c, &r).unwrap() {
            r = next;
        }
        assert_eq!(r.events.len(), KEEP);
        assert_eq!(r.head, 4 + KEEP as i64 + 10);
        assert_eq!(r.floor, r.events[0].id - 1);
    }
}
