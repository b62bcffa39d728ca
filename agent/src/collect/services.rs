//! Services: the configured ones (`service.up{name}` = 1 running, 0 not running or
//! not installed) and, where systemd runs, every failed unit (`service.failed{unit}`
//! = 1 for each, and `services.failed`, their count).
//!
//! The service manager is asked on a thread of its own at most once a minute (every
//! five while the agent sheds work, see `crate::budget`), at once when the list of
//! configured services changes, and never in the sample's path: each sample reports
//! the last answer, so a hung systemd costs no sample. While there is no answer (no
//! service manager, the query failed or timed out) nothing is sent: an absent value
//! means "unknown", never "0". A configured service that does not exist is sent as 0
//! (the service the operator expects is not running) and logged once as a warning.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Reading;

/// How often the service manager is asked.
const EVERY: Duration = Duration::from_secs(60);
/// How often while the agent sheds optional work.
const EVERY_SHEDDING: Duration = Duration::from_secs(300);
/// Deadline of one `systemctl` call.
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) use crate::platform::facts::services::{ServiceError, ServiceState};

impl ServiceState {
    fn value(self) -> f64 {
        match self {
            ServiceState::Running => 1.0,
            ServiceState::NotRunning | ServiceState::Missing => 0.0,
        }
    }
}

#[derive(Default)]
struct State {
    /// A check thread is running: never start a second one behind a hung first.
    checking: bool,
    started: Option<Instant>,
    failed: Option<Vec<String>>,
    /// Last error logged, so a persistent one is logged once, not every minute.
    last_error: Option<String>,
    /// The configured services, as the config lists them.
    wanted: Vec<String>,
    /// The list changed since the last check was started: check at once.
    wanted_changed: bool,
    /// The last answer for configured services; empty while unknown.
    up: Vec<(String, ServiceState)>,
    /// Last error of the configured-services query, logged once.
    last_up_error: Option<String>,
    /// Missing services already logged, so each is logged once.
    missing_logged: HashSet<String>,
    /// The agent sheds optional work: ask less often.
    shedding: bool,
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

