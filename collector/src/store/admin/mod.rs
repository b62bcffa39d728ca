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
//!
//! One file per concern: `tenancy` (tenants, sites), `tokens` (enrollment tokens and
//! why one is refused), `enroll` (enrollment and certificate records), `devices`
//! (revocation, renew and patch-check requests, tags, `device list`). Their items are
//! re-exported here, so callers name them `store::admin::…` as before.

use rusqlite::{Connection, OptionalExtension, params};

mod devices;
mod enroll;
mod tenancy;
mod tokens;

pub(crate) use devices::*;
pub use enroll::*;
pub(crate) use tenancy::*;
pub(crate) use tokens::*;

/// Errors of administrative commands; each says what was wrong with the input.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The store failed (issue 17: a backend-neutral `StoreError`, no `rusqlite`
    /// type in this enum).
    #[error(transparent)]
    Store(#[from] super::StoreError),
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

impl From<rusqlite::Error> for AdminError {
    fn from(e: rusqlite::Error) -> Self {
        AdminError::Store(e.into())
    }
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
