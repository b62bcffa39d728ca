//! Encodings of the metric store (issue 17): the raw head payload (one row per
//! agent batch), the compressed device-hour chunk (one `pco` stream per series, so
//! one series is decoded without the others), and the rollup blob.
//!
//! All integers are little-endian. Every blob starts with a version byte so that a
//! later layout can be read next to this one.

use std::collections::BTreeMap;

/// Bucket widths of the rollup tiers, in ms; also the `tier` column of `rollups`.
pub(crate) const TIER_5M_MS: i64 = 300_000;
pub(crate) const TIER_1H_MS: i64 = 3_600_000;
/// Span of one raw chunk and of one 5-minute rollup blob.
pub const CHUNK_MS: i64 = 3_600_000;
/// Span of one 1-hour rollup blob.
pub const DAY_MS: i64 = 86_400_000;

/// A blob that cannot be read (damaged, or written by a newer build).
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("{what}: truncated at byte {at}")]
    Truncated { what: &'static str, at: usize },
    #[error("{what}: unknown layout version {version}")]
    Version { what: &'static str, version: u8 },
    #[error("{what}: {source}")]
    Pco {
        what: &'static str,
        #[source]
        source: pco::errors::PcoError,
    },
}

/// Floor of `ts` to a multiple of `width` (also for times before 1970).
pub(crate) fn floor(ts: i64, width: i64) -> i64 {
    ts.div_euclid(width) * width
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, at: 0, what }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], ChunkError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(ChunkError::Truncated {
                what: self.what,
                at: self.at,
            });
        };
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, ChunkError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, ChunkError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or([0; 4]),
        ))
    }
    fn i64(&mut self) -> Result<i64, ChunkError> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or([0; 8]),
        ))
    }
    fn f64(&mut self) -> Result<f64, ChunkError> {
        Ok(f64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or([0; 8]),
        ))
    }
}

fn version(r: &mut Reader<'_>) -> Result<(), ChunkError> {
    match r.u8()? {
        1 => Ok(()),
        v => Err(ChunkError::Version {
            what: r.what,
            version: v,
        }),
    }
}

// ---------------------------------------------------------------- head payload

