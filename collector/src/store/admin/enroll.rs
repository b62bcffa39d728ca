//! Enrollment and certificates: consuming a token while recording the device and
//! its certificate in one transaction, and the records of certificates issued since.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::AdminError;
use super::tokens::TokenRefusal;

/// What a valid token grants: the device's place and id.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub(crate) tenant: String,
    pub(crate) site: Option<String>,
    pub(crate) device_id: String,
    /// True when the token re-enrolls an existing device (`--replace`).
    pub(crate) replaces: bool,
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
pub(crate) enum EnrollFailure {
    #[error("{}", .0.message())]
    Refused(TokenRefusal),
    #[error("cannot sign the certificate: {0}")]
    Sign(String),
    #[error(transparent)]
    Store(#[from] AdminError),
}

impl From<rusqlite::Error> for EnrollFailure {
    fn from(e: rusqlite::Error) -> Self {
        EnrollFailure::Store(AdminError::from(e))
    }
}

/// Checks a token and, if it is good, signs a certificate with `sign(tenant,
/// device_id)` and records the device, the certificate and the token's use, all in
/// one transaction. A replaced device keeps its id; its earlier certificates are
/// revoked.
pub(crate) fn enroll(
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
pub(crate) fn device_in_good_standing(
    conn: &Connection,
    device_id: &str,
) -> Result<bool, AdminError> {
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
pub(crate) fn certificate_issued(
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
