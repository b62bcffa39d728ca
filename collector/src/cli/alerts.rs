//! `alerts tail|list|ack|silence|silences|unsilence|history`.

use std::fmt::Write as _;

use anyhow::Context;
use clap::Subcommand;

use super::{
    DataDir, fmt_ms, fmt_until, format_number, now_ms, open_existing_store, open_store_read,
    parse_duration, print_json, print_out, require_device, require_tenant, who,
};
use crate::alerts::machine::State;
use crate::alerts::model::Severity;
use crate::alerts::persist::{self, AckOutcome, ListFilter};
use crate::alerts::silence;

// Parsed once per process: the size of the largest variant (`silence`) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum AlertsCommand {
    /// Follow the live feed (incident openings, acks, escalations, resolutions).
    Tail {
        /// The collector's HTTP listener (`[http] listen`).
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Only this tenant's incidents.
        #[arg(long)]
        tenant: Option<String>,
        /// Only incidents of at least this severity.
        #[arg(long, value_parser = ["warning", "critical"])]
        severity: Option<String>,
        /// An API token (prefer --token-file: a command line is visible to others).
        #[arg(long, conflicts_with = "token_file")]
        token: Option<String>,
        /// A file holding an API token (`token create-api`, or one with a role).
        /// Without a token, `alerts tail` on the collector host mints a feed-only
        /// token in the data dir and revokes it when it ends.
        #[arg(long, value_name = "FILE")]
        token_file: Option<std::path::PathBuf>,
        /// The CA to trust for an https:// URL (`pki/ca.pem` of the collector's
        /// data dir; the default when that data dir is readable here).
        #[arg(long, value_name = "FILE")]
        ca: Option<std::path::PathBuf>,
        #[command(flatten)]
        db: DataDir,
    },
    /// Active alerts (not OK), most recent first.
    List {
        #[command(flatten)]
        db: DataDir,
        /// Only this tenant's alerts.
        #[arg(long)]
        tenant: Option<String>,
        /// Only alerts in this state.
        #[arg(long, value_parser = ["ok", "pending", "firing", "recovering"])]
        state: Option<String>,
        /// Only alerts of at least this severity (critical is at least warning).
        #[arg(long, value_parser = ["warning", "critical"])]
        severity: Option<String>,
        /// Only this device's alerts.
        #[arg(long)]
        device: Option<String>,
        /// Include alerts that are back to OK.
        #[arg(long)]
        all: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge an active alert by its id (from `alerts list`).
    Ack {
        /// The alert's id (the `#N` of `alerts list`).
        id: i64,
        #[command(flatten)]
        db: DataDir,
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
        /// Match this tenant's alerts.
        #[arg(long)]
        tenant: Option<String>,
        /// Match alerts of devices at this site.
        #[arg(long)]
        site: Option<String>,
        /// Match alerts of devices with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Match this device's alerts.
        #[arg(long)]
        device: Option<String>,
        /// Match this rule's alerts (its name).
        #[arg(long)]
        rule: Option<String>,
        /// Why (required; shown in `alerts silences`).
        #[arg(long)]
        comment: String,
        /// Who silences (default: $USER).
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        db: DataDir,
    },
    /// Active and upcoming silences (with --all also ended and removed ones).
    Silences {
        /// Also ended and removed silences.
        #[arg(long)]
        all: bool,
        /// Only silences that match this tenant (by their tenant matcher).
        #[arg(long)]
        tenant: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DataDir,
    },
    /// Lift a silence by its id (the record stays, marked removed).
    Unsilence {
        /// The silence's id (the `#N` of `alerts silences`).
        id: i64,
        /// Who lifts it (default: $USER).
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        db: DataDir,
    },
    /// Every transition and flag change (time, value), oldest first.
    History {
        #[command(flatten)]
        db: DataDir,
        /// Only this device's alerts.
        #[arg(long)]
        device: Option<String>,
        /// Only this tenant's alerts.
        #[arg(long)]
        tenant: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs an `alerts` command.
pub fn run(command: AlertsCommand) -> anyhow::Result<()> {
    match command {
        AlertsCommand::Tail {
            url,
            tenant,
            severity,
            token,
            token_file,
            ca,
            db,
        } => crate::notify::cli::tail(crate::notify::cli::TailArgs {
            url: &url,
            tenant: tenant.as_deref(),
            severity: severity.as_deref(),
            token: token.as_deref(),
            token_file: token_file.as_deref(),
            ca: ca.as_deref(),
            data_dir: db.dir().ok(),
        }),
        AlertsCommand::List {
            db,
            tenant,
            state,
            severity,
            device,
            all,
            json,
        } => {
            let conn = open_store_read(&db.dir()?)?;
            if let Some(t) = tenant.as_deref() {
                require_tenant(&conn, t)?;
            }
            if let Some(d) = device.as_deref() {
                require_device(&conn, d)?;
            }
            let filter = ListFilter {
                tenant: tenant.as_deref(),
                state: state.as_deref().and_then(State::parse),
                device: device.as_deref(),
                all,
                min_severity: severity.as_deref().and_then(Severity::parse),
            };
            let rows = persist::list(&conn, &filter)?;
            if json {
                return print_json(&rows);
            }
            let mut out = String::new();
            if rows.is_empty() {
                writeln!(out, "no alerts{}", if all { "" } else { " active" })?;
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
                writeln!(
                    out,
                    "#{:<5} {:<10} {:<8} {:<28} tenant {} {} since {} value {}{}",
                    r.id,
                    r.state,
                    r.severity.as_deref().unwrap_or("-"),
                    r.rule,
                    r.tenant,
                    target,
                    fmt_ms(r.since_ms),
                    format_number(r.last_value),
                    if flags.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", flags.join(", "))
                    }
                )?;
            }
            print_out(&out)
        }
        AlertsCommand::Ack { id, db, by } => {
            let mut conn = open_existing_store(&db.dir()?)?;
            let by = who(by);
            let now = super::now_ms();
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
            db,
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
                        .context("--for")
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
            let mut conn = open_existing_store(&db.dir()?)?;
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
            tenant,
            json,
            db,
        } => {
            let conn = open_store_read(&db.dir()?)?;
            if let Some(t) = tenant.as_deref() {
                require_tenant(&conn, t)?;
            }
            let now = now_ms();
            let rows: Vec<_> = silence::list(&conn, now, all)?
                .into_iter()
                .filter(|r| tenant.is_none() || r.tenant == tenant)
                .collect();
            if json {
                return print_json(&rows);
            }
            let mut out = String::new();
            if rows.is_empty() {
                writeln!(out, "no silences")?;
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
                writeln!(
                    out,
                    "#{:<5} {:<9} {} -> {}{recurs}  {}  by {}: {}",
                    r.id,
                    r.status(now),
                    fmt_ms(r.starts_ms),
                    fmt_until(r.ends_ms),
                    r.matchers(),
                    r.created_by,
                    r.comment
                )?;
            }
            print_out(&out)
        }
        AlertsCommand::Unsilence { id, by, db } => {
            let mut conn = open_existing_store(&db.dir()?)?;
            match silence::lift(&mut conn, id, &who(by), now_ms())? {
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
            db,
            device,
            tenant,
            json,
        } => {
            let conn = open_store_read(&db.dir()?)?;
            if let Some(d) = device.as_deref() {
                require_device(&conn, d)?;
            }
            if let Some(t) = tenant.as_deref() {
                require_tenant(&conn, t)?;
            }
            let rows = persist::history(&conn, device.as_deref(), tenant.as_deref())?;
            if json {
                return print_json(&rows);
            }
            let mut out = String::new();
            if rows.is_empty() {
                writeln!(out, "no alert history yet")?;
            }
            for h in rows {
                writeln!(
                    out,
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
                    h.value.map_or("-".into(), format_number),
                    if h.suppressed { " (suppressed)" } else { "" }
                )?;
            }
            print_out(&out)
        }
    }
}
