//! Administrative reads and writes: tenants, sites, enrollment tokens, devices'
//! certificates, revocations and renew requests.
//!
//! These run on their own connection, from the CLI (a separate process) or from the
//! collector's enrollment and renewal handlers, each in one short `BEGIN IMMEDIATE`
//! transaction. They are rare (an operator's command, one enrollment), so they do not
//! go through the ingest writer's queue; SQLite serialises them with it.
//!
//! Invariants:
//! - a token's secret is never stored, only its SHA-256;
//! - a token is consumed (its `uses` counted) in the same transaction that records
//!   the device and its certificate, so a failed enrollment uses nothing up;
//! - `revocations` and `renew_requests` are append-only, so the running collector
//!   can poll them by id.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

/// Errors of administrative commands; each says what was wrong with the input.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("database error")]
    Sqlite(#[from] rusqlite::Error),
    #[error("invalid {what} name {name:?}: use 1-63 lowercase letters, digits and '-'")]
    BadName { what: &'static str, name: String },
    #[error("tenant {0:?} already exists")]
    TenantExists(String),
    #[error("no tenant {0:?}; create it with `tandem-collector tenant create {0}`")]
    NoTenant(String),
    #[error("site {site:?} already exists in tenant {tenant:?}")]
    SiteExists { tenant: String, site: String },
    #[error(
        "no site {site:?} in tenant {tenant:?}; create it with `tandem-collector site create --tenant {tenant} {site}`"
    )]
    NoSite { tenant: String, site: String },
    #[error("no enrollment token with id {0:?} (see `tandem-collector token list`)")]
    NoToken(String),
    #[error("no device {0:?} (see `tandem-collector device list`)")]
    NoDevice(String),
    #[error("device {device:?} belongs to tenant {actual:?}, not {wanted:?}")]
    WrongTenant {
        device: String,
        actual: String,
        wanted: String,
    },
    #[error("device {0:?} is revoked; a revoked device cannot be replaced (enroll a new one)")]
    ReplaceRevoked(String),
    #[error(transparent)]
    BadTag(crate::tags::TagError),
}

fn check_name(what: &'static str, name: &str) -> Result<(), AdminError> {
    if tandem_proto::is_valid_name(name) {
        Ok(())
    } else {
        Err(AdminError::BadName {
            what,
            name: name.to_owned(),
        })
    }
}

fn tenant_id(conn: &Connection, tenant: &str) -> Result<i64, AdminError> {
    conn.query_row("SELECT id FROM tenants WHERE name = ?1", [tenant], |r| {
        r.get(0)
    })
    .optional()?
    .ok_or_else(|| AdminError::NoTenant(tenant.to_owned()))
}

fn site_id(conn: &Connection, tenant_id: i64, tenant: &str, site: &str) -> Result<i64, AdminError> {
    conn.query_row(
        "SELECT id FROM sites WHERE tenant_id = ?1 AND name = ?2",
        params![tenant_id, site],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| AdminError::NoSite {
        tenant: tenant.to_owned(),
        site: site.to_owned(),
    })
}

