//! `token create|list|create-api|revoke`: enrollment tokens and API tokens.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use super::{
    DataDir, format_ms, now_ms, open_db, open_store_read, parse_duration, print_json, print_out,
    require_tenant,
};
use crate::config;
use crate::pki::{self};
use crate::store::admin;
use crate::store::api::AdminStore;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create an enrollment token and print it (the only time its secret is shown).
    Create {
        /// The tenant the devices enroll into.
        #[arg(long)]
        tenant: String,
        /// The site they are placed at (optional).
        #[arg(long)]
        site: Option<String>,
        /// How long the token can be used: 90s, 30m, 24h, 7d.
        #[arg(long, default_value = "24h")]
        expires: String,
        /// How many devices may enroll with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Re-enroll a reinstalled machine as this existing device (keeps its id
        /// and history; its old certificates are revoked). Single use.
        #[arg(long)]
        replace: Option<String>,
        /// host:port of the enrollment listener as agents reach it.
        #[arg(long)]
        address: String,
        /// Agents reach the enrollment listener through a port forward: a port
        /// other than the configured one is expected (never the telemetry port).
        #[arg(long)]
        port_forwarded: bool,
        #[command(flatten)]
        db: DataDir,
    },
    /// List tokens (never their secrets).
    List {
        /// Only this tenant's tokens.
        #[arg(long)]
        tenant: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DataDir,
    },
    /// Create an API token that reads the alert feed and /metrics (printed once).
    CreateApi {
        /// What the token is for (e.g. noc-screen); shown in listings.
        name: String,
        #[command(flatten)]
        db: DataDir,
    },
    /// Revoke a token: it can no longer be used.
    Revoke {
        /// The token's id (from `token list`).
        id: String,
        #[command(flatten)]
        db: DataDir,
    },
}

/// Runs a `token` command.
pub fn run(cmd: TokenCommand) -> anyhow::Result<()> {
    use ring::rand::SecureRandom;
    use tandem_proto::token::EnrollToken;
    match cmd {
        TokenCommand::CreateApi { name, db } => {
            crate::notify::cli::create_api_token(&db.dir()?, &name)?
        }
        TokenCommand::Create {
            tenant,
            site,
            expires,
            uses,
            replace,
            address,
            port_forwarded,
            db,
        } => {
            let lifetime = parse_duration(&expires).context("--expires")?;
            if uses == 0 {
                anyhow::bail!("--uses must be 1 or more");
            }
            if replace.is_some() && uses != 1 {
                anyhow::bail!("--replace makes a single-use token; drop --uses");
            }
            if tandem_proto::token::split_address(&address).is_none()
                || address.len() > tandem_proto::token::MAX_ADDRESS_BYTES
            {
                anyhow::bail!(
                    "--address {address:?} is not host:port (e.g. collector.example.net:4444)"
                );
            }
            // --config (of the shared data-dir option) names the collector.toml whose
            // [enrollment] and [telemetry] listeners --address is checked against;
            // default /etc/tandem/collector.toml if it exists.
            check_token_address(&address, db.config.as_deref(), port_forwarded)?;
            let fingerprint = pki::serving_fingerprint(&db.dir()?)?;
            let rng = ring::rand::SystemRandom::new();
            let mut id = [0u8; 8];
            let mut secret = [0u8; 32];
            rng.fill(&mut id)
                .and_then(|()| rng.fill(&mut secret))
                .map_err(|_| anyhow::anyhow!("the system random number generator failed"))?;
            let token = EnrollToken {
                address,
                ca_fingerprint: fingerprint,
                id,
                secret,
            };
            let now = now_ms();
            let expires_ms = now + lifetime.as_millis() as i64;
            open_db(&db)?.insert_token(
                &admin::NewToken {
                    id_hex: token.id_hex(),
                    secret_sha256: token.secret_hash(),
                    tenant: tenant.clone(),
                    site: site.clone(),
                    replace_device_id: replace.clone(),
                    expires_ms,
                    max_uses: uses,
                },
                now,
            )?;
            eprintln!(
                "token {} for tenant {tenant}{}{}: {uses} use(s), expires {}",
                token.id_hex(),
                site.map(|s| format!(", site {s}")).unwrap_or_default(),
                replace
                    .map(|d| format!(", replaces device {d}"))
                    .unwrap_or_default(),
                format_ms(expires_ms)
            );
            eprintln!("on the device: tandem-agent enroll --token <the line below>");
            println!("{}", token.encode());
        }
        TokenCommand::List { tenant, json, db } => {
            let conn = open_store_read(&db.dir()?)?;
            if let Some(t) = tenant.as_deref() {
                require_tenant(&conn, t)?;
            }
            let rows: Vec<_> = conn
                .list_tokens()?
                .into_iter()
                .filter(|t| tenant.as_deref().is_none_or(|n| n == t.tenant))
                .collect();
            if json {
                print_json(&rows)?;
            } else {
                print_out(&render_tokens(&rows, now_ms()))?;
            }
        }
        TokenCommand::Revoke { id, db } => {
            open_db(&db)?.revoke_token(&id, now_ms())?;
            println!("token {id} revoked");
        }
    }
    Ok(())
}

