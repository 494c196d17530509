//! fedgate's admin REST API: the management commands of the CLI over HTTP, under `/api/v1`.
//!
//! [`router`] builds an axum [`Router`] over an [`AdminState`] (the store, the live-streams source,
//! the hosted domains). Every call but `/api/v1/health`, `/api/v1/openapi.json` and `/metrics` needs
//! `Authorization: Bearer <token>` with a token made by `fedgate token create`; `reader` tokens may
//! only read. Changes go through [`fedgate_manage::Manager`] with the actor `token:<name>`, so the
//! validation, the error texts and the audit log are the CLI's.
//!
//! - [`tokens`] — API tokens' semantics (re-exported from fedgate-manage, shared with the CLI).
//! - [`auth`] — reading the bearer token or panel session of a request and checking it.
//! - [`error`] — the JSON error body and HTTP status of every failure.
//! - [`schema`] — the OpenAPI schemas of the bodies; [`openapi`] the whole document.
//! - [`metrics`] — request counters in Prometheus text format.
//! - `request`, `reply` — reading requests (typed JSON bodies, query, If-Match) and building replies.
//! - [`listener`] — serving: the admin router on its listener (TLS or loopback HTTP) and the
//!   metrics listener's `/metrics` and `/status`.
//! - [`panel`] — the web control panel: embedded assets, browser sessions (HttpOnly cookie + CSRF).
//! - `write` — the one write path of partners, policies and the gateway settings, creations,
//!   changes and removals alike (what-if, Identity, values, If-Match as the `expected_version` of
//!   a `fedgate_manage::Request`, `Manager::execute`, the ETag).
//! - `partners`, `policies`, `gateway`, `misc` — the handlers.

#![forbid(unsafe_code)]

pub mod auth;
pub mod error;
mod gateway;
pub mod metrics;
mod misc;
pub mod panel;
mod partners;
mod policies;
mod reply;
mod request;
pub mod schema;
/// API tokens (making, hashing, checking), from fedgate-manage: the CLI shares them.
pub use fedgate_manage::tokens;
mod write;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::middleware;
use fedgate_manage::Manager;
use fedgate_model::Domain;
use fedgate_store::Store;
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::metrics::Metrics;

/// The prefix of every API route.
pub const API_PREFIX: &str = "/api/v1";

/// Largest request body accepted (bytes).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub use fedgate_manage::live::{BoxFuture, NoStreams, PartnerTester, StreamsSource};

pub mod listener;

/// What the handlers share: cheap to clone.
#[derive(Clone)]
pub struct AdminState {
    store: Arc<dyn Store>,
    streams: Arc<dyn StreamsSource>,
    tester: Option<Arc<dyn PartnerTester>>,
    hosted_domains: Arc<[Domain]>,
    metrics: Arc<Metrics>,
    sessions: Arc<panel::Sessions>,
    secure_cookies: bool,
}

impl AdminState {
    /// State over `store`, with no live streams and no hosted domains.
    pub fn new(store: Arc<dyn Store>) -> Self {
        AdminState {
            store,
            streams: Arc::new(NoStreams),
            tester: None,
            hosted_domains: Arc::from(Vec::new()),
            metrics: Arc::default(),
            sessions: Arc::default(),
            secure_cookies: true,
        }
    }

    /// Whether the panel's session cookie is marked Secure (true by default; false only when the
    /// admin listener serves plain HTTP on loopback).
    pub fn with_secure_cookies(mut self, secure: bool) -> Self {
        self.secure_cookies = secure;
        self
    }

    pub(crate) fn secure_cookies(&self) -> bool {
        self.secure_cookies
    }

    pub(crate) fn sessions(&self) -> &panel::Sessions {
        &self.sessions
    }

    /// Where `/streams` reads the live streams.
    pub fn with_streams(mut self, streams: Arc<dyn StreamsSource>) -> Self {
        self.streams = streams;
        self
    }

    /// Who runs `POST /partners/{identity}/test` and `POST /gateway-configuration/test` (without
    /// one they answer 503).
    pub fn with_tester(mut self, tester: Arc<dyn PartnerTester>) -> Self {
        self.tester = Some(tester);
        self
    }

    pub(crate) fn tester(&self) -> Option<Arc<dyn PartnerTester>> {
        self.tester.clone()
    }

    /// The gateway's own hosted domains: no partner may claim them (as in the CLI with a config).
    pub fn with_hosted_domains(mut self, domains: Vec<Domain>) -> Self {
        self.hosted_domains = Arc::from(domains);
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(crate) fn streams(&self) -> Vec<serde_json::Value> {
        self.streams.streams()
    }

    pub(crate) fn partner_health(&self) -> Vec<serde_json::Value> {
        self.streams.partner_health()
    }

    pub(crate) fn gateway_metrics(&self) -> String {
        self.streams.metrics_text()
    }

    /// Run `f` with the store on the blocking pool (store calls block).
    pub(crate) async fn blocking<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, ApiError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| ApiError::internal(format!("the request's store task failed: {e}")))?
    }

    /// Run `f` with a [`Manager`] acting for `actor` on the blocking pool.
    pub(crate) async fn manage<T, F>(&self, actor: String, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Manager<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        let hosted = self.hosted_domains.to_vec();
        self.blocking(move |store| {
            let manager = Manager::new(store, actor).with_hosted_domains(hosted);
            f(&manager)
        })
        .await
    }
}

/// Every API route, with its OpenAPI description; `protected` routes need a token.
fn api_routes() -> (OpenApiRouter<AdminState>, OpenApiRouter<AdminState>) {
    let protected = OpenApiRouter::new()
        .routes(routes!(partners::list, partners::create))
        .routes(routes!(
            partners::get_one,
            partners::update,
            partners::remove
        ))
        .routes(routes!(partners::test))
        .routes(routes!(policies::list, policies::create))
        .routes(routes!(
            policies::get_one,
            policies::update,
            policies::remove
        ))
        .routes(routes!(policies::list_grants))
        .routes(routes!(policies::grant))
        .routes(routes!(gateway::get_config, gateway::update_config))
        .routes(routes!(gateway::test))
        .routes(routes!(misc::audit))
        .routes(routes!(misc::streams))
        .routes(routes!(misc::partner_health))
        .routes(routes!(misc::cluster_nodes))
        .routes(routes!(panel::negotiation));
    let public = OpenApiRouter::new()
        .routes(routes!(panel::sign_in, panel::current, panel::sign_out))
        .routes(routes!(misc::health))
        .routes(routes!(misc::openapi_json))
        .routes(routes!(misc::metrics));
    (protected, public)
}

/// The OpenAPI document of the API, generated from the handlers and schemas.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (protected, public) = api_routes();
    let mut doc = schema::ApiDoc::openapi();
    doc.merge(protected.into_openapi());
    doc.merge(public.into_openapi());
    doc
}

/// The admin router: the web panel at `/`, the API under `/api/v1/...`, and `/metrics`.
pub fn router(state: AdminState) -> Router {
    let (protected, public) = api_routes();
    let protected: Router<AdminState> = Router::from(protected).route_layer(
        middleware::from_fn_with_state(state.clone(), auth::require_token),
    );
    let public: Router<AdminState> = Router::from(public)
        .route("/", axum::routing::get(panel::index))
        .route("/panel/app.js", axum::routing::get(panel::app_js))
        .route("/panel/app.css", axum::routing::get(panel::app_css));
    protected
        .merge(public)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::count,
        ))
        .fallback(misc::not_found)
        .method_not_allowed_fallback(misc::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .with_state(state)
}
