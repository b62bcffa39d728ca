//! This machine's clock against the collector's.
//!
//! The collector says its clock in every Welcome and Ack; [`observe`] keeps the
//! offset (collector minus this machine, ms) and [`now_ms`] is this machine's
//! wall clock corrected by it: what samples, patch reports and inventories are
//! stamped with, so an agent whose clock is a day off still delivers data the
//! collector accepts and places at the right time. Intervals keep using the
//! monotonic clock (tokio's timers), which a wrong wall clock does not disturb.
//!
//! Invariants: the offset is process-wide (it is a property of the machine, and
//! every uplink in one process talks to one collector); until the first answer
//! arrives it is the one saved in the state dir (`clock_offset`) by the last run,
//! or zero. Saving happens on the sampler's blocking thread ([`save_if_changed`]),
//! never on the async runtime.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

static OFFSET_MS: AtomicI64 = AtomicI64::new(0);
/// Whether an offset is known (from the collector or the state dir).
static KNOWN: AtomicBool = AtomicBool::new(false);
/// The offset last saved to the state dir.
static SAVED_MS: AtomicI64 = AtomicI64::new(i64::MIN);

/// The offset changes the saved file only when it moved by more than this.
const SAVE_STEP_MS: i64 = 1_000;
const FILE: &str = "clock_offset";

/// This machine's wall clock, uncorrected, ms since the epoch.
pub(crate) fn local_now_ms() -> i64 {
    tandem_proto::util::now_ms()
}

/// The wall clock corrected to the collector's.
pub(crate) fn now_ms() -> i64 {
    corrected(local_now_ms(), OFFSET_MS.load(Ordering::Relaxed))
}

pub(crate) fn corrected(local_ms: i64, offset_ms: i64) -> i64 {
    local_ms.saturating_add(offset_ms)
}

/// The offset to the collector's clock, if known.
pub(crate) fn offset_ms() -> Option<i64> {
    KNOWN
        .load(Ordering::Relaxed)
        .then(|| OFFSET_MS.load(Ordering::Relaxed))
}

/// Observations kept for the estimate.
const WINDOW: usize = 32;
/// The applied offset moves only when the estimate is this far from it: a sample
/// stamped with a jittering offset could land on the ms of the one before and
/// overwrite it (the store keeps one value per series and ms). Skew that matters is
/// minutes or days.
const DEAD_BAND_MS: i64 = 2_000;

/// Estimates the offset from observations. An observation is the collector's clock
/// when it sent a frame minus ours when we read it, so it is the true offset minus
/// the delay in between (never plus): the largest of the recent ones is the best
/// estimate, and a frame that waited in a queue (a loaded machine) cannot drag the
/// offset back.
#[derive(Debug)]
pub(crate) struct Estimator {
    recent: [i64; WINDOW],
    len: usize,
    next: usize,
    applied: Option<i64>,
}

impl Estimator {
    pub(crate) const fn new() -> Self {
        Self {
            recent: [0; WINDOW],
            len: 0,
            next: 0,
            applied: None,
        }
    }

    /// Takes one observation; returns the offset to apply.
    pub(crate) fn observe(&mut self, observed: i64) -> i64 {
        self.recent[self.next] = observed;
        self.next = (self.next + 1) % WINDOW;
        self.len = (self.len + 1).min(WINDOW);
        let estimate = self.recent[..self.len]
            .iter()
            .copied()
            .max()
            .unwrap_or(observed);
        let current = self.applied.unwrap_or(0);
        let applied = if estimate.abs_diff(current) > DEAD_BAND_MS as u64 {
            estimate
        } else {
            current
        };
        self.applied = Some(applied);
        applied
    }
}

static ESTIMATOR: std::sync::Mutex<Estimator> = std::sync::Mutex::new(Estimator::new());

/// Takes the collector's clock from a Welcome or Ack (0: it did not say).
pub(crate) fn observe(collector_ms: i64) {
    if let Some(observed) = offset_from(collector_ms, local_now_ms()) {
        // The lock only guards arithmetic; a panic inside cannot leave it torn.
        let applied = ESTIMATOR
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(observed);
        OFFSET_MS.store(applied, Ordering::Relaxed);
        KNOWN.store(true, Ordering::Relaxed);
    }
}

/// The offset a collector timestamp implies; None when it carries none.
pub(crate) fn offset_from(collector_ms: i64, local_ms: i64) -> Option<i64> {
    (collector_ms > 0).then(|| collector_ms.saturating_sub(local_ms))
}

/// Loads the offset the last run saved, if no answer arrived yet.
pub(crate) fn load(state_dir: &Path) {
    let Ok(text) = std::fs::read_to_string(state_dir.join(FILE)) else {
        return;
    };
    if let Ok(v) = text.trim().parse::<i64>()
        && !KNOWN.swap(true, Ordering::Relaxed)
    {
        OFFSET_MS.store(v, Ordering::Relaxed);
        SAVED_MS.store(v, Ordering::Relaxed);
    }
}

/// Saves the offset when it moved by more than a second since the last save.
/// Blocking: call from a blocking thread.
pub(crate) fn save_if_changed(state_dir: &Path) {
    let Some(offset) = offset_ms() else { return };
    let saved = SAVED_MS.load(Ordering::Relaxed);
    if saved != i64::MIN && offset.abs_diff(saved) <= SAVE_STEP_MS as u64 {
        return;
    }
    let path = state_dir.join(FILE);
    match std::fs::write(&path, offset.to_string()) {
        Ok(()) => SAVED_MS.store(offset, Ordering::Relaxed),
        Err(err) => {
            // Harmless: the next answer from the collector gives it again.
            if saved == i64::MIN {
                tracing::debug!(error = %err, path = %path.display(), "cannot save the clock offset");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_and_correction() {
        // A collector a day ahead of this machine.
        let day = 86_400_000;
        let local = 1_700_000_000_000;
        let off = offset_from(local + day, local).unwrap();
        assert_eq!(off, day);
        assert_eq!(corrected(local + 5, off), local + day + 5);
        assert_eq!(
            offset_from(0, local),
            None,
            "an older collector says nothing"
        );
    }

    /// Same clocks, answers delayed by a loaded machine: the offset stays 0 (before
    /// the estimator, a delayed ack moved it back by the delay, and two samples
    /// could get the same ms). A day of skew is applied at the first answer.
    #[test]
    fn delayed_answers_do_not_move_the_offset_and_real_skew_applies_at_once() {
        let mut e = Estimator::new();
        for observed in [-3, -2_500, -40, -1, -4_000, -7] {
            assert_eq!(e.observe(observed), 0, "observed {observed}");
        }
        let day = 86_400_000;
        let mut e = Estimator::new();
        assert_eq!(e.observe(day - 3_000), day - 3_000);
        assert_eq!(
            e.observe(day - 5),
            day - 5,
            "a better estimate beyond the band"
        );
        assert_eq!(
            e.observe(day - 900),
            day - 5,
            "a delayed one changes nothing"
        );
    }
}
