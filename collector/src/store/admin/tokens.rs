//! Enrollment tokens: storing one (never its secret), listing and revoking them, and
//! why one is refused at enrollment ([`TokenRefusal`]).

use rusqlite::{Connection, OptionalExtension, params};

use super::{AdminError, site_id, tenant_id};

/// A token to store (the secret itself is never passed here).
#[derive(Debug, Clone)]
pub(crate) struct NewToken {
    pub(crate) id_hex: String,
    pub(crate) secret_sha256: [u8; 32],
    pub(crate) tenant: String,
    pub(crate) site: Option<String>,
    pub(crate) replace_device_id: Option<String>,
    pub(crate) expires_ms: i64,
    pub(crate) max_uses: u32,
}

/// Stores a new token after checking that its tenant, site and replaced device exist.
pub(crate) fn insert_token(conn: &Connection, t: &NewToken, now_ms: i64) -> Result<(), AdminError> {
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
pub(crate) struct TokenRow {
    pub(crate) id: String,
    pub(crate) tenant: String,
    pub(crate) site: Option<String>,
    pub(crate) replace_device_id: Option<String>,
    pub(crate) created_ms: i64,
    pub(crate) expires_ms: i64,
    pub(crate) uses: i64,
    pub(crate) max_uses: i64,
    pub(crate) revoked_ms: Option<i64>,
}

impl TokenRow {
    /// "usable", "expired", "used up" or "revoked" at `now_ms`.
    pub(crate) fn state(&self, now_ms: i64) -> &'static str {
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

/// The columns of a [`TokenRow`], for [`token_row`]; callers add their own
/// `WHERE` / `ORDER BY` (the CLI lists every token, the console one tenant's).
pub(crate) const TOKEN_SELECT: &str =
    "SELECT k.id, t.name, s.name, k.replace_device_id, k.created_ms, k.expires_ms, k.uses,
                k.max_uses, k.revoked_ms
         FROM enroll_tokens k JOIN tenants t ON t.id = k.tenant_id
         LEFT JOIN sites s ON s.id = k.site_id";

/// One row of [`TOKEN_SELECT`].
pub(crate) fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
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
}

pub(crate) fn list_tokens(conn: &Connection) -> Result<Vec<TokenRow>, AdminError> {
    let mut stmt = conn.prepare(&format!("{TOKEN_SELECT} ORDER BY k.created_ms"))?;
    let rows = stmt.query_map([], token_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn revoke_token(conn: &Connection, id: &str, now_ms: i64) -> Result<(), AdminError> {
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
pub(crate) enum TokenRefusal {
    Unknown,
    SecretMismatch,
    Revoked,
    Expired,
    UsedUp { max_uses: i64 },
    ReplaceRevoked,
}

impl TokenRefusal {
    pub(crate) fn message(&self) -> String {
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

/// Stores an API token's hash (`token create-api`; `alerts tail`'s local token,
/// `created_by` 'alerts tail'); returns its id.
pub(crate) fn create_api_token(
    conn: &Connection,
    name: &str,
    sha256_hex: &str,
    created_by: Option<&str>,
    now_ms: i64,
) -> Result<i64, AdminError> {
    conn.execute(
        "INSERT INTO api_tokens (name, sha256_hex, created_ms, created_by) VALUES (?1, ?2, ?3, ?4)",
        params![name, sha256_hex, now_ms, created_by],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Revokes an API token (from `now_ms`).
pub(crate) fn revoke_api_token(conn: &Connection, id: i64, now_ms: i64) -> Result<(), AdminError> {
    conn.execute(
        "UPDATE api_tokens SET revoked_ms = ?2 WHERE id = ?1",
        params![id, now_ms],
    )?;
    Ok(())
}
