//! The condition state machine of one alert instance (rule × device × dimension):
//! `OK → PENDING → FIRING → RECOVERING → OK`, with `stale`, `flapping` and
//! `suppressed` as flags (machine A of shared/ALERTING.md).
//!
//! Pure: no clock, no I/O. Every call takes the time it happens at, so the tests
//! drive it with an injected clock and the engine persists the [`Instance`] as is —
//! a restart resumes `for` and `clear_for` timers where they were.
//!
//! Invariants:
//! - every state or flag change appends exactly one [`Record`] (the alert history);
//! - `PENDING → FIRING` needs the breach held for `for` *and* at least `min_samples`
//!   breaching samples: one sample from a laptop that slept for an hour is no evidence;
//! - a gap in the data longer than `nodata_after` breaks a pending breach (back to OK);
//! - two clocks, never mixed: spans of evidence are measured on the device's sample
//!   timestamps (differences cancel its clock skew), and "how long since evidence
//!   arrived" on the collector's clock, so an agent whose clock is minutes off
//!   neither goes stale on every tick nor fires early;
//! - `RECOVERING → FIRING` is silent (the record is there, a notifier skips it) and
//!   counts towards flapping.

use super::model::{Params, Severity, Verdict};

/// The state of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum State {
    Ok,
    Pending,
    Firing,
    Recovering,
}

impl State {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Pending => "pending",
            State::Firing => "firing",
            State::Recovering => "recovering",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<State> {
        Some(match s {
            "ok" => State::Ok,
            "pending" => State::Pending,
            "firing" => State::Firing,
            "recovering" => State::Recovering,
            _ => return None,
        })
    }
}

/// One entry of the alert history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Event {
    Transition { from: State, to: State },
    Severity { from: Severity, to: Severity },
    Stale(bool),
    Flapping(bool),
    Suppressed(bool),
}

impl Event {
    /// Short name stored in the history table.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Event::Transition { .. } => "transition",
            Event::Severity { .. } => "severity",
            Event::Stale(true) => "stale",
            Event::Stale(false) => "fresh",
            Event::Flapping(true) => "flapping",
            Event::Flapping(false) => "stable",
            Event::Suppressed(true) => "suppressed",
            Event::Suppressed(false) => "unsuppressed",
        }
    }
}

/// A history record: what happened, when, at which value, and whether the instance
/// was suppressed then (a notifier sends nothing for a suppressed record).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Record {
    pub(crate) at_ms: i64,
    pub(crate) event: Event,
    pub(crate) state: State,
    pub(crate) severity: Option<Severity>,
    pub(crate) value: f64,
    pub(crate) suppressed: bool,
}

/// The persisted state of one instance.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Instance {
    pub(crate) state: State,
    /// Severity while not OK.
    pub(crate) severity: Option<Severity>,
    /// When the current state was entered.
    pub(crate) since_ms: i64,
    /// First breaching sample of the current breach.
    pub(crate) breach_start_ms: i64,
    /// Breaching samples seen since `breach_start_ms`.
    pub(crate) breach_samples: u32,
    /// First recovering sample of the current recovery.
    pub(crate) recover_start_ms: i64,
    pub(crate) last_sample_ms: i64,
    /// Collector time at which the last sample arrived.
    pub(crate) last_arrival_ms: i64,
    pub(crate) last_value: f64,
    pub(crate) stale: bool,
    pub(crate) flapping: bool,
    pub(crate) suppressed: bool,
    /// Times of recent state changes (within the flap window), oldest first.
    pub(crate) changes: Vec<i64>,
}

impl Default for Instance {
    fn default() -> Self {
        Self {
            state: State::Ok,
            severity: None,
            since_ms: 0,
            breach_start_ms: 0,
            breach_samples: 0,
            recover_start_ms: 0,
            last_sample_ms: i64::MIN,
            last_arrival_ms: i64::MIN,
            last_value: 0.0,
            stale: false,
            flapping: false,
            suppressed: false,
            changes: Vec::new(),
        }
    }
}

impl Instance {
    /// True when nothing about the instance is worth keeping (OK and no flags).
    pub(crate) fn is_quiet(&self) -> bool {
        self.state == State::Ok && !self.flapping && !self.suppressed && !self.stale
    }

