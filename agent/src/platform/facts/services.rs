//! What the service manager says: the state of each configured service and why it
//! could not tell, and the pure parsers of `systemctl` and `launchctl` output.
//! The agent's `collect::services` asks on a thread of its own and turns the answers into
//! metrics.

use crate::platform::tool::ToolError;

/// Why the failed units are unknown.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("cannot parse systemctl output, line {line}: {text:?}")]
    Parse { line: usize, text: String },
    #[error("{program} answered for {got} services, {asked} were asked for")]
    Count {
        program: &'static str,
        asked: usize,
        got: usize,
    },
    #[error("cannot parse launchctl list output, line {line}: {text:?}")]
    LaunchctlParse { line: usize, text: String },
    #[error("service control manager: {0}")]
    Scm(String),
}

/// What the service manager says of one configured service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceState {
    Running,
    /// Installed but not running (stopped, failed, starting, masked, disabled).
    NotRunning,
    /// The service manager does not know the name.
    Missing,
}

/// Parses `systemctl show --property=Id,LoadState,ActiveState,SubState -- U1 U2 …`:
/// one block of `Key=Value` lines per unit, blocks separated by an empty line, in the
/// order the units were named (hence matched by position, not by `Id`, which names
/// the unit an alias resolves to: `sshd` shows `Id=ssh.service`). `LoadState=not-found`
/// is a missing unit; `ActiveState` `active` or `reloading` is running (a oneshot
/// with `RemainAfterExit` that ran is `active` too); anything else is not running.
pub fn parse_systemctl_show(text: &str, asked: usize) -> Result<Vec<ServiceState>, ServiceError> {
    let mut out = Vec::new();
    let mut load: Option<String> = None;
    let mut active: Option<String> = None;
    let mut in_block = false;
    let mut finish = |load: &mut Option<String>, active: &mut Option<String>, line: usize| {
        let state = match (load.take().as_deref(), active.take().as_deref()) {
            (Some("not-found"), _) => ServiceState::Missing,
            (Some(_), Some("active" | "reloading")) => ServiceState::Running,
            (Some(_), Some(_)) => ServiceState::NotRunning,
            _ => {
                return Err(ServiceError::Parse {
                    line,
                    text: "a unit without LoadState or ActiveState".into(),
                });
            }
        };
        out.push(state);
        Ok(())
    };
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        n = i + 1;
        let line = line.trim_end();
        if line.is_empty() {
            if in_block {
                finish(&mut load, &mut active, n)?;
                in_block = false;
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(ServiceError::Parse {
                line: n,
                text: line.chars().take(120).collect(),
            });
        };
        in_block = true;
        match key {
            "LoadState" => load = Some(value.to_owned()),
            "ActiveState" => active = Some(value.to_owned()),
            _ => {}
        }
    }
    if in_block {
        finish(&mut load, &mut active, n)?;
    }
    if out.len() != asked {
        return Err(ServiceError::Count {
            program: "systemctl",
            asked,
            got: out.len(),
        });
    }
    Ok(out)
}

/// Parses `launchctl list` (`PID\tStatus\tLabel` header, then one job a line with
/// `-` as PID when it is not running) and gives the state of each of `names`
/// (launchd labels); a label not listed is missing.
pub fn parse_launchctl_list(
    text: &str,
    names: &[String],
) -> Result<Vec<ServiceState>, ServiceError> {
    let mut running = std::collections::HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || (i == 0 && line.starts_with("PID")) {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            [pid, _status, label] if *pid == "-" || pid.parse::<u32>().is_ok() => {
                running.insert(label.trim(), *pid != "-");
            }
            _ => {
                return Err(ServiceError::LaunchctlParse {
                    line: i + 1,
                    text: line.chars().take(120).collect(),
                });
            }
        }
    }
    Ok(names
        .iter()
        .map(|n| match running.get(n.as_str()) {
            Some(true) => ServiceState::Running,
            Some(false) => ServiceState::NotRunning,
            None => ServiceState::Missing,
        })
        .collect())
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
