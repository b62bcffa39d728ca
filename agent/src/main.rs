//! `tandem-agent` command line: parse arguments, set up logging, call the library.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tandem_proto::util::shutdown_signal;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

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
    /// Manage the agent's Windows service (TandemAgent). Elsewhere the packages'
    /// systemd unit or the launchd daemon run the agent.
    Service {
        #[command(subcommand)]
        action: ServiceCmd,
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
        /// Also check the security posture (firewall, disk encryption, antivirus,
        /// automatic updates, local admins, SSH, screen lock) and print each check
        /// with its evidence under "posture"; with --config, also read that
        /// config's [[backup]] sources and run its [[check]] commands once.
        #[arg(long)]
        posture: bool,
        /// agent.toml whose backups and custom checks --posture reads and runs.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where the first-seen record of pending updates is read with --patches
        /// (never written by `collect`); without it, every update is new.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Services to report as service.up (as `services` in agent.toml).
        #[arg(long, value_delimiter = ',')]
        services: Vec<String>,
        /// Measure instead of printing a sample: take N samples 1 s apart (every
        /// sixth with the slow collectors, as at a 10 s interval) and print the
        /// agent's CPU time per sample (the sampling thread's, in ns, on Linux) and
        /// the values per sample.
        #[arg(long, value_name = "N")]
        bench: Option<u32>,
    },
}

#[derive(Subcommand)]
enum ServiceCmd {
    /// Register the service: starts at boot as LocalSystem, restarts after a failure.
    Install {
        /// Path to agent.toml (default: %ProgramData%\Tandem\agent.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Stop and remove the service (identity, spool and config stay).
    Uninstall,
    /// Start the service and wait until it runs.
    Start,
    /// Stop the service and wait until it stopped.
    Stop,
    /// Run as the service: what the Service Control Manager starts. Logs to
    /// agent.log next to the config.
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Prepare an install folder (the MSI runs this): a default agent.toml unless
    /// one exists, the token in enroll.token, access for SYSTEM and Administrators only.
    Prepare {
        /// The folder (default: %ProgramData%\Tandem).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The enrollment token (default: TANDEM_ENROLL_TOKEN; none: keep what is there).
        #[arg(long)]
        token: Option<String>,
        /// The collector's telemetry address, host:port (the MSI's SERVER property):
        /// written as collector_url in agent.toml. Blank or absent: left as it is.
        #[arg(long)]
        server: Option<String>,
    },
}

/// `%ProgramData%\Tandem`, where a Windows install keeps config and state.
fn windows_dir() -> PathBuf {
    std::env::var_os("ProgramData")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(r"C:\ProgramData"))
        .join("Tandem")
}

fn service_config(config: Option<PathBuf>) -> PathBuf {
    config.unwrap_or_else(|| windows_dir().join("agent.toml"))
}

fn service_command(action: ServiceCmd) -> anyhow::Result<()> {
    use tandem_agent::service;
    match action {
        ServiceCmd::Install { config } => {
            let exe = std::env::current_exe().context("cannot find this executable")?;
            let config = service_config(config);
            service::install(&exe, &config)?;
            println!(
                "service {} installed: {} service run --config {}",
                tandem_agent::service::spec::SERVICE_NAME,
                exe.display(),
                config.display()
            );
        }
        ServiceCmd::Uninstall => {
            service::uninstall()?;
            println!("service removed; config, identity and spool are kept");
        }
        ServiceCmd::Start => {
            service::start()?;
            println!("service running");
        }
        ServiceCmd::Stop => {
            service::stop()?;
            println!("service stopped");
        }
        ServiceCmd::Run { config } => service::run_service(service_config(config))?,
        ServiceCmd::Prepare { dir, token, server } => {
            let dir = dir.unwrap_or_else(windows_dir);
            let token = token.or_else(|| std::env::var(tandem_agent::TOKEN_ENV).ok());
            let config = tandem_agent::service::spec::prepare_dir(
                &dir,
                token.as_deref(),
                server.as_deref(),
            )?;
            // Not fatal, but loud: the key must not be readable by users.
            if let Err(e) = service::restrict_dir(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot restrict the folder to SYSTEM and Administrators");
            }
            println!("prepared {}", config.display());
        }
    }
    Ok(())
}

