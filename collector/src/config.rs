//! `collector.toml`: parsed into a raw serde form (unknown keys refused), then checked
//! into [`Config`], reporting every problem at once with file, line and column.
//!
//! ```toml
//! data_dir = "/var/lib/tandem"     # relative paths are relative to this file
//! [telemetry]
//! listen = "0.0.0.0:4443"
//! sample_interval_secs = 0        # pushed to agents; 0 = each agent keeps its own
//! max_clock_skew_secs = 300
//! max_sample_age_secs = 2592000
//! [store]
//! write_queue = 4096
//! max_group = 256
//! compaction = true                # false: no compaction or retention (benchmarks only)
//! [enrollment]
//! listen = "0.0.0.0:4444"          # server-authenticated TLS, no client certificate
//! cert_lifetime_secs = 2592000     # 30 days; agents renew at two thirds
//! attempts_per_minute = 10         # per source address
//! [alerts]                         # optional: no rules_dir, no alert engine
//! rules_dir = "rules"
//! tick_secs = 5
//! ```

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::grpc::validate::TimeLimits;
use crate::store::writer::WriterConfig;

/// The validated collector configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub(crate) listen: SocketAddr,
    /// Sample interval pushed to agents; 0 leaves each agent its own.
    pub(crate) sample_interval_secs: u32,
    pub(crate) limits: TimeLimits,
    pub(crate) writer: WriterConfig,
    pub(crate) enrollment: EnrollmentConfig,
    /// The alert engine; `None` when no rules directory is configured.
    pub(crate) alerts: Option<AlertsConfig>,
    /// Notifications (`[notify]`, issue #12); `None` without that section.
    pub(crate) notify: Option<crate::notify::config::NotifyConfig>,
    /// The HTTP listener (`[http]`: ack links, the feed); `None` without that section.
    pub(crate) http: Option<crate::notify::config::HttpConfig>,
    /// Compaction and retention of metric values (`[store]`, issue 17).
    pub(crate) storage: crate::store::compact::StorageConfig,
}

/// The enrollment listener and the certificates it issues.
#[derive(Debug, Clone, Copy)]
pub struct EnrollmentConfig {
    /// Where agents enroll with a token (its own port and TLS configuration).
    pub(crate) listen: SocketAddr,
    /// Lifetime of enrolled and renewed device certificates.
    pub(crate) cert_lifetime: std::time::Duration,
    /// Enrollment attempts allowed per source address per minute (a token secret
    /// is 256 bits, so this is about load and log noise more than guessing).
    pub(crate) attempts_per_minute: u32,
}

impl Default for EnrollmentConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 4444)),
            cert_lifetime: std::time::Duration::from_secs(30 * 86_400),
            attempts_per_minute: 10,
        }
    }
}

/// Where the alert rules are and how often time-based conditions are checked.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsConfig {
    pub(crate) rules_dir: PathBuf,
    /// The coarse timer for offline, `for` and `clear_for`.
    pub(crate) tick: Duration,
}

impl Config {
    /// Defaults with a given data dir and listen address (used by `demo` and tests).
    pub(crate) fn new(data_dir: PathBuf, listen: SocketAddr) -> Self {
        Self {
            data_dir,
            listen,
            sample_interval_secs: 0,
            limits: TimeLimits {
                max_future_ms: 300_000,
                max_age_ms: 30 * 86_400_000,
            },
            writer: WriterConfig::default(),
            enrollment: EnrollmentConfig::default(),
            alerts: None,
            notify: None,
            http: None,
            storage: Default::default(),
        }
    }

