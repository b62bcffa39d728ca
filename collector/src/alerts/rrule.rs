//! Recurrence rules for maintenance windows: the subset of RFC 5545 RRULE that MSPs
//! write ("every second Tuesday 22:00 for 4 hours", "weekdays 02:00", "last Sunday of
//! the month"), evaluated in the civil time of a named IANA zone.
//!
//! Supported: `FREQ=DAILY|WEEKLY|MONTHLY`, `INTERVAL`, `BYDAY` (with an ordinal such as
//! `2TU` or `-1SU` for MONTHLY), `BYMONTHDAY` (negative counts from the month's end),
//! `BYHOUR`, `BYMINUTE`, `COUNT`, `UNTIL`, and `WKST=MO`. Anything else is refused with
//! the offset of the part that is not supported, so the rule checker can point at it.
//!
//! Semantics follow RFC 5545: DTSTART is the first occurrence's local start and counts
//! as one if it matches the rule; BYxxx parts limit or expand as in its table (MONTHLY
//! without BYDAY/BYMONTHDAY repeats DTSTART's day of the month and skips months
//! without it); times default to DTSTART's. A local start that falls in a DST gap
//! moves later by the gap, one in a repeated hour takes the earlier instant (the RFC's
//! rule, jiff's "compatible"). Durations are exact (a 4 h window is 4 real hours, also
//! across a DST change).
//!
//! Pure: no clock, no I/O.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::TimeZone;

/// How often the rule repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freq {
    Daily,
    Weekly,
    Monthly,
}

/// A checked recurrence (without its DTSTART, which the window holds).
#[derive(Debug, Clone, PartialEq)]
pub struct Recurrence {
    pub(crate) freq: Freq,
    pub(crate) interval: u32,
    /// `(ordinal, weekday)`: `(Some(2), Tuesday)` is the second Tuesday (MONTHLY only).
    pub(crate) by_day: Vec<(Option<i8>, Weekday)>,
    pub(crate) by_month_day: Vec<i8>,
    pub(crate) by_hour: Vec<i8>,
    pub(crate) by_minute: Vec<i8>,
    pub(crate) count: Option<u32>,
    pub(crate) until: Option<Until>,
}

/// `UNTIL`: an instant (`...Z`) or a local date-time or date in the window's zone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Until {
    Utc(Timestamp),
    Local(DateTime),
}

/// A problem in an RRULE string: byte offset of the offending part, and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RruleError {
    pub(crate) offset: usize,
    pub(crate) message: String,
}

/// Longest COUNT accepted: the occurrences are enumerated once, when the rule is read.
const MAX_COUNT: u32 = 10_000;

fn weekday_code(s: &str) -> Option<Weekday> {
    Some(match s {
        "MO" => Weekday::Monday,
        "TU" => Weekday::Tuesday,
        "WE" => Weekday::Wednesday,
        "TH" => Weekday::Thursday,
        "FR" => Weekday::Friday,
        "SA" => Weekday::Saturday,
        "SU" => Weekday::Sunday,
        _ => return None,
    })
}

