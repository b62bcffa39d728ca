//! The SQLite implementation of [`ConsoleAdmin`]: the console's statements moved as
//! they were from `console::{auth, tokens, users, maintenance, actions, enroll}` and
//! `alerts::silence::create_in` (issue 17 item 1), same statements, same tenant
//! scoping (the tenant id a bound parameter), same audit rows.
//!
//! Every write goes through [`audited`], the one shape they share: `BEGIN
//! IMMEDIATE`, the scope check and the write, the audit rows, commit — an error
//! anywhere rolls the whole of it back, so a refused write leaves no row and no
//! audit row.
//!
//! The statements are free functions on a connection (as in `console_query_sql`);
//! the trait is implemented on [`Db`] alone, so nothing outside `store/` reaches
//! them with a bare `rusqlite::Connection`. A file per section of the trait:
//! [`sessions`] (tenants, logins, sessions, users), [`tokens`] (API tokens),
//! [`maintenance`] (maintenance windows, snooze, silences) and [`enroll`]
//! (enrollment tokens); [`audited`], its helpers and the audit page are here.

use rusqlite::{Connection, Transaction, TransactionBehavior, params};

use super::api::{IncidentRow, MaintenanceRow, SilenceInsert, SilenceRefusal, SilenceRow};
use super::console_admin::{
    ApiTokenRow, AuditLogRow, ConsoleAdmin, LoginUser, NewApiToken, NewSession, NewUser, NewWindow,
    SessionLookup, TokenAuth, UserListRow,
};
use super::{AuditEntry, Db, StoreError, admin, audit_sql};

mod enroll;
mod maintenance;
mod sessions;
mod tokens;

/// The audit rows of a write: (the tenant the change falls in, the entry).
type AuditRows = Vec<(Option<i64>, AuditEntry)>;

/// The console's write: runs `f` (scope check and write) in a `BEGIN IMMEDIATE`
/// transaction, appends the audit rows it returns, commits. An `Err` from `f`
/// rolls everything back.
fn audited<T>(
    conn: &mut Connection,
    now_ms: i64,
    f: impl FnOnce(&Transaction<'_>) -> Result<(T, AuditRows), StoreError>,
) -> Result<T, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (out, rows) = f(&tx)?;
    for (tenant, e) in &rows {
        audit_sql::append(&tx, *tenant, e, now_ms)?;
    }
    tx.commit()?;
    Ok(out)
}

fn one(tenant: Option<i64>, e: AuditEntry) -> AuditRows {
    vec![(tenant, e)]
}

fn not_found(what: String) -> StoreError {
    StoreError::NotFound { what }
}

fn conflict(what: String) -> StoreError {
    StoreError::Conflict { what }
}

