//! Integrity of the database file, and online backups.
//!
//! - [`check`]: SQLite's `PRAGMA quick_check` (every page and B-tree structure,
//!   without cross-checking index contents) with a time limit, so a large database
//!   cannot hold up start-up for ever: a check that runs out of time is reported as
//!   incomplete, not as ok or corrupt. At start a corrupt database is refused (the
//!   collector does not serve a file it cannot trust); [`spawn_periodic`] repeats
//!   the check on its own read-only connection every [`PERIOD`] and logs an error
//!   naming the problems if it fails (ingest goes on: refusing data then would lose
//!   it, and the operator must decide; docs/OPERATIONS.md says how).
//! - [`backup`]: `VACUUM INTO` on a read-only connection: one read transaction, so
//!   the copy is consistent while the writer keeps committing (WAL), written to a
//!   temporary name, verified by opening it and running the full
//!   `PRAGMA integrity_check`, then renamed into place and synced.
//!
//! Everything here blocks: call it from a plain thread or `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// The time limit of the check at start.
pub(crate) const START_LIMIT: Duration = Duration::from_secs(120);
/// How often the running collector checks again, and the limit then.
pub(crate) const PERIOD: Duration = Duration::from_secs(6 * 3600);
const PERIODIC_LIMIT: Duration = Duration::from_secs(300);
/// Problems listed at most (quick_check's own bound).
const MAX_PROBLEMS: u32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum IntegrityError {
    #[error(
        "database {path} is corrupt ({}); the collector will not serve it: see docs/OPERATIONS.md, \"A corrupt database\"",
        .problems.join("; ")
    )]
    Corrupt {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error("database {path}: the integrity check did not finish within {} s", .limit.as_secs())]
    Incomplete { path: PathBuf, limit: Duration },
    #[error("database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("backup target {0} exists; choose a new file name")]
    TargetExists(PathBuf),
    #[error("backup {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a finished check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checked {
    pub(crate) took: Duration,
}

/// Runs `pragma` (`quick_check(N)` or `integrity_check(N)`) on `conn`, interrupted
/// after `limit`.
fn run_check(
    conn: &Connection,
    path: &Path,
    pragma: &str,
    limit: Duration,
) -> Result<Checked, IntegrityError> {
    let started = Instant::now();
    let handle = conn.get_interrupt_handle();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = std::thread::Builder::new()
        .name("integrity-limit".into())
        .spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(limit) {
                handle.interrupt();
            }
        })
        .map_err(|source| IntegrityError::Io {
            path: path.to_owned(),
            source,
        })?;
    let rows: rusqlite::Result<Vec<String>> = (|| {
        let mut st = conn.prepare(&format!("PRAGMA {pragma}"))?;
        st.query_map([], |r| r.get::<_, String>(0))?.collect()
    })();
    let _ = done_tx.send(());
    let _ = watchdog.join();
    let rows = match rows {
        Ok(rows) => rows,
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::OperationInterrupted =>
        {
            return Err(IntegrityError::Incomplete {
                path: path.to_owned(),
                limit,
            });
        }
        // A page so damaged that SQLite cannot even walk it is corruption too.
        Err(rusqlite::Error::SqliteFailure(e, msg))
            if matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
            ) =>
        {
            return Err(IntegrityError::Corrupt {
                path: path.to_owned(),
                problems: vec![msg.unwrap_or_else(|| e.to_string())],
            });
        }
        Err(source) => {
            return Err(IntegrityError::Sqlite {
                path: path.to_owned(),
                source,
            });
        }
    };
    if rows.len() == 1 && rows[0] == "ok" {
        return Ok(Checked {
            took: started.elapsed(),
        });
    }
    Err(IntegrityError::Corrupt {
        path: path.to_owned(),
        problems: rows,
    })
}

/// The quick check with a time limit (see the module docs).
pub(crate) fn check(
    conn: &Connection,
    path: &Path,
    limit: Duration,
) -> Result<Checked, IntegrityError> {
    run_check(conn, path, &format!("quick_check({MAX_PROBLEMS})"), limit)
}

/// Checks `path` every [`PERIOD`] on its own read-only connection until `stop` is
/// dropped or sent to.
pub(crate) fn spawn_periodic(path: PathBuf, stop: mpsc::Receiver<()>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("integrity-check".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(PERIOD) {
                let result = super::open_read_only(&path)
                    .map_err(|e| IntegrityError::Io {
                        path: path.clone(),
                        source: std::io::Error::other(e.to_string()),
                    })
                    .and_then(|conn| check(&conn, &path, PERIODIC_LIMIT));
                match result {
                    Ok(c) => tracing::info!(
                        db = %path.display(),
                        took_ms = c.took.as_millis() as u64,
                        "database integrity check ok"
                    ),
                    Err(err) => tracing::error!(
                        db = %path.display(),
                        error = %err,
                        "database integrity check failed"
                    ),
                }
            }
        })
        .map(|_| ())
}

