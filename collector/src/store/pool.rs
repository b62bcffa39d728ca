//! A small pool of side connections for request handlers (the console's API, the
//! feeds, the ack links), so that a request no longer opens, configures and
//! migrates-checks a connection of its own.
//!
//! Invariants:
//! - a pooled connection is configured exactly like [`super::open`]'s (WAL, foreign
//!   keys, durable after unlock, the SQL functions), because it comes from it;
//! - a connection goes back to the pool only in autocommit mode: a handler that
//!   failed inside a transaction it did not finish drops its connection rather than
//!   hand an open transaction to the next request;
//! - at most `max_idle` connections wait in the pool, and at most as many requests
//!   hold one at a time when they pass [`Pool::gate`] first (the handlers do), so a
//!   burst of 200 feed reads waits its turn instead of opening 200 connections on
//!   200 blocking threads;
//! - the work runs on the pool's own threads ([`Pool::run`]), at most `max_idle` of
//!   them, below ingest's CPU priority (nice +10 on unix): on a busy collector a fleet
//!   page load waits a few milliseconds for the cores, and agents' acks do not wait
//!   for the page (issue 15: the fleet page polled every 0.5 s had moved ingest's p99
//!   ack by ×1.5 on 2 cores).

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, mpsc};

use super::{Db, StoreError};

/// Connections to one database file, reused across requests.
pub(crate) struct Pool {
    path: PathBuf,
    idle: Mutex<Vec<Db>>,
    max_idle: usize,
    gate: Arc<tokio::sync::Semaphore>,
    /// The pool's threads take their jobs here; started at the first [`Pool::run`].
    /// They end when the pool (this sender) is dropped.
    jobs: OnceLock<Mutex<mpsc::Sender<Job>>>,
}

type Job = Box<dyn FnOnce() + Send>;

/// The CPU priority of the pool's threads, as a nice increment (unix).
#[cfg(unix)]
const NICE: i32 = 10;

/// SQLite virtual-machine instructions between a pooled read's yields (tens of
/// microseconds of work).
const YIELD_EVERY_OPS: std::ffi::c_int = 2_000;

/// Why [`Pool::run`] has no answer.
#[derive(Debug)]
pub(crate) enum RunError {
    /// No connection could be opened.
    Open(StoreError),
    /// The work panicked (its connection was dropped, not reused), or its thread
    /// could not be started.
    Lost(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Open(e) => write!(f, "cannot open a database connection: {e}"),
            RunError::Lost(why) => write!(f, "the database work did not finish: {why}"),
        }
    }
}

impl Pool {
    /// A pool of connections to `path`; nothing is opened until first needed.
    pub(crate) fn new(path: &Path, max_idle: usize) -> Arc<Pool> {
        Arc::new(Pool {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            max_idle,
            gate: Arc::new(tokio::sync::Semaphore::new(max_idle.max(1))),
            jobs: OnceLock::new(),
        })
    }

    /// Runs `f` with a pooled connection on one of the pool's low-priority threads,
    /// after waiting (asynchronously) for a turn. What `f` returns comes back; a
    /// panic in `f` is an error, not a crash of the caller.
    pub(crate) async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Db) -> T + Send + 'static,
    ) -> Result<T, RunError> {
        let turn = self.gate().await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let pool = self.clone();
        let job: Job = Box::new(move || {
            let _turn = turn;
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut c = pool.get().map_err(RunError::Open)?;
                Ok(f(&mut c))
            }))
            .unwrap_or_else(|p| Err(RunError::Lost(panic_text(&*p))));
            // The caller may have gone (a closed request); nothing to tell then.
            let _ = tx.send(out);
        });
        self.jobs()?
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .map_err(|_| RunError::Lost("the pool's threads have stopped".into()))?;
        rx.await
            .map_err(|_| RunError::Lost("the pool's thread dropped the work".into()))?
    }

    /// The job queue, starting the threads on first use: `max_idle` of them, as
    /// many as the gate lets work at once, so a job never waits for a thread.
    fn jobs(&self) -> Result<&Mutex<mpsc::Sender<Job>>, RunError> {
        if let Some(j) = self.jobs.get() {
            return Ok(j);
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..self.max_idle.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("store-pool-{i}"))
                .spawn(move || {
                    #[cfg(unix)]
                    if let Err(e) = rustix::process::nice(NICE) {
                        tracing::debug!(error = %e, "cannot lower a pool thread's priority");
                    }
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return, // the pool is gone
                        }
                    }
                })
                .map_err(|e| RunError::Lost(format!("cannot start a pool thread: {e}")))?;
        }
        // Two first callers at once: the loser's threads end at once (its sender
        // is dropped here), the winner's stay.
        Ok(self.jobs.get_or_init(|| Mutex::new(tx)))
    }

    /// Waits (asynchronously) for a turn to use a connection; hold the permit while
    /// the connection is out (move it into the blocking task).
    pub(crate) async fn gate(&self) -> tokio::sync::OwnedSemaphorePermit {
        // Invariant: the semaphore lives in the pool and nothing calls `close` on it,
        // so `acquire_owned` cannot fail.
        self.gate
            .clone()
            .acquire_owned()
            .await
            .expect("the pool's semaphore is never closed")
    }

    /// An idle connection, or a new one (opened as [`super::open`] opens).
    pub(crate) fn get(self: &Arc<Self>) -> Result<Pooled, StoreError> {
        let reused = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match reused {
            Some(c) => c,
            None => {
                let mut c = Db::open(&self.path)?;
                // A long read (the fleet page scans every device) steps aside every
                // few thousand SQLite instructions, so that an ingest thread that
                // wakes on this core runs at once rather than after the scheduler's
                // time slice (nice alone left ingest's p99 ×1.28 under the fleet page).
                c.conn_mut().progress_handler(
                    YIELD_EVERY_OPS,
                    Some(|| {
                        std::thread::yield_now();
                        false // never interrupt the query
                    }),
                )?;
                c
            }
        };
        Ok(Pooled {
            db: Some(conn),
            pool: self.clone(),
        })
    }

    /// How many connections wait in the pool (for tests and `/metrics`).
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panicked".to_owned())
}

