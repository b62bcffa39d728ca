//! Users, roles, sessions, the login rate limit and the audit log (API tokens are in
//! `tokens.rs`).
//!
//! Invariants:
//! - passwords are stored only as argon2id PHC strings; session ids and API tokens
//!   only as their SHA-256; a token is shown once, when created;
//! - a tenant role is bound to exactly one tenant (a CHECK in the schema), and the
//!   [`Principal`] carries that tenant into every query as its scope;
//! - every write goes through a transaction that also appends its audit row;
//! - a login is refused (429) after too many failures for that account or from that
//!   address, before the password is even checked.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rusqlite::{Connection, OptionalExtension, params};

use super::error::ApiError;

/// A row read straight from a join (user or token with its tenant).
pub(super) type Row5<A, B, C, D, E> = Option<(A, B, C, D, E)>;
/// (user, role, tenant id, tenant, csrf, expires)
type SessionRow = Option<(String, String, Option<i64>, Option<String>, String, i64)>;

/// How long a console session lasts.
pub(crate) const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;
/// Shortest password accepted.
pub(crate) const MIN_PASSWORD: usize = 10;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    MspAdmin,
    MspTech,
    TenantAdmin,
    TenantViewer,
}

impl Role {
    pub(crate) const ALL: [Role; 4] = [
        Role::MspAdmin,
        Role::MspTech,
        Role::TenantAdmin,
        Role::TenantViewer,
    ];
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::MspAdmin => "msp-admin",
            Role::MspTech => "msp-tech",
            Role::TenantAdmin => "tenant-admin",
            Role::TenantViewer => "tenant-viewer",
        }
    }
    pub(crate) fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
    /// Bound to one tenant.
    pub(crate) fn is_tenant(self) -> bool {
        matches!(self, Role::TenantAdmin | Role::TenantViewer)
    }
    /// May acknowledge alerts.
    pub(crate) fn can_ack(self) -> bool {
        !matches!(self, Role::TenantViewer)
    }
    /// May manage users and API tokens (a tenant admin: of its own tenant only).
    pub(crate) fn can_admin(self) -> bool {
        matches!(self, Role::MspAdmin | Role::TenantAdmin)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is asking, and what they may see.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    /// User name, or `token:<name>`.
    pub(crate) actor: String,
    pub(crate) role: Role,
    /// The scope: `None` sees every tenant (MSP roles).
    pub(crate) tenant_id: Option<i64>,
    pub(crate) tenant: Option<String>,
    /// The session's CSRF token; `None` for an API token (no cookie, no CSRF).
    pub(crate) csrf: Option<String>,
}

impl Principal {
    pub(crate) fn require_ack(&self) -> Result<(), ApiError> {
        if self.role.can_ack() {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "role {}: read-only, cannot change alerts",
                self.role
            )))
        }
    }
    pub(crate) fn require_admin(&self) -> Result<(), ApiError> {
        if self.role.can_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "role {}: cannot manage users or tokens",
                self.role
            )))
        }
    }
    /// May this principal grant `role` bound to `tenant_id`?
    pub(crate) fn may_grant(&self, role: Role, tenant_id: Option<i64>) -> Result<(), ApiError> {
        self.require_admin()?;
        if self.role == Role::TenantAdmin && (!role.is_tenant() || tenant_id != self.tenant_id) {
            return Err(ApiError::forbidden(
                "a tenant admin grants only tenant roles of its own tenant",
            ));
        }
        Ok(())
    }
}

fn argon() -> Argon2<'static> {
    // argon2id v19, m = 19 MiB, t = 2, p = 1: OWASP's first recommendation.
    Argon2::default()
}

pub(crate) fn hash_password(password: &str) -> Result<String, ApiError> {
    check_password(password)?;
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| ApiError::internal("no randomness for a salt"))?;
    let salt = SaltString::encode_b64(&bytes).map_err(ApiError::internal)?;
    argon()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(ApiError::internal)
}

pub(crate) fn check_password(password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD || password.len() > 1024 {
        return Err(ApiError::bad_request(format!(
            "password: {n} characters; use {MIN_PASSWORD} to 1024"
        )));
    }
    Ok(())
}

pub(crate) fn verify_password(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| argon().verify_password(password.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// A hash to verify against when the user does not exist, so that an unknown name
/// takes as long to refuse as a wrong password.
fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| {
        // Invariant: a constant 17-byte salt, within the 4..=64 bytes encode_b64
        // accepts, so this cannot fail at run time (a unit test calls it).
        let salt = SaltString::encode_b64(b"tandem-dummy-salt").expect("static salt");
        argon()
            .hash_password(b"not a password of anyone", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

pub(crate) fn check_username(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "username {name:?}: use 1 to 64 of a-z A-Z 0-9 . _ @ -"
        )))
    }
}

