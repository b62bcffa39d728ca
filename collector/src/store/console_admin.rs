//! [`ConsoleAdmin`]: the console's writes and its authentication behind the store
//! interface (issue 17 item 1): users, sessions, API tokens, maintenance windows,
//! snoozes, silences, enrollment tokens and the audit log that records them.
//!
//! Invariants every implementation keeps (the conformance suite checks them,
//! `conformance/console_admin.rs`):
//! - a scoped method takes the principal's tenant as `scope` (`None`: every
//!   tenant) and does the scoping in its query: another tenant's object is
//!   `NotFound`, exactly as if it did not exist;
//! - every write runs in one transaction that also appends its audit row (the
//!   store composes the row: its verb, target and detail are part of the write,
//!   and some of it — a new row's id, the tenant of what was changed — is only
//!   known inside the transaction); a refused write changes nothing and writes
//!   no audit row;
//! - roles are exchanged as their stored names (`msp-admin`, …): the console's
//!   `Role` sits above the store.
//!
//! Refusals are `StoreError`s whose `what` is the console's wording, so the API
//! answers as before: `NotFound { what: "user \"bob\"" }` (404 `user "bob": not
//! found`), `Conflict { what: "user \"bob\" exists already" }` (409),
//! `Invalid { what }` (400).

use super::StoreError;
use super::api::{IncidentRow, MaintenanceRow, SilenceInsert, SilenceRefusal, SilenceRow};

/// A user as the login reads it (with its password hash, which never leaves the
/// console's check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoginUser {
    pub(crate) id: i64,
    /// An argon2id PHC string.
    pub(crate) password_hash: String,
    pub(crate) role: String,
    pub(crate) tenant_id: Option<i64>,
    pub(crate) tenant: Option<String>,
}

/// A session to start for a user whose password was checked.
#[derive(Debug, Clone)]
pub(crate) struct NewSession<'a> {
    pub(crate) user_id: i64,
    /// The user's name: the audit row's actor and target.
    pub(crate) username: &'a str,
    /// The user's tenant (the audit row's).
    pub(crate) tenant_id: Option<i64>,
    /// SHA-256 (hex) of the cookie: the cookie itself is never stored.
    pub(crate) id_sha256: &'a str,
    pub(crate) csrf: &'a str,
    pub(crate) expires_ms: i64,
}

/// Who a session is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionUser {
    pub(crate) username: String,
    pub(crate) role: String,
    pub(crate) tenant_id: Option<i64>,
    pub(crate) tenant: Option<String>,
    pub(crate) csrf: String,
}

/// A session cookie's hash, looked up at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionLookup {
    /// No such session (never made, logged out, or its user's sessions ended).
    Unknown,
    /// It existed and has expired (`expires_ms <= now`).
    Expired,
    Active(SessionUser),
}

/// An API token as a bearer token resolves to (revoked ones too: the console
/// says "revoked", not "unknown").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenAuth {
    pub(crate) name: String,
    /// `None` for a token of `token create-api` (the feed and `/metrics` only).
    pub(crate) role: Option<String>,
    pub(crate) tenant_id: Option<i64>,
    pub(crate) tenant: Option<String>,
    pub(crate) revoked_ms: Option<i64>,
}

/// An API token as listed (never the token or its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiTokenRow {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) role: Option<String>,
    pub(crate) tenant: Option<String>,
    pub(crate) created_ms: i64,
    pub(crate) created_by: Option<String>,
    pub(crate) revoked_ms: Option<i64>,
}

/// A console API token to store (the token is shown once by the caller).
#[derive(Debug, Clone)]
pub(crate) struct NewApiToken<'a> {
    pub(crate) name: &'a str,
    pub(crate) sha256_hex: &'a str,
    pub(crate) role: &'a str,
    pub(crate) tenant_id: Option<i64>,
}

/// A user as listed (never its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserListRow {
    pub(crate) username: String,
    pub(crate) role: String,
    pub(crate) tenant: Option<String>,
    pub(crate) created_ms: i64,
}

