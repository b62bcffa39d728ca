//! Values into the head: the series-id cache and one head row per batch.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

use rusqlite::{OptionalExtension, params};
use tandem_proto::v1::MetricBatch;

use crate::store::StoreError;

/// Series ids by device, name and dimension, so ingest does not look them up in
/// SQLite per value.
///
/// Keyed by a 128-bit keyed hash of the three strings (two independent SipHash keys),
/// not by the strings: an entry is 24 bytes whatever the names, where nested maps of
/// owned strings cost about 250 bytes a series (25 KiB per device of 100 series,
/// a quarter of a gigabyte for 10,000 devices; measured with heaptrack under
/// `loadgen`). Two different series share a key with probability about
/// n² / 2¹²⁹ for n cached series (below 10⁻²⁴ at ten million), so a hit is trusted.
/// A lookup hashes the batch's borrowed strings and allocates nothing.
pub(super) struct SeriesCache {
    ids: HashMap<u128, i64, BuildHasherDefault<Prehashed>>,
    keys: (RandomState, RandomState),
}

impl Default for SeriesCache {
    fn default() -> Self {
        SeriesCache {
            ids: HashMap::default(),
            keys: (RandomState::new(), RandomState::new()),
        }
    }
}

impl SeriesCache {
    fn key(&self, device_id: &str, name: &str, dimension: &str) -> u128 {
        // `str`'s Hash writes a terminator after the bytes, so ("ab", "c") and
        // ("a", "bc") hash differently.
        let parts = (device_id, name, dimension);
        let hi = self.keys.0.hash_one(parts);
        let lo = self.keys.1.hash_one(parts);
        (u128::from(hi) << 64) | u128::from(lo)
    }

    pub(super) fn get(&self, device_id: &str, name: &str, dimension: &str) -> Option<i64> {
        self.ids.get(&self.key(device_id, name, dimension)).copied()
    }

    pub(super) fn insert(&mut self, device_id: &str, name: &str, dimension: &str, id: i64) {
        let k = self.key(device_id, name, dimension);
        self.ids.insert(k, id);
    }

    pub(super) fn clear(&mut self) {
        self.ids.clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.ids.len()
    }
}

/// The map's hasher for keys that are already uniformly random hashes: it takes
/// their low 64 bits instead of hashing them again.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u128 keys are hashed here; fold anything else rather than drop it.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_tells_every_series_apart_and_finds_each_again() {
        let mut c = SeriesCache::default();
        let mut want = Vec::new();
        let mut id = 0;
        for d in ["dev-1", "dev-2", "dev-12"] {
            for n in ["cpu.usage", "fs.used.percent", "a", "ab"] {
                for dim in ["", "/", "/srv", "b", "c"] {
                    id += 1;
                    c.insert(d, n, dim, id);
                    want.push((d, n, dim, id));
                }
            }
        }
        assert_eq!(c.len(), want.len(), "no two series share an entry");
        for (d, n, dim, id) in &want {
            assert_eq!(c.get(d, n, dim), Some(*id), "{d} {n} {dim:?}");
        }
        // Moving a character from one part to the next is another series.
        assert_eq!(
            c.get("dev-1", "a", "b"),
            Some(
                want.iter()
                    .find(|w| (w.0, w.1, w.2) == ("dev-1", "a", "b"))
                    .unwrap()
                    .3
            )
        );
        assert_eq!(
            c.get("dev-1", "ab", ""),
            Some(
                want.iter()
                    .find(|w| (w.0, w.1, w.2) == ("dev-1", "ab", ""))
                    .unwrap()
                    .3
            )
        );
        assert_eq!(c.get("dev-1a", "b", ""), None);
        assert_eq!(c.get("dev-", "1a", "b"), None);
        assert_eq!(c.get("dev-1", "a", "bc"), None);
        c.clear();
        assert_eq!(c.get("dev-1", "a", "b"), None);
    }
}