/// Encodes one batch for the head: the series ids in the batch's order, then each
/// sample's time and its values in that order (NaN where a series has no value).
/// 8 bytes a value plus 8 a sample; a short-lived row, compacted within the hour.
pub fn encode_head(series_ids: &[i64], samples: &[(i64, &[f64])]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(9 + 8 * series_ids.len() + samples.len() * (8 + 8 * series_ids.len()));
    out.push(1);
    out.extend_from_slice(&(series_ids.len() as u32).to_le_bytes());
    for id in series_ids {
        out.extend_from_slice(&id.to_le_bytes());
    }
    out.extend_from_slice(&(samples.len() as u32).to_le_bytes());
    for (ts, values) in samples {
        out.extend_from_slice(&ts.to_le_bytes());
        for i in 0..series_ids.len() {
            let v = values.get(i).copied().unwrap_or(f64::NAN);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// One stored value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Value {
    pub series_id: i64,
    pub ts_ms: i64,
    pub value: f64,
}

/// Decodes a head payload into its values (NaN = absent, skipped), in batch order.
pub(crate) fn decode_head(payload: &[u8], out: &mut Vec<Value>) -> Result<(), ChunkError> {
    let mut r = Reader::new(payload, "head payload");
    version(&mut r)?;
    let n_series = r.u32()? as usize;
    let mut ids = Vec::with_capacity(n_series.min(payload.len() / 8));
    for _ in 0..n_series {
        ids.push(r.i64()?);
    }
    let n_samples = r.u32()?;
    for _ in 0..n_samples {
        let ts = r.i64()?;
        for &id in &ids {
            let v = r.f64()?;
            if !v.is_nan() {
                out.push(Value {
                    series_id: id,
                    ts_ms: ts,
                    value: v,
                });
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- raw chunk

/// One series of a chunk, decoded: times ascending, one value each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesPoints {
    pub ts: Vec<i64>,
    pub values: Vec<f64>,
}

fn pco_config() -> pco::ChunkConfig {
    pco::ChunkConfig::default()
}

fn compress_i64(v: &[i64], what: &'static str) -> Result<Vec<u8>, ChunkError> {
    pco::standalone::simple_compress(v, &pco_config())
        .map_err(|source| ChunkError::Pco { what, source })
}
fn compress_f64(v: &[f64], what: &'static str) -> Result<Vec<u8>, ChunkError> {
    pco::standalone::simple_compress(v, &pco_config())
        .map_err(|source| ChunkError::Pco { what, source })
}
fn decompress<T: pco::data_types::Number>(
    b: &[u8],
    what: &'static str,
) -> Result<Vec<T>, ChunkError> {
    pco::standalone::simple_decompress(b).map_err(|source| ChunkError::Pco { what, source })
}

/// Size of one series entry in a chunk's header.
const ENTRY: usize = 8 + 4 * 6 + 8 + 8;

/// Encodes a device-hour: per series (ascending id) a header entry
/// `(series_id, n, ts_ref, ts_off, ts_len, val_off, val_len, min, max)`, then the
/// `pco` streams. A series whose times equal an earlier series' (the usual case: an
/// agent samples all its series at once) points at that series' time stream
/// (`ts_ref`) instead of storing its own, so times cost ~nothing per value.
/// Series with no points are left out.
pub(crate) fn encode_chunk(series: &BTreeMap<i64, SeriesPoints>) -> Result<Vec<u8>, ChunkError> {
    let live: Vec<(&i64, &SeriesPoints)> =
        series.iter().filter(|(_, p)| !p.ts.is_empty()).collect();
    let mut body = Vec::new();
    let mut entries = Vec::with_capacity(live.len());
    // Time streams already written: (series index, offset, len), to share equal ones.
    let mut ts_streams: Vec<(usize, u32, u32)> = Vec::new();
    for (i, (id, p)) in live.iter().enumerate() {
        let shared = ts_streams
            .iter()
            .find(|(j, _, _)| live[*j].1.ts == p.ts)
            .copied();
        let (ts_ref, ts_off, ts_len) = match shared {
            Some((j, off, len)) => (j as u32, off, len),
            None => {
                let b = compress_i64(&p.ts, "chunk times")?;
                let off = body.len() as u32;
                body.extend_from_slice(&b);
                ts_streams.push((i, off, b.len() as u32));
                (i as u32, off, b.len() as u32)
            }
        };
        let vb = compress_f64(&p.values, "chunk values")?;
        let val_off = body.len() as u32;
        body.extend_from_slice(&vb);
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        for &v in &p.values {
            min = min.min(v);
            max = max.max(v);
        }
        entries.push((
            **id,
            p.ts.len() as u32,
            ts_ref,
            ts_off,
            ts_len,
            val_off,
            vb.len() as u32,
            min,
            max,
        ));
    }
    let mut out = Vec::with_capacity(5 + entries.len() * ENTRY + body.len());
    out.push(1);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (id, n, ts_ref, ts_off, ts_len, val_off, val_len, min, max) in entries {
        out.extend_from_slice(&id.to_le_bytes());
        for x in [n, ts_ref, ts_off, ts_len, val_off, val_len] {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.extend_from_slice(&min.to_le_bytes());
        out.extend_from_slice(&max.to_le_bytes());
    }
    out.extend_from_slice(&body);
    Ok(out)
}

/// A chunk's header entry for one series.
#[derive(Debug, Clone, Copy)]
pub struct ChunkEntry {
    pub series_id: i64,
    pub n: u32,
    /// The series (index) whose time stream this one uses.
    pub ts_ref: u32,
    ts_off: u32,
    ts_len: u32,
    val_off: u32,
    val_len: u32,
    pub min: f64,
    pub max: f64,
}

/// A chunk's header, read without decoding any stream.
pub struct ChunkView<'a> {
    pub entries: Vec<ChunkEntry>,
    body: &'a [u8],
}

impl<'a> ChunkView<'a> {
    pub fn parse(blob: &'a [u8]) -> Result<Self, ChunkError> {
        let mut r = Reader::new(blob, "chunk");
        version(&mut r)?;
        let n = r.u32()? as usize;
        let mut entries = Vec::with_capacity(n.min(blob.len() / ENTRY));
        for _ in 0..n {
            entries.push(ChunkEntry {
                series_id: r.i64()?,
                n: r.u32()?,
                ts_ref: r.u32()?,
                ts_off: r.u32()?,
                ts_len: r.u32()?,
                val_off: r.u32()?,
                val_len: r.u32()?,
                min: r.f64()?,
                max: r.f64()?,
            });
        }
        Ok(Self {
            entries,
            body: &blob[r.at..],
        })
    }

    fn slice(&self, off: u32, len: u32) -> Result<&'a [u8], ChunkError> {
        let (off, len) = (off as usize, len as usize);
        self.body
            .get(off..off.saturating_add(len))
            .ok_or(ChunkError::Truncated {
                what: "chunk stream",
                at: off,
            })
    }

    /// Decodes the series at `index` of [`ChunkView::entries`]: two streams, nothing else.
    pub(crate) fn series_at(&self, index: usize) -> Result<SeriesPoints, ChunkError> {
        let e = self.entries[index];
        // ts_off/ts_len already point at the stream of series `ts_ref`.
        let ts: Vec<i64> = decompress(self.slice(e.ts_off, e.ts_len)?, "chunk times")?;
        let values: Vec<f64> = decompress(self.slice(e.val_off, e.val_len)?, "chunk values")?;
        if ts.len() != values.len() {
            return Err(ChunkError::Truncated {
                what: "chunk series (times and values differ in length)",
                at: index,
            });
        }
        Ok(SeriesPoints { ts, values })
    }

    /// Decodes one series, if the chunk holds it.
    pub(crate) fn series(&self, series_id: i64) -> Result<Option<SeriesPoints>, ChunkError> {
        match self
            .entries
            .binary_search_by_key(&series_id, |e| e.series_id)
        {
            Ok(i) => self.series_at(i).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Decodes every series. A time stream shared by several series (the usual
    /// case) is decoded once.
    pub fn all(&self) -> Result<BTreeMap<i64, SeriesPoints>, ChunkError> {
        let mut out = BTreeMap::new();
        self.each(|id, p| {
            out.insert(id, p);
        })?;
        Ok(out)
    }

    /// Calls `f` with every series in ascending id order, decoding each shared time
    /// stream once (what [`ChunkView::all`] does, without the map).
    pub(crate) fn each(&self, mut f: impl FnMut(i64, SeriesPoints)) -> Result<(), ChunkError> {
        // Decoded time streams by offset: an agent samples all its series at once,
        // so a device-hour usually has one.
        let mut times: Vec<(u32, Vec<i64>)> = Vec::new();
        for (index, e) in self.entries.iter().enumerate() {
            let ts = match times.iter().find(|(off, _)| *off == e.ts_off) {
                Some((_, ts)) => ts.clone(),
                None => {
                    let ts: Vec<i64> = decompress(self.slice(e.ts_off, e.ts_len)?, "chunk times")?;
                    times.push((e.ts_off, ts.clone()));
                    ts
                }
            };
            let values: Vec<f64> = decompress(self.slice(e.val_off, e.val_len)?, "chunk values")?;
            if ts.len() != values.len() {
                return Err(ChunkError::Truncated {
                    what: "chunk series (times and values differ in length)",
                    at: index,
                });
            }
            f(e.series_id, SeriesPoints { ts, values });
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- rollups

/// Aggregates of one series over one bucket `[bucket_ms, bucket_ms + width)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Agg {
    pub series_id: i64,
    pub bucket_ms: i64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: i64,
    /// The value at the latest time in the bucket.
    pub last: f64,
    /// Counter increase: the sum, over consecutive samples of the chunk whose later
    /// one lies in the bucket, of `cur - prev`, or of `cur` where `cur < prev` (the
    /// counter was reset, so it counted `cur` since). Meaningless for gauges.
    pub increase: f64,
}

impl Agg {
    /// Folds `b` (later in time) into `self`.
    pub(crate) fn merge(&mut self, b: &Agg) {
        self.min = self.min.min(b.min);
        self.max = self.max.max(b.max);
        self.sum += b.sum;
        self.count += b.count;
        self.last = b.last;
        self.increase += b.increase;
    }
}

/// Rollups of one series' points (ascending times) at bucket `width`.
pub(crate) fn rollup(series_id: i64, p: &SeriesPoints, width: i64, out: &mut Vec<Agg>) {
    let mut prev: Option<f64> = None;
    for (&ts, &v) in p.ts.iter().zip(&p.values) {
        let bucket = floor(ts, width);
        let step = match prev {
            None => 0.0,
            Some(pv) if v >= pv => v - pv,
            Some(_) => v,
        };
        prev = Some(v);
        match out.last_mut() {
            Some(a) if a.series_id == series_id && a.bucket_ms == bucket => {
                a.merge(&Agg {
                    series_id,
                    bucket_ms: bucket,
                    min: v,
                    max: v,
                    sum: v,
                    count: 1,
                    last: v,
                    increase: step,
                });
            }
            _ => out.push(Agg {
                series_id,
                bucket_ms: bucket,
                min: v,
                max: v,
                sum: v,
                count: 1,
                last: v,
                increase: step,
            }),
        }
    }
}

/// Encodes rollup rows column-wise, one `pco` stream per field over all the
/// device's series (rollup rows are few: a per-series stream would cost more in
/// stream headers than in data).
pub(crate) fn encode_rollups(aggs: &[Agg]) -> Result<Vec<u8>, ChunkError> {
    let col_i = |f: fn(&Agg) -> i64| aggs.iter().map(f).collect::<Vec<_>>();
    let col_f = |f: fn(&Agg) -> f64| aggs.iter().map(f).collect::<Vec<_>>();
    let streams = [
        compress_i64(&col_i(|a| a.series_id), "rollup series")?,
        compress_i64(&col_i(|a| a.bucket_ms), "rollup buckets")?,
        compress_f64(&col_f(|a| a.min), "rollup min")?,
        compress_f64(&col_f(|a| a.max), "rollup max")?,
        compress_f64(&col_f(|a| a.sum), "rollup sum")?,
        compress_i64(&col_i(|a| a.count), "rollup count")?,
        compress_f64(&col_f(|a| a.last), "rollup last")?,
        compress_f64(&col_f(|a| a.increase), "rollup increase")?,
    ];
    let mut out = vec![1];
    out.extend_from_slice(&(aggs.len() as u32).to_le_bytes());
    for s in &streams {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    }
    for s in &streams {
        out.extend_from_slice(s);
    }
    Ok(out)
}

/// Decodes a rollup blob (rows ordered by series, then bucket).
pub(crate) fn decode_rollups(blob: &[u8]) -> Result<Vec<Agg>, ChunkError> {
    let mut r = Reader::new(blob, "rollup");
    version(&mut r)?;
    let n = r.u32()? as usize;
    let mut lens = [0usize; 8];
    for l in &mut lens {
        *l = r.u32()? as usize;
    }
    let mut next = |_field: &str| -> Result<&[u8], ChunkError> {
        let l = lens[0];
        lens.rotate_left(1);
        r.take(l)
    };
    let sid: Vec<i64> = decompress(next("s")?, "rollup series")?;
    let bucket: Vec<i64> = decompress(next("b")?, "rollup buckets")?;
    let min: Vec<f64> = decompress(next("min")?, "rollup min")?;
    let max: Vec<f64> = decompress(next("max")?, "rollup max")?;
    let sum: Vec<f64> = decompress(next("sum")?, "rollup sum")?;
    let count: Vec<i64> = decompress(next("count")?, "rollup count")?;
    let last: Vec<f64> = decompress(next("last")?, "rollup last")?;
    let inc: Vec<f64> = decompress(next("inc")?, "rollup increase")?;
    for len in [
        sid.len(),
        bucket.len(),
        min.len(),
        max.len(),
        sum.len(),
        count.len(),
        last.len(),
        inc.len(),
    ] {
        if len != n {
            return Err(ChunkError::Truncated {
                what: "rollup (columns differ in length)",
                at: len,
            });
        }
    }
    Ok((0..n)
        .map(|i| Agg {
            series_id: sid[i],
            bucket_ms: bucket[i],
            min: min[i],
            max: max[i],
            sum: sum[i],
            count: count[i],
            last: last[i],
            increase: inc[i],
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_round_trips_and_skips_absent_values() {
        let p = encode_head(&[7, 9], &[(1000, &[1.5, f64::NAN]), (2000, &[2.5, 3.5])]);
        let mut out = Vec::new();
        decode_head(&p, &mut out).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(
            out[2],
            Value {
                series_id: 9,
                ts_ms: 2000,
                value: 3.5
            }
        );
        assert!(decode_head(&p[..p.len() - 1], &mut Vec::new()).is_err());
    }

    #[test]
    fn chunk_round_trips_per_series_and_shares_equal_times() {
        let mut m = BTreeMap::new();
        let ts: Vec<i64> = (0..360)
            .map(|i| 1_700_000_000_000 + i * 10_000 + (i % 7))
            .collect();
        for id in 1..=50 {
            m.insert(
                id,
                SeriesPoints {
                    ts: ts.clone(),
                    values: ts
                        .iter()
                        .map(|&t| ((t / 10_000) % 100) as f64 + id as f64 * 0.25)
                        .collect(),
                },
            );
        }
        m.insert(
            99,
            SeriesPoints {
                ts: vec![5, 6],
                values: vec![1.0, -1.0],
            },
        );
        let blob = encode_chunk(&m).unwrap();
        let view = ChunkView::parse(&blob).unwrap();
        assert_eq!(view.entries.len(), 51);
        assert_eq!(view.series(17).unwrap().unwrap(), m[&17]);
        assert_eq!(view.series(99).unwrap().unwrap(), m[&99]);
        assert!(view.series(1000).unwrap().is_none());
        assert_eq!(view.all().unwrap(), m);
        // Shared times: far less than 8 bytes per time stamp.
        let values = 50 * 360 + 2;
        assert!(
            blob.len() < values * 2,
            "{} bytes for {values} values",
            blob.len()
        );
        assert!(ChunkView::parse(&blob[..30]).is_err());
    }

    #[test]
    fn rollups_match_direct_computation_with_counter_reset() {
        // A counter rising by 10 every 60 s, reset to 0 at minute 7, then rising again.
        let ts: Vec<i64> = (0..12).map(|i| i * 60_000).collect();
        let values = vec![
            0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 5.0, 15.0, 25.0, 35.0, 45.0,
        ];
        let p = SeriesPoints { ts, values };
        let mut out = Vec::new();
        rollup(3, &p, TIER_5M_MS, &mut out);
        assert_eq!(out.len(), 3);
        // Bucket 0 (minutes 0-4): 0..40, increase 40.
        assert_eq!(
            (
                out[0].min,
                out[0].max,
                out[0].sum,
                out[0].count,
                out[0].last,
                out[0].increase
            ),
            (0.0, 40.0, 100.0, 5, 40.0, 40.0)
        );
        // Bucket 1 (minutes 5-9): 50, 60, 5 (reset: +5), 15, 25 → 10+10+5+10+10.
        assert_eq!(
            (
                out[1].min,
                out[1].max,
                out[1].count,
                out[1].last,
                out[1].increase
            ),
            (5.0, 60.0, 5, 25.0, 45.0)
        );
        assert_eq!(out[2].increase, 20.0);
        let blob = encode_rollups(&out).unwrap();
        assert_eq!(decode_rollups(&blob).unwrap(), out);
    }
}
