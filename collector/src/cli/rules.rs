//! `rules check|test`: alert rule files.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use crate::alerts::{rules, ruletest};

#[derive(Subcommand)]
pub enum RulesCommand {
    /// Check a rules directory (or one file): every problem with file, line and
    /// column; exits non-zero if there is any.
    Check { path: PathBuf },
    /// Run a rule test file: synthetic samples in, expected transitions out.
    Test { file: PathBuf },
}

/// Runs a `rules` command.
pub fn run(command: RulesCommand) -> anyhow::Result<()> {
    match command {
        RulesCommand::Check { path } => {
            let set = if path.is_dir() {
                rules::load_dir(&path)
            } else {
                std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))
                    .map(|src| rules::parse_file(&path, &src))?
            };
            match set {
                Ok(set) => {
                    println!(
                        "{}: {} rules, {} maintenance windows, no problems",
                        path.display(),
                        set.rules.len(),
                        set.windows.len()
                    );
                    Ok(())
                }
                Err(e) => {
                    eprintln!("{e}");
                    anyhow::bail!("{} problem(s) in {}", e.problems.len(), path.display())
                }
            }
        }
        RulesCommand::Test { file } => {
            let report = ruletest::run_file(&file)?;
            print!("{}", report.text);
            println!("{} passed, {} failed", report.passed, report.failed);
            if report.failed > 0 {
                anyhow::bail!("{} rule test(s) failed", report.failed);
            }
            Ok(())
        }
    }
}