/// Creates a tenant.
pub fn create_tenant(conn: &Connection, name: &str, now_ms: i64) -> Result<(), AdminError> {
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
pub struct TenantRow {
    pub name: String,
    pub created_ms: i64,
    pub sites: i64,
    pub devices: i64,
}

pub fn list_tenants(conn: &Connection) -> Result<Vec<TenantRow>, AdminError> {
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
pub fn create_site(
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
pub struct SiteRow {
    pub tenant: String,
    pub name: String,
    pub created_ms: i64,
    pub devices: i64,
}

pub fn list_sites(conn: &Connection, tenant: Option<&str>) -> Result<Vec<SiteRow>, AdminError> {
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

/// A token to store (the secret itself is never passed here).
#[derive(Debug, Clone)]
pub struct NewToken {
    pub id_hex: String,
    pub secret_sha256: [u8; 32],
    pub tenant: String,
    pub site: Option<String>,
    pub replace_device_id: Option<String>,
    pub expires_ms: i64,
    pub max_uses: u32,
}

/// Stores a new token after checking that its tenant, site and replaced device exist.
pub fn insert_token(conn: &Connection, t: &NewToken, now_ms: i64) -> Result<(), AdminError> {
    let tid = tenant_id(conn, &t.tenant)?;
    let sid = match &t.site {
        Some(s) => Some(site_id(conn, tid, &t.tenant, s)?),
        None => None,
    };
    if let Some(dev) = &t.replace_device_id {
        let found: Option<(String, Option<i64>)> = conn
            .query_row(
                "SELECT t.name, d.revoked_ms FROM devices d JOIN tenants t ON t.id = d.tenant_id
                 WHERE d.id = ?1",
                [dev],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match found {
            None => return Err(AdminError::NoDevice(dev.clone())),
            Some((actual, _)) if actual != t.tenant => {
                return Err(AdminError::WrongTenant {
                    device: dev.clone(),
                    actual,
                    wanted: t.tenant.clone(),
                });
            }
            Some((_, Some(_))) => return Err(AdminError::ReplaceRevoked(dev.clone())),
            Some(_) => {}
        }
    }
    conn.execute(
        "INSERT INTO enroll_tokens (id, secret_sha256, tenant_id, site_id, replace_device_id,
             created_ms, expires_ms, max_uses)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            t.id_hex,
            &t.secret_sha256[..],
            tid,
            sid,
            t.replace_device_id,
            now_ms,
            t.expires_ms,
            t.max_uses
        ],
    )?;
    Ok(())
}

/// A token for `token list` (no secret, no hash).
#[derive(Debug, serde::Serialize)]
pub struct TokenRow {
    pub id: String,
    pub tenant: String,
    pub site: Option<String>,
    pub replace_device_id: Option<String>,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub uses: i64,
    pub max_uses: i64,
    pub revoked_ms: Option<i64>,
}

impl TokenRow {
    /// "usable", "expired", "used up" or "revoked" at `now_ms`.
    pub fn state(&self, now_ms: i64) -> &'static str {
        if self.revoked_ms.is_some() {
            "revoked"
        } else if self.uses >= self.max_uses {
            "used up"
        } else if now_ms >= self.expires_ms {
            "expired"
        } else {
            "usable"
        }
    }
}

pub fn list_tokens(conn: &Connection) -> Result<Vec<TokenRow>, AdminError> {
    let mut stmt = conn.prepare(
        "SELECT k.id, t.name, s.name, k.replace_device_id, k.created_ms, k.expires_ms, k.uses,
                k.max_uses, k.revoked_ms
         FROM enroll_tokens k JOIN tenants t ON t.id = k.tenant_id
         LEFT JOIN sites s ON s.id = k.site_id ORDER BY k.created_ms",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(TokenRow {
            id: r.get(0)?,
            tenant: r.get(1)?,
            site: r.get(2)?,
            replace_device_id: r.get(3)?,
            created_ms: r.get(4)?,
            expires_ms: r.get(5)?,
            uses: r.get(6)?,
            max_uses: r.get(7)?,
            revoked_ms: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn revoke_token(conn: &Connection, id: &str, now_ms: i64) -> Result<(), AdminError> {
    let n = conn.execute(
        "UPDATE enroll_tokens SET revoked_ms = coalesce(revoked_ms, ?2) WHERE id = ?1",
        params![id, now_ms],
    )?;
    if n == 0 {
        return Err(AdminError::NoToken(id.to_owned()));
    }
    Ok(())
}

/// Why an enrollment token was refused. The message goes to the enrolling agent:
/// it says which check failed and nothing about other tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRefusal {
    Unknown,
    SecretMismatch,
    Revoked,
    Expired,
    UsedUp { max_uses: i64 },
    ReplaceRevoked,
}

impl TokenRefusal {
    pub fn message(&self) -> String {
        match self {
            TokenRefusal::Unknown => {
                "enrollment token not recognised by this collector (unknown token id)".into()
            }
            TokenRefusal::SecretMismatch => {
                "enrollment token secret does not match: the token was tampered with or mistyped"
                    .into()
            }
            TokenRefusal::Revoked => "enrollment token has been revoked".into(),
            TokenRefusal::Expired => "enrollment token has expired".into(),
            TokenRefusal::UsedUp { max_uses } => format!(
                "enrollment token is used up (it allowed {max_uses} enrollment{})",
                if *max_uses == 1 { "" } else { "s" }
            ),
            TokenRefusal::ReplaceRevoked => {
                "the device this token replaces has been revoked".into()
            }
        }
    }
}

/// What a valid token grants: the device's place and id.
#[derive(Debug, Clone)]
pub struct Grant {
    pub tenant: String,
    pub site: Option<String>,
    pub device_id: String,
    /// True when the token re-enrolls an existing device (`--replace`).
    pub replaces: bool,
}

/// A certificate the collector just signed.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub serial_hex: String,
    pub not_after_ms: i64,
}

/// How an enrollment attempt ended, short of success.
#[derive(Debug, thiserror::Error)]
pub enum EnrollFailure {
    #[error("{}", .0.message())]
    Refused(TokenRefusal),
    #[error("cannot sign the certificate: {0}")]
    Sign(String),
    #[error(transparent)]
    Store(#[from] AdminError),
}

impl From<rusqlite::Error> for EnrollFailure {
    fn from(e: rusqlite::Error) -> Self {
        EnrollFailure::Store(AdminError::Sqlite(e))
    }
}

/// Checks a token and, if it is good, signs a certificate with `sign(tenant,
/// device_id)` and records the device, the certificate and the token's use, all in
/// one transaction. A replaced device keeps its id; its earlier certificates are
/// revoked.
pub fn enroll(
    conn: &mut Connection,
    token_id: &str,
    secret_sha256: &[u8; 32],
    hostname: &str,
    now_ms: i64,
    sign: impl FnOnce(&Grant) -> Result<IssuedCert, String>,
) -> Result<(Grant, IssuedCert), EnrollFailure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    type Row = (
        Vec<u8>,
        i64,
        Option<i64>,
        Option<String>,
        i64,
        i64,
        i64,
        Option<i64>,
    );
    let row: Option<Row> = tx
        .query_row(
            "SELECT secret_sha256, tenant_id, site_id, replace_device_id, expires_ms, max_uses,
                    uses, revoked_ms FROM enroll_tokens WHERE id = ?1",
            [token_id],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            },
        )
        .optional()?;
    let Some((hash, tid, sid, replace, expires_ms, max_uses, uses, revoked)) = row else {
        return Err(EnrollFailure::Refused(TokenRefusal::Unknown));
    };
    // The secret first: someone holding only a token id learns nothing about it.
    if hash.as_slice() != secret_sha256.as_slice() {
        return Err(EnrollFailure::Refused(TokenRefusal::SecretMismatch));
    }
    if revoked.is_some() {
        return Err(EnrollFailure::Refused(TokenRefusal::Revoked));
    }
    if now_ms >= expires_ms {
        return Err(EnrollFailure::Refused(TokenRefusal::Expired));
    }
    if uses >= max_uses {
        return Err(EnrollFailure::Refused(TokenRefusal::UsedUp { max_uses }));
    }
    let tenant: String = tx.query_row("SELECT name FROM tenants WHERE id = ?1", [tid], |r| {
        r.get(0)
    })?;
    let site: Option<String> = match sid {
        Some(s) => Some(tx.query_row("SELECT name FROM sites WHERE id = ?1", [s], |r| r.get(0))?),
        None => None,
    };
    if let Some(dev) = &replace {
        let revoked: Option<Option<i64>> = tx
            .query_row("SELECT revoked_ms FROM devices WHERE id = ?1", [dev], |r| {
                r.get(0)
            })
            .optional()?;
        if matches!(revoked, Some(Some(_))) {
            return Err(EnrollFailure::Refused(TokenRefusal::ReplaceRevoked));
        }
    }
    let grant = Grant {
        tenant,
        site,
        device_id: replace
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        replaces: replace.is_some(),
    };
    let issued = sign(&grant).map_err(EnrollFailure::Sign)?;
    tx.execute(
        "UPDATE enroll_tokens SET uses = uses + 1 WHERE id = ?1",
        [token_id],
    )?;
    if grant.replaces {
        // The reinstalled machine takes over the id; whatever held the old
        // certificates must not report as it any more.
        tx.execute(
            "INSERT INTO revocations (device_id, serial, created_ms)
             SELECT device_id, serial, ?2 FROM certificates WHERE device_id = ?1",
            params![grant.device_id, now_ms],
        )?;
        tx.execute(
            "UPDATE devices SET site_id = ?2, enrolled_ms = ?3, hostname = ?4 WHERE id = ?1",
            params![grant.device_id, sid, now_ms, hostname],
        )?;
    } else {
        tx.execute(
            "INSERT INTO devices (id, tenant_id, site_id, hostname, first_seen_ms, last_seen_ms,
                 enrolled_ms, acked_seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5, 0)",
            params![grant.device_id, tid, sid, hostname, now_ms],
        )?;
    }
    tx.execute(
        "INSERT INTO certificates (serial, device_id, not_after_ms, issued_ms, how)
         VALUES (?1, ?2, ?3, ?4, 'enroll')",
        params![
            issued.serial_hex,
            grant.device_id,
            issued.not_after_ms,
            now_ms
        ],
    )?;
    tx.commit()?;
    Ok((grant, issued))
}