/// A user to add (name, role and tenant checked by the caller).
#[derive(Debug, Clone)]
pub(crate) struct NewUser<'a> {
    pub(crate) username: &'a str,
    pub(crate) password_hash: &'a str,
    pub(crate) role: &'a str,
    pub(crate) tenant_id: Option<i64>,
}

/// A row of the audit log.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AuditLogRow {
    pub(crate) id: i64,
    pub(crate) at_ms: i64,
    pub(crate) actor: String,
    pub(crate) tenant: Option<String>,
    pub(crate) action: String,
    pub(crate) target: String,
    /// `null` when the stored text is not JSON.
    pub(crate) detail: serde_json::Value,
}

/// A maintenance window to make (times checked by the caller).
#[derive(Debug, Clone)]
pub(crate) struct NewWindow<'a> {
    pub(crate) site: Option<&'a str>,
    pub(crate) device: Option<&'a str>,
    pub(crate) starts_ms: i64,
    pub(crate) ends_ms: i64,
    pub(crate) note: &'a str,
}

/// The console's side of the store: what its handlers and `tandem-collector user`
/// read and write. `actor` is the principal's name (`alice`, `token:ci`,
/// `cli:root`), recorded in the audit row.
pub(crate) trait ConsoleAdmin {
    /// The id of the tenant named `name`.
    fn tenant_id(&self, name: &str) -> Result<Option<i64>, StoreError>;
    /// The name of tenant `id`.
    fn tenant_name(&self, id: i64) -> Result<Option<String>, StoreError>;

