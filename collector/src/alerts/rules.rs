//! Rule files: TOML in a directory (`*.toml`, several per directory), each holding
//! `[[rule]]` and `[[maintenance]]` tables. Parsed into raw serde forms (unknown keys
//! refused) and checked into a typed [`RuleSet`], reporting *every* problem at once
//! with file, line and column — so `rules check` and a reload can say exactly what
//! is wrong, and a bad edit never half-applies.
//!
//! The reference for users is docs/ALERTS.md.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use jiff::civil::{DateTime, Time};
use jiff::tz::TimeZone;
use serde::Deserialize;
use toml::Spanned;

use super::machine::{Params, Verdict};
use super::maintenance::{Schedule, Window, parse_weekday};
use crate::config::line_col;

/// Severity of a firing alert; a rule may have a ladder (warning, then critical).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// A one-sided threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    Above(f64),
    Below(f64),
}

impl Bound {
    pub fn holds(self, v: f64) -> bool {
        match self {
            Bound::Above(t) => v > t,
            Bound::Below(t) => v < t,
        }
    }
}

/// Which devices (and, for maintenance, which rules) something applies to. An empty
/// list means "any". A device's site is the one it enrolled into; its tags are the
/// ones an operator gave it (`device tag`); `tags` matches a device with any of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scope {
    pub tenants: Vec<String>,
    pub sites: Vec<String>,
    pub tags: Vec<String>,
    pub os: Vec<String>,
    pub devices: Vec<String>,
    pub rules: Vec<String>,
}

/// What a scope is matched against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target<'a> {
    pub tenant: &'a str,
    pub device_id: &'a str,
    pub os_family: &'a str,
    pub site: Option<&'a str>,
    pub tags: &'a [String],
    pub rule: &'a str,
}

/// Checks a device tag's text: 1-63 characters of lowercase ASCII letters, digits
/// and `- _ . : =`, starting with a letter or digit (e.g. `server`, `env:prod`).
/// The error says what is wrong with it.
pub fn check_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() || tag.len() > 63 {
        return Err(format!("tag {tag:?} must be 1 to 63 characters"));
    }
    if let Some(c) = tag.chars().find(|c| {
        !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.' | ':' | '='))
    }) {
        let hint = if c.is_ascii_uppercase() {
            " (tags are lowercase)"
        } else {
            ""
        };
        return Err(format!(
            "tag {tag:?} contains {c:?}{hint}; use lowercase letters, digits and - _ . : ="
        ));
    }
    if !tag.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("tag {tag:?} must start with a letter or digit"));
    }
    Ok(())
}

impl<'a> Target<'a> {
    /// A device with no site and no tags (set them on the result if it has any).
    pub fn device(tenant: &'a str, device_id: &'a str, os_family: &'a str, rule: &'a str) -> Self {
        Target {
            tenant,
            device_id,
            os_family,
            site: None,
            tags: &[],
            rule,
        }
    }
}

impl Scope {
    pub fn matches(&self, t: &Target<'_>) -> bool {
        fn any_or(list: &[String], v: &str) -> bool {
            list.is_empty() || list.iter().any(|x| x == v)
        }
        any_or(&self.tenants, t.tenant)
            && any_or(&self.os, t.os_family)
            && any_or(&self.devices, t.device_id)
            && any_or(&self.rules, t.rule)
            && (self.sites.is_empty() || t.site.is_some_and(|s| self.sites.iter().any(|x| x == s)))
            && (self.tags.is_empty() || t.tags.iter().any(|tag| self.tags.contains(tag)))
    }
}