/// Where `token create` looks for the collector's configuration by default.
const DEFAULT_CONFIG: &str = "/etc/tandem/collector.toml";

/// Checks a token's `--address` port against the listeners of collector.toml
/// (issue 16, item 10). Without a configuration to read, says it did not check.
fn check_token_address(
    address: &str,
    config_path: Option<&Path>,
    port_forwarded: bool,
) -> anyhow::Result<()> {
    let path = match config_path {
        Some(p) => p.to_owned(),
        None if Path::new(DEFAULT_CONFIG).is_file() => PathBuf::from(DEFAULT_CONFIG),
        None => {
            eprintln!(
                "note: --address not checked against the enrollment listener (no {DEFAULT_CONFIG}; pass --config)"
            );
            return Ok(());
        }
    };
    let cfg = config::load(&path)?;
    let port = tandem_proto::token::split_address(address)
        .map(|(_, p)| p)
        .unwrap_or(0);
    crate::cli::check_enroll_port(port, cfg.enrollment.listen, cfg.listen, port_forwarded)
        .map_err(|e| anyhow::anyhow!("{e} (checked against {})", path.display()))
}

/// The table of `token list`, or a line saying there is nothing yet.
pub(crate) fn render_tokens(rows: &[admin::TokenRow], now_ms: i64) -> String {
    use std::fmt::Write;
    if rows.is_empty() {
        return "no enrollment tokens yet (make one: `tandem-collector token create --tenant T \
                --address HOST:PORT`)\n"
            .into();
    }
    let mut out = format!(
        "{:<16}  {:<16} {:<16} {:>5}  {:<8} {:<18} REPLACES\n",
        "ID", "TENANT", "SITE", "USES", "STATE", "EXPIRES"
    );
    for t in rows {
        let _ = writeln!(
            out,
            "{:<16}  {:<16} {:<16} {:>5}  {:<8} {:<18} {}",
            t.id,
            t.tenant,
            t.site.as_deref().unwrap_or("-"),
            format!("{}/{}", t.uses, t.max_uses),
            t.state(now_ms),
            format_ms(t.expires_ms),
            t.replace_device_id.as_deref().unwrap_or("-")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_table_or_nothing_yet() {
        assert!(render_tokens(&[], 0).starts_with("no enrollment tokens yet"));
        let row = admin::TokenRow {
            id: "0123456789abcdef".into(),
            tenant: "acme".into(),
            site: None,
            replace_device_id: None,
            created_ms: 0,
            expires_ms: 1_000,
            uses: 1,
            max_uses: 5,
            revoked_ms: None,
        };
        let t = render_tokens(&[row], 2_000);
        let line = t.lines().nth(1).unwrap();
        assert!(line.starts_with("0123456789abcdef  acme"), "{t}");
        assert!(line.contains("  1/5  "), "{t}");
        assert!(line.contains("expired"), "the state at now: {t}");
    }
}