/// Appends one audit row (inside the caller's transaction).
pub(crate) fn audit(
    conn: &Connection,
    actor: &str,
    tenant_id: Option<i64>,
    action: &'static str,
    target: &str,
    detail: serde_json::Value,
    now_ms: i64,
) -> rusqlite::Result<()> {
    let e = crate::store::AuditEntry::new(actor, action, target, detail);
    crate::store::audit_sql::append(conn, tenant_id, &e, now_ms)
}

pub(crate) fn tenant_id(conn: &Connection, name: &str) -> Result<i64, ApiError> {
    conn.query_row("SELECT id FROM tenants WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .optional()?
    .ok_or_else(|| ApiError::not_found(format!("tenant {name:?}")))
}

/// One user as listed (never with its hash).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct UserRow {
    pub(crate) username: String,
    pub(crate) role: Role,
    pub(crate) tenant: Option<String>,
    pub(crate) created_ms: i64,
}

/// Users, within `scope` (a tenant id) when given.
pub(crate) fn list_users(conn: &Connection, scope: Option<i64>) -> rusqlite::Result<Vec<UserRow>> {
    let mut s = conn.prepare(
        "SELECT u.username, u.role, t.name, u.created_ms FROM users u
         LEFT JOIN tenants t ON t.id = u.tenant_id
         WHERE (?1 IS NULL OR u.tenant_id = ?1) ORDER BY u.username",
    )?;
    let rows = s.query_map([scope], |r| {
        let role: String = r.get(1)?;
        Ok(UserRow {
            username: r.get(0)?,
            role: Role::parse(&role).unwrap_or(Role::TenantViewer),
            tenant: r.get(2)?,
            created_ms: r.get(3)?,
        })
    })?;
    rows.collect()
}

