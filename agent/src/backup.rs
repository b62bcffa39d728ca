//! Backup freshness: when did the newest good backup of each configured source
//! finish (`[[backup]]` in agent.toml), or why the agent cannot tell.
//!
//! Sources:
//! - `path`: the newest file under a directory (searched [`MAX_DEPTH`] levels deep,
//!   at most [`MAX_ENTRIES`] entries) is the newest backup. The run loop watches the
//!   directory with `notify` and also looks again every `check_interval_secs`, for
//!   events a watch misses (network shares, inotify limits);
//! - `command`: a command (run like a custom check, without a shell unless asked)
//!   prints the time of the last success as its last non-empty line: a Unix time in
//!   seconds or an RFC 3339 time (docs/METRICS.md has examples for restic, Borg and
//!   Veeam);
//! - `wbadmin` (Windows Server Backup) and `time_machine` (macOS): read through the
//!   platform facade, parsed by `parse_wbadmin_versions` and `parse_tmutil_latest`
//!   (`platform/facts/backup.rs`).
//!
//! Invariant: an age is reported only from a time read from the source; a source
//! that cannot be read reports its error and no age (never age 0).

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// Deepest directory level searched below a `path` source.
pub(crate) const MAX_DEPTH: usize = 4;
/// Most directory entries looked at per `path` check (a bound on the I/O).
pub(crate) const MAX_ENTRIES: usize = 100_000;

/// Where one backup's evidence is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Path(PathBuf),
    Command { argv: Vec<String>, shell: bool },
    Wbadmin,
    TimeMachine,
}

impl Source {
    /// The wire's source name.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Source::Path(_) => "path",
            Source::Command { .. } => "command",
            Source::Wbadmin => "wbadmin",
            Source::TimeMachine => "time_machine",
        }
    }
}

/// One configured backup (validated `[[backup]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupConfig {
    pub name: String,
    pub(crate) source: Source,
    /// Older than this is stale (`backup.stale{name}` = 1).
    pub(crate) max_age_secs: u64,
    /// How often the source is read again (for `path`: besides the watch).
    pub(crate) check_interval_secs: u64,
    /// Deadline of a `command`, `wbadmin` or `tmutil` run.
    pub(crate) timeout_secs: u64,
}

/// What the agent knows about one backup.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackupState {
    pub(crate) name: String,
    pub(crate) source: &'static str,
    /// When the newest good backup finished; `None` when unknown (see `error`).
    pub(crate) last_success_unix_ms: Option<i64>,
    pub(crate) max_age_secs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    pub(crate) evidence: String,
}

impl BackupState {
    /// Age at `now_ms`, in seconds (0 for a time slightly in the future).
    pub(crate) fn age_secs(&self, now_ms: i64) -> Option<f64> {
        self.last_success_unix_ms
            .map(|t| (now_ms.saturating_sub(t)).max(0) as f64 / 1000.0)
    }

    pub(crate) fn stale(&self, now_ms: i64) -> Option<bool> {
        self.age_secs(now_ms).map(|a| a > self.max_age_secs as f64)
    }
}

/// Why a backup's time is unknown (the message is what `BackupState::error` carries).
#[derive(Debug, thiserror::Error)]
pub(crate) enum BackupError {
    #[error(transparent)]
    Read(#[from] BackupReadError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{} holds no files", .0.display())]
    NoFiles(PathBuf),
    #[error("{program} exited with {status} : {stderr}")]
    Exited {
        program: String,
        status: String,
        stderr: String,
    },
}

/// Reads one backup's evidence. Blocking (file walks, commands).
pub fn check(cfg: &BackupConfig) -> BackupState {
    let timeout = std::time::Duration::from_secs(cfg.timeout_secs);
    let result: Result<(i64, String), BackupError> = match &cfg.source {
        Source::Path(dir) => newest_file(dir).and_then(|found| match found {
            Some((p, t)) => Ok((t, format!("newest file {}", p.display()))),
            None => Err(BackupError::NoFiles(dir.clone())),
        }),
        Source::Command { argv, shell } => crate::checks::run_argv(argv, *shell, timeout)
            .map_err(|e| BackupError::Read(e.into()))
            .and_then(|o| {
                if o.code != Some(0) {
                    return Err(BackupError::Exited {
                        program: argv.first().cloned().unwrap_or_default(),
                        status: o.code.map_or("a signal".into(), |c| c.to_string()),
                        stderr: crate::posture::excerpt(&o.stderr, 200),
                    });
                }
                parse_timestamp_output(&o.stdout)
                    .map_err(|e| BackupError::Read(e.into()))
                    .map(|t| {
                        (
                            t,
                            format!(
                                "{} printed {:?}",
                                argv.first().map_or("", String::as_str),
                                last_line(&o.stdout)
                            ),
                        )
                    })
            }),
        Source::Wbadmin => {
            crate::platform::native_backup("wbadmin", timeout).map_err(BackupError::Read)
        }
        Source::TimeMachine => {
            crate::platform::native_backup("time_machine", timeout).map_err(BackupError::Read)
        }
    };
    let (last, error, evidence) = match result {
        Ok((t, ev)) => (Some(t), None, ev),
        Err(e) => (None, Some(e.to_string()), String::new()),
    };
    BackupState {
        name: cfg.name.clone(),
        source: cfg.source.kind(),
        last_success_unix_ms: last,
        max_age_secs: cfg.max_age_secs,
        error,
        evidence,
    }
}

/// The newest regular file below `dir` (depth-first, [`MAX_DEPTH`] levels, at most
/// [`MAX_ENTRIES`] entries) and its modification time in Unix ms; `None` if no
/// file. Files whose names start with `.` (partial uploads, `.DS_Store`) are skipped.
pub(crate) fn newest_file(dir: &Path) -> Result<Option<(PathBuf, i64)>, BackupError> {
    let meta = std::fs::metadata(dir).map_err(|source| BackupError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(BackupError::NotADirectory(dir.to_path_buf()));
    }
    let mut best: Option<(PathBuf, i64)> = None;
    let mut seen = 0usize;
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            seen += 1;
            if seen > MAX_ENTRIES {
                return Ok(best);
            }
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                if depth < MAX_DEPTH {
                    stack.push((e.path(), depth + 1));
                }
            } else if ft.is_file()
                && let Ok(m) = e.metadata()
                && let Ok(t) = m.modified()
            {
                let ms = t
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                if best.as_ref().is_none_or(|(_, b)| ms > *b) {
                    best = Some((e.path(), ms));
                }
            }
        }
    }
    Ok(best)
}

