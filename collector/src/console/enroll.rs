//! Enrollment tokens from the console: create one (tenant, site, expiry, uses) and
//! show the install lines to copy, list, revoke. The token is made as `token create`
//! makes it (the serving CA's fingerprint, a random id and secret, the address agents
//! dial); only the secret's SHA-256 is stored ([`crate::store::admin::insert_token`]),
//! so the token and its lines are shown once.
//!
//! Who: MSP admins and techs for any tenant, a tenant admin for its own tenant only
//! (the token's tenant is in the SQL of the list and the revoke); viewers never.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::api::{ApiResult, body, query};
use super::auth::{Principal, Role};
use super::error::{ApiError, ErrorBody};
use super::{ConsoleState, now_ms, store};
use crate::store::admin;
use crate::store::console_admin::ConsoleAdmin;

/// Longest-lived token the console makes.
const MAX_EXPIRY_HOURS: u32 = 90 * 24;
/// Most uses of one token.
const MAX_USES: u32 = 100_000;

fn require_enroller(p: &Principal) -> Result<(), ApiError> {
    match p.role {
        Role::MspAdmin | Role::MspTech | Role::TenantAdmin => Ok(()),
        Role::TenantViewer => Err(ApiError::forbidden(format!(
            "role {}: cannot manage enrollment tokens",
            p.role
        ))),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnrollListQuery {
    pub(crate) tenant: Option<String>,
}

/// An enrollment token as listed (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EnrollTokenOut {
    pub(crate) id: String,
    pub(crate) tenant: String,
    pub(crate) site: Option<String>,
    pub(crate) created_ms: i64,
    pub(crate) expires_ms: i64,
    pub(crate) uses: i64,
    pub(crate) max_uses: i64,
    pub(crate) revoked_ms: Option<i64>,
    /// `usable`, `expired`, `used up` or `revoked`.
    pub(crate) state: String,
}

/// Enrollment tokens, newest first.
#[utoipa::path(get, path = "/enrollment-tokens", tag = "enrollment", params(EnrollListQuery),
    responses((status = 200, body = Vec<EnrollTokenOut>), (status = 403, body = ErrorBody)))]
pub(super) async fn list(
    State(st): State<ConsoleState>,
    p: Principal,
    q: Result<Query<EnrollListQuery>, QueryRejection>,
) -> ApiResult<Vec<EnrollTokenOut>> {
    require_enroller(&p)?;
    let q = query(q)?;
    let now = now_ms();
    let out = store(&st, move |d| {
        let scope = p.scope_in(d, q.tenant.as_deref())?;
        let rows = d.list_enroll_tokens(scope)?;
        Ok(rows
            .into_iter()
            .map(|t| EnrollTokenOut {
                state: t.state(now).to_owned(),
                id: t.id,
                tenant: t.tenant,
                site: t.site,
                created_ms: t.created_ms,
                expires_ms: t.expires_ms,
                uses: t.uses,
                max_uses: t.max_uses,
                revoked_ms: t.revoked_ms,
            })
            .collect())
    })
    .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewEnrollToken {
    /// The tenant devices enroll into (a tenant admin: its own; may be left out).
    pub(crate) tenant: Option<String>,
    /// The site they are placed at.
    pub(crate) site: Option<String>,
    /// host:port of the collector's enrollment listener as the devices reach it.
    pub(crate) address: String,
    /// host:port of the telemetry listener as the devices reach it, when it differs
    /// from what enrollment saves (the MSI's `SERVER`); optional.
    pub(crate) server: Option<String>,
    /// Valid for this many hours (1 to 2160).
    pub(crate) expires_hours: u32,
    /// How many devices may enroll with it (1 to 100000).
    pub(crate) uses: u32,
}

/// The lines to paste on a device, each with the token in it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct InstallLines {
    pub(crate) deb: String,
    pub(crate) rpm: String,
    pub(crate) msi: String,
    /// An agent already installed: enroll by hand.
    pub(crate) agent: String,
}

/// A new token, shown this once with its install lines.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedEnrollToken {
    pub(crate) id: String,
    pub(crate) token: String,
    pub(crate) tenant: String,
    pub(crate) site: Option<String>,
    pub(crate) expires_ms: i64,
    pub(crate) uses: u32,
    pub(crate) install: InstallLines,
}

