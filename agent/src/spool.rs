//! The agent's disk spool: every frame that carries a sequence number is written
//! here before it is sent, and leaves only when the collector acknowledges it.
//!
//! Layout of the state dir: `spool/<seq, 20 digits>.frame` (an encoded `AgentFrame`)
//! and `last_seq` (the highest sequence number ever assigned). Sequence numbers are
//! never reused, across restarts included: `last_seq` is written before a frame is
//! visible to the uplink, and on start the agent takes the larger of it and the
//! newest spooled frame. A bound on total size drops the oldest frames first.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message;
use tandem_proto::v1::{AgentFrame, agent_frame};

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

/// The on-disk queue of unacknowledged frames.
pub struct Spool {
    dir: PathBuf,
    seq_file: PathBuf,
    max_bytes: u64,
    /// seq → encoded size, of every frame on disk.
    index: BTreeMap<u64, u64>,
    total_bytes: u64,
    last_seq: u64,
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

impl Spool {
    /// Opens (creating) the spool under `state_dir`.
    pub fn open(state_dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        let dir = state_dir.join("spool");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let seq_file = state_dir.join("last_seq");
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
            let Some(seq) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".frame"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let len = entry.metadata().map_err(io(&entry.path()))?.len();
            index.insert(seq, len);
            total_bytes += len;
            last_seq = last_seq.max(seq);
        }
        Ok(Self {
            dir,
            seq_file,
            max_bytes,
            index,
            total_bytes,
            last_seq,
        })
    }

    fn path_of(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.frame"))
    }

    /// Assigns the next sequence number, lets `make` build the frame with it, and
    /// writes the frame durably. Returns the seq.
    pub fn push(&mut self, make: impl FnOnce(u64) -> AgentFrame) -> Result<u64, SpoolError> {
        let seq = self.last_seq + 1;
        write_atomic(&self.seq_file, seq.to_string().as_bytes())?;
        self.last_seq = seq;
        let bytes = make(seq).encode_to_vec();
        write_atomic(&self.path_of(seq), &bytes)?;
        self.index.insert(seq, bytes.len() as u64);
        self.total_bytes += bytes.len() as u64;
        self.enforce_bound()?;
        Ok(seq)
    }

    fn enforce_bound(&mut self) -> Result<(), SpoolError> {
        let mut dropped = 0;
        while self.total_bytes > self.max_bytes && self.index.len() > 1 {
            let Some((&seq, _)) = self.index.iter().next() else {
                break;
            };
            self.remove(seq)?;
            dropped += 1;
        }
        if dropped > 0 {
            tracing::warn!(
                dropped,
                max_bytes = self.max_bytes,
                "spool full: oldest unacknowledged data dropped"
            );
        }
        Ok(())
    }

    fn remove(&mut self, seq: u64) -> Result<(), SpoolError> {
        if let Some(len) = self.index.remove(&seq) {
            self.total_bytes -= len;
            let path = self.path_of(seq);
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

    /// Drops one frame (the collector refused it as malformed; resending cannot help).
    pub fn discard(&mut self, seq: u64) -> Result<(), SpoolError> {
        self.remove(seq)
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
        let old: Vec<u64> = self.index.keys().copied().collect();
        for seq in &old {
            let path = self.path_of(*seq);
            let bytes = fs::read(&path).map_err(io(&path))?;
            let mut frame = AgentFrame::decode(bytes.as_slice())
                .map_err(|source| SpoolError::Corrupt { path, source })?;
            self.remove(*seq)?;
            self.push(move |new_seq| {
                match frame.kind.as_mut() {
                    Some(agent_frame::Kind::Batch(b)) => b.seq = new_seq,
                    Some(agent_frame::Kind::PatchReport(r)) => r.seq = new_seq,
                    _ => {}
                }
                frame
            })?;
        }
        Ok(old.len())
    }

    /// The first spooled frame with seq > `after`.
    pub fn next_after(&self, after: u64) -> Result<Option<(u64, AgentFrame)>, SpoolError> {
        let Some((&seq, _)) = self.index.range(after + 1..).next() else {
            return Ok(None);
        };
        let path = self.path_of(seq);
        let bytes = fs::read(&path).map_err(io(&path))?;
        let frame = AgentFrame::decode(bytes.as_slice())
            .map_err(|source| SpoolError::Corrupt { path, source })?;
        Ok(Some((seq, frame)))
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_proto::v1::MetricBatch;

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
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.push(frame).unwrap(), 1);
        assert_eq!(s.push(frame).unwrap(), 2);
        s.ack(2).unwrap();
        assert!(s.is_empty());
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
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
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
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
        assert_eq!(Spool::open(dir.path(), 1 << 20).unwrap().last_seq(), 503);
    }

    #[test]
    fn unacked_frames_replay_in_order_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        for _ in 0..5 {
            s.push(frame).unwrap();
        }
        s.ack(2).unwrap();
        drop(s);
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
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
        let mut s = Spool::open(dir.path(), 10).unwrap();
        for _ in 0..10 {
            s.push(frame).unwrap();
        }
        assert!(s.total_bytes <= 10, "{}", s.total_bytes);
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
            Spool::open(dir.path(), 10).unwrap().len(),
            10 - oldest as usize + 1
        );
    }
}
