//! Every failure of an API call as an HTTP status and a JSON body:
//! `{"error": {"code": "invalid_value", "parameter": "TlsNegotiation", "message": "..."}}`.
//!
//! The message of a bad value is [`InvalidValue`]'s text, the very text the CLI prints after
//! `<cmdlet> : `; store and command errors keep their texts too.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fedgate_manage::{ManageError, RequestError};
use fedgate_model::InvalidValue;
use fedgate_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// A failed API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: ErrorDetail,
}

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable kind: `invalid_value`, `not_found`, `conflict`,
    /// `precondition_failed`, `precondition_required`, `unauthorized`, `forbidden`, `internal`.
    pub code: &'static str,
    /// The parameter (field, query parameter or header) at fault, when there is one.
    pub parameter: Option<String>,
    /// For admins: the same text as the CLI, naming the parameter and the allowed values.
    pub message: String,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        parameter: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            detail: ErrorDetail {
                code,
                parameter: parameter.map(str::to_owned),
                message: message.into(),
            },
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", None, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", None, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", None, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            None,
            message,
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", None, message)
    }

    /// `If-Match` missing on a call that needs it.
    pub fn precondition_required() -> Self {
        Self::new(
            StatusCode::PRECONDITION_REQUIRED,
            "precondition_required",
            Some("If-Match"),
            "This change needs an If-Match header with the ETag of the record as read (or * to change it whatever its version).",
        )
    }

    /// `If-Match` given but not the record's current version.
    pub fn precondition_failed(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            Some("If-Match"),
            message,
        )
    }
}

impl From<InvalidValue> for ApiError {
    fn from(e: InvalidValue) -> Self {
        let parameter = e.parameter.clone();
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            Some(&parameter),
            e.to_string(),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let (status, code, parameter) = match &e {
            StoreError::PartnerNotFound(_) | StoreError::PolicyNotFound(_) => {
                (StatusCode::NOT_FOUND, "not_found", Some("Identity"))
            }
            StoreError::TokenNotFound(_) => (StatusCode::NOT_FOUND, "not_found", Some("Name")),
            StoreError::PartnerExists(_) | StoreError::PolicyExists(_) => {
                (StatusCode::CONFLICT, "conflict", Some("Identity"))
            }
            StoreError::TokenExists(_) => (StatusCode::CONFLICT, "conflict", Some("Name")),
            StoreError::DomainTaken { .. } | StoreError::NotEmpty { .. } => {
                (StatusCode::CONFLICT, "conflict", None)
            }
            StoreError::Conflict { .. } => (
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                Some("If-Match"),
            ),
            StoreError::Url(_)
            | StoreError::Corrupt { .. }
            | StoreError::NewerSchema { .. }
            | StoreError::Access { .. }
            | StoreError::Database { .. }
            | StoreError::NodeNotAlive(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
        };
        ApiError::new(status, code, parameter, e.to_string())
    }
}

impl From<ManageError> for ApiError {
    fn from(e: ManageError) -> Self {
        match e {
            ManageError::Invalid(e) => e.into(),
            ManageError::Store(e) => e.into(),
            // A command refused for the state of the data (a policy still granted, a record that
            // kept changing): the request is fine, the state is not.
            ManageError::Refused(message) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", None, message)
            }
        }
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Manage(e) => e.into(),
            // The API builds no import request: an import error here is a bug.
            RequestError::Import(_) | RequestError::File(_) => ApiError::internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let mut response = (status, Json(ErrorBody { error: self.detail })).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"fedgate\""),
            );
        }
        response
    }
}