    pub(crate) fn db_path(&self) -> PathBuf {
        self.data_dir.join(crate::store::DB_FILE)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: Option<Spanned<String>>,
    #[serde(default)]
    telemetry: RawTelemetry,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    enrollment: RawEnrollment,
    #[serde(default)]
    alerts: RawAlerts,
    notify: Option<crate::notify::config::RawNotify>,
    http: Option<crate::notify::config::RawHttp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnrollment {
    listen: Option<Spanned<String>>,
    cert_lifetime_secs: Option<Spanned<i64>>,
    attempts_per_minute: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    rules_dir: Option<Spanned<String>>,
    tick_secs: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    listen: Option<Spanned<String>>,
    sample_interval_secs: Option<Spanned<i64>>,
    max_clock_skew_secs: Option<Spanned<i64>>,
    max_sample_age_secs: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    write_queue: Option<Spanned<i64>>,
    max_group: Option<Spanned<i64>>,
    // store brief (issue 17): retention and compaction
    raw_retention_days: Option<Spanned<i64>>,
    rollup_5m_retention_days: Option<Spanned<i64>>,
    rollup_1h_retention_days: Option<Spanned<i64>>,
    compact_interval_secs: Option<Spanned<i64>>,
    compact_grace_secs: Option<Spanned<i64>>,
    compact_values_per_sec: Option<Spanned<i64>>,
    expire_blobs_per_sec: Option<Spanned<i64>>,
    compaction: Option<Spanned<bool>>,
    // store2 brief (issue 17): retention of the other tables
    patch_report_retention_days: Option<Spanned<i64>>,
    inventory_change_retention_days: Option<Spanned<i64>>,
    alert_history_retention_days: Option<Spanned<i64>>,
    notify_log_retention_days: Option<Spanned<i64>>,
}

/// A configuration file that could not be used; lists every problem found.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigError {
    pub(crate) problems: Vec<String>,
}

/// Line and column (1-based) of a byte offset in `src`.
pub(crate) fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

struct Problems<'a> {
    file: &'a Path,
    src: &'a str,
    list: Vec<String>,
}

impl Problems<'_> {
    fn at(&mut self, span: Range<usize>, msg: String) {
        let (l, c) = line_col(self.src, span.start);
        self.list
            .push(format!("{}:{l}:{c}: {msg}", self.file.display()));
    }
}

fn ranged(
    p: &mut Problems<'_>,
    v: &Option<Spanned<i64>>,
    key: &str,
    min: i64,
    max: i64,
    default: i64,
) -> i64 {
    match v {
        None => default,
        Some(s) if (min..=max).contains(s.get_ref()) => *s.get_ref(),
        Some(s) => {
            p.at(
                s.span(),
                format!(
                    "{key} = {} is out of range (allowed {min} to {max})",
                    s.get_ref()
                ),
            );
            default
        }
    }
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
        problems: vec![format!("{}: cannot read: {e}", path.display())],
    })?;
    parse(path, &src)
}

