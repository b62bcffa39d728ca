//! The collector's SQLite store: schema and migrations, the single writer, and reads.
//!
//! Invariants:
//! - ingest writes go through [`writer::Writer`] only (one thread, group commit);
//!   the rare administrative writes (CLI commands, enrollment, renewal: see
//!   [`admin`]) run on their own connection in short `BEGIN IMMEDIATE`
//!   transactions, which SQLite serialises with the writer (5 s busy timeout);
//! - the alert engine writes only its own tables (`alert_*`) on its own connection,
//!   and `alerts ack` one row — SQLite serialises them too (WAL, busy timeouts);
//! - the database runs in WAL mode with `synchronous = FULL`, so a commit that returned
//!   survives a process or OS crash — and only committed batches are ever acknowledged;
//! - schema changes are numbered SQL files in `migrations/`, applied in order and
//!   recorded in `PRAGMA user_version`.
//!
//! Everything outside this module talks to the store through the narrow types below,
//! so a second backend (PostgreSQL) can be added behind the same interface later.

pub mod admin;
pub mod query;
pub mod writer;

use std::path::{Path, PathBuf};

use rusqlite::Connection;

/// The migrations, in order. Index `i` moves the schema from version `i` to `i + 1`.
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init", include_str!("migrations/0001_init.sql")),
    ("0002_gaps", include_str!("migrations/0002_gaps.sql")),
    (
        "0003_enrollment",
        include_str!("migrations/0003_enrollment.sql"),
    ),
    ("0004_alerts", include_str!("migrations/0004_alerts.sql")),
    (
        "0005_tags_silences",
        include_str!("migrations/0005_tags_silences.sql"),
    ),
    (
        "0006_inventory",
        include_str!("migrations/0006_inventory.sql"),
    ),
    (
        "0007_patch_check_requests",
        include_str!("migrations/0007_patch_check_requests.sql"),
    ),
];

/// File name of the database inside the data dir.
pub const DB_FILE: &str = "tandem.db";

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database {path} has schema version {found}, newer than this build knows ({known})")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: usize,
    },
    #[error("migration {name} failed")]
    Migration {
        name: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database error")]
    Sqlite(#[from] rusqlite::Error),
    #[error("device {device_id} is registered to another tenant")]
    TenantMismatch { device_id: String },
    #[error(
        "device {device_id}: an earlier write failed; nothing more is stored until it reconnects"
    )]
    Halted { device_id: String },
    #[error("commit failed: {0}")]
    CommitFailed(String),
    #[error("the store writer has stopped")]
    WriterGone,
}

/// Opens (creating if needed) the database at `path`, sets the pragmas every
/// connection needs, and applies pending migrations.
pub fn open(path: &Path) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    let mut conn = Connection::open(path).map_err(open_err)?;
    configure(&conn).map_err(open_err)?;
    migrate(&mut conn, path)?;
    Ok(conn)
}

/// Opens a read-only connection for queries (CLI, and later the HTTP API).
pub fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Open {
        path: path.to_owned(),
        source,
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // WAL: readers never block the writer. FULL: a commit is on disk before we ack it
    // (NORMAL would survive a process crash but not an OS crash or power loss).
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // 64 MiB of page cache: the sample B-tree is written all over (one series per
    // device per metric), and keeping its inner pages cached is most of ingest speed.
    conn.pragma_update(None, "cache_size", -65536)?;
    Ok(())
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version < 0 || version as usize > MIGRATIONS.len() {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found: version,
            known: MIGRATIONS.len(),
        });
    }
    for (i, (name, sql)) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let err = |source| StoreError::Migration { name, source };
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(sql).map_err(err)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(err)?;
        tx.commit().map_err(err)?;
        tracing::info!(migration = name, "applied schema migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_record_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(open(&path).unwrap());
        let conn = open(&path).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = open(&path).unwrap_err();
        assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
    }
}