use crate::platform::facts::backup::last_line;
pub(crate) use crate::platform::facts::backup::{BackupReadError, parse_timestamp_output};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::facts::backup::*;

    #[test]
    fn timestamps() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-01-15T02:00:00Z"),
            Some(1_705_284_000_000)
        );
        assert_eq!(
            parse_rfc3339("2024-01-15T03:00:00.250+01:00"),
            Some(1_705_284_000_250)
        );
        // restic's nanoseconds.
        assert_eq!(
            parse_rfc3339("2024-01-15T02:00:00.123456789Z"),
            Some(1_705_284_000_123)
        );
        assert_eq!(
            parse_rfc3339("2024-01-15T03:00:00+0100"),
            Some(1_705_284_000_000)
        );
        assert_eq!(parse_rfc3339("2024-13-15T02:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(
            parse_timestamp_output("snapshot saved\n1705284000\n\n"),
            Ok(1_705_284_000_000)
        );
        let e = parse_timestamp_output("\u{1}\u{2}garbage")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read a time"), "{e}");
        assert!(
            parse_timestamp_output("")
                .unwrap_err()
                .to_string()
                .contains("printed nothing")
        );
        assert_eq!(parse_utc_offset("+0130"), Some(5400));
        assert_eq!(parse_utc_offset("-0500"), Some(-18_000));
    }

    #[test]
    /// wbadmin: a sample written from Microsoft's documentation; tmutil: synthetic.
    fn wbadmin_documented_and_time_machine_synthetic() {
        let text = crate::test_fixture("posture", "wbadmin-get-versions.ws2022.txt");
        let (t, ev) = parse_wbadmin_versions(&text, 3600).unwrap();
        // 1/16/2024 1:00 AM at UTC+1 is 00:00 UTC.
        assert_eq!(t, parse_rfc3339("2024-01-16T00:00:00Z").unwrap());
        assert!(ev.contains("1/16/2024 1:00 AM"), "{ev}");
        assert!(parse_wbadmin_versions("ERROR - No backup was found.", 0).is_err());
        let (t, _) =
            parse_tmutil_latest("/Volumes/TM/Backups.backupdb/mac/2024-01-15-020000\n", 0).unwrap();
        assert_eq!(t, 1_705_284_000_000);
        let (t2, _) =
            parse_tmutil_latest("/Volumes/.timemachine/x/2024-01-15-020000.backup\n", 0).unwrap();
        assert_eq!(t2, t);
        assert!(parse_tmutil_latest("No machine directory found for host.\n", 0).is_err());
    }

    #[test]
    fn newest_file_walks_and_skips_hidden() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(newest_file(dir.path()).unwrap(), None);
        std::fs::create_dir_all(dir.path().join("2024/01")).unwrap();
        let old = dir.path().join("a.tar");
        std::fs::write(&old, "x").unwrap();
        let f = std::fs::File::options().write(true).open(&old).unwrap();
        f.set_modified(UNIX_EPOCH + std::time::Duration::from_secs(1_000))
            .unwrap();
        let deep = dir.path().join("2024/01/b.tar");
        std::fs::write(&deep, "x").unwrap();
        std::fs::write(dir.path().join(".partial"), "x").unwrap();
        let (p, _) = newest_file(dir.path()).unwrap().unwrap();
        assert_eq!(p, deep);
        assert!(newest_file(&dir.path().join("missing")).is_err());
        assert!(
            newest_file(&old)
                .unwrap_err()
                .to_string()
                .contains("not a directory")
        );
    }

    #[test]
    fn ages_and_staleness() {
        let s = BackupState {
            name: "nas".into(),
            source: "path",
            last_success_unix_ms: Some(1_000_000),
            max_age_secs: 60,
            error: None,
            evidence: String::new(),
        };
        assert_eq!(s.age_secs(1_030_000), Some(30.0));
        assert_eq!(s.stale(1_030_000), Some(false));
        assert_eq!(s.stale(1_061_000), Some(true));
        let unknown = BackupState {
            last_success_unix_ms: None,
            error: Some("gone".into()),
            ..s
        };
        assert_eq!(unknown.age_secs(5), None, "no age without evidence");
        assert_eq!(unknown.stale(5), None);
    }
}
