//! The spool's bounds (size and age) and the gap records that report what they
//! dropped: the intent log `dropped` is durable before any deletion, and a record
//! is written for each run once the uplink is connected.

use super::*;

impl Spool {
    /// Drops the oldest data frames while the spool is over its size bound (the
    /// newest frame is always kept) or older than its age bound, and records what
    /// was dropped. Returns how many frames were dropped.
    pub(crate) fn enforce_bounds(&mut self, now: i64) -> Result<usize, SpoolError> {
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
        if victims.is_empty() {
            return Ok(0);
        }
        // The record first, then the deletion: a crash in between leaves frames
        // that `open` deletes because `dropped` names them. (The other order lost
        // seqs without a trace.)
        let before = self.dropped.clone();
        for &(seq, time_ms, reason) in &victims {
            self.note_dropped(seq, time_ms, reason);
        }
        if let Err(err) = self.save_dropped() {
            self.dropped = before;
            return Err(err);
        }
        self.step("bound:recorded")?;
        for (i, &(seq, _, _)) in victims.iter().enumerate() {
            self.remove(seq)?;
            if i == 0 {
                self.step("bound:removed-one")?;
            }
        }
        tracing::warn!(
            dropped = victims.len(),
            max_bytes = self.bounds.max_bytes,
            max_age_secs = self.bounds.max_age.as_secs(),
            "spool bound reached: oldest unacknowledged data dropped (a gap record will report it)"
        );
        Ok(victims.len())
    }

    pub(super) fn note_dropped(&mut self, seq: u64, time_ms: i64, reason: GapReason) {
        if self
            .dropped
            .iter()
            .any(|d| (d.first..=d.last).contains(&seq))
        {
            return;
        }
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

    /// Records a whole run (the range of a refused gap record, reported again).
    pub(super) fn note_run(&mut self, run: Dropped) {
        if self
            .dropped
            .iter()
            .any(|d| (d.first, d.last) == (run.first, run.last))
        {
            return;
        }
        self.dropped.push(run);
    }

    pub(super) fn save_dropped(&self) -> Result<(), SpoolError> {
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
    pub(crate) fn flush_gaps(&mut self) -> Result<usize, SpoolError> {
        self.save_dirty_dropped();
        if self.dropped.is_empty() || self.dropped_dirty {
            // Nothing to report, or the disk has no room for the record yet.
            return Ok(0);
        }
        // Each run leaves `dropped` only once its gap record is written; a crash in
        // between leaves both, and `open` drops the run its record already covers.
        let runs = self.dropped.clone();
        let mut written = Vec::new();
        for (i, d) in runs.iter().enumerate() {
            let d = *d;
            let make = move |seq| AgentFrame {
                kind: Some(agent_frame::Kind::Gap(Gap {
                    seq,
                    first_dropped_seq: d.first,
                    last_dropped_seq: d.last,
                    oldest_unix_ms: d.oldest_ms,
                    newest_unix_ms: d.newest_ms,
                    reason: d.reason as i32,
                    time_unix_ms: now_ms(),
                })),
            };
            let mut result = self.write_frame(make);
            if matches!(&result, Err(e) if out_of_room(e))
                && fs::remove_file(&self.reserve_file).is_ok()
            {
                // The reserve is there for loss records: give it up and try again.
                result = self.write_frame(make);
            }
            match result {
                Ok(_) => written.push(d),
                Err(err) if out_of_room(&err) => {
                    // No room for the record yet. The run stays in `dropped` (on
                    // disk) and is reported once delivery frees space: the frames
                    // spooled before it are sent and acknowledged meanwhile, so a
                    // full disk never stops the uplink (it did before: the failed
                    // record ended every connection before anything was sent).
                    let _ = fs::remove_file(self.path_of(self.last_seq + 1, true));
                    if !self.gap_unsaved_logged {
                        self.gap_unsaved_logged = true;
                        tracing::warn!(error = %err, "no room for a gap record yet; it is written once delivery frees space");
                    }
                    break;
                }
                Err(err) => return Err(err),
            }
            if i == 0 {
                self.step("flush:gap-written")?;
            }
        }
        if written.is_empty() {
            return Ok(0);
        }
        self.gap_unsaved_logged = false;
        self.dropped.retain(|d| !written.contains(d));
        match self.save_dropped() {
            Ok(()) => {}
            // The file still lists runs whose records now exist; `open` drops
            // those, so this is only rewritten later.
            Err(err) if out_of_room(&err) => self.dropped_dirty = true,
            Err(err) => return Err(err),
        }
        Ok(written.len())
    }
}
