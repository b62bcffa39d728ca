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
//!   platform facade, parsed by [`parse_wbadmin_versions`] and [`parse_tmutil_latest`].
//!
//! Invariant: an age is reported only from a time read from the source; a source
//! that cannot be read reports its error and no age (never age 0).

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// Deepest directory level searched below a `path` source.
pub const MAX_DEPTH: usize = 4;
/// Most directory entries looked at per `path` check (a bound on the I/O).
pub const MAX_ENTRIES: usize = 100_000;

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
    pub fn kind(&self) -> &'static str {
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
    pub source: Source,
    /// Older than this is stale (`backup.stale{name}` = 1).
    pub max_age_secs: u64,
    /// How often the source is read again (for `path`: besides the watch).
    pub check_interval_secs: u64,
    /// Deadline of a `command`, `wbadmin` or `tmutil` run.
    pub timeout_secs: u64,
}

/// What the agent knows about one backup.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackupState {
    pub name: String,
    pub source: &'static str,
    /// When the newest good backup finished; `None` when unknown (see `error`).
    pub last_success_unix_ms: Option<i64>,
    pub max_age_secs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub evidence: String,
}

impl BackupState {
    /// Age at `now_ms`, in seconds (0 for a time slightly in the future).
    pub fn age_secs(&self, now_ms: i64) -> Option<f64> {
        self.last_success_unix_ms
            .map(|t| (now_ms.saturating_sub(t)).max(0) as f64 / 1000.0)
    }

    pub fn stale(&self, now_ms: i64) -> Option<bool> {
        self.age_secs(now_ms).map(|a| a > self.max_age_secs as f64)
    }
}

