//! The notification commands of `tandem-collector` (`policies`, `notify`,
//! `incidents`, `token create-api`, `alerts tail`): argument types (clap) and their
//! handlers, kept here so the binary's `main.rs` only dispatches to them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use tandem_proto::util::now_ms;

use anyhow::Context;
use clap::Subcommand;

use super::incident::Outcome;
use super::{outbox, policy};
use crate::cli::{DataDir, format_ms, open_existing_store, parse_duration};
use crate::store::api::{AdminStore, NotifyStore};

#[derive(Subcommand)]
pub enum PoliciesCommand {
    /// Check a policies directory (or one file): every problem with file, line and
    /// column; exits non-zero if there is any.
    Check { path: PathBuf },
}

#[derive(Subcommand)]
pub enum NotifyCommand {
    /// Every notification delivery and each attempt at it, with the remote's answer.
    Log {
        #[command(flatten)]
        db: DataDir,
        /// Only this incident's deliveries.
        #[arg(long)]
        incident: Option<i64>,
    },
    /// Send a test message to every target of a tenant's policy and print each result.
    Test {
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value = "/etc/tandem/collector.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum IncidentsCommand {
    /// Incidents that are not resolved (with --all, every one), newest first.
    List {
        #[command(flatten)]
        db: DataDir,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge an incident: escalation and repeats stop.
    Ack {
        id: i64,
        #[command(flatten)]
        db: DataDir,
        #[arg(long)]
        by: Option<String>,
        /// Shown to both sides (feed, mails).
        #[arg(long)]
        note: Option<String>,
    },
    /// Snooze an incident (a timed ack: it reopens when the time is up).
    Snooze {
        id: i64,
        /// 30m, 4h, 1d.
        #[arg(long = "for")]
        for_: String,
        #[command(flatten)]
        db: DataDir,
        #[arg(long)]
        by: Option<String>,
    },
    /// Resolve an incident by hand.
    Resolve {
        id: i64,
        #[command(flatten)]
        db: DataDir,
        #[arg(long)]
        by: Option<String>,
    },
}

fn who(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".into())
}

pub fn policies(cmd: PoliciesCommand) -> anyhow::Result<()> {
    let PoliciesCommand::Check { path } = cmd;
    let res = if path.is_dir() {
        policy::load_dir(&path)
    } else {
        let src = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        policy::parse_file(&path, &src)
    };
    match res {
        Ok(set) => {
            println!(
                "{}: {} policies ({}), {} tenants, {} webhooks: ok",
                path.display(),
                set.policies.len(),
                set.default_policy
                    .as_deref()
                    .map_or("no default".to_owned(), |d| format!("default {d}")),
                set.tenants.len(),
                set.webhooks.len()
            );
            Ok(())
        }
        Err(e) => {
            eprintln!("{e}");
            anyhow::bail!("{} problem(s) in {}", e.problems.len(), path.display())
        }
    }
}

pub fn notify(cmd: NotifyCommand) -> anyhow::Result<()> {
    match cmd {
        NotifyCommand::Log { db, incident } => {
            let store = open_existing_store(&db.dir()?)?;
            let rows = store.delivery_log(incident)?;
            let mut out = String::new();
            if rows.is_empty() {
                writeln!(out, "no deliveries")?;
            }
            for r in rows {
                let attempt = match (r.attempt, r.at_ms, &r.result, &r.answer) {
                    (Some(n), Some(at), Some(res), Some(ans)) => {
                        format!("attempt {n} {} {res}: {ans}", format_ms(at))
                    }
                    _ => "no attempt yet".to_owned(),
                };
                writeln!(
                    out,
                    "#{:<5} incident {:<5} {:<9} {:<8} {:<30} {:<9} {}",
                    r.outbox_id,
                    r.incident_id,
                    r.transition,
                    r.channel,
                    r.recipient,
                    r.status,
                    attempt
                )?;
            }
            crate::cli::print_out(&out)
        }
        NotifyCommand::Test { tenant, config } => {
            let cfg = crate::config::load(&config)?;
            let Some(n) = cfg.notify.clone() else {
                anyhow::bail!("{}: no [notify] section", config.display());
            };
            let set = policy::load_dir(&n.policies_dir)?;
            let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            let results = rt.block_on(async {
                // Built and dropped inside the runtime (lettre's pool needs it).
                let sender = super::dispatch::Sender::new(n, cfg.http.clone(), &cfg.data_dir)?;
                let r = super::dispatch::send_test(&sender, &set, &cfg.db_path(), &tenant).await;
                drop(sender);
                r.map_err(|e| anyhow::anyhow!(e))
            })?;
            if results.is_empty() {
                println!("the policy of {tenant} has no mail or webhook targets (only the feed)");
            }
            let mut failed = 0;
            for (target, a) in &results {
                match a {
                    outbox::Attempt::Sent { answer, .. } => println!("{target}: sent ({answer})"),
                    outbox::Attempt::Retry { answer } | outbox::Attempt::Dead { answer } => {
                        failed += 1;
                        println!("{target}: FAILED ({answer})")
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} of {} test messages failed", results.len());
            }
            Ok(())
        }
    }
}

pub fn incidents(cmd: IncidentsCommand) -> anyhow::Result<()> {
    let say = |id: i64, o: Outcome, done: String| -> anyhow::Result<()> {
        match o {
            Outcome::Done => {
                println!("{done}");
                Ok(())
            }
            Outcome::Already => {
                println!("incident #{id}: nothing to do (already in that state)");
                Ok(())
            }
            Outcome::Resolved => anyhow::bail!("incident #{id} is resolved"),
            Outcome::NoSuchIncident => anyhow::bail!("no incident #{id} (see `incidents list`)"),
        }
    };
    match cmd {
        IncidentsCommand::List {
            db,
            tenant,
            all,
            json,
        } => {
            let store = open_existing_store(&db.dir()?)?;
            let rows = store.incidents(tenant.as_deref(), all)?;
            if json {
                return crate::cli::print_json(&rows);
            }
            let mut out = String::new();
            for i in rows {
                let host = if i.hostname.is_empty() {
                    &i.device_id
                } else {
                    &i.hostname
                };
                let ack = match (&i.acked_by, i.acked_ms) {
                    (Some(b), Some(t)) => format!(
                        " acked by {b} {}{}",
                        format_ms(t),
                        i.ack_note
                            .as_ref()
                            .map(|n| format!(" \"{n}\""))
                            .unwrap_or_default()
                    ),
                    _ => String::new(),
                };
                writeln!(
                    out,
                    "#{:<5} {:<8} {:<8} {:<24} tenant {} {} opened {}{}{}",
                    i.id,
                    i.state,
                    i.severity,
                    i.rule,
                    i.tenant,
                    host,
                    format_ms(i.opened_ms),
                    ack,
                    i.resolved_ms
                        .map(|r| format!(" resolved {}", format_ms(r)))
                        .unwrap_or_default()
                )?;
            }
            crate::cli::print_out(&out)
        }
        IncidentsCommand::Ack { id, db, by, note } => {
            let mut store = open_existing_store(&db.dir()?)?;
            let by = who(by);
            let o = store.ack_incident(id, &by, note.as_deref(), now_ms())?;
            say(id, o, format!("incident #{id} acknowledged by {by}"))
        }
        IncidentsCommand::Snooze { id, for_, db, by } => {
            let d = parse_duration(&for_).context("--for")?;
            let mut store = open_existing_store(&db.dir()?)?;
            let until = now_ms() + d.as_millis() as i64;
            let o = store.snooze_incident(id, &who(by), until, now_ms())?;
            say(
                id,
                o,
                format!("incident #{id} snoozed until {}", format_ms(until)),
            )
        }
        IncidentsCommand::Resolve { id, db, by } => {
            let mut store = open_existing_store(&db.dir()?)?;
            let by = who(by);
            let o = store.resolve_incident(id, &by, now_ms())?;
            say(id, o, format!("incident #{id} resolved by {by}"))
        }
    }
}

/// `token create-api NAME`: prints the token once; stores its hash.
pub(crate) fn create_api_token(data_dir: &Path, name: &str) -> anyhow::Result<()> {
    let store = open_existing_store(data_dir)?;
    let (token, hash) = super::link::new_api_token()?;
    store.create_api_token(name, &hash, None, now_ms())?;
    println!("{token}");
    eprintln!(
        "API token {name:?} created; it is shown only now (send it as `Authorization: Bearer TOKEN`)"
    );
    Ok(())
}

/// Where `alerts tail` reads and with what (issue 15: the feed needs a login).
pub(crate) struct TailArgs<'a> {
    pub(crate) url: &'a str,
    pub(crate) tenant: Option<&'a str>,
    pub(crate) severity: Option<&'a str>,
    pub(crate) token: Option<&'a str>,
    pub(crate) token_file: Option<&'a Path>,
    /// The CA to trust for `https://`; default: the data dir's.
    pub(crate) ca: Option<&'a Path>,
    /// The collector's data dir, when it can be read (on the collector host).
    pub(crate) data_dir: Option<PathBuf>,
}

/// A feed-only API token minted in the data dir for one local `alerts tail`, and
/// revoked when it ends. (Killed with SIGKILL, the token stays unrevoked — but it
/// existed only in that process's memory; the database holds its hash.)
struct LocalToken {
    db: PathBuf,
    id: i64,
}

impl LocalToken {
    fn mint(data_dir: &Path) -> anyhow::Result<(Self, String)> {
        let store = open_existing_store(data_dir).with_context(|| {
            format!(
                "alerts tail: no --token-file, and cannot mint a local token in {} (run it on the collector host as the collector's user, or pass --token-file)",
                data_dir.display()
            )
        })?;
        let (token, hash) = super::link::new_api_token()?;
        let id = store.create_api_token(
            &format!("alerts tail (local, pid {})", std::process::id()),
            &hash,
            Some("alerts tail"),
            now_ms(),
        )?;
        Ok((
            LocalToken {
                db: data_dir.join(crate::store::DB_FILE),
                id,
            },
            token,
        ))
    }
}

impl Drop for LocalToken {
    fn drop(&mut self) {
        let r = crate::store::Db::open(&self.db)
            .map_err(anyhow::Error::from)
            .and_then(|c| Ok(c.revoke_api_token(self.id, now_ms())?));
        if let Err(e) = r {
            eprintln!(
                "alerts tail: could not revoke its local token {}: {e}",
                self.id
            );
        }
    }
}

/// `alerts tail`: follows the feed and prints one line per event, resuming with
/// `Last-Event-ID` after a dropped connection. With no token given, mints a
/// feed-only token in the data dir (the collector host) and revokes it at exit.
pub(crate) fn tail(a: TailArgs<'_>) -> anyhow::Result<()> {
    let mut local = None;
    let token = match (a.token, a.token_file) {
        (Some(t), _) => t.trim().to_owned(),
        (None, Some(f)) => {
            let t = std::fs::read_to_string(f)
                .with_context(|| format!("--token-file {}: cannot read it", f.display()))?;
            let t = t.trim().to_owned();
            if t.is_empty() {
                anyhow::bail!("--token-file {}: empty", f.display());
            }
            t
        }
        (None, None) => {
            let dir = a.data_dir.as_deref().ok_or_else(|| {
                anyhow::anyhow!("alerts tail: pass --token-file FILE (or run it on the collector host with --data-dir)")
            })?;
            let (guard, t) = LocalToken::mint(dir)?;
            local = Some(guard);
            t
        }
    };
    let tls = if a.url.starts_with("https://") {
        let ca = match (a.ca, &a.data_dir) {
            (Some(ca), _) => ca.to_owned(),
            (None, Some(dir)) if crate::pki::PkiPaths::new(dir).ca_cert.exists() => {
                crate::pki::PkiPaths::new(dir).ca_cert
            }
            _ => anyhow::bail!(
                "{}: https needs the collector CA to trust: --ca FILE (pki/ca.pem of the collector's data dir)",
                a.url
            ),
        };
        Some(crate::http::tail::client_tls(&ca)?)
    } else {
        None
    };
    let access = crate::http::tail::Access {
        token: Some(token),
        tls,
    };
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let r = rt.block_on(async {
        let follow = crate::http::tail::follow(a.url, a.tenant, a.severity, &access, |ev| {
            crate::cli::print_line(&crate::http::tail::describe(ev))
        });
        // Ctrl-C or SIGTERM ends the tail normally, so the local token is revoked.
        tokio::select! {
            r = follow => r,
            _ = tandem_proto::util::shutdown_signal() => Ok(()),
        }
    });
    drop(local);
    r
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Wrap {
        #[command(subcommand)]
        cmd: IncidentsCommand,
    }

    #[test]
    fn incidents_commands_take_the_shared_data_dir_option() {
        let w = Wrap::try_parse_from(["x", "list", "--data-dir", "/srv/tandem", "--all"]).unwrap();
        let IncidentsCommand::List { db, all, .. } = w.cmd else {
            panic!("not list")
        };
        assert!(all);
        assert_eq!(db.dir().unwrap(), PathBuf::from("/srv/tandem"));

        // --config is the shared option's other source (its data_dir key).
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("collector.toml");
        std::fs::write(&toml, "data_dir = \"/srv/from-config\"\n").unwrap();
        let w =
            Wrap::try_parse_from(["x", "ack", "7", "--config", toml.to_str().unwrap()]).unwrap();
        let IncidentsCommand::Ack { id, db, .. } = w.cmd else {
            panic!("not ack")
        };
        assert_eq!(id, 7);
        assert_eq!(db.dir().unwrap(), PathBuf::from("/srv/from-config"));
    }
}
