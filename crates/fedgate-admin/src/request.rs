//! Reading requests: query parameters, JSON bodies and `If-Match`, with errors in the API's JSON
//! shape (axum's own extractors answer in plain text).
//!
//! Bodies are typed JSON: a boolean field takes `true`/`false`, a number field a JSON integer, a
//! text field a string ([`Kind`]). A value the CLI would refuse anyway gets the CLI's error text;
//! only a value the CLI would take as typed text (`"$true"`, `"25"`) but of the wrong JSON type
//! gets a REST-specific text, so the OpenAPI document describes exactly what is accepted.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
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

    /// `true` or `false` (any case); absent is false.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name).map(|t| t.trim().to_ascii_lowercase()) {
            None => Ok(false),
            Some(t) if t == "true" => Ok(true),
            Some(t) if t == "false" => Ok(false),
            Some(_) => Err(InvalidValue::new(
                name,
                format!(
                    "Cannot convert value \"{}\" to type \"System.Boolean\". Allowed values: true, false.",
                    self.get(name).unwrap_or_default()
                ),
            )
            .into()),
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

/// The one path parameter of a route, as text.
#[derive(Debug)]
pub struct PathText(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathText {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                ApiError::from(InvalidValue::new(
                    "path",
                    format!("The path cannot be read: {}.", e.body_text()),
                ))
            })?;
        Ok(PathText(text))
    }
}

/// A JSON object body as (field name, value) pairs in the order given.
#[derive(Debug)]
pub struct JsonObject(pub Vec<(String, serde_json::Value)>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = Bytes::from_request(request, state).await.map_err(|e| {
            ApiError::new(
                e.status(),
                "invalid_body",
                Some("body"),
                format!("The request body cannot be read: {}.", e.body_text()),
            )
        })?;
        Ok(JsonObject(json_object(&body)?))
    }
}

fn json_object(body: &[u8]) -> Result<Vec<(String, serde_json::Value)>, ApiError> {
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

/// A single text field: a JSON string.
pub fn text_field(parameter: &str, value: &serde_json::Value) -> Result<String, ApiError> {
    match value {
        serde_json::Value::String(text) => Ok(text.clone()),
        other => {
            from_json(other).text(parameter)?;
            Err(type_error(parameter, other, Kind::Text))
        }
    }
}

/// The JSON type a body field takes. `null` always goes on to the CLI's conversion, which
/// decides whether the field can be cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Strings and enum names.
    Text,
    Bool,
    Integer,
    /// AdditionalDomains: a list of domains (or one string, comma-separated), or a PSListModifier
    /// object whose values are such lists.
    DomainList,
}

impl Kind {
    /// The JSON type of a parameter of this PowerShell type (`fedgate_manage::params`' tables).
    pub fn of(powershell_type: &str) -> Kind {
        match powershell_type {
            "System.Boolean" => Kind::Bool,
            "System.UInt32" => Kind::Integer,
            "System.Management.Automation.PSListModifier" => Kind::DomainList,
            _ => Kind::Text,
        }
    }

    fn accepts(self, value: &serde_json::Value) -> bool {
        use serde_json::Value as J;
        let strings = |v: &J| match v {
            J::String(_) => true,
            J::Array(items) => items.iter().all(J::is_string),
            _ => false,
        };
        match (self, value) {
            (_, J::Null) => true,
            (Kind::Text, J::String(_)) => true,
            (Kind::Bool, J::Bool(_)) => true,
            (Kind::Integer, J::Number(n)) => n.is_i64() || n.is_u64(),
            (Kind::DomainList, J::Object(map)) => map.values().all(|v| v.is_null() || strings(v)),
            (Kind::DomainList, v) => strings(v),
            _ => false,
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Kind::Text => "a JSON string",
            Kind::Bool => "a JSON boolean: true or false",
            Kind::Integer => "a JSON integer",
            Kind::DomainList => {
                "a list of domain names, or an object with Add, Remove and/or Replace lists"
            }
        }
    }
}

/// The value itself is not repeated: it may be a secret (DialbackPassphrase).
fn type_error(parameter: &str, value: &serde_json::Value, kind: Kind) -> ApiError {
    use serde_json::Value as J;
    let given = match value {
        J::Null => "null",
        J::Bool(_) => "a JSON boolean",
        J::Number(n) if n.is_f64() => "a JSON number with a fraction",
        J::Number(_) => "a JSON number",
        J::String(_) => "a JSON string",
        J::Array(_) => "a JSON array",
        J::Object(_) => "a JSON object",
    };
    InvalidValue::new(
        parameter,
        format!(
            "Cannot convert {given} to the type of {parameter}. Allowed values: {}.",
            kind.expected()
        ),
    )
    .into()
}

/// The fields as [`ParamValue`]s for the CLI's conversion `convert`, after checking the JSON
/// type of every field named in `parameters` (a `fedgate_manage::params` table of names and
/// PowerShell types; names compared without case). A value of the wrong type is first given to
/// `convert` alone, so a value the CLI refuses gets the CLI's text.
pub fn typed_values<T>(
    fields: &[(String, serde_json::Value)],
    parameters: &[(&str, &str)],
    convert: impl Fn(&[(&str, &ParamValue)]) -> Result<T, InvalidValue>,
) -> Result<T, ApiError> {
    let values: Vec<(String, ParamValue)> = fields
        .iter()
        .map(|(k, v)| (k.clone(), from_json(v)))
        .collect();
    for ((name, value), (_, param)) in fields.iter().zip(&values) {
        let Some((canonical, ps_type)) = parameters
            .iter()
            .find(|(p, _)| p.eq_ignore_ascii_case(name))
        else {
            continue;
        };
        let kind = Kind::of(ps_type);
        if !kind.accepts(value) {
            convert(&[(canonical, param)])?;
            return Err(type_error(canonical, value, kind));
        }
    }
    let pairs: Vec<(&str, &ParamValue)> = values.iter().map(|(k, v)| (k.as_str(), v)).collect();
    Ok(convert(&pairs)?)
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