/// Whether a device may get a new certificate: `Err(NoDevice)` if unknown,
/// `Ok(false)` if revoked.
pub fn device_in_good_standing(conn: &Connection, device_id: &str) -> Result<bool, AdminError> {
    let revoked: Option<Option<i64>> = conn
        .query_row(
            "SELECT revoked_ms FROM devices WHERE id = ?1",
            [device_id],
            |r| r.get(0),
        )
        .optional()?;
    match revoked {
        None => Err(AdminError::NoDevice(device_id.to_owned())),
        Some(r) => Ok(r.is_none()),
    }
}

/// Records a certificate issued by renewal or by hand.
pub fn record_certificate(
    conn: &Connection,
    device_id: &str,
    cert: &IssuedCert,
    how: &str,
    now_ms: i64,
) -> Result<(), AdminError> {
    conn.execute(
        "INSERT INTO certificates (serial, device_id, not_after_ms, issued_ms, how)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![cert.serial_hex, device_id, cert.not_after_ms, now_ms, how],
    )?;
    Ok(())
}

/// Whether the collector recorded a certificate with this serial as issued to
/// `device_id` (enrollment, renewal or `pki issue-agent`).
pub fn certificate_issued(
    conn: &Connection,
    device_id: &str,
    serial: &str,
) -> Result<bool, AdminError> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM certificates WHERE serial = ?1 AND device_id = ?2",
        params![serial, device_id],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

