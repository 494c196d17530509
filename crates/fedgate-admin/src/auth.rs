//! Bearer-token authentication over HTTP.
//!
//! [`require_token`] runs before every protected handler: it reads the bearer token (or the panel
//! session), has [`tokens::check`] say who it is and whether the role allows the method (on the
//! blocking pool), answers unknown or revoked tokens with 401 and a `reader`'s changes with 403,
//! and hands the handler a [`Caller`]. The token text
//! is never logged or kept. A browser signed in to the panel authenticates with its session
//! cookie instead, and must echo the session's CSRF token on every change.

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AdminState;
use crate::error::ApiError;
use crate::{panel, tokens};

pub use fedgate_manage::tokens::Caller;

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

/// The token hash a request authenticates with: its bearer token, or else its panel session
/// (whose changes must carry the session's CSRF token).
fn credential(state: &AdminState, request: &Request) -> Result<String, ApiError> {
    if request.headers().contains_key(header::AUTHORIZATION) {
        return bearer(request).map(tokens::hash);
    }
    if let Some(session) = state.sessions().from_headers(request.headers()) {
        let reads = matches!(*request.method(), Method::GET | Method::HEAD);
        if !reads && !panel::csrf_ok(request.headers(), &session) {
            return Err(ApiError::forbidden(
                "The request has no valid CSRF token: send the session's token in X-CSRF-Token.",
            ));
        }
        return Ok(session.token_hash);
    }
    bearer(request).map(tokens::hash)
}

/// Middleware: authenticate, check the role, and put the [`Caller`] into the request.
pub async fn require_token(
    State(state): State<AdminState>,
    mut request: Request,
    next: Next,
) -> Response {
    let hash = match credential(&state, &request) {
        Ok(hash) => hash,
        Err(e) => return e.into_response(),
    };
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    let checked = state
        .blocking(move |store| Ok(tokens::check(store, &hash, reads)))
        .await;
    let caller = match checked {
        Ok(Ok(caller)) => caller,
        Ok(Err(tokens::Refused::Unknown)) => {
            return ApiError::unauthorized(tokens::Refused::Unknown.to_string()).into_response();
        }
        Ok(Err(refused @ tokens::Refused::ReadOnly(_))) => {
            return ApiError::forbidden(refused.to_string()).into_response();
        }
        Ok(Err(tokens::Refused::Store(e))) => return ApiError::from(e).into_response(),
        Err(e) => return e.into_response(),
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}
