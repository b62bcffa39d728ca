//! Tenants and sites: creating and listing them, and whether one exists.

use rusqlite::{Connection, OptionalExtension, params};

use super::{AdminError, check_name, tenant_id};

/// Creates a tenant.
pub(crate) fn create_tenant(conn: &Connection, name: &str, now_ms: i64) -> Result<(), AdminError> {
    check_name("tenant", name)?;
    let n = conn.execute(
        "INSERT INTO tenants (name, created_ms) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
        params![name, now_ms],
    )?;
    if n == 0 {
        return Err(AdminError::TenantExists(name.to_owned()));
    }
    Ok(())
}

/// A tenant for `tenant list`.
#[derive(Debug, serde::Serialize)]
pub(crate) struct TenantRow {
    pub(crate) name: String,
    pub(crate) created_ms: i64,
    pub(crate) sites: i64,
    pub(crate) devices: i64,
}

pub(crate) fn list_tenants(conn: &Connection) -> Result<Vec<TenantRow>, AdminError> {
    let mut stmt = conn.prepare(
        "SELECT t.name, t.created_ms,
                (SELECT count(*) FROM sites s WHERE s.tenant_id = t.id),
                (SELECT count(*) FROM devices d WHERE d.tenant_id = t.id)
         FROM tenants t ORDER BY t.name",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(TenantRow {
            name: r.get(0)?,
            created_ms: r.get(1)?,
            sites: r.get(2)?,
            devices: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Creates a site in an existing tenant.
pub(crate) fn create_site(
    conn: &Connection,
    tenant: &str,
    site: &str,
    now_ms: i64,
) -> Result<(), AdminError> {
    check_name("site", site)?;
    let tid = tenant_id(conn, tenant)?;
    let n = conn.execute(
        "INSERT INTO sites (tenant_id, name, created_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT(tenant_id, name) DO NOTHING",
        params![tid, site, now_ms],
    )?;
    if n == 0 {
        return Err(AdminError::SiteExists {
            tenant: tenant.to_owned(),
            site: site.to_owned(),
        });
    }
    Ok(())
}

/// A site for `site list`.
#[derive(Debug, serde::Serialize)]
pub(crate) struct SiteRow {
    pub(crate) tenant: String,
    pub(crate) name: String,
    pub(crate) created_ms: i64,
    pub(crate) devices: i64,
}

pub(crate) fn list_sites(
    conn: &Connection,
    tenant: Option<&str>,
) -> Result<Vec<SiteRow>, AdminError> {
    let mut stmt = conn.prepare(
        "SELECT t.name, s.name, s.created_ms,
                (SELECT count(*) FROM devices d WHERE d.site_id = s.id)
         FROM sites s JOIN tenants t ON t.id = s.tenant_id
         WHERE ?1 IS NULL OR t.name = ?1 ORDER BY t.name, s.name",
    )?;
    let rows = stmt.query_map([tenant], |r| {
        Ok(SiteRow {
            tenant: r.get(0)?,
            name: r.get(1)?,
            created_ms: r.get(2)?,
            devices: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Whether a device with this id is known (revoked ones included).
pub(crate) fn device_exists(conn: &Connection, id: &str) -> Result<bool, AdminError> {
    Ok(conn
        .query_row("SELECT 1 FROM devices WHERE id = ?1", [id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Whether a tenant with this name exists.
pub(crate) fn tenant_exists(conn: &Connection, name: &str) -> Result<bool, AdminError> {
    Ok(conn
        .query_row("SELECT 1 FROM tenants WHERE name = ?1", [name], |_| Ok(()))
        .optional()?
        .is_some())
}
