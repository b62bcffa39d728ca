//! Escalation policy files (`[notify] policies_dir`, `*.toml`): tenants (time zone,
//! IT contacts, business-hours calendars with holidays), webhooks, and policies
//! (ordered steps with a delay, guards and targets; repeat, ack timeout, loops).
//!
//! Parsed into raw serde structs ([`raw`]: unknown keys refused), then checked ([`check`]) into a
//! [`PolicySet`], reporting every problem of every file at once with file, line and
//! column. A policy applies to a tenant when the tenant names it (`policy = …`);
//! otherwise the one marked `default = true` (the MSP-wide default) does.
//!
//! Invariant: a [`PolicySet`] that exists is consistent — every target names a
//! webhook that exists, every zone is a real IANA zone, every calendar a step names
//! exists for every tenant whose policy uses it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;

use crate::alerts::model::Severity;
use crate::alerts::rules::{Problem, RulesError};

mod check;
mod raw;

use check::{Seen, finish, parse_into};

/// Where a step sends.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Target {
    /// The live MSP feed (every incident is on it; naming it documents intent).
    Feed,
    /// The incident tenant's IT contacts.
    Contacts,
    Email(String),
    /// A webhook by name.
    Webhook(String),
}

/// The guard of a step against a business-hours calendar.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum HoursGuard {
    Inside(String),
    Outside(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Step {
    pub(crate) after_ms: i64,
    pub(crate) min_severity: Option<Severity>,
    pub(crate) hours: Option<HoursGuard>,
    pub(crate) targets: Vec<Target>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Policy {
    pub(crate) name: String,
    pub(crate) steps: Vec<Step>,
    /// Start the steps over this long after the loop started (0: never).
    pub(crate) repeat_ms: i64,
    /// An ack older than this reopens the incident (0: never).
    pub(crate) ack_timeout_ms: i64,
    /// Loops in all, the first included (at least 1).
    pub(crate) max_loops: u32,
}

/// Weekly opening hours in the tenant's zone, closed on holidays.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Calendar {
    pub(crate) days: BTreeSet<u8>,
    pub(crate) open: Time,
    pub(crate) close: Time,
    pub(crate) holidays: BTreeSet<Date>,
}

impl Calendar {
    pub(crate) fn is_open_day(&self, d: Date) -> bool {
        self.days.contains(&weekday_no(d.weekday())) && !self.holidays.contains(&d)
    }
}

fn weekday_no(w: Weekday) -> u8 {
    w.to_monday_zero_offset() as u8
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tenant {
    pub(crate) zone: TimeZone,
    pub(crate) zone_name: String,
    pub(crate) contacts: Vec<String>,
    pub(crate) policy: Option<String>,
    pub(crate) calendars: HashMap<String, Calendar>,
}

impl Default for Tenant {
    fn default() -> Self {
        Tenant {
            zone: TimeZone::UTC,
            zone_name: "UTC".into(),
            contacts: Vec::new(),
            policy: None,
            calendars: HashMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WebhookFormat {
    Generic,
    Slack,
    Teams,
}

/// A webhook receiver. `Debug` leaves the secret out.
#[derive(Clone, PartialEq)]
pub(crate) struct Webhook {
    pub(crate) url: String,
    pub(crate) format: WebhookFormat,
    /// HMAC key of the signature header (generic format); empty: unsigned.
    pub(crate) secret: Vec<u8>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("format", &self.format)
            .field(
                "secret",
                &if self.secret.is_empty() {
                    "none"
                } else {
                    "set"
                },
            )
            .finish()
    }
}

/// Everything the policy files say, checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PolicySet {
    pub(crate) tenants: BTreeMap<String, Tenant>,
    pub(crate) policies: BTreeMap<String, Policy>,
    pub(crate) default_policy: Option<String>,
    pub(crate) webhooks: BTreeMap<String, Webhook>,
}

static NO_TENANT: std::sync::LazyLock<Tenant> = std::sync::LazyLock::new(Tenant::default);

impl PolicySet {
    /// The tenant's settings (UTC, no contacts, no calendars when not configured).
    pub(crate) fn tenant(&self, name: &str) -> &Tenant {
        self.tenants.get(name).unwrap_or(&NO_TENANT)
    }

    /// The policy that applies to a tenant's incidents, if any.
    pub(crate) fn policy_for(&self, tenant: &str) -> Option<&Policy> {
        let name = self
            .tenants
            .get(tenant)
            .and_then(|t| t.policy.as_ref())
            .or(self.default_policy.as_ref())?;
        self.policies.get(name)
    }

    /// The recipients a target stands for, for an incident of `tenant`: a tenant's
    /// contacts are only ever its own.
    pub(crate) fn expand(&self, tenant: &str, t: &Target) -> Vec<(Channel, String)> {
        match t {
            Target::Feed => Vec::new(),
            Target::Contacts => self
                .tenant(tenant)
                .contacts
                .iter()
                .map(|c| (Channel::Email, c.clone()))
                .collect(),
            Target::Email(a) => vec![(Channel::Email, a.clone())],
            Target::Webhook(w) => vec![(Channel::Webhook, w.clone())],
        }
    }
}

/// A delivery channel (a column of the outbox).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Channel {
    Email,
    Webhook,
}

impl Channel {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Channel> {
        match s {
            "email" => Some(Channel::Email),
            "webhook" => Some(Channel::Webhook),
            _ => None,
        }
    }
}

/// Loads and checks every `*.toml` file of `dir` (sorted by name).
pub(crate) fn load_dir(dir: &Path) -> Result<PolicySet, RulesError> {
    let one = |message: String| RulesError {
        problems: vec![Problem {
            file: dir.to_owned(),
            line: 0,
            column: 0,
            message,
        }],
    };
    let entries = std::fs::read_dir(dir)
        .map_err(|e| one(format!("cannot read the policies directory: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    let mut srcs = Vec::new();
    let mut problems = Vec::new();
    for f in files {
        match std::fs::read_to_string(&f) {
            Ok(s) => srcs.push((f, s)),
            Err(e) => problems.push(Problem {
                file: f,
                line: 0,
                column: 0,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    let refs: Vec<(&Path, &str)> = srcs
        .iter()
        .map(|(p, s)| (p.as_path(), s.as_str()))
        .collect();
    match parse_files(&refs) {
        Ok(set) if problems.is_empty() => Ok(set),
        Ok(_) => Err(RulesError { problems }),
        Err(mut e) => {
            problems.append(&mut e.problems);
            Err(RulesError { problems })
        }
    }
}

/// Checks the given files together (pure apart from webhook secrets read from a
/// file or the environment).
pub(crate) fn parse_files(files: &[(&Path, &str)]) -> Result<PolicySet, RulesError> {
    let mut set = PolicySet::default();
    let mut seen = Seen::default();
    let mut refs = Vec::new();
    let mut problems = Vec::new();
    for (p, s) in files {
        parse_into(p, s, &mut set, &mut seen, &mut refs, &mut problems);
    }
    finish(&set, refs, &mut problems);
    if problems.is_empty() {
        Ok(set)
    } else {
        Err(RulesError { problems })
    }
}

/// One file on its own (tests, `policies check FILE`).
pub(crate) fn parse_file(path: &Path, src: &str) -> Result<PolicySet, RulesError> {
    parse_files(&[(path, src)])
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[tenant]]
name = "acme"
zone = "Europe/Berlin"
contacts = ["it@acme.example"]
  [[tenant.calendar]]
  name = "office"
  days = ["mon", "tue", "wed", "thu", "fri"]
  hours = "08:00-17:00"
  holidays = ["2026-12-25"]

[[webhook]]
name = "chat"
url = "http://127.0.0.1:9/hook"
format = "slack"

[[policy]]
name = "msp"
default = true
repeat_secs = 3600
ack_timeout_secs = 1800
max_loops = 3
  [[policy.step]]
  after_secs = 0
  targets = ["feed", "email:noc@msp.example"]
  [[policy.step]]
  after_secs = 900
  min_severity = "critical"
  inside = "office"
  targets = ["contacts", "webhook:chat"]
"#;

    #[test]
    fn a_good_file_is_checked_into_a_set() {
        let set = parse_file(Path::new("p.toml"), GOOD).unwrap();
        let p = set.policy_for("acme").unwrap();
        assert_eq!(p.name, "msp");
        assert_eq!(p.steps.len(), 2);
        assert_eq!(p.steps[1].after_ms, 900_000);
        assert_eq!(p.steps[1].hours, Some(HoursGuard::Inside("office".into())));
        assert_eq!(p.max_loops, 3);
        assert_eq!(
            set.policy_for("other").unwrap().name,
            "msp",
            "the MSP default"
        );
        assert_eq!(
            set.expand("acme", &Target::Contacts),
            vec![(Channel::Email, "it@acme.example".to_owned())]
        );
        assert!(
            set.expand("other", &Target::Contacts).is_empty(),
            "another tenant never gets acme's contacts"
        );
        let cal = &set.tenant("acme").calendars["office"];
        assert!(!cal.is_open_day("2026-12-25".parse().unwrap()));
    }

    #[test]
    fn every_problem_is_reported_with_line_and_column() {
        let bad = GOOD
            .replace("Europe/Berlin", "Europe/Nowhere")
            .replace("webhook:chat", "webhook:nope")
            .replace("\"critical\"", "\"huge\"")
            .replace("08:00-17:00", "17:00-08:00");
        let err = parse_file(Path::new("p.toml"), &bad).unwrap_err();
        let text = err.to_string();
        // The bad hours also leave "office" undefined for acme: a fifth problem.
        assert_eq!(err.problems.len(), 5, "{text}");
        assert!(
            text.contains("p.toml:4:8: \"Europe/Nowhere\" is not an IANA time zone"),
            "{text}"
        );
        assert!(text.contains("no webhook named \"nope\""), "{text}");
        assert!(text.contains("min_severity \"huge\""), "{text}");
        assert!(text.contains("hours \"17:00-08:00\""), "{text}");
    }

    #[test]
    fn unknown_keys_and_missing_calendars_are_refused() {
        let err = parse_file(Path::new("p.toml"), "[[policy]]\nname = \"x\"\nsteps = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("p.toml:3:1: unknown field `steps`"),
            "{err}"
        );
        let no_cal = GOOD.replace("name = \"office\"", "name = \"shop\"");
        let err = parse_file(Path::new("p.toml"), &no_cal)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("calendar \"office\" is not defined for tenant(s) \"acme\""),
            "{err}"
        );
    }

    #[test]
    fn the_example_policy_in_deploy_parses() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/policies/example.toml"
        ));
        let src = std::fs::read_to_string(path).unwrap();
        let set = parse_file(path, &src).unwrap();
        assert!(set.default_policy.is_some());
    }
}
