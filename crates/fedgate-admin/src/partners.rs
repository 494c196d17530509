//! `/api/v1/partners`: New/Get/Set/Remove-CsXmppAllowedPartner over HTTP.
//!
//! Bodies use the cmdlets' field names (README, "The partner record"); they are converted by
//! `fedgate_manage::params`, so every value is checked, and every error worded, exactly as in the
//! CLI. Records carry their version as ETag; PATCH needs `If-Match`, DELETE honours it.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use fedgate_manage::params::{PARTNER_PARAMETERS, parse_partner_identity, partner_changes};
use fedgate_manage::partners::{PartnerSelector, SetTarget};
use fedgate_manage::{Outcome, ParamValue, Request, Response as Done};
use fedgate_model::{Domain, InvalidValue, PartnerChanges, PartnerView, XmppAllowedPartner};

use crate::AdminState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::reply::with_etag;
use crate::request::{JsonObject, Params, PathText, take_field, text_field};
use crate::schema::{
    ListQuery, PartnerCreateInput, PartnerFieldsInput, PartnerPage, PartnerSchema,
    PartnerTestQuery, PartnerTestSchema, PartnerWrite, WhatIfQuery,
};
use crate::write::{self, Fields, Listed, Precondition, Record};

/// Partners per page unless `limit` says otherwise.
pub const DEFAULT_PAGE: u32 = 100;
/// Largest `limit`.
pub const MAX_PAGE: u32 = 1000;
/// Largest `offset` (the int32 range the document gives it).
pub const MAX_OFFSET: u32 = i32::MAX as u32;

/// The partner's Identity as the path gives it.
fn path_identity(text: &str) -> Result<Domain, ApiError> {
    Ok(parse_partner_identity("Identity", text)?)
}

fn write_body(outcome: Outcome<XmppAllowedPartner>) -> PartnerWrite {
    PartnerWrite {
        value: PartnerView::from(&outcome.value),
        version: outcome.version,
        warnings: outcome.warnings,
        what_if: outcome.what_if,
    }
}

impl Record for XmppAllowedPartner {
    type Changes = PartnerChanges;
    type Body = PartnerWrite;
    const PARAMETERS: &'static [(&'static str, &'static str)] = &PARTNER_PARAMETERS;

    fn changes(values: &[(&str, &ParamValue)]) -> Result<PartnerChanges, InvalidValue> {
        partner_changes(values.iter().copied())
    }
    fn body(outcome: Outcome<XmppAllowedPartner>) -> Result<PartnerWrite, ApiError> {
        Ok(write_body(outcome))
    }
    fn outcome(response: Done) -> Option<Outcome<XmppAllowedPartner>> {
        match response {
            Done::Partner(outcome) | Done::PartnerRemoved(outcome) => Some(outcome),
            _ => None,
        }
    }
}

impl Listed for XmppAllowedPartner {
    fn location(&self) -> String {
        format!("/api/v1/partners/{}", self.identity)
    }
}

/// List partners, optionally filtered, one page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/partners",
    tag = "partners",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of partners, ordered by Identity", body = PartnerPage),
        (status = 400, description = "A bad query parameter", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
    params: Params,
) -> Result<Json<PartnerPage>, ApiError> {
    let offset = params.number("offset", 0, MAX_OFFSET)?.unwrap_or(0);
    let limit = params.number("limit", 1, MAX_PAGE)?.unwrap_or(DEFAULT_PAGE);
    let selector = params
        .get("filter")
        .filter(|f| !f.is_empty())
        .map_or(PartnerSelector::All, |f| {
            PartnerSelector::Filter(f.to_owned())
        });
    let all = state
        .manage(caller.actor(), move |m| Ok(m.get_partners(&selector)?))
        .await?;
    let total = all.len();
    let items = all
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|p| PartnerView::from(&p.value))
        .collect();
    Ok(Json(PartnerPage {
        items,
        total,
        offset,
        limit,
    }))
}

