//! The administrative command line, one module per noun (`tenant`, `site`, `token`,
//! `device`, `inspect`, `rules`, `alerts`, `pki`; the notification nouns live in
//! `notify::cli`). This module holds what they share: the `--data-dir` option, opening
//! the database, and pure helpers (durations such as `24h`, times printed for people,
//! the check of a token's address against the listeners), tested directly.

pub mod alerts;
pub mod device;
pub mod inspect;
pub mod pki;
pub mod rules;
pub mod site;
pub mod storage;
pub mod tenant;
pub mod token;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

pub(crate) use tandem_proto::util::now_ms;

use crate::store;

/// Why a duration (`--for`, `--expires`) was refused; says what was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DurationError {
    #[error("{0:?} has no unit; use s, m, h or d (e.g. 24h)")]
    NoUnit(String),
    #[error("{0:?} does not start with a whole number (e.g. 24h)")]
    NotANumber(String),
    #[error("{text:?}: unknown unit {unit:?}; use s, m, h or d")]
    UnknownUnit { text: String, unit: String },
    #[error("{0:?} must be between 1 s and 366 days")]
    OutOfRange(String),
}

/// Parses `90s`, `30m`, `24h`, `7d` (a whole number and one unit).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| DurationError::NoUnit(s.to_owned()))?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| DurationError::NotANumber(s.to_owned()))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(DurationError::UnknownUnit {
                text: s.to_owned(),
                unit: unit.to_owned(),
            });
        }
    };
    let total = n
        .checked_mul(secs)
        .filter(|t| *t > 0 && *t <= 366 * 86_400)
        .ok_or_else(|| DurationError::OutOfRange(s.to_owned()))?;
    Ok(Duration::from_secs(total))
}

/// `2026-11-27 04:05Z` for a time in ms since the Unix epoch.
pub(crate) fn format_ms(ms: i64) -> String {
    // jiff, the collector's one time crate for formatting (`time` stays only for
    // rcgen's certificate validity, in pki/mod.rs).
    match jiff::Timestamp::from_second(ms.div_euclid(1000)) {
        Ok(t) => t.strftime("%Y-%m-%d %H:%MZ").to_string(),
        Err(_) => format!("{ms} ms"),
    }
}

/// Checks the port of a token's `--address` against the configured listeners: the
/// telemetry port is refused (an agent would reach a listener that wants a client
/// certificate it does not have yet), and so is any other port than the enrollment
/// listener's, unless the listener's port is 0 (chosen at start, not knowable here).
/// `port_forwarded`: agents reach the listener through a port forward, so a
/// different port is expected (the telemetry port is still refused).
pub(crate) fn check_enroll_port(
    port: u16,
    enrollment: std::net::SocketAddr,
    telemetry: std::net::SocketAddr,
    port_forwarded: bool,
) -> Result<(), EnrollPortError> {
    if port == telemetry.port() && telemetry.port() != 0 {
        return Err(EnrollPortError::Telemetry {
            port,
            telemetry,
            enrollment_port: enrollment.port(),
        });
    }
    if !port_forwarded && enrollment.port() != 0 && port != enrollment.port() {
        return Err(EnrollPortError::NotEnrollment { port, enrollment });
    }
    Ok(())
}

/// Why a token's `--address` port is refused ([`check_enroll_port`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EnrollPortError {
    #[error(
        "--address port {port} is the telemetry listener (mTLS, {telemetry}); agents enroll on the enrollment listener, port {enrollment_port} ([enrollment] listen)"
    )]
    Telemetry {
        port: u16,
        telemetry: std::net::SocketAddr,
        enrollment_port: u16,
    },
    #[error(
        "--address port {port} is not the enrollment listener's port {} ([enrollment] listen = \"{enrollment}\"); if agents reach it through a port forward, pass --port-forwarded",
        .enrollment.port()
    )]
    NotEnrollment {
        port: u16,
        enrollment: std::net::SocketAddr,
    },
}

/// Where the collector keeps its database and CA when nothing else says.
pub(crate) const DEFAULT_DATA_DIR: &str = "/var/lib/tandem";

