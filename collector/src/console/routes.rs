//! The `/api/v1` router and its OpenAPI document: every handler module's routes in
//! one place, so the handler modules depend on `api`'s shared helpers and never on
//! each other (no import cycle).

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::{
    ConsoleState, actions, alerts, api, device, devices, enroll, maintenance, roles, rules, users,
};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Tandem console API", version = "1"),
    components(schemas(ErrorBody))
)]
struct Doc;

pub(super) fn routes() -> OpenApiRouter<ConsoleState> {
    OpenApiRouter::with_openapi(<Doc as utoipa::OpenApi>::openapi())
        .routes(routes!(api::login))
        .routes(routes!(api::logout))
        .routes(routes!(api::me))
        .routes(routes!(api::tenants))
        .routes(routes!(api::fleet))
        .routes(routes!(api::sites))
        .routes(routes!(devices::devices))
        .routes(routes!(devices::device))
        .routes(routes!(devices::device_latest))
        .routes(routes!(devices::device_series))
        .routes(routes!(devices::device_charts))
        .routes(routes!(device::filesystems))
        .routes(routes!(device::services))
        .routes(routes!(device::updates))
        .routes(routes!(device::software))
        .routes(routes!(alerts::alerts))
        .routes(routes!(alerts::alert))
        .routes(routes!(alerts::alert_ack))
        .routes(routes!(alerts::alert_unack))
        .routes(routes!(actions::alert_snooze))
        .routes(routes!(actions::silences, actions::silence_create))
        .routes(routes!(actions::silence_expire))
        .routes(routes!(maintenance::list, maintenance::create))
        .routes(routes!(maintenance::delete))
        .routes(routes!(users::users, users::user_add))
        .routes(routes!(users::user_remove))
        .routes(routes!(users::user_passwd))
        .routes(routes!(roles::user_role))
        .routes(routes!(users::tokens, users::token_create))
        .routes(routes!(users::token_revoke))
        .routes(routes!(enroll::list, enroll::create))
        .routes(routes!(enroll::revoke))
        .routes(routes!(enroll::defaults_route))
        .routes(routes!(users::audit))
        .routes(routes!(rules::rules))
        .routes(routes!(api::events))
}
