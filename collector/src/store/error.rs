//! How a backend's failure becomes a [`StoreError`] (issue 17 item 1): the one
//! place that knows SQLite's error codes. Callers outside `store/` see only the
//! backend-neutral variants (`NotFound`, `Conflict`, `Invalid`, `Busy`, `Backend`)
//! and never a `rusqlite` type.

use super::StoreError;

/// A backend's own error, kept as the `source` of a [`StoreError`] so logs show
/// the whole chain, without its type in any signature.
#[derive(Debug)]
pub struct BackendError(Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl From<rusqlite::Error> for BackendError {
    fn from(e: rusqlite::Error) -> Self {
        Self(Box::new(e))
    }
}

impl From<rusqlite::Error> for StoreError {
    /// SQLITE_BUSY / SQLITE_LOCKED (the busy handler gave up) → `Busy`; a broken
    /// UNIQUE, PRIMARY KEY, FOREIGN KEY or CHECK rule → `Conflict` with SQLite's
    /// text (it names the table and column); a missing row where exactly one was
    /// read → `NotFound`; everything else → `Backend`.
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match &e {
            rusqlite::Error::SqliteFailure(f, msg) => match f.code {
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => StoreError::Busy,
                ErrorCode::ConstraintViolation => StoreError::Conflict {
                    what: msg.clone().unwrap_or_else(|| f.to_string()),
                },
                _ => StoreError::Backend(e.into()),
            },
            rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound {
                what: "such row".into(),
            },
            _ => StoreError::Backend(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_codes_map_to_what_callers_can_act_on() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);")
            .unwrap();
        let dup = conn.execute("INSERT INTO t VALUES (1)", []).unwrap_err();
        let e = StoreError::from(dup);
        assert!(
            matches!(&e, StoreError::Conflict { what } if what.contains("t.k")),
            "{e:?}"
        );
        let none = conn
            .query_row("SELECT k FROM t WHERE k = 2", [], |r| r.get::<_, i64>(0))
            .unwrap_err();
        assert!(matches!(
            StoreError::from(none),
            StoreError::NotFound { .. }
        ));
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(matches!(StoreError::from(busy), StoreError::Busy));
        let bad = conn
            .execute("SELECT nonsense FROM nowhere", [])
            .unwrap_err();
        assert!(matches!(StoreError::from(bad), StoreError::Backend(_)));
    }
}