/// Parses an RRULE value (an optional `RRULE:` prefix is allowed).
pub(crate) fn parse(text: &str) -> Result<Recurrence, RruleError> {
    let err = |offset: usize, message: String| RruleError { offset, message };
    let (mut offset, body) = match text.strip_prefix("RRULE:") {
        Some(rest) => (6, rest),
        None => (0, text),
    };
    let mut freq = None;
    let mut interval = None;
    let mut by_day = None;
    let mut by_month_day = None;
    let mut by_hour = None;
    let mut by_minute = None;
    let mut count = None;
    let mut until = None;
    let mut seen: Vec<String> = Vec::new();
    for part in body.split(';') {
        let at = offset;
        offset += part.len() + 1;
        if part.is_empty() {
            continue;
        }
        let Some((name, value)) = part.split_once('=') else {
            return Err(err(at, format!("{part:?} is not NAME=VALUE")));
        };
        let name_uc = name.to_ascii_uppercase();
        let value_uc = value.to_ascii_uppercase();
        if seen.contains(&name_uc) {
            return Err(err(at, format!("{name_uc} is given twice")));
        }
        seen.push(name_uc.clone());
        let vat = at + name.len() + 1;
        let list = |lo: i64, hi: i64, zero: bool| -> Result<Vec<i8>, RruleError> {
            let mut out = Vec::new();
            let mut o = vat;
            for item in value.split(',') {
                let n: i64 = item
                    .trim()
                    .parse()
                    .map_err(|_| err(o, format!("{name_uc}: {item:?} is not a whole number")))?;
                if n < lo || n > hi || (!zero && n == 0) {
                    return Err(err(
                        o,
                        format!("{name_uc}: {n} is out of range ({lo} to {hi})"),
                    ));
                }
                out.push(n as i8);
                o += item.len() + 1;
            }
            Ok(out)
        };
        match name_uc.as_str() {
            "FREQ" => {
                freq = Some(match value_uc.as_str() {
                    "DAILY" => Freq::Daily,
                    "WEEKLY" => Freq::Weekly,
                    "MONTHLY" => Freq::Monthly,
                    "YEARLY" | "HOURLY" | "MINUTELY" | "SECONDLY" => {
                        return Err(err(
                            vat,
                            format!("FREQ={value_uc} is not supported (DAILY, WEEKLY, MONTHLY)"),
                        ));
                    }
                    _ => return Err(err(vat, format!("FREQ={value:?} is not a frequency"))),
                })
            }
            "INTERVAL" => {
                let n: u32 = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| err(vat, format!("INTERVAL={value:?} must be 1 to 1000")))?;
                interval = Some(n);
            }
            "COUNT" => {
                let n: u32 = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_COUNT).contains(n))
                    .ok_or_else(|| {
                        err(vat, format!("COUNT={value:?} must be 1 to {MAX_COUNT}"))
                    })?;
                count = Some(n);
            }
            "UNTIL" => until = Some(parse_until(&value_uc).ok_or_else(|| {
                err(
                    vat,
                    format!(
                        "UNTIL={value:?} is not 20261231, 20261231T235959 (local) or 20261231T235959Z (UTC)"
                    ),
                )
            })?),
            "BYDAY" => {
                let mut out = Vec::new();
                let mut o = vat;
                for item in value_uc.split(',') {
                    let item = item.trim();
                    let split = item.len().saturating_sub(2);
                    let (ord, day) = item.split_at(split);
                    let wd = weekday_code(day).ok_or_else(|| {
                        err(o, format!("BYDAY: {item:?} is not a weekday (MO, TU, … SU, or 2TU, -1SU)"))
                    })?;
                    let ord = if ord.is_empty() {
                        None
                    } else {
                        let n: i8 = ord.trim_start_matches('+').parse().map_err(|_| {
                            err(o, format!("BYDAY: {item:?} has a bad ordinal"))
                        })?;
                        if n == 0 || !(-5..=5).contains(&n) {
                            return Err(err(
                                o,
                                format!("BYDAY: ordinal {n} must be 1 to 5 or -1 to -5"),
                            ));
                        }
                        Some(n)
                    };
                    out.push((ord, wd));
                    o += item.len() + 1;
                }
                by_day = Some((vat, out));
            }
            "BYMONTHDAY" => by_month_day = Some((vat, list(-31, 31, false)?)),
            "BYHOUR" => by_hour = Some(list(0, 23, true)?),
            "BYMINUTE" => by_minute = Some(list(0, 59, true)?),
            "WKST" => {
                if value_uc != "MO" {
                    return Err(err(
                        vat,
                        format!("WKST={value_uc} is not supported (weeks start on Monday, WKST=MO)"),
                    ));
                }
            }
            "BYSETPOS" | "BYYEARDAY" | "BYWEEKNO" | "BYMONTH" | "BYSECOND" => {
                return Err(err(
                    at,
                    format!(
                        "{name_uc} is not supported (FREQ, INTERVAL, BYDAY, BYMONTHDAY, BYHOUR, \
                         BYMINUTE, COUNT, UNTIL, WKST)"
                    ),
                ));
            }
            _ => return Err(err(at, format!("{name_uc} is not an RRULE part"))),
        }
    }
    let freq = freq.ok_or_else(|| err(0, "FREQ is required (e.g. FREQ=WEEKLY)".into()))?;
    if count.is_some() && until.is_some() {
        return Err(err(0, "give COUNT or UNTIL, not both".into()));
    }
    let (day_at, by_day) = by_day.unwrap_or((0, Vec::new()));
    if freq != Freq::Monthly && by_day.iter().any(|(o, _)| o.is_some()) {
        return Err(err(
            day_at,
            "BYDAY ordinals (2TU, -1SU) need FREQ=MONTHLY".into(),
        ));
    }
    let (md_at, by_month_day) = by_month_day.unwrap_or((0, Vec::new()));
    if freq == Freq::Weekly && !by_month_day.is_empty() {
        return Err(err(md_at, "BYMONTHDAY does not go with FREQ=WEEKLY".into()));
    }
    Ok(Recurrence {
        freq,
        interval: interval.unwrap_or(1),
        by_day,
        by_month_day,
        by_hour: by_hour.unwrap_or_default(),
        by_minute: by_minute.unwrap_or_default(),
        count,
        until,
    })
}

