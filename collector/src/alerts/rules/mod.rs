//! Rule files: TOML in a directory (`*.toml`, several per directory), each holding
//! `[[rule]]` and `[[maintenance]]` tables. Parsed into raw serde forms ([`raw`]:
//! unknown keys refused) and checked ([`check`]) into a typed [`RuleSet`] (this
//! file, with loading), reporting *every* problem at once with file, line and
//! column — so `rules check` and a reload can say exactly what is wrong, and a bad
//! edit never half-applies. A rule's origin is a typed [`Origin`] {file, line}.
//!
//! The reference for users is docs/ALERTS.md.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::model::{Bound, Params, Scope, Severity, Verdict, Window};
use crate::config::line_col;

mod check;
mod raw;

use check::Checker;
use raw::RawFile;

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
    pub(crate) fn metric(&self) -> Option<&str> {
        match self {
            Kind::Threshold { metric }
            | Kind::Rate { metric, .. }
            | Kind::Forecast { metric, .. } => Some(metric),
            _ => None,
        }
    }

    /// The agent metric whose samples move this kind's instances, if any.
    pub(crate) fn source_metric(&self) -> Option<&str> {
        match self {
            Kind::ServiceDown { .. } => Some(SERVICE_UP),
            other => other.metric(),
        }
    }

    /// Kinds judged by a fixed severity (`severity`), not by a value ladder.
    pub(crate) fn has_fixed_severity(&self) -> bool {
        matches!(self, Kind::Offline { .. } | Kind::ServiceDown { .. })
    }
}

/// The metric the agent sends per watched service: dimension = service name,
/// 1 = running, 0 = not (the contract of `service_down` rules).
pub(crate) const SERVICE_UP: &str = "service.up";

/// A checked rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub(crate) name: String,
    pub(crate) summary: String,
    pub(crate) kind: Kind,
    /// Only this dimension (e.g. one mount); `None` = every dimension.
    pub(crate) dimension: Option<String>,
    pub(crate) scope: Scope,
    pub(crate) warning: Option<Bound>,
    pub(crate) critical: Option<Bound>,
    /// Hysteresis: the recover condition. `None` = the trigger's negation.
    pub(crate) recover: Option<Bound>,
    /// Severity of an offline alert (offline rules have no value ladder).
    pub(crate) severity: Severity,
    pub(crate) params: Params,
    /// Where the rule is written.
    pub(crate) origin: Origin,
}

/// Where a rule is written: its file and the line of its `[[rule]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub(crate) file: PathBuf,
    pub(crate) line: usize,
}

impl fmt::Display for Origin {
    /// `file:line`, as an editor takes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

impl Rule {
    /// The verdict of the severity ladder on one value.
    pub(crate) fn verdict(&self, v: f64) -> Verdict {
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
    pub(crate) windows: Vec<Window>,
}

/// One problem in a rule file.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub(crate) file: PathBuf,
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) message: String,
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
    pub(crate) problems: Vec<Problem>,
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
    let mut seen: HashMap<String, Origin> = HashMap::new();
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
                        problems.push(Problem {
                            file: file.clone(),
                            line: rule.origin.line,
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
    fn an_unknown_metric_is_refused_with_the_closest_name() {
        let e = parse("[[rule]]\nname = \"cpu\"\nkind = \"threshold\"\nmetric = \"cpu.usage.precent\"\nwarning = { above = 90 }\n").unwrap_err();
        assert_eq!(e.problems.len(), 1, "{e}");
        assert!(
            e.problems[0].to_string().starts_with("r.toml:4:10: rule \"cpu\": unknown metric \"cpu.usage.precent\" (did you mean \"cpu.usage.percent\"?)"),
            "{e}"
        );
        // Nothing close: no suggestion, still refused.
        let e = parse("[[rule]]\nname = \"x\"\nkind = \"rate\"\nmetric = \"queue.depth\"\nwarning = { above = 1 }\n").unwrap_err();
        assert!(
            e.problems[0]
                .message
                .contains("unknown metric \"queue.depth\";"),
            "{e}"
        );
        assert!(
            e.problems[0].message.contains("custom_metric = true"),
            "{e}"
        );
        // The explicit escape for a metric of one's own.
        let set = parse("[[rule]]\nname = \"x\"\nkind = \"rate\"\nmetric = \"queue.depth\"\ncustom_metric = true\nwarning = { above = 1 }\n").unwrap();
        assert_eq!(set.rules[0].kind.metric(), Some("queue.depth"));
    }

    #[test]
    fn a_threshold_rule_with_ladder_and_hysteresis() {
        let set = parse(
            r#"
[[rule]]
name = "disk-free"
kind = "threshold"
metric = "fs.free.percent"
custom_metric = true
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
        assert_eq!(r.origin.to_string(), "r.toml:2");
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
        let e = parse("[[rule]]\nname = \"a\"\nkind = \"threshold\"\nmetric = \"cpu.usage.percent\"\nwarning = { above = 90 }\ncritical = { above = 80 }\n").unwrap_err();
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
    fn duplicate_names_across_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let rule = "[[rule]]\nname = \"cpu\"\nkind = \"threshold\"\nmetric = \"cpu.usage.percent\"\nwarning = { above = 1 }\n";
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
