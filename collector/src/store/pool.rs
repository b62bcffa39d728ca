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
//!   200 blocking threads.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::StoreError;

/// Connections to one database file, reused across requests.
pub(crate) struct Pool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
    gate: Arc<tokio::sync::Semaphore>,
}

impl Pool {
    /// A pool of connections to `path`; nothing is opened until first needed.
    pub(crate) fn new(path: &Path, max_idle: usize) -> Arc<Pool> {
        Arc::new(Pool {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            max_idle,
            gate: Arc::new(tokio::sync::Semaphore::new(max_idle.max(1))),
        })
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
            None => super::open(&self.path)?,
        };
        Ok(Pooled {
            conn: Some(conn),
            pool: self.clone(),
        })
    }

    /// How many connections wait in the pool (for tests and `/metrics`).
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// A connection on loan from a [`Pool`]; returned when dropped.
pub(crate) struct Pooled {
    conn: Option<Connection>,
    pool: Arc<Pool>,
}

impl Deref for Pooled {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        // Invariant: `conn` is `Some` from `Pool::get` until `drop` takes it.
        self.conn
            .as_ref()
            .expect("a Pooled holds its connection until dropped")
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Connection {
        // Invariant: as in `deref`.
        self.conn
            .as_mut()
            .expect("a Pooled holds its connection until dropped")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if !conn.is_autocommit() {
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

    #[test]
    fn connections_are_reused_and_one_left_in_a_transaction_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Pool::new(&dir.path().join("t.db"), 2);
        assert_eq!(pool.idle(), 0);
        {
            let c = pool.get().unwrap();
            c.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
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
            c.execute_batch("BEGIN; INSERT INTO t VALUES (1)").unwrap();
        }
        assert_eq!(
            pool.idle(),
            1,
            "a connection inside a transaction is closed, not returned"
        );
        // The abandoned transaction was rolled back when its connection closed.
        let c = pool.get().unwrap();
        let n: i64 = c
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
        let fk: i64 = c
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            fk, 1,
            "pooled connections are configured like store::open's"
        );
    }
}
