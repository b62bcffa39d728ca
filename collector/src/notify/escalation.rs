//! Pure step evaluation: given a policy, the tenant (zone, calendars), an incident's
//! state and the time (injected), which steps fire now, whether the incident
//! reopens or starts a new loop, and when to look again.
//!
//! Invariants: a step fires at most once per loop (the caller records fired steps
//! with their deliveries in one transaction); an acked, snoozed or suppressed
//! incident fires nothing; a step outside its calendar guard is deferred to the
//! guard's next opening, never dropped. Business hours are computed in the
//! tenant's IANA zone, so a deferral across a DST change lands on the local
//! opening time.

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

use super::policy::{Calendar, HoursGuard, Policy, Tenant};
use crate::alerts::model::Severity;
use crate::alerts::rrule::instant;

/// Where an incident is in the workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IncidentState {
    Open,
    Acked,
    Snoozed,
    Resolved,
}

impl IncidentState {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "open" => IncidentState::Open,
            "acked" => IncidentState::Acked,
            "snoozed" => IncidentState::Snoozed,
            "resolved" => IncidentState::Resolved,
            _ => return None,
        })
    }
}

/// What the evaluation needs of an incident.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    pub(crate) state: IncidentState,
    pub(crate) severity: Severity,
    pub(crate) suppressed: bool,
    pub(crate) loop_no: u32,
    pub(crate) loop_start_ms: i64,
    pub(crate) acked_ms: Option<i64>,
    pub(crate) snoozed_until_ms: Option<i64>,
    /// Steps of the current loop that already fired.
    pub(crate) fired: Vec<usize>,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Decision {
    /// Steps (indexes) that fire now.
    pub(crate) fire: Vec<usize>,
    /// The ack timed out or the snooze ended: back to open, a new loop from now.
    pub(crate) reopen: bool,
    /// Every step of the loop is done and the repeat interval passed: a new loop.
    pub(crate) next_loop: bool,
    /// When something may next become due (None: nothing pending).
    pub(crate) wake_ms: Option<i64>,
}

/// Evaluates one incident at `now_ms`.
pub(crate) fn decide(policy: &Policy, tenant: &Tenant, s: &Snapshot, now_ms: i64) -> Decision {
    let mut d = Decision::default();
    match s.state {
        IncidentState::Resolved => return d,
        IncidentState::Acked => {
            if policy.ack_timeout_ms > 0
                && let Some(at) = s.acked_ms
            {
                let due = at + policy.ack_timeout_ms;
                if now_ms >= due {
                    d.reopen = true;
                } else {
                    d.wake_ms = Some(due);
                }
            }
            return d;
        }
        IncidentState::Snoozed => {
            match s.snoozed_until_ms {
                Some(u) if now_ms < u => d.wake_ms = Some(u),
                _ => d.reopen = true,
            }
            return d;
        }
        IncidentState::Open => {}
    }
    if s.suppressed {
        return d;
    }
    let mut wake: Option<i64> = None;
    fn soonest(wake: &mut Option<i64>, t: i64) {
        *wake = Some(wake.map_or(t, |w| w.min(t)));
    }
    for (i, step) in policy.steps.iter().enumerate() {
        if s.fired.contains(&i) || step.min_severity.is_some_and(|m| s.severity < m) {
            continue;
        }
        match step_due(step.hours.as_ref(), tenant, s.loop_start_ms + step.after_ms) {
            Some(t) if t <= now_ms => d.fire.push(i),
            Some(t) => soonest(&mut wake, t),
            // The calendar never opens (no open day left in a year): nothing to wait for.
            None => {}
        }
    }
    // A new loop once every step of this one is done and the repeat interval passed.
    if policy.repeat_ms > 0 && s.loop_no + 1 < policy.max_loops && d.fire.is_empty() {
        let next = s.loop_start_ms + policy.repeat_ms;
        if wake.is_none() && now_ms >= next {
            d.next_loop = true;
        } else if wake.is_none() {
            soonest(&mut wake, next);
        }
    }
    d.wake_ms = wake;
    d
}