    /// Feeds one sample taken at `at_ms` that arrives at `at_ms` (one clock; the tests).
    #[cfg(test)]
    pub(crate) fn observe(
        &mut self,
        p: &Params,
        at_ms: i64,
        value: f64,
        verdict: Verdict,
        out: &mut Vec<Record>,
    ) {
        self.observe_at(p, at_ms, at_ms, value, verdict, out);
    }

    /// Feeds one sample taken at `at_ms` (device clock) that arrived at `arrival_ms`
    /// (collector clock). Samples older than the last one seen are ignored (a late
    /// replay must not rewind the timers).
    pub(crate) fn observe_at(
        &mut self,
        p: &Params,
        at_ms: i64,
        arrival_ms: i64,
        value: f64,
        verdict: Verdict,
        out: &mut Vec<Record>,
    ) {
        if at_ms < self.last_sample_ms {
            return;
        }
        let gap =
            self.last_sample_ms != i64::MIN && at_ms - self.last_sample_ms > p.nodata_after_ms;
        self.last_sample_ms = at_ms;
        self.last_arrival_ms = self.last_arrival_ms.max(arrival_ms);
        self.last_value = value;
        if self.stale {
            self.stale = false;
            self.record(at_ms, Event::Stale(false), out);
        }
        if gap && self.state == State::Pending {
            // The evidence chain is broken (the device slept or was away).
            self.goto(p, State::Ok, at_ms, out);
        }
        match (self.state, verdict) {
            (State::Ok, Verdict::Breach(s)) => {
                self.severity = Some(s);
                self.breach_start_ms = at_ms;
                self.breach_samples = 1;
                self.goto(p, State::Pending, at_ms, out);
                self.try_fire(p, 0, at_ms, out);
            }
            (State::Ok, _) => {}
            (State::Pending, Verdict::Breach(s)) => {
                self.severity = Some(s);
                self.breach_samples = self.breach_samples.saturating_add(1);
                self.try_fire(p, at_ms - self.breach_start_ms, at_ms, out);
            }
            (State::Pending, _) => {
                self.goto(p, State::Ok, at_ms, out);
            }
            (State::Firing, Verdict::Breach(s)) => self.set_severity(s, at_ms, out),
            (State::Firing, Verdict::Recover) => {
                self.recover_start_ms = at_ms;
                self.goto(p, State::Recovering, at_ms, out);
                self.try_clear(p, 0, at_ms, out);
            }
            (State::Firing, Verdict::Hold) => {}
            (State::Recovering, Verdict::Recover) => {
                self.try_clear(p, at_ms - self.recover_start_ms, at_ms, out)
            }
            (State::Recovering, Verdict::Breach(s)) => {
                self.goto(p, State::Firing, at_ms, out);
                self.set_severity(s, at_ms, out);
            }
            (State::Recovering, Verdict::Hold) => self.goto(p, State::Firing, at_ms, out),
        }
    }

    /// Moves time-based conditions on to `now_ms`: `for`, `clear_for`, staleness and
    /// the end of flapping.
    pub(crate) fn tick(&mut self, p: &Params, now_ms: i64, out: &mut Vec<Record>) {
        // Time since the last evidence arrived, on the collector's clock.
        let since = if self.last_arrival_ms == i64::MIN {
            i64::MAX
        } else {
            (now_ms - self.last_arrival_ms).max(0)
        };
        let silent = since > p.nodata_after_ms;
        if silent && self.state != State::Ok && !self.stale {
            self.stale = true;
            self.record(now_ms, Event::Stale(true), out);
        }
        // Held = the span of evidence (device clock) + the time since it arrived.
        let held = |start: i64| (self.last_sample_ms - start).saturating_add(since);
        match self.state {
            State::Pending if silent => self.goto(p, State::Ok, now_ms, out),
            State::Pending => self.try_fire(p, held(self.breach_start_ms), now_ms, out),
            State::Recovering if !silent => {
                self.try_clear(p, held(self.recover_start_ms), now_ms, out)
            }
            _ => {}
        }
        if self.flapping
            && self
                .changes
                .last()
                .is_none_or(|t| now_ms - t >= p.flap_window_ms)
        {
            self.flapping = false;
            self.changes.clear();
            self.record(now_ms, Event::Flapping(false), out);
        }
    }

