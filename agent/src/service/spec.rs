//! What the agent's OS service is, independent of the OS: its name, the arguments
//! the service manager starts it with, its recovery plan, and the layout of a
//! Windows install (`%ProgramData%\Tandem`). Pure, so it is tested everywhere;
//! `windows.rs` applies it through the Service Control Manager and
//! `unsupported.rs` refuses on other systems (they have systemd and launchd units).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The service's key name (`sc query TandemAgent`, `services` in agent.toml).
pub const SERVICE_NAME: &str = "TandemAgent";
pub const DISPLAY_NAME: &str = "Tandem agent";
pub const DESCRIPTION: &str =
    "Samples this machine's health and streams it to the Tandem collector over mutual TLS.";

/// Restart after the first, second and later failures (the SCM's recovery
/// actions), the failure count reset after a day without one.
pub const RESTART_DELAYS: [Duration; 3] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
];
pub const FAILURE_RESET: Duration = Duration::from_secs(86_400);

/// Why a service operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(
        "`tandem-agent service` manages a Windows service; on Linux use the tandem-agent systemd unit, on macOS the launchd daemon (docs/INSTALL.md)"
    )]
    Unsupported,
    #[error("cannot {what}: {detail}")]
    Scm { what: &'static str, detail: String },
    #[error("{path}: {source}", path = .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the agent stopped with an error: {0}")]
    Agent(String),
    #[error(
        "SERVER={0:?} is not host:port (the collector's telemetry address, e.g. collector.example.net:4443)"
    )]
    BadServer(String),
}

/// The arguments the service manager passes: `service run --config <config>`.
pub fn launch_arguments(config: &Path) -> Vec<OsString> {
    vec![
        "service".into(),
        "run".into(),
        "--config".into(),
        config.as_os_str().to_owned(),
    ]
}

/// The config an MSI install starts with, written next to the state it names:
/// every path relative to `%ProgramData%\Tandem`, no collector_url (enrollment
/// saves it), the installer's token file beside it.
pub const WINDOWS_CONFIG: &str = "\
# tandem-agent configuration (Windows). Every key is optional; see docs/INSTALL.md.
# Paths are relative to this file's folder, %ProgramData%\\Tandem, which only SYSTEM
# and Administrators can read. No collector_url: enrollment saves the address.
state_dir = \"state\"
ca_cert = \"ca.pem\"
cert = \"agent.pem\"
key = \"agent.key\"
enroll_token_file = \"enroll.token\"
";

/// `icacls` arguments that leave `dir` (and what is created in it) to SYSTEM and
/// the Administrators group only, by well-known SID so a localized Windows works.
pub fn private_dir_acl_args(dir: &Path) -> Vec<OsString> {
    vec![
        dir.as_os_str().to_owned(),
        "/inheritance:r".into(),
        "/grant:r".into(),
        "*S-1-5-18:(OI)(CI)F".into(),
        "/grant:r".into(),
        "*S-1-5-32-544:(OI)(CI)F".into(),
        "/q".into(),
    ]
}

/// The `collector_url` an installer's `SERVER` property gives (`host:port`, or
/// `https://host:port`); `None` when blank (the MSI passes " " when unset).
pub fn server_url(server: &str) -> Result<Option<String>, ServiceError> {
    let s = server.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let authority = s
        .strip_prefix("https://")
        .unwrap_or(s)
        .trim_end_matches('/');
    match tandem_proto::token::split_address(authority) {
        Some(_) => Ok(Some(format!("https://{authority}"))),
        None => Err(ServiceError::BadServer(s.to_owned())),
    }
}

/// `text` with its top-level `collector_url` set to `url`: an earlier top-level
/// one is dropped and the new one goes first (a key after a `[table]` header
/// would belong to that table). Comments and everything else are kept.
fn set_collector_url(text: &str, url: &str) -> String {
    let mut out = format!("collector_url = \"{url}\"  # set by the installer (SERVER)\n");
    let mut top_level = true;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            top_level = false;
        }
        let is_url = t
            .strip_prefix("collector_url")
            .is_some_and(|r| r.trim_start().starts_with('='));
        if !(top_level && is_url) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Prepares an install folder for the service: the folder, a default config if
