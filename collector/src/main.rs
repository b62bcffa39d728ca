//! `tandem-collector` command line: parse arguments, set up logging, call the library.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use tandem_collector::{Collector, cli, config, store};

#[derive(Parser)]
#[command(name = "tandem-collector", version, about = "Tandem central collector")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve agents: mTLS gRPC telemetry into SQLite.
    Serve {
        #[arg(long, default_value = "/etc/tandem/collector.toml")]
        config: PathBuf,
    },
    /// Certificate authority commands.
    Pki {
        #[command(subcommand)]
        command: cli::pki::PkiCommand,
    },
    /// Print devices, their patch status, inventory and latest values from the
    /// database.
    Inspect {
        #[command(flatten)]
        db: cli::DataDir,
        /// Only this device (default: every device).
        #[arg(long)]
        device: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Also list the installed software of the latest inventory.
        #[arg(long)]
        software: bool,
    },
    /// Security posture per tenant: pass / fail / unknown counts of every check,
    /// devices with stale backups, critical custom checks.
    Posture {
        #[command(flatten)]
        db: cli::DataDir,
        /// Only this tenant (default: every tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Tenants: the organisations whose devices this collector watches.
    Tenant {
        #[command(subcommand)]
        command: cli::tenant::TenantCommand,
    },
    /// Sites: optional places within a tenant (an office, a branch).
    Site {
        #[command(subcommand)]
        command: cli::site::SiteCommand,
    },
    /// Enrollment tokens: what a new agent needs to enroll, in one string.
    Token {
        #[command(subcommand)]
        command: cli::token::TokenCommand,
    },
    /// Enrolled and connected devices.
    Device {
        #[command(subcommand)]
        command: cli::device::DeviceCommand,
    },
    /// Check and test alert rule files.
    Rules {
        #[command(subcommand)]
        command: cli::rules::RulesCommand,
    },
    /// List, inspect and acknowledge alerts in the database.
    Alerts {
        #[command(subcommand)]
        command: cli::alerts::AlertsCommand,
    },
    /// Copy the database to FILE while the collector runs (consistent, verified by
    /// opening the copy). Restore: docs/OPERATIONS.md.
    Backup {
        /// The new file (must not exist).
        #[arg(long)]
        to: PathBuf,
        #[command(flatten)]
        db: cli::DataDir,
    },
    /// The metric store: sizes per table and tier, the oldest data, the backlog.
    Storage {
        #[command(subcommand)]
        command: cli::storage::StorageCommand,
    },
    /// Check escalation policy files.
    Policies {
        #[command(subcommand)]
        command: tandem_collector::notify::cli::PoliciesCommand,
    },
    /// Notification deliveries: the log, and a test message per target.
    Notify {
        #[command(subcommand)]
        command: tandem_collector::notify::cli::NotifyCommand,
    },
    /// Incidents: list, acknowledge (with a note), snooze, resolve.
    Incidents {
        #[command(subcommand)]
        command: tandem_collector::notify::cli::IncidentsCommand,
    },
    // --- issue 15 (console) ---
    /// Console users: add, passwd, list, remove (passwords from a file or TANDEM_PASSWORD).
    User {
        #[command(subcommand)]
        command: tandem_collector::console::cli::UserCommand,
    },
    // --- end issue 15 ---
    /// Run a collector and an agent for this machine on loopback, with a throwaway CA.
    #[cfg(feature = "demo")]
    Demo {
        /// Where to keep the demo's files (default: a new folder under the temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long, default_value = "127.0.0.1:4443")]
        listen: std::net::SocketAddr,
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
        // Colour codes only on a terminal, never in journald or a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // One crypto provider for the whole process (see shared/TOOLCHAIN.md: two
    // providers make rustls panic).
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Pki { command } => cli::pki::run(command),
        Command::Inspect {
            db,
            device,
            json,
            software,
        } => cli::inspect::inspect(&db.dir()?, device.as_deref(), json, software),
        Command::Posture { db, tenant, json } => {
            cli::inspect::posture(&db.dir()?, tenant.as_deref(), json)
        }
        Command::Tenant { command } => cli::tenant::run(command),
        Command::Site { command } => cli::site::run(command),
        Command::Token { command } => cli::token::run(command),
        Command::Device { command } => cli::device::run(command),
        Command::Rules { command } => cli::rules::run(command),
        Command::Alerts { command } => cli::alerts::run(command),
        Command::Backup { to, db } => backup(&db.dir()?, &to),
        Command::Storage { command } => cli::storage::run(command),
        Command::Policies { command } => tandem_collector::notify::cli::policies(command),
        Command::Notify { command } => tandem_collector::notify::cli::notify(command),
        Command::Incidents { command } => tandem_collector::notify::cli::incidents(command),
        // --- issue 15 (console) ---
        Command::User { command } => tandem_collector::console::cli::user(command),
        // --- end issue 15 ---
        #[cfg(feature = "demo")]
        Command::Demo { dir, listen } => runtime()?.block_on(tandem_collector::demo::run(
            dir,
            listen,
            tandem_proto::util::shutdown_signal(),
        )),
    }
}

/// `backup --to FILE`: see store::integrity::backup.
fn backup(data_dir: &Path, to: &Path) -> anyhow::Result<()> {
    let db = data_dir.join(store::DB_FILE);
    if !db.exists() {
        anyhow::bail!(
            "{} holds no Tandem database ({} is missing)",
            data_dir.display(),
            store::DB_FILE
        );
    }
    let s = store::integrity::backup(&db, to)?;
    println!(
        "backup {}: {} bytes, schema version {}, {} devices, {} batches, integrity ok ({:.1} s)",
        to.display(),
        s.bytes,
        s.schema_version,
        s.devices,
        s.batches,
        s.took.as_secs_f64()
    );
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("cannot start the async runtime")
}

fn serve(path: &Path) -> anyhow::Result<()> {
    let cfg = config::load(path)?;
    runtime()?.block_on(async move {
        let collector = Collector::bind(cfg.clone())
            .await?
            .watch_config(path.to_owned());
        // SIGTERM is caught from before the line below on: a stop right after the
        // start (systemd, a test) is a clean stop, not the default kill.
        #[cfg(unix)]
        let stop = {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .context("cannot listen for SIGTERM")?;
            async move {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
        };
        #[cfg(not(unix))]
        let stop = tandem_proto::util::shutdown_signal();
        // One line on stdout that scripts and tests can wait for.
        println!(
            "tandem-collector listening telemetry={} enroll={} data_dir={}{}",
            collector.local_addr(),
            collector.enroll_addr(),
            cfg.data_dir.display(),
            collector
                .http_addr()
                .map(|a| format!(" http={a}"))
                .unwrap_or_default()
        );
        collector.run(stop).await?;
        anyhow::Ok(())
    })
}
