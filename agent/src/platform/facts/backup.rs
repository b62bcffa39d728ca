//! Times read from backup tools: the pure parsers of what a backup command prints
//! (Unix seconds or RFC 3339), of `wbadmin get versions` and `tmutil latestbackup`
//! (local times), and the machine's UTC offset they are converted with.
//! The agent's `backup` module decides which source to read and how old is too old.

use crate::platform::tool::ToolError;

/// Why a native backup source (wbadmin, Time Machine) could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BackupReadError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error(transparent)]
    Time(#[from] TimeError),
    /// A native source of another OS (`only`: where it exists).
    #[error("{kind} backups exist on {only} only")]
    OtherOs { kind: String, only: &'static str },
    #[error("{0} backups are not read on this operating system")]
    NotRead(String),
}

/// What a backup tool printed holds no time of a backup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("the command printed nothing (expected the last success's time)")]
    NothingPrinted,
    #[error("cannot read a time from {0:?} (expected Unix seconds or RFC 3339)")]
    NoTime(String),
    #[error("wbadmin lists no backup version: {0}")]
    NoWbadminVersion(String),
    #[error("tmutil latestbackup printed no backup: {0:?}")]
    NoTmutilBackup(String),
}

/// The last non-empty line of `text`, trimmed.
pub(crate) fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

/// The time a backup command printed as its last non-empty line: Unix seconds
/// (`1700000000`, `1700000000.5`) or RFC 3339 (`2024-01-15T02:00:00Z`,
/// `2024-01-15T02:00:00.123+01:00`; restic prints nanoseconds, accepted).
pub fn parse_timestamp_output(text: &str) -> Result<i64, TimeError> {
    let line = last_line(text);
    if line.is_empty() {
        return Err(TimeError::NothingPrinted);
    }
    if let Ok(secs) = line.parse::<f64>()
        && secs.is_finite()
        && secs > 0.0
    {
        return Ok((secs * 1000.0) as i64);
    }
    parse_rfc3339(line).ok_or_else(|| TimeError::NoTime(line.chars().take(80).collect()))
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
pub fn parse_wbadmin_versions(text: &str, offset_secs: i64) -> Result<(i64, String), TimeError> {
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
    best.ok_or_else(|| TimeError::NoWbadminVersion(super::posture::excerpt(text, 160)))
}

/// `tmutil latestbackup`: a path ending in `YYYY-MM-DD-HHMMSS` (optionally
/// `.backup`, on APFS destinations), local time.
pub fn parse_tmutil_latest(text: &str, offset_secs: i64) -> Result<(i64, String), TimeError> {
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
        .ok_or_else(|| TimeError::NoTmutilBackup(line.to_owned()))
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
    crate::platform::tool::run("date", &["+%z"], std::time::Duration::from_secs(5))
        .ok()
        .and_then(|o| parse_utc_offset(&o.stdout))
        .unwrap_or(0)
}