/// there is none (an edited one is kept), the installer's `token` (if any) in
/// `enroll.token`, and the installer's `server` (if any, `host:port`) as the
/// config's `collector_url`: the telemetry address the agent streams to, in place
/// of the one enrollment saves (enrollment still dials the token's address).
/// Returns the config's path.
pub fn prepare_dir(
    dir: &Path,
    token: Option<&str>,
    server: Option<&str>,
) -> Result<PathBuf, ServiceError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ServiceError::Io { path, source }
    };
    // Checked before anything is written: a bad SERVER fails the install cleanly.
    let url = server.map(server_url).transpose()?.flatten();
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let config = dir.join("agent.toml");
    if !config.exists() {
        std::fs::write(&config, WINDOWS_CONFIG).map_err(io(&config))?;
    }
    if let Some(url) = url {
        let text = std::fs::read_to_string(&config).map_err(io(&config))?;
        std::fs::write(&config, set_collector_url(&text, &url)).map_err(io(&config))?;
    }
    if let Some(t) = token.map(str::trim).filter(|t| !t.is_empty()) {
        let file = dir.join("enroll.token");
        crate::platform::write_private_file(&file, format!("{t}\n").as_bytes())
            .map_err(io(&file))?;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_runs_the_agent_with_its_config() {
        let args = launch_arguments(Path::new(r"C:\ProgramData\Tandem\agent.toml"));
        assert_eq!(
            args,
            [
                "service",
                "run",
                "--config",
                r"C:\ProgramData\Tandem\agent.toml"
            ]
            .map(OsString::from)
        );
        assert!(RESTART_DELAYS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn the_acl_names_system_and_administrators_only() {
        let args = private_dir_acl_args(Path::new(r"C:\ProgramData\Tandem"));
        let text: Vec<String> = args.iter().map(|a| a.to_string_lossy().into()).collect();
        assert!(text.contains(&"/inheritance:r".to_owned()), "{text:?}");
        let grants: Vec<&String> = text.iter().filter(|a| a.starts_with('*')).collect();
        assert_eq!(grants, ["*S-1-5-18:(OI)(CI)F", "*S-1-5-32-544:(OI)(CI)F"]);
    }

    #[test]
    fn prepare_writes_a_parsable_config_and_the_token_and_keeps_edits() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("Tandem");
        let config = prepare_dir(&root, Some(" tdm1_abc \n"), Some(" ")).unwrap();
        let cfg = crate::config::load(&config).unwrap();
        assert_eq!(cfg.collector_url, "");
        assert_eq!(cfg.enroll_token_file, root.join("enroll.token"));
        assert_eq!(cfg.state_dir, root.join("state"));
        assert_eq!(
            std::fs::read_to_string(root.join("enroll.token")).unwrap(),
            "tdm1_abc\n"
        );
        std::fs::write(&config, "interval_secs = 30\n").unwrap();
        prepare_dir(&root, None, None).unwrap();
        assert_eq!(
            std::fs::read_to_string(&config).unwrap(),
            "interval_secs = 30\n",
            "an edited config is kept (upgrade)"
        );
    }

    #[test]
    fn server_sets_a_top_level_collector_url_once_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("Tandem");
        let config = prepare_dir(&root, None, Some("collector.example.net:4443")).unwrap();
        let cfg = crate::config::load(&config).unwrap();
        assert_eq!(cfg.collector_url, "https://collector.example.net:4443");
        assert_eq!(cfg.state_dir, root.join("state"), "the defaults stay");
        // An edited config with a table: the new address replaces the old, at the top.
        std::fs::write(
            &config,
            "interval_secs = 30\ncollector_url = \"https://old:1\"\n[[check]]\nname = \"x\"\ncommand = [\"true\"]\n",
        )
        .unwrap();
        prepare_dir(&root, None, Some("https://[::1]:4443")).unwrap();
        let text = std::fs::read_to_string(&config).unwrap();
        assert_eq!(text.matches("collector_url").count(), 1, "{text}");
        let cfg = crate::config::load(&config).unwrap();
        assert_eq!(cfg.collector_url, "https://[::1]:4443");
        assert_eq!(cfg.interval.as_secs(), 30);
        assert_eq!(cfg.checks.len(), 1);
        // Bad input: a clear error naming it, nothing written.
        for bad in ["collector.example.net", "host:0", "a b:1", "http://x:1"] {
            let e = prepare_dir(&root, None, Some(bad)).unwrap_err();
            assert!(e.to_string().contains(bad.trim()), "{e}");
        }
        assert_eq!(std::fs::read_to_string(&config).unwrap(), text);
    }
}
