//! The admin API's one error type and its one mapping to HTTP: `{"code", "detail"}`, internal
//! causes logged in full and returned as an opaque 500.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use portcullis_store::StoreError;

#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    Unauthenticated,
    Forbidden(String),
    NotFound,
    Conflict(String),
    TooManyRequests(u64),
    Unavailable,
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::NotFound,
            StoreError::Conflict(conflict) => Self::Conflict(conflict.to_string()),
            StoreError::Unavailable(m) => {
                tracing::error!(error = %m, "store unavailable");
                Self::Unavailable
            }
            other => Self::Internal(format!("{other:?}")),
        }
    }
}

impl From<crate::auth::AuthRefusal> for ApiError {
    fn from(refusal: crate::auth::AuthRefusal) -> Self {
        use crate::auth::AuthRefusal as R;
        match refusal {
            R::Unauthenticated => Self::Unauthenticated,
            R::LockedOut { retry_after_secs } | R::RateLimited { retry_after_secs } => {
                Self::TooManyRequests(retry_after_secs)
            }
            R::Suspended => Self::Forbidden("suspended".into()),
            R::Unavailable => Self::Unavailable,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, detail) = match self {
            Self::BadRequest(d) => (StatusCode::BAD_REQUEST, "bad_request", d),
            Self::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "missing, invalid, revoked or expired credentials".into(),
            ),
            Self::Forbidden(d) => (StatusCode::FORBIDDEN, "forbidden", d),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found", "not found".into()),
            Self::Conflict(d) => (StatusCode::CONFLICT, "conflict", d),
            Self::TooManyRequests(secs) => {
                let mut response = (
                    StatusCode::TOO_MANY_REQUESTS,
                    axum::Json(serde_json::json!({"code": "too_many_requests", "detail": format!("retry after {secs} s")})),
                )
                    .into_response();
                response.headers_mut().insert("retry-after", secs.into());
                return response;
            }
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the store is unavailable; nothing was changed".into(),
            ),
            Self::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error".into(),
                )
            }
        };
        (
            status,
            axum::Json(serde_json::json!({ "code": code, "detail": detail })),
        )
            .into_response()
    }
}
