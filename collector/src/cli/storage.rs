//! `storage stats`: the metric store's sizes per table and tier, the oldest data and
//! the compaction backlog.

use clap::Subcommand;

use super::{DataDir, open_db_read};
use crate::store;

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
            let conn = open_db_read(&db.dir()?)?;
            let s = store::stats::stats(&conn)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{s}");
            }
            Ok(())
        }
    }
}