fn info_filter() -> Targets {
    Targets::new().with_default(tracing::Level::INFO)
}

fn main() -> anyhow::Result<()> {
    tandem_agent::platform::tune_allocator();
    let cli = Cli::parse();
    // RUST_LOG takes `level` and `target=level` items ("info,tandem_agent=debug"):
    // a `Targets` filter, not an `EnvFilter`, whose regex engine would add a quarter
    // of a MiB to the agent's resident code on every endpoint.
    let (filter, bad_filter) = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => match v.parse::<Targets>() {
            Ok(t) => (t, None),
            Err(e) => (info_filter(), Some(format!("RUST_LOG={v:?} ignored: {e}"))),
        },
        _ => (info_filter(), None),
    };
    // A service has no console: it logs to agent.log next to its config.
    let log_file = match &cli.command {
        Command::Service {
            action: ServiceCmd::Run { config },
        } => service_config(config.clone())
            .parent()
            .map(|d| d.join("agent.log"))
            .and_then(|p| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .ok()
            }),
        _ => None,
    };
    let to_file = log_file.is_some();
    let writer = match log_file {
        Some(f) => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::sync::Mutex::new(f)),
        None => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                // Colour codes only on a terminal, never in journald or a log file.
                .with_ansi(!to_file && std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .init();
    if let Some(msg) = bad_filter {
        tracing::warn!("{msg}; logging at info");
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Service { action } => service_command(action),
        Command::Collect {
            patches,
            patch_timeout_secs,
            state_dir,
            services,
            bench,
            inventory,
            posture,
            config,
            ..
        } => {
            let mut sampler = tandem_agent::collect::Sampler::new()?;
            sampler.set_services(&services);
            if let Some(n) = bench {
                return bench_samples(&mut sampler, n);
            }
            // A first sample primes the rates (disk, network, process CPU), the
            // second one a second later shows everything, including the answer of the
            // service check (waited for: up to its own deadline).
            std::thread::sleep(std::time::Duration::from_millis(300));
            let _ = sampler.sample();
            std::thread::sleep(std::time::Duration::from_secs(1));
            sampler.settle_services(tandem_agent::collect::services::TIMEOUT * 2);
            sampler.run_slow_next();
            let mut reading = sampler.sample();
            if let Some(u) = tandem_agent::platform::self_usage() {
                reading.push_value("agent.rss_bytes", "", u.rss_bytes as f64);
            }
            let patches = patches.then(|| {
                let check = tandem_agent::platform::check_patches(std::time::Duration::from_secs(
                    patch_timeout_secs,
                ));
                // Read-only: a missing dir gives an empty record and nothing is saved.
                let dir = state_dir.unwrap_or_else(|| PathBuf::from("/nonexistent"));
                let mut first_seen = tandem_agent::patches::FirstSeen::load(&dir);
                let now = tandem_proto::util::now_ms();
                tandem_agent::patches::Status::from_check(check, &mut first_seen, now)
            });
            let inventory = inventory.then(|| {
                let now = tandem_proto::util::now_ms();
                tandem_agent::inventory::collect(
                    std::time::Duration::from_secs(patch_timeout_secs),
                    now,
                )
            });
            let posture = match posture {
                false => None,
                true => {
                    let timeout = std::time::Duration::from_secs(patch_timeout_secs);
                    let mut r = tandem_agent::posture::report::Reported {
                        posture: Some(tandem_agent::posture::collect(timeout)),
                        ..Default::default()
                    };
                    if let Some(path) = &config {
                        let cfg = tandem_agent::config::load(path)?;
                        for b in &cfg.backups {
                            r.backups
                                .insert(b.name.clone(), tandem_agent::backup::check(b));
                        }
                        for c in &cfg.checks {
                            r.checks
                                .insert(c.name.clone(), tandem_agent::checks::run(c));
                        }
                    }
                    Some(r)
                }
            };
            // The sample's fields as before, "patches", "inventory" and "posture"
            // added only when asked for.
            #[derive(serde::Serialize)]
            struct Once<'a> {
                #[serde(flatten)]
                reading: &'a tandem_agent::collect::Reading,
                #[serde(skip_serializing_if = "Option::is_none")]
                patches: Option<tandem_agent::patches::Status>,
                #[serde(skip_serializing_if = "Option::is_none")]
                inventory: Option<tandem_agent::inventory::Inventory>,
                #[serde(skip_serializing_if = "Option::is_none")]
                posture: Option<tandem_agent::posture::report::Reported>,
            }
            if let Some(p) = &posture {
                let now = tandem_proto::util::now_ms();
                p.push_metrics(&mut reading, now);
            }
            let json = Once {
                reading: &reading,
                patches,
                inventory,
                posture,
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
            let cfg = tandem_agent::config::load(&config)?;
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
                .context("enrollment failed")?;
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
            let cfg = tandem_agent::config::load(&config)?;
            // One thread runs all the async work (a few sockets and timers); blocking
            // reads go to tokio's blocking pool, kept alive across the sample interval
            // so no thread is created and torn down per sample. A thread pool per core
            // would cost memory on every endpoint for no gain.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_keep_alive(std::time::Duration::from_secs(120))
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(tandem_agent::run(cfg, Some(config), shutdown_signal()))?;
            Ok(())
        }
    }
}