/// One partner, with its version as ETag.
#[utoipa::path(
    get,
    path = "/api/v1/partners/{identity}",
    tag = "partners",
    params(("identity" = String, Path, description = "The partner's Identity (primary domain)")),
    responses(
        (status = 200, description = "The partner", body = PartnerSchema,
            headers(("ETag" = String, description = "The record's version"))),
        (status = 400, description = "Not a domain name", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such partner", body = ErrorBody),
    )
)]
pub async fn get_one(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
    PathText(identity): PathText,
) -> Result<Response, ApiError> {
    let identity = path_identity(&identity)?;
    let found = state
        .manage(caller.actor(), move |m| {
            Ok(m.get_partners(&PartnerSelector::Identity(identity))?)
        })
        .await?;
    let partner = found
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("the store returned no partner"))?;
    Ok(with_etag(
        Json(PartnerView::from(&partner.value)).into_response(),
        partner.version,
    ))
}

/// The Identity of a new partner: `Identity` or `Domain` (both only if they name the same domain).
fn new_identity(fields: &mut Fields) -> Result<Domain, ApiError> {
    let identity = take_field(fields, "Identity")
        .map(|v| -> Result<Domain, ApiError> { path_identity(&text_field("Identity", &v)?) })
        .transpose()?;
    let domain = take_field(fields, "Domain")
        .map(|v| -> Result<Domain, ApiError> {
            Ok(parse_partner_identity(
                "Domain",
                &text_field("Domain", &v)?,
            )?)
        })
        .transpose()?;
    match (identity, domain) {
        (Some(i), Some(d)) if i != d => Err(InvalidValue::new(
            "Domain",
            "Specify the primary domain with either -Identity or -Domain, not both.",
        )
        .into()),
        (Some(i), _) | (None, Some(i)) => Ok(i),
        (None, None) => Err(InvalidValue::new(
            "Identity",
            "Specify the partner's domain with -Identity (or -Domain).",
        )
        .into()),
    }
}

/// Create a partner (New-CsXmppAllowedPartner); `?whatIf=true` only checks.
#[utoipa::path(
    post,
    path = "/api/v1/partners",
    tag = "partners",
    params(WhatIfQuery),
    request_body = PartnerCreateInput,
    responses(
        (status = 201, description = "Created", body = PartnerWrite,
            headers(("ETag" = String), ("Location" = String))),
        (status = 200, description = "Dry run (whatIf): nothing written", body = PartnerWrite),
        (status = 400, description = "An invalid value; names the parameter and the allowed values", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "A reader token", body = ErrorBody),
        (status = 409, description = "The partner exists or a domain belongs to another partner", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
    params: Params,
    JsonObject(fields): JsonObject,
) -> Result<Response, ApiError> {
    write::create::<XmppAllowedPartner, _>(
        &state,
        &caller,
        &params,
        fields,
        new_identity,
        |identity, changes, mode| Request::NewPartner {
            identity,
            changes,
            mode,
        },
    )
    .await
}

/// Change a partner's fields (Set-CsXmppAllowedPartner). Needs `If-Match`.
#[utoipa::path(
    patch,
    path = "/api/v1/partners/{identity}",
    tag = "partners",
    params(
        ("identity" = String, Path, description = "The partner's Identity"),
        ("If-Match" = String, Header, description = "The ETag read, or * for any version"),
        WhatIfQuery
    ),
    request_body(content = PartnerFieldsInput, description = "Only the fields to change. AdditionalDomains: a list replaces, null clears, {\"Add\":[..],\"Remove\":[..],\"Replace\":[..]} edits."),
    responses(
        (status = 200, description = "Changed (or, with whatIf, what would change)", body = PartnerWrite,
            headers(("ETag" = String))),
        (status = 400, description = "An invalid value", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "A reader token", body = ErrorBody),
        (status = 404, description = "No such partner", body = ErrorBody),
        (status = 409, description = "A domain belongs to another partner", body = ErrorBody),
        (status = 412, description = "The record changed since it was read", body = ErrorBody),
        (status = 428, description = "If-Match missing", body = ErrorBody),
    )
)]
pub async fn update(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
    PathText(identity): PathText,
    headers: HeaderMap,
    params: Params,
    JsonObject(fields): JsonObject,
) -> Result<Response, ApiError> {
    let target = |fields: &mut Fields| {
        let identity = path_identity(&identity)?;
        write::unchanged_identity(
            fields,
            &["Identity", "Domain"],
            |key, text| Ok(parse_partner_identity(key, text)?),
            |named| *named == identity,
            |named| {
                format!(
                    "A partner's Identity cannot be changed ('{identity}' to '{named}'); remove the partner and create it again."
                )
            },
        )?;
        Ok(SetTarget::Identity(identity))
    };
    write::update::<XmppAllowedPartner, _>(
        &state,
        &caller,
        &params,
        fields,
        Precondition::IfMatch(&headers),
        target,
        |target, changes, expected_version, mode| Request::SetPartner {
            target,
            changes,
            expected_version,
            mode,
        },
    )
    .await
}

