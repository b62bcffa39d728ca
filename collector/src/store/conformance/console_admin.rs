//! Conformance of [`ConsoleAdmin`] (the console's writes and authentication), written
//! against the traits only, on the standard fixture of [`super`] (tenants `acme` = 1
//! and `globex` = 2, site `hq` and device `d1` in acme). What callers rely on:
//! a write outside the principal's scope is `NotFound`, changes nothing and writes
//! no audit row; every write writes exactly one audit row (a role change that moves
//! a user between tenants: one per tenant); sessions expire and end with their
//! user's password or the user; a revoked token no longer authenticates.

use crate::store::StoreError;
use crate::store::admin::NewToken;
use crate::store::api::{AlertStore, NotifyStore, SilenceInsert, SilenceRefusal};
use crate::store::console_admin::{
    ConsoleAdmin, NewApiToken, NewSession, NewUser, NewWindow, SessionLookup,
};

const ACME: Option<i64> = Some(1);
const GLOBEX: Option<i64> = Some(2);

/// How many audit rows there are (all tenants).
fn audit_rows<S: ConsoleAdmin>(s: &S) -> i64 {
    s.audit_page(None, 1, 1).unwrap().1
}

/// The newest audit row's (action, target, tenant).
fn last_audit<S: ConsoleAdmin>(s: &S) -> (String, String, Option<String>) {
    let (rows, _) = s.audit_page(None, 1, 1).unwrap();
    let a = rows.into_iter().next().expect("an audit row");
    (a.action, a.target, a.tenant)
}

fn user<'a>(name: &'a str, role: &'a str, tenant_id: Option<i64>) -> NewUser<'a> {
    NewUser {
        username: name,
        password_hash: "$argon2id$v=19$x",
        role,
        tenant_id,
    }
}

fn session<'a>(user_id: i64, username: &'a str, id: &'a str, expires_ms: i64) -> NewSession<'a> {
    NewSession {
        user_id,
        username,
        tenant_id: None,
        id_sha256: id,
        csrf: "csrf",
        expires_ms,
    }
}

fn silence(tenant: Option<&str>, device: Option<&str>) -> SilenceInsert {
    SilenceInsert {
        starts_ms: 10,
        ends_ms: 10_000,
        tenant: tenant.map(str::to_owned),
        site: None,
        tag: None,
        device: device.map(str::to_owned),
        rule: None,
        comment: "disk swap".into(),
        by: "alice".into(),
        rrule: None,
        tz: None,
        duration_ms: None,
    }
}

fn enroll_token(id: &str, site: Option<&str>) -> NewToken {
    NewToken {
        id_hex: id.into(),
        secret_sha256: [7; 32],
        tenant: "acme".into(),
        site: site.map(str::to_owned),
        replace_device_id: None,
        expires_ms: 1_000_000,
        max_uses: 3,
    }
}

fn not_found<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::NotFound { what: w }) => assert_eq!(w, what),
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

fn conflict<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::Conflict { what: w }) => assert_eq!(w, what),
        other => panic!("{what}: expected Conflict, got {other:?}"),
    }
}