fn parse_until(v: &str) -> Option<Until> {
    let num = |s: &str| -> Option<i16> { s.parse().ok() };
    let date = |s: &str| -> Option<Date> {
        if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Date::new(num(&s[0..4])?, num(&s[4..6])? as i8, num(&s[6..8])? as i8).ok()
    };
    match v.split_once('T') {
        None => Some(Until::Local(
            date(v)?.to_datetime(Time::new(23, 59, 59, 0).ok()?),
        )),
        Some((d, t)) => {
            let (t, utc) = match t.strip_suffix('Z') {
                Some(t) => (t, true),
                None => (t, false),
            };
            if t.len() != 6 || !t.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let time = Time::new(
                num(&t[0..2])? as i8,
                num(&t[2..4])? as i8,
                num(&t[4..6])? as i8,
                0,
            )
            .ok()?;
            let dt = date(d)?.to_datetime(time);
            if utc {
                Some(Until::Utc(
                    TimeZone::UTC
                        .to_ambiguous_timestamp(dt)
                        .unambiguous()
                        .ok()?,
                ))
            } else {
                Some(Until::Local(dt))
            }
        }
    }
}

/// The instant of a local date-time: a gap moves later, a fold takes the earlier.
pub(crate) fn instant(tz: &TimeZone, dt: DateTime) -> Option<i64> {
    tz.to_ambiguous_zoned_datetime(dt)
        .compatible()
        .ok()
        .map(|z| z.timestamp().as_millisecond())
}

fn days_between(from: Date, to: Date) -> i64 {
    to.duration_since(from).as_secs().div_euclid(86_400)
}

fn monday_of(d: Date) -> Option<Date> {
    let back = i64::from(d.weekday().to_monday_zero_offset());
    d.checked_sub(jiff::Span::new().days(back)).ok()
}

/// A recurring window: the rule, its DTSTART, how long each occurrence lasts.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub(crate) rule: Recurrence,
    pub(crate) dtstart: DateTime,
    pub(crate) duration_ms: i64,
    /// The latest start an occurrence may have (from UNTIL, or the COUNT-th start).
    last_start_ms: Option<i64>,
}

/// Longest occurrence: the lookback of [`Series::active_at`] is this long.
pub(crate) const MAX_DURATION_MS: i64 = 31 * 86_400_000;

impl Series {
    /// Builds a series; COUNT is resolved here (the COUNT-th occurrence's start).
    pub(crate) fn new(
        rule: Recurrence,
        dtstart: DateTime,
        duration_ms: i64,
        tz: &TimeZone,
    ) -> Self {
        let mut s = Series {
            last_start_ms: match rule.until {
                Some(Until::Utc(t)) => Some(t.as_millisecond()),
                Some(Until::Local(dt)) => instant(tz, dt),
                None => None,
            },
            rule,
            dtstart,
            duration_ms,
        };
        if let Some(n) = s.rule.count {
            s.last_start_ms = s.nth_start(n, tz);
        }
        s
    }

    /// The local start of the `n`-th occurrence (1-based), as an instant.
    fn nth_start(&self, n: u32, tz: &TimeZone) -> Option<i64> {
        let mut seen = 0;
        let mut last = None;
        let mut d = self.dtstart.date();
        // Two centuries of days bound the search; a COUNT not reached by then ends
        // with the last occurrence found.
        for _ in 0..73_050 {
            for dt in self.starts_on(d) {
                seen += 1;
                last = instant(tz, dt);
                if seen == n {
                    return last;
                }
            }
            d = d.tomorrow().ok()?;
        }
        last
    }

