//! The agent's disk spool: every frame that carries a sequence number is written
//! here before it is sent, and leaves only when the collector acknowledges it.
//!
//! Layout of the state dir:
//! - `spool/<seq, 20 digits>.frame`: an encoded `AgentFrame` (batch or patch report);
//! - `spool/<seq>.gap`: an encoded gap record (see below);
//! - `last_seq`: the highest sequence number ever assigned;
//! - `dropped`: ranges of frames dropped by a bound and not yet reported.
//!
//! Invariants:
//! - sequence numbers are never reused once a frame carried them, and never
//!   skipped: a frame is written, then `last_seq`, before the frame is visible to
//!   the uplink, and on start the agent takes the larger of `last_seq` and the
//!   newest spooled frame;
//! - every write is atomic (temp file, fsync, rename, fsync of the directory);
//! - two bounds, size and age, drop the oldest data first; what is dropped is
//!   recorded and, once the uplink is connected, turned into gap records that travel
//!   (and are acknowledged) like any other frame, so the collector shows the hole.
//!   Gap records themselves are never dropped by a bound.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;
use tandem_proto::v1::{AgentFrame, Gap, GapReason, agent_frame};

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("spool file {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: prost::DecodeError,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The spool's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub max_bytes: u64,
    pub max_age: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    size: u64,
    /// When the frame was spooled, ms since the epoch.
    time_ms: i64,
    gap: bool,
}

/// A run of dropped frames not yet reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dropped {
    first: u64,
    last: u64,
    oldest_ms: i64,
    newest_ms: i64,
    reason: GapReason,
}

/// The on-disk queue of unacknowledged frames.
pub struct Spool {
    dir: PathBuf,
    seq_file: PathBuf,
    dropped_file: PathBuf,
    bounds: Bounds,
    /// Every frame on disk, by seq.
    index: BTreeMap<u64, Entry>,
    total_bytes: u64,
    last_seq: u64,
    /// Dropped runs not yet turned into gap records, oldest first.
    dropped: Vec<Dropped>,
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    // The rename itself must reach the disk too, or a power cut can undo it.
    if let Some(dir) = path.parent() {
        crate::platform::sync_dir(dir).map_err(io(dir))?;
    }
    Ok(())
}

fn reason_code(r: GapReason) -> i32 {
    r as i32
}

impl Spool {
    /// Opens (creating) the spool under `state_dir`.
    pub fn open(state_dir: &Path, bounds: Bounds) -> Result<Self, SpoolError> {
        let dir = state_dir.join("spool");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let seq_file = state_dir.join("last_seq");
        let dropped_file = state_dir.join("dropped");
        let mut last_seq = match fs::read_to_string(&seq_file) {
            Ok(s) => s.trim().parse().unwrap_or(0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => {
                return Err(SpoolError::Io {
                    path: seq_file,
                    source: e,
                });
            }
        };
        let mut index = BTreeMap::new();
        let mut total_bytes = 0;
        for entry in fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let (stem, gap) = if let Some(stem) = name.strip_suffix(".frame") {
                (stem, false)
            } else if let Some(stem) = name.strip_suffix(".gap") {
                (stem, true)
            } else {
                // Leftover temp files of a write interrupted by a crash.
                if name.ends_with(".tmp") {
                    let _ = fs::remove_file(entry.path());
                }
                continue;
            };
            let Ok(seq) = stem.parse::<u64>() else {
                continue;
            };
            let meta = entry.metadata().map_err(io(&entry.path()))?;
            let time_ms = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or_else(now_ms, |d| d.as_millis() as i64);
            index.insert(
                seq,
                Entry {
                    size: meta.len(),
                    time_ms,
                    gap,
                },
            );
            total_bytes += meta.len();
            last_seq = last_seq.max(seq);
        }
        let dropped = match fs::read_to_string(&dropped_file) {
            Ok(text) => parse_dropped(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(SpoolError::Io {
                    path: dropped_file,
                    source: e,
                });
            }
        };
        Ok(Self {
            dir,
            seq_file,
            dropped_file,
            bounds,
            index,
            total_bytes,
            last_seq,
            dropped,
        })
    }

    fn path_of(&self, seq: u64, gap: bool) -> PathBuf {
        let ext = if gap { "gap" } else { "frame" };
        self.dir.join(format!("{seq:020}.{ext}"))
    }