/// Revokes a device: every certificate it holds stops working, at once on a running
/// collector (which polls `revocations`).
pub fn revoke_device(
    conn: &mut Connection,
    device_id: &str,
    now_ms: i64,
) -> Result<(), AdminError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let n = tx.execute(
        "UPDATE devices SET revoked_ms = coalesce(revoked_ms, ?2) WHERE id = ?1",
        params![device_id, now_ms],
    )?;
    if n == 0 {
        return Err(AdminError::NoDevice(device_id.to_owned()));
    }
    tx.execute(
        "INSERT INTO revocations (device_id, serial, created_ms) VALUES (?1, NULL, ?2)",
        params![device_id, now_ms],
    )?;
    tx.commit()?;
    Ok(())
}

/// Asks a device to renew its certificate as soon as it is connected.
pub fn request_renew(conn: &Connection, device_id: &str, now_ms: i64) -> Result<(), AdminError> {
    device_in_good_standing(conn, device_id)?;
    conn.execute(
        "INSERT INTO renew_requests (device_id, created_ms) VALUES (?1, ?2)",
        params![device_id, now_ms],
    )?;
    Ok(())
}

/// Asks a device to check its patch status now (`device check-patches`).
pub fn request_patch_check(
    conn: &Connection,
    device_id: &str,
    now_ms: i64,
) -> Result<(), AdminError> {
    device_in_good_standing(conn, device_id)?;
    conn.execute(
        "INSERT INTO patch_check_requests (device_id, created_ms) VALUES (?1, ?2)",
        params![device_id, now_ms],
    )?;
    Ok(())
}