/// Every write appends exactly one audit row, in the tenant of what it changed,
/// named by a stable verb.
pub(crate) fn every_console_write_writes_one_audit_row<S>(mut s: S)
where
    S: ConsoleAdmin + AlertStore + NotifyStore,
{
    let mut n = audit_rows(&s);
    let mut step = |s: &S, action: &str, target: &str, tenant: Option<&str>| {
        n += 1;
        assert_eq!(audit_rows(s), n, "{action}: one row");
        assert_eq!(
            last_audit(s),
            (action.into(), target.into(), tenant.map(str::to_owned)),
        );
    };
    s.add_user(&user("root", "msp-admin", None), "cli:x", 1)
        .unwrap();
    step(&s, "user.add", "root", None);
    s.add_user(&user("alice", "tenant-admin", ACME), "root", 2)
        .unwrap();
    step(&s, "user.add", "alice", Some("acme"));
    s.set_password("alice", "$argon2id$v=19$y", ACME, "alice", 3)
        .unwrap();
    step(&s, "user.passwd", "alice", Some("acme"));
    let uid = s.login_user("alice").unwrap().unwrap().id;
    s.start_session(
        &NewSession {
            tenant_id: ACME,
            ..session(uid, "alice", "s1", 1_000)
        },
        4,
    )
    .unwrap();
    step(&s, "session.login", "alice", Some("acme"));
    assert!(s.end_session("s1", 5).unwrap());
    step(&s, "session.logout", "alice", Some("acme"));
    s.set_role("alice", "tenant-viewer", ACME, None, "root", 6)
        .unwrap();
    step(&s, "user.role", "alice", Some("acme"));

    let tok = s
        .add_api_token(
            &NewApiToken {
                name: "ci",
                sha256_hex: "ab",
                role: "tenant-admin",
                tenant_id: ACME,
            },
            "root",
            7,
        )
        .unwrap();
    step(&s, "token.create", &format!("token {tok}"), Some("acme"));
    s.revoke_api_token_in(tok, ACME, "root", 8).unwrap();
    step(&s, "token.revoke", &format!("token {tok}"), Some("acme"));

    let w = s
        .create_window(
            &NewWindow {
                site: Some("hq"),
                device: Some("d1"),
                starts_ms: 10,
                ends_ms: 20,
                note: "patching",
            },
            None,
            "root",
            9,
        )
        .unwrap();
    assert_eq!(
        (w.tenant.as_str(), w.site.as_deref(), w.device_id.as_deref()),
        ("acme", Some("hq"), Some("d1")),
        "a window of a device is its tenant's"
    );
    step(
        &s,
        "maintenance.create",
        &format!("maintenance window {}", w.id),
        Some("acme"),
    );
    assert_eq!(s.list_windows(ACME, true, 9).unwrap().len(), 1);
    let gone = s.delete_window(w.id, ACME, "root", 10).unwrap();
    assert_eq!(gone.note, "patching");
    step(
        &s,
        "maintenance.delete",
        &format!("maintenance window {}", w.id),
        Some("acme"),
    );
    assert!(s.list_windows(None, true, 10).unwrap().is_empty());

    s.save_round(&[super::firing()], 10).unwrap();
    let inc = s.incidents(Some("acme"), false).unwrap()[0].id;
    let i = s
        .snooze_in_scope(inc, ACME, 5_000, Some("later"), "alice", 11)
        .unwrap();
    assert_eq!(
        (i.state.as_str(), i.snoozed_until_ms, i.ack_note.as_deref()),
        ("snoozed", Some(5_000), Some("later"))
    );
    step(&s, "alert.snooze", &format!("alert {inc}"), Some("acme"));

    let (tid, name) = s.silence_tenant(None, Some("d1")).unwrap();
    assert_eq!((tid, name.as_deref()), (ACME, Some("acme")));
    let row = s
        .create_silence_audited(&silence(Some("acme"), Some("d1")), tid, "alice", 12)
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.comment.as_str(), row.created_by.as_str()),
        ("disk swap", "alice")
    );
    step(
        &s,
        "silence.create",
        &format!("silence {}", row.id),
        Some("acme"),
    );
    assert_eq!(s.list_silences_in(ACME, false, 12).unwrap().len(), 1);
    s.expire_silence(row.id, ACME, "alice", 13).unwrap();
    step(
        &s,
        "silence.expire",
        &format!("silence {}", row.id),
        Some("acme"),
    );
    assert!(s.list_silences_in(ACME, false, 13).unwrap().is_empty());
    conflict(
        s.expire_silence(row.id, ACME, "alice", 14),
        &format!("silence {}: already expired", row.id),
    );

    s.create_enroll_token(
        &enroll_token("00ab", Some("hq")),
        1,
        "c.example:4444",
        "root",
        15,
    )
    .unwrap();
    step(
        &s,
        "enroll_token.create",
        "enrollment token 00ab",
        Some("acme"),
    );
    assert_eq!(
        s.list_enroll_tokens(ACME).unwrap()[0].site.as_deref(),
        Some("hq")
    );
    s.revoke_enroll_token("00ab", ACME, "root", 16).unwrap();
    step(
        &s,
        "enroll_token.revoke",
        "enrollment token 00ab",
        Some("acme"),
    );
    conflict(
        s.revoke_enroll_token("00ab", ACME, "root", 17),
        "enrollment token 00ab: already revoked",
    );

    s.remove_user("alice", None, "root", 18).unwrap();
    step(&s, "user.remove", "alice", Some("acme"));
    // Refusals write nothing.
    conflict(
        s.remove_user("root", None, "root", 19),
        "user \"root\" is the last msp-admin; add another first",
    );
    conflict(
        s.add_user(&user("root", "msp-tech", None), "root", 20),
        "user \"root\" exists already",
    );
    assert_eq!(audit_rows(&s), n, "a refused write writes no audit row");
}