    /// Changes the bounds (config reload); applies them at once.
    pub fn set_bounds(&mut self, bounds: Bounds) -> Result<usize, SpoolError> {
        self.bounds = bounds;
        self.enforce_bounds(now_ms())
    }

    /// Assigns the next sequence number, lets `make` build the frame with it, and
    /// writes the frame durably. Returns the seq.
    pub fn push(&mut self, make: impl FnOnce(u64) -> AgentFrame) -> Result<u64, SpoolError> {
        let seq = self.write_frame(make)?;
        self.enforce_bounds(now_ms())?;
        Ok(seq)
    }

    fn write_frame(&mut self, make: impl FnOnce(u64) -> AgentFrame) -> Result<u64, SpoolError> {
        let seq = self.last_seq + 1;
        let frame = make(seq);
        let gap = matches!(frame.kind, Some(agent_frame::Kind::Gap(_)));
        let bytes = frame.encode_to_vec();
        // The frame first, then `last_seq`: a crash between the two leaves the frame,
        // and `open` takes the newest spooled seq; a crash before the frame leaves no
        // trace of `seq`, which was never sent, so it is simply assigned again.
        // (The other order left a hole: a seq recorded as used whose frame never
        // existed.)
        write_atomic(&self.path_of(seq, gap), &bytes)?;
        write_atomic(&self.seq_file, seq.to_string().as_bytes())?;
        self.last_seq = seq;
        let size = bytes.len() as u64;
        self.index.insert(
            seq,
            Entry {
                size,
                time_ms: now_ms(),
                gap,
            },
        );
        self.total_bytes += size;
        Ok(seq)
    }

    /// Drops the oldest data frames while the spool is over its size bound (the
    /// newest frame is always kept) or older than its age bound, and records what
    /// was dropped. Returns how many frames were dropped.
    pub fn enforce_bounds(&mut self, now: i64) -> Result<usize, SpoolError> {
        let max_age_ms = self.bounds.max_age.as_millis() as i64;
        let newest = self.index.keys().next_back().copied();
        let mut victims = Vec::new();
        let mut bytes = self.total_bytes;
        for (&seq, e) in &self.index {
            if e.gap {
                continue;
            }
            let too_big = bytes > self.bounds.max_bytes && Some(seq) != newest;
            let too_old = now.saturating_sub(e.time_ms) > max_age_ms;
            if !too_big && !too_old {
                break;
            }
            bytes -= e.size;
            let reason = if too_big {
                GapReason::SpoolFull
            } else {
                GapReason::TooOld
            };
            victims.push((seq, e.time_ms, reason));
        }
        for &(seq, time_ms, reason) in &victims {
            self.remove(seq)?;
            self.note_dropped(seq, time_ms, reason);
        }
        if !victims.is_empty() {
            self.save_dropped()?;
            tracing::warn!(
                dropped = victims.len(),
                max_bytes = self.bounds.max_bytes,
                max_age_secs = self.bounds.max_age.as_secs(),
                "spool bound reached: oldest unacknowledged data dropped (a gap record will report it)"
            );
        }
        Ok(victims.len())
    }

    fn note_dropped(&mut self, seq: u64, time_ms: i64, reason: GapReason) {
        if let Some(last) = self.dropped.last_mut()
            && last.last + 1 == seq
            && last.reason == reason
        {
            last.last = seq;
            last.newest_ms = last.newest_ms.max(time_ms);
            return;
        }
        self.dropped.push(Dropped {
            first: seq,
            last: seq,
            oldest_ms: time_ms,
            newest_ms: time_ms,
            reason,
        });
    }

    fn save_dropped(&self) -> Result<(), SpoolError> {
        let text: String = self
            .dropped
            .iter()
            .map(|d| {
                format!(
                    "{} {} {} {} {}\n",
                    d.first,
                    d.last,
                    d.oldest_ms,
                    d.newest_ms,
                    reason_code(d.reason)
                )
            })
            .collect();
        write_atomic(&self.dropped_file, text.as_bytes())
    }