/// When a step due at `base_ms` may fire, given its calendar guard. A missing
/// calendar (the tenant does not define it) does not hold a step back.
pub(crate) fn step_due(guard: Option<&HoursGuard>, tenant: &Tenant, base_ms: i64) -> Option<i64> {
    match guard {
        None => Some(base_ms),
        Some(HoursGuard::Inside(name)) => match tenant.calendars.get(name) {
            Some(cal) => next_inside(cal, &tenant.zone, base_ms),
            None => Some(base_ms),
        },
        Some(HoursGuard::Outside(name)) => match tenant.calendars.get(name) {
            Some(cal) => next_outside(cal, &tenant.zone, base_ms),
            None => Some(base_ms),
        },
    }
}

/// Opening and closing instants of `day` (None if closed that day).
fn hours_of(cal: &Calendar, tz: &TimeZone, day: Date) -> Option<(i64, i64)> {
    if !cal.is_open_day(day) {
        return None;
    }
    Some((
        instant(tz, day.to_datetime(cal.open))?,
        instant(tz, day.to_datetime(cal.close))?,
    ))
}

fn local_day(tz: &TimeZone, ms: i64) -> Option<Date> {
    Some(
        Timestamp::from_millisecond(ms)
            .ok()?
            .to_zoned_datetime(tz.clone())
            .date(),
    )
}

/// The first instant at or after `t` inside the calendar's hours.
pub(crate) fn next_inside(cal: &Calendar, tz: &TimeZone, t: i64) -> Option<i64> {
    let mut day = local_day(tz, t)?;
    for _ in 0..400 {
        if let Some((open, close)) = hours_of(cal, tz, day) {
            if t < open {
                return Some(open);
            }
            if t < close {
                return Some(t);
            }
        }
        day = day.tomorrow().ok()?;
    }
    None
}

