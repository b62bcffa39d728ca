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
    /// Print one sample as JSON and exit.
    Collect {
        /// Take one sample (the only mode for now).
        #[arg(long)]
        once: bool,
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
        Command::Collect { .. } => {
            let mut sampler = tandem_agent::collect::Sampler::new()?;
            std::thread::sleep(std::time::Duration::from_millis(300));
            let reading = sampler.sample();
            println!("{}", serde_json::to_string_pretty(&reading)?);
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