    /// Whether day `d` is one the rule's period and BYxxx parts select.
    fn day_matches(&self, d: Date) -> bool {
        let r = &self.rule;
        let start = self.dtstart.date();
        if d < start {
            return false;
        }
        let interval = i64::from(r.interval);
        let in_period = match r.freq {
            Freq::Daily => days_between(start, d) % interval == 0,
            Freq::Weekly => match (monday_of(start), monday_of(d)) {
                (Some(a), Some(b)) => (days_between(a, b) / 7) % interval == 0,
                _ => false,
            },
            Freq::Monthly => {
                let months = (i64::from(d.year()) * 12 + i64::from(d.month()))
                    - (i64::from(start.year()) * 12 + i64::from(start.month()));
                months % interval == 0
            }
        };
        if !in_period {
            return false;
        }
        let dim = d.days_in_month();
        let month_day_ok = |md: i8| {
            if md > 0 {
                d.day() == md
            } else {
                d.day() == dim + 1 + md
            }
        };
        let day_ok = |(ord, wd): (Option<i8>, Weekday)| {
            d.weekday() == wd
                && match ord {
                    None => true,
                    Some(n) if n > 0 => (d.day() - 1) / 7 + 1 == n,
                    Some(n) => (dim - d.day()) / 7 + 1 == -n,
                }
        };
        match r.freq {
            Freq::Daily => {
                (r.by_day.is_empty() || r.by_day.iter().any(|&x| day_ok(x)))
                    && (r.by_month_day.is_empty()
                        || r.by_month_day.iter().any(|&m| month_day_ok(m)))
            }
            Freq::Weekly => {
                if r.by_day.is_empty() {
                    d.weekday() == start.weekday()
                } else {
                    r.by_day.iter().any(|&x| day_ok(x))
                }
            }
            Freq::Monthly => {
                if r.by_day.is_empty() && r.by_month_day.is_empty() {
                    d.day() == start.day()
                } else {
                    (r.by_day.is_empty() || r.by_day.iter().any(|&x| day_ok(x)))
                        && (r.by_month_day.is_empty()
                            || r.by_month_day.iter().any(|&m| month_day_ok(m)))
                }
            }
        }
    }

    /// The local starts of the occurrences on day `d`, in order.
    fn starts_on(&self, d: Date) -> Vec<DateTime> {
        if !self.day_matches(d) {
            return Vec::new();
        }
        let hours = if self.rule.by_hour.is_empty() {
            vec![self.dtstart.hour()]
        } else {
            let mut h = self.rule.by_hour.clone();
            h.sort_unstable();
            h.dedup();
            h
        };
        let minutes = if self.rule.by_minute.is_empty() {
            vec![self.dtstart.minute()]
        } else {
            let mut m = self.rule.by_minute.clone();
            m.sort_unstable();
            m.dedup();
            m
        };
        let mut out = Vec::new();
        for &h in &hours {
            for &m in &minutes {
                if let Ok(t) = Time::new(h, m, self.dtstart.second(), 0) {
                    let dt = d.to_datetime(t);
                    if dt >= self.dtstart {
                        out.push(dt);
                    }
                }
            }
        }
        out
    }