/// Patch-check requests above `after` that no patch report received since has
/// answered: `(id, device_id)`.
pub fn patch_check_requests_since(
    conn: &Connection,
    after: i64,
) -> Result<Vec<(i64, String)>, AdminError> {
    let mut stmt = conn.prepare_cached(
        "SELECT r.id, r.device_id FROM patch_check_requests r WHERE r.id > ?1
           AND NOT EXISTS (SELECT 1 FROM patch_reports p
                           JOIN batches b ON b.device_id = p.device_id AND b.seq = p.seq
                           WHERE p.device_id = r.device_id AND b.received_ms >= r.created_ms)
         ORDER BY r.id",
    )?;
    let rows = stmt.query_map([after], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One revocation row: a whole device (`serial` None) or one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub id: i64,
    pub device_id: String,
    pub serial: Option<String>,
}

/// Revocations with an id above `after`, in order.
pub fn revocations_since(conn: &Connection, after: i64) -> Result<Vec<Revocation>, AdminError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, device_id, serial FROM revocations WHERE id > ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([after], |r| {
        Ok(Revocation {
            id: r.get(0)?,
            device_id: r.get(1)?,
            serial: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Renew requests above `after` that no certificate issued since has answered:
/// `(id, device_id)`.
pub fn renew_requests_since(
    conn: &Connection,
    after: i64,
) -> Result<Vec<(i64, String)>, AdminError> {
    let mut stmt = conn.prepare_cached(
        "SELECT r.id, r.device_id FROM renew_requests r WHERE r.id > ?1
           AND NOT EXISTS (SELECT 1 FROM certificates c
                           WHERE c.device_id = r.device_id AND c.issued_ms >= r.created_ms)
         ORDER BY r.id",
    )?;
    let rows = stmt.query_map([after], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The highest id of renew requests (answered or not), to resume polling after.
pub fn last_renew_request_id(conn: &Connection) -> Result<i64, AdminError> {
    Ok(
        conn.query_row("SELECT coalesce(max(id), 0) FROM renew_requests", [], |r| {
            r.get(0)
        })?,
    )
}

/// Adds tags to a device (tags it has already are kept). Every tag is checked
/// before anything is written; returns the tags that were new.
pub fn tag_device(
    conn: &mut Connection,
    device_id: &str,
    tags: &[String],
    now_ms: i64,
) -> Result<Vec<String>, AdminError> {
    for t in tags {
        crate::tags::check_tag(t).map_err(AdminError::BadTag)?;
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    device_in_good_standing(&tx, device_id)?;
    let mut added = Vec::new();
    for t in tags {
        let n = tx.execute(
            "INSERT INTO device_tags (device_id, tag, created_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
            params![device_id, t, now_ms],
        )?;
        if n > 0 {
            added.push(t.clone());
        }
    }
    tx.commit()?;
    Ok(added)
}

/// Removes tags from a device; returns those it had (the others are ignored).
pub fn untag_device(
    conn: &mut Connection,
    device_id: &str,
    tags: &[String],
) -> Result<Vec<String>, AdminError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    device_in_good_standing(&tx, device_id)?;
    let mut removed = Vec::new();
    for t in tags {
        let n = tx.execute(
            "DELETE FROM device_tags WHERE device_id = ?1 AND tag = ?2",
            params![device_id, t],
        )?;
        if n > 0 {
            removed.push(t.clone());
        }
    }
    tx.commit()?;
    Ok(removed)
}

/// A device for `device list`.
#[derive(Debug, serde::Serialize)]
pub struct DeviceListRow {
    pub id: String,
    pub tenant: String,
    pub site: Option<String>,
    pub hostname: String,
    pub os_family: String,
    pub os_version: String,
    pub agent_version: String,
    /// Expiry of the newest certificate the collector knows it issued.
    pub cert_not_after_ms: Option<i64>,
    /// When the newest certificate the collector knows it issued was issued.
    pub cert_issued_ms: Option<i64>,
    pub last_seen_ms: i64,
    pub revoked_ms: Option<i64>,
    /// The operator's tags, sorted.
    pub tags: Vec<String>,
}

pub fn list_devices(conn: &Connection) -> Result<Vec<DeviceListRow>, AdminError> {
    let mut stmt = conn.prepare(
        "SELECT d.id, t.name, s.name, d.hostname, d.os_family, d.os_version, d.agent_version,
                (SELECT max(c.not_after_ms) FROM certificates c WHERE c.device_id = d.id),
                d.last_seen_ms, d.revoked_ms,
                (SELECT max(c.issued_ms) FROM certificates c WHERE c.device_id = d.id),
                (SELECT group_concat(tag, ' ') FROM
                    (SELECT tag FROM device_tags g WHERE g.device_id = d.id ORDER BY tag))
         FROM devices d JOIN tenants t ON t.id = d.tenant_id LEFT JOIN sites s ON s.id = d.site_id
         ORDER BY t.name, d.hostname, d.id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(DeviceListRow {
            id: r.get(0)?,
            tenant: r.get(1)?,
            site: r.get(2)?,
            hostname: r.get(3)?,
            os_family: r.get(4)?,
            os_version: r.get(5)?,
            agent_version: r.get(6)?,
            cert_not_after_ms: r.get(7)?,
            last_seen_ms: r.get(8)?,
            revoked_ms: r.get(9)?,
            cert_issued_ms: r.get(10)?,
            // Tags contain no spaces (check_tag), so a space joins them safely.
            tags: r
                .get::<_, Option<String>>(11)?
                .map(|s| s.split(' ').map(str::to_owned).collect())
                .unwrap_or_default(),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Whether a device with this id is known (revoked ones included).
pub fn device_exists(conn: &Connection, id: &str) -> Result<bool, AdminError> {
    Ok(conn
        .query_row("SELECT 1 FROM devices WHERE id = ?1", [id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Whether a tenant with this name exists.
pub fn tenant_exists(conn: &Connection, name: &str) -> Result<bool, AdminError> {
    Ok(conn
        .query_row("SELECT 1 FROM tenants WHERE name = ?1", [name], |_| Ok(()))
        .optional()?
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("t.db")).unwrap();
        (dir, conn)
    }

    fn token(id: &str, secret: u8, expires_ms: i64, max_uses: u32) -> NewToken {
        NewToken {
            id_hex: id.into(),
            secret_sha256: tandem_proto::token::sha256(&[secret; 32]),
            tenant: "acme".into(),
            site: Some("hq".into()),
            replace_device_id: None,
            expires_ms,
            max_uses,
        }
    }

    fn signer(serial: &str) -> impl FnOnce(&Grant) -> Result<IssuedCert, String> + '_ {
        move |_g| {
            Ok(IssuedCert {
                cert_pem: "pem".into(),
                serial_hex: serial.into(),
                not_after_ms: 9_000,
            })
        }
    }

    fn hash(secret: u8) -> [u8; 32] {
        tandem_proto::token::sha256(&[secret; 32])
    }

    #[test]
    fn tenants_and_sites() {
        let (_d, conn) = db();
        create_tenant(&conn, "acme", 1).unwrap();
        assert!(matches!(
            create_tenant(&conn, "acme", 1),
            Err(AdminError::TenantExists(_))
        ));
        assert!(matches!(
            create_tenant(&conn, "Acme Corp", 1),
            Err(AdminError::BadName { .. })
        ));
        create_site(&conn, "acme", "hq", 1).unwrap();
        assert!(matches!(
            create_site(&conn, "nobody", "hq", 1),
            Err(AdminError::NoTenant(_))
        ));
        assert!(matches!(
            create_site(&conn, "acme", "hq", 1),
            Err(AdminError::SiteExists { .. })
        ));
        let t = list_tenants(&conn).unwrap();
        assert_eq!((t[0].name.as_str(), t[0].sites), ("acme", 1));
        assert_eq!(list_sites(&conn, Some("acme")).unwrap().len(), 1);
        assert_eq!(list_sites(&conn, Some("other")).unwrap().len(), 0);
    }

    #[test]
    fn token_checks_in_order_and_uses_are_counted() {
        let (_d, mut conn) = db();
        create_tenant(&conn, "acme", 1).unwrap();
        create_site(&conn, "acme", "hq", 1).unwrap();
        insert_token(&conn, &token("t1", 1, 1_000, 2), 1).unwrap();
        let refusal = |r: Result<_, EnrollFailure>| match r {
            Err(EnrollFailure::Refused(x)) => x,
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        };
        assert_eq!(
            refusal(enroll(&mut conn, "nope", &hash(1), "h", 10, signer("a"))),
            TokenRefusal::Unknown
        );
        assert_eq!(
            refusal(enroll(&mut conn, "t1", &hash(2), "h", 10, signer("a"))),
            TokenRefusal::SecretMismatch
        );
        let (g, _) = enroll(&mut conn, "t1", &hash(1), "h1", 10, signer("a")).unwrap();
        assert_eq!((g.tenant.as_str(), g.site.as_deref()), ("acme", Some("hq")));
        assert!(!g.replaces);
        let (g2, _) = enroll(&mut conn, "t1", &hash(1), "h2", 10, signer("b")).unwrap();
        assert_ne!(g.device_id, g2.device_id, "each enrollment is a new device");
        assert_eq!(
            refusal(enroll(&mut conn, "t1", &hash(1), "h", 10, signer("c"))),
            TokenRefusal::UsedUp { max_uses: 2 }
        );
        insert_token(&conn, &token("t2", 1, 1_000, 1), 1).unwrap();
        assert_eq!(
            refusal(enroll(&mut conn, "t2", &hash(1), "h", 1_000, signer("c"))),
            TokenRefusal::Expired
        );
        // A failed signature uses nothing up.
        assert!(matches!(
            enroll(&mut conn, "t2", &hash(1), "h", 10, |_| Err("boom".into())),
            Err(EnrollFailure::Sign(_))
        ));
        revoke_token(&conn, "t2", 20).unwrap();
        assert_eq!(
            refusal(enroll(&mut conn, "t2", &hash(1), "h", 10, signer("c"))),
            TokenRefusal::Revoked
        );
        let rows = list_tokens(&conn).unwrap();
        assert_eq!(rows[0].state(10), "used up");
        assert_eq!(rows[1].state(10), "revoked");
        let devs = list_devices(&conn).unwrap();
        assert_eq!(devs.len(), 2);
        assert_eq!(devs[0].site.as_deref(), Some("hq"));
        assert_eq!(devs[0].cert_not_after_ms, Some(9_000));
    }

    #[test]
    fn replace_keeps_the_id_and_revokes_old_certificates() {
        let (_d, mut conn) = db();
        create_tenant(&conn, "acme", 1).unwrap();
        create_site(&conn, "acme", "hq", 1).unwrap();
        insert_token(&conn, &token("t1", 1, 1_000, 1), 1).unwrap();
        let (g, _) = enroll(&mut conn, "t1", &hash(1), "h", 10, signer("s1")).unwrap();
        let mut t = token("t2", 2, 1_000, 1);
        t.replace_device_id = Some(g.device_id.clone());
        insert_token(&conn, &t, 1).unwrap();
        let (g2, _) = enroll(&mut conn, "t2", &hash(2), "h", 20, signer("s2")).unwrap();
        assert_eq!(g2.device_id, g.device_id);
        assert!(g2.replaces);
        let revs = revocations_since(&conn, 0).unwrap();
        assert_eq!(revs.len(), 1);
        assert_eq!(revs[0].serial.as_deref(), Some("s1"));
        // Replacing a revoked device is refused at token creation.
        revoke_device(&mut conn, &g.device_id, 30).unwrap();
        let mut t3 = token("t3", 3, 1_000, 1);
        t3.replace_device_id = Some(g.device_id.clone());
        assert!(matches!(
            insert_token(&conn, &t3, 1),
            Err(AdminError::ReplaceRevoked(_))
        ));
        let revs = revocations_since(&conn, revs[0].id).unwrap();
        assert_eq!(revs[0].serial, None, "device revocation covers every cert");
        assert!(!device_in_good_standing(&conn, &g.device_id).unwrap());
    }

    #[test]
    fn renew_requests_are_answered_by_a_newer_certificate() {
        let (_d, mut conn) = db();
        create_tenant(&conn, "acme", 1).unwrap();
        create_site(&conn, "acme", "hq", 1).unwrap();
        insert_token(&conn, &token("t1", 1, 1_000, 1), 1).unwrap();
        let (g, _) = enroll(&mut conn, "t1", &hash(1), "h", 10, signer("s1")).unwrap();
        request_renew(&conn, &g.device_id, 50).unwrap();
        assert_eq!(renew_requests_since(&conn, 0).unwrap().len(), 1);
        let cert = IssuedCert {
            cert_pem: String::new(),
            serial_hex: "s2".into(),
            not_after_ms: 99,
        };
        record_certificate(&conn, &g.device_id, &cert, "renew", 60).unwrap();
        assert!(renew_requests_since(&conn, 0).unwrap().is_empty());
        assert!(matches!(
            request_renew(&conn, "ghost", 1),
            Err(AdminError::NoDevice(_))
        ));
    }
}
