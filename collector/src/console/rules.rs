//! The rules and maintenance windows the running alert engine has loaded, read-only.
//!
//! Rules and windows are written in TOML files (`[[rule]]`, `[[maintenance]]`) and
//! reloaded when the files change; they cannot be edited at runtime, so the console
//! shows them as loaded. The engine thread publishes its set when it starts and
//! after every reload (`alerts::published`), keyed by its database file, so the
//! console of that collector (same database) reads that engine's set and nothing
//! else (tests run many collectors in one process).
//!
//! Scope: a tenant principal sees the rules and windows that can apply to its tenant
//! (no tenant matcher, or one naming it); tenant names of other tenants are never
//! shown to it.

use std::path::Path;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::api::ApiResult;
use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::{ConsoleState, now_ms};
use crate::alerts::model::{Bound, Schedule, Scope, Window};
use crate::alerts::rules::{Kind, Rule};

/// A rule as loaded.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct RuleOut {
    pub(crate) name: String,
    pub(crate) summary: String,
    /// `threshold`, `rate`, `forecast`, `offline`, `security_update_age`,
    /// `reboot_pending`, `service_down`, `cert_expiry`.
    pub(crate) kind: String,
    /// What it watches and how, e.g. `fs.used.percent` or `after 5 min`.
    pub(crate) watches: String,
    pub(crate) dimension: Option<String>,
    pub(crate) warning: Option<String>,
    pub(crate) critical: Option<String>,
    pub(crate) recover: Option<String>,
    pub(crate) for_secs: i64,
    pub(crate) scope: ScopeOut,
    /// `file:line` of its definition.
    pub(crate) origin: String,
}

/// Which devices something applies to (an empty list: any).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ScopeOut {
    pub(crate) tenants: Vec<String>,
    pub(crate) sites: Vec<String>,
    pub(crate) tags: Vec<String>,
    pub(crate) os: Vec<String>,
    pub(crate) devices: Vec<String>,
    /// For a window: the rules it pauses.
    pub(crate) rules: Vec<String>,
}

/// A maintenance window as loaded.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct WindowOut {
    pub(crate) name: String,
    /// IANA zone its times are in.
    pub(crate) tz: String,
    /// e.g. `once 2026-03-29T01:00 – 2026-03-29T04:00`, `weekly Sat, Sun 22:00–06:00`.
    pub(crate) schedule: String,
    pub(crate) scope: ScopeOut,
    /// Whether it covers the time of the answer.
    pub(crate) active_now: bool,
}

/// What the engine has loaded.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct LoadedRules {
    /// When the engine published this set (Unix ms).
    pub(crate) loaded_ms: i64,
    pub(crate) rules: Vec<RuleOut>,
    pub(crate) windows: Vec<WindowOut>,
}

struct Published {
    loaded_ms: i64,
    rules: Vec<RuleOut>,
    windows: Vec<Window>,
    window_scopes: Vec<ScopeOut>,
}

fn scope_out(s: &Scope) -> ScopeOut {
    ScopeOut {
        tenants: s.tenants.clone(),
        sites: s.sites.clone(),
        tags: s.tags.clone(),
        os: s.os.clone(),
        devices: s.devices.clone(),
        rules: s.rules.clone(),
    }
}

fn bound(b: Option<Bound>) -> Option<String> {
    b.map(|b| match b {
        Bound::Above(t) => format!("> {t}"),
        Bound::Below(t) => format!("< {t}"),
    })
}

fn mins(ms: i64) -> String {
    if ms % 3_600_000 == 0 {
        format!("{} h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{} min", ms / 60_000)
    } else {
        format!("{} s", ms / 1000)
    }
}

