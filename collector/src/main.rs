//! `tandem-collector` command line: parse arguments, set up logging, call the library.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tandem_collector::alerts::machine::State;
use tandem_collector::alerts::persist::{self, AckOutcome, ListFilter};
use tandem_collector::alerts::{rules, ruletest, silence};
use tandem_collector::cli::{format_ms, parse_duration};
use tandem_collector::pki::{self, Validity};
use tandem_collector::store::admin;
use tandem_collector::{Collector, config, demo, store};

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
        command: PkiCommand,
    },
    /// Print devices, their patch status, inventory and latest values from the
    /// database.
    Inspect {
        #[arg(long, default_value = "/var/lib/tandem")]
        data_dir: PathBuf,
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
    /// Tenants: the organisations whose devices this collector watches.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Sites: optional places within a tenant (an office, a branch).
    Site {
        #[command(subcommand)]
        command: SiteCommand,
    },
    /// Enrollment tokens: what a new agent needs to enroll, in one string.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Enrolled and connected devices.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Check and test alert rule files.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// List, inspect and acknowledge alerts in the database.
    Alerts {
        #[command(subcommand)]
        command: AlertsCommand,
    },
    /// Run a collector and an agent for this machine on loopback, with a throwaway CA.
    Demo {
        /// Where to keep the demo's files (default: a new folder under the temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long, default_value = "127.0.0.1:4443")]
        listen: SocketAddr,
    },
}

#[derive(Args)]
struct DataDir {
    /// The collector's data dir (database and CA).
    #[arg(long, default_value = "/var/lib/tandem")]
    data_dir: PathBuf,
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant.
    Create {
        name: String,
        #[command(flatten)]
        db: DataDir,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        db: DataDir,
    },
}

#[derive(Subcommand)]
enum SiteCommand {
    /// Create a site in a tenant.
    Create {
        #[arg(long)]
        tenant: String,
        name: String,
        #[command(flatten)]
        db: DataDir,
    },
    /// List sites (of one tenant, or all).
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        db: DataDir,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an enrollment token and print it (the only time its secret is shown).
    Create {
        #[arg(long)]
        tenant: String,
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
        #[command(flatten)]
        db: DataDir,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        db: DataDir,
    },
    /// Revoke a token: it can no longer be used.
    Revoke {
        id: String,
        #[command(flatten)]
        db: DataDir,
    },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// List devices: tenant, site, host, OS, agent, certificate expiry, last seen.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DataDir,
    },
    /// Revoke a device: its certificates stop working at once (a running collector
    /// closes its streams within a second).
    Revoke {
        id: String,
        #[command(flatten)]
        db: DataDir,
    },
    /// Ask a device to renew its certificate now.
    Renew {
        id: String,
        #[command(flatten)]
        db: DataDir,
    },
    /// Add tags to a device (rule, maintenance and silence scopes match them; a
    /// running collector picks them up within one alert tick).
    Tag {
        id: String,
        /// Lowercase letters, digits and - _ . : = (e.g. server, env:prod).
        #[arg(required = true)]
        tags: Vec<String>,
        #[command(flatten)]
        db: DataDir,
    },
    /// Remove tags from a device.
    Untag {
        id: String,
        #[arg(required = true)]
        tags: Vec<String>,
        #[command(flatten)]
        db: DataDir,
    },
    /// Ask a device to check its pending updates now (within a second while it is
    /// connected, else as soon as it connects). The answer is a patch report.
    CheckPatches {
        id: String,
        #[command(flatten)]
        db: DataDir,
    },
}