/// Validates config text; `path` is used for messages and to resolve relative paths.
pub(crate) fn parse(path: &Path, src: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(src).map_err(|e| {
        let msg = e.message().to_owned();
        let problem = match e.span() {
            Some(span) => {
                let (l, c) = line_col(src, span.start);
                format!("{}:{l}:{c}: {msg}", path.display())
            }
            None => format!("{}: {msg}", path.display()),
        };
        ConfigError {
            problems: vec![problem],
        }
    })?;
    let mut p = Problems {
        file: path,
        src,
        list: Vec::new(),
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let data_dir = match &raw.data_dir {
        None => PathBuf::from("/var/lib/tandem"),
        Some(s) if s.get_ref().is_empty() => {
            p.at(s.span(), "data_dir must not be empty".into());
            PathBuf::new()
        }
        Some(s) => base.join(s.get_ref()),
    };
    let listen = address(&mut p, &raw.telemetry.listen, 4443);
    let enroll_listen = address(&mut p, &raw.enrollment.listen, 4444);
    let e = &raw.enrollment;
    let lifetime = ranged(
        &mut p,
        &e.cert_lifetime_secs,
        "cert_lifetime_secs",
        10,
        366 * 86_400,
        30 * 86_400,
    );
    let attempts = ranged(
        &mut p,
        &e.attempts_per_minute,
        "attempts_per_minute",
        1,
        100_000,
        10,
    );
    let t = &raw.telemetry;
    let interval = ranged(
        &mut p,
        &t.sample_interval_secs,
        "sample_interval_secs",
        0,
        3600,
        0,
    );
    let skew = ranged(
        &mut p,
        &t.max_clock_skew_secs,
        "max_clock_skew_secs",
        1,
        86_400,
        300,
    );
    let age = ranged(
        &mut p,
        &t.max_sample_age_secs,
        "max_sample_age_secs",
        60,
        366 * 86_400,
        30 * 86_400,
    );
    let queue = ranged(
        &mut p,
        &raw.store.write_queue,
        "write_queue",
        1,
        1_000_000,
        4096,
    );
    let group = ranged(&mut p, &raw.store.max_group, "max_group", 1, 100_000, 256);
    // --- store brief (issue 17): retention and compaction ---
    let st = &raw.store;
    let days = |d: i64| Duration::from_secs(d as u64 * 86_400);
    let raw_days = ranged(
        &mut p,
        &st.raw_retention_days,
        "raw_retention_days",
        1,
        3660,
        14,
    );
    let r5_days = ranged(
        &mut p,
        &st.rollup_5m_retention_days,
        "rollup_5m_retention_days",
        1,
        3660,
        90,
    );
    let r1_days = ranged(
        &mut p,
        &st.rollup_1h_retention_days,
        "rollup_1h_retention_days",
        1,
        36600,
        730,
    );
    let compact_every = ranged(
        &mut p,
        &st.compact_interval_secs,
        "compact_interval_secs",
        1,
        86_400,
        60,
    );
    let grace = ranged(
        &mut p,
        &st.compact_grace_secs,
        "compact_grace_secs",
        0,
        86_400,
        300,
    );
    let compact_rate = ranged(
        &mut p,
        &st.compact_values_per_sec,
        "compact_values_per_sec",
        10_000,
        1_000_000_000,
        crate::store::compact::DEFAULT_VALUES_PER_SEC as i64,
    );
    let expire_rate = ranged(
        &mut p,
        &st.expire_blobs_per_sec,
        "expire_blobs_per_sec",
        1,
        1_000_000,
        crate::store::compact::DEFAULT_EXPIRE_BLOBS_PER_SEC as i64,
    );
    if let Some(s) = &st.rollup_5m_retention_days
        && r5_days < raw_days
    {
        p.at(s.span(), format!("rollup_5m_retention_days ({r5_days}) must be at least raw_retention_days ({raw_days})"));
    }
    if let Some(s) = &st.rollup_1h_retention_days
        && r1_days < r5_days
    {
        p.at(s.span(), format!("rollup_1h_retention_days ({r1_days}) must be at least rollup_5m_retention_days ({r5_days})"));
    }
    // --- store2 brief (issue 17): retention of the other tables ---
    let mut other_days = |v: &Option<Spanned<i64>>, key: &str, default: i64| {
        days(ranged(&mut p, v, key, 1, 36600, default))
    };
    let other = crate::store::compact::OtherRetention {
        patch_reports: other_days(
            &st.patch_report_retention_days,
            "patch_report_retention_days",
            365,
        ),
        inventory_changes: other_days(
            &st.inventory_change_retention_days,
            "inventory_change_retention_days",
            365,
        ),
        alert_history: other_days(
            &st.alert_history_retention_days,
            "alert_history_retention_days",
            365,
        ),
        notify_log: other_days(
            &st.notify_log_retention_days,
            "notify_log_retention_days",
            90,
        ),
    };
    // --- end store2 brief ---
    let storage = crate::store::compact::StorageConfig {
        raw_retention: days(raw_days),
        rollup_5m_retention: days(r5_days),
        rollup_1h_retention: days(r1_days),
        interval: Duration::from_secs(compact_every as u64),
        grace: Duration::from_secs(grace as u64),
        values_per_sec: compact_rate as u64,
        expire_blobs_per_sec: expire_rate as u64,
        other,
        enabled: st.compaction.as_ref().is_none_or(|c| *c.get_ref()),
    };
    // --- end store brief ---
    let tick = ranged(&mut p, &raw.alerts.tick_secs, "tick_secs", 1, 300, 5);
    let alerts = match &raw.alerts.rules_dir {
        None => None,
        Some(s) if s.get_ref().is_empty() => {
            p.at(
                s.span(),
                "rules_dir must not be empty (leave it out to run without alerts)".into(),
            );
            None
        }
        Some(s) => Some(AlertsConfig {
            rules_dir: base.join(s.get_ref()),
            tick: Duration::from_secs(tick as u64),
        }),
    };
    let notify = raw
        .notify
        .as_ref()
        .map(|n| crate::notify::config::build_notify(n, base, &data_dir, &mut |s, m| p.at(s, m)));
    let http = raw
        .http
        .as_ref()
        .map(|h| crate::notify::config::build_http(h, &mut |s, m| p.at(s, m)));
    if !p.list.is_empty() {
        return Err(ConfigError { problems: p.list });
    }
    Ok(Config {
        data_dir,
        listen,
        sample_interval_secs: interval as u32,
        limits: TimeLimits {
            max_future_ms: skew * 1000,
            max_age_ms: age * 1000,
        },
        writer: WriterConfig {
            queue_len: queue as usize,
            max_group: group as usize,
        },
        enrollment: EnrollmentConfig {
            listen: enroll_listen,
            cert_lifetime: std::time::Duration::from_secs(lifetime as u64),
            attempts_per_minute: attempts as u32,
        },
        alerts,
        notify,
        http,
        storage,
    })
}

fn address(p: &mut Problems<'_>, v: &Option<Spanned<String>>, default_port: u16) -> SocketAddr {
    let default = SocketAddr::from(([0, 0, 0, 0], default_port));
    match v {
        None => default,
        Some(s) => match s.get_ref().parse() {
            Ok(a) => a,
            Err(_) => {
                p.at(
                    s.span(),
                    format!(
                        "listen = {:?} is not an address:port such as \"0.0.0.0:{default_port}\"",
                        s.get_ref()
                    ),
                );
                default
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_everything_optional() {
        let c = parse(
            Path::new("/etc/tandem/collector.toml"),
            "data_dir = \"data\"\n",
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/etc/tandem/data"));
        assert_eq!(c.listen.port(), 4443);
        assert_eq!(c.sample_interval_secs, 0);
        assert_eq!(c.enrollment.listen.port(), 4444);
        assert_eq!(c.enrollment.cert_lifetime.as_secs(), 30 * 86_400);
    }

    #[test]
    fn enrollment_section_is_checked() {
        let src = "[enrollment]\nlisten = \"x\"\ncert_lifetime_secs = 1\nattempts_per_minute = 0\n";
        let e = parse(Path::new("c.toml"), src).unwrap_err();
        assert_eq!(e.problems.len(), 3, "{e}");
        assert!(e.problems[0].starts_with("c.toml:2:10: listen"), "{e}");
        assert!(e.problems[1].contains("cert_lifetime_secs = 1"), "{e}");
        assert!(e.problems[2].contains("attempts_per_minute = 0"), "{e}");
    }

    #[test]
    fn every_problem_is_reported_with_line_and_column() {
        let src =
            "data_dir = \"d\"\n[telemetry]\nlisten = \"nonsense\"\nsample_interval_secs = -1\n";
        let e = parse(Path::new("c.toml"), src).unwrap_err();
        assert_eq!(e.problems.len(), 2, "{e}");
        assert!(e.problems[0].starts_with("c.toml:3:10: listen"), "{e}");
        assert!(
            e.problems[1].starts_with("c.toml:4:24: sample_interval_secs = -1"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_position() {
        let e = parse(Path::new("c.toml"), "[telemetry]\nlisten_addr = \"x\"\n").unwrap_err();
        assert!(e.problems[0].starts_with("c.toml:2:1:"), "{e}");
        assert!(e.problems[0].contains("listen_addr"), "{e}");
    }

    // store brief (issue 17)
    #[test]
    fn storage_keys_default_parse_and_are_checked() {
        let c = parse(Path::new("c.toml"), "").unwrap();
        assert_eq!(c.storage, crate::store::compact::StorageConfig::default());
        let c = parse(
            Path::new("c.toml"),
            "[store]\nraw_retention_days = 30\ncompact_grace_secs = 0\n",
        )
        .unwrap();
        assert_eq!(c.storage.raw_retention, Duration::from_secs(30 * 86_400));
        assert_eq!(c.storage.grace, Duration::ZERO);
        assert!(c.storage.enabled);
        // bench7 brief: the maintenance switch; a non-boolean is refused where it is.
        let c = parse(Path::new("c.toml"), "[store]\ncompaction = false\n").unwrap();
        assert!(!c.storage.enabled);
        let e = parse(Path::new("c.toml"), "[store]\ncompaction = \"no\"\n").unwrap_err();
        assert!(e.problems[0].starts_with("c.toml:2:"), "{e}");
        let e = parse(
            Path::new("c.toml"),
            "[store]\nraw_retention_days = 30\nrollup_5m_retention_days = 20\n",
        )
        .unwrap_err();
        assert!(e.problems[0].starts_with("c.toml:3:"), "{e}");
        assert!(
            e.problems[0].contains("at least raw_retention_days (30)"),
            "{e}"
        );
        let e = parse(Path::new("c.toml"), "[store]\nraw_retention_days = 0\n").unwrap_err();
        assert!(e.problems[0].contains("raw_retention_days = 0"), "{e}");
        // Compaction's pace (issue 17).
        assert_eq!(c.storage.values_per_sec, 200_000);
        let c = parse(
            Path::new("c.toml"),
            "[store]\ncompact_values_per_sec = 50000\n",
        )
        .unwrap();
        assert_eq!(c.storage.values_per_sec, 50_000);
        let e = parse(
            Path::new("c.toml"),
            "[store]\ncompact_values_per_sec = 10\n",
        )
        .unwrap_err();
        assert!(e.problems[0].starts_with("c.toml:2:"), "{e}");
        assert!(e.problems[0].contains("compact_values_per_sec = 10"), "{e}");
        // Retention's pace.
        assert_eq!(c.storage.expire_blobs_per_sec, 64);
        let c = parse(Path::new("c.toml"), "[store]\nexpire_blobs_per_sec = 8\n").unwrap();
        assert_eq!(c.storage.expire_blobs_per_sec, 8);
        let e = parse(Path::new("c.toml"), "[store]\nexpire_blobs_per_sec = 0\n").unwrap_err();
        assert!(e.problems[0].starts_with("c.toml:2:"), "{e}");
        assert!(e.problems[0].contains("expire_blobs_per_sec = 0"), "{e}");
    }

    // store2 brief (issue 17)
    #[test]
    fn retention_of_the_other_tables_defaults_parses_and_is_checked() {
        let c = parse(Path::new("c.toml"), "").unwrap();
        let o = c.storage.other;
        assert_eq!(o.patch_reports, Duration::from_secs(365 * 86_400));
        assert_eq!(o.notify_log, Duration::from_secs(90 * 86_400));
        let c = parse(
            Path::new("c.toml"),
            "[store]\npatch_report_retention_days = 7\ninventory_change_retention_days = 8\nalert_history_retention_days = 9\nnotify_log_retention_days = 10\n",
        )
        .unwrap();
        let o = c.storage.other;
        assert_eq!(o.patch_reports, Duration::from_secs(7 * 86_400));
        assert_eq!(o.inventory_changes, Duration::from_secs(8 * 86_400));
        assert_eq!(o.alert_history, Duration::from_secs(9 * 86_400));
        assert_eq!(o.notify_log, Duration::from_secs(10 * 86_400));
        let e = parse(
            Path::new("c.toml"),
            "[store]\nalert_history_retention_days = 0\nnotify_log_retention_days = \"x\"\n",
        )
        .unwrap_err();
        assert!(e.problems[0].starts_with("c.toml:"), "{e}");
        let e = parse(
            Path::new("c.toml"),
            "[store]\nalert_history_retention_days = 0\n",
        )
        .unwrap_err();
        assert_eq!(e.problems.len(), 1, "{e}");
        assert!(
            e.problems[0]
                .starts_with("c.toml:2:32: alert_history_retention_days = 0 is out of range"),
            "{e}"
        );
    }

    #[test]
    fn example_config_in_deploy_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/collector.toml");
        let c = load(&path).unwrap();
        let alerts = c.alerts.expect("the example enables the alert engine");
        assert_eq!(alerts.rules_dir, path.parent().unwrap().join("rules"));
        assert!(
            alerts.rules_dir.is_dir(),
            "the example points at deploy/rules"
        );
        assert_eq!(alerts.tick, Duration::from_secs(5));
    }

    #[test]
    fn alerts_are_optional_and_checked() {
        let c = parse(Path::new("/etc/tandem/c.toml"), "").unwrap();
        assert_eq!(c.alerts, None);
        let e = parse(
            Path::new("c.toml"),
            "[alerts]\nrules_dir = \"\"\ntick_secs = 0\n",
        )
        .unwrap_err();
        assert_eq!(e.problems.len(), 2, "{e}");
        assert!(
            e.problems[0].starts_with("c.toml:3:13: tick_secs = 0"),
            "{e}"
        );
        assert!(e.problems[1].starts_with("c.toml:2:13: rules_dir"), "{e}");
    }
}
