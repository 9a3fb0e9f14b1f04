//! What the API answers when it cannot do what was asked: one JSON shape,
//! `{"error": <message>, "code": <word>}`, plus `"field"` naming the culprit of a 400.

use serde_json::json;

use super::{ApiResponse, MAX_BODY_BYTES};
use crate::error::{RuntimeError, StoreError};

/// Why a request failed, each with its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or a wrong bearer token (401).
    #[error("a valid bearer token is required (Authorization: Bearer <BATON_API_TOKEN>)")]
    Unauthorized,
    /// A malformed request: the field (body member or query parameter) and what is wrong (400).
    #[error("{message}")]
    BadRequest {
        /// The body member or query parameter at fault (`input` for the body of a start).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// No such run, task, workflow or route (404).
    #[error("{0}")]
    NotFound(String),
    /// The route exists but not with this method (405).
    #[error("method {method} is not allowed here; use {allow}")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The method the route takes.
        allow: &'static str,
    },
    /// The request contradicts the current state, e.g. cancelling a run that ended (409).
    #[error("{0}")]
    Conflict(String),
    /// The body is over the limit (413).
    #[error("the body is over {MAX_BODY_BYTES} bytes")]
    TooLarge,
    /// The store or the backend failed; the same request may succeed later (503).
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    /// A 400 naming `field`.
    pub fn bad(field: &str, message: impl Into<String>) -> Self {
        Self::BadRequest { field: field.to_owned(), message: message.into() }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::Unauthorized => 401,
            Self::BadRequest { .. } => 400,
            Self::NotFound(_) => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::Conflict(_) => 409,
            Self::TooLarge => 413,
            Self::Unavailable(_) => 503,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::BadRequest { .. } => "bad_request",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::TooLarge => "too_large",
            Self::Unavailable(_) => "unavailable",
        }
    }

    /// The error as the response a client gets.
    pub fn response(&self) -> ApiResponse {
        let mut body = json!({"error": self.to_string(), "code": self.code()});
        if let Self::BadRequest { field, .. } = self {
            body["field"] = json!(field);
        }
        let mut resp = ApiResponse::json(self.status(), body);
        if let Self::MethodNotAllowed { allow, .. } = self {
            resp.allow = Some(allow);
        }
        resp
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::UnknownRun(_) | RuntimeError::UnknownWorkflow(_) | RuntimeError::UnknownTask(_) => {
                Self::NotFound(e.to_string())
            }
            RuntimeError::InvalidInput(problems) => Self::bad("input", problems.join("; ")),
            RuntimeError::InvalidAnswer(problems) => Self::bad("data", problems.join("; ")),
            RuntimeError::InvalidEvent(msg) => Self::bad("detail", msg),
            RuntimeError::InvalidMocks(msg) => Self::bad("mocks", msg),
            // An operator's action that does not apply to the run as it stands.
            RuntimeError::Refused(msg) => Self::Conflict(msg),
            // A stored definition that no longer compiles, or a store failure: not the caller's
            // doing, and the message says which.
            RuntimeError::InvalidDefinition(_) | RuntimeError::Store(_) | RuntimeError::Batch(_) => {
                Self::Unavailable(e.to_string())
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::Unavailable(e.to_string())
    }
}
