//! `tandem-collector storage stats` (issue 17): bytes per table and tier, values per
//! tier, the oldest data and the compaction backlog.

use rusqlite::Connection;

use super::StoreError;

/// One table or index and its size on disk (pages it uses, page overhead included).
#[derive(Debug, serde::Serialize)]
pub(crate) struct TableBytes {
    pub(crate) name: String,
    pub(crate) bytes: i64,
}

/// One storage tier.
#[derive(Debug, serde::Serialize)]
pub(crate) struct TierStats {
    pub(crate) tier: &'static str,
    /// Rows (head rows, chunks or rollup blobs).
    pub(crate) rows: i64,
    /// Values (raw tiers) or buckets (rollup tiers).
    pub(crate) values: i64,
    /// Bytes of the blobs themselves.
    pub(crate) blob_bytes: i64,
    /// Start of the oldest data, ms since the epoch.
    pub(crate) oldest_ms: Option<i64>,
}

/// What `storage stats` shows.
#[derive(Debug, serde::Serialize)]
pub(crate) struct StorageStats {
    pub(crate) file_bytes: i64,
    pub(crate) tables: Vec<TableBytes>,
    pub(crate) tiers: Vec<TierStats>,
    /// Head rows waiting for compaction (includes the open hour's).
    pub(crate) backlog_head_rows: i64,
    /// Rows of the old row-per-value layout not yet upgraded.
    pub(crate) backlog_old_rows: i64,
    /// The tables with their own retention (`[store] *_retention_days`).
    pub(crate) other: Vec<OtherTable>,
}

/// A table with its own retention: its rows and the time of its oldest.
#[derive(Debug, serde::Serialize)]
pub(crate) struct OtherTable {
    pub(crate) table: &'static str,
    pub(crate) rows: i64,
    pub(crate) oldest_ms: Option<i64>,
}

pub(crate) fn stats(conn: &Connection) -> Result<StorageStats, StoreError> {
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let mut tables = Vec::new();
    {
        let mut stmt = conn.prepare(
            "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY sum(pgsize) DESC",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(TableBytes {
                name: r.get(0)?,
                bytes: r.get(1)?,
            })
        })?;
        for r in rows {
            tables.push(r?);
        }
    }
    let tier = |name: &'static str, sql: &str| -> Result<TierStats, StoreError> {
        Ok(conn.query_row(sql, [], |r| {
            Ok(TierStats {
                tier: name,
                rows: r.get(0)?,
                values: r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                blob_bytes: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                oldest_ms: r.get(3)?,
            })
        })?)
    };
    let tiers = vec![
        tier(
            "head",
            "SELECT count(*), sum(n_values), sum(length(payload)), min(min_ts) FROM head",
        )?,
        tier(
            "raw",
            "SELECT count(*), sum(n_values), sum(length(blob)), min(start_ms) FROM chunks",
        )?,
        tier(
            "5m",
            "SELECT count(*), sum(n_buckets), sum(length(blob)), min(start_ms) FROM rollups WHERE tier = 300000",
        )?,
        tier(
            "1h",
            "SELECT count(*), sum(n_buckets), sum(length(blob)), min(start_ms) FROM rollups WHERE tier = 3600000",
        )?,
        tier(
            "old layout",
            "SELECT count(*), count(*), 0, min(ts_ms) FROM samples_old",
        )?,
    ];
    let mut other = Vec::new();
    for (table, time) in [
        ("patch_reports", "time_ms"),
        ("inventory_changes", "time_ms"),
        ("alert_history", "at_ms"),
        ("notify_log", "at_ms"),
    ] {
        // count(*) and min() over the time index: no table scan of the rows' data.
        let (rows, oldest_ms) = conn.query_row(
            &format!("SELECT count(*), min({time}) FROM {table}"),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        other.push(OtherTable {
            table,
            rows,
            oldest_ms,
        });
    }
    let backlog_head_rows = tiers[0].rows;
    let backlog_old_rows = tiers[4].rows;
    Ok(StorageStats {
        file_bytes: page_size * pages,
        tables,
        tiers,
        backlog_head_rows,
        backlog_old_rows,
        other,
    })
}

fn when(ms: Option<i64>) -> String {
    match ms
        .and_then(|m| time::OffsetDateTime::from_unix_timestamp_nanos(m as i128 * 1_000_000).ok())
    {
        Some(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            t.month() as u8,
            t.day(),
            t.hour(),
            t.minute()
        ),
        None => "-".into(),
    }
}

impl std::fmt::Display for StorageStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "database file: {} bytes", self.file_bytes)?;
        writeln!(
            f,
            "\n{:<12} {:>10} {:>14} {:>14} {:>8}  oldest",
            "tier", "rows", "values", "blob bytes", "B/value"
        )?;
        for t in &self.tiers {
            let bpv = if t.values > 0 {
                format!("{:.2}", t.blob_bytes as f64 / t.values as f64)
            } else {
                "-".into()
            };
            writeln!(
                f,
                "{:<12} {:>10} {:>14} {:>14} {:>8}  {}",
                t.tier,
                t.rows,
                t.values,
                t.blob_bytes,
                bpv,
                when(t.oldest_ms)
            )?;
        }
        writeln!(
            f,
            "\ncompaction backlog: {} head rows, {} old-layout rows to upgrade",
            self.backlog_head_rows, self.backlog_old_rows
        )?;
        writeln!(f, "\n{:<20} {:>10}  oldest", "kept table", "rows")?;
        for t in &self.other {
            writeln!(f, "{:<20} {:>10}  {}", t.table, t.rows, when(t.oldest_ms))?;
        }
        writeln!(f, "\n{:<32} {:>14}", "table or index", "bytes")?;
        for t in &self.tables {
            writeln!(f, "{:<32} {:>14}", t.name, t.bytes)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn stats_of_a_fresh_database() {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::open(&dir.path().join("t.db")).unwrap();
        let s = super::stats(&conn).unwrap();
        assert!(s.file_bytes > 0);
        assert!(s.tables.iter().any(|t| t.name == "chunks"));
        assert_eq!(s.tiers.len(), 5);
        assert_eq!(s.backlog_head_rows, 0);
        let text = s.to_string();
        assert!(text.contains("compaction backlog"), "{text}");
        assert_eq!(s.other.len(), 4);
        assert!(text.contains("notify_log"), "{text}");
    }
}