fn host_port(what: &str, v: &str) -> Result<(), ApiError> {
    if tandem_proto::token::split_address(v).is_none()
        || v.len() > tandem_proto::token::MAX_ADDRESS_BYTES
        || v.chars()
            .any(|c| c.is_whitespace() || "'\"`$;&|<>\\".contains(c))
    {
        return Err(ApiError::bad_request(format!(
            "{what} {v:?}: not host:port (e.g. collector.example.net:4444)"
        )));
    }
    Ok(())
}

/// The install lines of docs/INSTALL.md for this collector's version.
pub(crate) fn install_lines(token: &str, server: Option<&str>) -> InstallLines {
    let v = env!("CARGO_PKG_VERSION");
    InstallLines {
        deb: format!("sudo TANDEM_TOKEN={token} apt install ./tandem-agent_{v}-1_amd64.deb"),
        rpm: format!("sudo TANDEM_TOKEN={token} dnf install ./tandem-agent-{v}-1.x86_64.rpm"),
        msi: format!(
            "msiexec /i tandem-agent-{v}-x64.msi /qn TOKEN={token}{}",
            server.map(|s| format!(" SERVER={s}")).unwrap_or_default()
        ),
        agent: format!("sudo tandem-agent enroll --token {token}"),
    }
}

/// What the enrollment page fills in for a new token.
#[derive(Debug, Serialize, ToSchema, PartialEq, Eq)]
pub(crate) struct EnrollDefaults {
    /// host:port agents enroll at: a name of the serving certificate ([`defaults`]
    /// says which) with the `[enrollment] listen` port as bound. `null` when there
    /// is none (a certificate naming only localhost, on a non-loopback listener).
    pub(crate) address: Option<String>,
    /// The same host with the `[telemetry] listen` port (the MSI's `SERVER`).
    pub(crate) server: Option<String>,
    pub(crate) enrollment_port: u16,
    pub(crate) telemetry_port: u16,
    /// Where the host came from: `listen`, `certificate`, `hostname` or `none`.
    pub(crate) source: String,
}

fn with_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The defaults from the serving certificate's names (in their order) and the
/// listeners as bound; `this_host` is the machine's name (`pki` always puts it in
/// the certificate, so it is a last resort, not an operator's choice). In order:
/// a loopback listener's own address (nothing else reaches it); the first DNS name
/// an operator gave the certificate; the listener's own IP when the certificate
/// names it; the first IP an operator gave it; this host's name; nothing.
pub(crate) fn defaults(
    names: &[String],
    l: super::Listeners,
    this_host: Option<&str>,
) -> EnrollDefaults {
    use std::net::IpAddr;
    let listen_ip = l.enrollment.ip();
    let public: Vec<&String> = names
        .iter()
        .filter(|n| {
            n.as_str() != "localhost"
                && n.parse::<IpAddr>()
                    .map_or(true, |ip| !ip.is_loopback() && !ip.is_unspecified())
        })
        .collect();
    let operator = |n: &&&String| Some(n.as_str()) != this_host;
    let chosen = if listen_ip.is_loopback() {
        Some((listen_ip.to_string(), "listen"))
    } else {
        public
            .iter()
            .filter(operator)
            .find(|n| n.parse::<IpAddr>().is_err())
            .map(|n| (n.to_string(), "certificate"))
            .or_else(|| {
                public
                    .iter()
                    .find(|n| n.parse::<IpAddr>().ok() == Some(listen_ip))
                    .map(|n| (n.to_string(), "listen"))
            })
            .or_else(|| {
                public
                    .iter()
                    .find(operator)
                    .map(|n| (n.to_string(), "certificate"))
            })
            .or_else(|| public.first().map(|n| (n.to_string(), "hostname")))
    };
    let (address, server, source) = match &chosen {
        Some((h, src)) if l.enrollment.port() != 0 => (
            Some(with_port(h, l.enrollment.port())),
            (l.telemetry.port() != 0).then(|| with_port(h, l.telemetry.port())),
            *src,
        ),
        _ => (None, None, "none"),
    };
    EnrollDefaults {
        address,
        server,
        enrollment_port: l.enrollment.port(),
        telemetry_port: l.telemetry.port(),
        source: source.to_owned(),
    }
}

/// The enrollment page's defaults: the address agents enroll at, from collector.toml's
/// listeners and the serving certificate's names.
#[utoipa::path(get, path = "/enrollment/defaults", tag = "enrollment",
    responses((status = 200, body = EnrollDefaults), (status = 403, body = ErrorBody)))]
