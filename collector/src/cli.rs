//! Pure helpers of the administrative command line: durations such as `24h`, and
//! times printed for people. No I/O, so they are tested directly.

use std::time::Duration;

/// Parses `90s`, `30m`, `24h`, `7d` (a whole number and one unit).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?} has no unit; use s, m, h or d (e.g. 24h)"))?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} does not start with a whole number (e.g. 24h)"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use s, m, h or d")),
    };
    let total = n
        .checked_mul(secs)
        .filter(|t| *t > 0 && *t <= 366 * 86_400)
        .ok_or_else(|| format!("{s:?} must be between 1 s and 366 days"))?;
    Ok(Duration::from_secs(total))
}

/// `2026-11-27 04:05Z` for a time in ms since the Unix epoch.
pub fn format_ms(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => format!("{ms} ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_duration("24").unwrap_err().contains("no unit"));
        assert!(parse_duration("h").unwrap_err().contains("whole number"));
        assert!(parse_duration("3w").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("0s").unwrap_err().contains("between"));
        assert!(
            parse_duration("999999999999d")
                .unwrap_err()
                .contains("between")
        );
    }

    #[test]
    fn times() {
        assert_eq!(format_ms(0), "1970-01-01 00:00Z");
        assert_eq!(format_ms(1_800_000_000_000), "2027-01-15 08:00Z");
    }
}