    /// Closes an active instance whose rule is gone: straight to OK, one record.
    pub(crate) fn close(&mut self, now_ms: i64, out: &mut Vec<Record>) {
        if self.state == State::Ok {
            return;
        }
        let from = self.state;
        self.state = State::Ok;
        self.since_ms = now_ms;
        self.breach_samples = 0;
        self.record(
            now_ms,
            Event::Transition {
                from,
                to: State::Ok,
            },
            out,
        );
        self.severity = None;
        // Flags end with the instance, each with its record.
        if self.stale {
            self.stale = false;
            self.record(now_ms, Event::Stale(false), out);
        }
        if self.flapping {
            self.flapping = false;
            self.changes.clear();
            self.record(now_ms, Event::Flapping(false), out);
        }
    }

    /// Sets the suppressed flag (maintenance, silence or inhibition).
    pub(crate) fn set_suppressed(&mut self, on: bool, now_ms: i64, out: &mut Vec<Record>) {
        if self.suppressed != on {
            self.suppressed = on;
            self.record(now_ms, Event::Suppressed(on), out);
        }
    }

    /// Fires if the breach, held for `held_ms`, is long and seen enough.
    fn try_fire(&mut self, p: &Params, held_ms: i64, at_ms: i64, out: &mut Vec<Record>) {
        if self.state == State::Pending
            && self.breach_samples >= p.min_samples
            && held_ms >= p.for_ms
        {
            self.goto(p, State::Firing, at_ms, out);
        }
    }

    /// Clears if the recover condition has held for `held_ms` ≥ `clear_for`.
    fn try_clear(&mut self, p: &Params, held_ms: i64, at_ms: i64, out: &mut Vec<Record>) {
        if self.state == State::Recovering && held_ms >= p.clear_for_ms {
            self.goto(p, State::Ok, at_ms, out);
        }
    }

    fn set_severity(&mut self, s: Severity, at_ms: i64, out: &mut Vec<Record>) {
        match self.severity {
            Some(old) if old != s => {
                self.severity = Some(s);
                self.record(at_ms, Event::Severity { from: old, to: s }, out);
            }
            Some(_) => {}
            None => self.severity = Some(s),
        }
    }

    fn goto(&mut self, p: &Params, to: State, at_ms: i64, out: &mut Vec<Record>) {
        let from = self.state;
        self.state = to;
        self.since_ms = at_ms;
        if to == State::Ok {
            self.breach_samples = 0;
        }
        self.record(at_ms, Event::Transition { from, to }, out);
        if to == State::Ok {
            self.severity = None;
        }
        self.changes.retain(|t| at_ms - t < p.flap_window_ms);
        self.changes.push(at_ms);
        if !self.flapping && self.changes.len() > p.flap_max as usize {
            self.flapping = true;
            self.record(at_ms, Event::Flapping(true), out);
        }
    }