/// A write with another tenant's scope is `NotFound` (as if the object did not
/// exist), changes nothing and writes no audit row.
pub(crate) fn a_console_write_outside_the_scope_changes_nothing<S>(mut s: S)
where
    S: ConsoleAdmin + AlertStore + NotifyStore,
{
    s.add_user(&user("alice", "tenant-admin", ACME), "root", 1)
        .unwrap();
    let tok = s
        .add_api_token(
            &NewApiToken {
                name: "ci",
                sha256_hex: "ab",
                role: "tenant-admin",
                tenant_id: ACME,
            },
            "root",
            2,
        )
        .unwrap();
    let w = s
        .create_window(
            &NewWindow {
                site: None,
                device: None,
                starts_ms: 10,
                ends_ms: 20,
                note: "patching",
            },
            ACME,
            "root",
            3,
        )
        .unwrap();
    s.save_round(&[super::firing()], 10).unwrap();
    let inc = s.incidents(Some("acme"), false).unwrap()[0].id;
    let sil = s
        .create_silence_audited(&silence(Some("acme"), None), ACME, "root", 4)
        .unwrap()
        .unwrap();
    s.create_enroll_token(&enroll_token("00ab", None), 1, "c.example:4444", "root", 5)
        .unwrap();
    let before = audit_rows(&s);

    not_found(
        s.set_password("alice", "other", GLOBEX, "bob", 6),
        "user \"alice\"",
    );
    not_found(s.remove_user("alice", GLOBEX, "bob", 6), "user \"alice\"");
    not_found(
        s.set_role("alice", "tenant-viewer", GLOBEX, GLOBEX, "bob", 6),
        "user \"alice\"",
    );
    not_found(
        s.revoke_api_token_in(tok, GLOBEX, "bob", 6),
        &format!("token {tok}"),
    );
    not_found(
        s.create_window(
            &NewWindow {
                site: None,
                device: Some("d1"),
                starts_ms: 10,
                ends_ms: 20,
                note: "x",
            },
            GLOBEX,
            "bob",
            6,
        ),
        "device \"d1\"",
    );
    not_found(
        s.create_window(
            &NewWindow {
                site: Some("hq"),
                device: None,
                starts_ms: 10,
                ends_ms: 20,
                note: "x",
            },
            GLOBEX,
            "bob",
            6,
        ),
        "site \"hq\"",
    );
    not_found(
        s.delete_window(w.id, GLOBEX, "bob", 6),
        &format!("maintenance window {}", w.id),
    );
    not_found(
        s.snooze_in_scope(inc, GLOBEX, 5_000, None, "bob", 6),
        &format!("alert {inc}"),
    );
    not_found(
        s.expire_silence(sil.id, GLOBEX, "bob", 6),
        &format!("silence {}", sil.id),
    );
    not_found(
        s.revoke_enroll_token("00ab", GLOBEX, "bob", 6),
        "enrollment token \"00ab\"",
    );
    // A silence naming what does not exist is refused, with nothing written.
    assert_eq!(
        s.create_silence_audited(&silence(Some("initech"), None), None, "bob", 6)
            .unwrap()
            .unwrap_err(),
        SilenceRefusal::NoTenant("initech".into())
    );
    assert_eq!(audit_rows(&s), before, "no audit row for a refused write");

    // Nothing changed, and another tenant's objects are not listed.
    let alice = s.login_user("alice").unwrap().unwrap();
    assert_eq!(alice.password_hash, "$argon2id$v=19$x");
    assert_eq!(alice.role, "tenant-admin");
    assert!(s.token_auth("ab").unwrap().unwrap().revoked_ms.is_none());
    assert_eq!(s.list_windows(ACME, true, 6).unwrap().len(), 1);
    assert_eq!(s.incident(inc).unwrap().unwrap().state, "open");
    assert_eq!(s.list_silences_in(ACME, false, 6).unwrap().len(), 1);
    assert!(s.list_enroll_tokens(ACME).unwrap()[0].revoked_ms.is_none());
    assert!(s.list_users(GLOBEX).unwrap().is_empty());
    assert!(s.list_api_tokens(GLOBEX).unwrap().is_empty());
    assert!(s.list_windows(GLOBEX, true, 6).unwrap().is_empty());
    assert!(s.list_silences_in(GLOBEX, true, 6).unwrap().is_empty());
    assert!(s.list_enroll_tokens(GLOBEX).unwrap().is_empty());
    assert_eq!(s.audit_page(GLOBEX, 1, 50).unwrap().1, 0);
    assert_eq!(s.audit_page(ACME, 1, 50).unwrap().1, before);
}

