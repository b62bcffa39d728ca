//! `tenant create|list`: the organisations whose devices this collector watches.

use std::fmt::Write;

use clap::Subcommand;

use super::{
    DataDir, format_ms, now_ms, open_db, open_store_read, print_json, print_out, require_tenant,
};
use crate::store::admin;
use crate::store::api::AdminStore;

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        /// The tenant's name (lowercase letters, digits, - and _).
        name: String,
        #[command(flatten)]
        db: DataDir,
    },
    /// List tenants with their sites and devices.
    List {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DataDir,
    },
}

/// Runs a `tenant` command.
pub fn run(cmd: TenantCommand) -> anyhow::Result<()> {
    match cmd {
        TenantCommand::Create { name, db } => {
            open_db(&db)?.create_tenant(&name, now_ms())?;
            println!("tenant {name} created");
        }
        TenantCommand::List { tenant, json, db } => {
            let conn = open_store_read(&db.dir()?)?;
            if let Some(t) = tenant.as_deref() {
                require_tenant(&conn, t)?;
            }
            let rows: Vec<_> = conn
                .list_tenants()?
                .into_iter()
                .filter(|t| tenant.as_deref().is_none_or(|n| n == t.name))
                .collect();
            if json {
                print_json(&rows)?;
            } else {
                print_out(&render_tenants(&rows))?;
            }
        }
    }
    Ok(())
}

/// The table of `tenant list`, or a line saying there is nothing yet.
pub(crate) fn render_tenants(rows: &[admin::TenantRow]) -> String {
    if rows.is_empty() {
        return "no tenants yet (create one: `tandem-collector tenant create NAME`)\n".into();
    }
    let mut out = format!(
        "{:<24} {:>6} {:>8}  CREATED\n",
        "TENANT", "SITES", "DEVICES"
    );
    for t in rows {
        let _ = writeln!(
            out,
            "{:<24} {:>6} {:>8}  {}",
            t.name,
            t.sites,
            t.devices,
            format_ms(t.created_ms)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_table_or_nothing_yet() {
        assert!(render_tenants(&[]).starts_with("no tenants yet"));
        let t = render_tenants(&[admin::TenantRow {
            name: "acme".into(),
            created_ms: 0,
            sites: 2,
            devices: 14,
        }]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2, "{t}");
        assert!(lines[0].starts_with("TENANT"), "{t}");
        assert!(
            lines[1].starts_with("acme") && lines[1].contains("     2       14  1970-01-01"),
            "{t}"
        );
    }
}
