//! `device list|revoke|remove|renew|tag|untag|check-patches`.

use clap::Subcommand;

use super::{
    DataDir, age, confirm_typed, format_ms, now_ms, open_db, open_existing_store, open_store_read,
    print_json, print_out, require_device, require_tenant,
};
use crate::store::admin;
use crate::store::api::AdminStore;

#[derive(Subcommand)]
pub enum DeviceCommand {
    /// List devices: tenant, site, host, OS, agent, certificate expiry, online or
    /// when last seen.
    List {
        /// Only the devices of this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DataDir,
    },
    /// Revoke a device: its certificates stop working at once (a running collector
    /// closes its streams within a second). Asks to type the device id unless --yes.
    Revoke {
        /// The device id (from `device list`).
        id: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        db: DataDir,
    },
    /// Remove a device from the fleet: revoked at once, its alerts closed; its data
    /// is kept unless --purge. Asks to type the device id unless --yes.
    Remove {
        /// The device id (from `device list`).
        id: String,
        /// Also delete everything it sent (samples, inventory, patch reports,
        /// alert history). Without it the history stays for `inspect`.
        #[arg(long)]
        purge: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        db: DataDir,
    },
    /// Ask a device to renew its certificate now.
    Renew {
        /// The device id (from `device list`).
        id: String,
        #[command(flatten)]
        db: DataDir,
    },
    /// Add tags to a device (rule, maintenance and silence scopes match them; a
    /// running collector picks them up within one alert tick).
    Tag {
        /// The device id (from `device list`).
        id: String,
        /// Lowercase letters, digits and - _ . : = (e.g. server, env:prod).
        #[arg(required = true)]
        tags: Vec<String>,
        #[command(flatten)]
        db: DataDir,
    },
    /// Remove tags from a device.
    Untag {
        /// The device id (from `device list`).
        id: String,
        /// The tags to remove.
        #[arg(required = true)]
        tags: Vec<String>,
        #[command(flatten)]
        db: DataDir,
    },
    /// Ask a device to check its pending updates now (within a second while it is
    /// connected, else as soon as it connects). The answer is a patch report.
    CheckPatches {
        /// The device id (from `device list`).
        id: String,
        #[command(flatten)]
        db: DataDir,
    },
}

/// Runs a `device` command.
pub fn run(cmd: DeviceCommand) -> anyhow::Result<()> {
    match cmd {
        DeviceCommand::List { tenant, json, db } => {
            let conn = open_store_read(&db.dir()?)?;
            if let Some(t) = tenant.as_deref() {
                require_tenant(&conn, t)?;
            }
            let rows: Vec<_> = conn
                .list_devices()?
                .into_iter()
                .filter(|d| tenant.as_deref().is_none_or(|t| t == d.tenant))
                .collect();
            if json {
                print_json(&rows)?;
            } else {
                print_out(&render_devices(&rows, now_ms()))?;
            }
        }
        DeviceCommand::Remove { id, purge, yes, db } => remove_device(&id, purge, yes, &db)?,
        DeviceCommand::Revoke { id, yes, db } => {
            let mut conn = open_db(&db)?;
            require_device(&conn, &id)?;
            if !yes {
                eprintln!(
                    "revoke device {id}: its certificates stop working at once and it must be \
                     re-enrolled to report again"
                );
                confirm_typed(&id)?;
            }
            conn.revoke_device(&id, now_ms())?;
            println!("device {id} revoked");
        }
        DeviceCommand::Renew { id, db } => {
            open_db(&db)?.request_renew(&id, now_ms())?;
            println!("device {id} asked to renew its certificate");
        }
        DeviceCommand::Tag { id, tags, db } => {
            let added = open_db(&db)?.tag_device(&id, &tags, now_ms())?;
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
            let removed = open_db(&db)?.untag_device(&id, &tags)?;
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
            open_db(&db)?.request_patch_check(&id, now_ms())?;
            println!(
                "device {id} asked to check its patches (now if connected, else when it connects)"
            );
        }
    }
    Ok(())
}

