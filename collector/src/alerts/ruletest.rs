//! `rules test FILE`: unit tests for rule files, as `promtool test rules` does for
//! Prometheus. A test file names the rule files (or directories) under test, then
//! per test: devices, synthetic samples, patch reports, and the transitions
//! expected, each at a time in seconds from the start. The engine runs exactly as
//! in the collector, on a simulated clock with a tick every `tick_secs`.
//!
//! The format is documented in docs/ALERTS.md.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::Deserialize;
use tandem_proto::v1::{
    MetricBatch, PatchReport, PendingUpdate, Sample, SeriesKey, UpdateClassification,
};

use super::engine::Engine;
use super::machine::{Event, State};
use super::rules::{Problem, RuleSet, RulesError, load_dir, parse_file};
use crate::config::line_col;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTests {
    rules: Vec<String>,
    #[serde(default = "default_tick")]
    tick_secs: i64,
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    test: Vec<RawTest>,
}

fn default_tick() -> i64 {
    5
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    name: String,
    #[serde(default)]
    device: Vec<RawDevice>,
    #[serde(default)]
    series: Vec<RawSeries>,
    #[serde(default)]
    patch: Vec<RawPatch>,
    #[serde(default)]
    expect: Vec<RawExpect>,
    /// Seconds simulated (default: 60 s past the last sample).
    duration_secs: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    id: String,
    #[serde(default = "default_tenant")]
    tenant: String,
    #[serde(default = "default_os")]
    os: String,
    #[serde(default)]
    os_version: String,
    /// The device's tags (as `device tag` sets them).
    #[serde(default)]
    tags: Vec<String>,
    /// The site it enrolled into.
    site: Option<String>,
}

