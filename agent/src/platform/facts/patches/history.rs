//! When updates were last installed, from each package manager's own record. Pure
//! parsers; the platform code reads the files or runs the command.
//!
//! - apt: `/var/log/apt/history.log`, the `End-Date` of the newest entry that
//!   upgraded packages (an entry that only installs new packages is not patching).
//!   Its times are local wall-clock times, read in the system's time zone.
//! - rpm (dnf, yum, zypper): `rpm -qa --queryformat '%{INSTALLTIME}\n'`, the newest
//!   install time of any package (rpm records no difference between an upgrade and a
//!   new install).
//! - pacman: `/var/log/pacman.log`, the newest `[ALPM] upgraded` line (pacman 5.2
//!   and later write an ISO time with its UTC offset).
//! - macOS: `defaults read /Library/Preferences/com.apple.SoftwareUpdate
//!   LastSuccessfulDate` (`2024-05-01 12:00:00 +0000`).
//!
//! Each returns milliseconds since the epoch, or `None` when the record holds no
//! such event; a line that should hold a time and does not is an error naming it.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;

use super::ReadError;

/// The newest apt history entry with an `Upgrade:` line: its `End-Date` (or
/// `Start-Date` when the entry was cut short), read in `tz`.
pub fn apt_last_upgrade(text: &str, tz: &TimeZone) -> Result<Option<i64>, ReadError> {
    const WHAT: &str = "apt history.log";
    let mut last = None;
    let mut start: Option<(usize, &str)> = None;
    let mut end: Option<(usize, &str)> = None;
    let mut upgraded = false;
    let mut close = |start: Option<(usize, &str)>,
                     end: Option<(usize, &str)>,
                     upgraded: bool|
     -> Result<(), ReadError> {
        if let (true, Some((line, when))) = (upgraded, end.or(start)) {
            let t = local_time(when, tz).ok_or_else(|| ReadError::parse(WHAT, line, when))?;
            last = Some(last.map_or(t, |l: i64| l.max(t)));
        }
        Ok(())
    };
    for (i, line) in text.lines().enumerate() {
        if let Some(v) = line.strip_prefix("Start-Date:") {
            close(start, end, upgraded)?;
            start = Some((i + 1, v.trim()));
            end = None;
            upgraded = false;
        } else if let Some(v) = line.strip_prefix("End-Date:") {
            end = Some((i + 1, v.trim()));
        } else if line.starts_with("Upgrade:") {
            upgraded = true;
        }
    }
    close(start, end, upgraded)?;
    Ok(last)
}

/// `2026-11-27  03:12:54` (apt puts two spaces between date and time) in `tz`.
fn local_time(s: &str, tz: &TimeZone) -> Option<i64> {
    let mut parts = s.split_whitespace();
    let (date, time) = (parts.next()?, parts.next()?);
    let dt: DateTime = format!("{date}T{time}").parse().ok()?;
    Some(tz.to_timestamp(dt).ok()?.as_millisecond())
}

/// The newest of `rpm -qa --queryformat '%{INSTALLTIME}\n'` (seconds since the
/// epoch, one a line).
pub fn rpm_last_install(text: &str) -> Result<Option<i64>, ReadError> {
    let mut last: Option<i64> = None;
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        let secs: i64 = l
            .parse()
            .map_err(|_| ReadError::parse("rpm -qa INSTALLTIME", i + 1, line))?;
        last = Some(last.map_or(secs, |m| m.max(secs)));
    }
    Ok(last.map(|s| s * 1000))
}