    /// Turns every recorded drop into a gap record in the spool (called when the
    /// uplink is connected, so the records go out at once). Returns how many.
    pub fn flush_gaps(&mut self) -> Result<usize, SpoolError> {
        if self.dropped.is_empty() {
            return Ok(0);
        }
        let runs = std::mem::take(&mut self.dropped);
        for d in &runs {
            let d = *d;
            self.write_frame(move |seq| AgentFrame {
                kind: Some(agent_frame::Kind::Gap(Gap {
                    seq,
                    first_dropped_seq: d.first,
                    last_dropped_seq: d.last,
                    oldest_unix_ms: d.oldest_ms,
                    newest_unix_ms: d.newest_ms,
                    reason: d.reason as i32,
                    time_unix_ms: now_ms(),
                })),
            })?;
        }
        self.save_dropped()?;
        Ok(runs.len())
    }

    fn remove(&mut self, seq: u64) -> Result<(), SpoolError> {
        if let Some(e) = self.index.remove(&seq) {
            self.total_bytes -= e.size;
            let path = self.path_of(seq, e.gap);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(SpoolError::Io { path, source: e }),
            }
        }
        Ok(())
    }

    /// Drops every frame with seq <= `upto` (the collector has them).
    pub fn ack(&mut self, upto: u64) -> Result<(), SpoolError> {
        let done: Vec<u64> = self.index.range(..=upto).map(|(s, _)| *s).collect();
        for seq in done {
            self.remove(seq)?;
        }
        Ok(())
    }

    /// Drops one frame the collector refused as malformed (resending cannot help),
    /// and records it so a gap record reports it.
    pub fn discard(&mut self, seq: u64) -> Result<(), SpoolError> {
        if let Some(e) = self.index.get(&seq).copied() {
            self.remove(seq)?;
            if !e.gap {
                self.note_dropped(seq, e.time_ms, GapReason::Refused);
                self.save_dropped()?;
            }
        }
        Ok(())
    }

    /// Applies the collector's Welcome: it holds everything of this device up to
    /// `acked`. Normally that acknowledges spooled frames. If the collector holds
    /// *more* than this spool ever numbered, this machine's state was lost or
    /// restored from an old copy: then nothing here was acknowledged, and every
    /// spooled frame is renumbered above `acked` (oldest first) instead of dropped.
    /// Returns how many frames were renumbered.
    pub fn reconcile(&mut self, acked: u64) -> Result<usize, SpoolError> {
        if acked <= self.last_seq {
            self.ack(acked)?;
            return Ok(0);
        }
        write_atomic(&self.seq_file, acked.to_string().as_bytes())?;
        self.last_seq = acked;
        let old: Vec<(u64, Entry)> = self.index.iter().map(|(s, e)| (*s, *e)).collect();
        for (seq, e) in &old {
            let path = self.path_of(*seq, e.gap);
            let bytes = fs::read(&path).map_err(io(&path))?;
            let mut frame = AgentFrame::decode(bytes.as_slice())
                .map_err(|source| SpoolError::Corrupt { path, source })?;
            self.remove(*seq)?;
            self.write_frame(move |new_seq| {
                match frame.kind.as_mut() {
                    Some(agent_frame::Kind::Batch(b)) => b.seq = new_seq,
                    Some(agent_frame::Kind::PatchReport(r)) => r.seq = new_seq,
                    Some(agent_frame::Kind::Gap(g)) => g.seq = new_seq,
                    Some(agent_frame::Kind::Inventory(i)) => i.seq = new_seq,
                    // Never spooled: Hello and live copies are not durable frames.
                    Some(agent_frame::Kind::Hello(_) | agent_frame::Kind::Live(_)) | None => {}
                }
                frame
            })?;
        }
        Ok(old.len())
    }

    /// The first spooled frame with seq > `after`.
    pub fn next_after(&self, after: u64) -> Result<Option<(u64, AgentFrame)>, SpoolError> {
        let Some((&seq, e)) = self.index.range(after + 1..).next() else {
            return Ok(None);
        };
        self.read(seq, e.gap).map(|f| Some((seq, f)))
    }

    /// The newest spooled frame, if it is a metric batch.
    pub fn newest_batch(&self) -> Result<Option<(u64, AgentFrame)>, SpoolError> {
        let Some((&seq, e)) = self.index.iter().next_back() else {
            return Ok(None);
        };
        if e.gap {
            return Ok(None);
        }
        let frame = self.read(seq, false)?;
        Ok(matches!(frame.kind, Some(agent_frame::Kind::Batch(_))).then_some((seq, frame)))
    }

    fn read(&self, seq: u64, gap: bool) -> Result<AgentFrame, SpoolError> {
        let path = self.path_of(seq, gap);
        let bytes = fs::read(&path).map_err(io(&path))?;
        AgentFrame::decode(bytes.as_slice()).map_err(|source| SpoolError::Corrupt { path, source })
    }

    /// Frames spooled with seq in `(after, upto]`.
    pub fn count_between(&self, after: u64, upto: u64) -> usize {
        if upto <= after {
            return 0;
        }
        self.index.range(after + 1..=upto).count()
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Whether drops wait to be reported.
    pub fn has_unreported_drops(&self) -> bool {
        !self.dropped.is_empty()
    }
}

