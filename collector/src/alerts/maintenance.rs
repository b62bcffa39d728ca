//! Maintenance windows and silences: when an instance's notifications pause.
//!
//! A window is one-off (`start`..`end`) or weekly (`weekdays`, `from`..`to`, which may
//! wrap past midnight), written in the civil time of a named IANA zone. Times are
//! resolved to instants per occurrence with jiff's bundled tz database, so a weekly
//! 22:00 window stays at 22:00 local time across a DST change, and a civil time
//! that does not exist (spring forward) or exists twice (fall back) is resolved the
//! "compatible" way (RFC 5545: later for a gap, earlier for a fold).
//!
//! A window may also recur by an RFC 5545 RRULE (see [`super::rrule`] for the
//! subset and its DST rules).
//!
//! Evaluation goes on inside a window; only the `suppressed` flag is set.
//!
//! Windows come from two places: `[[maintenance]]` in the rule files (reloaded when
//! the files change) and the `maintenance_windows` table, made at run time through
//! the console API (issue 15). The engine re-reads the table every tick
//! ([`load_db`]) and holds those windows beside the file's, as [`Window`]s of the
//! same kind (one-off, in UTC, scope tenant + optional site or device), so both are
//! honoured by the same code.

use jiff::Timestamp;
use jiff::civil::{Date, Time, Weekday};

use super::model::{Schedule, Window};

use super::rrule::instant;

impl Window {
    /// Whether the window covers the instant `now_ms` (start inclusive, end exclusive).
    pub(crate) fn active_at(&self, now_ms: i64) -> bool {
        match &self.schedule {
            Schedule::Once { start, end } => {
                match (instant(&self.tz, *start), instant(&self.tz, *end)) {
                    (Some(s), Some(e)) => s <= now_ms && now_ms < e,
                    _ => false,
                }
            }
            Schedule::Recurring(series) => series.covering(&self.tz, now_ms).is_some(),
            Schedule::Weekly { days, from, to } => {
                let Ok(ts) = Timestamp::from_millisecond(now_ms) else {
                    return false;
                };
                let today = ts.to_zoned_datetime(self.tz.clone()).date();
                // An occurrence starting yesterday may still run (wraps midnight).
                [today.yesterday(), Ok(today)]
                    .into_iter()
                    .flatten()
                    .filter(|d| days.contains(&d.weekday()))
                    .any(|d| self.occurrence_covers(d, *from, *to, now_ms))
            }
        }
    }

    fn occurrence_covers(&self, day: Date, from: Time, to: Time, now_ms: i64) -> bool {
        let end_day = if to <= from { day.tomorrow() } else { Ok(day) };
        let Ok(end_day) = end_day else { return false };
        match (
            instant(&self.tz, day.to_datetime(from)),
            instant(&self.tz, end_day.to_datetime(to)),
        ) {
            (Some(s), Some(e)) => s <= now_ms && now_ms < e,
            _ => false,
        }
    }
}

/// Parses a weekday name as written in rule files (`mon` or `monday`).
pub(crate) fn parse_weekday(s: &str) -> Option<Weekday> {
    Some(match s.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        _ => return None,
    })
}

// ---------------------------------------------------------------- made at run time

// A window made at run time (the API, the console) is stored as the store's
// `MaintenanceRow`; the console reads and writes it through
// `store::console_admin::ConsoleAdmin`.
pub(crate) use crate::store::api::MaintenanceRow as DbWindow;

impl DbWindow {
    /// As the engine holds windows: one-off between two instants (civil UTC, which
    /// maps back to the same milliseconds), scoped to its tenant and site or device.
    pub(crate) fn to_window(&self) -> Option<Window> {
        let civil = |ms: i64| {
            Timestamp::from_millisecond(ms)
                .ok()
                .map(|t| t.to_zoned_datetime(jiff::tz::TimeZone::UTC).datetime())
        };
        Some(Window {
            name: format!("#{} {}", self.id, self.note),
            tz: jiff::tz::TimeZone::UTC,
            schedule: Schedule::Once {
                start: civil(self.starts_ms)?,
                end: civil(self.ends_ms)?,
            },
            scope: super::model::Scope {
                tenants: vec![self.tenant.clone()],
                sites: self.site.iter().cloned().collect(),
                devices: self.device_id.iter().cloned().collect(),
                ..Default::default()
            },
        })
    }
}