/// The newest `[ALPM] upgraded` line of pacman.log:
/// `[2024-05-01T12:00:00+0200] [ALPM] upgraded linux (6.8.1-1 -> 6.8.2-1)`.
pub fn pacman_last_upgrade(text: &str) -> Result<Option<i64>, ReadError> {
    let mut last: Option<i64> = None;
    for (i, line) in text.lines().enumerate() {
        if !line.contains("] [ALPM] upgraded ") {
            continue;
        }
        let t = line
            .strip_prefix('[')
            .and_then(|r| r.split_once(']'))
            .and_then(|(ts, _)| jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%z", ts).ok())
            .ok_or_else(|| ReadError::parse("pacman.log", i + 1, line))?;
        let ms = t.as_millisecond();
        last = Some(last.map_or(ms, |m| m.max(ms)));
    }
    Ok(last)
}

/// `defaults read /Library/Preferences/com.apple.SoftwareUpdate LastSuccessfulDate`:
/// `2024-05-01 12:00:00 +0000`.
pub fn macos_last_successful(text: &str) -> Result<Option<i64>, ReadError> {
    let l = text.trim();
    if l.is_empty() {
        return Ok(None);
    }
    jiff::Timestamp::strptime("%Y-%m-%d %H:%M:%S %z", l)
        .map(|t| Some(t.as_millisecond()))
        .map_err(|_| ReadError::parse("defaults read LastSuccessfulDate", 1, l))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn apt_history_captured_on_this_machine() {
        let text = crate::platform::test_fixture("patches", "apt-history.debian12.log");
        // The capture's only upgrade: perl, pulled in by `apt-get install makepkg`
        // (End-Date 2026-11-27 06:03:07, UTC on the build machine). Later entries
        // only install new packages.
        assert_eq!(
            apt_last_upgrade(&text, &TimeZone::UTC).unwrap(),
            Some(utc("2026-11-27T06:03:07Z"))
        );
        // Local times follow the zone.
        let paris =
            TimeZone::get("Europe/Paris").unwrap_or(TimeZone::fixed(jiff::tz::Offset::constant(1)));
        assert_eq!(
            apt_last_upgrade(&text, &paris).unwrap(),
            Some(utc("2026-11-27T05:03:07Z"))
        );
    }

    #[test]
    fn apt_history_without_upgrades_or_broken() {
        let only_installs = "Start-Date: 2026-01-02  10:00:00\nCommandline: apt install x\nInstall: x:amd64 (1)\nEnd-Date: 2026-01-02  10:00:05\n";
        assert_eq!(
            apt_last_upgrade(only_installs, &TimeZone::UTC).unwrap(),
            None
        );
        assert_eq!(apt_last_upgrade("", &TimeZone::UTC).unwrap(), None);
        // Cut short (no End-Date): the start counts.
        let cut = "Start-Date: 2026-01-02  10:00:00\nUpgrade: x:amd64 (1, 2)\n";
        assert_eq!(
            apt_last_upgrade(cut, &TimeZone::UTC).unwrap(),
            Some(utc("2026-01-02T10:00:00Z"))
        );
        let bad = "Start-Date: yesterday\nUpgrade: x:amd64 (1, 2)\n";
        let e = apt_last_upgrade(bad, &TimeZone::UTC)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1") && e.contains("yesterday"), "{e}");
    }

    #[test]
    fn rpm_install_times() {
        assert_eq!(
            rpm_last_install("1700000000\n1790000000\n1600000000\n").unwrap(),
            Some(1_790_000_000_000)
        );
        assert_eq!(rpm_last_install("\n").unwrap(), None);
        let e = rpm_last_install("1700000000\n(none)\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn pacman_log_upgrades() {
        let log = "[2024-05-01T12:00:00+0200] [PACMAN] Running 'pacman -Syu'\n\
                   [2024-05-01T12:00:05+0200] [ALPM] upgraded linux (6.8.1-1 -> 6.8.2-1)\n\
                   [2024-05-02T09:00:00+0200] [ALPM] installed htop (3.3.0-1)\n";
        assert_eq!(
            pacman_last_upgrade(log).unwrap(),
            Some(utc("2024-05-01T10:00:05Z"))
        );
        assert_eq!(pacman_last_upgrade("").unwrap(), None);
        assert!(pacman_last_upgrade("[garbage] [ALPM] upgraded x (1 -> 2)\n").is_err());
    }

    #[test]
    fn macos_last_successful_date() {
        assert_eq!(
            macos_last_successful("2024-05-01 12:00:00 +0000\n").unwrap(),
            Some(utc("2024-05-01T12:00:00Z"))
        );
        assert_eq!(macos_last_successful("").unwrap(), None);
        assert!(macos_last_successful("The domain/default pair does not exist").is_err());
    }
}