fn default_tenant() -> String {
    "test".into()
}
fn default_os() -> String {
    "linux".into()
}
fn default_device() -> String {
    "d1".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeries {
    #[serde(default = "default_device")]
    device: String,
    metric: String,
    #[serde(default)]
    dimension: String,
    #[serde(default)]
    start_secs: i64,
    interval_secs: i64,
    values: Vec<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPatch {
    #[serde(default = "default_device")]
    device: String,
    at_secs: i64,
    /// For each pending security update, seconds (from the start) it was first seen.
    #[serde(default)]
    security_first_seen_secs: Vec<i64>,
    reboot_since_secs: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    at_secs: i64,
    rule: String,
    #[serde(default = "default_device")]
    device: String,
    #[serde(default)]
    dimension: String,
    state: String,
    severity: Option<String>,
}

/// The outcome of a test file.
#[derive(Debug)]
pub(crate) struct TestReport {
    pub(crate) passed: usize,
    pub(crate) failed: usize,
    /// Human-readable results, one block per test.
    pub(crate) text: String,
}

fn problem(
    file: &Path,
    src: &str,
    span: Option<std::ops::Range<usize>>,
    message: String,
) -> RulesError {
    let (line, column) = span.map_or((0, 0), |s| line_col(src, s.start));
    RulesError {
        problems: vec![Problem {
            file: file.to_owned(),
            line,
            column,
            message,
        }],
    }
}

fn load_rules(base: &Path, names: &[String]) -> Result<RuleSet, RulesError> {
    let mut set = RuleSet::default();
    for n in names {
        let p: PathBuf = base.join(n);
        let part = if p.is_dir() {
            load_dir(&p)?
        } else {
            let src = std::fs::read_to_string(&p)
                .map_err(|e| problem(&p, "", None, format!("cannot read: {e}")))?;
            parse_file(&p, &src)?
        };
        set.rules.extend(part.rules);
        set.windows.extend(part.windows);
    }
    Ok(set)
}

/// Runs the tests in `path`. Errors are problems with the files themselves.
pub(crate) fn run_file(path: &Path) -> Result<TestReport, RulesError> {
    let src = std::fs::read_to_string(path)
        .map_err(|e| problem(path, "", None, format!("cannot read: {e}")))?;
    let raw: RawTests = toml::from_str(&src)
        .map_err(|e| problem(path, &src, e.span(), e.message().trim().to_owned()))?;
    if raw.tick_secs < 1 {
        return Err(problem(
            path,
            &src,
            None,
            "tick_secs must be at least 1".into(),
        ));
    }
    let base_ms = match &raw.start {
        None => 1_767_225_600_000, // 2026-01-01T00:00:00Z
        Some(s) => s
            .parse::<Timestamp>()
            .map_err(|e| {
                problem(
                    path,
                    &src,
                    None,
                    format!("start {s:?} is not an RFC 3339 time: {e}"),
                )
            })?
            .as_millisecond(),
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let set = load_rules(dir, &raw.rules)?;
    let mut report = TestReport {
        passed: 0,
        failed: 0,
        text: String::new(),
    };
    for t in &raw.test {
        let got = simulate(&set, t, base_ms, raw.tick_secs * 1000);
        let want: Vec<String> = t
            .expect
            .iter()
            .map(|e| {
                line(
                    e.at_secs,
                    &e.rule,
                    &e.device,
                    &e.dimension,
                    &e.state,
                    e.severity.as_deref(),
                )
            })
            .collect();
        // Severity is compared only where the expectation gives one.
        let matches = got.len() == want.len()
            && got
                .iter()
                .zip(&t.expect)
                .all(|((at, rule, dev, dim, st, sev), e)| {
                    *at == e.at_secs
                        && *rule == e.rule
                        && *dev == e.device
                        && *dim == e.dimension
                        && *st == e.state
                        && e.severity
                            .as_ref()
                            .is_none_or(|s| Some(s.as_str()) == sev.as_deref())
                });
        if matches {
            report.passed += 1;
            let _ = writeln!(report.text, "ok    {}", t.name);
        } else {
            report.failed += 1;
            let _ = writeln!(report.text, "FAIL  {}", t.name);
            let _ = writeln!(report.text, "  expected transitions:");
            for w in &want {
                let _ = writeln!(report.text, "    {w}");
            }
            let _ = writeln!(report.text, "  got:");
            for (at, rule, dev, dim, st, sev) in &got {
                let _ = writeln!(
                    report.text,
                    "    {}",
                    line(*at, rule, dev, dim, st, sev.as_deref())
                );
            }
        }
    }
    Ok(report)
}

fn line(at: i64, rule: &str, dev: &str, dim: &str, state: &str, sev: Option<&str>) -> String {
    let dim = if dim.is_empty() {
        String::new()
    } else {
        format!("{{{dim}}}")
    };
    let sev = sev.map(|s| format!(" ({s})")).unwrap_or_default();
    format!("t={at}s {rule} {dev}{dim} -> {state}{sev}")
}

type Got = (i64, String, String, String, String, Option<String>);

fn simulate(set: &RuleSet, t: &RawTest, base_ms: i64, tick_ms: i64) -> Vec<Got> {
    let mut engine = Engine::new(set.clone());
    let mut devices: Vec<&RawDevice> = t.device.iter().collect();
    let implicit = RawDevice {
        id: default_device(),
        tenant: default_tenant(),
        os: default_os(),
        os_version: String::new(),
        tags: Vec::new(),
        site: None,
    };
    if devices.is_empty() {
        devices.push(&implicit);
    }
    let mut tags = std::collections::HashMap::new();
    for d in &devices {
        engine.on_hello(&d.id, &d.tenant, &d.os, &d.os_version, base_ms);
        engine.set_site(&d.id, d.site.clone());
        tags.insert(d.id.clone(), d.tags.clone());
    }
    engine.set_tags(tags, base_ms);
    // Every input as (time ms from start, order, action).
    enum Input<'a> {
        Sample(&'a RawSeries, f64),
        Patch(&'a RawPatch),
    }
    let mut inputs: Vec<(i64, Input<'_>)> = Vec::new();
    for s in &t.series {
        for (i, v) in s.values.iter().enumerate() {
            inputs.push((
                (s.start_secs + i as i64 * s.interval_secs) * 1000,
                Input::Sample(s, *v),
            ));
        }
    }
    for p in &t.patch {
        inputs.push((p.at_secs * 1000, Input::Patch(p)));
    }
    inputs.sort_by_key(|(at, _)| *at);
    let last = inputs.last().map_or(0, |(at, _)| *at);
    let end = t.duration_secs.map_or(last + 60_000, |d| d * 1000);
    let mut got = Vec::new();
    let mut next = inputs.into_iter().peekable();
    let mut now = 0;
    while now <= end {
        while let Some((at, _)) = next.peek() {
            if *at > now {
                break;
            }
            let Some((at, input)) = next.next() else {
                break;
            };
            let abs = base_ms + at;
            match input {
                Input::Sample(s, v) => {
                    let batch = MetricBatch {
                        seq: 0,
                        series: vec![SeriesKey {
                            name: s.metric.clone(),
                            dimension: s.dimension.clone(),
                        }],
                        samples: vec![Sample {
                            time_unix_ms: abs,
                            values: vec![v],
                        }],
                    };
                    engine.on_batch(&s.device, &batch, abs);
                }
                Input::Patch(p) => {
                    let report = PatchReport {
                        seq: 0,
                        time_unix_ms: abs,
                        source: "test".into(),
                        error: String::new(),
                        reboot_required: p.reboot_since_secs.is_some(),
                        reboot_required_since_unix_ms: p
                            .reboot_since_secs
                            .map_or(0, |s| base_ms + s * 1000),
                        last_install_unix_ms: 0,
                        updates: p
                            .security_first_seen_secs
                            .iter()
                            .map(|s| PendingUpdate {
                                name: "update".into(),
                                current_version: String::new(),
                                new_version: String::new(),
                                classification: UpdateClassification::Security as i32,
                                advisory_id: String::new(),
                                first_seen_unix_ms: base_ms + s * 1000,
                            })
                            .collect(),
                    };
                    engine.on_patch(&p.device, &report, abs);
                }
            }
        }
        engine.tick(base_ms + now);
        for c in engine.take_changes() {
            for r in c.records {
                if let Event::Transition { to, .. } = r.event {
                    let sev = if to == State::Ok {
                        None
                    } else {
                        r.severity.map(|s| s.as_str().to_owned())
                    };
                    got.push((
                        (r.at_ms - base_ms).div_euclid(1000),
                        c.key.rule.clone(),
                        c.key.device_id.clone(),
                        c.key.dimension.clone(),
                        to.as_str().to_owned(),
                        sev,
                    ));
                }
            }
        }
        now += tick_ms;
    }
    got.sort_by(|a, b| (a.0, &a.1, &a.2, &a.3).cmp(&(b.0, &b.1, &b.2, &b.3)));
    got
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_test_file_passes_and_a_wrong_expectation_fails() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rules-tests/default.toml");
        let r = run_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.failed, 0, "{}", r.text);
        assert!(r.passed >= 3, "{}", r.text);

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("r.toml"),
            "[[rule]]\nname = \"cpu\"\nkind = \"threshold\"\nmetric = \"cpu.usage.percent\"\nwarning = { above = 90 }\nfor_secs = 60\n",
        )
        .unwrap();
        let t = dir.path().join("t.toml");
        std::fs::write(
            &t,
            "rules = [\"r.toml\"]\n[[test]]\nname = \"wrong\"\n[[test.series]]\nmetric = \"cpu.usage.percent\"\ninterval_secs = 30\nvalues = [95, 95, 95, 95]\n\
             [[test.expect]]\nat_secs = 0\nrule = \"cpu\"\nstate = \"pending\"\n[[test.expect]]\nat_secs = 30\nrule = \"cpu\"\nstate = \"firing\"\n",
        )
        .unwrap();
        let r = run_file(&t).unwrap();
        assert_eq!((r.passed, r.failed), (0, 1));
        assert!(
            r.text.contains("t=60s cpu d1 -> firing (warning)"),
            "{}",
            r.text
        );
    }

    #[test]
    fn a_broken_test_file_is_an_error_with_position() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t.toml");
        std::fs::write(&t, "rules = []\n[[test]]\nname = \"x\"\nbogus = 1\n").unwrap();
        let e = run_file(&t).unwrap_err();
        assert!(e.to_string().contains("t.toml:4:1:"), "{e}");
    }
}
