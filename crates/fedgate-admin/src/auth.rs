//! Bearer-token authentication and roles.
//!
//! [`require_token`] runs before every protected handler: it hashes the bearer token, looks the
//! hash up in the store (on the blocking pool), refuses unknown or revoked tokens with 401 and any
//! method but GET/HEAD from a `reader` with 403, and hands the handler a [`Caller`]. The token text
//! is never logged or kept.

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fedgate_store::TokenRole;

use crate::AdminState;
use crate::error::ApiError;
use crate::tokens;

/// Who is calling: the token's name and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: TokenRole,
}

impl Caller {
    /// The audit-log actor: `token:<name>`.
    pub fn actor(&self) -> String {
        format!("token:{}", self.name)
    }
}

/// The token in `Authorization: Bearer <token>`.
fn bearer(request: &Request) -> Result<&str, ApiError> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::unauthorized(
                "An API token is required: send 'Authorization: Bearer <token>' (make one with 'fedgate token create').",
            )
        })?;
    let text = value.to_str().unwrap_or("");
    let (scheme, token) = text.trim().split_once(' ').unwrap_or((text, ""));
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::unauthorized(
            "The Authorization header must be 'Bearer <token>'.",
        ));
    }
    Ok(token)
}

/// Middleware: authenticate, check the role, and put the [`Caller`] into the request.
pub async fn require_token(
    State(state): State<AdminState>,
    mut request: Request,
    next: Next,
) -> Response {
    let hash = match bearer(&request) {
        Ok(token) => tokens::hash(token),
        Err(e) => return e.into_response(),
    };
    let found = state
        .blocking(move |store| Ok(store.token_by_hash(&hash)?))
        .await;
    let caller = match found {
        Ok(Some(info)) => Caller {
            name: info.name,
            role: info.role,
        },
        Ok(None) => {
            return ApiError::unauthorized("The API token is not valid or has been revoked.")
                .into_response();
        }
        Err(e) => return e.into_response(),
    };
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    if caller.role == TokenRole::Reader && !reads {
        return ApiError::forbidden(format!(
            "The token '{}' has the reader role and cannot change anything; use an admin token.",
            caller.name
        ))
        .into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}
