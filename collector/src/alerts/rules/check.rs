//! Checking raw rule files into typed rules and windows: every key's range and
//! type, metric names against the agent's catalogue, scopes, ladders, schedules.
//! Each problem is recorded with its position and checking goes on, so one run
//! reports them all.

use std::ops::Range;
use std::path::Path;

use jiff::civil::{DateTime, Time};
use jiff::tz::TimeZone;
use toml::Spanned;

use super::raw::*;
use super::{Kind, Origin, Problem, Rule};
use crate::alerts::maintenance::parse_weekday;
use crate::alerts::model::{Bound, Params, Schedule, Scope, Severity, Window};
use crate::config::line_col;
use crate::tags::check_tag;

const OS_NAMES: &[&str] = &["linux", "windows", "macos", "other"];

pub(super) struct Checker<'a> {
    pub(super) file: &'a Path,
    pub(super) src: &'a str,
    pub(super) problems: Vec<Problem>,
}

impl Checker<'_> {
    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_col(self.src, span.start);
        self.problems.push(Problem {
            file: self.file.to_owned(),
            line,
            column,
            message: message.into(),
        });
    }

    fn secs(&mut self, v: &Option<Int>, key: &str, min: i64, max: i64, default: i64) -> i64 {
        match v {
            None => default,
            Some(s) if (min..=max).contains(s.get_ref()) => *s.get_ref(),
            Some(s) => {
                self.at(
                    s.span(),
                    format!(
                        "{key} = {} is out of range (allowed {min} to {max})",
                        s.get_ref()
                    ),
                );
                default
            }
        }
    }

    fn bound(&mut self, b: &Option<Spanned<RawBound>>, key: &str) -> Option<Bound> {
        let b = b.as_ref()?;
        match (b.get_ref().above, b.get_ref().below) {
            (Some(a), None) if a.is_finite() => Some(Bound::Above(a)),
            (None, Some(x)) if x.is_finite() => Some(Bound::Below(x)),
            (Some(_), Some(_)) => {
                self.at(
                    b.span(),
                    format!("{key}: give either `above` or `below`, not both"),
                );
                None
            }
            (None, None) => {
                self.at(b.span(), format!("{key}: needs `above = N` or `below = N`"));
                None
            }
            _ => {
                self.at(
                    b.span(),
                    format!("{key}: the threshold must be a finite number"),
                );
                None
            }
        }
    }

    fn scope(&mut self, raw: &RawScope, for_rules: bool, span: Range<usize>) -> Scope {
        for os in &raw.os {
            if !OS_NAMES.contains(&os.get_ref().as_str()) {
                self.at(
                    os.span(),
                    format!(
                        "os {:?} is not one of {}",
                        os.get_ref(),
                        OS_NAMES.join(", ")
                    ),
                );
            }
        }
        for tag in &raw.tags {
            if let Err(e) = check_tag(tag.get_ref()) {
                self.at(tag.span(), format!("{e} (no device could have it)"));
            }
        }
        if for_rules && !raw.rules.is_empty() {
            self.at(
                span,
                "scope.rules belongs in a [[maintenance]] scope, not a rule's",
            );
        }
        Scope {
            tenants: raw.tenants.clone(),
            sites: raw.sites.clone(),
            tags: raw.tags.iter().map(|s| s.get_ref().clone()).collect(),
            os: raw.os.iter().map(|s| s.get_ref().clone()).collect(),
            devices: raw.devices.clone(),
            rules: raw.rules.clone(),
        }
    }

    pub(super) fn rule(&mut self, raw: &Spanned<RawRule>) -> Option<Rule> {
        let before = self.problems.len();
        let span = raw.span();
        let r = raw.get_ref();
        let name = r.name.get_ref().trim().to_owned();
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.at(r.name.span(), "name must be non-empty and without spaces");
        }
        let need_metric = |c: &mut Self| -> String {
            match &r.metric {
                Some(m) if !m.get_ref().is_empty() => {
                    let n = m.get_ref();
                    if !r.custom_metric && tandem_proto::metrics::lookup(n).is_none() {
                        let hint = match tandem_proto::metrics::closest(n) {
                            Some(k) => format!(" (did you mean {k:?}?)"),
                            None => String::new(),
                        };
                        c.at(
                            m.span(),
                            format!(
                                "rule {name:?}: unknown metric {n:?}{hint}; the agent never \
                                 sends it, so the rule would never fire (docs/METRICS.md lists \
                                 the names; set `custom_metric = true` for a metric of your own)"
                            ),
                        );
                    }
                    n.clone()
                }
                _ => {
                    c.at(
                        span.clone(),
                        format!("rule {name:?}: kind {:?} needs `metric`", r.kind.get_ref()),
                    );
                    String::new()
                }
            }
        };
        let kind = match r.kind.get_ref().as_str() {
            "threshold" => Kind::Threshold {
                metric: need_metric(self),
            },
            "rate" => {
                let per_secs = match &r.per_secs {
                    None => 1.0,
                    Some(p) if *p.get_ref() > 0.0 && p.get_ref().is_finite() => *p.get_ref(),
                    Some(p) => {
                        self.at(p.span(), "per_secs must be a positive number");
                        1.0
                    }
                };
                Kind::Rate {
                    metric: need_metric(self),
                    per_secs,
                }
            }
            "forecast" => Kind::Forecast {
                metric: need_metric(self),
                window_ms: self.secs(&r.window_secs, "window_secs", 60, 30 * 86_400, 6 * 3600)
                    * 1000,
                target: r.target.as_ref().map_or(0.0, |t| *t.get_ref()),
            },
            "offline" => {
                let share = match &r.group_share {
                    None => None,
                    Some(s) if *s.get_ref() > 0.0 && *s.get_ref() <= 1.0 => Some(*s.get_ref()),
                    Some(s) => {
                        self.at(s.span(), "group_share must be in (0, 1], e.g. 0.5 for half");
                        None
                    }
                };
                let opt = |c: &mut Self, v: &Option<Int>, key: &str| {
                    v.as_ref().map(|_| c.secs(v, key, 1, 30 * 86_400, 0) * 1000)
                };
                Kind::Offline {
                    after_ms: self.secs(&r.after_secs, "after_secs", 1, 30 * 86_400, 300) * 1000,
                    server_after_ms: opt(self, &r.server_after_secs, "server_after_secs"),
                    workstation_after_ms: opt(
                        self,
                        &r.workstation_after_secs,
                        "workstation_after_secs",
                    ),
                    group_share: share,
                    group_min_devices: self.secs(
                        &r.group_min_devices,
                        "group_min_devices",
                        1,
                        1_000_000,
                        3,
                    ) as usize,
                }
            }
            "security_update_age" => Kind::SecurityUpdateAge,
            "reboot_pending" => Kind::RebootPending,
            "service_down" => {
                let names: Vec<String> = match r.service.as_ref().map(|s| s.get_ref()) {
                    Some(RawServices::One(s)) => vec![s.clone()],
                    Some(RawServices::Many(v)) => v.clone(),
                    None => Vec::new(),
                };
                match &r.service {
                    None => self.at(
                        span.clone(),
                        format!(
                            "rule {name:?}: kind \"service_down\" needs `service` \
                             (a name, a list of names, or \"*\" for every service)"
                        ),
                    ),
                    Some(s) if names.is_empty() || names.iter().any(|n| n.trim().is_empty()) => {
                        self.at(s.span(), "service names must not be empty")
                    }
                    Some(s) if names.len() > 1 && names.iter().any(|n| n == "*") => {
                        self.at(s.span(), "\"*\" already means every service; give it alone")
                    }
                    _ => {}
                }
                Kind::ServiceDown {
                    services: names.into_iter().filter(|n| n != "*").collect(),
                }
            }
            "cert_expiry" => Kind::CertExpiry,
            other => {
                self.at(
                    r.kind.span(),
                    format!(
                        "unknown kind {other:?} (threshold, rate, forecast, offline, \
                         security_update_age, reboot_pending, service_down, cert_expiry)"
                    ),
                );
                return None;
            }
        };
        if kind.metric().is_none()
            && let Some(m) = &r.metric
        {
            self.at(
                m.span(),
                format!("`metric` does not apply to kind {:?}", r.kind.get_ref()),
            );
        }
        let warning = self.bound(&r.warning, "warning");
        let critical = self.bound(&r.critical, "critical");
        let recover = self.bound(&r.recover, "recover");
        if kind.has_fixed_severity() {
            for (b, k) in [
                (&r.warning, "warning"),
                (&r.critical, "critical"),
                (&r.recover, "recover"),
            ] {
                if let Some(b) = b {
                    self.at(
                        b.span(),
                        format!(
                            "{k} does not apply to kind {:?} (it fires at `severity`, default critical)",
                            r.kind.get_ref()
                        ),
                    );
                }
            }
        } else if warning.is_none()
            && critical.is_none()
            && r.warning.is_none()
            && r.critical.is_none()
        {
            self.at(
                span.clone(),
                format!(
                    "rule {name:?} needs `warning` or `critical` (e.g. warning = {{ above = 90 }})"
                ),
            );
        }
        if let (Some(w), Some(c)) = (warning, critical) {
            let inverted = match (w, c) {
                (Bound::Above(w), Bound::Above(c)) => c < w,
                (Bound::Below(w), Bound::Below(c)) => c > w,
                _ => true,
            };
            if inverted && let Some(c) = &r.critical {
                self.at(
                    c.span(),
                    "critical must be stricter than warning, in the same direction",
                );
            }
        }
        if let (Some(rec), Some(trig)) = (recover, warning.or(critical)) {
            let overlaps = match (trig, rec) {
                (Bound::Above(t), Bound::Below(x)) => x > t,
                (Bound::Below(t), Bound::Above(x)) => x < t,
                _ => true,
            };
            if overlaps && let Some(rr) = &r.recover {
                self.at(
                    rr.span(),
                    "recover must point the other way from the trigger and not overlap it \
                     (e.g. warning = { above = 90 }, recover = { below = 80 })",
                );
            }
        }
        let severity = match &r.severity {
            None => Severity::Critical,
            Some(s) => Severity::parse(s.get_ref()).unwrap_or_else(|| {
                self.at(
                    s.span(),
                    format!(
                        "severity {:?} is not \"warning\" or \"critical\"",
                        s.get_ref()
                    ),
                );
                Severity::Critical
            }),
        };
        let tick_kind = matches!(
            kind,
            Kind::Offline { .. } | Kind::SecurityUpdateAge | Kind::RebootPending
        );
        let params = Params {
            for_ms: self.secs(&r.for_secs, "for_secs", 0, 30 * 86_400, 0) * 1000,
            min_samples: self.secs(&r.min_samples, "min_samples", 1, 100_000, 1) as u32,
            clear_for_ms: self.secs(&r.clear_for_secs, "clear_for_secs", 0, 30 * 86_400, 0) * 1000,
            nodata_after_ms: self.secs(
                &r.nodata_after_secs,
                "nodata_after_secs",
                1,
                30 * 86_400,
                if tick_kind { 30 * 86_400 } else { 300 },
            ) * 1000,
            flap_window_ms: self.secs(&r.flap_window_secs, "flap_window_secs", 1, 7 * 86_400, 3600)
                * 1000,
            flap_max: self.secs(&r.flap_max, "flap_max", 1, 10_000, 6) as u32,
        };
        let scope = self.scope(&r.scope, true, span.clone());
        let dimension = r
            .dimension
            .as_ref()
            .map(|d| d.get_ref().clone())
            .filter(|d| d != "*");
        if self.problems.len() > before {
            return None;
        }
        let (line, _) = line_col(self.src, span.start);
        Some(Rule {
            summary: r.summary.clone(),
            name,
            kind,
            dimension,
            scope,
            warning,
            critical,
            recover,
            severity,
            params,
            origin: Origin {
                file: self.file.to_owned(),
                line,
            },
        })
    }

    pub(super) fn window(&mut self, raw: &Spanned<RawWindow>) -> Option<Window> {
        let before = self.problems.len();
        let span = raw.span();
        let w = raw.get_ref();
        let tz = match &w.tz {
            None => TimeZone::UTC,
            Some(name) => match TimeZone::get(name.get_ref()) {
                Ok(tz) => tz,
                Err(_) => {
                    self.at(
                        name.span(),
                        format!(
                            "tz {:?} is not an IANA time zone name such as \"Europe/Berlin\"",
                            name.get_ref()
                        ),
                    );
                    TimeZone::UTC
                }
            },
        };
        let civil = |c: &mut Self, v: &Str, key: &str| -> Option<DateTime> {
            v.get_ref().parse::<DateTime>().ok().or_else(|| {
                c.at(
                    v.span(),
                    format!(
                        "{key} = {:?} is not a local date-time such as \"2026-03-29T01:00\"",
                        v.get_ref()
                    ),
                );
                None
            })
        };
        let time = |c: &mut Self, v: &Str, key: &str| -> Option<Time> {
            v.get_ref().parse::<Time>().ok().or_else(|| {
                c.at(
                    v.span(),
                    format!(
                        "{key} = {:?} is not a time of day such as \"22:00\"",
                        v.get_ref()
                    ),
                );
                None
            })
        };
        let once = w.start.is_some() || w.end.is_some();
        let weekly = !w.weekdays.is_empty() || w.from.is_some() || w.to.is_some();
        if w.rrule.is_none()
            && let Some(d) = &w.duration_secs
        {
            self.at(
                d.span(),
                "duration_secs goes with rrule; a one-off window uses start and end",
            );
        }
        let schedule = if let Some(rule) = &w.rrule {
            if weekly {
                self.at(
                    span.clone(),
                    "a window with rrule takes start and duration_secs, not weekdays, from or to",
                );
            }
            if let Some(e) = &w.end {
                self.at(
                    e.span(),
                    "with rrule, give duration_secs (each occurrence's length) instead of end",
                );
            }
            let dtstart = match &w.start {
                Some(s) => civil(self, s, "start"),
                None => {
                    self.at(
                        span.clone(),
                        "a recurring window needs start (its first occurrence, local time)",
                    );
                    None
                }
            };
            let duration = match &w.duration_secs {
                None => {
                    self.at(
                        span.clone(),
                        "a recurring window needs duration_secs (each occurrence's length)",
                    );
                    None
                }
                Some(_) => Some(self.secs(
                    &w.duration_secs,
                    "duration_secs",
                    1,
                    crate::alerts::rrule::MAX_DURATION_MS / 1000,
                    3600,
                )),
            };
            let parsed = match crate::alerts::rrule::parse(rule.get_ref()) {
                Ok(r) => Some(r),
                Err(e) => {
                    // Past the opening quote; exact for strings without escapes.
                    let at = rule.span().start + 1 + e.offset;
                    self.at(at..at, format!("rrule: {}", e.message));
                    None
                }
            };
            match (parsed, dtstart, duration) {
                (Some(r), Some(start), Some(secs)) => Some(Schedule::Recurring(
                    crate::alerts::rrule::Series::new(r, start, secs * 1000, &tz),
                )),
                _ => None,
            }
        } else {
            self.fixed_schedule(w, once, weekly, span.clone(), civil, time)
        };
        let scope = self.scope(&w.scope, false, span);
        if self.problems.len() > before {
            return None;
        }
        Some(Window {
            name: w.name.get_ref().clone(),
            tz,
            schedule: schedule?,
            scope,
        })
    }

    /// A one-off or weekly window's schedule.
    fn fixed_schedule(
        &mut self,
        w: &RawWindow,
        once: bool,
        weekly: bool,
        span: Range<usize>,
        civil: impl Fn(&mut Self, &Str, &str) -> Option<DateTime>,
        time: impl Fn(&mut Self, &Str, &str) -> Option<Time>,
    ) -> Option<Schedule> {
        match (once, weekly) {
            (true, true) => {
                self.at(span.clone(), "a window is either one-off (start, end) or weekly (weekdays, from, to), not both");
                None
            }
            (false, false) => {
                self.at(
                    span.clone(),
                    "a window needs start and end, or weekdays, from and to",
                );
                None
            }
            (true, false) => match (&w.start, &w.end) {
                (Some(s), Some(e)) => {
                    let (s2, e2) = (civil(self, s, "start"), civil(self, e, "end"));
                    match (s2, e2) {
                        (Some(a), Some(b)) if a < b => Some(Schedule::Once { start: a, end: b }),
                        (Some(_), Some(_)) => {
                            self.at(e.span(), "end must be after start");
                            None
                        }
                        _ => None,
                    }
                }
                _ => {
                    self.at(span.clone(), "a one-off window needs both start and end");
                    None
                }
            },
            (false, true) => {
                let mut days = Vec::new();
                for d in &w.weekdays {
                    match parse_weekday(d.get_ref()) {
                        Some(day) => days.push(day),
                        None => self.at(
                            d.span(),
                            format!("{:?} is not a weekday (mon, tue, … sun)", d.get_ref()),
                        ),
                    }
                }
                if w.weekdays.is_empty() {
                    self.at(
                        span.clone(),
                        "a weekly window needs weekdays = [\"mon\", …]",
                    );
                }
                match (&w.from, &w.to) {
                    (Some(f), Some(t)) => {
                        let (f2, t2) = (time(self, f, "from"), time(self, t, "to"));
                        match (f2, t2) {
                            (Some(a), Some(b)) if a != b => Some(Schedule::Weekly {
                                days,
                                from: a,
                                to: b,
                            }),
                            (Some(_), Some(_)) => {
                                self.at(t.span(), "to must differ from from");
                                None
                            }
                            _ => None,
                        }
                    }
                    _ => {
                        self.at(span.clone(), "a weekly window needs both from and to");
                        None
                    }
                }
            }
        }
    }
}