/// `device remove`: names what will happen, asks for the device id to be typed back
/// (unless `yes`), then revokes and removes (store::removal).
fn remove_device(id: &str, purge: bool, yes: bool, db: &DataDir) -> anyhow::Result<()> {
    let mut conn = open_existing_store(&db.dir()?)?;
    let Some((tenant, host, _, removed)) = conn.describe_removal(id)? else {
        anyhow::bail!("no such device: {id:?} (`tandem-collector device list` shows the devices)");
    };
    if !yes {
        eprintln!(
            "remove device {id} (tenant {tenant}, host {host}){}: it is revoked at once and must be re-enrolled to come back; {}",
            if removed { ", removed already" } else { "" },
            if purge {
                "ALL its data is deleted (samples, inventory, patch reports, alert history)"
            } else {
                "its data is kept"
            }
        );
        confirm_typed(id)?;
    }
    let r = conn.remove_device(id, purge, now_ms())?;
    if purge {
        println!(
            "device {id} removed and revoked; {} rows of its data deleted",
            r.rows_deleted
        );
    } else {
        println!("device {id} removed and revoked; its data is kept");
    }
    Ok(())
}

/// A device heard from within this long is shown as online (agents report every
/// 10 s by default; three missed reports and a margin).
pub(crate) const ONLINE_WITHIN_MS: i64 = 90_000;

/// `online`, or `offline` with how long ago it was last heard from.
pub(crate) fn presence(last_seen_ms: i64, now_ms: i64) -> String {
    if last_seen_ms <= 0 {
        "never seen".into()
    } else if now_ms - last_seen_ms <= ONLINE_WITHIN_MS {
        "online".into()
    } else {
        format!("offline {}", age(last_seen_ms, now_ms))
    }
}

/// The table of `device list`, or a line saying there is nothing yet.
pub(crate) fn render_devices(rows: &[admin::DeviceListRow], now_ms: i64) -> String {
    use std::fmt::Write;
    if rows.is_empty() {
        return "no devices yet (enroll one: `tandem-collector token create`, then \
                `tandem-agent enroll --token ...` on the device)\n"
            .into();
    }
    let mut out = format!(
        "{:<36}  {:<12} {:<12} {:<20} {:<24} {:<8} {:<18} {:<18} {:<16} {:<8} TAGS\n",
        "DEVICE",
        "TENANT",
        "SITE",
        "HOST",
        "OS",
        "AGENT",
        "CERT EXPIRES",
        "LAST SEEN",
        "ONLINE",
        "STATE"
    );
    for d in rows {
        let _ = writeln!(
            out,
            "{:<36}  {:<12} {:<12} {:<20} {:<24} {:<8} {:<18} {:<18} {:<16} {:<8} {}",
            d.id,
            d.tenant,
            d.site.as_deref().unwrap_or("-"),
            d.hostname,
            format!("{} {}", d.os_family, d.os_version).trim(),
            d.agent_version,
            d.cert_not_after_ms.map_or("-".into(), format_ms),
            if d.last_seen_ms > 0 {
                format_ms(d.last_seen_ms)
            } else {
                "-".into()
            },
            presence(d.last_seen_ms, now_ms),
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, last_seen_ms: i64, revoked: bool) -> admin::DeviceListRow {
        admin::DeviceListRow {
            id: id.into(),
            tenant: "acme".into(),
            site: None,
            hostname: "web-1".into(),
            os_family: "linux".into(),
            os_version: "12".into(),
            agent_version: "0.1.0".into(),
            cert_not_after_ms: None,
            cert_issued_ms: None,
            last_seen_ms,
            revoked_ms: revoked.then_some(1),
            tags: vec!["server".into()],
        }
    }

    #[test]
    fn presence_says_online_or_offline_with_its_age() {
        let now = 1_800_000_000_000;
        assert_eq!(presence(now - 5_000, now), "online");
        assert_eq!(presence(now - ONLINE_WITHIN_MS, now), "online");
        assert_eq!(presence(now - 3 * 3_600_000, now), "offline 3 h 0 min");
        assert_eq!(presence(0, now), "never seen");
    }

    #[test]
    fn device_table_has_online_and_state_columns_and_says_when_empty() {
        assert!(render_devices(&[], 0).starts_with("no devices yet"));
        let now = 1_800_000_000_000;
        let t = render_devices(
            &[
                row("d1", now - 1_000, false),
                row("d2", now - 86_400_000 * 2, true),
            ],
            now,
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(
            lines[0].contains("LAST SEEN") && lines[0].contains("ONLINE"),
            "{t}"
        );
        assert!(
            lines[1].starts_with("d1") && lines[1].contains("online           ok "),
            "{t}"
        );
        assert!(lines[2].contains("offline 2 d 0 h  revoked  server"), "{t}");
    }
}
