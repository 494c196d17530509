//! `/api/v1/gateway-configuration`: Get/Set-CsXmppGatewayConfiguration. DialbackPassphrase can be
//! set but is never returned (the model shows it as `********`). `POST
//! /api/v1/gateway-configuration/test`: Test-CsXmppGatewayConfiguration.

use axum::Json;
use axum::extract::{Extension, State};
use axum::response::Response;
use fedgate_manage::params::{GATEWAY_PARAMETERS, GatewayChanges, gateway_changes};
use fedgate_manage::{Outcome, ParamValue, Request, Response as Done};
use fedgate_model::{InvalidValue, XmppGatewayConfiguration};

use crate::AdminState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::reply::to_json;
use crate::request::{JsonObject, Params};
use crate::schema::{
    GatewayInput, GatewaySchema, GatewayTestQuery, GatewayTestSchema, GatewayWrite, WhatIfQuery,
};
use crate::write::{self, Fields, Precondition, Record};

const PASSPHRASE: &str = "DialbackPassphrase";

/// The gateway-wide settings.
#[utoipa::path(
    get,
    path = "/api/v1/gateway-configuration",
    tag = "gateway",
    responses(
        (status = 200, description = "The settings", body = GatewaySchema),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn get_config(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let config = state
        .manage(caller.actor(), |m| Ok(m.get_gateway_configuration()?))
        .await?;
    Ok(Json(to_json(&config)?))
}

/// Change gateway-wide settings (Set-CsXmppGatewayConfiguration). The store keeps no version of
/// this record, so there is no If-Match: only the fields given are changed.
#[utoipa::path(
    patch,
    path = "/api/v1/gateway-configuration",
    tag = "gateway",
    params(WhatIfQuery),
    request_body = GatewayInput,
    responses(
        (status = 200, description = "Changed (or, with whatIf, what would change)", body = GatewayWrite),
        (status = 400, description = "An invalid value", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "A reader token", body = ErrorBody),
    )
)]
pub async fn update_config(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
    params: Params,
    JsonObject(fields): JsonObject,
) -> Result<Response, ApiError> {
    write::update::<XmppGatewayConfiguration, _>(
        &state,
        &caller,
        &params,
        fields,
        Precondition::NotHeld,
        global_only,
        |(), changes, _, mode| Request::SetGateway {
            instance: None,
            changes,
            mode,
        },
    )
    .await
}

/// The target of a change: the one configuration, `Identity` only `Global`; and a
/// DialbackPassphrase that is not a string refused without repeating it.
fn global_only(fields: &mut Fields) -> Result<(), ApiError> {
    write::unchanged_identity(
        fields,
        &["Identity"],
        |_, text| Ok(text.to_owned()),
        |text| text.trim().eq_ignore_ascii_case("global"),
        |text| format!("There is one gateway configuration, not '{text}'. Allowed values: Global."),
    )?;
    // The passphrase is never repeated in an error, whatever was sent in its place.
    if let Some((_, v)) = fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(PASSPHRASE))
        .filter(|(_, v)| !v.is_string())
    {
        return Err(InvalidValue::new(
            PASSPHRASE,
            format!(
                "Cannot convert {} to the type of {PASSPHRASE}. Allowed values: a JSON string of at least {} printable characters.",
                if v.is_null() { "null" } else { "this value" },
                fedgate_model::gateway_settings::MIN_DIALBACK_PASSPHRASE_CHARS
            ),
        )
        .into());
    }
    Ok(())
}

impl Record for XmppGatewayConfiguration {
    type Changes = GatewayChanges;
    type Body = GatewayWrite;
    const PARAMETERS: &'static [(&'static str, &'static str)] = &GATEWAY_PARAMETERS;

    fn changes(values: &[(&str, &ParamValue)]) -> Result<GatewayChanges, InvalidValue> {
        gateway_changes(values.iter().copied())
    }
    fn body(outcome: Outcome<XmppGatewayConfiguration>) -> Result<GatewayWrite, ApiError> {
        Ok(GatewayWrite {
            value: to_json(&outcome.value)?,
            version: outcome.version,
            warnings: outcome.warnings,
            what_if: outcome.what_if,
        })
    }
    fn outcome(response: Done) -> Option<Outcome<XmppGatewayConfiguration>> {
        match response {
            Done::GatewaySet(outcome) => Some(outcome),
            _ => None,
        }
    }
}

/// Test each hosted domain (or `?domain=`) as partners see it (Test-CsXmppGatewayConfiguration):
/// its SRV and A/AAAA records compared with the gateway's external listeners, a stream to each
/// listener, its TLS and the certificate presented for the domain, and a verdict per domain and
/// overall. Admins only (it makes connections); takes as long as the steps (each bounded).
#[utoipa::path(
    post,
    path = "/api/v1/gateway-configuration/test",
    tag = "gateway",
    params(GatewayTestQuery),
    responses(
        (status = 200, description = "The test ran; Verdict says whether partners can reach the gateway", body = GatewayTestSchema),
        (status = 400, description = "`domain` is not a hosted domain", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "A reader token", body = ErrorBody),
        (status = 503, description = "No gateway runs in this process to test", body = ErrorBody),
    )
)]
pub async fn test(
    State(state): State<AdminState>,
    params: Params,
) -> Result<Json<fedgate_model::gateway_test::GatewayReport>, ApiError> {
    let domain = params.get("domain").map(str::to_owned);
    let tester = state.tester().ok_or_else(|| {
        ApiError::unavailable("The gateway test runs inside fedgate serve; no gateway runs here.")
    })?;
    Ok(Json(tester.test_gateway(domain).await?))
}