    // ---------------------------------------------------------------- sessions
    /// The user `username`, for the login's password check.
    fn login_user(&self, username: &str) -> Result<Option<LoginUser>, StoreError>;
    /// Ends the sessions that expired before `now_ms`, starts `s`; audited
    /// (`session.login`).
    fn start_session(&mut self, s: &NewSession<'_>, now_ms: i64) -> Result<(), StoreError>;
    /// Ends the session of that cookie hash; `false` (and no audit row) when there
    /// is none. Audited (`session.logout`, its user as the actor).
    fn end_session(&mut self, id_sha256: &str, now_ms: i64) -> Result<bool, StoreError>;
    /// Who the session of that cookie hash is, at `now_ms`.
    fn session(&self, id_sha256: &str, now_ms: i64) -> Result<SessionLookup, StoreError>;

    // ---------------------------------------------------------------- users
    /// Users within `scope`, by name.
    fn list_users(&self, scope: Option<i64>) -> Result<Vec<UserListRow>, StoreError>;
    /// Adds a user; `Conflict` when the name is taken. Audited (`user.add`).
    fn add_user(&mut self, u: &NewUser<'_>, actor: &str, now_ms: i64) -> Result<(), StoreError>;
    /// Sets the password of a user found within `scope` and ends its sessions.
    /// Audited (`user.passwd`).
    fn set_password(
        &mut self,
        username: &str,
        password_hash: &str,
        scope: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// Removes a user found within `scope`, and its sessions; refuses the last
    /// msp-admin (`Conflict`). Audited (`user.remove`).
    fn remove_user(
        &mut self,
        username: &str,
        scope: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// Changes the role (and tenant) of a user found within `scope`; ends its
    /// sessions. Refuses a change that changes nothing and demoting the last
    /// msp-admin (`Conflict`). Audited (`user.role`): one row for the tenant the
    /// user is in afterwards and, when it moves, one for the tenant it left.
    fn set_role(
        &mut self,
        username: &str,
        role: &str,
        tenant_id: Option<i64>,
        scope: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    // ---------------------------------------------------------------- API tokens
    /// The token whose SHA-256 (hex) this is.
    fn token_auth(&self, sha256_hex: &str) -> Result<Option<TokenAuth>, StoreError>;
    /// API tokens within `scope`, oldest first.
    fn list_api_tokens(&self, scope: Option<i64>) -> Result<Vec<ApiTokenRow>, StoreError>;
    /// Stores a console API token; returns its id. Audited (`token.create`).
    fn add_api_token(
        &mut self,
        t: &NewApiToken<'_>,
        actor: &str,
        now_ms: i64,
    ) -> Result<i64, StoreError>;
    /// Revokes token `id` found within `scope` (revoking again keeps the first
    /// time). Audited (`token.revoke`).
    fn revoke_api_token_in(
        &mut self,
        id: i64,
        scope: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    // ---------------------------------------------------------------- audit log
    /// One page of the audit log within `scope`, newest first, and the count of
    /// all its rows. `page` starts at 1.
    fn audit_page(
        &self,
        scope: Option<i64>,
        page: i64,
        per_page: i64,
    ) -> Result<(Vec<AuditLogRow>, i64), StoreError>;

    // ---------------------------------------------------------------- maintenance
    /// Windows within `scope`, soonest start first (ended ones only with `all`).
    fn list_windows(
        &self,
        scope: Option<i64>,
        all: bool,
        now_ms: i64,
    ) -> Result<Vec<MaintenanceRow>, StoreError>;
    /// Makes a window of tenant `scope` (or, without one, of the device's
    /// tenant); the device must be within `scope`, the site the tenant's.
    /// Audited (`maintenance.create`).
    fn create_window(
        &mut self,
        w: &NewWindow<'_>,
        scope: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<MaintenanceRow, StoreError>;
    /// Deletes window `id` found within `scope`; returns what it was. Audited
    /// (`maintenance.delete`).
    fn delete_window(
        &mut self,
        id: i64,
        scope: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<MaintenanceRow, StoreError>;

    // ---------------------------------------------------------------- snooze, silences
    /// Snoozes incident `id` found within `scope` until `until_ms` (a feed
    /// event and workflow notice as `incidents snooze` writes); `Conflict` when
    /// it is resolved. Returns the incident afterwards. Audited (`alert.snooze`).
    #[allow(clippy::too_many_arguments)]
    fn snooze_in_scope(
        &mut self,
        id: i64,
        scope: Option<i64>,
        until_ms: i64,
        note: Option<&str>,
        actor: &str,
        now_ms: i64,
    ) -> Result<IncidentRow, StoreError>;
    /// Silences within `scope` (a silence belongs to the tenant it names; one
    /// naming none is the MSP's), soonest end first; ended and lifted ones only
    /// with `all`.
    fn list_silences_in(
        &self,
        scope: Option<i64>,
        all: bool,
        now_ms: i64,
    ) -> Result<Vec<SilenceRow>, StoreError>;
    /// The tenant (id, name) a new silence of the console belongs to: `scope`,
    /// or without one the device's tenant.
    fn silence_tenant(
        &self,
        scope: Option<i64>,
        device: Option<&str>,
    ) -> Result<(Option<i64>, Option<String>), StoreError>;
    /// Stores a checked silence of tenant `tenant_id`; returns it as stored, or
    /// the refusal of its names (nothing written). Audited (`silence.create`).
    fn create_silence_audited(
        &mut self,
        s: &SilenceInsert,
        tenant_id: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<Result<SilenceRow, SilenceRefusal>, StoreError>;
    /// Lifts silence `id` found within `scope`; `Conflict` when it was lifted or
    /// has ended already. Audited (`silence.expire`).
    fn expire_silence(
        &mut self,
        id: i64,
        scope: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    // ---------------------------------------------------------------- enrollment tokens
    /// Enrollment tokens within `scope`, newest first.
    fn list_enroll_tokens(
        &self,
        scope: Option<i64>,
    ) -> Result<Vec<super::admin::TokenRow>, StoreError>;
    /// Stores an enrollment token of tenant `tenant_id` (`t.tenant` is its name);
    /// a site or device that does not exist is `NotFound`. Audited
    /// (`enroll_token.create`, with the address agents dial).
    fn create_enroll_token(
        &mut self,
        t: &super::admin::NewToken,
        tenant_id: i64,
        address: &str,
        actor: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// Revokes enrollment token `id` found within `scope`; `Conflict` when it
    /// is revoked already. Audited (`enroll_token.revoke`).
    fn revoke_enroll_token(
        &mut self,
        id: &str,
        scope: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;
}