/// The windows made at run time that have not ended at `now_ms`, for the engine.
pub(crate) fn load_db(
    store: &impl crate::store::api::AlertStore,
    now_ms: i64,
) -> Result<Vec<Window>, crate::store::StoreError> {
    let mut out = Vec::new();
    for r in store.maintenance_windows(now_ms)? {
        match r.to_window() {
            Some(w) => out.push(w),
            None => tracing::warn!(
                window = r.id,
                "maintenance window with out-of-range times skipped"
            ),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::model::Scope;
    use jiff::tz::TimeZone;

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn weekly(tz: &str, days: &[Weekday], from: &str, to: &str) -> Window {
        Window {
            name: "w".into(),
            tz: TimeZone::get(tz).unwrap(),
            schedule: Schedule::Weekly {
                days: days.to_vec(),
                from: from.parse().unwrap(),
                to: to.parse().unwrap(),
            },
            scope: Scope::default(),
        }
    }

    #[test]
    fn one_off_edges_are_start_inclusive_end_exclusive() {
        let w = Window {
            name: "w".into(),
            tz: TimeZone::get("Europe/Berlin").unwrap(),
            schedule: Schedule::Once {
                start: "2026-06-01T10:00".parse().unwrap(),
                end: "2026-06-01T12:00".parse().unwrap(),
            },
            scope: Scope::default(),
        };
        // Berlin is UTC+2 in June.
        assert!(!w.active_at(ms("2026-06-01T07:59:59.999Z")));
        assert!(w.active_at(ms("2026-06-01T08:00:00Z")));
        assert!(w.active_at(ms("2026-06-01T09:59:59.999Z")));
        assert!(!w.active_at(ms("2026-06-01T10:00:00Z")));
    }

    #[test]
    fn weekly_window_keeps_local_time_across_dst() {
        // Sundays 01:00–04:00 Berlin. 2026-03-29 is the spring-forward Sunday
        // (02:00 → 03:00), so that occurrence lasts 2 real hours; a week before it
        // was UTC+1, a week after UTC+2.
        let w = weekly("Europe/Berlin", &[Weekday::Sunday], "01:00", "04:00");
        assert!(w.active_at(ms("2026-03-22T00:00:00Z"))); // 01:00 CET
        assert!(!w.active_at(ms("2026-03-22T03:00:00Z"))); // 04:00 CET
        assert!(w.active_at(ms("2026-03-29T00:00:00Z"))); // 01:00 CET
        assert!(w.active_at(ms("2026-03-29T01:59:59Z"))); // 03:59:59 CEST
        assert!(!w.active_at(ms("2026-03-29T02:00:00Z"))); // 04:00 CEST
        assert!(!w.active_at(ms("2026-04-05T02:00:00Z"))); // 04:00 CEST
        assert!(
            !w.active_at(ms("2026-04-05T23:30:00Z")),
            "Monday is not Sunday"
        );
        assert!(w.active_at(ms("2026-04-04T23:00:00Z"))); // Sunday 01:00 CEST
        assert!(!w.active_at(ms("2026-04-04T22:59:59Z")));
    }

    #[test]
    fn a_start_inside_the_spring_forward_gap_moves_later() {
        // 02:30 does not exist in Berlin on 2026-03-29; "compatible" makes it 03:30 CEST.
        let w = weekly("Europe/Berlin", &[Weekday::Sunday], "02:30", "05:00");
        assert!(!w.active_at(ms("2026-03-29T01:29:59Z")));
        assert!(w.active_at(ms("2026-03-29T01:30:00Z")));
        assert!(!w.active_at(ms("2026-03-29T03:00:00Z")));
    }

    #[test]
    fn fall_back_fold_takes_the_earlier_instant() {
        // 2026-10-25 Berlin: 03:00 CEST → 02:00 CET; 02:30 happens twice.
        let w = weekly("Europe/Berlin", &[Weekday::Sunday], "02:30", "03:30");
        assert!(
            w.active_at(ms("2026-10-25T00:30:00Z")),
            "first 02:30 (CEST)"
        );
        // 03:30 CET = 02:30Z: the window spans the whole repeated hour, 2 h real.
        assert!(w.active_at(ms("2026-10-25T02:29:59Z")));
        assert!(!w.active_at(ms("2026-10-25T02:30:00Z")));
    }

    #[test]
    fn weekly_window_wraps_midnight_from_its_start_day() {
        // Friday 22:00 → Saturday 02:00, New York.
        let w = weekly("America/New_York", &[Weekday::Friday], "22:00", "02:00");
        // 2026-11-06 is a Friday; EST (UTC-5) from Nov 1.
        assert!(w.active_at(ms("2026-11-07T03:00:00Z"))); // Fri 22:00
        assert!(w.active_at(ms("2026-11-07T06:59:59Z"))); // Sat 01:59:59
        assert!(!w.active_at(ms("2026-11-07T07:00:00Z"))); // Sat 02:00
        assert!(
            !w.active_at(ms("2026-11-08T04:00:00Z")),
            "Saturday night is not in it"
        );
    }

    #[test]
    fn a_window_made_at_run_time_covers_its_instants_and_its_scope_only() {
        use crate::alerts::model::Target;
        let w = DbWindow {
            id: 7,
            tenant: "acme".into(),
            site: None,
            device_id: Some("d1".into()),
            starts_ms: 1_780_000_000_123,
            ends_ms: 1_780_000_600_456,
            note: "disk swap".into(),
            created_by: "ann".into(),
            created_ms: 0,
        }
        .to_window()
        .unwrap();
        assert!(!w.active_at(1_780_000_000_122));
        assert!(w.active_at(1_780_000_000_123));
        assert!(w.active_at(1_780_000_600_455));
        assert!(!w.active_at(1_780_000_600_456));
        let t = Target::device("acme", "d1", "linux", "cpu");
        assert!(w.scope.matches(&t));
        assert!(!w.scope.matches(&Target {
            device_id: "d2",
            ..t
        }));
        assert!(!w.scope.matches(&Target {
            tenant: "globex",
            ..t
        }));
    }

    #[test]
    fn weekday_names() {
        assert_eq!(parse_weekday("Tue"), Some(Weekday::Tuesday));
        assert_eq!(parse_weekday("sunday"), Some(Weekday::Sunday));
        assert_eq!(parse_weekday("tues"), None);
    }
}
