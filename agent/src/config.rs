//! `agent.toml`: where the collector is, the TLS files, where the spool lives, how
//! often to sample. Parsed strictly (unknown keys refused) and checked, reporting
//! every problem with file, line and column.
//!
//! An enrolled agent needs no `collector_url`: enrollment writes it to
//! `<state_dir>/enrollment.toml`. `enroll_token` (or the environment variable
//! `TANDEM_ENROLL_TOKEN`) makes the first `run` enroll.
//!
//! ```toml
//! collector_url = "https://collector.example.net:4443"   # optional once enrolled
//! enroll_token = "tdm1_…"                 # optional; used only while not enrolled
//! enroll_token_file = "enroll.token"      # an installer's token; removed once used
//! enroll_retry_max_secs = 60              # backoff cap while the collector is unreachable
//! server_name = "collector.example.net"   # optional; defaults to the URL's host
//! ca_cert = "ca.pem"                      # paths are relative to this file
//! cert = "agent.pem"
//! key = "agent.key"
//! state_dir = "state"
//! interval_secs = 10
//! spool_max_bytes = 67108864
//! spool_max_age_secs = 604800
//! catchup_batches_per_sec = 20
//! patch_interval_secs = 3600
//! patch_timeout_secs = 120
//! services = ["ssh", "nginx"]             # service.up{name} = 1 running / 0 not
//!
//! [budget]                                # the agent's own footprint
//! cpu_ms_per_min = 200                    # over it, optional work is shed
//! rss_mib = 48
//! inventory_interval_secs = 21600
//! posture_interval_secs = 3600           # posture tools bounded by patch_timeout_secs
//!
//! [[backup]]                              # see docs/METRICS.md
//! name = "nas"
//! path = "/srv/backup"                    # or command = [...], or kind = "wbadmin"
//! max_age_secs = 93600
//!
//! [[check]]                               # local custom checks, never pushed
//! name = "raid"
//! command = ["/usr/lib/nagios/plugins/check_raid"]
//! interval_secs = 60
//! timeout_secs = 10
//! ```

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// A secret that must not appear in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub(crate) String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The validated agent configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Empty when the config does not say; then enrollment's file does.
    pub(crate) collector_url: String,
    /// A token to enroll with when the device has no identity yet.
    pub(crate) enroll_token: Option<Secret>,
    /// A file that may hold a token (put there by an installer): read while not
    /// enrolled, removed (or blanked) once used or once found on an enrolled device.
    pub(crate) enroll_token_file: PathBuf,
    /// Longest wait between enrollment attempts while the collector is unreachable.
    pub(crate) enroll_retry_max: Duration,
    pub(crate) server_name: String,
    pub(crate) ca_cert: PathBuf,
    pub cert: PathBuf,
    pub(crate) key: PathBuf,
    pub state_dir: PathBuf,
    pub(crate) interval: Duration,
    /// Bound of the spool's size; the oldest unacknowledged data goes first.
    pub(crate) spool_max_bytes: u64,
    /// Bound of the spool's age; older unacknowledged data is dropped (and reported).
    pub(crate) spool_max_age: Duration,
    /// Backlog frames sent per second after an outage, so a whole site coming back
    /// does not flatten the collector. Live data is not limited by it.
    pub(crate) catchup_batches_per_sec: u32,
    /// Time between patch checks (plus up to 10 % jitter, so a fleet started
    /// together does not query its mirrors together). One check also runs at start.
    pub(crate) patch_interval: Duration,
    /// Deadline of each package-manager command; a slower one is killed and the
    /// report carries the error. Also bounds the inventory's commands
    /// (dpkg-query, rpm, reg, system_profiler).
    pub(crate) patch_timeout: Duration,
    /// Services whose state is sent as `service.up{name}` (unique, in file order):
    /// systemd units on Linux (`.service` implied), service names on Windows, launchd
    /// labels on macOS.
    pub(crate) services: Vec<String>,
    /// The agent's own footprint, above which it sheds optional work.
    pub(crate) budget: Budget,
    /// Time between inventory collections (plus up to 10 % jitter); one also runs
    /// at start. An inventory is sent only when it differs from the last one sent.
    pub(crate) inventory_interval: Duration,
    /// Time between posture checks (plus up to 10 % jitter); one also runs at
    /// start. A posture report is sent only when something in it changed.
    pub(crate) posture_interval: Duration,
    /// Backup evidence to watch (`[[backup]]`), in file order.
    pub backups: Vec<crate::backup::BackupConfig>,
    /// Local custom checks (`[[check]]`), in file order. Defined here only: the
    /// collector can never push a command.
    pub checks: Vec<crate::checks::CheckConfig>,
}

