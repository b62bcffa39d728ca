//! `tandem-agent` command line: parse arguments, set up logging, call the library.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
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
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colour codes only on a terminal, never in journald or a log file.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .init();
    if let Some(msg) = bad_filter {
        tracing::warn!("{msg}; logging at info");
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Collect {
            patches,
            patch_timeout_secs,
            state_dir,
            services,
            bench,
            inventory,
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