/// Adds a user (and its audit row). `tenant` is required exactly for tenant roles.
pub(crate) fn add_user(
    conn: &mut Connection,
    actor: &str,
    username: &str,
    password_hash: &str,
    role: Role,
    tenant_id: Option<i64>,
    now_ms: i64,
) -> Result<(), ApiError> {
    check_username(username)?;
    if role.is_tenant() != tenant_id.is_some() {
        return Err(ApiError::bad_request(if role.is_tenant() {
            format!("role {role}: needs a tenant")
        } else {
            format!("role {role}: an MSP role takes no tenant")
        }));
    }
    let tx = conn.transaction()?;
    let exists: bool = tx
        .query_row(
            "SELECT 1 FROM users WHERE username = ?1",
            [username],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if exists {
        return Err(ApiError::conflict(format!(
            "user {username:?} exists already"
        )));
    }
    tx.execute(
        "INSERT INTO users (username, password_hash, role, tenant_id, created_ms, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        params![username, password_hash, role.as_str(), tenant_id, now_ms],
    )?;
    audit(
        &tx,
        actor,
        tenant_id,
        "user.add",
        username,
        serde_json::json!({ "role": role.as_str() }),
        now_ms,
    )?;
    tx.commit()?;
    Ok(())
}

/// The user's role and tenant, if it exists within `scope`.
fn user_in_scope(
    conn: &Connection,
    username: &str,
    scope: Option<i64>,
) -> Result<(i64, Role, Option<i64>), ApiError> {
    conn.query_row(
        "SELECT id, role, tenant_id FROM users WHERE username = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
        params![username, scope],
        |r| {
            let role: String = r.get(1)?;
            Ok((r.get(0)?, Role::parse(&role).unwrap_or(Role::TenantViewer), r.get(2)?))
        },
    )
    .optional()?
    .ok_or_else(|| ApiError::not_found(format!("user {username:?}")))
}

/// Sets a user's password; ends its sessions.
pub(crate) fn set_password(
    conn: &mut Connection,
    actor: &str,
    username: &str,
    password_hash: &str,
    scope: Option<i64>,
    now_ms: i64,
) -> Result<(), ApiError> {
    let tx = conn.transaction()?;
    let (id, _, tenant) = user_in_scope(&tx, username, scope)?;
    tx.execute(
        "UPDATE users SET password_hash = ?2, updated_ms = ?3 WHERE id = ?1",
        params![id, password_hash, now_ms],
    )?;
    tx.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
    audit(
        &tx,
        actor,
        tenant,
        "user.passwd",
        username,
        serde_json::json!({}),
        now_ms,
    )?;
    tx.commit()?;
    Ok(())
}

/// Removes a user (its sessions go with it).
pub(crate) fn remove_user(
    conn: &mut Connection,
    actor: &str,
    username: &str,
    scope: Option<i64>,
    now_ms: i64,
) -> Result<(), ApiError> {
    let tx = conn.transaction()?;
    let (id, role, tenant) = user_in_scope(&tx, username, scope)?;
    if role == Role::MspAdmin {
        let admins: i64 = tx.query_row(
            "SELECT count(*) FROM users WHERE role = 'msp-admin'",
            [],
            |r| r.get(0),
        )?;
        if admins <= 1 {
            return Err(ApiError::conflict(format!(
                "user {username:?} is the last msp-admin; add another first"
            )));
        }
    }
    tx.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
    tx.execute("DELETE FROM users WHERE id = ?1", [id])?;
    audit(
        &tx,
        actor,
        tenant,
        "user.remove",
        username,
        serde_json::json!({}),
        now_ms,
    )?;
    tx.commit()?;
    Ok(())
}

/// Changes a user's role (and tenant), found within `scope`; ends its sessions (its
/// next request logs in again with what it may do now). Refuses to demote the last
/// msp-admin and a change that changes nothing. Audited: one row for the tenant the
/// user is in afterwards and, when it moves, one for the tenant it left, each naming
/// only its own tenant (tenant admins read their tenant's rows).
pub(crate) fn set_role(
    conn: &mut Connection,
    actor: &str,
    username: &str,
    role: Role,
    tenant_id: Option<i64>,
    scope: Option<i64>,
    now_ms: i64,
) -> Result<(), ApiError> {
    if role.is_tenant() != tenant_id.is_some() {
        return Err(ApiError::bad_request(if role.is_tenant() {
            format!("role {role}: needs a tenant")
        } else {
            format!("role {role}: an MSP role takes no tenant")
        }));
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let (id, old_role, old_tenant) = user_in_scope(&tx, username, scope)?;
    if old_role == role && old_tenant == tenant_id {
        return Err(ApiError::conflict(format!(
            "user {username:?} has role {role} there already"
        )));
    }
    if old_role == Role::MspAdmin && role != Role::MspAdmin {
        let admins: i64 = tx.query_row(
            "SELECT count(*) FROM users WHERE role = 'msp-admin'",
            [],
            |r| r.get(0),
        )?;
        if admins <= 1 {
            return Err(ApiError::conflict(format!(
                "user {username:?} is the last msp-admin; make another one first"
            )));
        }
    }
    tx.execute(
        "UPDATE users SET role = ?2, tenant_id = ?3, updated_ms = ?4 WHERE id = ?1",
        params![id, role.as_str(), tenant_id, now_ms],
    )?;
    tx.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
    let name_of = |t: Option<i64>| -> rusqlite::Result<Option<String>> {
        match t {
            Some(t) => tx
                .query_row("SELECT name FROM tenants WHERE id = ?1", [t], |r| r.get(0))
                .optional(),
            None => Ok(None),
        }
    };
    let (old_name, new_name) = (name_of(old_tenant)?, name_of(tenant_id)?);
    let moved = old_tenant != tenant_id;
    audit(
        &tx,
        actor,
        tenant_id,
        "user.role",
        username,
        serde_json::json!({
            "from": old_role.as_str(), "to": role.as_str(), "tenant": new_name,
            "moved_in": moved && tenant_id.is_some(),
        }),
        now_ms,
    )?;
    if moved && old_tenant.is_some() {
        audit(
            &tx,
            actor,
            old_tenant,
            "user.role",
            username,
            serde_json::json!({
                "from": old_role.as_str(), "tenant": old_name, "moved_out": true,
            }),
            now_ms,
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Why a login failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LoginError {
    BadCredentials,
}

/// Checks a password; on success creates a session and returns (cookie value, csrf, principal).
pub(crate) fn login(
    conn: &mut Connection,
    username: &str,
    password: &str,
    now_ms: i64,
) -> Result<Result<(String, Principal), LoginError>, ApiError> {
    let row: Row5<i64, String, String, Option<i64>, Option<String>> = conn
        .query_row(
            "SELECT u.id, u.password_hash, u.role, u.tenant_id, t.name FROM users u
             LEFT JOIN tenants t ON t.id = u.tenant_id WHERE u.username = ?1",
            [username],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    let Some((uid, phc, role, tenant_id, tenant)) = row else {
        let _ = verify_password(dummy_hash(), password);
        return Ok(Err(LoginError::BadCredentials));
    };
    if !verify_password(&phc, password) {
        return Ok(Err(LoginError::BadCredentials));
    }
    let role = Role::parse(&role).ok_or_else(|| ApiError::internal("unknown role in users"))?;
    let (cookie, sid_hash) = crate::notify::link::new_api_token().map_err(ApiError::internal)?;
    let (csrf, _) = crate::notify::link::new_api_token().map_err(ApiError::internal)?;
    let tx = conn.transaction()?;
    tx.execute("DELETE FROM sessions WHERE expires_ms < ?1", [now_ms])?;
    tx.execute(
        "INSERT INTO sessions (id_sha256, user_id, csrf, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![sid_hash, uid, csrf, now_ms, now_ms + SESSION_TTL_MS],
    )?;
    audit(
        &tx,
        username,
        tenant_id,
        "session.login",
        username,
        serde_json::json!({}),
        now_ms,
    )?;
    tx.commit()?;
    Ok(Ok((
        cookie,
        Principal {
            actor: username.to_owned(),
            role,
            tenant_id,
            tenant,
            csrf: Some(csrf),
        },
    )))
}

pub(crate) fn logout(conn: &mut Connection, cookie: &str, now_ms: i64) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    let who: Option<(String, Option<i64>)> = tx
        .query_row(
            "SELECT u.username, u.tenant_id FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_sha256 = ?1",
            [crate::notify::link::token_hash(cookie)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((user, tenant)) = who {
        tx.execute(
            "DELETE FROM sessions WHERE id_sha256 = ?1",
            [crate::notify::link::token_hash(cookie)],
        )?;
        audit(
            &tx,
            &user,
            tenant,
            "session.logout",
            &user,
            serde_json::json!({}),
            now_ms,
        )?;
    }
    tx.commit()
}

/// Resolves a session cookie.
pub(crate) fn session_principal(
    conn: &Connection,
    cookie: &str,
    now_ms: i64,
) -> Result<Principal, ApiError> {
    let row: SessionRow = conn
        .query_row(
            "SELECT u.username, u.role, u.tenant_id, t.name, s.csrf, s.expires_ms
             FROM sessions s JOIN users u ON u.id = s.user_id
             LEFT JOIN tenants t ON t.id = u.tenant_id WHERE s.id_sha256 = ?1",
            [crate::notify::link::token_hash(cookie)],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .optional()?;
    let Some((user, role, tenant_id, tenant, csrf, expires)) = row else {
        return Err(ApiError::unauthenticated(
            "session: unknown or ended; log in again",
        ));
    };
    if expires <= now_ms {
        return Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "session_expired",
            "session: expired; log in again",
        ));
    }
    Ok(Principal {
        actor: user,
        role: Role::parse(&role).ok_or_else(|| ApiError::internal("unknown role"))?,
        tenant_id,
        tenant,
        csrf: Some(csrf),
    })
}

/// Failed logins per account and per address in a sliding window.
pub(crate) struct RateLimit {
    window: Duration,
    per_account: usize,
    per_address: usize,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimit {
    pub(crate) fn new(window: Duration, per_account: usize, per_address: usize) -> Self {
        RateLimit {
            window,
            per_account,
            per_address,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn count(&self, key: &str, now: Instant) -> usize {
        let mut m = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let Some(q) = m.get_mut(key) else { return 0 };
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            q.pop_front();
        }
        q.len()
    }

    /// `Some(seconds to wait)` when this account or this address is locked out.
    pub(crate) fn blocked(&self, account: &str, address: &str) -> Option<u64> {
        let now = Instant::now();
        let locked = self.count(&format!("u:{account}"), now) >= self.per_account
            || self.count(&format!("a:{address}"), now) >= self.per_address;
        locked.then_some(self.window.as_secs())
    }

    pub(crate) fn failed(&self, account: &str, address: &str) {
        let now = Instant::now();
        let mut m = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > 100_000 {
            m.clear(); // bounded memory under a spray of made-up names
        }
        for k in [format!("u:{account}"), format!("a:{address}")] {
            m.entry(k).or_default().push_back(now);
        }
    }

    pub(crate) fn succeeded(&self, account: &str) {
        let mut m = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(&format!("u:{account}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_as_argon2id_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(verify_password(&h, "correct horse battery"));
        assert!(!verify_password(&h, "correct horse batterx"));
        assert!(hash_password("short").is_err());
    }

    #[test]
    fn rate_limit_locks_an_account_and_an_address() {
        let rl = RateLimit::new(Duration::from_secs(60), 3, 5);
        for _ in 0..3 {
            assert!(rl.blocked("alice", "10.0.0.1").is_none());
            rl.failed("alice", "10.0.0.1");
        }
        assert!(rl.blocked("alice", "10.0.0.2").is_some(), "per account");
        assert!(rl.blocked("bob", "10.0.0.1").is_none());
        rl.failed("bob", "10.0.0.1");
        rl.failed("carol", "10.0.0.1");
        assert!(rl.blocked("dave", "10.0.0.1").is_some(), "per address");
        assert!(rl.blocked("dave", "10.0.0.3").is_none());
    }
}
