//! The audit log, live streams, the nodes of the pool, health, the OpenAPI document, `/metrics`,
//! and the JSON 404.

use std::sync::OnceLock;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use fedgate_store::{AuditEntry, AuditQuery, NodeStatus};

use crate::AdminState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::request::Params;
use crate::schema::{AuditParams, AuditSchema, Health, NodeSchema, PartnerHealthSchema};

/// Largest `limit` of `GET /audit`.
pub const MAX_AUDIT_LIMIT: u32 = 1000;

/// The audit log, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    params(AuditParams),
    responses(
        (status = 200, description = "Entries, oldest first", body = Vec<AuditSchema>),
        (status = 400, description = "A bad query parameter", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn audit(
    State(state): State<AdminState>,
    Extension(_caller): Extension<Caller>,
    params: Params,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let after = match params.get("after") {
        None => None,
        Some(text) => Some(text.trim().parse::<u64>().ok().filter(|v| *v <= i64::MAX as u64).ok_or_else(|| {
            ApiError::from(fedgate_model::InvalidValue::new(
                "after",
                format!("Cannot convert value \"{text}\" to type \"System.UInt64\". Allowed values: 0 to {}.", i64::MAX),
            ))
        })?),
    };
    let query = AuditQuery {
        target: params.get("target").map(str::to_owned),
        after_id: after,
        limit: Some(params.number("limit", 1, MAX_AUDIT_LIMIT)?.unwrap_or(100)),
    };
    let entries = state
        .blocking(move |store| Ok(store.audit_log(&query)?))
        .await?;
    Ok(Json(entries))
}

/// Live s2s streams, as the gateway reports them (empty when no gateway runs in this process).
#[utoipa::path(
    get,
    path = "/api/v1/streams",
    tag = "status",
    responses(
        (status = 200, description = "One object per live stream", body = Vec<Object>),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn streams(
    State(state): State<AdminState>,
    Extension(_caller): Extension<Caller>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let source = state.clone();
    Ok(Json(state.blocking(move |_| Ok(source.streams())).await?))
}

/// Partner health per partner and direction, as the gateway recorded it: the last stream that
/// came up (time, method, TLS version), the last that failed (time, step, reason), streams,
/// failures and refusals in the last hour and day, the partner certificate's not-after last
/// seen, and the partner's `Traffic` per minute over the last hour (stanzas each way, refusals
/// by reason). `partner` keeps one partner's rows. Empty when no gateway runs in this process.
#[utoipa::path(
    get,
    path = "/api/v1/partner-health",
    tag = "status",
    params(("partner" = Option<String>, Query, description = "Only this partner (its Identity)")),
    responses(
        (status = 200, description = "One object per partner and direction", body = Vec<PartnerHealthSchema>),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn partner_health(
    State(state): State<AdminState>,
    Extension(_caller): Extension<Caller>,
    params: Params,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let partner = params
        .get("partner")
        .map(|p| p.trim().trim_end_matches('.').to_ascii_lowercase());
    let rows = state
        .partner_health()
        .into_iter()
        .filter(|r| partner.as_ref().is_none_or(|p| r["Partner"] == p.as_str()))
        .collect();
    Ok(Json(rows))
}

/// Every node of the pool sharing this store, by name, as their heartbeats tell: alive or dead
/// (no heartbeat within the lease time), streams, stream leases (`fedgate status --cluster`).
#[utoipa::path(
    get,
    path = "/api/v1/cluster/nodes",
    tag = "status",
    responses(
        (status = 200, description = "One object per node, by name", body = Vec<NodeSchema>),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn cluster_nodes(
    State(state): State<AdminState>,
    Extension(_caller): Extension<Caller>,
) -> Result<Json<Vec<NodeStatus>>, ApiError> {
    let nodes = state
        .blocking(|store| Ok(store.nodes(fedgate_store::cluster::LEASE_TTL)?))
        .await?;
    Ok(Json(nodes))
}

/// Is the API up and its store readable? No token needed.
#[utoipa::path(
    get,
    path = "/api/v1/health",
    tag = "status",
    security(()),
    responses(
        (status = 200, description = "Up", body = Health),
        (status = 503, description = "The store cannot be read", body = Health),
    )
)]
pub async fn health(State(state): State<AdminState>) -> Response {
    match state.blocking(|store| Ok(store.revision()?)).await {
        Ok(revision) => Json(Health {
            status: "ok".into(),
            revision: Some(revision),
            error: None,
        })
        .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "unavailable".into(),
                revision: None,
                error: Some(e.detail.message),
            }),
        )
            .into_response(),
    }
}

/// This API's OpenAPI 3.1 document. No token needed.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "status",
    security(()),
    responses((status = 200, description = "The OpenAPI document", body = Object))
)]
pub async fn openapi_json() -> Response {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    let doc = DOC.get_or_init(|| serde_json::to_value(crate::openapi()).unwrap_or_default());
    Json(doc.clone()).into_response()
}

/// Request counters in Prometheus text format. No token needed.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "status",
    security(()),
    responses((status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain"))
)]
pub async fn metrics(State(state): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.gateway_metrics() + &state.metrics().render(),
    )
        .into_response()
}

/// Any other path: a JSON 404 (counted as route `unmatched`).
pub async fn not_found(State(state): State<AdminState>, method: Method, uri: Uri) -> ApiError {
    state.metrics().record(method.as_str(), "unmatched", 404);
    ApiError::not_found(format!("There is no API route {method} {}.", uri.path()))
}

/// A known path with a method it does not have.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        None,
        format!("{} does not accept {method}.", uri.path()),
    )
}