/// Limits on the agent's own resource use (see `crate::budget`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// CPU time (user + system) the agent may use per minute of wall time, in ms.
    pub(crate) cpu_ms_per_min: u64,
    /// Resident memory the agent may hold, in bytes.
    pub(crate) rss_bytes: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            cpu_ms_per_min: DEFAULT_CPU_MS_PER_MIN as u64,
            rss_bytes: DEFAULT_RSS_MIB as u64 * 1024 * 1024,
        }
    }
}

/// Default CPU budget; see docs/METRICS.md for what the agent measured uses.
const DEFAULT_CPU_MS_PER_MIN: i64 = 200;
/// Default memory budget.
const DEFAULT_RSS_MIB: i64 = 48;
/// Most services one agent checks.
pub(crate) const MAX_SERVICES: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    collector_url: Option<Spanned<String>>,
    enroll_token: Option<Spanned<String>>,
    enroll_token_file: Option<Spanned<String>>,
    enroll_retry_max_secs: Option<Spanned<i64>>,
    server_name: Option<Spanned<String>>,
    ca_cert: Option<Spanned<String>>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    state_dir: Option<Spanned<String>>,
    interval_secs: Option<Spanned<i64>>,
    spool_max_bytes: Option<Spanned<i64>>,
    spool_max_age_secs: Option<Spanned<i64>>,
    catchup_batches_per_sec: Option<Spanned<i64>>,
    patch_interval_secs: Option<Spanned<i64>>,
    patch_timeout_secs: Option<Spanned<i64>>,
    services: Option<Spanned<Vec<Spanned<String>>>>,
    budget: Option<RawBudget>,
    inventory_interval_secs: Option<Spanned<i64>>,
    posture_interval_secs: Option<Spanned<i64>>,
    backup: Option<Vec<Spanned<RawBackup>>>,
    check: Option<Vec<Spanned<RawCheck>>>,
}

/// `[[backup]]`: exactly one of `path`, `command`, `kind`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackup {
    name: Spanned<String>,
    path: Option<Spanned<String>>,
    command: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    shell: bool,
    kind: Option<Spanned<String>>,
    max_age_secs: Option<Spanned<i64>>,
    check_interval_secs: Option<Spanned<i64>>,
    timeout_secs: Option<Spanned<i64>>,
}

/// `[[check]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    name: Spanned<String>,
    command: Spanned<Vec<String>>,
    #[serde(default)]
    shell: bool,
    interval_secs: Option<Spanned<i64>>,
    timeout_secs: Option<Spanned<i64>>,
    #[serde(default)]
    expect_value: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    cpu_ms_per_min: Option<Spanned<i64>>,
    rss_mib: Option<Spanned<i64>>,
}

impl AgentConfig {
    /// Whether `other` connects differently (collector, TLS files): a reload with
    /// such a change needs a new connection.
    pub(crate) fn connection_differs(&self, other: &AgentConfig) -> bool {
        self.collector_url != other.collector_url
            || self.server_name != other.server_name
            || self.ca_cert != other.ca_cert
            || self.cert != other.cert
            || self.key != other.key
    }