    /// Sets the configured services (a reload); a changed list is checked at once.
    pub(super) fn set_wanted(&self, names: &[String]) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.wanted != names {
            st.wanted = names.to_vec();
            st.wanted_changed = true;
            let keep: Vec<_> = st.up.drain(..).filter(|(n, _)| names.contains(n)).collect();
            st.up = keep;
        }
    }

    /// Waits (up to `timeout`) until a check with the current list has answered, for
    /// `collect --once`, whose single sample must not race the first check. Blocking.
    pub(super) fn settle(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            self.start_if_due();
            {
                let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if !st.checking && !st.wanted_changed {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// While shedding, the service manager is asked every five minutes only.
    pub(super) fn set_shedding(&self, shedding: bool) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .shedding = shedding;
    }

    fn start_if_due(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let every = if st.shedding { EVERY_SHEDDING } else { EVERY };
        if st.checking || (!st.wanted_changed && st.started.is_some_and(|t| t.elapsed() < every)) {
            return;
        }
        st.checking = true;
        st.wanted_changed = false;
        st.started = Some(Instant::now());
        let wanted = st.wanted.clone();
        let state = self.state.clone();
        let spawned = std::thread::Builder::new()
            .name("services".into())
            .spawn(move || {
                let answer = crate::platform::failed_units(TIMEOUT);
                let up = if wanted.is_empty() {
                    None
                } else {
                    crate::platform::service_states(&wanted, TIMEOUT)
                };
                let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                st.checking = false;
                record_up(&mut st, &wanted, up);
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
            tracing::warn!(error = %err, "cannot start the service check");
        }
    }

    pub(super) fn sample(&mut self, r: &mut Reading) {
        self.start_if_due();
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for (name, state) in &st.up {
            r.push("service.up", name.clone(), state.value());
        }
        if let Some(units) = &st.failed {
            for u in units {
                r.push("service.failed", u.clone(), 1.0);
            }
            r.push("services.failed", "", units.len() as f64);
        }
    }
}

/// Stores the configured services' answer (if the list did not change meanwhile)
/// and logs what an operator should know, once each.
fn record_up(
    st: &mut State,
    asked: &[String],
    up: Option<Result<Vec<ServiceState>, ServiceError>>,
) {
    match up {
        None if asked.is_empty() => st.up.clear(),
        None => {
            st.up.clear();
            let text = "no service manager this agent can query on this system".to_owned();
            if st.last_up_error.as_deref() != Some(text.as_str()) {
                tracing::warn!(services = ?asked, "{text}; service.up not reported");
                st.last_up_error = Some(text);
            }
        }
        Some(Err(err)) => {
            st.up.clear();
            let text = err.to_string();
            if st.last_up_error.as_deref() != Some(text.as_str()) {
                tracing::warn!(error = %text, "cannot query the configured services; service.up not reported");
                st.last_up_error = Some(text);
            }
        }
        Some(Ok(states)) => {
            st.last_up_error = None;
            for (name, state) in asked.iter().zip(&states) {
                if *state != ServiceState::Missing {
                    // Installed now: should it vanish again, say so again.
                    st.missing_logged.remove(name);
                } else if st.missing_logged.insert(name.clone()) {
                    tracing::warn!(service = %name, "configured service does not exist on this machine; service.up is sent as 0");
                }
            }
            // A reload may have changed the list while the query ran: keep only
            // names still wanted (the new list is being checked already).
            st.up = asked
                .iter()
                .cloned()
                .zip(states)
                .filter(|(n, _)| st.wanted.contains(n))
                .collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::facts::services::*;

    fn fixture(name: &str) -> String {
        crate::test_fixture("services", name)
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
    fn systemctl_show_blocks_by_position() {
        let text = fixture("systemctl-show.debian12.txt");
        let got = parse_systemctl_show(&text, 4).unwrap();
        assert_eq!(
            got,
            [
                ServiceState::Running,
                ServiceState::NotRunning,
                ServiceState::Missing,
                ServiceState::NotRunning
            ]
        );
        let e = parse_systemctl_show(&text, 3).unwrap_err();
        assert!(e.to_string().contains("4 services, 3 were asked"), "{e}");
        assert!(parse_systemctl_show("System has not been booted\n", 1).is_err());
        assert!(parse_systemctl_show("Id=a.service\nSubState=dead\n", 1).is_err());
    }

    #[test]
    fn launchctl_list_states() {
        let text = fixture("launchctl-list.macos14.txt");
        let names: Vec<String> = ["com.openssh.sshd", "org.nginx.nginx", "com.example.gone"]
            .map(String::from)
            .into();
        assert_eq!(
            parse_launchctl_list(&text, &names).unwrap(),
            [
                ServiceState::NotRunning,
                ServiceState::Running,
                ServiceState::Missing
            ]
        );
        assert!(parse_launchctl_list("PID\tStatus\tLabel\nnonsense\n", &names).is_err());
    }

    #[test]
    fn configured_services_zero_when_missing_absent_when_unknown() {
        let mut s = Services {
            state: Arc::new(Mutex::new(State {
                started: Some(Instant::now()),
                ..State::default()
            })),
        };
        let names: Vec<String> = ["ssh", "gone"].map(String::from).into();
        s.set_wanted(&names);
        s.state.lock().unwrap().wanted_changed = false;
        let mut st = s.state.lock().unwrap();
        record_up(
            &mut st,
            &names,
            Some(Ok(vec![ServiceState::Running, ServiceState::Missing])),
        );
        assert!(st.missing_logged.contains("gone"));
        drop(st);
        let mut r = Reading {
            time_unix_ms: 0,
            values: Vec::new(),
        };
        s.sample(&mut r);
        let got: Vec<_> = r
            .values
            .iter()
            .map(|v| (v.name, v.dimension.as_str(), v.value))
            .collect();
        assert_eq!(
            got,
            [("service.up", "ssh", 1.0), ("service.up", "gone", 0.0)]
        );
        // A failed query forgets the last answer: nothing is sent, not a stale 1.
        record_up(
            &mut s.state.lock().unwrap(),
            &names,
            Some(Err(ServiceError::Scm("access denied".into()))),
        );
        let mut r = Reading {
            time_unix_ms: 0,
            values: Vec::new(),
        };
        s.sample(&mut r);
        assert!(r.values.is_empty());
        // A reload dropping a name stops its series at once.
        record_up(
            &mut s.state.lock().unwrap(),
            &names,
            Some(Ok(vec![ServiceState::Running, ServiceState::Running])),
        );
        s.set_wanted(&names[..1]);
        let mut r = Reading {
            time_unix_ms: 0,
            values: Vec::new(),
        };
        s.state.lock().unwrap().checking = true;
        s.sample(&mut r);
        assert_eq!(r.values.len(), 1);
        assert_eq!(r.values[0].dimension, "ssh");
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