/// What a finished backup holds.
#[derive(Debug, Clone)]
pub struct BackupSummary {
    pub bytes: u64,
    pub schema_version: i64,
    pub devices: i64,
    pub batches: i64,
    pub took: Duration,
}

/// Copies the database at `db` to `to` while it is in use (see the module docs).
pub fn backup(db: &Path, to: &Path) -> Result<BackupSummary, IntegrityError> {
    let started = Instant::now();
    if to.exists() {
        return Err(IntegrityError::TargetExists(to.to_owned()));
    }
    let sql_err = |path: &Path| {
        let path = path.to_owned();
        move |source| IntegrityError::Sqlite { path, source }
    };
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| IntegrityError::Io { path, source }
    };
    let tmp = to.with_extension("partial");
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&tmp)(e)),
    }
    let src = super::open_read_only(db).map_err(|e| IntegrityError::Io {
        path: db.to_owned(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let tmp_str = tmp.to_str().ok_or_else(|| IntegrityError::Io {
        path: tmp.clone(),
        source: std::io::Error::other("the path is not valid UTF-8"),
    })?;
    src.execute("VACUUM INTO ?1", [tmp_str])
        .map_err(sql_err(db))?;
    drop(src);
    // Verified by opening it: the full check (the copy is offline, time is not
    // short), and the figures printed come from the copy itself.
    let summary = (|| {
        let copy = Connection::open_with_flags(&tmp, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(sql_err(&tmp))?;
        run_check(
            &copy,
            &tmp,
            "integrity_check(10)",
            Duration::from_secs(3600),
        )?;
        let q = |sql: &str| copy.query_row(sql, [], |r| r.get::<_, i64>(0));
        Ok::<_, IntegrityError>(BackupSummary {
            bytes: 0,
            schema_version: copy
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .map_err(sql_err(&tmp))?,
            devices: q("SELECT count(*) FROM devices").map_err(sql_err(&tmp))?,
            batches: q("SELECT count(*) FROM batches").map_err(sql_err(&tmp))?,
            took: Duration::ZERO,
        })
    })();
    let mut summary = match summary {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, to).map_err(io_err(to))?;
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(io_err(dir))?;
    }
    summary.bytes = std::fs::metadata(to).map_err(io_err(to))?.len();
    summary.took = started.elapsed();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Overwrites the first bytes of the root page of `table`'s B-tree.
    pub(crate) fn corrupt_table(db: &Path, table: &str) {
        use std::io::{Seek, SeekFrom, Write};
        let conn = super::super::open(db).unwrap();
        let root: i64 = conn
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = ?1",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        let page: i64 = conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .unwrap();
        conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")
            .unwrap();
        drop(conn);
        let mut f = std::fs::OpenOptions::new().write(true).open(db).unwrap();
        f.seek(SeekFrom::Start(((root - 1) * page) as u64)).unwrap();
        f.write_all(&[0xA5; 64]).unwrap();
        f.sync_all().unwrap();
    }

    #[test]
    fn a_healthy_database_passes_and_a_damaged_page_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let conn = super::super::open(&db).unwrap();
        check(&conn, &db, START_LIMIT).unwrap();
        conn.execute_batch(
            "INSERT INTO tenants (name, created_ms) VALUES ('acme', 0);
             INSERT INTO devices (id, tenant_id, first_seen_ms, last_seen_ms) VALUES ('d', 1, 0, 0);",
        )
        .unwrap();
        drop(conn);
        corrupt_table(&db, "devices");
        let conn = Connection::open(&db).unwrap();
        let err = check(&conn, &db, START_LIMIT).unwrap_err();
        assert!(matches!(err, IntegrityError::Corrupt { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("t.db is corrupt") && text.contains("OPERATIONS.md"),
            "{text}"
        );
    }

    #[test]
    fn a_backup_is_a_verified_copy_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let conn = super::super::open(&db).unwrap();
        conn.execute_batch("INSERT INTO tenants (name, created_ms) VALUES ('acme', 0);")
            .unwrap();
        let to = dir.path().join("copy.db");
        let s = backup(&db, &to).unwrap();
        assert!(s.bytes > 0);
        let copy = Connection::open(&to).unwrap();
        let n: i64 = copy
            .query_row("SELECT count(*) FROM tenants", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        assert!(matches!(
            backup(&db, &to),
            Err(IntegrityError::TargetExists(_))
        ));
    }
}
