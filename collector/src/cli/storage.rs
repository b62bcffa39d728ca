//! `storage stats`: the metric store's sizes per table and tier, the oldest data and
//! the compaction backlog.

use clap::Subcommand;

use super::{DataDir, open_store_read, print_json, print_out};
use crate::store::console_query::ConsoleQuery;

#[derive(Subcommand)]
pub enum StorageCommand {
    /// Bytes per table and tier, values per tier, the oldest data and the
    /// compaction backlog (read-only; safe while the collector runs).
    Stats {
        #[command(flatten)]
        db: DataDir,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `storage` command.
pub fn run(command: StorageCommand) -> anyhow::Result<()> {
    match command {
        StorageCommand::Stats { db, json } => {
            let s = open_store_read(&db.dir()?)?.storage_stats()?;
            if json {
                print_json(&s)?;
            } else {
                print_out(&s.to_string())?;
            }
            Ok(())
        }
    }
}