/// `collect --bench N`: CPU time per sample, measured by the agent on itself: the
/// sampling thread's CPU clock where the platform has one (ns; Linux), else the
/// process's CPU time (Linux's is in 10 ms ticks, too coarse for one sample).
fn bench_samples(sampler: &mut tandem_agent::collect::Sampler, n: u32) -> anyhow::Result<()> {
    use tandem_agent::platform::{self_usage, thread_cpu_ns};
    let thread_clock = thread_cpu_ns().is_some();
    // CPU time so far, in ns.
    let cpu = || -> anyhow::Result<u64> {
        match thread_cpu_ns() {
            Some(ns) => Ok(ns),
            None => self_usage()
                .map(|u| u.cpu_ms.saturating_mul(1_000_000))
                .context("cannot measure own CPU time"),
        }
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = sampler.sample();
    let (mut plain_ns, mut plain_n, mut slow_ns, mut slow_n, mut values) = (0, 0, 0, 0, 0);
    for i in 0..n {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let slow = i % 6 == 0;
        if slow {
            sampler.run_slow_next();
        }
        let before = cpu()?;
        let r = sampler.sample();
        let spent = cpu()?.saturating_sub(before);
        values = values.max(r.values.len());
        if slow {
            (slow_ns, slow_n) = (slow_ns + spent, slow_n + 1);
        } else {
            (plain_ns, plain_n) = (plain_ns + spent, plain_n + 1);
        }
    }
    let per_ms = |ns: u64, n: u64| {
        if n == 0 {
            0.0
        } else {
            ns as f64 / 1e6 / n as f64
        }
    };
    let plain = per_ms(plain_ns, plain_n);
    let slow = per_ms(slow_ns, slow_n);
    println!(
        "{}",
        serde_json::json!({
            "samples": n,
            "values_per_sample_max": values,
            "cpu_ms_per_plain_sample": plain,
            "cpu_ms_per_slow_sample": slow,
            // At a 10 s interval: 6 samples a minute, one of them slow.
            "cpu_ms_per_min_at_10s": 5.0 * plain + slow,
            "rss_bytes": self_usage().map(|u| u.rss_bytes),
            "clock": if thread_clock {
                "sampling thread CPU time (ns); the service check's own thread is not counted"
            } else {
                "process CPU time (10 ms ticks on Linux: use N of 60 or more)"
            },
        })
    );
    Ok(())
}