/// What a rule looks at.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// The metric's value.
    Threshold { metric: String },
    /// Change of the metric per `per_secs` between consecutive samples.
    Rate { metric: String, per_secs: f64 },
    /// Seconds until a linear fit over `window_ms` reaches `target` (as `predict_linear`).
    Forecast {
        metric: String,
        window_ms: i64,
        target: f64,
    },
    /// No data from the device for longer than its limit (servers and workstations
    /// may have their own); `group_share` of a tenant dark at once raises one group
    /// alert instead.
    Offline {
        after_ms: i64,
        server_after_ms: Option<i64>,
        workstation_after_ms: Option<i64>,
        group_share: Option<f64>,
        group_min_devices: usize,
    },
    /// Days the oldest pending security update has waited.
    SecurityUpdateAge,
    /// Days a required reboot has been pending.
    RebootPending,
    /// A service the agent watches is not running: the agent's `service.up{name}`
    /// is 0 (1 when running). One instance per device × service. `services` empty =
    /// every service the agent reports (`service = "*"`).
    ServiceDown { services: Vec<String> },
    /// Days until the device's newest certificate expires (from the collector's
    /// record of issued certificates).
    CertExpiry,
}

impl Kind {
    pub fn metric(&self) -> Option<&str> {
        match self {
            Kind::Threshold { metric }
            | Kind::Rate { metric, .. }
            | Kind::Forecast { metric, .. } => Some(metric),
            _ => None,
        }
    }

    /// The agent metric whose samples move this kind's instances, if any.
    pub fn source_metric(&self) -> Option<&str> {
        match self {
            Kind::ServiceDown { .. } => Some(SERVICE_UP),
            other => other.metric(),
        }
    }

    /// Kinds judged by a fixed severity (`severity`), not by a value ladder.
    pub fn has_fixed_severity(&self) -> bool {
        matches!(self, Kind::Offline { .. } | Kind::ServiceDown { .. })
    }
}

/// The metric the agent sends per watched service: dimension = service name,
/// 1 = running, 0 = not (the contract of `service_down` rules).
pub const SERVICE_UP: &str = "service.up";

/// `service = "sshd"` or `service = ["sshd", "nginx"]` in a rule file.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawServices {
    One(String),
    Many(Vec<String>),
}

/// A checked rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub summary: String,
    pub kind: Kind,
    /// Only this dimension (e.g. one mount); `None` = every dimension.
    pub dimension: Option<String>,
    pub scope: Scope,
    pub warning: Option<Bound>,
    pub critical: Option<Bound>,
    /// Hysteresis: the recover condition. `None` = the trigger's negation.
    pub recover: Option<Bound>,
    /// Severity of an offline alert (offline rules have no value ladder).
    pub severity: Severity,
    pub params: Params,
    /// Where the rule is written: `file:line`.
    pub origin: String,
}

impl Rule {
    /// The verdict of the severity ladder on one value.
    pub fn verdict(&self, v: f64) -> Verdict {
        if v.is_nan() {
            return Verdict::Hold;
        }
        if self.critical.is_some_and(|b| b.holds(v)) {
            return Verdict::Breach(Severity::Critical);
        }
        if self.warning.is_some_and(|b| b.holds(v)) {
            return Verdict::Breach(Severity::Warning);
        }
        match self.recover {
            Some(b) if b.holds(v) => Verdict::Recover,
            Some(_) => Verdict::Hold,
            None => Verdict::Recover,
        }
    }
}

/// Every rule and window from a directory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    pub windows: Vec<Window>,
}

/// One problem in a rule file.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

/// Rule files that cannot be used; lists every problem found.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct RulesError {
    pub problems: Vec<Problem>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
    #[serde(default)]
    maintenance: Vec<Spanned<RawWindow>>,
}