    fn record(&self, at_ms: i64, event: Event, out: &mut Vec<Record>) {
        out.push(Record {
            at_ms,
            event,
            state: self.state,
            severity: self.severity,
            value: self.last_value,
            suppressed: self.suppressed,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Severity::{Critical, Warning};
    use State::*;
    use Verdict::{Breach, Hold, Recover};

    const S: i64 = 1000;
    const MIN: i64 = 60 * S;

    fn params() -> Params {
        Params {
            for_ms: 5 * MIN,
            min_samples: 3,
            clear_for_ms: 2 * MIN,
            nodata_after_ms: 5 * MIN,
            flap_window_ms: 30 * MIN,
            flap_max: 6,
        }
    }

    /// Transitions only, as (time, from, to).
    fn transitions(out: &[Record]) -> Vec<(i64, State, State)> {
        out.iter()
            .filter_map(|r| match r.event {
                Event::Transition { from, to } => Some((r.at_ms, from, to)),
                _ => None,
            })
            .collect()
    }

    /// Feeds a sample every `step` ms from `start`, with the verdict of each.
    fn feed(
        i: &mut Instance,
        p: &Params,
        start: i64,
        step: i64,
        verdicts: &[Verdict],
        out: &mut Vec<Record>,
    ) -> i64 {
        let mut t = start;
        for v in verdicts {
            i.observe(p, t, 1.0, *v, out);
            i.tick(p, t, out);
            t += step;
        }
        t
    }

    #[test]
    fn fires_only_after_for_and_min_samples() {
        let p = params();
        let mut i = Instance::default();
        let mut out = Vec::new();
        // A breach every minute: pending at 0, firing at 5 min (held 5 min, 6 samples).
        feed(&mut i, &p, 0, MIN, &[Breach(Warning); 6], &mut out);
        assert_eq!(
            transitions(&out),
            vec![(0, Ok, Pending), (5 * MIN, Pending, Firing)]
        );
        assert_eq!(i.severity, Some(Warning));
    }

    #[test]
    fn timer_fires_between_samples() {
        let p = Params {
            min_samples: 2,
            ..params()
        };
        let mut i = Instance::default();
        let mut out = Vec::new();
        i.observe(&p, 0, 9.0, Breach(Warning), &mut out);
        i.observe(&p, 4 * MIN, 9.0, Breach(Warning), &mut out);
        i.tick(&p, 5 * MIN - 1, &mut out);
        assert_eq!(i.state, Pending);
        i.tick(&p, 5 * MIN, &mut out);
        assert_eq!(
            i.state, Firing,
            "the coarse timer fires without a new sample"
        );
    }

    #[test]
    fn a_blip_never_fires() {
        let p = params();
        let mut i = Instance::default();
        let mut out = Vec::new();
        feed(
            &mut i,
            &p,
            0,
            MIN,
            &[
                Breach(Critical),
                Breach(Critical),
                Recover,
                Recover,
                Recover,
                Recover,
                Recover,
            ],
            &mut out,
        );
        assert_eq!(
            transitions(&out),
            vec![(0, Ok, Pending), (2 * MIN, Pending, Ok)]
        );
        assert_eq!(i.state, Ok);
        assert_eq!(i.severity, None);
    }

    #[test]
    fn any_non_breach_sample_ends_pending_even_between_thresholds() {
        let p = params();
        let mut i = Instance::default();
        let mut out = Vec::new();
        feed(&mut i, &p, 0, MIN, &[Breach(Warning), Hold], &mut out);
        assert_eq!(i.state, Ok);
    }

    #[test]
    fn sleeping_laptop_one_sample_is_no_evidence() {
        // for = 10 min, min_samples = 5: one breach, an hour asleep, one breach.
        let p = Params {
            for_ms: 10 * MIN,
            min_samples: 5,
            nodata_after_ms: 5 * MIN,
            ..params()
        };
        let mut i = Instance::default();
        let mut out = Vec::new();
        i.observe(&p, 0, 99.0, Breach(Warning), &mut out);
        // The laptop sleeps; the timer keeps ticking.
        for t in (0..60 * MIN).step_by(5 * S as usize) {
            i.tick(&p, t, &mut out);
        }
        assert_eq!(
            i.state, Ok,
            "a pending breach with no data for nodata_after ends"
        );
        i.observe(&p, 60 * MIN, 99.0, Breach(Warning), &mut out);
        i.tick(&p, 60 * MIN + 1, &mut out);
        assert_eq!(
            i.state, Pending,
            "waking up starts a new breach, not a 60 min one"
        );
        assert!(transitions(&out).iter().all(|(_, _, to)| *to != Firing));
    }

    #[test]
    fn min_samples_without_a_timer_tick_also_breaks_on_a_gap() {
        // The same laptop, evaluated only by samples (no tick ran during the sleep).
        let p = Params {
            min_samples: 2,
            ..params()
        };
        let mut i = Instance::default();
        let mut out = Vec::new();
        i.observe(&p, 0, 99.0, Breach(Warning), &mut out);
        i.observe(&p, 60 * MIN, 99.0, Breach(Warning), &mut out);
        assert_eq!(i.state, Pending);
        assert_eq!(i.breach_start_ms, 60 * MIN);
        assert_eq!(i.breach_samples, 1);
    }

    #[test]
    fn zero_for_and_one_sample_fires_at_once() {
        let p = Params {
            for_ms: 0,
            min_samples: 1,
            ..params()
        };
        let mut i = Instance::default();
        let mut out = Vec::new();
        i.observe(&p, 7, 99.0, Breach(Critical), &mut out);
        assert_eq!(
            transitions(&out),
            vec![(7, Ok, Pending), (7, Pending, Firing)]
        );
    }

    #[test]
    fn hysteresis_between_thresholds_keeps_firing() {
        let p = params();
        let mut i = Instance::default();
        let mut out = Vec::new();
        let t = feed(&mut i, &p, 0, MIN, &[Breach(Warning); 6], &mut out);
        // Values between the trigger and the recover threshold: still firing.
        let t = feed(&mut i, &p, t, MIN, &[Hold; 10], &mut out);
        assert_eq!(i.state, Firing);
        // Recover held for clear_for (2 min): OK on the sample at +2 min.
        feed(&mut i, &p, t, MIN, &[Recover, Recover, Recover], &mut out);
        assert_eq!(
            transitions(&out)[2..],
            [(t, Firing, Recovering), (t + 2 * MIN, Recovering, Ok)]
        );
    }

    #[test]
    fn hold_during_recovering_goes_back_to_firing() {
        let p = params();
        let mut i = Instance::default();
        let mut out = Vec::new();
        let t = feed(&mut i, &p, 0, MIN, &[Breach(Warning); 6], &mut out);
        feed(&mut i, &p, t, MIN, &[Recover, Hold], &mut out);
        assert_eq!(i.state, Firing);
    }

    #[test]
    fn clear_for_is_driven_by_the_timer_too() {
        let p = params();
        let mut i = Instance::default();
        let mut out = Vec::new();
        let t = feed(&mut i, &p, 0, MIN, &[Breach(Warning); 6], &mut out);
        i.observe(&p, t, 1.0, Recover, &mut out);
        i.tick(&p, t + 2 * MIN - 1, &mut out);
        assert_eq!(i.state, Recovering);
        i.tick(&p, t + 2 * MIN, &mut out);
        assert_eq!(i.state, Ok);
    }

    #[test]
    fn severity_ladder_escalates_and_deescalates_within_one_alert() {
        let p = params();
        let mut i = Instance::default();
        let mut out = Vec::new();
        let t = feed(&mut i, &p, 0, MIN, &[Breach(Warning); 6], &mut out);
        feed(
            &mut i,
            &p,
            t,
            MIN,
            &[Breach(Critical), Breach(Warning)],
            &mut out,
        );
        let sev: Vec<_> = out
            .iter()
            .filter_map(|r| match r.event {
                Event::Severity { from, to } => Some((from, to)),
                _ => None,
            })
            .collect();
        assert_eq!(sev, vec![(Warning, Critical), (Critical, Warning)]);
        assert_eq!(i.state, Firing, "one alert, not two");
        assert_eq!(transitions(&out).len(), 2);
    }

    #[test]
    fn pending_takes_the_latest_severity() {
        let p = params();
        let mut i = Instance::default();
        let mut out = Vec::new();
        feed(
            &mut i,
            &p,
            0,
            MIN,
            &[
                Breach(Warning),
                Breach(Warning),
                Breach(Critical),
                Breach(Critical),
                Breach(Critical),
                Breach(Critical),
            ],
            &mut out,
        );
        assert_eq!((i.state, i.severity), (Firing, Some(Critical)));
    }

    #[test]
    fn flapping_is_flagged_once_then_quiet_until_stable() {
        let p = Params {
            for_ms: 0,
            min_samples: 1,
            clear_for_ms: 0,
            flap_max: 4,
            flap_window_ms: 10 * MIN,
            ..params()
        };
        let mut i = Instance::default();
        let mut out = Vec::new();
        let mut verdicts = Vec::new();
        for _ in 0..6 {
            verdicts.push(Breach(Warning));
            verdicts.push(Recover);
        }
        let t = feed(&mut i, &p, 0, 10 * S, &verdicts, &mut out);
        let flaps: Vec<_> = out
            .iter()
            .filter(|r| r.event == Event::Flapping(true))
            .collect();
        assert_eq!(flaps.len(), 1, "one notice");
        assert!(i.flapping);
        // Stable for the window: the flag clears, once.
        i.tick(&p, t + 9 * MIN, &mut out);
        assert!(i.flapping);
        i.tick(&p, t + 10 * MIN, &mut out);
        assert!(!i.flapping);
        i.tick(&p, t + 11 * MIN, &mut out);
        assert_eq!(
            out.iter()
                .filter(|r| r.event == Event::Flapping(false))
                .count(),
            1
        );
    }

    #[test]
    fn breach_during_recovering_returns_to_firing_and_counts_as_a_flap() {
        let p = params();
        let mut i = Instance::default();
        let mut out = Vec::new();
        let t = feed(&mut i, &p, 0, MIN, &[Breach(Warning); 6], &mut out);
        let before = i.changes.len();
        feed(&mut i, &p, t, MIN, &[Recover, Breach(Warning)], &mut out);
        assert_eq!(i.state, Firing);
        assert_eq!(i.changes.len(), before + 2);
        assert_eq!(
            transitions(&out)[2..],
            [(t, Firing, Recovering), (t + MIN, Recovering, Firing)]
        );
    }

    #[test]
    fn stale_is_a_flag_set_once_and_cleared_by_data() {
        let p = params();
        let mut i = Instance::default();
        let mut out = Vec::new();
        let t = feed(&mut i, &p, 0, MIN, &[Breach(Warning); 6], &mut out);
        for k in 0..20 {
            i.tick(&p, t + k * MIN, &mut out);
        }
        assert!(i.stale);
        assert_eq!(i.state, Firing, "stale is a flag, not a state");
        assert_eq!(
            out.iter().filter(|r| r.event == Event::Stale(true)).count(),
            1
        );
        i.observe(&p, t + 20 * MIN, 1.0, Breach(Warning), &mut out);
        assert!(!i.stale);
        assert_eq!(out.last().map(|r| r.event), Some(Event::Stale(false)));
    }

    #[test]
    fn an_ok_instance_never_goes_stale() {
        let p = params();
        let mut i = Instance::default();
        let mut out = Vec::new();
        i.observe(&p, 0, 1.0, Recover, &mut out);
        i.tick(&p, 100 * MIN, &mut out);
        assert!(out.is_empty());
        assert!(i.is_quiet());
    }

    #[test]
    fn restart_mid_for_resumes_the_timer() {
        let p = params();
        let mut i = Instance::default();
        let mut out = Vec::new();
        feed(&mut i, &p, 0, MIN, &[Breach(Warning); 3], &mut out);
        assert_eq!(i.state, Pending);
        // "Restart": the persisted copy is all that survives.
        let mut resumed = i.clone();
        let mut out2 = Vec::new();
        resumed.tick(&p, 4 * MIN, &mut out2);
        assert_eq!(resumed.state, Pending, "4 of 5 minutes held");
        resumed.tick(&p, 5 * MIN, &mut out2);
        assert_eq!(
            resumed.state, Firing,
            "fires at 5 min, not 5 min after the restart"
        );
        assert_eq!(transitions(&out2), vec![(5 * MIN, Pending, Firing)]);
    }

    #[test]
    fn restart_after_a_long_outage_does_not_fire_on_old_evidence() {
        let p = params();
        let mut i = Instance::default();
        let mut out = Vec::new();
        feed(&mut i, &p, 0, MIN, &[Breach(Warning); 3], &mut out);
        let mut resumed = i.clone();
        resumed.tick(&p, 60 * MIN, &mut out);
        assert_eq!(resumed.state, Ok);
    }

    #[test]
    fn late_samples_do_not_rewind() {
        let p = params();
        let mut i = Instance::default();
        let mut out = Vec::new();
        i.observe(&p, 10 * MIN, 1.0, Breach(Warning), &mut out);
        i.observe(&p, 5 * MIN, 1.0, Recover, &mut out);
        assert_eq!(i.state, Pending);
        assert_eq!(i.last_sample_ms, 10 * MIN);
    }

    #[test]
    fn records_carry_the_suppressed_flag_of_their_time() {
        let p = Params {
            for_ms: 0,
            min_samples: 1,
            clear_for_ms: 0,
            ..params()
        };
        let mut i = Instance::default();
        let mut out = Vec::new();
        i.set_suppressed(true, 0, &mut out);
        i.observe(&p, 1, 99.0, Breach(Critical), &mut out);
        i.observe(&p, 2, 1.0, Recover, &mut out);
        i.set_suppressed(false, 3, &mut out);
        // Born and healed inside the window: every transition record is suppressed.
        assert!(
            out.iter()
                .filter(|r| matches!(r.event, Event::Transition { .. }))
                .all(|r| r.suppressed)
        );
        assert_eq!(out.last().map(|r| r.event), Some(Event::Suppressed(false)));
        assert_eq!(i.state, Ok);
    }

    #[test]
    fn still_firing_when_suppression_ends_leaves_an_unsuppressed_record() {
        let p = Params {
            for_ms: 0,
            min_samples: 1,
            ..params()
        };
        let mut i = Instance::default();
        let mut out = Vec::new();
        i.set_suppressed(true, 0, &mut out);
        i.observe(&p, 1, 99.0, Breach(Critical), &mut out);
        i.set_suppressed(false, 2, &mut out);
        let last = out.last().copied();
        assert_eq!(
            last.map(|r| (r.event, r.state, r.suppressed)),
            Some((Event::Suppressed(false), Firing, false))
        );
        // Setting the same flag again records nothing.
        i.set_suppressed(false, 3, &mut out);
        assert_eq!(out.last().copied(), last);
    }

    #[test]
    fn an_agent_clock_minutes_behind_neither_goes_stale_nor_fires_early() {
        // Samples stamped 10 min behind the collector (nodata_after is 5 min),
        // arriving every minute: for = 5 min, min_samples = 3.
        let p = params();
        let skew = 10 * MIN;
        let mut i = Instance::default();
        let mut out = Vec::new();
        for k in 0..=5 {
            let arrival = 100 * MIN + k * MIN;
            i.observe_at(&p, arrival - skew, arrival, 99.0, Breach(Warning), &mut out);
            i.tick(&p, arrival + 30 * S, &mut out);
        }
        assert!(!i.stale);
        assert_eq!(
            transitions(&out),
            vec![(90 * MIN, Ok, Pending), (95 * MIN, Pending, Firing)],
            "fires after 5 min of evidence, not at the first tick"
        );
        // And a timer-driven fire happens 5 min after the first arrival, collector time.
        let mut j = Instance::default();
        let mut out = Vec::new();
        j.observe_at(&p, 90 * MIN, 100 * MIN, 99.0, Breach(Warning), &mut out);
        j.observe_at(&p, 91 * MIN, 101 * MIN, 99.0, Breach(Warning), &mut out);
        j.observe_at(&p, 94 * MIN, 104 * MIN, 99.0, Breach(Warning), &mut out);
        j.tick(&p, 105 * MIN - 1, &mut out);
        assert_eq!(j.state, Pending);
        j.tick(&p, 105 * MIN, &mut out);
        assert_eq!(j.state, Firing);
    }

    #[test]
    fn closing_records_one_transition_and_is_idempotent() {
        let p = params();
        let mut i = Instance::default();
        let mut out = Vec::new();
        feed(&mut i, &p, 0, MIN, &[Breach(Critical); 6], &mut out);
        out.clear();
        i.close(7 * MIN, &mut out);
        i.close(8 * MIN, &mut out);
        assert_eq!(transitions(&out), vec![(7 * MIN, Firing, Ok)]);
        assert_eq!(
            out[0].severity,
            Some(Critical),
            "the record says what ended"
        );
        assert!(i.is_quiet());
        // A stale instance closes with the flag's end recorded too.
        let mut j = Instance::default();
        let mut out = Vec::new();
        feed(&mut j, &p, 0, MIN, &[Breach(Critical); 6], &mut out);
        j.tick(&p, 60 * MIN, &mut out);
        assert!(j.stale);
        out.clear();
        j.close(61 * MIN, &mut out);
        let events: Vec<Event> = out.iter().map(|r| r.event).collect();
        assert_eq!(
            events,
            [
                Event::Transition {
                    from: Firing,
                    to: Ok
                },
                Event::Stale(false)
            ]
        );
        assert!(j.is_quiet());
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for s in [Ok, Pending, Firing, Recovering] {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
        assert_eq!(State::parse("fired"), None);
    }
}
