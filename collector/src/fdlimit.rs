//! The process's open-file limit (`RLIMIT_NOFILE`): raised from the soft to the hard
//! limit at start, and the figure the listeners size their caps from.
//!
//! Both listeners, the database and the alert engine share this one limit; a
//! service manager's usual soft limit of 1,024 was what an unauthenticated flood of
//! idle enrollment connections exhausted (issue #10). Raising the soft limit is
//! allowed without privileges; the hard limit is the operator's (`LimitNOFILE=` in
//! the systemd unit). The enrollment listener then takes at most a quarter of it
//! (`grpc/tls.rs`), so the telemetry listener always keeps room.

/// What the limit was and is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NofileLimit {
    /// The soft limit found at start.
    pub(crate) before: u64,
    /// The soft limit now (the hard limit, if raising worked).
    pub(crate) now: u64,
    /// The hard limit.
    pub(crate) hard: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and says what it is now.
#[cfg(unix)]
pub(crate) fn raise() -> NofileLimit {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let cur = getrlimit(Resource::Nofile);
    let before = cur.current.unwrap_or(u64::MAX);
    let hard = cur.maximum;
    // An unlimited hard limit is capped: the kernel refuses more than nr_open.
    let target = hard.unwrap_or(1 << 20).max(before);
    if target > before {
        let new = Rlimit {
            current: Some(target),
            maximum: hard,
        };
        if let Err(err) = setrlimit(Resource::Nofile, new) {
            tracing::warn!(error = %err, soft = before, "cannot raise the open-file limit");
        }
    }
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    NofileLimit { before, now, hard }
}

/// Assumed where the platform has no such limit or it cannot be read.
#[cfg(not(unix))]
const UNKNOWN_LIMIT: u64 = 1024;

/// Other platforms have no such per-process limit to raise.
#[cfg(not(unix))]
pub(crate) fn raise() -> NofileLimit {
    NofileLimit {
        before: UNKNOWN_LIMIT,
        now: UNKNOWN_LIMIT,
        hard: None,
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn raises_the_soft_limit_to_the_hard_one() {
        let l = raise();
        assert!(l.now >= l.before);
        if let Some(h) = l.hard {
            assert_eq!(l.now, h.max(l.before));
        }
    }
}
