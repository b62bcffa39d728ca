//! Checking raw policy files into a [`PolicySet`]: zones, calendars and holidays,
//! step guards and targets, webhook secrets; then the cross-file references
//! ([`finish`]). Every problem is recorded with its position and checking goes on.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use toml::Spanned;

use super::raw::*;
use super::*;
use crate::alerts::maintenance::parse_weekday;
use crate::alerts::model::Severity;
use crate::alerts::rules::Problem;
use crate::config::line_col;

pub(super) struct Checker<'a> {
    file: &'a Path,
    src: &'a str,
    problems: &'a mut Vec<Problem>,
}

impl Checker<'_> {
    fn at(&mut self, span: std::ops::Range<usize>, message: impl Into<String>) {
        let (line, column) = line_col(self.src, span.start);
        self.problems.push(Problem {
            file: self.file.to_owned(),
            line,
            column,
            message: message.into(),
        });
    }
}

/// Where each name was first defined, to report duplicates across files.
#[derive(Default)]
pub(super) struct Seen {
    tenants: HashMap<String, String>,
    policies: HashMap<String, String>,
    webhooks: HashMap<String, String>,
}

/// Parses one file into `set` (the cross-reference checks run in [`finish`]).
pub(super) fn parse_into(
    path: &Path,
    src: &str,
    set: &mut PolicySet,
    seen: &mut Seen,
    refs: &mut Vec<(Problem, RefCheck)>,
    problems: &mut Vec<Problem>,
) {
    let raw: RawFile = match toml::from_str(src) {
        Ok(r) => r,
        Err(e) => {
            let (line, column) = e.span().map_or((0, 0), |s| line_col(src, s.start));
            problems.push(Problem {
                file: path.to_owned(),
                line,
                column,
                message: e.message().trim().to_owned(),
            });
            return;
        }
    };
    let mut c = Checker {
        file: path,
        src,
        problems,
    };
    let here = |c: &Checker<'_>, span: std::ops::Range<usize>| {
        let (l, col) = line_col(c.src, span.start);
        format!("{}:{l}:{col}", c.file.display())
    };
    for t in raw.tenant {
        let t = t.into_inner();
        let name = t.name.get_ref().clone();
        if name.is_empty() {
            c.at(t.name.span(), "tenant name must not be empty");
            continue;
        }
        if let Some(first) = seen.tenants.get(&name) {
            c.at(
                t.name.span(),
                format!("tenant {name:?} is already configured at {first}"),
            );
            continue;
        }
        seen.tenants.insert(name.clone(), here(&c, t.name.span()));
        let mut tenant = Tenant::default();
        if let Some(z) = &t.zone {
            match TimeZone::get(z.get_ref()) {
                Ok(tz) => {
                    tenant.zone = tz;
                    tenant.zone_name = z.get_ref().clone();
                }
                Err(_) => c.at(
                    z.span(),
                    format!(
                        "{:?} is not an IANA time zone (e.g. Europe/Berlin)",
                        z.get_ref()
                    ),
                ),
            }
        }
        for a in &t.contacts {
            if !plausible_address(a.get_ref()) {
                c.at(
                    a.span(),
                    format!("{:?} is not an email address", a.get_ref()),
                );
            } else {
                tenant.contacts.push(a.get_ref().clone());
            }
        }
        if let Some(p) = &t.policy {
            refs.push((
                problem_at(&c, p.span(), String::new()),
                RefCheck::Policy(p.get_ref().clone()),
            ));
            tenant.policy = Some(p.get_ref().clone());
        }
        for cal in t.calendar {
            let cal = cal.into_inner();
            if tenant.calendars.contains_key(cal.name.get_ref()) {
                c.at(
                    cal.name.span(),
                    format!("calendar {:?} is defined twice", cal.name.get_ref()),
                );
                continue;
            }
            if let Some(parsed) = calendar(&mut c, &cal) {
                tenant.calendars.insert(cal.name.get_ref().clone(), parsed);
            }
        }
        set.tenants.insert(name, tenant);
    }
    for w in raw.webhook {
        let w = w.into_inner();
        let name = w.name.get_ref().clone();
        if let Some(first) = seen.webhooks.get(&name) {
            c.at(
                w.name.span(),
                format!("webhook {name:?} is already defined at {first}"),
            );
            continue;
        }
        seen.webhooks.insert(name.clone(), here(&c, w.name.span()));
        let url = w.url.get_ref();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            c.at(
                w.url.span(),
                format!("{url:?} is not an http:// or https:// URL"),
            );
        }
        let format = match w.format.as_ref().map(|f| f.get_ref().as_str()) {
            None | Some("generic") => WebhookFormat::Generic,
            Some("slack") => WebhookFormat::Slack,
            Some("teams") => WebhookFormat::Teams,
            Some(other) => {
                c.at(
                    w.format.as_ref().map_or(0..0, |f| f.span()),
                    format!("format {other:?}: use generic, slack or teams"),
                );
                WebhookFormat::Generic
            }
        };
        let secret = match (&w.secret_env, &w.secret_file) {
            (Some(_), Some(f)) => {
                c.at(f.span(), "give secret_env or secret_file, not both");
                Vec::new()
            }
            (Some(e), None) => match std::env::var(e.get_ref()) {
                Ok(v) if !v.is_empty() => v.into_bytes(),
                _ => {
                    c.at(
                        e.span(),
                        format!("environment variable {} is not set", e.get_ref()),
                    );
                    Vec::new()
                }
            },
            (None, Some(f)) => {
                let p = path.parent().unwrap_or(Path::new(".")).join(f.get_ref());
                match std::fs::read_to_string(&p) {
                    Ok(s) if !s.trim().is_empty() => s.trim().as_bytes().to_vec(),
                    Ok(_) => {
                        c.at(f.span(), format!("{} is empty", p.display()));
                        Vec::new()
                    }
                    Err(e) => {
                        c.at(f.span(), format!("cannot read {}: {e}", p.display()));
                        Vec::new()
                    }
                }
            }
            (None, None) => Vec::new(),
        };
        set.webhooks.insert(
            name,
            Webhook {
                url: url.clone(),
                format,
                secret,
            },
        );
    }
    for p in raw.policy {
        let pspan = p.span();
        let p = p.into_inner();
        let name = p.name.get_ref().clone();
        if let Some(first) = seen.policies.get(&name) {
            c.at(
                p.name.span(),
                format!("policy {name:?} is already defined at {first}"),
            );
            continue;
        }
        seen.policies.insert(name.clone(), here(&c, p.name.span()));
        if p.default {
            match &set.default_policy {
                Some(d) => c.at(
                    p.name.span(),
                    format!("policy {d:?} is already the default; only one may be"),
                ),
                None => set.default_policy = Some(name.clone()),
            }
        }
        let secs = |c: &mut Checker<'_>, v: &Option<Spanned<i64>>, key: &str, min: i64| -> i64 {
            match v {
                None => 0,
                Some(s) if *s.get_ref() >= min && *s.get_ref() <= 366 * 86_400 => *s.get_ref(),
                Some(s) => {
                    c.at(
                        s.span(),
                        format!(
                            "{key} = {} is out of range ({min} to 31622400)",
                            s.get_ref()
                        ),
                    );
                    0
                }
            }
        };
        let repeat = secs(&mut c, &p.repeat_secs, "repeat_secs", 0);
        let ack_timeout = secs(&mut c, &p.ack_timeout_secs, "ack_timeout_secs", 0);
        let max_loops = match &p.max_loops {
            None => 1,
            Some(s) if (1..=1000).contains(s.get_ref()) => *s.get_ref() as u32,
            Some(s) => {
                c.at(
                    s.span(),
                    format!("max_loops = {} is out of range (1 to 1000)", s.get_ref()),
                );
                1
            }
        };
        if p.step.is_empty() {
            c.at(
                pspan.clone(),
                format!("policy {name:?} has no [[policy.step]]"),
            );
        }
        let mut steps = Vec::new();
        for s in p.step {
            let s = s.into_inner();
            let after = secs(&mut c, &s.after_secs, "after_secs", 0);
            let min_severity = match &s.min_severity {
                None => None,
                Some(v) => match Severity::parse(v.get_ref()) {
                    Some(sev) => Some(sev),
                    None => {
                        c.at(
                            v.span(),
                            format!("min_severity {:?}: use warning or critical", v.get_ref()),
                        );
                        None
                    }
                },
            };
            let hours = match (&s.inside, &s.outside) {
                (Some(_), Some(o)) => {
                    c.at(o.span(), "give inside or outside, not both");
                    None
                }
                (Some(i), None) => {
                    refs.push((
                        problem_at(&c, i.span(), String::new()),
                        RefCheck::Calendar(name.clone(), i.get_ref().clone()),
                    ));
                    Some(HoursGuard::Inside(i.get_ref().clone()))
                }
                (None, Some(o)) => {
                    refs.push((
                        problem_at(&c, o.span(), String::new()),
                        RefCheck::Calendar(name.clone(), o.get_ref().clone()),
                    ));
                    Some(HoursGuard::Outside(o.get_ref().clone()))
                }
                (None, None) => None,
            };
            if s.targets.get_ref().is_empty() {
                c.at(s.targets.span(), "a step needs at least one target");
            }
            let mut targets = Vec::new();
            for t in s.targets.get_ref() {
                match parse_target(t.get_ref()) {
                    Ok(tg) => {
                        if let Target::Webhook(w) = &tg {
                            refs.push((
                                problem_at(&c, t.span(), String::new()),
                                RefCheck::Webhook(w.clone()),
                            ));
                        }
                        targets.push(tg);
                    }
                    Err(m) => c.at(t.span(), m),
                }
            }
            steps.push(Step {
                after_ms: after * 1000,
                min_severity,
                hours,
                targets,
            });
        }
        if steps.windows(2).any(|w| w[1].after_ms < w[0].after_ms) {
            c.at(
                pspan,
                format!("policy {name:?}: steps must be in order of after_secs"),
            );
        }
        if repeat > 0 && steps.last().is_some_and(|s| s.after_ms >= repeat * 1000) {
            c.at(
                p.repeat_secs.as_ref().map_or(0..0, |r| r.span()),
                "repeat_secs must be longer than the last step's after_secs",
            );
        }
        set.policies.insert(
            name.clone(),
            Policy {
                name,
                steps,
                repeat_ms: repeat * 1000,
                ack_timeout_ms: ack_timeout * 1000,
                max_loops,
            },
        );
    }
}