/// The data dir option every command that reads or writes the database shares.
#[derive(Args, Clone)]
pub struct DataDir {
    /// The collector's data dir (database and CA). Default: the `data_dir` of
    /// --config, else $TANDEM_DATA_DIR, else /var/lib/tandem.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// collector.toml whose `data_dir` to use (and, for `token create`, whose
    /// listeners to check --address against).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

impl DataDir {
    /// The data dir: `--data-dir`, else the `data_dir` of `--config`, else
    /// `$TANDEM_DATA_DIR`, else /var/lib/tandem.
    pub fn dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(d) = &self.data_dir {
            return Ok(d.clone());
        }
        if let Some(c) = &self.config {
            let cfg = anyhow::Context::with_context(crate::config::load(c), || {
                format!("--config {}", c.display())
            })?;
            return Ok(cfg.data_dir);
        }
        Ok(data_dir_from_env(std::env::var_os("TANDEM_DATA_DIR")))
    }
}

/// `$TANDEM_DATA_DIR` when set and not empty, else the default.
fn data_dir_from_env(var: Option<std::ffi::OsString>) -> PathBuf {
    var.filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
}

/// Opens the database for an administrative command (applying migrations, so a
/// fresh data dir works before the first `serve`).
pub(crate) fn open_db(db: &DataDir) -> anyhow::Result<store::Db> {
    if !db.dir()?.is_dir() {
        anyhow::bail!(
            "{}: no such data dir (run `tandem-collector pki init --data-dir {}` first)",
            db.dir()?.display(),
            db.dir()?.display()
        );
    }
    Ok(store::Db::open(&db.dir()?.join(store::DB_FILE))?)
}

/// Opens the database for a read command. It creates one only in a Tandem data dir
/// (one with `pki/ca.pem`, after `pki init`): a mistyped `--data-dir`, or any folder
/// that is not a Tandem data dir, is an error naming the path, never an empty answer
/// from a database made up on the spot (issue 16, item 9).
pub(crate) fn open_store_read(data_dir: &Path) -> anyhow::Result<store::Db> {
    let db = data_dir.join(store::DB_FILE);
    if db.is_file() {
        return Ok(store::Db::open_read_only(&db)?);
    }
    if crate::pki::PkiPaths::new(data_dir).ca_cert.is_file() {
        // A data dir after `pki init`, before anything else ran: its (empty) database
        // belongs here, as an admin command would make it.
        return Ok(store::Db::open(&db)?);
    }
    anyhow::bail!(
        "{}: not a Tandem data dir (no {} and no pki/ca.pem; check --data-dir)",
        data_dir.display(),
        store::DB_FILE
    );
}

/// Opens the database of a data dir that must already hold one (`Db::open` would
/// create an empty database at a mistyped path).
pub(crate) fn open_existing_store(data_dir: &Path) -> anyhow::Result<store::Db> {
    let db = data_dir.join(store::DB_FILE);
    if !db.is_file() {
        anyhow::bail!("no database at {} (check --data-dir)", db.display());
    }
    Ok(store::Db::open(&db)?)
}

/// Fails with "no such device" unless `id` is a device in the database.
pub(crate) fn require_device(conn: &impl store::api::Names, id: &str) -> anyhow::Result<()> {
    if !conn.device_exists(id)? {
        anyhow::bail!("no such device: {id:?} (`tandem-collector device list` shows the devices)");
    }
    Ok(())
}

/// Fails with "no such tenant" unless `name` is a tenant in the database.
pub(crate) fn require_tenant(conn: &impl store::api::Names, name: &str) -> anyhow::Result<()> {
    if !conn.tenant_exists(name)? {
        anyhow::bail!(
            "no such tenant: {name:?} (`tandem-collector tenant list` shows the tenants)"
        );
    }
    Ok(())
}

pub(crate) fn fmt_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// An end time, or "removed" for an open-ended recurring silence.
pub(crate) fn fmt_until(ms: i64) -> String {
    if ms == crate::alerts::silence::FOREVER_MS {
        "removed".into()
    } else {
        fmt_ms(ms)
    }
}

/// Who runs a command that is recorded: `--by`, else $USER, else "cli".
pub(crate) fn who(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".into())
}

/// "2 d 3 h" style age of `since_ms` at `now_ms`.
pub(crate) fn age(since_ms: i64, now_ms: i64) -> String {
    let secs = (now_ms - since_ms).max(0) / 1000;
    match secs {
        s if s >= 86_400 => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s => format!("{} min", s / 60),
    }
}

