//! The one way to the spool once the agent runs (issue 11, item 7).
//!
//! The spool's operations write, fsync and rename files: a slow disk makes them
//! slow, and a tokio worker that waits for one (or for the lock another holder keeps
//! across one) stalls every task on it. So async code reaches the spool only through
//! [`SpoolHandle::run`], which takes the lock on a blocking thread; code that already
//! runs on a blocking thread (a `spawn_blocking` job) uses [`SpoolHandle::blocking`].
//! Both go through the one access function, `access`.

use std::sync::{Arc, Mutex};

use crate::spool::Spool;

/// A spool operation (or a job around one) panicked, so its result is unknown.
#[derive(Debug, thiserror::Error)]
#[error("a spool operation panicked: {0}")]
pub struct SpoolPanicked(String);

impl SpoolPanicked {
    pub(crate) fn new(cause: String) -> SpoolPanicked {
        SpoolPanicked(cause)
    }
}

/// Shared access to the agent's one spool. Cheap to clone.
#[derive(Clone)]
pub struct SpoolHandle {
    /// A `std` mutex, never held across an await: only blocking threads take it.
    inner: Arc<Mutex<Spool>>,
}

impl SpoolHandle {
    pub fn new(spool: Spool) -> SpoolHandle {
        SpoolHandle {
            inner: Arc::new(Mutex::new(spool)),
        }
    }

    /// Runs `f` on the spool on a blocking thread, so no tokio worker waits for the
    /// disk or the lock.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Spool) -> T + Send + 'static,
    ) -> Result<T, SpoolPanicked> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.access(f))
            .await
            .map_err(|e| SpoolPanicked(crate::tasks::panic_text(e)))
    }

    /// Runs `f` on the spool on this thread. Only for code that already runs on a
    /// blocking thread (inside `spawn_blocking` or a plain thread), never on the async
    /// runtime.
    pub(crate) fn blocking<T>(&self, f: impl FnOnce(&mut Spool) -> T) -> T {
        self.access(f)
    }

    fn access<T>(&self, f: impl FnOnce(&mut Spool) -> T) -> T {
        // A poisoned lock means a spool operation panicked; the index is still
        // consistent with the disk (every change is one remove or insert), so go on.
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}