/// A page of the audit log within `scope`, newest first, and the total.
fn audit_page(
    c: &Connection,
    scope: Option<i64>,
    page: i64,
    per_page: i64,
) -> Result<(Vec<AuditLogRow>, i64), StoreError> {
    let total: i64 = c.query_row(
        "SELECT count(*) FROM audit_log WHERE (?1 IS NULL OR tenant_id = ?1)",
        [scope],
        |r| r.get(0),
    )?;
    let items = c
        .prepare(
            "SELECT a.id, a.at_ms, a.actor, t.name, a.action, a.target, a.detail FROM audit_log a
             LEFT JOIN tenants t ON t.id = a.tenant_id WHERE (?1 IS NULL OR a.tenant_id = ?1)
             ORDER BY a.id DESC LIMIT ?2 OFFSET ?3",
        )?
        .query_map(params![scope, per_page, (page - 1) * per_page], |r| {
            let detail: String = r.get(6)?;
            Ok(AuditLogRow {
                id: r.get(0)?,
                at_ms: r.get(1)?,
                actor: r.get(2)?,
                tenant: r.get(3)?,
                action: r.get(4)?,
                target: r.get(5)?,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((items, total))
}

impl ConsoleAdmin for Db {
    fn tenant_id(&self, name: &str) -> Result<Option<i64>, StoreError> {
        sessions::tenant_id(self.conn(), name)
    }
    fn tenant_name(&self, id: i64) -> Result<Option<String>, StoreError> {
        sessions::tenant_name(self.conn(), id)
    }
    fn login_user(&self, username: &str) -> Result<Option<LoginUser>, StoreError> {
        sessions::login_user(self.conn(), username)
    }
    fn start_session(&mut self, s: &NewSession<'_>, now_ms: i64) -> Result<(), StoreError> {
        sessions::start_session(self.conn_mut(), s, now_ms)
    }
    fn end_session(&mut self, id_sha256: &str, now_ms: i64) -> Result<bool, StoreError> {
        sessions::end_session(self.conn_mut(), id_sha256, now_ms)
    }
    fn session(&self, id_sha256: &str, now_ms: i64) -> Result<SessionLookup, StoreError> {
        sessions::session(self.conn(), id_sha256, now_ms)
    }
    fn list_users(&self, scope: Option<i64>) -> Result<Vec<UserListRow>, StoreError> {
        sessions::list_users(self.conn(), scope)
    }
    fn add_user(&mut self, u: &NewUser<'_>, actor: &str, now_ms: i64) -> Result<(), StoreError> {
        sessions::add_user(self.conn_mut(), u, actor, now_ms)
    }
    fn set_password(
        &mut self,
        username: &str,
        password_hash: &str,
        scope: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sessions::set_password(
            self.conn_mut(),
            username,
            password_hash,
            scope,
            actor,
            now_ms,
        )
    }
    fn remove_user(
        &mut self,
        username: &str,
        scope: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sessions::remove_user(self.conn_mut(), username, scope, actor, now_ms)
    }
    fn set_role(
        &mut self,
        username: &str,
        role: &str,
        tenant_id: Option<i64>,
        scope: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sessions::set_role(
            self.conn_mut(),
            username,
            role,
            tenant_id,
            scope,
            actor,
            now_ms,
        )
    }
    fn token_auth(&self, sha256_hex: &str) -> Result<Option<TokenAuth>, StoreError> {
        tokens::token_auth(self.conn(), sha256_hex)
    }
    fn list_api_tokens(&self, scope: Option<i64>) -> Result<Vec<ApiTokenRow>, StoreError> {
        tokens::list_api_tokens(self.conn(), scope)
    }
    fn add_api_token(
        &mut self,
        t: &NewApiToken<'_>,
        actor: &str,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        tokens::add_api_token(self.conn_mut(), t, actor, now_ms)
    }
    fn revoke_api_token_in(
        &mut self,
        id: i64,
        scope: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        tokens::revoke_api_token_in(self.conn_mut(), id, scope, actor, now_ms)
    }
    fn audit_page(
        &self,
        scope: Option<i64>,
        page: i64,
        per_page: i64,
    ) -> Result<(Vec<AuditLogRow>, i64), StoreError> {
        audit_page(self.conn(), scope, page, per_page)
    }
    fn list_windows(
        &self,
        scope: Option<i64>,
        all: bool,
        now_ms: i64,
    ) -> Result<Vec<MaintenanceRow>, StoreError> {
        maintenance::list_windows(self.conn(), scope, all, now_ms)
    }
    fn create_window(
        &mut self,
        w: &NewWindow<'_>,
        scope: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<MaintenanceRow, StoreError> {
        maintenance::create_window(self.conn_mut(), w, scope, actor, now_ms)
    }
    fn delete_window(
        &mut self,
        id: i64,
        scope: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<MaintenanceRow, StoreError> {
        maintenance::delete_window(self.conn_mut(), id, scope, actor, now_ms)
    }
    fn snooze_in_scope(
        &mut self,
        id: i64,
        scope: Option<i64>,
        until_ms: i64,
        note: Option<&str>,
        actor: &str,
        now_ms: i64,
    ) -> Result<IncidentRow, StoreError> {
        maintenance::snooze_in_scope(self.conn_mut(), id, scope, until_ms, note, actor, now_ms)
    }
    fn list_silences_in(
        &self,
        scope: Option<i64>,
        all: bool,
        now_ms: i64,
    ) -> Result<Vec<SilenceRow>, StoreError> {
        maintenance::list_silences_in(self.conn(), scope, all, now_ms)
    }
    fn silence_tenant(
        &self,
        scope: Option<i64>,
        device: Option<&str>,
    ) -> Result<(Option<i64>, Option<String>), StoreError> {
        maintenance::silence_tenant(self.conn(), scope, device)
    }
    fn create_silence_audited(
        &mut self,
        s: &SilenceInsert,
        tenant_id: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<Result<SilenceRow, SilenceRefusal>, StoreError> {
        maintenance::create_silence_audited(self.conn_mut(), s, tenant_id, actor, now_ms)
    }
    fn expire_silence(
        &mut self,
        id: i64,
        scope: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        maintenance::expire_silence(self.conn_mut(), id, scope, actor, now_ms)
    }
    fn list_enroll_tokens(&self, scope: Option<i64>) -> Result<Vec<admin::TokenRow>, StoreError> {
        enroll::list_enroll_tokens(self.conn(), scope)
    }
    fn create_enroll_token(
        &mut self,
        t: &admin::NewToken,
        tenant_id: i64,
        address: &str,
        actor: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        enroll::create_enroll_token(self.conn_mut(), t, tenant_id, address, actor, now_ms)
    }
    fn revoke_enroll_token(
        &mut self,
        id: &str,
        scope: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        enroll::revoke_enroll_token(self.conn_mut(), id, scope, actor, now_ms)
    }
}
