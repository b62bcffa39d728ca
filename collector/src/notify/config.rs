//! The `[notify]` and `[http]` sections of `collector.toml`: raw serde forms
//! (unknown keys refused) checked into [`NotifyConfig`] and [`HttpConfig`], every
//! problem reported through the caller's file:line:column reporter.
//!
//! ```toml
//! [notify]
//! policies_dir = "policies"        # escalation policies (deploy/policies/example.toml)
//! mail_dir = "mail"                # with no smtp_host, mails are written here as .eml
//! smtp_host = "smtp.example.com"
//! smtp_port = 587                  # default: 587 starttls, 465 tls, 25 none
//! smtp_tls = "starttls"            # starttls | tls | none
//! smtp_username = "tandem"
//! smtp_password_file = "smtp.pass" # or smtp_password_env = "TANDEM_SMTP_PASSWORD"
//! from = "Tandem <tandem@msp.example>"
//! msp_name = "Example MSP"         # who "we" are in mails to customers
//! templates_dir = "templates"      # optional overrides (docs/NOTIFICATIONS.md)
//! group_wait_secs = 30             # a tenant's incidents within this wait share one mail
//! retry_base_secs = 2              # first retry; doubles up to retry_max_secs, jittered
//! retry_max_secs = 300
//! max_attempts = 20                # then the delivery is dead-lettered
//! [http]
//! listen = "127.0.0.1:8080"        # ack links, the feed, the console
//! tls = true                       # default: TLS unless listen is loopback; false is refused off loopback
//! public_url = "https://tandem.msp.example:8080"   # the base of links in mails
//! ack_link_ttl_secs = 259200
//! max_connections = 1024           # open connections in total
//! max_connections_per_address = 64 # open connections from one address
//! ```

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    StartTls,
    Implicit,
    None,
}

/// A secret read from a file or the environment; never printed.
#[derive(Clone, PartialEq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Smtp {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) tls: SmtpTls,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NotifyConfig {
    pub(crate) policies_dir: PathBuf,
    /// Where mails go as `.eml` files when `smtp` is `None`.
    pub(crate) mail_dir: PathBuf,
    pub(crate) smtp: Option<Smtp>,
    pub(crate) from: String,
    pub(crate) msp_name: String,
    pub(crate) templates_dir: Option<PathBuf>,
    pub(crate) group_wait: Duration,
    pub(crate) retry_base: Duration,
    pub(crate) retry_max: Duration,
    pub(crate) max_attempts: u32,
}