/// Reads one backup's evidence. Blocking (file walks, commands).
pub fn check(cfg: &BackupConfig) -> BackupState {
    let timeout = std::time::Duration::from_secs(cfg.timeout_secs);
    let result: Result<(i64, String), String> = match &cfg.source {
        Source::Path(dir) => newest_file(dir).and_then(|found| match found {
            Some((p, t)) => Ok((t, format!("newest file {}", p.display()))),
            None => Err(format!("{} holds no files", dir.display())),
        }),
        Source::Command { argv, shell } => crate::checks::run_argv(argv, *shell, timeout)
            .map_err(|e| e.to_string())
            .and_then(|o| {
                if o.code != Some(0) {
                    return Err(format!(
                        "{} exited with {} : {}",
                        argv.first().map_or("", String::as_str),
                        o.code.map_or("a signal".into(), |c| c.to_string()),
                        crate::posture::excerpt(&o.stderr, 200)
                    ));
                }
                parse_timestamp_output(&o.stdout).map(|t| {
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
        Source::Wbadmin => crate::platform::native_backup("wbadmin", timeout),
        Source::TimeMachine => crate::platform::native_backup("time_machine", timeout),
    };
    let (last, error, evidence) = match result {
        Ok((t, ev)) => (Some(t), None, ev),
        Err(e) => (None, Some(e), String::new()),
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
pub fn newest_file(dir: &Path) -> Result<Option<(PathBuf, i64)>, String> {
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
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

fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

/// The time a backup command printed as its last non-empty line: Unix seconds
/// (`1700000000`, `1700000000.5`) or RFC 3339 (`2024-01-15T02:00:00Z`,
/// `2024-01-15T02:00:00.123+01:00`; restic prints nanoseconds, accepted).
pub fn parse_timestamp_output(text: &str) -> Result<i64, String> {
    let line = last_line(text);
    if line.is_empty() {
        return Err("the command printed nothing (expected the last success's time)".into());
    }
    if let Ok(secs) = line.parse::<f64>()
        && secs.is_finite()
        && secs > 0.0
    {
        return Ok((secs * 1000.0) as i64);
    }
    parse_rfc3339(line).ok_or_else(|| {
        format!(
            "cannot read a time from {:?} (expected Unix seconds or RFC 3339)",
            line.chars().take(80).collect::<String>()
        )
    })
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix ms of a civil date and time given in a zone `offset_secs` east of UTC;
/// `None` for out-of-range fields.
fn civil_ms(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64, offset_secs: i64) -> Option<i64> {
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset_secs;
    Some(secs * 1000)
}

/// An RFC 3339 time (a space instead of the `T`, and an offset without a colon, as
/// `date` prints them, are accepted).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    if b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ' || b[10] == b't') {
        return None;
    }
    let (y, mo, d, h, mi, sec) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    let mut i = 19;
    let mut frac_ms = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = s.get(start..i)?;
        let ms3: String = digits.chars().chain("000".chars()).take(3).collect();
        frac_ms = ms3.parse().ok()?;
    }
    let zone = s.get(i..)?;
    let offset = match zone {
        "Z" | "z" => 0,
        z if z.len() == 6 && (z.starts_with('+') || z.starts_with('-')) && &z[3..4] == ":" => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            sign * (z[1..3].parse::<i64>().ok()? * 3600 + z[4..6].parse::<i64>().ok()? * 60)
        }
        // `date +%Y-%m-%dT%H:%M:%S%z` prints the offset without a colon.
        z if z.len() == 5 => parse_utc_offset(z)?,
        _ => return None,
    };
    Some(civil_ms(y, mo, d, h, mi, sec, offset)? + frac_ms)
}

/// `wbadmin get versions`: the newest `Backup time: M/D/YYYY h:mm AM|PM` (English
/// Windows; local time, converted with `offset_secs`).
pub fn parse_wbadmin_versions(text: &str, offset_secs: i64) -> Result<(i64, String), String> {
    let mut best: Option<(i64, String)> = None;
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("Backup time:") else {
            continue;
        };
        let rest = rest.trim();
        let mut parts = rest.split_whitespace();
        let (Some(date), Some(time)) = (parts.next(), parts.next()) else {
            continue;
        };
        let ampm = parts.next();
        let dm: Vec<i64> = date.split('/').filter_map(|x| x.parse().ok()).collect();
        let tm: Vec<i64> = time.split(':').filter_map(|x| x.parse().ok()).collect();
        if dm.len() != 3 || tm.len() < 2 {
            continue;
        }
        let mut h = tm[0];
        match ampm {
            Some("PM") if h < 12 => h += 12,
            Some("AM") if h == 12 => h = 0,
            _ => {}
        }
        if let Some(ms) = civil_ms(
            dm[2],
            dm[0],
            dm[1],
            h,
            tm[1],
            *tm.get(2).unwrap_or(&0),
            offset_secs,
        ) && best.as_ref().is_none_or(|(b, _)| ms > *b)
        {
            best = Some((ms, format!("wbadmin get versions: Backup time {rest}")));
        }
    }
    best.ok_or_else(|| {
        format!(
            "wbadmin lists no backup version: {}",
            crate::posture::excerpt(text, 160)
        )
    })
}

/// `tmutil latestbackup`: a path ending in `YYYY-MM-DD-HHMMSS` (optionally
/// `.backup`, on APFS destinations), local time.
pub fn parse_tmutil_latest(text: &str, offset_secs: i64) -> Result<(i64, String), String> {
    let line = last_line(text);
    let name = line
        .rsplit('/')
        .next()
        .unwrap_or("")
        .trim_end_matches(".backup");
    let f: Vec<&str> = name.split('-').collect();
    let parse = || -> Option<i64> {
        if f.len() != 4 || f[3].len() != 6 {
            return None;
        }
        let n = |s: &str| s.parse::<i64>().ok();
        civil_ms(
            n(f[0])?,
            n(f[1])?,
            n(f[2])?,
            n(&f[3][0..2])?,
            n(&f[3][2..4])?,
            n(&f[3][4..6])?,
            offset_secs,
        )
    };
    parse()
        .map(|t| (t, format!("tmutil latestbackup: {line}")))
        .ok_or_else(|| format!("tmutil latestbackup printed no backup: {line:?}"))
}

/// `+0100`-style offsets (`date +%z`) in seconds east of UTC.
pub fn parse_utc_offset(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.len() != 5 {
        return None;
    }
    let sign = match &s[0..1] {
        "+" => 1,
        "-" => -1,
        _ => return None,
    };
    Some(sign * (s[1..3].parse::<i64>().ok()? * 3600 + s[3..5].parse::<i64>().ok()? * 60))
}

/// The machine's UTC offset now (`date +%z`; 0 when unreadable), for the native
/// sources that print local time.
pub fn local_offset_secs() -> i64 {
    crate::tool::run("date", &["+%z"], std::time::Duration::from_secs(5))
        .ok()
        .and_then(|o| parse_utc_offset(&o.stdout))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let e = parse_timestamp_output("\u{1}\u{2}garbage").unwrap_err();
        assert!(e.contains("cannot read a time"), "{e}");
        assert!(
            parse_timestamp_output("")
                .unwrap_err()
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
        assert!(newest_file(&old).unwrap_err().contains("not a directory"));
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
