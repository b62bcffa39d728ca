//! Values into the head: the series-id cache and one head row per batch.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};
use tandem_proto::v1::MetricBatch;

use crate::store::StoreError;

/// Series ids by device, name and dimension, so ingest does not look them up in
/// SQLite per value. Nested by part so that a hit is found with the batch's borrowed
/// strings: the ingest path allocates only for a series seen for the first time.
#[derive(Default)]
pub(super) struct SeriesCache(HashMap<String, HashMap<String, HashMap<String, i64>>>);

impl SeriesCache {
    pub(super) fn get(&self, device_id: &str, name: &str, dimension: &str) -> Option<i64> {
        self.0.get(device_id)?.get(name)?.get(dimension).copied()
    }

    pub(super) fn insert(&mut self, device_id: &str, name: &str, dimension: &str, id: i64) {
        self.0
            .entry(device_id.to_owned())
            .or_default()
            .entry(name.to_owned())
            .or_default()
            .insert(dimension.to_owned(), id);
    }

    pub(super) fn clear(&mut self) {
        self.0.clear();
    }
}

/// Stores a batch's values as one head row (issue 17: one row per batch, not per
/// value); compaction later moves it into the device-hour chunk. A value already
/// stored for the same series and instant (a live copy sent earlier) is kept as it
/// is: compaction and reads keep the first one. Returns the values stored.
pub(super) fn write_values(
    tx: &rusqlite::Transaction<'_>,
    cache: &mut SeriesCache,
    device_id: &str,
    batch: &MetricBatch,
) -> Result<u64, StoreError> {
    let mut series_ids = Vec::with_capacity(batch.series.len());
    for key in &batch.series {
        series_ids.push(series_id(tx, cache, device_id, &key.name, &key.dimension)?);
    }
    let mut n = 0u64;
    let (mut min_ts, mut max_ts) = (i64::MAX, i64::MIN);
    let samples: Vec<(i64, &[f64])> = batch
        .samples
        .iter()
        .map(|s| {
            n += s
                .values
                .iter()
                .take(series_ids.len())
                .filter(|v| !v.is_nan())
                .count() as u64;
            min_ts = min_ts.min(s.time_unix_ms);
            max_ts = max_ts.max(s.time_unix_ms);
            (s.time_unix_ms, s.values.as_slice())
        })
        .collect();
    if n == 0 {
        return Ok(0);
    }
    let payload = crate::store::chunk::encode_head(&series_ids, &samples);
    let mut insert = tx.prepare_cached(
        "INSERT INTO head (device_id, min_ts, max_ts, n_values, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    insert.execute(params![device_id, min_ts, max_ts, n as i64, payload])?;
    Ok(n)
}

fn series_id(
    tx: &rusqlite::Transaction<'_>,
    cache: &mut SeriesCache,
    device_id: &str,
    name: &str,
    dimension: &str,
) -> rusqlite::Result<i64> {
    if let Some(id) = cache.get(device_id, name, dimension) {
        return Ok(id);
    }
    let mut find = tx.prepare_cached(
        "SELECT id FROM series WHERE device_id = ?1 AND name = ?2 AND dimension = ?3",
    )?;
    let id = match find
        .query_row(params![device_id, name, dimension], |r| r.get(0))
        .optional()?
    {
        Some(id) => id,
        None => {
            let mut ins = tx.prepare_cached(
                "INSERT INTO series (device_id, name, dimension) VALUES (?1, ?2, ?3)",
            )?;
            ins.execute(params![device_id, name, dimension])?;
            tx.last_insert_rowid()
        }
    };
    cache.insert(device_id, name, dimension, id);
    Ok(id)
}
