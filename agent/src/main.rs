//! `tandem-agent` command line: parse arguments, set up logging, call the library.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "tandem-agent", version, about = "Tandem endpoint agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sample this machine and stream to the collector until stopped.
    Run {
        /// Path to agent.toml.
        #[arg(long, default_value = "/etc/tandem/agent.toml")]
        config: PathBuf,
    },
    /// Enroll this device with a token from `tandem-collector token create`: makes
    /// the private key here, gets a certificate, writes them next to the config.
    Enroll {
        /// The token (default: the TANDEM_ENROLL_TOKEN environment variable).
        #[arg(long)]
        token: Option<String>,
        /// Path to agent.toml (created with defaults if missing).
        #[arg(long, default_value = "/etc/tandem/agent.toml")]
        config: PathBuf,
        /// Enroll again although this device is enrolled (it becomes a new device
        /// unless the token was made with `--replace`).
        #[arg(long)]
        force: bool,
    },
    /// Print one sample as JSON and exit.
    Collect {
        /// Take one sample (the only mode for now).
        #[arg(long)]
        once: bool,
        /// Also check pending updates and reboot state (runs the package manager,
        /// read-only, up to --patch-timeout-secs) and print them under "patches".
        #[arg(long)]
        patches: bool,
        /// Deadline of each package-manager command with --patches and --inventory.
        #[arg(long, default_value_t = 120)]
        patch_timeout_secs: u64,
        /// Also collect the inventory (OS, hardware, installed software) and print
        /// it under "inventory".
        #[arg(long)]
        inventory: bool,
        /// Where the first-seen record of pending updates is read with --patches
        /// (never written by `collect`); without it, every update is new.
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Collect {
            patches,
            patch_timeout_secs,
            state_dir,
            inventory,
            ..
        } => {
            let mut sampler = tandem_agent::collect::Sampler::new()?;
            std::thread::sleep(std::time::Duration::from_millis(300));
            let reading = sampler.sample();
            let patches = patches.then(|| {
                let check = tandem_agent::platform::check_patches(std::time::Duration::from_secs(
                    patch_timeout_secs,
                ));
                // Read-only: a missing dir gives an empty record and nothing is saved.
                let dir = state_dir.unwrap_or_else(|| PathBuf::from("/nonexistent"));
                let mut first_seen = tandem_agent::patches::FirstSeen::load(&dir);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                tandem_agent::patches::Status::from_check(check, &mut first_seen, now)
            });
            let inventory = inventory.then(|| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                tandem_agent::inventory::collect(
                    std::time::Duration::from_secs(patch_timeout_secs),
                    now,
                )
            });
            // The sample's fields as before, "patches" and "inventory" added only
            // when asked for.
            #[derive(serde::Serialize)]
            struct Once<'a> {
                #[serde(flatten)]
                reading: &'a tandem_agent::collect::Reading,
                #[serde(skip_serializing_if = "Option::is_none")]
                patches: Option<tandem_agent::patches::Status>,
                #[serde(skip_serializing_if = "Option::is_none")]
                inventory: Option<tandem_agent::inventory::Inventory>,
            }
            let json = Once {
                reading: &reading,
                patches,
                inventory,
            };
            println!("{}", serde_json::to_string_pretty(&json)?);
            Ok(())
        }
        Command::Enroll {
            token,
            config,
            force,
        } => {
            let token = token
                .or_else(|| std::env::var(tandem_agent::TOKEN_ENV).ok())
                .filter(|t| !t.trim().is_empty())
                .context("no token: pass --token or set TANDEM_ENROLL_TOKEN")?;
            if !config.exists() {
                if let Some(dir) = config.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
                std::fs::write(
                    &config,
                    "# Written by `tandem-agent enroll`; every key is optional (see deploy/agent.toml).\n\
                     # The collector's address is in <state_dir>/enrollment.toml.\n",
                )
                .with_context(|| format!("cannot write {}", config.display()))?;
            }
            let cfg = tandem_agent::config::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
            if !force && cfg.cert.exists() {
                let who = match tandem_agent::identity::Enrollment::load(&cfg.state_dir) {
                    Ok(Some(e)) => {
                        format!("enrolled as device {} (tenant {})", e.device_id, e.tenant)
                    }
                    _ => format!("has a certificate at {}", cfg.cert.display()),
                };
                anyhow::bail!(
                    "this device already {who}; pass --force to enroll again (it becomes a new device unless the token replaces one)"
                );
            }
            let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            let done = rt
                .block_on(tandem_agent::enroll::enroll(&cfg, &token))
                .map_err(|e| anyhow::anyhow!("enrollment failed: {e}"))?;
            println!(
                "enrolled as device {} (tenant {}{}); collector {}; key {} (private), certificate {}",
                done.enrollment.device_id,
                done.enrollment.tenant,
                if done.enrollment.site.is_empty() {
                    String::new()
                } else {
                    format!(", site {}", done.enrollment.site)
                },
                done.enrollment.collector_url,
                done.key.display(),
                done.cert.display()
            );
            Ok(())
        }
        Command::Run { config } => {
            let cfg = tandem_agent::config::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
            let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            rt.block_on(tandem_agent::run(cfg, Some(config), shutdown_signal()))?;
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
