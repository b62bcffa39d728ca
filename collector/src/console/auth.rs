//! Users, roles, sessions and the login rate limit (API tokens are in `tokens.rs`).
//! What is stored is read and written through the store's [`ConsoleAdmin`], which
//! writes each change's audit row in the change's transaction; passwords are hashed
//! and checked here, and the rate limit is in memory.
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

use super::error::ApiError;
use crate::store::console_admin::{ConsoleAdmin, NewSession, NewUser, SessionLookup};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

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

/// The id of the tenant named `name` (404 when there is none).
pub(crate) fn tenant_id(s: &impl ConsoleAdmin, name: &str) -> Result<i64, ApiError> {
    s.tenant_id(name)?
        .ok_or_else(|| ApiError::not_found(format!("tenant {name:?}")))
}

impl Principal {
    /// The tenant a request is about: the principal's own for a tenant role
    /// (another named tenant does not exist for it), or the named one, or all
    /// (`None`).
    pub(crate) fn scope_in(
        &self,
        s: &impl crate::store::console_query::ScopeLookup,
        requested: Option<&str>,
    ) -> Result<Option<i64>, ApiError> {
        match (self.tenant_id, requested) {
            (Some(own), None) => Ok(Some(own)),
            (Some(own), Some(t)) if Some(t) == self.tenant.as_deref() => Ok(Some(own)),
            (Some(_), Some(t)) => Err(ApiError::not_found(format!("tenant {t:?}"))),
            (None, Some(t)) => crate::store::console_query::ScopeLookup::tenant_id(s, t)?
                .map(Some)
                .ok_or_else(|| ApiError::not_found(format!("tenant {t:?}"))),
            (None, None) => Ok(None),
        }
    }
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
pub(crate) fn list_users(
    s: &impl ConsoleAdmin,
    scope: Option<i64>,
) -> Result<Vec<UserRow>, ApiError> {
    Ok(s.list_users(scope)?
        .into_iter()
        .map(|u| UserRow {
            role: Role::parse(&u.role).unwrap_or(Role::TenantViewer),
            username: u.username,
            tenant: u.tenant,
            created_ms: u.created_ms,
        })
        .collect())
}

/// Refuses a tenant for an MSP role and none for a tenant role.
fn check_role_tenant(role: Role, tenant_id: Option<i64>) -> Result<(), ApiError> {
    if role.is_tenant() != tenant_id.is_some() {
        return Err(ApiError::bad_request(if role.is_tenant() {
            format!("role {role}: needs a tenant")
        } else {
            format!("role {role}: an MSP role takes no tenant")
        }));
    }
    Ok(())
}

/// Adds a user (and its audit row). `tenant` is required exactly for tenant roles.
pub(crate) fn add_user(
    s: &mut impl ConsoleAdmin,
    actor: &str,
    username: &str,
    password_hash: &str,
    role: Role,
    tenant_id: Option<i64>,
    now_ms: i64,
) -> Result<(), ApiError> {
    check_username(username)?;
    check_role_tenant(role, tenant_id)?;
    let u = NewUser {
        username,
        password_hash,
        role: role.as_str(),
        tenant_id,
    };
    Ok(s.add_user(&u, actor, now_ms)?)
}

/// Sets a user's password; ends its sessions.
pub(crate) fn set_password(
    s: &mut impl ConsoleAdmin,
    actor: &str,
    username: &str,
    password_hash: &str,
    scope: Option<i64>,
    now_ms: i64,
) -> Result<(), ApiError> {
    Ok(s.set_password(username, password_hash, scope, actor, now_ms)?)
}

/// Removes a user (its sessions go with it).
pub(crate) fn remove_user(
    s: &mut impl ConsoleAdmin,
    actor: &str,
    username: &str,
    scope: Option<i64>,
    now_ms: i64,
) -> Result<(), ApiError> {
    Ok(s.remove_user(username, scope, actor, now_ms)?)
}

/// Changes a user's role (and tenant), found within `scope`; ends its sessions (its
/// next request logs in again with what it may do now). Refuses to demote the last
/// msp-admin and a change that changes nothing. Audited: one row for the tenant the
/// user is in afterwards and, when it moves, one for the tenant it left, each naming
/// only its own tenant (tenant admins read their tenant's rows).
pub(crate) fn set_role(
    s: &mut impl ConsoleAdmin,
    actor: &str,
    username: &str,
    role: Role,
    tenant_id: Option<i64>,
    scope: Option<i64>,
    now_ms: i64,
) -> Result<(), ApiError> {
    check_role_tenant(role, tenant_id)?;
    Ok(s.set_role(username, role.as_str(), tenant_id, scope, actor, now_ms)?)
}

/// Why a login failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LoginError {
    BadCredentials,
}

/// Checks a password; on success creates a session and returns (cookie value, csrf, principal).
pub(crate) fn login(
    s: &mut impl ConsoleAdmin,
    username: &str,
    password: &str,
    now_ms: i64,
) -> Result<Result<(String, Principal), LoginError>, ApiError> {
    let Some(u) = s.login_user(username)? else {
        let _ = verify_password(dummy_hash(), password);
        return Ok(Err(LoginError::BadCredentials));
    };
    if !verify_password(&u.password_hash, password) {
        return Ok(Err(LoginError::BadCredentials));
    }
    let role = Role::parse(&u.role).ok_or_else(|| ApiError::internal("unknown role in users"))?;
    let (cookie, sid_hash) = crate::notify::link::new_api_token().map_err(ApiError::internal)?;
    let (csrf, _) = crate::notify::link::new_api_token().map_err(ApiError::internal)?;
    s.start_session(
        &NewSession {
            user_id: u.id,
            username,
            tenant_id: u.tenant_id,
            id_sha256: &sid_hash,
            csrf: &csrf,
            expires_ms: now_ms + SESSION_TTL_MS,
        },
        now_ms,
    )?;
    Ok(Ok((
        cookie,
        Principal {
            actor: username.to_owned(),
            role,
            tenant_id: u.tenant_id,
            tenant: u.tenant,
            csrf: Some(csrf),
        },
    )))
}

/// Ends the session of this cookie (nothing when it has ended already).
pub(crate) fn logout(s: &mut impl ConsoleAdmin, cookie: &str, now_ms: i64) -> Result<(), ApiError> {
    s.end_session(&crate::notify::link::token_hash(cookie), now_ms)?;
    Ok(())
}

/// Resolves a session cookie.
pub(crate) fn session_principal(
    s: &impl ConsoleAdmin,
    cookie: &str,
    now_ms: i64,
) -> Result<Principal, ApiError> {
    match s.session(&crate::notify::link::token_hash(cookie), now_ms)? {
        SessionLookup::Unknown => Err(ApiError::unauthenticated(
            "session: unknown or ended; log in again",
        )),
        SessionLookup::Expired => Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "session_expired",
            "session: expired; log in again",
        )),
        SessionLookup::Active(u) => Ok(Principal {
            role: Role::parse(&u.role).ok_or_else(|| ApiError::internal("unknown role"))?,
            actor: u.username,
            tenant_id: u.tenant_id,
            tenant: u.tenant,
            csrf: Some(u.csrf),
        }),
    }
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