/// A session is active until it expires; a new password or the user's removal
/// ends its sessions; a logout ends it once.
pub(crate) fn sessions_expire_and_end_with_their_user<S: ConsoleAdmin>(mut s: S) {
    s.add_user(&user("root", "msp-admin", None), "cli:x", 1)
        .unwrap();
    s.add_user(&user("alice", "tenant-admin", ACME), "root", 1)
        .unwrap();
    let uid = s.login_user("alice").unwrap().unwrap().id;
    assert!(s.login_user("nobody").unwrap().is_none());
    s.start_session(&session(uid, "alice", "s1", 100), 10)
        .unwrap();
    match s.session("s1", 99).unwrap() {
        SessionLookup::Active(u) => assert_eq!(
            (
                u.username.as_str(),
                u.role.as_str(),
                u.tenant_id,
                u.tenant.as_deref()
            ),
            ("alice", "tenant-admin", ACME, Some("acme"))
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.session("s1", 100).unwrap(), SessionLookup::Expired);
    assert_eq!(s.session("s2", 50).unwrap(), SessionLookup::Unknown);

    s.start_session(&session(uid, "alice", "s2", 1_000), 20)
        .unwrap();
    s.set_password("alice", "new", None, "root", 30).unwrap();
    assert_eq!(
        s.session("s2", 31).unwrap(),
        SessionLookup::Unknown,
        "passwd ends it"
    );

    s.start_session(&session(uid, "alice", "s3", 1_000), 40)
        .unwrap();
    assert!(s.end_session("s3", 41).unwrap());
    assert!(!s.end_session("s3", 42).unwrap(), "ended once");
    assert_eq!(s.session("s3", 43).unwrap(), SessionLookup::Unknown);

    s.start_session(&session(uid, "alice", "s4", 1_000), 50)
        .unwrap();
    s.set_role("alice", "tenant-viewer", ACME, ACME, "root", 55)
        .unwrap();
    assert_eq!(
        s.session("s4", 56).unwrap(),
        SessionLookup::Unknown,
        "a role change ends it"
    );

    s.start_session(&session(uid, "alice", "s5", 1_000), 60)
        .unwrap();
    s.remove_user("alice", ACME, "root", 70).unwrap();
    assert_eq!(
        s.session("s5", 71).unwrap(),
        SessionLookup::Unknown,
        "removal ends it"
    );
    assert!(s.login_user("alice").unwrap().is_none());
}

/// A revoked token still resolves (so it can be refused as revoked), with the
/// time of its first revocation; tokens are listed within their scope.
pub(crate) fn a_revoked_token_no_longer_authenticates<S: ConsoleAdmin>(mut s: S) {
    let id = s
        .add_api_token(
            &NewApiToken {
                name: "ci",
                sha256_hex: "ab",
                role: "tenant-admin",
                tenant_id: ACME,
            },
            "root",
            1,
        )
        .unwrap();
    let t = s.token_auth("ab").unwrap().unwrap();
    assert_eq!(
        (
            t.name.as_str(),
            t.role.as_deref(),
            t.tenant_id,
            t.tenant.as_deref(),
            t.revoked_ms
        ),
        ("ci", Some("tenant-admin"), ACME, Some("acme"), None)
    );
    assert!(s.token_auth("cd").unwrap().is_none());
    s.revoke_api_token_in(id, None, "root", 5).unwrap();
    assert_eq!(s.token_auth("ab").unwrap().unwrap().revoked_ms, Some(5));
    s.revoke_api_token_in(id, ACME, "root", 9).unwrap();
    assert_eq!(
        s.token_auth("ab").unwrap().unwrap().revoked_ms,
        Some(5),
        "revoking again keeps the first time"
    );
    let listed = s.list_api_tokens(ACME).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].created_by.as_deref(), listed[0].revoked_ms),
        (Some("root"), Some(5))
    );
}

