//! The agent's disk spool: every frame that carries a sequence number is written
//! here before it is sent, and leaves only when the collector acknowledges it.
//!
//! Layout of the state dir:
//! - `spool/<seq, 20 digits>.frame`: an encoded `AgentFrame` (batch or patch report)
//!   behind a header with a CRC-32 of it (see [`encode_file`]);
//! - `spool/<seq>.gap`: an encoded gap record (see below), same format;
//! - `spool-corrupt/`: frames that failed their checksum or could not be decoded,
//!   moved aside (reported as `corrupt` gaps, kept for a post-mortem);
//! - `last_seq`: the highest sequence number ever assigned;
//! - `dropped`: ranges of frames dropped by a bound and not yet reported; it is the
//!   intent log of every deletion that is not an acknowledgement;
//! - `spool-reserve`: 64 KiB of zeros, given up when the disk is full so the record
//!   of a lost sample can still be written.
//!
//! Invariants:
//! - sequence numbers are never reused once a frame carried them, and never
//!   skipped: a frame is written, then `last_seq`, before the frame is visible to
//!   the uplink, and on start the agent takes the largest of `last_seq`, the
//!   newest spooled frame and the newest dropped seq;
//! - every write is atomic (temp file, fsync, rename, fsync of the directory);
//! - every seq ends acknowledged by the collector or inside a gap record: nothing
//!   leaves the spool except by an ack unless the `dropped` file recording it is
//!   durable first (a crash between the two is finished on the next open, which
//!   deletes what `dropped` names), and a sample that cannot be written at all
//!   (disk full) still uses its seq, recorded as dropped with reason `agent_disk`;
//! - two bounds, size and age, drop the oldest data first; what is dropped is
//!   recorded and, once the uplink is connected, turned into gap records that travel
//!   (and are acknowledged) like any other frame, so the collector shows the hole.
//!   Gap records themselves are never dropped by a bound;
//! - a frame whose checksum fails is never sent: it is moved aside and reported.
//!
//! docs/ARCHITECTURE.md ("How a seq ends") lists every path.

use std::collections::BTreeMap;
use std::fs;
#[cfg(test)]
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

#[cfg(test)]
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
    #[error("spool file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// The disk (or the quota) is full: a state that delivery can clear, unlike a
