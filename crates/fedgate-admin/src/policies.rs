//! `/api/v1/policies` and `/api/v1/grants`: New/Get/Set/Remove/Grant-CsExternalAccessPolicy.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use fedgate_manage::params::{POLICY_PARAMETERS, policy_changes};
use fedgate_manage::policies::PolicySelector;
use fedgate_manage::{Outcome, ParamValue, Request, Response as Done};
use fedgate_model::{ExternalAccessPolicy, InvalidValue, PolicyChanges, PolicyScope, UserJid};

use crate::AdminState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::reply::{to_json, with_etag};
use crate::request::{JsonObject, Params, PathText, take_field, text_field};
use crate::schema::{
    GrantInput, GrantSchema, GrantWrite, PolicyCreateInput, PolicyFieldsInput, PolicyListQuery,
    PolicySchema, PolicyWrite, RemovePolicyQuery, WhatIfQuery,
};
use crate::write::{self, Fields, Listed, Precondition, Record};

fn write_body(outcome: Outcome<ExternalAccessPolicy>) -> Result<PolicyWrite, ApiError> {
    Ok(PolicyWrite {
        value: to_json(&outcome.value)?,
        version: outcome.version,
        warnings: outcome.warnings,
        what_if: outcome.what_if,
    })
}

impl Record for ExternalAccessPolicy {
    type Changes = PolicyChanges;
    type Body = PolicyWrite;
    const PARAMETERS: &'static [(&'static str, &'static str)] = &POLICY_PARAMETERS;

    fn changes(values: &[(&str, &ParamValue)]) -> Result<PolicyChanges, InvalidValue> {
        policy_changes(values.iter().copied())
    }
    fn body(outcome: Outcome<ExternalAccessPolicy>) -> Result<PolicyWrite, ApiError> {
        write_body(outcome)
    }
    fn outcome(response: Done) -> Option<Outcome<ExternalAccessPolicy>> {
        match response {
            Done::Policy(outcome) | Done::PolicyRemoved(outcome) => Some(outcome),
            _ => None,
        }
    }
}

impl Listed for ExternalAccessPolicy {
    fn location(&self) -> String {
        format!("/api/v1/policies/{}", self.identity)
    }
}

/// Every external access policy (Global first).
#[utoipa::path(
    get,
    path = "/api/v1/policies",
    tag = "policies",
    params(PolicyListQuery),
    responses(
        (status = 200, description = "The policies", body = Vec<PolicySchema>),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
    params: Params,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let selector = params
        .get("filter")
        .filter(|f| !f.is_empty())
        .map_or(PolicySelector::All, |f| {
            PolicySelector::Filter(f.to_owned())
        });
    let policies = state
        .manage(caller.actor(), move |m| Ok(m.get_policies(&selector)?))
        .await?;
    let items = policies
        .iter()
        .map(|p| to_json(&p.value))
        .collect::<Result<_, _>>()?;
    Ok(Json(items))
}

/// One policy, with its version as ETag.
#[utoipa::path(
    get,
    path = "/api/v1/policies/{identity}",
    tag = "policies",
    params(("identity" = String, Path, description = "Global, site:<name> or tag:<name>")),
    responses(
        (status = 200, description = "The policy", body = PolicySchema, headers(("ETag" = String))),
        (status = 400, description = "Not a policy identity", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such policy", body = ErrorBody),
    )
)]
pub async fn get_one(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
    PathText(identity): PathText,
) -> Result<Response, ApiError> {
    let scope = PolicyScope::parse(&identity)?;
    let found = state
        .manage(caller.actor(), move |m| {
            Ok(m.get_policies(&PolicySelector::Identity(scope))?)
        })
        .await?;
    let policy = found
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("the store returned no policy"))?;
    Ok(with_etag(
        Json(to_json(&policy.value)?).into_response(),
        policy.version,
    ))
}