fn rule_out(r: &Rule) -> RuleOut {
    let (kind, watches) = match &r.kind {
        Kind::Threshold { metric } => ("threshold", metric.clone()),
        Kind::Rate { metric, per_secs } => ("rate", format!("{metric} per {per_secs} s")),
        Kind::Forecast {
            metric,
            window_ms,
            target,
        } => (
            "forecast",
            format!("{metric} reaching {target} (fit over {})", mins(*window_ms)),
        ),
        Kind::Offline { after_ms, .. } => ("offline", format!("no data for {}", mins(*after_ms))),
        Kind::SecurityUpdateAge => ("security_update_age", "days a security update waits".into()),
        Kind::RebootPending => ("reboot_pending", "days a reboot waits".into()),
        Kind::ServiceDown { services } if services.is_empty() => {
            ("service_down", "every watched service".into())
        }
        Kind::ServiceDown { services } => ("service_down", services.join(", ")),
        Kind::CertExpiry => (
            "cert_expiry",
            "days until the device certificate expires".into(),
        ),
    };
    let fixed = r.kind.has_fixed_severity();
    RuleOut {
        name: r.name.clone(),
        summary: r.summary.clone(),
        kind: kind.into(),
        watches,
        dimension: r.dimension.clone(),
        warning: if fixed { None } else { bound(r.warning) },
        critical: if fixed {
            Some(format!("fixed: {}", r.severity.as_str()))
        } else {
            bound(r.critical)
        },
        recover: bound(r.recover),
        for_secs: r.params.for_ms / 1000,
        scope: scope_out(&r.scope),
        origin: r.origin.to_string(),
    }
}

fn schedule(w: &Window) -> String {
    match &w.schedule {
        Schedule::Once { start, end } => format!("once {start} – {end}"),
        Schedule::Weekly { days, from, to } => format!(
            "weekly {} {}–{}",
            days.iter()
                .map(|d| format!("{d:?}")[..3].to_owned())
                .collect::<Vec<_>>()
                .join(", "),
            from.strftime("%H:%M"),
            to.strftime("%H:%M")
        ),
        Schedule::Recurring(s) => {
            let r = &s.rule;
            let days = r
                .by_day
                .iter()
                .map(|(n, d)| {
                    format!(
                        "{}{}",
                        n.map(|n| n.to_string()).unwrap_or_default(),
                        &format!("{d:?}")[..3]
                    )
                })
                .collect::<Vec<_>>();
            format!(
                "{:?}{} from {}{}, lasting {}",
                r.freq,
                if r.interval > 1 {
                    format!(" every {}", r.interval)
                } else {
                    String::new()
                },
                s.dtstart.strftime("%Y-%m-%d %H:%M"),
                if days.is_empty() {
                    String::new()
                } else {
                    format!(" on {}", days.join(", "))
                },
                mins(s.duration_ms)
            )
            .to_lowercase()
        }
    }
}

/// The set the engine of this collector (same database) has loaded, in the
/// console's shapes.
fn loaded(db: &Path) -> Option<Published> {
    let p = crate::alerts::published::loaded(db)?;
    Some(Published {
        loaded_ms: p.loaded_ms,
        rules: p.set.rules.iter().map(rule_out).collect(),
        window_scopes: p.set.windows.iter().map(|w| scope_out(&w.scope)).collect(),
        windows: p.set.windows.clone(),
    })
}

/// Whether something scoped to `tenants` can apply to the caller's tenant.
fn visible(tenants: &[String], own: Option<&str>) -> bool {
    match own {
        None => true,
        Some(t) => tenants.is_empty() || tenants.iter().any(|x| x == t),
    }
}

/// What a tenant may see of a scope: its own tenant, never another's name.
fn redact(mut s: ScopeOut, own: Option<&str>) -> ScopeOut {
    if let Some(t) = own {
        s.tenants.retain(|x| x == t);
    }
    s
}

/// The rules and maintenance windows the running alert engine has loaded (read-only:
/// they are defined in the rule files and reloaded when those change).
#[utoipa::path(get, path = "/rules", tag = "alerts",
    responses((status = 200, body = LoadedRules), (status = 503, body = ErrorBody)))]
pub(super) async fn rules(State(st): State<ConsoleState>, p: Principal) -> ApiResult<LoadedRules> {
    let Some(set) = loaded(&st.db_path) else {
        return Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "not_loaded",
            "the alert engine of this collector has not loaded its rules (yet)",
        ));
    };
    let own = p.tenant.as_deref();
    let now = now_ms();
    Ok(Json(LoadedRules {
        loaded_ms: set.loaded_ms,
        rules: set
            .rules
            .iter()
            .filter(|r| visible(&r.scope.tenants, own))
            .map(|r| RuleOut {
                scope: redact(r.scope.clone(), own),
                ..r.clone()
            })
            .collect(),
        windows: set
            .windows
            .iter()
            .zip(&set.window_scopes)
            .filter(|(_, s)| visible(&s.tenants, own))
            .map(|(w, s)| WindowOut {
                name: w.name.clone(),
                tz: w.tz.iana_name().unwrap_or("UTC").to_owned(),
                schedule: schedule(w),
                scope: redact(s.clone(), own),
                active_now: w.active_at(now),
            })
            .collect(),
    }))
}