/// Asks on the terminal to type `expected` back; anything else is an error that
/// says nothing changed.
pub(crate) fn confirm_typed(expected: &str) -> anyhow::Result<()> {
    use std::io::BufRead;
    eprint!("type the device id to confirm: ");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if line.trim() != expected {
        anyhow::bail!("not confirmed; nothing changed (pass --yes to skip the question)");
    }
    Ok(())
}

/// Prints a command's output to stdout, flushed. A reader that closed the pipe
/// early (`storage stats | head -1`) has what it wanted: that ends the output
/// quietly, where `print!` would panic on the broken pipe (Rust ignores SIGPIPE).
pub(crate) fn print_out(text: &str) -> anyhow::Result<()> {
    write_out(std::io::stdout().lock(), text)
}

/// A listing's `--json` form: pretty JSON and a newline, through [`print_out`].
pub(crate) fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    print_out(&format!("{}\n", serde_json::to_string_pretty(value)?))
}

/// [`print_out`] to any writer: a broken pipe is a clean end, any other write
/// error an error.
fn write_out(mut out: impl std::io::Write, text: &str) -> anyhow::Result<()> {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// One line of a stream that follows events (`alerts tail`), flushed: whether to go
/// on. A reader that closed the pipe (`alerts tail | head -3`) ends the stream
/// cleanly, so the command still revokes its token on the way out; another write
/// error is said on stderr and ends it too.
pub(crate) fn print_line(line: &str) -> bool {
    follow_line(std::io::stdout().lock(), line)
}

fn follow_line(mut out: impl std::io::Write, line: &str) -> bool {
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => false,
        Err(e) => {
            eprintln!("cannot write to standard output: {e}; stopping");
            false
        }
    }
}

