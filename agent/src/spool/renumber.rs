//! Reconciling the spool with what the collector has: acknowledging what it
//! stored, or, when the collector was restored from an old copy, renumbering
//! every spooled frame above its high-water mark (crash-safe, resumed on open).

use super::*;

impl Spool {
    /// Applies the collector's Welcome: it holds everything of this device up to
    /// `acked`. Normally that acknowledges spooled frames. If the collector holds
    /// *more* than this spool ever numbered, this machine's state was lost or
    /// restored from an old copy: then nothing here was acknowledged, and every
    /// spooled frame is renumbered above `acked` (oldest first) instead of dropped.
    /// Returns how many frames were renumbered.
    pub(crate) fn reconcile(&mut self, acked: u64) -> Result<usize, SpoolError> {
        if acked <= self.last_seq {
            self.ack(acked)?;
            return Ok(0);
        }
        // The marker makes a crash in the middle resumable: see `resume_renumbering`.
        write_atomic(&self.renumber_file(), acked.to_string().as_bytes())?;
        write_atomic(&self.seq_file, acked.to_string().as_bytes())?;
        self.last_seq = acked;
        let old: Vec<u64> = self.index.keys().copied().collect();
        self.renumber(&old)
    }

    pub(super) fn renumber_file(&self) -> PathBuf {
        self.seq_file.with_file_name("renumbering")
    }

    /// Renumbers `old` (oldest first) above `last_seq`, then removes the marker.
    /// Each new copy is written before its old file goes.
    pub(super) fn renumber(&mut self, old: &[u64]) -> Result<usize, SpoolError> {
        let mut renumbered = 0;
        for &seq in old {
            let Some(e) = self.index.get(&seq).copied() else {
                continue;
            };
            let mut frame = match self.read(seq, e.gap) {
                Ok(f) => f,
                Err(SpoolError::Corrupt { reason, .. }) => {
                    // It takes a new seq like the others, reported as corrupt.
                    tracing::error!(
                        seq,
                        reason,
                        "spooled frame is corrupt: moved aside and reported as a gap"
                    );
                    let new_seq = self.last_seq + 1;
                    self.note_dropped(new_seq, e.time_ms, GapReason::Corrupt);
                    self.save_dropped()?;
                    write_atomic(&self.seq_file, new_seq.to_string().as_bytes())?;
                    self.last_seq = new_seq;
                    self.move_aside(seq);
                    continue;
                }
                Err(err) => return Err(err),
            };
            self.write_frame(move |new_seq| {
                if let Some(s) = seq_of(&mut frame) {
                    *s = new_seq;
                }
                frame
            })?;
            self.step("reconcile:written")?;
            self.remove(seq)?;
            renumbered += 1;
        }
        let marker = self.renumber_file();
        fs::remove_file(&marker).map_err(io(&marker))?;
        Ok(renumbered)
    }

    /// Finishes a renumbering a crash interrupted. When it started, every spooled
    /// frame was at or below the marker's `acked`, and they are copied oldest
    /// first: so the frames above `acked` are copies of the oldest ones below it.
    pub(super) fn resume_renumbering(&mut self) -> Result<(), SpoolError> {
        let marker = self.renumber_file();
        let acked: u64 = match fs::read_to_string(&marker) {
            Ok(s) => s.trim().parse().unwrap_or(0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(SpoolError::Io {
                    path: marker,
                    source: e,
                });
            }
        };
        if self.last_seq < acked {
            write_atomic(&self.seq_file, acked.to_string().as_bytes())?;
            self.last_seq = acked;
        }
        let copies = self.index.range(acked + 1..).count();
        let old: Vec<u64> = self.index.range(..=acked).map(|(s, _)| *s).collect();
        for &seq in &old[..copies.min(old.len())] {
            self.remove(seq)?;
        }
        let rest = old[copies.min(old.len())..].to_vec();
        let n = self.renumber(&rest)?;
        tracing::warn!(
            renumbered = n,
            "finished renumbering the spool after a crash"
        );
        Ok(())
    }
}