/// Remove a partner (Remove-CsXmppAllowedPartner). With `If-Match`, only that version.
#[utoipa::path(
    delete,
    path = "/api/v1/partners/{identity}",
    tag = "partners",
    params(
        ("identity" = String, Path, description = "The partner's Identity"),
        ("If-Match" = Option<String>, Header, description = "Remove only if still at this ETag"),
        WhatIfQuery
    ),
    responses(
        (status = 200, description = "Removed (or, with whatIf, would be); Value is the record", body = PartnerWrite),
        (status = 400, description = "Not a domain name", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "A reader token", body = ErrorBody),
        (status = 404, description = "No such partner", body = ErrorBody),
        (status = 412, description = "The record changed since it was read", body = ErrorBody),
    )
)]
pub async fn remove(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
    PathText(identity): PathText,
    headers: HeaderMap,
    params: Params,
) -> Result<Json<PartnerWrite>, ApiError> {
    write::remove::<XmppAllowedPartner, _>(
        &state,
        &caller,
        &params,
        Precondition::IfMatchGiven(&headers),
        || path_identity(&identity),
        |identity, expected_version, mode| Request::RemovePartner {
            identity,
            expected_version,
            mode,
        },
    )
    .await
}

/// Test a listed partner from the gateway's point of view (Test-CsXmppAllowedPartner):
/// resolution, connection, stream, TLS, certificate, SASL EXTERNAL and a dialback round trip,
/// each with its timing, then the verdict against the partner's settings. Admins only (it
/// makes outbound connections); takes as long as the steps (each bounded, ~1 minute at most).
#[utoipa::path(
    post,
    path = "/api/v1/partners/{identity}/test",
    tag = "partners",
    params(
        ("identity" = String, Path, description = "The partner's Identity"),
        PartnerTestQuery
    ),
    responses(
        (status = 200, description = "The test ran; Verdict says whether streams can be set up", body = PartnerTestSchema),
        (status = 400, description = "Not a domain name, or `from` is not a hosted domain", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "A reader token", body = ErrorBody),
        (status = 404, description = "No such partner", body = ErrorBody),
        (status = 503, description = "No gateway runs in this process to test from", body = ErrorBody),
    )
)]
pub async fn test(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
    PathText(identity): PathText,
    params: Params,
) -> Result<Json<fedgate_model::probe::Report>, ApiError> {
    let identity = path_identity(&identity)?;
    let from = params.get("from").map(str::to_owned);
    let tester = state.tester().ok_or_else(|| {
        ApiError::unavailable("The partner test runs inside fedgate serve; no gateway runs here.")
    })?;
    // Only listed partners (404 otherwise), as Get-CsXmppAllowedPartner -Identity.
    let listed = identity.clone();
    state
        .manage(caller.actor(), move |m| {
            Ok(m.get_partners(&PartnerSelector::Identity(listed))?)
        })
        .await?;
    Ok(Json(tester.test(identity, from).await?))
}
