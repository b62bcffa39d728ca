//! Local custom checks (`[[check]]` in agent.toml), in the manner of Zabbix
//! `UserParameter` and Nagios plugins: a command with an interval and a timeout,
//! defined on the device only (the collector can never push one), whose exit code is
//! the status and whose output may carry a number.
//!
//! - The command runs without a shell (argv as written) unless `shell = true`, and
//!   through `crate::platform::tool::run`: no stdin, `LANG=C`, its own process group, killed
//!   with its children at the timeout.
//! - Exit code 0/1/2 is ok/warning/critical, 3 (and anything else) unknown — the
//!   Nagios plugin convention. A timeout is critical, with the reason.
//! - The value (`check.value{name}`) is the first line if it is a number, else the
//!   first Nagios performance datum (`text | label=12.5ms;...`). Output that is not
//!   text, or performance data that cannot be read, is an error: status unknown with
//!   the reason, never a crash and never a made-up value.
//!
//! [`interpret`] is the pure part, tested without running anything.

use std::time::Duration;

use crate::platform::tool::{Output, ToolError};

/// Most custom checks one agent runs.
pub(crate) const MAX_CHECKS: usize = 64;

pub(crate) const OK: u8 = 0;
pub(crate) const WARNING: u8 = 1;
pub(crate) const CRITICAL: u8 = 2;
pub(crate) const UNKNOWN: u8 = 3;

/// One validated `[[check]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckConfig {
    pub name: String,
    /// The program and its arguments; with `shell`, one element: the shell command.
    pub(crate) argv: Vec<String>,
    pub(crate) shell: bool,
    pub(crate) interval_secs: u64,
    pub(crate) timeout_secs: u64,
    /// The output must carry a number; without one the result is unknown.
    pub(crate) expect_value: bool,
}

/// One run's result.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CheckResult {
    pub(crate) name: String,
    pub(crate) status: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) value: Option<f64>,
    /// Why, where the exit code alone does not say (timeout, unreadable output).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// The first line of output, shortened.
    pub(crate) output: String,
}

/// Runs `argv` (through the platform shell when `shell`), bounded by `timeout`.
pub(crate) fn run_argv(
    argv: &[String],
    shell: bool,
    timeout: Duration,
) -> Result<Output, ToolError> {
    if shell {
        let (sh, flag) = crate::platform::SHELL;
        let script = argv.join(" ");
        crate::platform::tool::run(sh, &[flag, &script], timeout)
    } else {
        let (prog, args) = argv.split_first().ok_or_else(|| ToolError::NotFound {
            program: String::new(),
        })?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::platform::tool::run(prog, &args, timeout)
    }
}

/// Runs one check. Blocking: call from a thread of its own.
pub fn run(cfg: &CheckConfig) -> CheckResult {
    let r = run_argv(&cfg.argv, cfg.shell, Duration::from_secs(cfg.timeout_secs));
    interpret(&cfg.name, r, cfg.expect_value)
}

/// What a run means. Pure.
pub(crate) fn interpret(
    name: &str,
    run: Result<Output, ToolError>,
    expect_value: bool,
) -> CheckResult {
    let result = |status, value, reason: Option<String>, output: String| CheckResult {
        name: name.to_owned(),
        status,
        value,
        reason,
        output,
    };
    let o = match run {
        Ok(o) => o,
        Err(e @ ToolError::TimedOut { .. }) => {
            return result(
                CRITICAL,
                None,
                Some(format!("{e} (with its child processes)")),
                String::new(),
            );
        }
        Err(e) => return result(UNKNOWN, None, Some(e.to_string()), String::new()),
    };
    let (mut status, mut reason) = match o.code {
        Some(0) => (OK, None),
        Some(1) => (WARNING, None),
        Some(2) => (CRITICAL, None),
        Some(3) => (UNKNOWN, None),
        Some(c) => (
            UNKNOWN,
            Some(format!(
                "exit code {c} (a check exits 0 ok, 1 warning, 2 critical, 3 unknown)"
            )),
        ),
        None => (UNKNOWN, Some("killed by a signal".to_owned())),
    };
    let text = o.stdout.as_str();
    let is_text = !text
        .chars()
        .any(|c| c == '\u{FFFD}' || (c.is_control() && !matches!(c, '\n' | '\r' | '\t')));
    if !is_text {
        return result(
            UNKNOWN,
            None,
            Some(format!(
                "output is not text (binary or control characters in {} bytes)",
                text.len()
            )),
            String::new(),
        );
    }
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let output = crate::posture::excerpt(first, 200);
    let value = match value_of(first) {
        Ok(v) => v,
        Err(why) => {
            return result(UNKNOWN, None, Some(why.to_string()), output);
        }
    };
    if value.is_none() && expect_value && reason.is_none() {
        status = UNKNOWN;
        reason = Some(if first.is_empty() {
            "printed nothing; a number was expected".to_owned()
        } else {
            format!("no number in the output {output:?}")
        });
    }
    result(status, value, reason, output)
}