/// A connection on loan from a [`Pool`]; returned when dropped.
pub(crate) struct Pooled {
    db: Option<Db>,
    pool: Arc<Pool>,
}

impl Deref for Pooled {
    type Target = Db;
    fn deref(&self) -> &Db {
        // Invariant: `db` is `Some` from `Pool::get` until `drop` takes it.
        self.db
            .as_ref()
            .expect("a Pooled holds its connection until dropped")
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Db {
        // Invariant: as in `deref`.
        self.db
            .as_mut()
            .expect("a Pooled holds its connection until dropped")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let Some(conn) = self.db.take() else { return };
        if !conn.conn().is_autocommit() {
            // A transaction left open (a handler's error path): never reuse it.
            return;
        }
        let mut idle = self.pool.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.pool.max_idle {
            idle.push(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_the_pools_low_priority_threads_and_a_panic_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Pool::new(&dir.path().join("t.db"), 2);
        let n: i64 = pool
            .run(|c| {
                c.conn()
                    .query_row("SELECT 40 + 2", [], |r| r.get(0))
                    .unwrap()
            })
            .await
            .unwrap();
        assert_eq!(n, 42);
        let name = pool
            .run(|_| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert!(
            name.as_deref()
                .is_some_and(|n| n.starts_with("store-pool-")),
            "ran on {name:?}, not on a pool thread"
        );
        #[cfg(unix)]
        {
            // nice(0) reads the calling thread's nice value on Linux.
            let mine = rustix::process::nice(0).unwrap();
            let theirs = pool
                .run(|_| rustix::process::nice(0).unwrap())
                .await
                .unwrap();
            assert_eq!(
                theirs,
                (mine + NICE).min(19),
                "pool threads run below ingest"
            );
        }
        let lost = pool
            .run(|c| {
                c.conn().execute_batch("BEGIN").unwrap();
                panic!("a handler bug")
            })
            .await;
        match lost {
            Err(RunError::Lost(why)) => assert!(why.contains("a handler bug"), "{why}"),
            other => panic!("a panic must come back as Lost, got {other:?}"),
        }
        // The pool still works, and the connection left in a transaction was dropped.
        let n: i64 = pool
            .run(|c| c.conn().query_row("SELECT 1", [], |r| r.get(0)).unwrap())
            .await
            .unwrap();
        assert_eq!(n, 1);
        assert!(pool.idle() <= 1);
    }

    #[test]
    fn connections_are_reused_and_one_left_in_a_transaction_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Pool::new(&dir.path().join("t.db"), 2);
        assert_eq!(pool.idle(), 0);
        {
            let c = pool.get().unwrap();
            c.conn()
                .execute_batch("CREATE TABLE t (x INTEGER)")
                .unwrap();
        }
        assert_eq!(
            pool.idle(),
            1,
            "a finished request gives its connection back"
        );
        {
            let (a, b, c) = (
                pool.get().unwrap(),
                pool.get().unwrap(),
                pool.get().unwrap(),
            );
            assert_eq!(pool.idle(), 0);
            drop((a, b, c));
        }
        assert_eq!(pool.idle(), 2, "at most max_idle connections are kept");
        {
            let c = pool.get().unwrap();
            c.conn()
                .execute_batch("BEGIN; INSERT INTO t VALUES (1)")
                .unwrap();
        }
        assert_eq!(
            pool.idle(),
            1,
            "a connection inside a transaction is closed, not returned"
        );
        // The abandoned transaction was rolled back when its connection closed.
        let c = pool.get().unwrap();
        let n: i64 = c
            .conn()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
        let fk: i64 = c
            .conn()
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            fk, 1,
            "pooled connections are configured like store::open's"
        );
    }
}