/// A reference to check once every file is read.
pub(super) enum RefCheck {
    Policy(String),
    Webhook(String),
    /// (policy, calendar): every tenant using the policy must define the calendar.
    Calendar(String, String),
}

fn problem_at(c: &Checker<'_>, span: std::ops::Range<usize>, message: String) -> Problem {
    let (line, column) = line_col(c.src, span.start);
    Problem {
        file: c.file.to_owned(),
        line,
        column,
        message,
    }
}

pub(super) fn finish(set: &PolicySet, refs: Vec<(Problem, RefCheck)>, problems: &mut Vec<Problem>) {
    for (mut at, r) in refs {
        let msg = match r {
            RefCheck::Policy(p) if !set.policies.contains_key(&p) => {
                format!("no policy named {p:?}")
            }
            RefCheck::Webhook(w) if !set.webhooks.contains_key(&w) => {
                format!("no webhook named {w:?}")
            }
            RefCheck::Calendar(policy, cal) => {
                let users: Vec<&String> = set
                    .tenants
                    .iter()
                    .filter(|(_, t)| {
                        t.policy.as_ref().or(set.default_policy.as_ref()) == Some(&policy)
                    })
                    .filter(|(_, t)| !t.calendars.contains_key(&cal))
                    .map(|(n, _)| n)
                    .collect();
                if users.is_empty() {
                    continue;
                }
                format!(
                    "calendar {cal:?} is not defined for tenant(s) {} that use policy {policy:?}",
                    users
                        .iter()
                        .map(|s| format!("{s:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
            _ => continue,
        };
        at.message = msg;
        problems.push(at);
    }
}

fn calendar(c: &mut Checker<'_>, raw: &RawCalendar) -> Option<Calendar> {
    let mut ok = true;
    let mut days = BTreeSet::new();
    for d in raw.days.get_ref() {
        match parse_weekday(d) {
            Some(w) => {
                days.insert(weekday_no(w));
            }
            None => {
                c.at(
                    raw.days.span(),
                    format!("{d:?} is not a weekday (mon … sun)"),
                );
                ok = false;
            }
        }
    }
    let hours = parse_hours(raw.hours.get_ref());
    if hours.is_none() {
        c.at(
            raw.hours.span(),
            format!(
                "hours {:?}: use HH:MM-HH:MM with the end after the start (e.g. 08:00-17:00)",
                raw.hours.get_ref()
            ),
        );
        ok = false;
    }
    let mut holidays = BTreeSet::new();
    for h in &raw.holidays {
        match h.get_ref().parse::<Date>() {
            Ok(d) => {
                holidays.insert(d);
            }
            Err(_) => {
                c.at(
                    h.span(),
                    format!("{:?} is not a date (YYYY-MM-DD)", h.get_ref()),
                );
                ok = false;
            }
        }
    }
    let (open, close) = hours?;
    ok.then_some(Calendar {
        days,
        open,
        close,
        holidays,
    })
}

/// `08:00-17:00` → (open, close), close after open.
pub(crate) fn parse_hours(s: &str) -> Option<(Time, Time)> {
    let (a, b) = s.split_once('-')?;
    let t = |x: &str| -> Option<Time> {
        let (h, m) = x.trim().split_once(':')?;
        let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
        Time::new(h, m, 0, 0).ok()
    };
    let (open, close) = (t(a)?, t(b)?);
    (close > open).then_some((open, close))
}

fn parse_target(s: &str) -> Result<Target, String> {
    match s.split_once(':') {
        None if s == "feed" => Ok(Target::Feed),
        None if s == "contacts" => Ok(Target::Contacts),
        Some(("email", a)) if plausible_address(a) => Ok(Target::Email(a.to_owned())),
        Some(("email", a)) => Err(format!("{a:?} is not an email address")),
        Some(("webhook", w)) if !w.is_empty() => Ok(Target::Webhook(w.to_owned())),
        _ => Err(format!(
            "target {s:?}: use feed, contacts, email:ADDRESS or webhook:NAME"
        )),
    }
}

fn plausible_address(a: &str) -> bool {
    a.parse::<lettre::Address>().is_ok()
}