/// Create a policy (New-CsExternalAccessPolicy).
#[utoipa::path(
    post,
    path = "/api/v1/policies",
    tag = "policies",
    params(WhatIfQuery),
    request_body = PolicyCreateInput,
    responses(
        (status = 201, description = "Created", body = PolicyWrite, headers(("ETag" = String), ("Location" = String))),
        (status = 200, description = "Dry run (whatIf): nothing written", body = PolicyWrite),
        (status = 400, description = "An invalid value", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "A reader token", body = ErrorBody),
        (status = 409, description = "The policy exists", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
    params: Params,
    JsonObject(fields): JsonObject,
) -> Result<Response, ApiError> {
    let target = |fields: &mut Fields| -> Result<PolicyScope, ApiError> {
        let identity = take_field(fields, "Identity").ok_or_else(|| {
            ApiError::from(InvalidValue::new(
                "Identity",
                "Specify the policy with Identity: Global, site:<name> or tag:<name>.",
            ))
        })?;
        Ok(PolicyScope::parse(&text_field("Identity", &identity)?)?)
    };
    write::create::<ExternalAccessPolicy, _>(
        &state,
        &caller,
        &params,
        fields,
        target,
        |scope, changes, mode| Request::NewPolicy {
            scope,
            changes,
            mode,
        },
    )
    .await
}

/// Change a policy (Set-CsExternalAccessPolicy). Needs `If-Match`.
#[utoipa::path(
    patch,
    path = "/api/v1/policies/{identity}",
    tag = "policies",
    params(
        ("identity" = String, Path, description = "Global, site:<name> or tag:<name>"),
        ("If-Match" = String, Header, description = "The ETag read, or * for any version"),
        WhatIfQuery
    ),
    request_body = PolicyFieldsInput,
    responses(
        (status = 200, description = "Changed (or, with whatIf, what would change)", body = PolicyWrite, headers(("ETag" = String))),
        (status = 400, description = "An invalid value", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "A reader token", body = ErrorBody),
        (status = 404, description = "No such policy", body = ErrorBody),
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
    let target = |fields: &mut Fields| -> Result<PolicyScope, ApiError> {
        let scope = PolicyScope::parse(&identity)?;
        write::unchanged_identity(
            fields,
            &["Identity"],
            |_, text| Ok(PolicyScope::parse(text)?),
            |named| named.key() == scope.key(),
            |named| format!("A policy's Identity cannot be changed ('{scope}' to '{named}')."),
        )?;
        Ok(scope)
    };
    write::update::<ExternalAccessPolicy, _>(
        &state,
        &caller,
        &params,
        fields,
        Precondition::IfMatch(&headers),
        target,
        |scope, changes, expected_version, mode| Request::SetPolicy {
            scope,
            instance: None,
            changes,
            expected_version,
            mode,
        },
    )
    .await
}

/// Remove a policy (Remove-CsExternalAccessPolicy); Global is reset to its defaults.
#[utoipa::path(
    delete,
    path = "/api/v1/policies/{identity}",
    tag = "policies",
    params(
        ("identity" = String, Path, description = "Global, site:<name> or tag:<name>"),
        RemovePolicyQuery
    ),
    responses(
        (status = 200, description = "Removed (or, with whatIf, would be)", body = PolicyWrite),
        (status = 400, description = "Not a policy identity", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "A reader token", body = ErrorBody),
        (status = 404, description = "No such policy", body = ErrorBody),
        (status = 409, description = "Still granted to users (use force=true)", body = ErrorBody),
    )
)]
pub async fn remove(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
    PathText(identity): PathText,
    params: Params,
) -> Result<Json<PolicyWrite>, ApiError> {
    write::remove::<ExternalAccessPolicy, _>(
        &state,
        &caller,
        &params,
        Precondition::NotHeld,
        || Ok((params.flag("force")?, PolicyScope::parse(&identity)?)),
        // Remove-CsExternalAccessPolicy takes no If-Match.
        |(force, scope), _, mode| Request::RemovePolicy { scope, force, mode },
    )
    .await
}

/// Every per-user grant.
#[utoipa::path(
    get,
    path = "/api/v1/grants",
    tag = "policies",
    responses(
        (status = 200, description = "The grants", body = Vec<GrantSchema>),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn list_grants(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let grants = state
        .manage(caller.actor(), |m| Ok(m.get_grants()?))
        .await?;
    Ok(Json(grants.iter().map(to_json).collect::<Result<_, _>>()?))
}

/// Grant a tag policy to a user, or with `PolicyName: null` remove the grant
/// (Grant-CsExternalAccessPolicy).
#[utoipa::path(
    put,
    path = "/api/v1/grants/{user}",
    tag = "policies",
    params(("user" = String, Path, description = "The user's bare JID"), WhatIfQuery),
    request_body = GrantInput,
    responses(
        (status = 200, description = "The user's grant after the call (null: none)", body = GrantWrite),
        (status = 400, description = "An invalid value", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "A reader token", body = ErrorBody),
        (status = 404, description = "No such policy", body = ErrorBody),
    )
)]
pub async fn grant(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
    PathText(user): PathText,
    params: Params,
    JsonObject(mut fields): JsonObject,
) -> Result<Json<GrantWrite>, ApiError> {
    let mode = params.mode()?;
    let user = UserJid::parse(&user)?;
    let name = take_field(&mut fields, "PolicyName").ok_or_else(|| {
        ApiError::from(InvalidValue::new(
            "PolicyName",
            "Specify PolicyName: the name of a tag: policy, or null to remove the grant.",
        ))
    })?;
    if let Some((key, _)) = fields.first() {
        return Err(InvalidValue::new(
            key.as_str(),
            format!("'{key}' is not a settable field. Allowed fields: PolicyName."),
        )
        .into());
    }
    let name = match name {
        serde_json::Value::Null => None,
        other => Some(text_field("PolicyName", &other)?),
    };
    let outcome = state
        .manage(caller.actor(), move |m| {
            Ok(m.grant_policy(&user, name.as_deref(), mode)?)
        })
        .await?;
    Ok(Json(GrantWrite {
        value: outcome.value.as_ref().map(to_json).transpose()?,
        version: outcome.version,
        warnings: outcome.warnings,
        what_if: outcome.what_if,
    }))
}
