//! Failed systemd units: `service.failed{unit}` = 1 for each, and `services.failed`,
//! their count.
//!
//! `systemctl` runs on a thread of its own at most once a minute, never in the
//! sample's path: each sample reports the last answer, so a hung systemd costs no
//! sample. While there is no answer (no systemd, `systemctl` failed or timed out)
//! neither metric is sent: an absent count means "unknown", never "0 failed".

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Reading;
use crate::tool::ToolError;

/// How often systemctl is asked; failed units change rarely.
const EVERY: Duration = Duration::from_secs(60);
/// Deadline of one `systemctl` call.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// Why the failed units are unknown.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("cannot parse systemctl output, line {line}: {text:?}")]
    Parse { line: usize, text: String },
}

/// Parses `systemctl list-units --state=failed --plain --no-legend`:
/// `UNIT LOAD ACTIVE SUB DESCRIPTION…`, one unit a line (a leading `●`, printed
/// without `--plain` by some versions, is skipped). Empty output: none failed.
pub fn parse_failed_units(text: &str) -> Result<Vec<String>, ServiceError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim_start().trim_start_matches(['●', '*']).trim();
        if l.is_empty() {
            continue;
        }
        let f: Vec<&str> = l.split_whitespace().collect();
        match f.as_slice() {
            // The collector refuses a batch naming a series twice: list a unit once.
            [unit, _load, _active, _sub, ..] if unit.contains('.') => {
                if !out.iter().any(|u| u == unit) {
                    out.push((*unit).to_owned())
                }
            }
            _ => {
                return Err(ServiceError::Parse {
                    line: i + 1,
                    text: line.chars().take(120).collect(),
                });
            }
        }
    }
    Ok(out)
}

#[derive(Default)]
struct State {
    /// A check thread is running: never start a second one behind a hung first.
    checking: bool,
    started: Option<Instant>,
    failed: Option<Vec<String>>,
    /// Last error logged, so a persistent one is logged once, not every minute.
    last_error: Option<String>,
}

/// The failed-units part of the sampler.
pub(super) struct Services {
    /// Shared with the check thread, which writes its answer here.
    state: Arc<Mutex<State>>,
}

impl Services {
    /// Starts the first check at once, so that the first sample (and
    /// `collect --once`) usually has an answer.
    pub(super) fn new() -> Self {
        let s = Services {
            state: Arc::new(Mutex::new(State::default())),
        };
        s.start_if_due();
        s
    }

    fn start_if_due(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.checking || st.started.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        st.checking = true;
        st.started = Some(Instant::now());
        let state = self.state.clone();
        let spawned = std::thread::Builder::new()
            .name("failed-units".into())
            .spawn(move || {
                let answer = crate::platform::failed_units(TIMEOUT);
                let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                st.checking = false;
                match answer {
                    None => st.failed = None,
                    Some(Ok(units)) => {
                        st.failed = Some(units);
                        st.last_error = None;
                    }
                    Some(Err(err)) => {
                        st.failed = None;
                        let text = err.to_string();
                        if st.last_error.as_deref() != Some(text.as_str()) {
                            tracing::warn!(error = %text, "cannot list failed systemd units; services.failed not reported");
                            st.last_error = Some(text);
                        }
                    }
                }
            });
        if let Err(err) = spawned {
            st.checking = false;
            tracing::warn!(error = %err, "cannot start the failed-units check");
        }
    }

    pub(super) fn sample(&mut self, r: &mut Reading) {
        self.start_if_due();
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(units) = &st.failed {
            for u in units {
                r.push("service.failed", u.clone(), 1.0);
            }
            r.push("services.failed", "", units.len() as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/services")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn failed_units() {
        let u = parse_failed_units(&fixture("systemctl-failed.debian12.txt")).unwrap();
        assert_eq!(
            u,
            [
                "nginx.service",
                "mnt-backup.mount",
                "systemd-networkd-wait-online.service"
            ]
        );
        let u = parse_failed_units(&fixture("systemctl-failed-bullet.txt")).unwrap();
        assert_eq!(u, ["nginx.service"]);
        assert!(parse_failed_units("\n").unwrap().is_empty());
        let twice = "a.service loaded failed failed A\na.service loaded failed failed A\n";
        assert_eq!(parse_failed_units(twice).unwrap(), ["a.service"]);
    }

    #[test]
    fn garbage_is_an_error() {
        let e = parse_failed_units("System has not been booted with systemd\n").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        assert!(parse_failed_units("0 loaded units listed.\n").is_err());
    }

    #[test]
    fn unknown_is_absent_not_zero() {
        let mut s = Services {
            state: Arc::new(Mutex::new(State {
                started: Some(Instant::now()),
                ..State::default()
            })),
        };
        let mut r = Reading {
            time_unix_ms: 0,
            values: Vec::new(),
        };
        s.sample(&mut r);
        assert!(r.values.is_empty());
        s.state.lock().unwrap().failed = Some(vec!["a.service".into()]);
        s.sample(&mut r);
        let got: Vec<_> = r
            .values
            .iter()
            .map(|v| (v.name, v.dimension.as_str(), v.value))
            .collect();
        assert_eq!(
            got,
            [
                ("service.failed", "a.service", 1.0),
                ("services.failed", "", 1.0)
            ]
        );
    }
}
