//! Building responses: ETags, `201 Created` with its Location, JSON values of model records.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::ApiError;

/// The ETag of a record at `version`: `"<version>"`.
pub fn etag(version: u64) -> HeaderValue {
    // Digits in quotes are always a valid header value.
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// `response` with the ETag of `version` (none for 0: nothing stored).
pub fn with_etag(mut response: Response, version: u64) -> Response {
    if version > 0 {
        response.headers_mut().insert(header::ETAG, etag(version));
    }
    response
}

/// `201 Created` with `body`, the new record's Location and ETag.
pub fn created(location: &str, version: u64, body: impl Serialize) -> Response {
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    with_etag(response, version)
}

/// A model record as JSON (its Serialize impl: the cmdlets' field names, secrets masked).
pub fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(value).map_err(|e| ApiError::internal(e.to_string()))
}