/// failing disk.
fn out_of_room(err: &SpoolError) -> bool {
    matches!(err, SpoolError::Io { source, .. }
        if matches!(source.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

use tandem_proto::util::now_ms;

mod bounds;
mod file;
mod renumber;

use file::write_atomic;
pub(crate) use file::{decode_file, encode_file};

/// Size of the reserve file (see the module docs): room for many loss records.
const RESERVE_BYTES: usize = 64 * 1024;

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
    corrupt_dir: PathBuf,
    reserve_file: PathBuf,
    seq_file: PathBuf,
    dropped_file: PathBuf,
    bounds: Bounds,
    /// Every frame on disk, by seq.
    index: BTreeMap<u64, Entry>,
    total_bytes: u64,
    last_seq: u64,
    /// Dropped runs not yet turned into gap records, oldest first.
    dropped: Vec<Dropped>,
    /// Whether `dropped` holds runs not yet on disk (the disk was full).
    dropped_dirty: bool,
    /// Whether the failure to save them was logged (once per episode).
    loss_unsaved_logged: bool,
    /// "No room for a gap record yet" was logged in this episode.
    gap_unsaved_logged: bool,
    /// Test hook: the step at which to "crash" (return an error, do nothing more).
    #[cfg(test)]
    crash_at: Option<&'static str>,
}

fn reason_code(r: GapReason) -> i32 {
    r as i32
}

fn seq_of(frame: &mut AgentFrame) -> Option<&mut u64> {
    match frame.kind.as_mut()? {
        agent_frame::Kind::Batch(b) => Some(&mut b.seq),
        agent_frame::Kind::PatchReport(r) => Some(&mut r.seq),
        agent_frame::Kind::Gap(g) => Some(&mut g.seq),
        agent_frame::Kind::Inventory(i) => Some(&mut i.seq),
        agent_frame::Kind::PostureReport(r) => Some(&mut r.seq),
        // Never spooled: Hello and live copies are not durable frames.
        agent_frame::Kind::Hello(_) | agent_frame::Kind::Live(_) => None,
    }
}

impl Spool {
    /// Opens (creating) the spool under `state_dir`, and finishes what a crash
    /// interrupted: deletions recorded in `dropped` but not done, gap records
    /// written but still listed as unreported.
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
        // A seq recorded as dropped was assigned, even if no frame of it exists
        // (a sample lost to a full disk).
        last_seq = last_seq.max(dropped.iter().map(|d| d.last).max().unwrap_or(0));
        let mut spool = Self {
            dir,
            corrupt_dir: state_dir.join("spool-corrupt"),
            reserve_file: state_dir.join("spool-reserve"),
            seq_file,
            dropped_file,
            bounds,
            index,
            total_bytes,
            last_seq,
            dropped,
            dropped_dirty: false,
            loss_unsaved_logged: false,
            gap_unsaved_logged: false,
            #[cfg(test)]
            crash_at: None,
        };
        spool.recover()?;
        spool.ensure_reserve();
        Ok(spool)
    }

    /// Finishes interrupted steps (see [`Spool::open`]).
    fn recover(&mut self) -> Result<(), SpoolError> {
        self.resume_renumbering()?;
        // 1. Deletions recorded but not done.
        let doomed: Vec<(u64, GapReason)> = self
            .index
            .keys()
            .filter_map(|&seq| {
                self.dropped
                    .iter()
                    .find(|d| (d.first..=d.last).contains(&seq))
                    .map(|d| (seq, d.reason))
            })
            .collect();
        for (seq, reason) in doomed {
            if reason == GapReason::Corrupt {
                self.move_aside(seq);
            } else {
                self.remove(seq)?;
            }
        }
        // 2. Gap records written whose runs are still listed as unreported.
        let gaps: Vec<u64> = self
            .index
            .iter()
            .filter(|(_, e)| e.gap)
            .map(|(s, _)| *s)
            .collect();
        let before = self.dropped.len();
        for seq in gaps {
            // A damaged gap record is handled when it is about to be sent.
            if let Ok(AgentFrame {
                kind: Some(agent_frame::Kind::Gap(g)),
            }) = self.read(seq, true)
            {
                self.dropped
                    .retain(|d| (d.first, d.last) != (g.first_dropped_seq, g.last_dropped_seq));
            }
        }
        if self.dropped.len() != before {
            self.save_dropped()?;
        }
        Ok(())
    }

    /// Keeps the reserve file in place (best effort: a full disk has no room).
    fn ensure_reserve(&mut self) {
        if self.reserve_file.exists() {
            return;
        }
        if write_atomic(&self.reserve_file, &[0u8; RESERVE_BYTES]).is_err() {
            let _ = fs::remove_file(self.reserve_file.with_extension("tmp"));
        }
    }

    #[cfg(test)]
    fn step(&self, name: &'static str) -> Result<(), SpoolError> {
        if self.crash_at == Some(name) {
            return Err(SpoolError::Io {
                path: PathBuf::from(name),
                source: std::io::Error::other("simulated crash"),
            });
        }
        Ok(())
    }

    #[cfg(not(test))]
    #[inline(always)]
    fn step(&self, _name: &'static str) -> Result<(), SpoolError> {
        Ok(())
    }

    fn path_of(&self, seq: u64, gap: bool) -> PathBuf {
        let ext = if gap { "gap" } else { "frame" };
        self.dir.join(format!("{seq:020}.{ext}"))
    }

    /// Changes the bounds (config reload); applies them at once.
    pub(crate) fn set_bounds(&mut self, bounds: Bounds) -> Result<usize, SpoolError> {
        self.bounds = bounds;
        self.enforce_bounds(now_ms())
    }

    /// Assigns the next sequence number, lets `make` build the frame with it, and
    /// writes the frame durably. Returns the seq.
    ///
    /// When the frame cannot be written (a full or failing disk), its seq is used
    /// anyway and recorded as dropped (`agent_disk`), so a gap record reports the
    /// loss; the error is returned for the caller to log.
    pub fn push(&mut self, make: impl FnOnce(u64) -> AgentFrame) -> Result<u64, SpoolError> {
        let seq = self.last_seq + 1;
        match self.write_frame(make) {
            Ok(seq) => {
                self.enforce_bounds(now_ms())?;
                self.save_dirty_dropped();
                self.ensure_reserve();
                Ok(seq)
            }
            Err(err) => {
                // The frame may exist without `last_seq` (the second write failed):
                // it is recorded as lost, so it must not be sent either.
                let _ = fs::remove_file(self.path_of(seq, false));
                let _ = fs::remove_file(self.path_of(seq, true));
                self.last_seq = self.last_seq.max(seq);
                self.note_dropped(seq, now_ms(), GapReason::AgentDisk);
                self.dropped_dirty = true;
                self.save_dirty_dropped();
                Err(err)
            }
        }
    }

    /// Writes `dropped` if it holds runs not yet on disk; on failure gives up the
    /// reserve file and tries once more. Best effort: what cannot be written stays
    /// in memory and is written (and reported) as soon as the disk allows.
    fn save_dirty_dropped(&mut self) {
        if !self.dropped_dirty {
            return;
        }
        let mut saved = self.save_dropped();
        if saved.is_err() && fs::remove_file(&self.reserve_file).is_ok() {
            saved = self.save_dropped();
        }
        match saved {
            Ok(()) => {
                if self.loss_unsaved_logged {
                    tracing::info!("lost samples recorded on disk; a gap record will report them");
                }
                self.dropped_dirty = false;
                self.loss_unsaved_logged = false;
            }
            // Once per episode, not once per sample.
            Err(err) if !self.loss_unsaved_logged => {
                self.loss_unsaved_logged = true;
                tracing::error!(error = %err, "cannot record lost samples on disk yet; kept in memory until the disk has room")
            }
            Err(_) => {}
        }
    }

    fn write_frame(&mut self, make: impl FnOnce(u64) -> AgentFrame) -> Result<u64, SpoolError> {
        let seq = self.last_seq + 1;
        let frame = make(seq);
        let gap = matches!(frame.kind, Some(agent_frame::Kind::Gap(_)));
        let bytes = encode_file(&frame);
        // The frame first, then `last_seq`: a crash between the two leaves the frame,
        // and `open` takes the newest spooled seq; a crash before the frame leaves no
        // trace of `seq`, which was never sent, so it is simply assigned again.
        // (The other order left a hole: a seq recorded as used whose frame never
        // existed.)
        write_atomic(&self.path_of(seq, gap), &bytes)?;
        self.step("push:frame-written")?;
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

    /// Moves a spooled file into `spool-corrupt/` (deletes it if that fails).
    fn move_aside(&mut self, seq: u64) {
        let Some(e) = self.index.remove(&seq) else {
            return;
        };
        self.total_bytes -= e.size;
        let path = self.path_of(seq, e.gap);
        let moved = fs::create_dir_all(&self.corrupt_dir).and_then(|()| {
            let name = path.file_name().unwrap_or_default();
            fs::rename(&path, self.corrupt_dir.join(name))
        });
        if moved.is_err() {
            let _ = fs::remove_file(&path);
        }
    }

    /// Takes a corrupt spooled file out of the queue: records it as dropped
    /// (`corrupt`) first, then moves it aside.
    fn quarantine(&mut self, seq: u64, reason: &str) -> Result<(), SpoolError> {
        let Some(e) = self.index.get(&seq).copied() else {
            return Ok(());
        };
        tracing::error!(
            seq,
            file = %self.path_of(seq, e.gap).display(),
            reason,
            moved_to = %self.corrupt_dir.display(),
            "spooled frame is corrupt: moved aside and reported as a gap"
        );
        self.note_dropped(seq, e.time_ms, GapReason::Corrupt);
        self.save_dropped()?;
        self.step("corrupt:recorded")?;
        self.move_aside(seq);
        Ok(())
    }

    /// Drops every frame with seq <= `upto` (the collector has them).
    pub(crate) fn ack(&mut self, upto: u64) -> Result<(), SpoolError> {
        let done: Vec<u64> = self.index.range(..=upto).map(|(s, _)| *s).collect();
        for seq in done {
            self.remove(seq)?;
        }
        Ok(())
    }

    /// Drops one frame the collector refused (resending cannot help), and records
    /// it so a gap record reports it. A refused gap record reports its own seq as
    /// refused and the range it carried again, in a new record.
    pub(crate) fn discard(&mut self, seq: u64) -> Result<(), SpoolError> {
        let Some(e) = self.index.get(&seq).copied() else {
            return Ok(());
        };
        if e.gap
            && let Ok(AgentFrame {
                kind: Some(agent_frame::Kind::Gap(g)),
            }) = self.read(seq, true)
            && let Ok(reason) = GapReason::try_from(g.reason)
        {
            self.note_run(Dropped {
                first: g.first_dropped_seq,
                last: g.last_dropped_seq,
                oldest_ms: g.oldest_unix_ms,
                newest_ms: g.newest_unix_ms,
                reason,
            });
        }
        self.note_dropped(seq, e.time_ms, GapReason::Refused);
        self.save_dropped()?;
        self.step("discard:recorded")?;
        self.remove(seq)
    }

    /// The first readable spooled frame with seq > `after`. A corrupt one on the
    /// way is moved aside and recorded as dropped (reason `corrupt`).
    pub(crate) fn next_after(
        &mut self,
        after: u64,
    ) -> Result<Option<(u64, AgentFrame)>, SpoolError> {
        loop {
            let Some((&seq, e)) = self.index.range(after + 1..).next() else {
                return Ok(None);
            };
            let gap = e.gap;
            match self.read(seq, gap) {
                Ok(f) => return Ok(Some((seq, f))),
                Err(SpoolError::Corrupt { reason, .. }) => self.quarantine(seq, &reason)?,
                Err(err) => return Err(err),
            }
        }
    }

    /// The newest spooled frame, if it is a readable metric batch.
    pub(crate) fn newest_batch(&self) -> Result<Option<(u64, AgentFrame)>, SpoolError> {
        let Some((&seq, e)) = self.index.iter().next_back() else {
            return Ok(None);
        };
        if e.gap {
            return Ok(None);
        }
        let frame = match self.read(seq, false) {
            Ok(f) => f,
            // Handled by `next_after` when its turn comes.
            Err(SpoolError::Corrupt { .. }) => return Ok(None),
            Err(err) => return Err(err),
        };
        Ok(matches!(frame.kind, Some(agent_frame::Kind::Batch(_))).then_some((seq, frame)))
    }

    fn read(&self, seq: u64, gap: bool) -> Result<AgentFrame, SpoolError> {
        let path = self.path_of(seq, gap);
        let bytes = fs::read(&path).map_err(io(&path))?;
        let mut frame = decode_file(&bytes).map_err(|e| SpoolError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        // A file whose frame carries another seq than its name (a stray copy) is
        // as wrong as a garbled one.
        match seq_of(&mut frame) {
            Some(s) if *s == seq => {}
            Some(s) => {
                return Err(SpoolError::Corrupt {
                    path,
                    reason: format!("holds seq {s}, not {seq}"),
                });
            }
            None => {
                return Err(SpoolError::Corrupt {
                    path,
                    reason: "holds a frame kind that is never spooled".to_owned(),
                });
            }
        }
        Ok(frame)
    }

    /// Frames spooled with seq in `(after, upto]`.
    pub(crate) fn count_between(&self, after: u64, upto: u64) -> usize {
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

    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Bytes on disk (for the bound tests; the spool keeps the sum itself).
    #[cfg(test)]
    fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Whether drops wait to be reported (the tests' view of the `dropped` file).
    #[cfg(test)]
    fn has_unreported_drops(&self) -> bool {
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
        let mut s = Spool::open(dir.path(), big()).unwrap();
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
        for (&seq, e) in &s.index {
            if let Some(agent_frame::Kind::Gap(g)) = s.read(seq, e.gap).unwrap().kind {
                out.push(g);
            }
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

    /// Every seq 1..=last_seq is acknowledged (<= `acked`), still spooled (it will
    /// be delivered), or inside a spooled gap record; no range is reported twice.
    /// Flushes unreported drops first, as the uplink does on connect.
    fn assert_every_seq_accounted(s: &mut Spool, acked: u64, at: &str) {
        s.flush_gaps().unwrap();
        let mut covered = std::collections::BTreeSet::new();
        let mut ranges = Vec::new();
        let mut after = 0;
        while let Some((seq, f)) = s.next_after(after).unwrap() {
            covered.insert(seq);
            if let Some(agent_frame::Kind::Gap(g)) = f.kind {
                ranges.push((g.first_dropped_seq, g.last_dropped_seq));
                covered.extend(g.first_dropped_seq..=g.last_dropped_seq);
            }
            after = seq;
        }
        let missing: Vec<u64> = (acked + 1..=s.last_seq())
            .filter(|q| !covered.contains(q))
            .collect();
        assert!(
            missing.is_empty(),
            "crash at {at}: seqs {missing:?} are neither delivered, spooled nor in a gap (gaps {ranges:?})"
        );
        let mut sorted = ranges.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            ranges.len(),
            "crash at {at}: a range reported twice: {ranges:?}"
        );
    }

    fn crashing(dir: &Path, bounds: Bounds, at: &'static str) -> Spool {
        let mut s = Spool::open(dir, bounds).unwrap();
        s.crash_at = Some(at);
        s
    }

    fn is_crash(r: Result<impl std::fmt::Debug, SpoolError>) -> bool {
        matches!(&r, Err(SpoolError::Io { source, .. }) if source.to_string() == "simulated crash")
    }

    /// Kills the spool (an error that stops everything, then a reopen) at each step
    /// of the bound, refusal, corrupt-frame, gap-flush, renumbering and push paths,
    /// then accounts for every seq. Before issue 16 a crash right after a bound
    /// deleted frames lost their seqs without a trace.
    #[test]
    fn a_crash_at_any_step_leaves_every_seq_stored_or_in_a_gap() {
        // The size bound drops frames.
        for at in ["bound:recorded", "bound:removed-one"] {
            let dir = tempfile::tempdir().unwrap();
            let mut s = crashing(dir.path(), small(), at);
            let mut crashed = false;
            for _ in 0..6 {
                if is_crash(s.push(frame)) {
                    crashed = true;
                    break;
                }
            }
            assert!(crashed, "{at} reached");
            drop(s);
            let mut s = Spool::open(dir.path(), small()).unwrap();
            assert_every_seq_accounted(&mut s, 0, at);
        }
        // The collector refuses a frame, and then the gap record that reports drops.
        {
            let at = "discard:recorded";
            let dir = tempfile::tempdir().unwrap();
            let mut s = crashing(dir.path(), big(), at);
            for _ in 0..3 {
                s.push(frame).unwrap();
            }
            assert!(is_crash(s.discard(2)));
            drop(s);
            let mut s = Spool::open(dir.path(), big()).unwrap();
            assert_every_seq_accounted(&mut s, 0, at);
            let gap_seq = s.last_seq();
            s.crash_at = Some(at);
            assert!(is_crash(s.discard(gap_seq)), "the gap record is refused");
            drop(s);
            let mut s = Spool::open(dir.path(), big()).unwrap();
            assert_every_seq_accounted(&mut s, 0, "discard of a gap record");
        }
        // Gap records are written, the run not yet cleared.
        {
            let at = "flush:gap-written";
            let dir = tempfile::tempdir().unwrap();
            let mut s = Spool::open(dir.path(), big()).unwrap();
            for _ in 0..4 {
                s.push(frame).unwrap();
            }
            s.discard(1).unwrap();
            s.discard(3).unwrap();
            s.crash_at = Some(at);
            assert!(is_crash(s.flush_gaps()));
            drop(s);
            let mut s = Spool::open(dir.path(), big()).unwrap();
            assert_every_seq_accounted(&mut s, 0, at);
        }
        // A corrupt frame is being moved aside.
        {
            let at = "corrupt:recorded";
            let dir = tempfile::tempdir().unwrap();
            let mut s = crashing(dir.path(), big(), at);
            for _ in 0..3 {
                s.push(frame).unwrap();
            }
            std::fs::write(s.path_of(2, false), b"TSP1garbage").unwrap();
            assert_eq!(s.next_after(0).unwrap().unwrap().0, 1);
            assert!(is_crash(s.next_after(1)));
            drop(s);
            let mut s = Spool::open(dir.path(), big()).unwrap();
            assert_every_seq_accounted(&mut s, 0, at);
        }
        // Renumbering after lost state: the new copy is written, the old not yet gone.
        {
            let at = "reconcile:written";
            let dir = tempfile::tempdir().unwrap();
            let mut s = crashing(dir.path(), big(), at);
            s.push(frame).unwrap();
            s.push(frame).unwrap();
            assert!(is_crash(s.reconcile(500)));
            drop(s);
            let mut s = Spool::open(dir.path(), big()).unwrap();
            s.reconcile(500).unwrap();
            assert_eq!(s.len(), 2, "both frames, once each");
            assert_every_seq_accounted(&mut s, 500, at);
        }
        // A frame written, `last_seq` not yet.
        {
            let at = "push:frame-written";
            let dir = tempfile::tempdir().unwrap();
            let mut s = crashing(dir.path(), big(), at);
            s.push(frame).unwrap_err();
            drop(s);
            let mut s = Spool::open(dir.path(), big()).unwrap();
            assert!(s.last_seq() >= 1);
            assert_every_seq_accounted(&mut s, 0, at);
        }
    }

    /// A truncated file, a garbled one and one flipped value bit: each is moved
    /// aside and reported as a `corrupt` gap, and everything behind it is still
    /// delivered. Before issue 16 the first blocked every later upload and the bit
    /// flip was delivered.
    #[test]
    fn corrupt_frames_are_moved_aside_reported_and_do_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), big()).unwrap();
        for _ in 0..5 {
            s.push(|seq| AgentFrame {
                kind: Some(agent_frame::Kind::Batch(MetricBatch {
                    seq,
                    series: vec![tandem_proto::v1::SeriesKey {
                        name: "cpu.usage.percent".into(),
                        dimension: String::new(),
                    }],
                    samples: vec![tandem_proto::v1::Sample {
                        time_unix_ms: 1_700_000_000_000,
                        values: vec![42.0],
                    }],
                })),
            })
            .unwrap();
        }
        let p2 = s.path_of(2, false);
        let bytes = std::fs::read(&p2).unwrap();
        std::fs::write(&p2, &bytes[..bytes.len() / 2]).unwrap();
        std::fs::write(s.path_of(3, false), b"\xff\xff\xff not a frame").unwrap();
        // Flip one bit of the value 42.0 (the last byte of the f64 is its sign and
        // exponent; the low mantissa byte is 8 bytes from the end).
        let p4 = s.path_of(4, false);
        let mut bytes = std::fs::read(&p4).unwrap();
        let n = bytes.len();
        bytes[n - 8] ^= 0x01;
        std::fs::write(&p4, &bytes).unwrap();
        drop(s);
        let mut s = Spool::open(dir.path(), big()).unwrap();
        let mut delivered = Vec::new();
        let mut after = 0;
        while let Some((seq, _)) = s.next_after(after).unwrap() {
            delivered.push(seq);
            after = seq;
        }
        assert_eq!(
            delivered,
            vec![1, 5],
            "the corrupt frames are skipped, not sent"
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("spool-corrupt"))
                .unwrap()
                .count(),
            3,
            "kept aside for a post-mortem"
        );
        assert_eq!(s.flush_gaps().unwrap(), 1);
        let g = gaps(&s);
        assert_eq!(
            (g[0].first_dropped_seq, g[0].last_dropped_seq, g[0].reason),
            (2, 4, GapReason::Corrupt as i32)
        );
        // Spool files of earlier agents (bare protobuf, no checksum) are still read.
        let legacy = frame(s.last_seq() + 1);
        std::fs::write(s.path_of(s.last_seq() + 1, false), legacy.encode_to_vec()).unwrap();
        drop(s);
        let mut s = Spool::open(dir.path(), big()).unwrap();
        let last = s.last_seq();
        assert_eq!(s.next_after(last - 1).unwrap().unwrap().0, last);
    }

    /// Mounts a tmpfs of `size` at `path` (the agent's state dir on a real full
    /// disk); unmounts on drop. None when mounting is not possible (not root).
    struct Tmpfs(PathBuf);
    impl Tmpfs {
        fn mount(path: &Path, size: &str) -> Option<Self> {
            let ok = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(path)
                .status()
                .is_ok_and(|s| s.success());
            ok.then(|| Self(path.to_owned()))
        }
    }
    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }

    /// With the state dir's disk full, a sample that cannot be spooled still uses
    /// its seq and is reported as an `agent_disk` gap, durably (it survives a
    /// restart while the disk is still full). Before issue 16 no seq was used and
    /// no gap reported.
    #[test]
    fn a_full_disk_loses_samples_visibly() {
        let dir = tempfile::tempdir().unwrap();
        let Some(_fs) = Tmpfs::mount(dir.path(), "256k") else {
            panic!("SKIPPED is not an option: cannot mount a tmpfs (run the tests as root)");
        };
        let mut s = Spool::open(dir.path(), big()).unwrap();
        assert!(dir.path().join("spool-reserve").exists());
        let fill = dir.path().join("filler");
        let mut f = fs::File::create(&fill).unwrap();
        let chunk = vec![7u8; 4096];
        while f.write_all(&chunk).and_then(|()| f.sync_all()).is_ok() {}
        drop(f);
        let mut lost = 0;
        let mut stored = 0;
        for _ in 0..20 {
            match s.push(|seq| AgentFrame {
                kind: Some(agent_frame::Kind::Batch(MetricBatch {
                    seq,
                    series: vec![tandem_proto::v1::SeriesKey {
                        name: "x".repeat(2000),
                        dimension: String::new(),
                    }],
                    ..Default::default()
                })),
            }) {
                Ok(_) => stored += 1,
                Err(_) => lost += 1,
            }
        }
        assert!(lost > 0, "the disk is full (stored {stored})");
        assert_eq!(s.last_seq(), 20, "every sample used a seq");
        drop(s);
        // Killed while the disk is still full: the record of the loss is on disk.
        let mut s = Spool::open(dir.path(), big()).unwrap();
        assert_eq!(s.last_seq(), 20);
        fs::remove_file(&fill).unwrap();
        assert_every_seq_accounted(&mut s, 0, "full disk");
        let g = gaps(&s);
        assert!(
            g.iter().any(|g| g.reason == GapReason::AgentDisk as i32),
            "{g:?}"
        );
    }

    /// The collector comes back while the state dir's disk is still full and the
    /// reserve is spent: there is no room for the gap record, and that must not
    /// stop delivery (in CI it did: every connection ended at the failed record
    /// before a frame was sent, so no ack ever freed space). `flush_gaps` defers
    /// the record; once acks free space it is written and every seq is accounted.
    #[test]
    fn no_room_for_a_gap_record_defers_it_until_delivery_frees_space() {
        let dir = tempfile::tempdir().unwrap();
        let Some(_fs) = Tmpfs::mount(dir.path(), "256k") else {
            panic!("SKIPPED is not an option: cannot mount a tmpfs (run the tests as root)");
        };
        let mut s = Spool::open(dir.path(), big()).unwrap();
        for _ in 0..4 {
            s.push(frame).unwrap();
        }
        let stored = s.last_seq();
        let fill = |name: &str| {
            let mut f = fs::File::create(dir.path().join(name)).unwrap();
            let chunk = vec![7u8; 1024];
            while f.write_all(&chunk).and_then(|()| f.sync_all()).is_ok() {}
        };
        fill("filler");
        let mut lost = 0;
        for _ in 0..6 {
            if s.push(frame).is_err() {
                lost += 1;
            }
        }
        assert!(lost > 0, "the disk is full");
        // Spend the reserve too, and fill what it freed.
        let _ = fs::remove_file(dir.path().join("spool-reserve"));
        fill("filler2");
        let flushed = s
            .flush_gaps()
            .expect("a full disk defers the record, not an error");
        assert_eq!(flushed, 0, "no room: nothing written");
        assert!(!s.dropped.is_empty(), "the loss is still held");
        // Delivery: the collector acknowledges the frames spooled before the disk
        // filled, which frees their pages.
        s.ack(stored).unwrap();
        assert!(s.flush_gaps().unwrap() >= 1, "the record is written now");
        assert_every_seq_accounted(&mut s, stored, "after the acks");
        assert!(
            gaps(&s)
                .iter()
                .any(|g| g.reason == GapReason::AgentDisk as i32),
            "an agent_disk gap"
        );
    }
}