type Num = Spanned<f64>;
type Int = Spanned<i64>;
type Str = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Str,
    kind: Str,
    #[serde(default)]
    summary: String,
    metric: Option<Str>,
    dimension: Option<Str>,
    warning: Option<Spanned<RawBound>>,
    critical: Option<Spanned<RawBound>>,
    recover: Option<Spanned<RawBound>>,
    severity: Option<Str>,
    for_secs: Option<Int>,
    min_samples: Option<Int>,
    clear_for_secs: Option<Int>,
    nodata_after_secs: Option<Int>,
    flap_window_secs: Option<Int>,
    flap_max: Option<Int>,
    per_secs: Option<Num>,
    window_secs: Option<Int>,
    target: Option<Num>,
    after_secs: Option<Int>,
    server_after_secs: Option<Int>,
    workstation_after_secs: Option<Int>,
    group_share: Option<Num>,
    group_min_devices: Option<Int>,
    service: Option<Spanned<RawServices>>,
    #[serde(default)]
    scope: RawScope,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBound {
    above: Option<f64>,
    below: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScope {
    #[serde(default)]
    tenants: Vec<String>,
    #[serde(default)]
    sites: Vec<String>,
    #[serde(default)]
    tags: Vec<Str>,
    #[serde(default)]
    os: Vec<Str>,
    #[serde(default)]
    devices: Vec<String>,
    #[serde(default)]
    rules: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    name: Str,
    #[serde(default)]
    tz: Option<Str>,
    start: Option<Str>,
    end: Option<Str>,
    #[serde(default)]
    weekdays: Vec<Str>,
    from: Option<Str>,
    to: Option<Str>,
    /// RFC 5545 RRULE (subset); `start` is its DTSTART.
    rrule: Option<Str>,
    /// Length of each occurrence of a recurring window.
    duration_secs: Option<Int>,
    #[serde(default)]
    scope: RawScope,
}

const OS_NAMES: &[&str] = &["linux", "windows", "macos", "other"];

struct Checker<'a> {
    file: &'a Path,
    src: &'a str,
    problems: Vec<Problem>,
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

    fn rule(&mut self, raw: &Spanned<RawRule>) -> Option<Rule> {
        let before = self.problems.len();
        let span = raw.span();
        let r = raw.get_ref();
        let name = r.name.get_ref().trim().to_owned();
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.at(r.name.span(), "name must be non-empty and without spaces");
        }
        let need_metric = |c: &mut Self| -> String {
            match &r.metric {
                Some(m) if !m.get_ref().is_empty() => m.get_ref().clone(),
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
            origin: format!("{}:{line}", self.file.display()),
        })
    }

    fn window(&mut self, raw: &Spanned<RawWindow>) -> Option<Window> {
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
                    super::rrule::MAX_DURATION_MS / 1000,
                    3600,
                )),
            };
            let parsed = match super::rrule::parse(rule.get_ref()) {
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
                    super::rrule::Series::new(r, start, secs * 1000, &tz),
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

/// Checks one rule file's text; `path` is used for messages.
pub fn parse_file(path: &Path, src: &str) -> Result<RuleSet, RulesError> {
    let raw: RawFile = toml::from_str(src).map_err(|e| {
        let (line, column) = e.span().map_or((0, 0), |s| line_col(src, s.start));
        RulesError {
            problems: vec![Problem {
                file: path.to_owned(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }],
        }
    })?;
    let mut c = Checker {
        file: path,
        src,
        problems: Vec::new(),
    };
    let mut set = RuleSet::default();
    for r in &raw.rule {
        if let Some(rule) = c.rule(r) {
            set.rules.push(rule);
        }
    }
    for w in &raw.maintenance {
        if let Some(win) = c.window(w) {
            set.windows.push(win);
        }
    }
    if c.problems.is_empty() {
        Ok(set)
    } else {
        Err(RulesError {
            problems: c.problems,
        })
    }
}

/// Loads every `*.toml` file of `dir` (sorted by name). Rule names must be unique
/// across the directory.
pub fn load_dir(dir: &Path) -> Result<RuleSet, RulesError> {
    let one = |message: String| RulesError {
        problems: vec![Problem {
            file: dir.to_owned(),
            line: 0,
            column: 0,
            message,
        }],
    };
    let entries =
        std::fs::read_dir(dir).map_err(|e| one(format!("cannot read the rules directory: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    let mut problems = Vec::new();
    let mut set = RuleSet::default();
    let mut seen: HashMap<String, String> = HashMap::new();
    for file in &files {
        let src = match std::fs::read_to_string(file) {
            Ok(s) => s,
            Err(e) => {
                problems.push(Problem {
                    file: file.clone(),
                    line: 0,
                    column: 0,
                    message: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        match parse_file(file, &src) {
            Ok(part) => {
                for rule in part.rules {
                    if let Some(first) = seen.insert(rule.name.clone(), rule.origin.clone()) {
                        let line = rule
                            .origin
                            .rsplit(':')
                            .next()
                            .and_then(|l| l.parse().ok())
                            .unwrap_or(0);
                        problems.push(Problem {
                            file: file.clone(),
                            line,
                            column: 1,
                            message: format!(
                                "rule name {:?} is already used at {first}",
                                rule.name
                            ),
                        });
                    }
                    set.rules.push(rule);
                }
                set.windows.extend(part.windows);
            }
            Err(e) => problems.extend(e.problems),
        }
    }
    if problems.is_empty() {
        Ok(set)
    } else {
        Err(RulesError { problems })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<RuleSet, RulesError> {
        parse_file(Path::new("r.toml"), src)
    }

    #[test]
    fn a_threshold_rule_with_ladder_and_hysteresis() {
        let set = parse(
            r#"
[[rule]]
name = "disk-free"
kind = "threshold"
metric = "fs.free.percent"
warning = { below = 10 }
critical = { below = 5 }
recover = { above = 15 }
for_secs = 300
min_samples = 3
clear_for_secs = 120
[rule.scope]
tenants = ["acme"]
os = ["windows", "linux"]
"#,
        )
        .unwrap();
        let r = &set.rules[0];
        assert_eq!(r.params.for_ms, 300_000);
        assert_eq!(r.params.min_samples, 3);
        assert_eq!(r.verdict(4.0), Verdict::Breach(Severity::Critical));
        assert_eq!(r.verdict(9.0), Verdict::Breach(Severity::Warning));
        assert_eq!(r.verdict(12.0), Verdict::Hold);
        assert_eq!(r.verdict(16.0), Verdict::Recover);
        assert_eq!(r.verdict(f64::NAN), Verdict::Hold);
        assert_eq!(r.origin, "r.toml:2");
    }

    #[test]
    fn without_recover_the_negated_trigger_recovers() {
        let set = parse("[[rule]]\nname = \"cpu\"\nkind = \"threshold\"\nmetric = \"cpu.usage.percent\"\nwarning = { above = 90.5 }\n").unwrap();
        assert_eq!(set.rules[0].verdict(90.5), Verdict::Recover);
        assert_eq!(
            set.rules[0].verdict(90.6),
            Verdict::Breach(Severity::Warning)
        );
    }

    #[test]
    fn every_problem_is_reported_with_line_and_column() {
        let src = r#"[[rule]]
name = "a"
kind = "threshold"
warning = { above = 90 }
recover = { above = 95 }
for_secs = -1

[[rule]]
name = "b"
kind = "nonsense"

[[maintenance]]
name = "m"
tz = "Mars/Olympus"
weekdays = ["tue", "funday"]
from = "22:00"
to = "25:00"
"#;
        let e = parse(src).unwrap_err();
        let text: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
        let want = [
            "r.toml:1:1: rule \"a\": kind \"threshold\" needs `metric`",
            "r.toml:5:11: recover must point the other way",
            "r.toml:6:12: for_secs = -1 is out of range",
            "r.toml:10:8: unknown kind \"nonsense\"",
            "r.toml:14:6: tz \"Mars/Olympus\"",
            "r.toml:15:20: \"funday\" is not a weekday",
            "r.toml:17:6: to = \"25:00\"",
        ];
        assert_eq!(text.len(), want.len(), "{text:#?}");
        for (got, want) in text.iter().zip(want) {
            assert!(got.starts_with(want), "{got:?} should start with {want:?}");
        }
    }

    #[test]
    fn syntax_and_unknown_keys_carry_positions() {
        let e = parse("[[rule]]\nname = \"a\"\nkind = \"threshold\"\nmetrc = \"x\"\n").unwrap_err();
        assert!(e.to_string().starts_with("r.toml:4:1:"), "{e}");
        assert!(e.to_string().contains("metrc"), "{e}");
        let e = parse("[[rule]\n").unwrap_err();
        assert!(e.to_string().starts_with("r.toml:1:"), "{e}");
    }

    #[test]
    fn inverted_ladder_is_refused() {
        let e = parse("[[rule]]\nname = \"a\"\nkind = \"threshold\"\nmetric = \"m\"\nwarning = { above = 90 }\ncritical = { above = 80 }\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("r.toml:6:12: critical must be stricter"),
            "{e}"
        );
    }

    #[test]
    fn offline_rules_take_limits_not_thresholds() {
        let set = parse("[[rule]]\nname = \"off\"\nkind = \"offline\"\nafter_secs = 600\nserver_after_secs = 120\ngroup_share = 0.5\nseverity = \"warning\"\n").unwrap();
        assert_eq!(
            set.rules[0].kind,
            Kind::Offline {
                after_ms: 600_000,
                server_after_ms: Some(120_000),
                workstation_after_ms: None,
                group_share: Some(0.5),
                group_min_devices: 3
            }
        );
        assert_eq!(set.rules[0].severity, Severity::Warning);
        let e = parse("[[rule]]\nname = \"off\"\nkind = \"offline\"\nwarning = { above = 1 }\ngroup_share = 2.0\n").unwrap_err();
        assert_eq!(e.problems.len(), 2, "{e}");
    }

    #[test]
    fn service_down_names_one_service_a_list_or_every_one() {
        let set = parse(
            "[[rule]]\nname = \"a\"\nkind = \"service_down\"\nservice = \"sshd\"\nfor_secs = 60\n\
             [[rule]]\nname = \"b\"\nkind = \"service_down\"\nservice = [\"nginx\", \"php-fpm\"]\nseverity = \"warning\"\n\
             [[rule]]\nname = \"c\"\nkind = \"service_down\"\nservice = \"*\"\n",
        )
        .unwrap();
        let kinds: Vec<&Kind> = set.rules.iter().map(|r| &r.kind).collect();
        assert_eq!(
            kinds,
            [
                &Kind::ServiceDown {
                    services: vec!["sshd".into()]
                },
                &Kind::ServiceDown {
                    services: vec!["nginx".into(), "php-fpm".into()]
                },
                &Kind::ServiceDown { services: vec![] },
            ]
        );
        assert_eq!(set.rules[0].severity, Severity::Critical);
        assert_eq!(set.rules[1].severity, Severity::Warning);
        assert_eq!(set.rules[0].kind.source_metric(), Some(SERVICE_UP));
        let e =
            parse("[[rule]]\nname = \"a\"\nkind = \"service_down\"\ncritical = { above = 0 }\n")
                .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("r.toml:1:1: rule \"a\": kind \"service_down\" needs `service`"),
            "{text}"
        );
        assert!(
            text.contains("r.toml:4:12: critical does not apply"),
            "{text}"
        );
        let e =
            parse("[[rule]]\nname = \"a\"\nkind = \"service_down\"\nservice = [\"*\", \"sshd\"]\n")
                .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("r.toml:4:11: \"*\" already means"),
            "{e}"
        );
    }

    #[test]
    fn windows_one_off_and_weekly() {
        let set = parse(
            r#"
[[maintenance]]
name = "patch night"
tz = "Europe/Berlin"
weekdays = ["tue"]
from = "22:00"
to = "02:00"
scope = { tenants = ["acme"], rules = ["cpu"] }

[[maintenance]]
name = "migration"
start = "2026-03-29T01:00"
end = "2026-03-29T04:00"
"#,
        )
        .unwrap();
        assert_eq!(set.windows.len(), 2);
        assert_eq!(set.windows[0].scope.rules, vec!["cpu".to_string()]);
        let e = parse("[[maintenance]]\nname = \"x\"\nstart = \"2026-03-29T04:00\"\nend = \"2026-03-29T01:00\"\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("r.toml:4:7: end must be after start"),
            "{e}"
        );
    }

    #[test]
    fn recurring_windows_take_an_rrule_and_point_at_what_is_wrong() {
        let set = parse(
            "[[maintenance]]\nname = \"patch tuesday\"\ntz = \"America/New_York\"\nrrule = \"FREQ=MONTHLY;BYDAY=2TU\"\nstart = \"2026-01-13T22:00\"\nduration_secs = 14400\n",
        )
        .unwrap();
        let w = &set.windows[0];
        let ms = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_millisecond();
        // 2026-03-10 is the second Tuesday; New York is on EDT (UTC-4) since Mar 8.
        assert!(w.active_at(ms("2026-03-11T02:00:00Z")));
        assert!(!w.active_at(ms("2026-03-11T01:59:59Z")));
        assert!(!w.active_at(ms("2026-03-17T02:00:00Z")), "third Tuesday");
        let e = parse(
            "[[maintenance]]\nname = \"m\"\nrrule = \"FREQ=MONTHLY;BYSETPOS=2\"\nstart = \"2026-01-13T22:00\"\nend = \"2026-01-14T02:00\"\n",
        )
        .unwrap_err();
        let text: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 3, "{text:#?}");
        assert!(
            text[0].starts_with("r.toml:5:7: with rrule, give duration_secs"),
            "{text:#?}"
        );
        assert!(
            text[1].starts_with("r.toml:1:1: a recurring window needs duration_secs"),
            "{text:#?}"
        );
        assert!(
            text[2].starts_with("r.toml:3:23: rrule: BYSETPOS is not supported"),
            "{text:#?}"
        );
    }

    #[test]
    fn scopes_match_on_what_devices_have() {
        let s = Scope {
            tenants: vec!["acme".into()],
            os: vec!["windows".into()],
            ..Scope::default()
        };
        let t = Target {
            tenant: "acme",
            device_id: "d",
            os_family: "windows",
            site: None,
            tags: &[],
            rule: "r",
        };
        assert!(s.matches(&t));
        assert!(!s.matches(&Target {
            tenant: "globex",
            ..t
        }));
        assert!(!s.matches(&Target {
            os_family: "linux",
            ..t
        }));
        let by_site = Scope {
            sites: vec!["hq".into()],
            ..Scope::default()
        };
        assert!(!by_site.matches(&t), "no device has a site yet");
        assert!(by_site.matches(&Target {
            site: Some("hq"),
            ..t
        }));
        assert!(Scope::default().matches(&t));
    }

    #[test]
    fn duplicate_names_across_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let rule = "[[rule]]\nname = \"cpu\"\nkind = \"threshold\"\nmetric = \"m\"\nwarning = { above = 1 }\n";
        std::fs::write(dir.path().join("a.toml"), rule).unwrap();
        std::fs::write(dir.path().join("b.toml"), format!("\n{rule}")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let e = load_dir(dir.path()).unwrap_err();
        assert_eq!(e.problems.len(), 1, "{e}");
        assert_eq!(e.problems[0].line, 2);
        assert!(e.problems[0].message.contains("a.toml:1"), "{e}");
        std::fs::remove_file(dir.path().join("b.toml")).unwrap();
        assert_eq!(load_dir(dir.path()).unwrap().rules.len(), 1);
    }

    #[test]
    fn the_default_rule_pack_checks_clean() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rules");
        let set = load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert!(set.rules.len() >= 8, "{} rules", set.rules.len());
    }
}