/// Role changes: a change to the same role is refused, the last msp-admin is
/// kept, and a move between tenants is audited in both.
pub(crate) fn role_changes_keep_an_msp_admin_and_audit_both_tenants<S: ConsoleAdmin>(mut s: S) {
    s.add_user(&user("root", "msp-admin", None), "cli:x", 1)
        .unwrap();
    s.add_user(&user("alice", "tenant-admin", ACME), "root", 1)
        .unwrap();
    conflict(
        s.set_role("root", "msp-tech", None, None, "root", 2),
        "user \"root\" is the last msp-admin; make another one first",
    );
    conflict(
        s.set_role("alice", "tenant-admin", ACME, None, "root", 2),
        "user \"alice\" has role tenant-admin there already",
    );
    let n = audit_rows(&s);
    s.set_role("alice", "tenant-admin", GLOBEX, None, "root", 3)
        .unwrap();
    assert_eq!(audit_rows(&s), n + 2, "one row in each tenant");
    assert_eq!(s.audit_page(ACME, 1, 50).unwrap().0[0].action, "user.role");
    assert_eq!(
        s.audit_page(GLOBEX, 1, 50).unwrap().0[0].action,
        "user.role"
    );
    assert_eq!(s.list_users(GLOBEX).unwrap()[0].username, "alice");
    assert_eq!(s.tenant_id("globex").unwrap(), GLOBEX);
    assert_eq!(s.tenant_name(2).unwrap().as_deref(), Some("globex"));
    assert_eq!(s.tenant_id("initech").unwrap(), None);
}

mod sqlite {
    macro_rules! conformance {
        ($($name:ident),* $(,)?) => {$(
            #[test]
            fn $name() {
                let (_dir, db) = crate::store::conformance::sqlite_fixture();
                super::$name(db);
            }
        )*};
    }
    conformance!(
        every_console_write_writes_one_audit_row,
        a_console_write_outside_the_scope_changes_nothing,
        sessions_expire_and_end_with_their_user,
        a_revoked_token_no_longer_authenticates,
        role_changes_keep_an_msp_admin_and_audit_both_tenants,
    );
}
