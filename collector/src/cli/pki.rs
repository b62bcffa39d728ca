//! `pki init|server-cert|issue-agent|rotate-ca`: the collector's certificate authority.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;

use super::{DataDir, now_ms, open_db};
use crate::pki::{self, Validity};
use crate::store::api::AdminStore;

#[derive(Subcommand)]
pub enum PkiCommand {
    /// Rotate the collector CA in two steps (see docs/SECURITY.md).
    RotateCa {
        #[command(subcommand)]
        step: RotateStep,
    },
    /// Create the collector CA and server certificate in the data dir.
    Init {
        #[command(flatten)]
        db: DataDir,
        /// Extra DNS names or IP addresses agents use to reach this collector.
        #[arg(long = "name")]
        names: Vec<String>,
    },
    /// Reissue the server certificate under the same CA with new names (enrolled
    /// devices keep working; restart the collector to serve it).
    ServerCert {
        #[command(flatten)]
        db: DataDir,
        /// DNS names or IP addresses agents use to reach this collector (replaces
        /// the extra names of the current certificate; localhost, loopback and this
        /// host's name are always included).
        #[arg(long = "name")]
        names: Vec<String>,
    },
    /// Issue a client certificate for one device, for manual provisioning; writes
    /// ca.pem, agent.pem, agent.key and agent.toml into --out.
    IssueAgent {
        #[command(flatten)]
        db: DataDir,
        /// The tenant the device belongs to.
        #[arg(long)]
        tenant: String,
        /// The folder to write the files into (created).
        #[arg(long)]
        out: PathBuf,
        /// Device id (default: a new UUID).
        #[arg(long)]
        device: Option<String>,
        /// The URL agents dial.
        #[arg(long, default_value = "https://localhost:4443")]
        collector_url: String,
        /// Certificate lifetime in days.
        #[arg(long, default_value_t = 365)]
        days: u64,
    },
}

#[derive(Subcommand)]
pub enum RotateStep {
    /// Make a new issuing CA; the old one stays trusted and keeps serving.
    Begin {
        #[command(flatten)]
        db: DataDir,
    },
    /// Re-issue the server certificate with the new CA and retire the old one.
    Finish {
        /// Finish although some devices have not renewed since `begin` (they will
        /// be cut off and must re-enroll).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        db: DataDir,
    },
}

fn rotate_ca(step: RotateStep) -> anyhow::Result<()> {
    match step {
        RotateStep::Begin { db } => {
            pki::rotate_begin(&db.dir()?, now_ms())?;
            println!(
                "new issuing CA made; the old CA stays trusted. Next: restart the collector, run \
                 `tandem-collector device renew ID` for every device (or wait for their renewals), \
                 then `tandem-collector pki rotate-ca finish`"
            );
        }
        RotateStep::Finish { force, db } => {
            let started = pki::rotation_started(&db.dir()?)?.ok_or(pki::PkiError::NoRotation)?;
            let behind: Vec<_> = open_db(&db)?
                .list_devices()?
                .into_iter()
                .filter(|d| d.revoked_ms.is_none())
                .filter(|d| d.cert_issued_ms.is_none_or(|t| t < started))
                .map(|d| d.id)
                .collect();
            if !behind.is_empty() && !force {
                anyhow::bail!(
                    "{} device(s) have no certificate from the new CA yet and would be cut off: {}; \
                     renew them (`tandem-collector device renew ID`) or pass --force",
                    behind.len(),
                    behind.join(", ")
                );
            }
            pki::rotate_finish(&db.dir()?)?;
            println!(
                "server certificate re-issued by the new CA; the old CA is retired. Restart the \
                 collector. Enrollment tokens made before now pin the old CA: make new ones"
            );
        }
    }
    Ok(())
}

/// Runs a `pki` command.
pub fn run(cmd: PkiCommand) -> anyhow::Result<()> {
    match cmd {
        PkiCommand::RotateCa { step } => rotate_ca(step),
        PkiCommand::Init { db, names } => {
            let paths = pki::init(&db.dir()?, &names)?;
            println!(
                "CA and server certificate written to {}",
                paths.dir.display()
            );
            Ok(())
        }
        PkiCommand::ServerCert { db, names } => {
            let (before, now) = pki::server_cert(&db.dir()?, &names)?;
            println!(
                "server certificate reissued under the same CA in {}",
                pki::PkiPaths::new(&db.dir()?).dir.display()
            );
            println!("  names before: {}", before.join(", "));
            println!("  names now:    {}", now.join(", "));
            println!("restart the collector to serve it; enrolled devices need nothing");
            Ok(())
        }
        PkiCommand::IssueAgent {
            db,
            tenant,
            out,
            device,
            collector_url,
            days,
        } => {
            let validity = Validity::starting_now(Duration::from_secs(days * 86_400));
            let id = pki::write_agent_bundle(
                &db.dir()?,
                &tenant,
                device.as_deref(),
                &collector_url,
                &out,
                validity,
            )?;
            println!(
                "device {id} (tenant {tenant}): ca.pem, agent.pem, agent.key, agent.toml written to {}",
                out.display()
            );
            Ok(())
        }
    }
}
