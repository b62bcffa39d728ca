//! Runs an external tool (package manager, `systemctl`) with a deadline. Blocking:
//! call it from a thread of its own or `spawn_blocking`, never from the async
//! runtime.
//!
//! Output is drained by two reader threads while the child runs, so a chatty tool
//! cannot fill its pipe and stall. At the deadline the child's whole process tree is
//! killed where the platform allows (`platform::kill_tree`). After a normal exit the
//! readers get a short grace only: a daemon the tool left behind may hold the pipe
//! open, and its reader thread is then left to finish on its own.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Why a tool gave no usable output.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{program} is not installed")]
    NotFound { program: String },
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} did not finish within {secs} s and was killed")]
    TimedOut { program: String, secs: u64 },
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: String,
        stderr: String,
    },
}

/// Why a report built from a platform tool's output (pending updates, the software
/// list) could not be read: the tool failed, or printed what its parser does not
/// know. One type for the patch sources and the inventory, which read the same
/// kind of output the same way (issue 11).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("cannot parse {what} output, line {line}: {text:?}")]
    Parse {
        what: &'static str,
        line: usize,
        text: String,
    },
    #[error("cannot parse {what} output: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("no supported package manager found (looked for {looked_for})")]
    NoManager { looked_for: &'static str },
    #[error("no software list source found (looked for {looked_for})")]
    NoSource { looked_for: &'static str },
    #[error("{0}")]
    NotImplemented(&'static str),
}

impl ReadError {
    /// A line `what`'s parser does not know (its text cut to 120 characters).
    pub fn parse(what: &'static str, line: usize, text: &str) -> Self {
        ReadError::Parse {
            what,
            line,
            text: text.chars().take(120).collect(),
        }
    }
}

/// What a finished tool printed.
#[derive(Debug)]
pub struct Output {
    /// Exit code; `None` if killed by a signal.
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Output {
    /// The output if the exit code is one of `ok`, else a [`ToolError::Failed`].
    pub fn accept(self, program: &str, ok: &[i32]) -> Result<Output, ToolError> {
        match self.code {
            Some(c) if ok.contains(&c) => Ok(self),
            code => Err(ToolError::Failed {
                program: program.to_owned(),
                status: code.map_or("killed by a signal".into(), |c| format!("exit code {c}")),
                stderr: last_lines(&self.stderr, 3),
            }),
        }
    }
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}

/// Runs `program args` with `LANG=C` (parsers expect English), no stdin, and kills it
/// after `timeout`.
pub fn run(program: &str, args: &[&str], timeout: Duration) -> Result<Output, ToolError> {
    let mut cmd = Command::new(program);
    crate::platform::isolate(&mut cmd);
    let mut child = cmd
        .args(args)
        .env("LANG", "C")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ToolError::NotFound {
                program: program.to_owned(),
            },
            _ => ToolError::Spawn {
                program: program.to_owned(),
                source,
            },
        })?;
    crate::platform::contain(&child);
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = mpsc::channel();
        if let Some(mut pipe) = pipe {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
            });
        }
        rx
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                crate::platform::kill_tree(&mut child);
                let _ = child.wait();
                return Err(ToolError::TimedOut {
                    program: program.to_owned(),
                    secs: timeout.as_secs(),
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(source) => {
                crate::platform::kill_tree(&mut child);
                return Err(ToolError::Spawn {
                    program: program.to_owned(),
                    source,
                });
            }
        }
    };
    crate::platform::release(&child);
    let grace = Duration::from_secs(2);
    Ok(Output {
        code: status.code(),
        stdout: out.recv_timeout(grace).unwrap_or_default(),
        stderr: err.recv_timeout(grace).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_is_not_found() {
        let e = run("tandem-no-such-tool", &[], Duration::from_secs(5)).unwrap_err();
        assert!(matches!(e, ToolError::NotFound { .. }), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_slow_program_is_killed_at_the_deadline() {
        let started = Instant::now();
        let e = run("sleep", &["30"], Duration::from_millis(300)).unwrap_err();
        assert!(matches!(e, ToolError::TimedOut { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[cfg(unix)]
    #[test]
    fn the_deadline_kills_grandchildren_too() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 60 & echo $! > {}; wait", pidfile.display());
        let e = run("sh", &["-c", &script], Duration::from_millis(500)).unwrap_err();
        assert!(matches!(e, ToolError::TimedOut { .. }), "{e}");
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let stat = format!("/proc/{}/stat", pid.trim());
        let deadline = Instant::now() + Duration::from_secs(5);
        // Gone, or a zombie waiting for a reaper (containers without an init).
        while std::fs::read_to_string(&stat).is_ok_and(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        }) {
            assert!(Instant::now() < deadline, "grandchild {pid} still running");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[cfg(unix)]
    #[test]
    fn output_and_exit_codes() {
        let o = run(
            "sh",
            &["-c", "echo hi; echo oops >&2; exit 3"],
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(o.code, Some(3));
        assert_eq!(o.stdout, "hi\n");
        let e = o.accept("sh", &[0]).unwrap_err();
        assert_eq!(e.to_string(), "sh failed (exit code 3): oops");
    }
}