    /// The spool bounds this config asks for.
    pub(crate) fn spool_bounds(&self) -> crate::spool::Bounds {
        crate::spool::Bounds {
            max_bytes: self.spool_max_bytes,
            max_age: self.spool_max_age,
        }
    }
}

/// Every problem found in a config file.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigError {
    pub(crate) problems: Vec<String>,
}

fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

/// Reads and validates an agent config file.
pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
    let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
        problems: vec![format!("{}: cannot read: {e}", path.display())],
    })?;
    parse(path, &src)
}

/// The host part of an `https://host:port` URL (brackets of IPv6 removed).
pub(crate) fn url_host(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().filter(|h| !h.is_empty());
    }
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    (!host.is_empty()).then_some(host)
}

/// Validates config text; `path` names it in messages and anchors relative paths.
pub(crate) fn parse(path: &Path, src: &str) -> Result<AgentConfig, ConfigError> {
    let raw: Raw = toml::from_str(src).map_err(|e| {
        let problem = match e.span() {
            Some(span) => {
                let (l, c) = line_col(src, span.start);
                format!("{}:{l}:{c}: {}", path.display(), e.message())
            }
            None => format!("{}: {}", path.display(), e.message()),
        };
        ConfigError {
            problems: vec![problem],
        }
    })?;
    let mut problems = Vec::new();
    let mut at = |span: Range<usize>, msg: String| {
        let (l, c) = line_col(src, span.start);
        problems.push(format!("{}:{l}:{c}: {msg}", path.display()));
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let file = |v: &Option<Spanned<String>>, default: &str| {
        base.join(v.as_ref().map_or(default, |s| s.get_ref().as_str()))
    };

    let collector_url = match &raw.collector_url {
        None => String::new(),
        Some(s) => {
            if url_host(s.get_ref()).is_none() {
                at(
                    s.span(),
                    format!(
                        "collector_url = {:?} is not an https://host:port URL",
                        s.get_ref()
                    ),
                );
            }
            s.get_ref().clone()
        }
    };
    let server_name = match &raw.server_name {
        Some(s) if s.get_ref().is_empty() => {
            at(s.span(), "server_name must not be empty".into());
            String::new()
        }
        Some(s) => s.get_ref().clone(),
        None => url_host(&collector_url).unwrap_or_default().to_owned(),
    };
    let enroll_token = match &raw.enroll_token {
        None => None,
        Some(s) => match tandem_proto::token::EnrollToken::parse(s.get_ref()) {
            Ok(_) => Some(Secret(s.get_ref().trim().to_owned())),
            Err(e) => {
                at(s.span(), format!("enroll_token: {e}"));
                None
            }
        },
    };
    let mut ranged = |v: &Option<Spanned<i64>>, key: &str, min: i64, max: i64, default: i64| match v
    {
        None => default,
        Some(s) if (min..=max).contains(s.get_ref()) => *s.get_ref(),
        Some(s) => {
            at(
                s.span(),
                format!(
                    "{key} = {} is out of range (allowed {min} to {max})",
                    s.get_ref()
                ),
            );
            default
        }
    };
    let interval = ranged(&raw.interval_secs, "interval_secs", 1, 3600, 10);
    let spool_max_bytes = ranged(
        &raw.spool_max_bytes,
        "spool_max_bytes",
        16 * 1024,
        1 << 40,
        64 * 1024 * 1024,
    );
    let spool_max_age = ranged(
        &raw.spool_max_age_secs,
        "spool_max_age_secs",
        1,
        366 * 86_400,
        7 * 86_400,
    );
    let catchup = ranged(
        &raw.catchup_batches_per_sec,
        "catchup_batches_per_sec",
        1,
        10_000,
        20,
    );
    let patch_interval = ranged(
        &raw.patch_interval_secs,
        "patch_interval_secs",
        60,
        7 * 86_400,
        3600,
    );
    let patch_timeout = ranged(&raw.patch_timeout_secs, "patch_timeout_secs", 5, 3600, 120);
    let inventory_interval = ranged(
        &raw.inventory_interval_secs,
        "inventory_interval_secs",
        60,
        30 * 86_400,
        6 * 3600,
    );
    let enroll_retry_max = ranged(
        &raw.enroll_retry_max_secs,
        "enroll_retry_max_secs",
        1,
        3600,
        60,
    );
    let raw_budget = raw.budget.as_ref();
    let budget = Budget {
        cpu_ms_per_min: ranged(
            &raw_budget.and_then(|b| b.cpu_ms_per_min.clone()),
            "budget.cpu_ms_per_min",
            0,
            60_000,
            DEFAULT_CPU_MS_PER_MIN,
        ) as u64,
        rss_bytes: ranged(
            &raw_budget.and_then(|b| b.rss_mib.clone()),
            "budget.rss_mib",
            0,
            65_536,
            DEFAULT_RSS_MIB,
        ) as u64
            * 1024
            * 1024,
    };
    let posture_interval = in_range(
        &mut at,
        &raw.posture_interval_secs,
        "posture_interval_secs",
        60,
        7 * 86_400,
        3600,
    );
    let mut backups: Vec<crate::backup::BackupConfig> = Vec::new();
    for b in raw.backup.iter().flatten() {
        let span = b.span();
        let b = b.get_ref();
        let name = b.name.get_ref().clone();
        if let Some(why) = service_name_problem(&name) {
            at(b.name.span(), format!("backup name {name:?} {why}"));
        } else if backups.iter().any(|x| x.name == name) {
            at(b.name.span(), format!("backup name {name:?} is used twice"));
        }
        let max_age = in_range(
            &mut at,
            &b.max_age_secs,
            "max_age_secs",
            60,
            366 * 86_400,
            26 * 3600,
        );
        let timeout = in_range(&mut at, &b.timeout_secs, "timeout_secs", 1, 3600, 60);
        let given = [b.path.is_some(), b.command.is_some(), b.kind.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        let source = match (&b.path, &b.command, &b.kind) {
            _ if given != 1 => {
                at(
                    span.clone(),
                    format!("backup {name:?}: give exactly one of path, command or kind"),
                );
                None
            }
            (Some(p), _, _) => Some(crate::backup::Source::Path(base.join(p.get_ref()))),
            (_, Some(c), _) => match argv_problem(c.get_ref(), b.shell) {
                Some(why) => {
                    at(c.span(), format!("backup {name:?}: command {why}"));
                    None
                }
                None => Some(crate::backup::Source::Command {
                    argv: c.get_ref().clone(),
                    shell: b.shell,
                }),
            },
            (_, _, Some(k)) => match k.get_ref().as_str() {
                "wbadmin" => Some(crate::backup::Source::Wbadmin),
                "time_machine" => Some(crate::backup::Source::TimeMachine),
                other => {
                    at(
                        k.span(),
                        format!(
                            "backup {name:?}: kind {other:?} is not \"wbadmin\" or \"time_machine\""
                        ),
                    );
                    None
                }
            },
            _ => None,
        };
        let default_interval = if matches!(source, Some(crate::backup::Source::Path(_))) {
            300
        } else {
            3600
        };
        let interval = in_range(
            &mut at,
            &b.check_interval_secs,
            "check_interval_secs",
            10,
            86_400,
            default_interval,
        );
        if let Some(source) = source {
            backups.push(crate::backup::BackupConfig {
                name,
                source,
                max_age_secs: max_age as u64,
                check_interval_secs: interval as u64,
                timeout_secs: timeout as u64,
            });
        }
    }
    let mut checks: Vec<crate::checks::CheckConfig> = Vec::new();
    let raw_checks: Vec<&Spanned<RawCheck>> = raw.check.iter().flatten().collect();
    if raw_checks.len() > crate::checks::MAX_CHECKS {
        at(
            raw_checks[crate::checks::MAX_CHECKS].span(),
            format!("more than {} [[check]] tables", crate::checks::MAX_CHECKS),
        );
    }
    for c in raw_checks.into_iter().take(crate::checks::MAX_CHECKS) {
        let c = c.get_ref();
        let name = c.name.get_ref().clone();
        let mut ok = true;
        if let Some(why) = service_name_problem(&name) {
            at(c.name.span(), format!("check name {name:?} {why}"));
            ok = false;
        } else if checks.iter().any(|x| x.name == name) {
            at(c.name.span(), format!("check name {name:?} is used twice"));
            ok = false;
        }
        if let Some(why) = argv_problem(c.command.get_ref(), c.shell) {
            at(c.command.span(), format!("check {name:?}: command {why}"));
            ok = false;
        }
        let interval = in_range(&mut at, &c.interval_secs, "interval_secs", 1, 86_400, 60);
        let timeout = in_range(&mut at, &c.timeout_secs, "timeout_secs", 1, 3600, 10);
        if let Some(t) = &c.timeout_secs
            && *t.get_ref() > interval
        {
            at(
                t.span(),
                format!(
                    "check {name:?}: timeout_secs {} is longer than interval_secs {interval}",
                    t.get_ref()
                ),
            );
            ok = false;
        }
        if ok {
            checks.push(crate::checks::CheckConfig {
                name,
                argv: c.command.get_ref().clone(),
                shell: c.shell,
                interval_secs: interval as u64,
                timeout_secs: timeout as u64,
                expect_value: c.expect_value,
            });
        }
    }
    let mut services: Vec<String> = Vec::new();
    if let Some(list) = &raw.services {
        if list.get_ref().len() > MAX_SERVICES {
            at(
                list.span(),
                format!(
                    "services lists {} names (at most {MAX_SERVICES})",
                    list.get_ref().len()
                ),
            );
        }
        for name in list.get_ref().iter().take(MAX_SERVICES) {
            match service_name_problem(name.get_ref()) {
                Some(why) => at(name.span(), format!("services: {:?} {why}", name.get_ref())),
                // A name listed twice is checked and sent once.
                None if services.contains(name.get_ref()) => {}
                None => services.push(name.get_ref().clone()),
            }
        }
    }
    let cfg = AgentConfig {
        collector_url,
        enroll_token,
        enroll_token_file: file(&raw.enroll_token_file, "enroll.token"),
        enroll_retry_max: Duration::from_secs(enroll_retry_max as u64),
        server_name,
        ca_cert: file(&raw.ca_cert, "ca.pem"),
        cert: file(&raw.cert, "agent.pem"),
        key: file(&raw.key, "agent.key"),
        state_dir: file(&raw.state_dir, "state"),
        interval: Duration::from_secs(interval as u64),
        spool_max_bytes: spool_max_bytes as u64,
        spool_max_age: Duration::from_secs(spool_max_age as u64),
        catchup_batches_per_sec: catchup as u32,
        patch_interval: Duration::from_secs(patch_interval as u64),
        patch_timeout: Duration::from_secs(patch_timeout as u64),
        services,
        budget,
        inventory_interval: Duration::from_secs(inventory_interval as u64),
        posture_interval: Duration::from_secs(posture_interval as u64),
        backups,
        checks,
    };
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigError { problems })
    }
}

