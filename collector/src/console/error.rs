//! The API's errors: `{ "code": "...", "message": "..." }` with a stable code and a
//! message for a human that says what was wrong and where. Internal errors are
//! logged and answered without their text.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub message: String,
}

/// The body of every error answer.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    /// Stable, machine-readable: `bad_request`, `unauthenticated`, `forbidden`, ...
    pub(crate) code: String,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub(crate) fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }
    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    /// Also what another tenant's object looks like: it does not exist for you.
    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{}: not found", what.into()),
        )
    }
    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %e, "console request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error (logged by the collector)",
        )
    }
}

/// The store's refusals as the API answers them (issue 17 item 1): the store words
/// `what` as the console did before it held a `Db`, so the answers are unchanged.
/// Anything else is a 500 whose text is only logged.
impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match e {
            StoreError::NotFound { what } => ApiError::not_found(what),
            // A rule of the schema the console did not check first (two people
            // adding the same name at once): SQLite's text names tables and
            // columns, which stays in the log (house rule: internal error text
            // never reaches a remote peer).
            StoreError::Conflict { what } if what.contains("constraint failed") => {
                tracing::info!(cause = %what, "console write refused by the schema");
                ApiError::conflict(
                    "the change conflicts with what is stored (another request made it first?)",
                )
            }
            StoreError::Conflict { what } => ApiError::conflict(what),
            StoreError::Invalid { what } => ApiError::bad_request(what),
            StoreError::Busy => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the database is busy; retry in a moment",
            ),
            e => ApiError::internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                code: self.code.to_owned(),
                message: self.message,
            }),
        )
            .into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let text = r.body_text();
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "request body: larger than the {} KiB allowed",
                    super::MAX_BODY_BYTES / 1024
                ),
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "request body: send it as Content-Type: application/json",
            ),
            _ => ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_json",
                format!("request body: {text}"),
            ),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("query string: {}", r.body_text()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[test]
    fn a_schema_conflict_is_a_409_that_does_not_name_tables() {
        let raw = StoreError::Conflict {
            what: "UNIQUE constraint failed: users.username".into(),
        };
        let e = ApiError::from(raw);
        assert_eq!(e.status, StatusCode::CONFLICT);
        assert!(!e.message.contains("users"), "{}", e.message);
        // The store's own wording of a conflict reaches the user as it is.
        let worded = StoreError::Conflict {
            what: "user \"bob\": exists already".into(),
        };
        assert_eq!(
            ApiError::from(worded).message,
            "user \"bob\": exists already"
        );
    }
}