    /// The start instant of the occurrence covering `now_ms`, if any (start
    /// inclusive, end exclusive).
    pub(crate) fn covering(&self, tz: &TimeZone, now_ms: i64) -> Option<i64> {
        let today = Timestamp::from_millisecond(now_ms)
            .ok()?
            .to_zoned_datetime(tz.clone())
            .date();
        // An occurrence covering now started at most `duration` (plus a day of zone
        // offset) before it.
        let back = self.duration_ms / 86_400_000 + 2;
        let mut d = today.checked_sub(jiff::Span::new().days(back)).ok()?;
        while d <= today {
            for dt in self.starts_on(d) {
                let Some(s) = instant(tz, dt) else { continue };
                if self.last_start_ms.is_some_and(|last| s > last) {
                    return None;
                }
                if s <= now_ms && now_ms < s + self.duration_ms {
                    return Some(s);
                }
            }
            d = d.tomorrow().ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn series(rule: &str, tz: &str, start: &str, hours: f64) -> (Series, TimeZone) {
        let tz = TimeZone::get(tz).unwrap();
        let s = Series::new(
            parse(rule).unwrap(),
            start.parse().unwrap(),
            (hours * 3_600_000.0) as i64,
            &tz,
        );
        (s, tz)
    }

    /// Occurrence starts (UTC, RFC 3339) found by scanning minute by minute.
    fn starts(s: &Series, tz: &TimeZone, from: &str, to: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut t = ms(from);
        let mut last = None;
        while t < ms(to) {
            let c = s.covering(tz, t);
            if let Some(start) = c
                && c != last
            {
                out.push(Timestamp::from_millisecond(start).unwrap().to_string());
            }
            last = c;
            t += 60_000;
        }
        out
    }

    #[test]
    fn patch_tuesday_is_the_second_tuesday_of_each_month() {
        // 22:00 Berlin for 4 h, from January 2026.
        let (s, tz) = series(
            "FREQ=MONTHLY;BYDAY=2TU",
            "Europe/Berlin",
            "2026-01-13T22:00",
            4.0,
        );
        let got = starts(&s, &tz, "2026-01-01T00:00:00Z", "2026-05-01T00:00:00Z");
        assert_eq!(
            got,
            [
                "2026-01-13T21:00:00Z", // CET
                "2026-02-10T21:00:00Z",
                "2026-03-10T21:00:00Z",
                "2026-04-14T20:00:00Z", // CEST: still 22:00 local
            ]
        );
        assert!(s.covering(&tz, ms("2026-02-11T00:59:59Z")).is_some());
        assert!(
            s.covering(&tz, ms("2026-02-11T01:00:00Z")).is_none(),
            "4 h, end exclusive"
        );
    }

    #[test]
    fn last_sunday_and_negative_month_days() {
        let (s, tz) = series("FREQ=MONTHLY;BYDAY=-1SU", "UTC", "2026-01-01T03:00", 1.0);
        let got = starts(&s, &tz, "2026-01-01T00:00:00Z", "2026-04-01T00:00:00Z");
        assert_eq!(
            got,
            [
                "2026-01-25T03:00:00Z",
                "2026-02-22T03:00:00Z",
                "2026-03-29T03:00:00Z"
            ]
        );
        let (s, tz) = series("FREQ=MONTHLY;BYMONTHDAY=-1", "UTC", "2026-01-31T23:00", 0.5);
        let got = starts(&s, &tz, "2026-01-01T00:00:00Z", "2026-04-01T00:00:00Z");
        assert_eq!(
            got,
            [
                "2026-01-31T23:00:00Z",
                "2026-02-28T23:00:00Z",
                "2026-03-31T23:00:00Z"
            ]
        );
        // Without BYxxx, MONTHLY repeats DTSTART's day and skips months without it.
        let (s, tz) = series("FREQ=MONTHLY", "UTC", "2026-01-31T23:00", 0.5);
        let got = starts(&s, &tz, "2026-01-01T00:00:00Z", "2026-04-01T00:00:00Z");
        assert_eq!(got, ["2026-01-31T23:00:00Z", "2026-03-31T23:00:00Z"]);
    }

    #[test]
    fn weekly_with_interval_byday_and_count() {
        // Every other week, Mon and Thu at 01:00 UTC, 5 times.
        let (s, tz) = series(
            "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH;COUNT=5",
            "UTC",
            "2026-03-05T01:00", // a Thursday
            1.0,
        );
        let got = starts(&s, &tz, "2026-03-01T00:00:00Z", "2026-05-01T00:00:00Z");
        assert_eq!(
            got,
            [
                "2026-03-05T01:00:00Z", // Thu, week of Mar 2
                "2026-03-16T01:00:00Z", // Mon, week of Mar 16
                "2026-03-19T01:00:00Z",
                "2026-03-30T01:00:00Z",
                "2026-04-02T01:00:00Z", // the 5th: COUNT ends it
            ]
        );
    }

    #[test]
    fn daily_with_byhour_byminute_and_until() {
        let (s, tz) = series(
            "FREQ=DAILY;BYHOUR=2,14;BYMINUTE=30;UNTIL=20260303T120000Z",
            "UTC",
            "2026-03-01T00:00",
            0.25,
        );
        let got = starts(&s, &tz, "2026-03-01T00:00:00Z", "2026-03-06T00:00:00Z");
        assert_eq!(
            got,
            [
                "2026-03-01T02:30:00Z",
                "2026-03-01T14:30:00Z",
                "2026-03-02T02:30:00Z",
                "2026-03-02T14:30:00Z",
                "2026-03-03T02:30:00Z",
            ]
        );
        // Weekdays only, every 2 days from a Monday: Mon, Wed, Fri, (Sun skipped), Tue…
        let (s, tz) = series(
            "FREQ=DAILY;INTERVAL=2;BYDAY=MO,TU,WE,TH,FR",
            "UTC",
            "2026-03-02T06:00",
            1.0,
        );
        let got = starts(&s, &tz, "2026-03-02T00:00:00Z", "2026-03-11T00:00:00Z");
        assert_eq!(
            got,
            [
                "2026-03-02T06:00:00Z",
                "2026-03-04T06:00:00Z",
                "2026-03-06T06:00:00Z",
                "2026-03-10T06:00:00Z",
            ]
        );
    }

    #[test]
    fn a_0230_window_on_the_spring_forward_day_starts_at_0330_local() {
        // Berlin 2026-03-29: 02:00 CET → 03:00 CEST; 02:30 does not exist.
        let (s, tz) = series("FREQ=DAILY", "Europe/Berlin", "2026-03-27T02:30", 1.0);
        let got = starts(&s, &tz, "2026-03-27T00:00:00Z", "2026-03-31T00:00:00Z");
        assert_eq!(
            got,
            [
                "2026-03-27T01:30:00Z", // 02:30 CET
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:30:00Z", // moved later by the gap: 03:30 CEST
                "2026-03-30T00:30:00Z", // 02:30 CEST
            ]
        );
        assert!(
            s.covering(&tz, ms("2026-03-29T02:29:59Z")).is_some(),
            "1 real hour"
        );
        assert!(s.covering(&tz, ms("2026-03-29T02:30:00Z")).is_none());
    }

    #[test]
    fn an_occurrence_in_the_repeated_autumn_hour_takes_the_earlier_instant() {
        // Berlin 2026-10-25: 03:00 CEST → 02:00 CET; 02:30 happens twice. Duration is
        // exact: 30 minutes from the first 02:30.
        let (s, tz) = series(
            "FREQ=WEEKLY;BYDAY=SU",
            "Europe/Berlin",
            "2026-10-18T02:30",
            0.5,
        );
        let got = starts(&s, &tz, "2026-10-17T00:00:00Z", "2026-11-02T00:00:00Z");
        assert_eq!(
            got,
            [
                "2026-10-18T00:30:00Z", // CEST
                "2026-10-25T00:30:00Z", // the first 02:30 (CEST)
                "2026-11-01T01:30:00Z", // CET
            ]
        );
        assert!(
            s.covering(&tz, ms("2026-10-25T01:30:00Z")).is_none(),
            "the second 02:30 (CET) is not another occurrence"
        );
    }

    #[test]
    fn unsupported_and_bad_parts_say_where() {
        let e = |s: &str| parse(s).unwrap_err();
        assert_eq!(e("FREQ=YEARLY").offset, 5);
        assert!(e("FREQ=YEARLY").message.contains("not supported"));
        let x = e("FREQ=MONTHLY;BYSETPOS=2;BYDAY=TU");
        assert_eq!(
            (x.offset, x.message.starts_with("BYSETPOS is not supported")),
            (13, true)
        );
        let x = e("FREQ=MONTHLY;BYDAY=TU,6TU");
        assert_eq!(x.offset, 22, "{x:?}");
        let x = e("FREQ=WEEKLY;BYDAY=2TU");
        assert!(x.message.contains("need FREQ=MONTHLY"), "{x:?}");
        assert!(e("BYDAY=TU").message.contains("FREQ is required"));
        assert!(
            e("FREQ=DAILY;COUNT=2;UNTIL=20260101")
                .message
                .contains("not both")
        );
        assert!(e("FREQ=DAILY;BYHOUR=24").message.contains("out of range"));
        assert!(e("FREQ=DAILY;UNTIL=2026-01-01").message.contains("UNTIL"));
        assert!(e("FREQ=DAILY;FREQ=WEEKLY").message.contains("twice"));
        assert!(e("FREQ=DAILY;WKST=SU").message.contains("WKST"));
        assert!(parse("RRULE:FREQ=DAILY;WKST=MO").is_ok());
    }
}