#[derive(Subcommand)]
enum RotateStep {
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

#[derive(Subcommand)]
enum RulesCommand {
    /// Check a rules directory (or one file): every problem with file, line and
    /// column; exits non-zero if there is any.
    Check { path: PathBuf },
    /// Run a rule test file: synthetic samples in, expected transitions out.
    Test { file: PathBuf },
}

// Parsed once per process: the size of the largest variant (`silence`) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum AlertsCommand {
    /// Active alerts (not OK), most recent first.
    List {
        #[arg(long, default_value = "/var/lib/tandem")]
        data_dir: PathBuf,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, value_parser = ["ok", "pending", "firing", "recovering"])]
        state: Option<String>,
        #[arg(long)]
        device: Option<String>,
        /// Include alerts that are back to OK.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge an active alert by its id (from `alerts list`).
    Ack {
        id: i64,
        #[arg(long, default_value = "/var/lib/tandem")]
        data_dir: PathBuf,
        /// Who acknowledges (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Silence alerts for a while: notifications pause, evaluation goes on. At
    /// least one matcher is needed; every one given must match. Prints the id.
    Silence {
        /// How long, from --start: 90s, 30m, 2h, 7d. Give this or --until. With
        /// --rrule: how long each occurrence lasts.
        #[arg(long = "for")]
        for_: Option<String>,
        /// When it ends (RFC 3339, e.g. 2026-11-28T06:00:00Z). With --rrule: when the
        /// series ends (default: until removed).
        #[arg(long)]
        until: Option<String>,
        /// When it starts (RFC 3339; default now): schedule one ahead. With --rrule:
        /// the first occurrence (DTSTART).
        #[arg(long)]
        start: Option<String>,
        /// Recur by an RFC 5545 RRULE (subset: see docs/ALERTS.md), e.g.
        /// "FREQ=WEEKLY;BYDAY=SA"; local times are in --tz.
        #[arg(long)]
        rrule: Option<String>,
        /// IANA zone of the RRULE's local times (default UTC).
        #[arg(long, requires = "rrule")]
        tz: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        site: Option<String>,
        #[arg(long)]
        tag: Option<String>,
        #[arg(long)]
        device: Option<String>,
        #[arg(long)]
        rule: Option<String>,
        /// Why (required; shown in `alerts silences`).
        #[arg(long)]
        comment: String,
        /// Who silences (default: $USER).
        #[arg(long)]
        by: Option<String>,
        #[arg(long, default_value = "/var/lib/tandem")]
        data_dir: PathBuf,
    },
    /// Active and upcoming silences (with --all also ended and removed ones).
    Silences {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = "/var/lib/tandem")]
        data_dir: PathBuf,
    },
    /// Lift a silence by its id (the record stays, marked removed).
    Unsilence {
        id: i64,
        /// Who lifts it (default: $USER).
        #[arg(long)]
        by: Option<String>,
        #[arg(long, default_value = "/var/lib/tandem")]
        data_dir: PathBuf,
    },
    /// Every transition and flag change (time, value), oldest first.
    History {
        #[arg(long, default_value = "/var/lib/tandem")]
        data_dir: PathBuf,
        #[arg(long)]
        device: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PkiCommand {
    /// Rotate the collector CA in two steps (see docs/SECURITY.md).
    RotateCa {
        #[command(subcommand)]
        step: RotateStep,
    },
    /// Create the collector CA and server certificate in the data dir.
    Init {
        #[arg(long, default_value = "/var/lib/tandem")]
        data_dir: PathBuf,
        /// Extra DNS names or IP addresses agents use to reach this collector.
        #[arg(long = "name")]
        names: Vec<String>,
    },
    /// Issue a client certificate for one device, for manual provisioning; writes
    /// ca.pem, agent.pem, agent.key and agent.toml into --out.
    IssueAgent {
        #[arg(long, default_value = "/var/lib/tandem")]
        data_dir: PathBuf,
        #[arg(long)]
        tenant: String,
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
        Command::Pki {
            command: PkiCommand::RotateCa { step },
        } => rotate_ca(step),
        Command::Pki {
            command: PkiCommand::Init { data_dir, names },
        } => {
            let paths = pki::init(&data_dir, &names)?;
            println!(
                "CA and server certificate written to {}",
                paths.dir.display()
            );
            Ok(())
        }
        Command::Pki {
            command:
                PkiCommand::IssueAgent {
                    data_dir,
                    tenant,
                    out,
                    device,
                    collector_url,
                    days,
                },
        } => {
            let validity = Validity::starting_now(Duration::from_secs(days * 86_400));
            let id = demo::write_agent_bundle(
                &data_dir,
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
        Command::Inspect {
            data_dir,
            device,
            json,
            software,
        } => inspect(&data_dir, device.as_deref(), json, software),
        Command::Tenant { command } => tenant(command),
        Command::Site { command } => site(command),
        Command::Token { command } => token(command),
        Command::Device { command } => device(command),
        Command::Rules { command } => rules_cmd(command),
        Command::Alerts { command } => alerts_cmd(command),
        Command::Demo { dir, listen } => {
            runtime()?.block_on(demo::run(dir, listen, shutdown_signal()))
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("cannot start the async runtime")
}

fn serve(path: &Path) -> anyhow::Result<()> {
    let cfg = config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    runtime()?.block_on(async move {
        let collector = Collector::bind(cfg.clone())
            .await?
            .watch_config(path.to_owned());
        // One line on stdout that scripts and tests can wait for.
        println!(
            "tandem-collector listening telemetry={} enroll={} data_dir={}",
            collector.local_addr(),
            collector.enroll_addr(),
            cfg.data_dir.display()
        );
        collector.run(shutdown_signal()).await?;
        anyhow::Ok(())
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Opens the database for an administrative command (applying migrations, so a
/// fresh data dir works before the first `serve`).
fn open_db(db: &DataDir) -> anyhow::Result<rusqlite::Connection> {
    if !db.data_dir.is_dir() {
        anyhow::bail!(
            "{}: no such data dir (run `tandem-collector pki init --data-dir {}` first)",
            db.data_dir.display(),
            db.data_dir.display()
        );
    }
    Ok(store::open(&db.data_dir.join(store::DB_FILE))?)
}

fn rotate_ca(step: RotateStep) -> anyhow::Result<()> {
    match step {
        RotateStep::Begin { db } => {
            pki::rotate_begin(&db.data_dir, now_ms())?;
            println!(
                "new issuing CA made; the old CA stays trusted. Next: restart the collector, run \
                 `tandem-collector device renew ID` for every device (or wait for their renewals), \
                 then `tandem-collector pki rotate-ca finish`"
            );
        }
        RotateStep::Finish { force, db } => {
            let started = pki::rotation_started(&db.data_dir)?.ok_or(pki::PkiError::NoRotation)?;
            let behind: Vec<_> = admin::list_devices(&open_db(&db)?)?
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
            pki::rotate_finish(&db.data_dir)?;
            println!(
                "server certificate re-issued by the new CA; the old CA is retired. Restart the \
                 collector. Enrollment tokens made before now pin the old CA: make new ones"
            );
        }
    }
    Ok(())
}

fn tenant(cmd: TenantCommand) -> anyhow::Result<()> {
    match cmd {
        TenantCommand::Create { name, db } => {
            admin::create_tenant(&open_db(&db)?, &name, now_ms())?;
            println!("tenant {name} created");
        }
        TenantCommand::List { db } => {
            let rows = admin::list_tenants(&open_db(&db)?)?;
            println!("{:<24} {:>6} {:>8}  CREATED", "TENANT", "SITES", "DEVICES");
            for t in rows {
                println!(
                    "{:<24} {:>6} {:>8}  {}",
                    t.name,
                    t.sites,
                    t.devices,
                    format_ms(t.created_ms)
                );
            }
        }
    }
    Ok(())
}

fn site(cmd: SiteCommand) -> anyhow::Result<()> {
    match cmd {
        SiteCommand::Create { tenant, name, db } => {
            admin::create_site(&open_db(&db)?, &tenant, &name, now_ms())?;
            println!("site {name} created in tenant {tenant}");
        }
        SiteCommand::List { tenant, db } => {
            let rows = admin::list_sites(&open_db(&db)?, tenant.as_deref())?;
            println!("{:<24} {:<24} {:>8}  CREATED", "TENANT", "SITE", "DEVICES");
            for s in rows {
                println!(
                    "{:<24} {:<24} {:>8}  {}",
                    s.tenant,
                    s.name,
                    s.devices,
                    format_ms(s.created_ms)
                );
            }
        }
    }
    Ok(())
}

fn token(cmd: TokenCommand) -> anyhow::Result<()> {
    use ring::rand::SecureRandom;
    use tandem_proto::token::EnrollToken;
    match cmd {
        TokenCommand::Create {
            tenant,
            site,
            expires,
            uses,
            replace,
            address,
            db,
        } => {
            let lifetime =
                parse_duration(&expires).map_err(|e| anyhow::anyhow!("--expires {e}"))?;
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
            let fingerprint = pki::serving_fingerprint(&db.data_dir)?;
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
            admin::insert_token(
                &open_db(&db)?,
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
        TokenCommand::List { db } => {
            let now = now_ms();
            let rows = admin::list_tokens(&open_db(&db)?)?;
            println!(
                "{:<16}  {:<16} {:<16} {:>5}  {:<8} {:<18} REPLACES",
                "ID", "TENANT", "SITE", "USES", "STATE", "EXPIRES"
            );
            for t in rows {
                println!(
                    "{:<16}  {:<16} {:<16} {:>5}  {:<8} {:<18} {}",
                    t.id,
                    t.tenant,
                    t.site.as_deref().unwrap_or("-"),
                    format!("{}/{}", t.uses, t.max_uses),
                    t.state(now),
                    format_ms(t.expires_ms),
                    t.replace_device_id.as_deref().unwrap_or("-")
                );
            }
        }
        TokenCommand::Revoke { id, db } => {
            admin::revoke_token(&open_db(&db)?, &id, now_ms())?;
            println!("token {id} revoked");
        }
    }
    Ok(())
}

fn device(cmd: DeviceCommand) -> anyhow::Result<()> {
    match cmd {
        DeviceCommand::List { json, db } => {
            let rows = admin::list_devices(&open_db(&db)?)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            println!(
                "{:<36}  {:<12} {:<12} {:<20} {:<24} {:<8} {:<18} {:<18} {:<8} TAGS",
                "DEVICE",
                "TENANT",
                "SITE",
                "HOST",
                "OS",
                "AGENT",
                "CERT EXPIRES",
                "LAST SEEN",
                "STATE"
            );
            for d in rows {
                println!(
                    "{:<36}  {:<12} {:<12} {:<20} {:<24} {:<8} {:<18} {:<18} {:<8} {}",
                    d.id,
                    d.tenant,
                    d.site.as_deref().unwrap_or("-"),
                    d.hostname,
                    format!("{} {}", d.os_family, d.os_version).trim(),
                    d.agent_version,
                    d.cert_not_after_ms.map_or("-".into(), format_ms),
                    format_ms(d.last_seen_ms),
                    if d.revoked_ms.is_some() {
                        "revoked"
                    } else {
                        "ok"
                    },
                    if d.tags.is_empty() {
                        "-".to_owned()
                    } else {
                        d.tags.join(",")
                    }
                );
            }
        }
        DeviceCommand::Revoke { id, db } => {
            admin::revoke_device(&mut open_db(&db)?, &id, now_ms())?;
            println!("device {id} revoked");
        }
        DeviceCommand::Renew { id, db } => {
            admin::request_renew(&open_db(&db)?, &id, now_ms())?;
            println!("device {id} asked to renew its certificate");
        }
        DeviceCommand::Tag { id, tags, db } => {
            let added = admin::tag_device(&mut open_db(&db)?, &id, &tags, now_ms())?;
            let kept: Vec<&String> = tags.iter().filter(|t| !added.contains(t)).collect();
            if !added.is_empty() {
                println!("device {id} tagged {}", added.join(", "));
            }
            if !kept.is_empty() {
                println!(
                    "device {id} already had {}",
                    kept.iter()
                        .map(|t| t.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        DeviceCommand::Untag { id, tags, db } => {
            let removed = admin::untag_device(&mut open_db(&db)?, &id, &tags)?;
            let absent: Vec<&String> = tags.iter().filter(|t| !removed.contains(t)).collect();
            if !removed.is_empty() {
                println!("device {id} untagged {}", removed.join(", "));
            }
            if !absent.is_empty() {
                println!(
                    "device {id} did not have {}",
                    absent
                        .iter()
                        .map(|t| t.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        DeviceCommand::CheckPatches { id, db } => {
            admin::request_patch_check(&open_db(&db)?, &id, now_ms())?;
            println!(
                "device {id} asked to check its patches (now if connected, else when it connects)"
            );
        }
    }
    Ok(())
}

fn inspect(
    data_dir: &Path,
    device: Option<&str>,
    json: bool,
    software: bool,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match inspect_to(&mut out, data_dir, device, json, software) {
        // `inspect | head` closing the pipe early is not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        r => r,
    }
}

fn inspect_to(
    w: &mut impl std::io::Write,
    data_dir: &Path,
    device: Option<&str>,
    json: bool,
    with_software: bool,
) -> anyhow::Result<()> {
    let conn = store::open_read_only(&data_dir.join(store::DB_FILE))?;
    let devices = store::query::devices(&conn)?;
    let mut out = Vec::new();
    for d in devices
        .into_iter()
        .filter(|d| device.is_none_or(|id| id == d.id))
    {
        let latest = store::query::latest_values(&conn, &d.id)?;
        let patches = store::query::patch_status(&conn, &d.id)?;
        let inventory = store::query::inventory(&conn, &d.id)?;
        let software = if with_software {
            Some(store::query::software(&conn, &d.id)?)
        } else {
            None
        };
        out.push((d, latest, patches, inventory, software));
    }
    let now = now_ms();
    if json {
        let v: Vec<_> = out
            .iter()
            .map(|(d, latest, patches, inventory, software)| {
                let mut v = serde_json::json!({
                    "device": d,
                    "patches": patches,
                    "inventory": inventory,
                    "latest": latest.iter().map(|(n, dim, ts, v)| serde_json::json!({"name": n, "dimension": dim, "ts_ms": ts, "value": v})).collect::<Vec<_>>(),
                });
                if let Some(sw) = software {
                    v["software"] = serde_json::json!(sw);
                }
                v
            })
            .collect();
        writeln!(w, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    if out.is_empty() {
        writeln!(w, "no devices yet")?;
    }
    for (d, latest, patches, inventory, software) in out {
        writeln!(
            w,
            "device {} tenant {} host {} ({} {}) agent {} acked_seq {}",
            d.id, d.tenant, d.hostname, d.os_family, d.os_version, d.agent_version, d.acked_seq
        )?;
        writeln!(w, "  {}", patch_line(patches.as_ref(), now))?;
        writeln!(w, "  {}", inventory_line(inventory.as_ref()))?;
        for s in software.iter().flatten() {
            if s.publisher.is_empty() {
                writeln!(w, "    {} {}", s.name, s.version)?;
            } else {
                writeln!(w, "    {} {} ({})", s.name, s.version, s.publisher)?;
            }
        }
        for (name, dim, _ts, v) in latest {
            let label = if dim.is_empty() {
                name
            } else {
                format!("{name}{{{dim}}}")
            };
            writeln!(w, "  {label:<40} {v}")?;
        }
    }
    Ok(())
}

/// "2 d 3 h" style age of `since_ms` at `now_ms`.
fn age(since_ms: i64, now_ms: i64) -> String {
    let secs = (now_ms - since_ms).max(0) / 1000;
    match secs {
        s if s >= 86_400 => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s => format!("{} min", s / 60),
    }
}

/// The patch-status line of `inspect`.
fn patch_line(p: Option<&store::query::PatchStatus>, now: i64) -> String {
    let Some(p) = p else {
        return "patches: no report yet".into();
    };
    let checked = format!("checked {} via {}", fmt_ms(p.time_ms), p.source);
    if !p.error.is_empty() {
        return format!(
            "patches: UNKNOWN, the source could not be read: {} ({checked})",
            p.error
        );
    }
    let mut s = format!("patches: {} pending, {} security", p.pending, p.security);
    if let Some(oldest) = p.oldest_security_first_seen_ms {
        s += &format!(" (oldest pending {})", age(oldest, now));
    }
    if p.reboot_required {
        if p.reboot_required_since_ms > 0 {
            s += &format!(
                "; reboot required since {} ({})",
                fmt_ms(p.reboot_required_since_ms),
                age(p.reboot_required_since_ms, now)
            );
        } else {
            s += "; reboot required";
        }
    }
    if p.last_install_ms > 0 {
        s += &format!("; last install {}", fmt_ms(p.last_install_ms));
    }
    format!("{s} ({checked})")
}

/// The inventory line of `inspect`.
fn inventory_line(i: Option<&store::query::InventoryRow>) -> String {
    let Some(i) = i else {
        return "inventory: none yet".into();
    };
    let mut s = format!("inventory: {} {}", i.os_name, i.os_version);
    if !i.os_build.is_empty() {
        s += &format!(" (build {})", i.os_build);
    }
    s += &format!(", kernel {} {}", i.kernel, i.arch);
    let hw = [i.hw_vendor.as_str(), i.hw_model.as_str()]
        .iter()
        .filter(|x| !x.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    if !hw.is_empty() {
        s += &format!("; {hw}");
    }
    if !i.hw_serial.is_empty() {
        s += &format!(" serial {}", i.hw_serial);
    }
    s += &format!(
        "; {} x{}, {:.1} GiB RAM",
        i.cpu_model,
        i.cpu_cores,
        i.memory_bytes as f64 / (1u64 << 30) as f64
    );
    if i.software_error.is_empty() {
        s += &format!("; {} programs ({})", i.software_count, i.software_source);
    } else {
        s += &format!(
            "; software UNKNOWN, {} could not be read: {}",
            i.software_source, i.software_error
        );
    }
    format!("{s} (as of {})", fmt_ms(i.time_ms))
}

fn rules_cmd(command: RulesCommand) -> anyhow::Result<()> {
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
            let report = ruletest::run_file(&file).map_err(|e| anyhow::anyhow!("{e}"))?;
            print!("{}", report.text);
            println!("{} passed, {} failed", report.passed, report.failed);
            if report.failed > 0 {
                anyhow::bail!("{} rule test(s) failed", report.failed);
            }
            Ok(())
        }
    }
}

fn fmt_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// An end time, or "removed" for an open-ended recurring silence.
fn fmt_until(ms: i64) -> String {
    if ms == silence::FOREVER_MS {
        "removed".into()
    } else {
        fmt_ms(ms)
    }
}

/// Who runs a command that is recorded: `--by`, else $USER, else "cli".
fn who(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".into())
}

/// Opens the database of a data dir that must already hold one (store::open would
/// create an empty database at a mistyped path).
fn open_existing_db(data_dir: &Path) -> anyhow::Result<rusqlite::Connection> {
    let db = data_dir.join(store::DB_FILE);
    if !db.is_file() {
        anyhow::bail!("no database at {} (check --data-dir)", db.display());
    }
    Ok(store::open(&db)?)
}

fn alerts_cmd(command: AlertsCommand) -> anyhow::Result<()> {
    match command {
        AlertsCommand::List {
            data_dir,
            tenant,
            state,
            device,
            all,
            json,
        } => {
            let conn = store::open_read_only(&data_dir.join(store::DB_FILE))?;
            let filter = ListFilter {
                tenant: tenant.as_deref(),
                state: state.as_deref().and_then(State::parse),
                device: device.as_deref(),
                all,
            };
            let rows = persist::list(&conn, &filter)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            if rows.is_empty() {
                println!("no alerts");
            }
            for r in rows {
                let mut flags = Vec::new();
                for (on, name) in [
                    (r.stale, "stale"),
                    (r.flapping, "flapping"),
                    (r.suppressed, "suppressed"),
                ] {
                    if on {
                        flags.push(name.to_owned());
                    }
                }
                if let Some(by) = &r.acked_by {
                    flags.push(format!("acked by {by}"));
                }
                let target = match (r.device_id.is_empty(), r.dimension.is_empty()) {
                    (true, _) => r.dimension.clone(),
                    (false, true) => format!("{} ({})", r.device_id, r.hostname),
                    (false, false) => format!("{} ({}) {}", r.device_id, r.hostname, r.dimension),
                };
                println!(
                    "#{:<5} {:<10} {:<8} {:<28} tenant {} {} since {} value {}{}",
                    r.id,
                    r.state,
                    r.severity.as_deref().unwrap_or("-"),
                    r.rule,
                    r.tenant,
                    target,
                    fmt_ms(r.since_ms),
                    r.last_value,
                    if flags.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", flags.join(", "))
                    }
                );
            }
            Ok(())
        }
        AlertsCommand::Ack { id, data_dir, by } => {
            let mut conn = open_existing_db(&data_dir)?;
            let by = who(by);
            let now = jiff::Timestamp::now().as_millisecond();
            match persist::ack(&mut conn, id, &by, now)? {
                AckOutcome::Acked => {
                    println!("alert #{id} acknowledged by {by}");
                    Ok(())
                }
                AckOutcome::AlreadyAcked => {
                    println!("alert #{id} was already acknowledged");
                    Ok(())
                }
                AckOutcome::NotActive => {
                    anyhow::bail!("alert #{id} is back to OK; nothing to acknowledge")
                }
                AckOutcome::NoSuchAlert => anyhow::bail!("no alert #{id} (see `alerts list`)"),
            }
        }
        AlertsCommand::Silence {
            for_,
            until,
            start,
            rrule,
            tz,
            tenant,
            site,
            tag,
            device,
            rule,
            comment,
            by,
            data_dir,
        } => {
            let now = now_ms();
            let instant = |flag: &str, v: &str| -> anyhow::Result<i64> {
                v.parse::<jiff::Timestamp>()
                    .map(|t| t.as_millisecond())
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "{flag} {v:?} is not an RFC 3339 time such as 2026-11-28T06:00:00Z: {e}"
                        )
                    })
            };
            let starts_ms = match &start {
                Some(s) => instant("--start", s)?,
                None => now,
            };
            let for_ms = for_
                .as_deref()
                .map(|f| {
                    parse_duration(f)
                        .map(|d| d.as_millis() as i64)
                        .map_err(|e| anyhow::anyhow!("--for {e}"))
                })
                .transpose()?;
            let (ends_ms, recurrence) = match (&rrule, for_ms, &until) {
                (Some(r), Some(each), until) => (
                    match until {
                        Some(u) => instant("--until", u)?,
                        None => silence::FOREVER_MS,
                    },
                    Some(silence::NewRecurrence {
                        rrule: r.clone(),
                        tz: tz.clone().unwrap_or_else(|| "UTC".into()),
                        duration_ms: each,
                    }),
                ),
                (Some(_), None, _) => {
                    anyhow::bail!("with --rrule, --for says how long each occurrence lasts")
                }
                (None, Some(_), Some(_)) => anyhow::bail!("give --for or --until, not both"),
                (None, Some(d), None) => (starts_ms + d, None),
                (None, None, Some(u)) => (instant("--until", u)?, None),
                (None, None, None) => {
                    anyhow::bail!("say how long: --for 2h or --until 2026-11-28T06:00:00Z")
                }
            };
            let mut conn = open_existing_db(&data_dir)?;
            let id = silence::create(
                &mut conn,
                &silence::NewSilence {
                    starts_ms,
                    ends_ms,
                    tenant,
                    site,
                    tag,
                    device,
                    rule,
                    comment,
                    by: who(by),
                    recurrence,
                },
                now,
            )?;
            match &rrule {
                Some(r) => eprintln!(
                    "silenced by {r} from {} until {}",
                    fmt_ms(starts_ms),
                    fmt_until(ends_ms)
                ),
                None => eprintln!(
                    "silenced from {} until {}",
                    fmt_ms(starts_ms.max(now)),
                    fmt_ms(ends_ms)
                ),
            }
            println!("{id}");
            Ok(())
        }
        AlertsCommand::Silences {
            all,
            json,
            data_dir,
        } => {
            let conn = store::open_read_only(&data_dir.join(store::DB_FILE))?;
            let now = now_ms();
            let rows = silence::list(&conn, now, all)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            if rows.is_empty() {
                println!("no silences");
            }
            for r in rows {
                let recurs = match (&r.rrule, &r.tz, r.duration_ms) {
                    (Some(rule), tz, Some(d)) => format!(
                        "  {rule} {} for {}s",
                        tz.as_deref().unwrap_or("UTC"),
                        d / 1000
                    ),
                    _ => String::new(),
                };
                println!(
                    "#{:<5} {:<9} {} -> {}{recurs}  {}  by {}: {}",
                    r.id,
                    r.status(now),
                    fmt_ms(r.starts_ms),
                    fmt_until(r.ends_ms),
                    r.matchers(),
                    r.created_by,
                    r.comment
                );
            }
            Ok(())
        }
        AlertsCommand::Unsilence { id, by, data_dir } => {
            let conn = open_existing_db(&data_dir)?;
            match silence::remove(&conn, id, &who(by), now_ms())? {
                silence::RemoveOutcome::Removed => {
                    println!("silence #{id} removed");
                    Ok(())
                }
                silence::RemoveOutcome::AlreadyRemoved => {
                    println!("silence #{id} was already removed");
                    Ok(())
                }
                silence::RemoveOutcome::AlreadyEnded => {
                    println!("silence #{id} had already ended");
                    Ok(())
                }
                silence::RemoveOutcome::NoSuchSilence => {
                    anyhow::bail!("no silence #{id} (see `alerts silences --all`)")
                }
            }
        }
        AlertsCommand::History {
            data_dir,
            device,
            json,
        } => {
            let conn = store::open_read_only(&data_dir.join(store::DB_FILE))?;
            let rows = persist::history(&conn, device.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            for h in rows {
                println!(
                    "{} #{} {} {} {} {:<12} {} -> {} {} value {}{}",
                    fmt_ms(h.at_ms),
                    h.instance_id,
                    h.rule,
                    h.device_id,
                    h.dimension,
                    h.event,
                    h.from_state.as_deref().unwrap_or("-"),
                    h.to_state,
                    h.severity.as_deref().unwrap_or("-"),
                    h.value.map_or("-".into(), |v| v.to_string()),
                    if h.suppressed { " (suppressed)" } else { "" }
                );
            }
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
