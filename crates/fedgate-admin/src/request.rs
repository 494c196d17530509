//! Reading requests: query parameters, JSON bodies and `If-Match`, with errors in the API's JSON
//! shape (axum's own extractors answer in plain text).

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use fedgate_manage::Mode;
use fedgate_manage::params::{ParamValue, from_json};
use fedgate_model::InvalidValue;

use crate::error::ApiError;

/// The query string as name/value pairs (names compared without case).
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Query(pairs) =
            Query::<Vec<(String, String)>>::try_from_uri(&parts.uri).map_err(|e| {
                ApiError::from(InvalidValue::new(
                    "query",
                    format!("The query string cannot be read: {e}."),
                ))
            })?;
        Ok(Params(pairs))
    }
}

impl Params {
    /// The last value given for `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A whole number in `min..=max`.
    pub fn number(&self, name: &str, min: u32, max: u32) -> Result<Option<u32>, ApiError> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        match text.trim().parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(InvalidValue::new(
                name,
                format!(
                    "Cannot convert value \"{text}\" to type \"System.UInt32\". Allowed values: {min} to {max}."
                ),
            )
            .into()),
        }
    }

    /// A boolean as admins type it (`true`, `$false`, `1`...); absent is false.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(false),
            Some(text) => Ok(InvalidValue::parse_bool(name, text)?),
        }
    }

    /// `?whatIf=true` → [`Mode::WhatIf`].
    pub fn mode(&self) -> Result<Mode, ApiError> {
        Ok(if self.flag("whatIf")? {
            Mode::WhatIf
        } else {
            Mode::Commit
        })
    }
}

/// A JSON object body as (field name, value) pairs in the order given.
pub fn json_object(body: &[u8]) -> Result<Vec<(String, serde_json::Value)>, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::from(InvalidValue::new(
            "body",
            format!("The request body is not valid JSON: {e}."),
        ))
    })?;
    match value {
        serde_json::Value::Object(map) => Ok(map.into_iter().collect()),
        _ => Err(InvalidValue::new(
            "body",
            "A JSON object is expected, with the record's fields by name (e.g. {\"TlsNegotiation\": \"Optional\"}).",
        )
        .into()),
    }
}

/// Take the field `name` (case-insensitive) out of `fields`.
pub fn take_field(
    fields: &mut Vec<(String, serde_json::Value)>,
    name: &str,
) -> Option<serde_json::Value> {
    let at = fields
        .iter()
        .position(|(k, _)| k.eq_ignore_ascii_case(name))?;
    Some(fields.remove(at).1)
}

/// The fields converted to [`ParamValue`]s, as the manage crate's conversions take them.
pub fn param_values(fields: &[(String, serde_json::Value)]) -> Vec<(String, ParamValue)> {
    fields
        .iter()
        .map(|(k, v)| (k.clone(), from_json(v)))
        .collect()
}

/// A single text field.
pub fn text_field(parameter: &str, value: &serde_json::Value) -> Result<String, ApiError> {
    Ok(from_json(value).text(parameter)?)
}

/// What `If-Match` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMatch {
    /// No header.
    Absent,
    /// `*`: any current version.
    Any,
    /// `"<version>"`.
    Version(u64),
    /// An entity tag that is not one of ours: it matches no record.
    Never,
}

impl IfMatch {
    pub fn from_headers(headers: &HeaderMap) -> IfMatch {
        let Some(value) = headers.get(header::IF_MATCH) else {
            return IfMatch::Absent;
        };
        let text = value.to_str().unwrap_or("").trim();
        if text == "*" {
            return IfMatch::Any;
        }
        // One tag is what clients send; with several, the first of ours counts.
        text.split(',')
            .map(|t| t.trim().trim_start_matches("W/").trim_matches('"'))
            .find_map(|t| t.parse::<u64>().ok())
            .map_or(IfMatch::Never, IfMatch::Version)
    }

    /// The version a write must find, for the manage crate (None = any).
    pub fn expected(self) -> Result<Option<u64>, ApiError> {
        match self {
            IfMatch::Version(v) => Ok(Some(v)),
            IfMatch::Never => Err(ApiError::precondition_failed(
                "The If-Match header names no version of this record; read it again and send its ETag.",
            )),
            IfMatch::Absent | IfMatch::Any => Ok(None),
        }
    }

    /// For PATCH: the header is required.
    pub fn required(self) -> Result<Option<u64>, ApiError> {
        match self {
            IfMatch::Absent => Err(ApiError::precondition_required()),
            other => other.expected(),
        }
    }
}

/// The ETag of a record at `version`.
pub fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}
