//! The API's one error type: every failure is a JSON body `{"error": message, "kind": word}`
//! with a 4xx status for anything the request did wrong, a 5xx only for what the server or
//! the store did (an I/O error, damaged data, a bug).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use steplog::ErrorKind;

/// A failed request: its status and a message naming what was wrong.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

/// A handler's result.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// A parameter or body the request got wrong (400).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }

    /// A request the server refuses whatever its parameters (403).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// A body that is not JSON (415).
    pub fn unsupported_media(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    }

    /// A method the route does not take (405).
    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{path} does not take {method} (docs/API.md lists the routes)"),
        )
    }

    /// A request body that could not be read (too large, cut short): its own status.
    pub fn body(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(status, "invalid_input", message)
    }

    /// No such route (404).
    pub fn no_route(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such page or API route: {path} (docs/API.md lists the routes)"),
        )
    }

    /// What the engine could not do, by its kind: what the request named wrong is a 4xx.
    pub fn engine(e: &steplog::Error) -> Self {
        let (status, kind) = match e.kind() {
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, "invalid_input"),
            ErrorKind::AlreadyExists => (StatusCode::CONFLICT, "already_exists"),
            ErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
            ErrorKind::Locked => (StatusCode::CONFLICT, "locked"),
            ErrorKind::ResumeRefused => (StatusCode::CONFLICT, "resume_refused"),
            ErrorKind::StepRegression => (StatusCode::BAD_REQUEST, "step_regression"),
            ErrorKind::WriterClosed => (StatusCode::CONFLICT, "writer_closed"),
            ErrorKind::Corruption => (StatusCode::INTERNAL_SERVER_ERROR, "corruption"),
            ErrorKind::Io => (StatusCode::INTERNAL_SERVER_ERROR, "io"),
            ErrorKind::StorePoisoned => (StatusCode::SERVICE_UNAVAILABLE, "store_poisoned"),
        };
        Self::new(status, kind, e.to_string())
    }

    /// The server's own failure (a handler that panicked).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }
}

impl From<steplog::Error> for ApiError {
    fn from(e: steplog::Error) -> Self {
        ApiError::engine(&e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "kind": self.kind });
        (self.status, axum::Json(body)).into_response()
    }
}
