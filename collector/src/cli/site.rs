//! `site create|list`: optional places within a tenant.

use clap::Subcommand;

use super::{
    DataDir, format_ms, now_ms, open_db, open_store_read, print_json, print_out, require_tenant,
};
use crate::store::admin;
use crate::store::api::AdminStore;

#[derive(Subcommand)]
pub enum SiteCommand {
    /// Create a site in a tenant.
    Create {
        /// The tenant the site belongs to.
        #[arg(long)]
        tenant: String,
        /// The site's name (e.g. hq, branch-leeds).
        name: String,
        #[command(flatten)]
        db: DataDir,
    },
    /// List sites (of one tenant, or all).
    List {
        /// Only this tenant's sites.
        #[arg(long)]
        tenant: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DataDir,
    },
}

/// Runs a `site` command.
pub fn run(cmd: SiteCommand) -> anyhow::Result<()> {
    match cmd {
        SiteCommand::Create { tenant, name, db } => {
            open_db(&db)?.create_site(&tenant, &name, now_ms())?;
            println!("site {name} created in tenant {tenant}");
        }
        SiteCommand::List { tenant, json, db } => {
            let conn = open_store_read(&db.dir()?)?;
            if let Some(t) = tenant.as_deref() {
                require_tenant(&conn, t)?;
            }
            let rows = conn.list_sites(tenant.as_deref())?;
            if json {
                print_json(&rows)?;
            } else {
                print_out(&render_sites(&rows))?;
            }
        }
    }
    Ok(())
}

/// The table of `site list`, or a line saying there is nothing yet.
pub(crate) fn render_sites(rows: &[admin::SiteRow]) -> String {
    use std::fmt::Write;
    if rows.is_empty() {
        return "no sites yet (sites are optional: `tandem-collector site create --tenant T NAME`)\n"
            .into();
    }
    let mut out = format!(
        "{:<24} {:<24} {:>8}  CREATED\n",
        "TENANT", "SITE", "DEVICES"
    );
    for s in rows {
        let _ = writeln!(
            out,
            "{:<24} {:<24} {:>8}  {}",
            s.tenant,
            s.name,
            s.devices,
            format_ms(s.created_ms)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_table_or_nothing_yet() {
        assert!(render_sites(&[]).starts_with("no sites yet"));
        let t = render_sites(&[admin::SiteRow {
            tenant: "acme".into(),
            name: "hq".into(),
            created_ms: 0,
            devices: 3,
        }]);
        assert_eq!(t.lines().count(), 2, "{t}");
        assert!(
            t.lines()
                .nth(1)
                .unwrap()
                .starts_with("acme                     hq"),
            "{t}"
        );
    }
}