/// The first instant at or after `t` outside the calendar's hours.
pub(crate) fn next_outside(cal: &Calendar, tz: &TimeZone, t: i64) -> Option<i64> {
    let day = local_day(tz, t)?;
    match hours_of(cal, tz, day) {
        Some((open, close)) if open <= t && t < close => Some(close),
        _ => Some(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::policy::parse_file;

    const POLICY: &str = r#"
[[tenant]]
name = "acme"
zone = "Europe/Berlin"
  [[tenant.calendar]]
  name = "office"
  days = ["mon", "tue", "wed", "thu", "fri"]
  hours = "08:00-17:00"
  holidays = ["2026-12-25"]

[[policy]]
name = "p"
default = true
repeat_secs = 7200
ack_timeout_secs = 1800
max_loops = 2
  [[policy.step]]
  after_secs = 0
  targets = ["email:noc@msp.example"]
  [[policy.step]]
  after_secs = 900
  inside = "office"
  targets = ["contacts"]
  [[policy.step]]
  after_secs = 3600
  min_severity = "critical"
  targets = ["email:oncall@msp.example"]
"#;

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn setup() -> (Policy, Tenant) {
        let set = parse_file(std::path::Path::new("p.toml"), POLICY).unwrap();
        (set.policies["p"].clone(), set.tenant("acme").clone())
    }

    fn snap(start: i64) -> Snapshot {
        Snapshot {
            state: IncidentState::Open,
            severity: Severity::Warning,
            suppressed: false,
            loop_no: 0,
            loop_start_ms: start,
            acked_ms: None,
            snoozed_until_ms: None,
            fired: vec![],
        }
    }

    #[test]
    fn steps_fire_on_their_delay_once_and_warnings_skip_the_critical_step() {
        let (p, t) = setup();
        // Tuesday 10:00 Berlin (09:00 UTC): inside office hours.
        let start = ms("2026-06-02T08:00:00Z");
        let mut s = snap(start);
        let d = decide(&p, &t, &s, start);
        assert_eq!(d.fire, vec![0]);
        s.fired = vec![0];
        let d = decide(&p, &t, &s, start + 899_999);
        assert!(d.fire.is_empty());
        assert_eq!(d.wake_ms, Some(start + 900_000));
        let d = decide(&p, &t, &s, start + 900_000);
        assert_eq!(d.fire, vec![1]);
        s.fired = vec![0, 1];
        // The third step needs critical: a warning never gets it, and the loop
        // waits for the repeat.
        let d = decide(&p, &t, &s, start + 3_600_000);
        assert!(d.fire.is_empty());
        assert_eq!(d.wake_ms, Some(start + 7_200_000));
        assert!(decide(&p, &t, &s, start + 7_200_000).next_loop);
        s.loop_no = 1;
        s.loop_start_ms = start + 7_200_000;
        s.fired = vec![0, 1];
        assert!(
            !decide(&p, &t, &s, start + 99_000_000).next_loop,
            "max_loops = 2"
        );
    }

    #[test]
    fn ack_stops_escalation_and_its_timeout_reopens() {
        let (p, t) = setup();
        let start = ms("2026-06-02T08:00:00Z");
        let mut s = snap(start);
        s.fired = vec![0];
        s.state = IncidentState::Acked;
        s.acked_ms = Some(start + 60_000);
        let d = decide(&p, &t, &s, start + 900_000);
        assert!(d.fire.is_empty(), "acked: step 1 does not fire");
        assert_eq!(d.wake_ms, Some(start + 60_000 + 1_800_000));
        assert!(decide(&p, &t, &s, start + 60_000 + 1_800_000).reopen);
        s.state = IncidentState::Snoozed;
        s.snoozed_until_ms = Some(start + 5_000_000);
        assert!(!decide(&p, &t, &s, start + 4_999_999).reopen);
        assert!(decide(&p, &t, &s, start + 5_000_000).reopen);
        s.state = IncidentState::Open;
        s.suppressed = true;
        assert_eq!(decide(&p, &t, &s, start + 900_000), Decision::default());
    }

    #[test]
    fn a_step_outside_business_hours_waits_for_the_next_opening_across_dst() {
        let (p, t) = setup();
        // Friday 27 March 2026, 16:50 CET (15:50 UTC). Step 1 is due at 17:05 CET,
        // after closing. Berlin moves to CEST on Sunday 29 March, so Monday's 08:00
        // is 06:00 UTC, not 07:00.
        let start = ms("2026-03-27T15:50:00Z");
        let mut s = snap(start);
        s.fired = vec![0];
        let monday_open = ms("2026-03-30T06:00:00Z");
        let d = decide(&p, &t, &s, start + 900_000);
        assert!(d.fire.is_empty(), "deferred, not fired after hours");
        assert_eq!(d.wake_ms, Some(monday_open));
        assert!(decide(&p, &t, &s, monday_open - 1).fire.is_empty());
        assert_eq!(decide(&p, &t, &s, monday_open).fire, vec![1]);
        // And back in autumn (CEST → CET on 25 October): Monday 26 October 08:00 is
        // 07:00 UTC.
        let start = ms("2026-10-23T14:50:00Z");
        let mut s = snap(start);
        s.fired = vec![0];
        assert_eq!(
            decide(&p, &t, &s, start + 900_000).wake_ms,
            Some(ms("2026-10-26T07:00:00Z"))
        );
    }

    #[test]
    fn holidays_are_closed_and_outside_guards_wait_for_closing() {
        let (_, t) = setup();
        let cal = &t.calendars["office"];
        // Christmas 2026 is a Friday: the next opening is Monday 28 December 08:00 CET.
        assert_eq!(
            next_inside(cal, &t.zone, ms("2026-12-25T09:00:00Z")),
            Some(ms("2026-12-28T07:00:00Z"))
        );
        // Outside: inside hours it waits for 17:00 local; after hours it is now.
        assert_eq!(
            next_outside(cal, &t.zone, ms("2026-06-02T09:00:00Z")),
            Some(ms("2026-06-02T15:00:00Z"))
        );
        let late = ms("2026-06-02T20:00:00Z");
        assert_eq!(next_outside(cal, &t.zone, late), Some(late));
    }
}