/// Why a check's first line carries no usable number.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ValueError {
    #[error("the value {0:?} is not a finite number")]
    NotFinite(String),
    #[error("performance data {0:?} is not label=value[unit];...")]
    PerfData(String),
}

/// The number a first line carries: the line itself, or the first performance
/// datum after `|` (`label=value[unit][;warn;crit;min;max]`). `Ok(None)` for plain
/// text; `Err` for performance data that is not in the plugin format.
pub(crate) fn value_of(first: &str) -> Result<Option<f64>, ValueError> {
    if let Ok(v) = first.parse::<f64>() {
        return if v.is_finite() {
            Ok(Some(v))
        } else {
            Err(ValueError::NotFinite(first.to_owned()))
        };
    }
    let Some((_, perf)) = first.split_once('|') else {
        return Ok(None);
    };
    let datum = perf.split_whitespace().next().unwrap_or("");
    let bad = || ValueError::PerfData(datum.to_owned());
    let (_, rest) = datum.rsplit_once('=').ok_or_else(bad)?;
    let num = rest.split(';').next().unwrap_or("");
    let end = num
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))
        .unwrap_or(num.len());
    let v: f64 = num[..end].parse().map_err(|_| bad())?;
    if v.is_finite() {
        Ok(Some(v))
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(code: Option<i32>, stdout: &str) -> Result<Output, ToolError> {
        Ok(Output {
            code,
            stdout: stdout.into(),
            stderr: String::new(),
        })
    }

    #[test]
    fn exit_codes_are_nagios_statuses() {
        assert_eq!(interpret("c", out(Some(0), "OK\n"), false).status, OK);
        assert_eq!(interpret("c", out(Some(1), ""), false).status, WARNING);
        assert_eq!(interpret("c", out(Some(2), ""), false).status, CRITICAL);
        assert_eq!(interpret("c", out(Some(3), ""), false).status, UNKNOWN);
        let r = interpret("c", out(Some(127), ""), false);
        assert_eq!(r.status, UNKNOWN);
        assert!(r.reason.unwrap().contains("exit code 127"));
        let r = interpret("c", out(None, ""), false);
        assert_eq!(r.reason.as_deref(), Some("killed by a signal"));
    }

    #[test]
    fn values_from_a_number_or_perfdata() {
        let r = interpret("c", out(Some(0), "42.5\n"), true);
        assert_eq!((r.status, r.value), (OK, Some(42.5)));
        let r = interpret(
            "c",
            out(
                Some(1),
                "DISK WARNING - free space: / 812 MB (8%); | /=9188MB;8000;9000;0;10000\n",
            ),
            false,
        );
        assert_eq!((r.status, r.value), (WARNING, Some(9188.0)));
        assert!(r.output.starts_with("DISK WARNING"));
        // Plain text: a status without a value.
        let r = interpret("c", out(Some(0), "all fine\n"), false);
        assert_eq!((r.status, r.value, r.reason), (OK, None, None));
        // ... unless a value is expected.
        let r = interpret("c", out(Some(0), "all fine\n"), true);
        assert_eq!(r.status, UNKNOWN);
        assert!(r.reason.unwrap().contains("no number"), "{:?}", r.output);
    }

    #[test]
    fn garbage_and_timeouts_are_clear_errors() {
        let r = interpret("c", out(Some(0), "\u{FFFD}\u{FFFD}PNG\u{1a}\n"), false);
        assert_eq!(r.status, UNKNOWN);
        assert!(r.reason.unwrap().contains("not text"));
        assert_eq!(r.value, None);
        let r = interpret("c", out(Some(0), "x | load=abc;1;2\n"), false);
        assert_eq!(r.status, UNKNOWN);
        assert!(
            r.reason.unwrap().contains("performance data"),
            "{}",
            r.output
        );
        let r = interpret("c", out(Some(0), "NaN\n"), false);
        assert_eq!(r.status, UNKNOWN);
        let r = interpret(
            "c",
            Err(ToolError::TimedOut {
                program: "slow".into(),
                secs: 2,
            }),
            false,
        );
        assert_eq!(r.status, CRITICAL);
        assert_eq!(
            r.reason.as_deref(),
            Some("slow did not finish within 2 s and was killed (with its child processes)")
        );
        let r = interpret(
            "c",
            Err(ToolError::NotFound {
                program: "nope".into(),
            }),
            false,
        );
        assert_eq!(r.status, UNKNOWN);
    }

    #[cfg(unix)]
    #[test]
    fn runs_without_a_shell_unless_asked() {
        let argv = vec!["echo".to_owned(), "$HOME".to_owned()];
        let o = run_argv(&argv, false, Duration::from_secs(10)).unwrap();
        assert_eq!(o.stdout, "$HOME\n", "no shell expanded it");
        let o = run_argv(
            &["echo 1 | tr 1 7".to_owned()],
            true,
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(o.stdout, "7\n");
    }
}