pub(super) async fn defaults_route(
    State(st): State<ConsoleState>,
    p: Principal,
) -> ApiResult<EnrollDefaults> {
    require_enroller(&p)?;
    let cert = crate::pki::PkiPaths::new(st.db_path.parent().unwrap_or(std::path::Path::new(".")))
        .server_cert;
    let listeners = st.listeners;
    let out = tokio::task::spawn_blocking(move || {
        let names = std::fs::read_to_string(&cert)
            .ok()
            .and_then(|pem| crate::pki::first_cert_der(&pem))
            .map(|der| crate::pki::server_names(&der))
            .unwrap_or_default();
        let host = hostname::get().ok().and_then(|h| h.into_string().ok());
        defaults(&names, listeners, host.as_deref())
    })
    .await
    .map_err(ApiError::internal)?;
    Ok(Json(out))
}

/// Create an enrollment token (shown once, with the install lines to copy).
#[utoipa::path(post, path = "/enrollment-tokens", tag = "enrollment", request_body = NewEnrollToken,
    responses((status = 201, body = CreatedEnrollToken), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn create(
    State(st): State<ConsoleState>,
    p: Principal,
    b: Result<Json<NewEnrollToken>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedEnrollToken>), ApiError> {
    use ring::rand::SecureRandom;
    require_enroller(&p)?;
    let b = body(b)?;
    host_port("address", b.address.trim())?;
    let server = b
        .server
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    if let Some(s) = &server {
        host_port("server", s)?;
    }
    if !(1..=MAX_EXPIRY_HOURS).contains(&b.expires_hours) {
        return Err(ApiError::bad_request(format!(
            "expires_hours {}: use 1 to {MAX_EXPIRY_HOURS} (90 days)",
            b.expires_hours
        )));
    }
    if !(1..=MAX_USES).contains(&b.uses) {
        return Err(ApiError::bad_request(format!(
            "uses {}: use 1 to {MAX_USES}",
            b.uses
        )));
    }
    let data_dir = st
        .db_path
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let now = now_ms();
    let out = store(&st, move |d| {
        let tid = match p.scope_in(d, b.tenant.as_deref())? {
            Some(t) => t,
            None => {
                return Err(ApiError::bad_request(
                    "tenant: required (which tenant the devices enroll into)",
                ));
            }
        };
        let tenant = d
            .tenant_name(tid)?
            .ok_or_else(|| ApiError::internal(format!("tenant {tid}: gone")))?;
        let site = b
            .site
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let fingerprint = crate::pki::serving_fingerprint(&data_dir).map_err(|e| {
            tracing::warn!(error = %e, "console: no serving CA for an enrollment token");
            ApiError::conflict(
                "this collector has no serving certificate yet (run `tandem-collector pki init`)",
            )
        })?;
        let rng = ring::rand::SystemRandom::new();
        let (mut id, mut secret) = ([0u8; 8], [0u8; 32]);
        rng.fill(&mut id)
            .and_then(|()| rng.fill(&mut secret))
            .map_err(|_| ApiError::internal("the system random number generator failed"))?;
        let token = tandem_proto::token::EnrollToken {
            address: b.address.trim().to_owned(),
            ca_fingerprint: fingerprint,
            id,
            secret,
        };
        let expires_ms = now + i64::from(b.expires_hours) * 3_600_000;
        let new = admin::NewToken {
            id_hex: token.id_hex(),
            secret_sha256: token.secret_hash(),
            tenant: tenant.clone(),
            site: site.clone(),
            replace_device_id: None,
            expires_ms,
            max_uses: b.uses,
        };
        d.create_enroll_token(&new, tid, &token.address, &p.actor, now)?;
        let text = token.encode();
        Ok(CreatedEnrollToken {
            id: token.id_hex(),
            install: install_lines(&text, server.as_deref()),
            token: text,
            tenant,
            site,
            expires_ms,
            uses: b.uses,
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// Revoke an enrollment token: no device can enroll with it any more.
#[utoipa::path(delete, path = "/enrollment-tokens/{enroll_token_id}", tag = "enrollment",
    params(("enroll_token_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn revoke(
    State(st): State<ConsoleState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_enroller(&p)?;
    let now = now_ms();
    store(&st, move |d| {
        d.revoke_enroll_token(&id, p.tenant_id, &p.actor, now)?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