/// A number as people read it: whole numbers without decimals, else three
/// significant digits or one decimal, whichever says more (`70.2`, `0.125`, `1234`).
pub(crate) fn format_number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let a = v.abs();
    let s = if (v.fract() == 0.0 && a < 1e15) || a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else if a == 0.0 {
        "0".into()
    } else {
        // Three significant digits below 1, without trailing zeros.
        let digits = (2 - a.log10().floor() as i32).clamp(0, 12) as usize;
        let s = format!("{v:.digits$}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    };
    if s == "-0" { "0".into() } else { s }
}

/// Bytes in binary units (`512 B`, `3.2 GiB`).
pub(crate) fn format_bytes(v: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut x = v;
    let mut i = 0;
    while x.abs() >= 1024.0 && i < UNITS.len() - 1 {
        x /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{} B", format_number(x))
    } else {
        format!("{x:.1} {}", UNITS[i])
    }
}

/// A value with its unit from the metric catalogue (`tandem_proto::metrics`), for
/// people: bytes in KiB/MiB/GiB, percentages to one decimal, seconds as a duration,
/// epoch seconds as a time, `1 x / 0 y` flags as the word, anything else as a
/// rounded number followed by the unit.
pub(crate) fn format_value(v: f64, unit: &str) -> String {
    match unit {
        "bytes" => format_bytes(v),
        "bytes/s" => format!("{}/s", format_bytes(v)),
        "seconds" if v >= 60.0 => age(0, (v * 1000.0) as i64),
        "seconds since the epoch" => fmt_ms((v * 1000.0) as i64),
        "" => format_number(v),
        u if u.starts_with("1 ") && u.contains(" / 0 ") => {
            // "1 running / 0 not": the word for the value.
            let (one, zero) = u[2..].split_once(" / 0 ").unwrap_or((u, u));
            match v {
                1.0 => one.to_owned(),
                0.0 => zero.to_owned(),
                _ => format_number(v),
            }
        }
        "%" => format!("{v:.1} %"),
        u if u.starts_with('%') => format!("{v:.1} {u}"),
        u => format!("{} {u}", format_number(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stdout whose reader is gone (`| head`), or that fails otherwise.
    struct Closed(std::io::ErrorKind);

    impl std::io::Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(self.0.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(self.0.into())
        }
    }

    #[test]
    fn output_ends_quietly_on_a_closed_pipe_and_fails_on_other_errors() {
        let mut buf = Vec::new();
        write_out(&mut buf, "a\nb\n").unwrap();
        assert_eq!(buf, b"a\nb\n");
        assert!(write_out(Closed(std::io::ErrorKind::BrokenPipe), "a\n").is_ok());
        let err = write_out(Closed(std::io::ErrorKind::PermissionDenied), "a\n").unwrap_err();
        assert_eq!(
            err.downcast_ref::<std::io::Error>().map(|e| e.kind()),
            Some(std::io::ErrorKind::PermissionDenied)
        );
    }

    #[test]
    fn a_followed_stream_stops_on_a_closed_pipe_or_another_error() {
        let mut buf = Vec::new();
        assert!(follow_line(&mut buf, "event"));
        assert_eq!(buf, b"event\n");
        assert!(!follow_line(
            Closed(std::io::ErrorKind::BrokenPipe),
            "event"
        ));
        assert!(!follow_line(
            Closed(std::io::ErrorKind::PermissionDenied),
            "event"
        ));
    }

    #[test]
    fn token_address_ports_are_checked_against_the_listeners() {
        let e: std::net::SocketAddr = "0.0.0.0:4444".parse().unwrap();
        let t: std::net::SocketAddr = "0.0.0.0:4443".parse().unwrap();
        assert!(check_enroll_port(4444, e, t, false).is_ok());
        let err = check_enroll_port(4443, e, t, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("telemetry listener") && err.contains("port 4444"),
            "{err}"
        );
        assert!(
            check_enroll_port(4443, e, t, true).is_err(),
            "never the telemetry port"
        );
        let err = check_enroll_port(8443, e, t, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--port-forwarded"), "{err}");
        assert!(check_enroll_port(8443, e, t, true).is_ok());
        let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert!(check_enroll_port(8443, any, any, false).is_ok());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(
            parse_duration("24")
                .unwrap_err()
                .to_string()
                .contains("no unit")
        );
        assert!(
            parse_duration("h")
                .unwrap_err()
                .to_string()
                .contains("whole number")
        );
        assert!(
            parse_duration("3w")
                .unwrap_err()
                .to_string()
                .contains("unknown unit")
        );
        assert!(
            parse_duration("0s")
                .unwrap_err()
                .to_string()
                .contains("between")
        );
        assert!(
            parse_duration("999999999999d")
                .unwrap_err()
                .to_string()
                .contains("between")
        );
    }

    #[test]
    fn values_are_printed_with_their_units_and_rounded() {
        assert_eq!(format_value(70.2487385096285, "%"), "70.2 %");
        assert_eq!(format_value(12.0, "% of one core"), "12.0 % of one core");
        assert_eq!(format_value(3.4e9, "bytes"), "3.2 GiB");
        assert_eq!(format_value(512.0, "bytes"), "512 B");
        assert_eq!(format_value(1536.0, "bytes/s"), "1.5 KiB/s");
        assert_eq!(format_value(90_061.0, "seconds"), "1 d 1 h");
        assert_eq!(format_value(1.5, "seconds"), "1.5 seconds");
        assert_eq!(format_value(1.0, "1 running / 0 not"), "running");
        assert_eq!(format_value(0.0, "1 running / 0 not"), "not");
        assert_eq!(
            format_value(1_800_000_000.0, "seconds since the epoch"),
            "2027-01-15 08:00:00Z"
        );
        assert_eq!(format_value(45.25, "°C"), "45.2 °C");
        assert_eq!(format_value(3.0, "processes"), "3 processes");
        assert_eq!(
            format_value(0.123456, "run-queue average"),
            "0.123 run-queue average"
        );
    }

    #[test]
    fn numbers_are_rounded_for_people() {
        assert_eq!(format_number(70.2487385096285), "70.2");
        assert_eq!(format_number(1234.0), "1234");
        assert_eq!(format_number(1234.56), "1235");
        assert_eq!(format_number(0.125), "0.125");
        assert_eq!(format_number(0.000123456), "0.000123");
        assert_eq!(format_number(0.0), "0");
        assert_eq!(format_number(-0.0001), "-0.0001");
        assert_eq!(format_number(f64::NAN), "NaN");
    }

    #[test]
    fn data_dir_comes_from_the_environment_when_set() {
        assert_eq!(data_dir_from_env(None), PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(
            data_dir_from_env(Some("".into())),
            PathBuf::from(DEFAULT_DATA_DIR)
        );
        assert_eq!(
            data_dir_from_env(Some("/srv/tandem".into())),
            PathBuf::from("/srv/tandem")
        );
    }

    #[test]
    fn times() {
        assert_eq!(format_ms(0), "1970-01-01 00:00Z");
        assert_eq!(format_ms(1_800_000_000_000), "2027-01-15 08:00Z");
    }
}