/// A number within `min..=max`, or the default with the problem reported.
fn in_range(
    at: &mut impl FnMut(Range<usize>, String),
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
            at(
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

/// Why a command list cannot run: empty, or an empty program; with `shell`, one
/// element (the shell command line) is expected.
fn argv_problem(argv: &[String], shell: bool) -> Option<&'static str> {
    if argv.is_empty() || argv[0].trim().is_empty() {
        Some("must name a program")
    } else if shell && argv.len() != 1 {
        Some("with shell = true must be one string: the shell command line")
    } else {
        None
    }
}

/// Why `name` cannot be a service name, if it cannot: it becomes a metric dimension
/// and a command-line argument (`systemctl show NAME`, `launchctl`), so it must not
/// look like an option or carry whitespace, control characters or path separators.
fn service_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.len() > tandem_proto::MAX_LABEL_BYTES {
        Some("is too long (at most 256 bytes)")
    } else if name.starts_with('-') {
        Some("must not start with '-'")
    } else if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/' || c == '\\')
    {
        Some("must not contain whitespace, control characters, '/' or '\\'")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(
            Path::new("/etc/tandem/agent.toml"),
            "collector_url = \"https://c.example:4443\"\n",
        )
        .unwrap();
        assert_eq!(c.server_name, "c.example");
        assert_eq!(c.interval, Duration::from_secs(10));
        assert_eq!(c.cert, PathBuf::from("/etc/tandem/agent.pem"));
        assert_eq!(c.state_dir, PathBuf::from("/etc/tandem/state"));
        assert_eq!(c.patch_interval, Duration::from_secs(3600));
        assert_eq!(c.patch_timeout, Duration::from_secs(120));
        assert!(c.services.is_empty());
        assert_eq!(c.budget, Budget::default());
        assert_eq!(c.inventory_interval, Duration::from_secs(6 * 3600));
        let e = parse(Path::new("a.toml"), "patch_interval_secs = 5\n").unwrap_err();
        assert!(
            e.problems[0].starts_with("a.toml:1:23: patch_interval_secs = 5 is out of range"),
            "{e}"
        );
    }

    #[test]
    fn reports_all_problems_with_positions() {
        let e = parse(
            Path::new("a.toml"),
            "collector_url = \"http://x\"\ninterval_secs = 0\n",
        )
        .unwrap_err();
        assert_eq!(e.problems.len(), 2, "{e}");
        assert!(e.problems[0].starts_with("a.toml:1:17:"), "{e}");
        assert!(
            e.problems[1].starts_with("a.toml:2:17: interval_secs = 0 is out of range"),
            "{e}"
        );
        let e = parse(Path::new("a.toml"), "enroll_token = \"tdm1_xyz\"\n").unwrap_err();
        assert!(
            e.problems[0].starts_with("a.toml:1:16: enroll_token:"),
            "{e}"
        );
        assert!(e.problems[0].contains("damaged"), "{e}");
        let e = parse(
            Path::new("a.toml"),
            "collector_url = \"https://x:1\"\nintervall = 3\n",
        )
        .unwrap_err();
        assert!(e.problems[0].starts_with("a.toml:2:1:"), "{e}");
    }

    #[test]
    fn an_enrolled_agent_needs_no_url_and_the_token_stays_secret() {
        let c = parse(Path::new("/etc/tandem/agent.toml"), "").unwrap();
        assert_eq!(c.collector_url, "");
        let token = tandem_proto::token::EnrollToken {
            address: "c.example:4444".into(),
            ca_fingerprint: [1; 32],
            id: [2; 8],
            secret: [3; 32],
        }
        .encode();
        let c = parse(
            Path::new("a.toml"),
            &format!("enroll_token = \"{token}\"\n"),
        )
        .unwrap();
        assert_eq!(c.enroll_token, Some(Secret(token.clone())));
        assert!(!format!("{c:?}").contains(&token));
    }

    #[test]
    fn services_and_budget() {
        let c = parse(
            Path::new("a.toml"),
            "services = [\"ssh\", \"nginx.service\", \"ssh\"]\n[budget]\ncpu_ms_per_min = 0\nrss_mib = 8\n",
        )
        .unwrap();
        assert_eq!(c.services, ["ssh", "nginx.service"]);
        assert_eq!(c.budget.cpu_ms_per_min, 0);
        assert_eq!(c.budget.rss_bytes, 8 << 20);
        let e = parse(
            Path::new("a.toml"),
            "services = [\"ok\", \"--all\", \"a b\", \"\"]\n[budget]\nrss_mib = -1\n",
        )
        .unwrap_err();
        assert_eq!(e.problems.len(), 4, "{e}");
        assert!(
            e.problems[0].starts_with("a.toml:3:11: budget.rss_mib = -1"),
            "{e}"
        );
        assert!(
            e.problems[1].starts_with("a.toml:1:19: services: \"--all\""),
            "{e}"
        );
        let e = parse(Path::new("a.toml"), "[budget]\ncpu_ms = 3\n").unwrap_err();
        assert!(e.problems[0].starts_with("a.toml:2:1:"), "{e}");
    }

    #[test]
    fn backups_and_custom_checks() {
        let c = parse(
            Path::new("/etc/tandem/agent.toml"),
            "posture_interval_secs = 600\n\
             [[backup]]\nname = \"nas\"\npath = \"/srv/backup\"\nmax_age_secs = 90000\n\
             [[backup]]\nname = \"restic\"\ncommand = [\"/usr/local/bin/restic-last\"]\n\
             [[backup]]\nname = \"wsb\"\nkind = \"wbadmin\"\n\
             [[check]]\nname = \"raid\"\ncommand = [\"/usr/lib/nagios/plugins/check_raid\", \"-v\"]\ninterval_secs = 30\ntimeout_secs = 5\n\
             [[check]]\nname = \"queue\"\ncommand = [\"mailq | wc -l\"]\nshell = true\nexpect_value = true\n",
        )
        .unwrap();
        assert_eq!(c.posture_interval, Duration::from_secs(600));
        assert_eq!(c.backups.len(), 3);
        assert_eq!(
            c.backups[0].source,
            crate::backup::Source::Path(PathBuf::from("/srv/backup"))
        );
        assert_eq!(c.backups[0].check_interval_secs, 300);
        assert_eq!(c.backups[1].max_age_secs, 26 * 3600);
        assert_eq!(c.backups[2].source, crate::backup::Source::Wbadmin);
        assert_eq!(c.checks.len(), 2);
        assert_eq!(c.checks[0].timeout_secs, 5);
        assert!(c.checks[1].shell && c.checks[1].expect_value);
        let e = parse(
            Path::new("a.toml"),
            "[[backup]]\nname = \"x\"\npath = \"/a\"\nkind = \"wbadmin\"\n\
             [[backup]]\nname = \"y\"\nkind = \"tape\"\n\
             [[check]]\nname = \"c\"\ncommand = []\n\
             [[check]]\nname = \"d\"\ncommand = [\"a\", \"b\"]\nshell = true\ninterval_secs = 5\ntimeout_secs = 10\n",
        )
        .unwrap_err();
        let all = e.to_string();
        assert!(
            all.contains("give exactly one of path, command or kind"),
            "{all}"
        );
        assert!(
            all.contains("a.toml:7:8: backup \"y\": kind \"tape\""),
            "{all}"
        );
        assert!(
            all.contains("check \"c\": command must name a program"),
            "{all}"
        );
        assert!(
            all.contains("with shell = true must be one string"),
            "{all}"
        );
        assert!(
            all.contains("timeout_secs 10 is longer than interval_secs 5"),
            "{all}"
        );
        let e = parse(
            Path::new("a.toml"),
            "[[check]]\nname = \"c\"\ncommand = [\"x\"]\nevery = 3\n",
        )
        .unwrap_err();
        assert!(e.problems[0].starts_with("a.toml:4:1:"), "{e}");
    }

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("https://127.0.0.1:4443"), Some("127.0.0.1"));
        assert_eq!(url_host("https://[::1]:4443"), Some("::1"));
        assert_eq!(url_host("https://c.example"), Some("c.example"));
        assert_eq!(url_host("http://c.example"), None);
    }

    #[test]
    fn example_config_in_deploy_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/agent.toml");
        let c = load(&path).unwrap();
        // It must not override the address enrollment saved (issue 13).
        assert_eq!(c.collector_url, "", "the example sets no collector_url");
        assert_eq!(c.enroll_retry_max, Duration::from_secs(60));
    }
}