/// Parses the `dropped` file; a damaged line is skipped (it only loses a report).
fn parse_dropped(text: &str) -> Vec<Dropped> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<i64> = line
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            let [first, last, oldest_ms, newest_ms, reason] = f[..] else {
                return None;
            };
            Some(Dropped {
                first: first as u64,
                last: last as u64,
                oldest_ms,
                newest_ms,
                reason: GapReason::try_from(reason as i32).unwrap_or(GapReason::Unspecified),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_proto::v1::MetricBatch;

    fn big() -> Bounds {
        Bounds {
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(86_400),
        }
    }

    fn small() -> Bounds {
        Bounds {
            max_bytes: 10,
            max_age: Duration::from_secs(86_400),
        }
    }

    fn frame(seq: u64) -> AgentFrame {
        AgentFrame {
            kind: Some(agent_frame::Kind::Batch(MetricBatch {
                seq,
                ..Default::default()
            })),
        }
    }

    #[test]
    fn seqs_survive_reopen_and_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), big()).unwrap();
        assert_eq!(s.push(frame).unwrap(), 1);
        assert_eq!(s.push(frame).unwrap(), 2);
        s.ack(2).unwrap();
        assert!(s.is_empty());
        drop(s);
        let mut s = Spool::open(dir.path(), big()).unwrap();
        assert_eq!(
            s.push(frame).unwrap(),
            3,
            "acked seqs are not reused after restart"
        );
        assert_eq!(s.reconcile(3).unwrap(), 0);
        assert!(s.is_empty(), "a normal welcome acknowledges");
    }

    #[test]
    fn lost_state_renumbers_instead_of_dropping() {
        // The collector holds seq 500 of this device, but the state dir is new:
        // the two frames spooled before connecting were never acknowledged.
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), big()).unwrap();
        s.push(frame).unwrap();
        s.push(frame).unwrap();
        assert_eq!(s.reconcile(500).unwrap(), 2);
        assert_eq!(s.len(), 2, "nothing dropped");
        let (seq, f) = s.next_after(500).unwrap().unwrap();
        assert_eq!(seq, 501);
        assert!(
            matches!(f.kind, Some(agent_frame::Kind::Batch(b)) if b.seq == 501),
            "the frame carries its new seq"
        );
        assert_eq!(s.push(frame).unwrap(), 503);
        drop(s);
        assert_eq!(Spool::open(dir.path(), big()).unwrap().last_seq(), 503);
    }

    #[test]
    fn renumbering_rewrites_the_seq_inside_every_frame_kind() {
        use tandem_proto::v1::{Inventory, PatchReport};
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), big()).unwrap();
        s.push(|seq| AgentFrame {
            kind: Some(agent_frame::Kind::PatchReport(PatchReport {
                seq,
                ..Default::default()
            })),
        })
        .unwrap();
        s.push(|seq| AgentFrame {
            kind: Some(agent_frame::Kind::Inventory(Inventory {
                seq,
                ..Default::default()
            })),
        })
        .unwrap();
        assert_eq!(s.reconcile(40).unwrap(), 2);
        let (seq, f) = s.next_after(40).unwrap().unwrap();
        assert!(matches!(f.kind, Some(agent_frame::Kind::PatchReport(r)) if r.seq == seq));
        let (seq, f) = s.next_after(seq).unwrap().unwrap();
        assert_eq!(seq, 42);
        assert!(
            matches!(f.kind, Some(agent_frame::Kind::Inventory(i)) if i.seq == 42),
            "the inventory carries its new seq"
        );
    }

    #[test]
    fn unacked_frames_replay_in_order_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), big()).unwrap();
        for _ in 0..5 {
            s.push(frame).unwrap();
        }
        s.ack(2).unwrap();
        drop(s);
        let s = Spool::open(dir.path(), big()).unwrap();
        assert_eq!(s.len(), 3);
        let (seq, f) = s.next_after(0).unwrap().unwrap();
        assert_eq!(seq, 3);
        assert!(matches!(f.kind, Some(agent_frame::Kind::Batch(b)) if b.seq == 3));
        assert_eq!(s.next_after(4).unwrap().unwrap().0, 5);
        assert!(s.next_after(5).unwrap().is_none());
        assert_eq!(s.count_between(2, 4), 2);
    }

    #[test]
    fn bound_drops_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), small()).unwrap();
        for _ in 0..10 {
            s.push(frame).unwrap();
        }
        assert!(s.total_bytes() <= 10 || s.len() == 1, "{}", s.total_bytes());
        assert!(s.len() < 10, "something was dropped");
        assert_eq!(
            s.next_after(9).unwrap().unwrap().0,
            10,
            "the newest frame is kept"
        );
        let oldest = s.next_after(0).unwrap().unwrap().0;
        assert_eq!(
            s.count_between(oldest - 1, 10),
            s.len(),
            "what is kept is the newest run"
        );
        drop(s);
        assert_eq!(
            Spool::open(dir.path(), small()).unwrap().len(),
            10 - oldest as usize + 1
        );
    }

    fn gaps(s: &Spool) -> Vec<Gap> {
        let mut out = Vec::new();
        let mut after = 0;
        while let Some((seq, f)) = s.next_after(after).unwrap() {
            if let Some(agent_frame::Kind::Gap(g)) = f.kind {
                out.push(g);
            }
            after = seq;
        }
        out
    }

    #[test]
    fn drops_are_reported_as_one_gap_record_per_run_and_survive_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), small()).unwrap();
        for _ in 0..6 {
            s.push(frame).unwrap();
        }
        assert!(s.has_unreported_drops());
        drop(s);
        // The record of what was dropped survives a restart.
        let mut s = Spool::open(dir.path(), small()).unwrap();
        assert_eq!(s.flush_gaps().unwrap(), 1);
        assert!(!s.has_unreported_drops());
        let g = gaps(&s);
        assert_eq!(g.len(), 1);
        let kept = s.next_after(0).unwrap().unwrap().0;
        assert_eq!(
            (g[0].first_dropped_seq, g[0].last_dropped_seq),
            (1, kept - 1),
            "every dropped seq, nothing else"
        );
        assert_eq!(g[0].reason, GapReason::SpoolFull as i32);
        assert!(g[0].seq > 6, "the gap record has a seq of its own");
        // Gap records are never dropped by the bound.
        for _ in 0..5 {
            s.push(frame).unwrap();
        }
        assert_eq!(gaps(&s).len(), 1);
        drop(s);
        assert_eq!(
            gaps(&Spool::open(dir.path(), small()).unwrap()).len(),
            1,
            "the .gap file is found on reopen"
        );
    }

    #[test]
    fn the_age_bound_drops_old_frames() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), big()).unwrap();
        s.push(frame).unwrap();
        s.push(frame).unwrap();
        // Two hours later with a one-hour bound, both are too old.
        let later = now_ms() + 2 * 3_600_000;
        s.bounds.max_age = Duration::from_secs(3600);
        assert_eq!(s.enforce_bounds(later).unwrap(), 2);
        s.flush_gaps().unwrap();
        let g = gaps(&s);
        assert_eq!(
            (g[0].first_dropped_seq, g[0].last_dropped_seq, g[0].reason),
            (1, 2, GapReason::TooOld as i32)
        );
    }

    #[test]
    fn a_refused_frame_is_reported_too() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), big()).unwrap();
        s.push(frame).unwrap();
        s.push(frame).unwrap();
        s.discard(1).unwrap();
        s.flush_gaps().unwrap();
        let g = gaps(&s);
        assert_eq!(
            (g[0].first_dropped_seq, g[0].last_dropped_seq, g[0].reason),
            (1, 1, GapReason::Refused as i32)
        );
    }
}