impl NotifyConfig {
    /// Defaults: policies and mail folders inside `data_dir`, no SMTP.
    pub(crate) fn new(policies_dir: PathBuf, mail_dir: PathBuf) -> Self {
        NotifyConfig {
            policies_dir,
            mail_dir,
            smtp: None,
            from: "Tandem <tandem@localhost>".into(),
            msp_name: "Your IT service provider".into(),
            templates_dir: None,
            group_wait: Duration::from_secs(30),
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(300),
            max_attempts: 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    pub(crate) listen: SocketAddr,
    /// The base of links in mails (no trailing slash); empty: `http://` and the
    /// address the listener bound.
    pub(crate) public_url: String,
    pub(crate) ack_link_ttl: Duration,
    /// `tls`: `None` means TLS unless `listen` is loopback (crate::http::listener_tls).
    pub(crate) tls: Option<bool>,
    /// Open connections in total and from one address (issue 15, as issue 10 did
    /// for the gRPC listeners).
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_address: usize,
}

impl HttpConfig {
    /// `listen` with the defaults: TLS unless loopback, 1024 connections, 64 per address.
    #[cfg(feature = "demo")]
    pub(crate) fn new(listen: SocketAddr) -> Self {
        HttpConfig {
            listen,
            public_url: String::new(),
            ack_link_ttl: Duration::from_secs(3 * 86_400),
            tls: None,
            max_connections: 1024,
            max_connections_per_address: 64,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNotify {
    policies_dir: Option<Spanned<String>>,
    mail_dir: Option<Spanned<String>>,
    smtp_host: Option<Spanned<String>>,
    smtp_port: Option<Spanned<i64>>,
    smtp_tls: Option<Spanned<String>>,
    smtp_username: Option<Spanned<String>>,
    smtp_password_file: Option<Spanned<String>>,
    smtp_password_env: Option<Spanned<String>>,
    from: Option<Spanned<String>>,
    msp_name: Option<Spanned<String>>,
    templates_dir: Option<Spanned<String>>,
    group_wait_secs: Option<Spanned<i64>>,
    retry_base_secs: Option<Spanned<i64>>,
    retry_max_secs: Option<Spanned<i64>>,
    max_attempts: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    listen: Option<Spanned<String>>,
    public_url: Option<Spanned<String>>,
    ack_link_ttl_secs: Option<Spanned<i64>>,
    tls: Option<Spanned<bool>>,
    max_connections: Option<Spanned<i64>>,
    max_connections_per_address: Option<Spanned<i64>>,
}

fn ranged(
    at: &mut dyn FnMut(Range<usize>, String),
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

/// Checks `[notify]`; relative paths are relative to `base` (the config's folder).
pub(crate) fn build_notify(
    raw: &RawNotify,
    base: &Path,
    data_dir: &Path,
    at: &mut dyn FnMut(Range<usize>, String),
) -> NotifyConfig {
    let dir = |v: &Option<Spanned<String>>, default: PathBuf| match v {
        Some(s) => base.join(s.get_ref()),
        None => default,
    };
    let mut c = NotifyConfig::new(
        dir(&raw.policies_dir, base.join("policies")),
        dir(&raw.mail_dir, data_dir.join("mail")),
    );
    c.templates_dir = raw.templates_dir.as_ref().map(|t| base.join(t.get_ref()));
    if let Some(f) = &raw.from {
        match f.get_ref().parse::<lettre::message::Mailbox>() {
            Ok(_) => c.from = f.get_ref().clone(),
            Err(e) => at(
                f.span(),
                format!("from {:?} is not a mailbox: {e}", f.get_ref()),
            ),
        }
    }
    if let Some(m) = &raw.msp_name {
        c.msp_name = m.get_ref().clone();
    }
    c.group_wait =
        Duration::from_secs(
            ranged(at, &raw.group_wait_secs, "group_wait_secs", 0, 3600, 30) as u64,
        );
    c.retry_base =
        Duration::from_secs(ranged(at, &raw.retry_base_secs, "retry_base_secs", 1, 3600, 2) as u64);
    c.retry_max =
        Duration::from_secs(
            ranged(at, &raw.retry_max_secs, "retry_max_secs", 1, 86_400, 300) as u64,
        );
    c.max_attempts = ranged(at, &raw.max_attempts, "max_attempts", 1, 1000, 20) as u32;
    let tls = match raw.smtp_tls.as_ref().map(|t| t.get_ref().as_str()) {
        None | Some("starttls") => SmtpTls::StartTls,
        Some("tls") => SmtpTls::Implicit,
        Some("none") => SmtpTls::None,
        Some(other) => {
            at(
                raw.smtp_tls.as_ref().map_or(0..0, |t| t.span()),
                format!("smtp_tls = {other:?}: use starttls, tls or none"),
            );
            SmtpTls::StartTls
        }
    };
    let default_port = match tls {
        SmtpTls::StartTls => 587,
        SmtpTls::Implicit => 465,
        SmtpTls::None => 25,
    };
    let port = ranged(at, &raw.smtp_port, "smtp_port", 1, 65_535, default_port) as u16;
    let password = match (&raw.smtp_password_file, &raw.smtp_password_env) {
        (Some(_), Some(e)) => {
            at(
                e.span(),
                "give smtp_password_file or smtp_password_env, not both".into(),
            );
            None
        }
        (Some(f), None) => {
            let p = base.join(f.get_ref());
            match std::fs::read_to_string(&p) {
                Ok(s) if !s.trim().is_empty() => {
                    Some(Secret(s.trim_end_matches(['\r', '\n']).to_owned()))
                }
                Ok(_) => {
                    at(f.span(), format!("{} is empty", p.display()));
                    None
                }
                Err(e) => {
                    at(f.span(), format!("cannot read {}: {e}", p.display()));
                    None
                }
            }
        }
        (None, Some(e)) => match std::env::var(e.get_ref()) {
            Ok(v) if !v.is_empty() => Some(Secret(v)),
            _ => {
                at(
                    e.span(),
                    format!("environment variable {} is not set", e.get_ref()),
                );
                None
            }
        },
        (None, None) => None,
    };
    match &raw.smtp_host {
        Some(h) if h.get_ref().is_empty() => at(
            h.span(),
            "smtp_host must not be empty (leave it out to write .eml files)".into(),
        ),
        Some(h) => {
            c.smtp = Some(Smtp {
                host: h.get_ref().clone(),
                port,
                tls,
                username: raw.smtp_username.as_ref().map(|u| u.get_ref().clone()),
                password,
            })
        }
        None => {
            if let Some(u) = &raw.smtp_username {
                at(u.span(), "smtp_username without smtp_host".into());
            }
        }
    }
    c
}

/// Checks `[http]`.
pub(crate) fn build_http(raw: &RawHttp, at: &mut dyn FnMut(Range<usize>, String)) -> HttpConfig {
    let listen = match &raw.listen {
        None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        Some(s) => match s.get_ref().parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                at(
                    s.span(),
                    format!(
                        "listen = {:?} is not an address like 127.0.0.1:8080",
                        s.get_ref()
                    ),
                );
                SocketAddr::from(([127, 0, 0, 1], 8080))
            }
        },
    };
    let public_url = match &raw.public_url {
        Some(u) if u.get_ref().starts_with("http://") || u.get_ref().starts_with("https://") => {
            u.get_ref().trim_end_matches('/').to_owned()
        }
        Some(u) => {
            at(
                u.span(),
                format!(
                    "public_url = {:?} must start with http:// or https://",
                    u.get_ref()
                ),
            );
            String::new()
        }
        // Filled in with the bound address once listening (port 0 works too).
        None => String::new(),
    };
    let ttl = ranged(
        at,
        &raw.ack_link_ttl_secs,
        "ack_link_ttl_secs",
        60,
        30 * 86_400,
        3 * 86_400,
    );
    let tls = raw.tls.as_ref().map(|t| *t.get_ref());
    if let Some(t) = &raw.tls
        && !*t.get_ref()
        && !listen.ip().is_loopback()
    {
        at(
            t.span(),
            format!(
                "tls = false: plain HTTP is only allowed when listen is a loopback address (listen = {listen})"
            ),
        );
    }
    let max_connections = ranged(at, &raw.max_connections, "max_connections", 1, 65_536, 1024);
    let per_address = ranged(
        at,
        &raw.max_connections_per_address,
        "max_connections_per_address",
        1,
        65_536,
        64,
    );
    HttpConfig {
        listen,
        public_url,
        ack_link_ttl: Duration::from_secs(ttl as u64),
        tls,
        max_connections: max_connections as usize,
        max_connections_per_address: per_address as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notify(src: &str) -> (NotifyConfig, Vec<String>) {
        let raw: RawNotify = toml::from_str(src).unwrap();
        let mut problems = Vec::new();
        let c = build_notify(
            &raw,
            Path::new("/etc/t"),
            Path::new("/var/t"),
            &mut |s, m| problems.push(format!("{}: {m}", s.start)),
        );
        (c, problems)
    }

    #[test]
    fn defaults_write_eml_files_into_the_data_dir() {
        let (c, p) = notify("");
        assert!(p.is_empty());
        assert_eq!(c.mail_dir, Path::new("/var/t/mail"));
        assert_eq!(c.policies_dir, Path::new("/etc/t/policies"));
        assert!(c.smtp.is_none());
        assert_eq!(c.group_wait, Duration::from_secs(30));
    }

    #[test]
    fn smtp_ports_follow_the_tls_mode_and_the_password_is_never_printed() {
        // SAFETY-free: edition 2024 makes set_var unsafe, so the test reads a
        // variable every environment has instead.
        let (c, p) =
            notify("smtp_host = \"mx\"\nsmtp_tls = \"tls\"\nsmtp_password_env = \"PATH\"\n");
        assert!(p.is_empty(), "{p:?}");
        let s = c.smtp.unwrap();
        assert_eq!((s.port, s.tls), (465, SmtpTls::Implicit));
        assert!(s.password.is_some());
        assert!(!format!("{s:?}").contains(&std::env::var("PATH").unwrap()));
        let (_, p) = notify("smtp_host = \"mx\"\nsmtp_tls = \"ssl\"\ngroup_wait_secs = -1\n");
        assert_eq!(p.len(), 2, "{p:?}");
    }
}
