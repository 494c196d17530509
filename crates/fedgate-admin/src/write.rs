//! The one write path of the records the API creates, changes and removes (partners, policies,
//! the gateway-wide settings): the mode (`?whatIf=true`), the Identity the request names (and may
//! repeat in the body but not change), the body's values converted as the CLI converts them, the
//! `If-Match` precondition (the request's `expected_version`), the [`Request`] run by
//! [`Manager::execute`](fedgate_manage::Manager::execute) as the CLI runs it, and the reply with
//! its ETag. What differs between the records is what a [`Record`] says and what the handler
//! passes in.

use axum::Json;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use fedgate_manage::{Mode, Outcome, ParamValue, Request};
use fedgate_model::InvalidValue;
use serde::Serialize;

use crate::AdminState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::reply::{created, with_etag};
use crate::request::{IfMatch, Params, take_field, text_field, typed_values};

/// A JSON object body as (field name, value) pairs.
pub type Fields = Vec<(String, serde_json::Value)>;

/// A model record the API writes.
pub trait Record: Sized + Send + 'static {
    /// What the body's fields convert to (`fedgate_manage::params`).
    type Changes: Send + 'static;
    /// The reply body of a write.
    type Body: Serialize;
    /// The body's fields by name and PowerShell type (a `fedgate_manage::params` table).
    const PARAMETERS: &'static [(&'static str, &'static str)];

    /// The body's fields as the CLI converts its parameters.
    fn changes(values: &[(&str, &ParamValue)]) -> Result<Self::Changes, InvalidValue>;
    /// The reply body of what a write did.
    fn body(outcome: Outcome<Self>) -> Result<Self::Body, ApiError>;
    /// What a write of this record did, out of what [`fedgate_manage::Manager::execute`]
    /// returned; `None` for a result about another kind of record.
    fn outcome(response: fedgate_manage::Response) -> Option<Outcome<Self>>;
}

/// A record created by POST to its collection, found at [`Listed::location`] afterwards.
pub trait Listed: Record {
    /// The path of the record.
    fn location(&self) -> String;
}

/// How a change is held to the version its client read.
#[derive(Debug, Clone, Copy)]
pub enum Precondition<'a> {
    /// A versioned record: `If-Match` (of these headers) is required, and the reply of a
    /// committed change carries the new ETag.
    IfMatch(&'a HeaderMap),
    /// `If-Match` (of these headers) is honoured when given (the removal of a partner).
    IfMatchGiven(&'a HeaderMap),
    /// Not held to a version: a record the store keeps no version of, or a removal that takes
    /// no `If-Match` (of a policy); no ETag.
    NotHeld,
}

impl Precondition<'_> {
    /// The version the write must find (the request's `expected_version`; `None`: any).
    fn expected(self) -> Result<Option<u64>, ApiError> {
        match self {
            Precondition::IfMatch(headers) => IfMatch::from_headers(headers).required(),
            Precondition::IfMatchGiven(headers) => IfMatch::from_headers(headers).expected(),
            Precondition::NotHeld => Ok(None),
        }
    }
}

/// Run `request` as `caller` and take what it did to an `R` out of the result.
async fn execute<R: Record>(
    state: &AdminState,
    caller: &Caller,
    request: Request,
) -> Result<Outcome<R>, ApiError> {
    let command = request.command();
    state
        .manage(caller.actor(), move |m| {
            R::outcome(m.execute(request)?).ok_or_else(|| {
                ApiError::internal(format!("{command} returned another kind of result"))
            })
        })
        .await
}

/// Take the fields `keys` (the record's Identity, which a body may repeat) out of `fields`: each
/// must name the record the request is about (`same`, after `parse` of the key and its text),
/// else an invalid value with the reason `changed` gives.
pub fn unchanged_identity<I>(
    fields: &mut Fields,
    keys: &[&str],
    parse: impl Fn(&str, &str) -> Result<I, ApiError>,
    same: impl Fn(&I) -> bool,
    changed: impl Fn(&I) -> String,
) -> Result<(), ApiError> {
    for key in keys {
        if let Some(v) = take_field(fields, key) {
            let named = parse(key, &text_field(key, &v)?)?;
            if !same(&named) {
                return Err(InvalidValue::new(*key, changed(&named)).into());
            }
        }
    }
    Ok(())
}

/// The parts of a write request every record reads alike: the mode, the target (`target` reads
/// it from the path and takes the Identity fields out of the body, refusing another record's)
/// and the changes the remaining fields ask for, in this order, so the first error is the same
/// whichever record is written.
fn read<R: Record, T>(
    params: &Params,
    mut fields: Fields,
    target: impl FnOnce(&mut Fields) -> Result<T, ApiError>,
) -> Result<(Mode, T, R::Changes), ApiError> {
    let mode = params.mode()?;
    let target = target(&mut fields)?;
    let changes = typed_values(&fields, R::PARAMETERS, R::changes)?;
    Ok((mode, target, changes))
}

/// Create a record (POST): `201 Created` with its Location and ETag, or with `?whatIf=true`
/// `200` and what would have been created.
pub async fn create<R: Listed, T: Send + 'static>(
    state: &AdminState,
    caller: &Caller,
    params: &Params,
    fields: Fields,
    target: impl FnOnce(&mut Fields) -> Result<T, ApiError>,
    request: impl FnOnce(T, R::Changes, Mode) -> Request,
) -> Result<Response, ApiError> {
    let (mode, target, changes) = read::<R, T>(params, fields, target)?;
    let outcome = execute::<R>(state, caller, request(target, changes, mode)).await?;
    if mode != Mode::Commit {
        return Ok(Json(R::body(outcome)?).into_response());
    }
    let location = outcome.value.location();
    let version = outcome.version;
    Ok(created(&location, version, R::body(outcome)?))
}

/// Change a record (PATCH), held to `precondition`: `200` with what changed (or, with
/// `?whatIf=true`, what would) and, for a committed change of a versioned record, its ETag.
pub async fn update<R: Record, T: Send + 'static>(
    state: &AdminState,
    caller: &Caller,
    params: &Params,
    fields: Fields,
    precondition: Precondition<'_>,
    target: impl FnOnce(&mut Fields) -> Result<T, ApiError>,
    request: impl FnOnce(T, R::Changes, Option<u64>, Mode) -> Request,
) -> Result<Response, ApiError> {
    let (mode, target, changes) = read::<R, T>(params, fields, target)?;
    // Only a request that is otherwise valid is held to its precondition.
    let expected = precondition.expected()?;
    let outcome = execute::<R>(state, caller, request(target, changes, expected, mode)).await?;
    let version = match precondition {
        Precondition::IfMatch(_) if mode == Mode::Commit => outcome.version,
        _ => 0,
    };
    Ok(with_etag(Json(R::body(outcome)?).into_response(), version))
}

/// Remove a record (DELETE), held to `precondition`: `200` with the record removed (or, with
/// `?whatIf=true`, the record that would be), no ETag. `target` reads the record from the path
/// (and any query parameter of its own) after the mode.
pub async fn remove<R: Record, T>(
    state: &AdminState,
    caller: &Caller,
    params: &Params,
    precondition: Precondition<'_>,
    target: impl FnOnce() -> Result<T, ApiError>,
    request: impl FnOnce(T, Option<u64>, Mode) -> Request,
) -> Result<Json<R::Body>, ApiError> {
    let mode = params.mode()?;
    let target = target()?;
    let expected = precondition.expected()?;
    let outcome = execute::<R>(state, caller, request(target, expected, mode)).await?;
    Ok(Json(R::body(outcome)?))
}
