//! What the gateway hands to the side that serves its admin and metrics listeners (the REST API
//! and web panel, `/metrics` and `/status`): the bound listeners, the TLS configuration, the
//! store and hosted domains, and a view of the gateway ([`fedgate_manage::live`]: live streams,
//! metrics text, `/status`, partner health, the partner and gateway tests). The serving itself
//! is a [`ControlPlane`] the binary plugs in, so this crate needs no HTTP framework.

use std::sync::Arc;

use fedgate_manage::live::{BoxFuture, PartnerTester, StreamsSource};
use fedgate_model::gateway_test::{GatewayReport, Listener};
use fedgate_model::probe::Report;
use fedgate_model::{Domain, InvalidValue};
use fedgate_store::Store;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::state::Shared;

/// Serves the admin and metrics listeners the gateway has bound (the binary plugs in the
/// REST API of fedgate-admin).
pub trait ControlPlane: Send + Sync {
    /// Serve the admin API and web panel on `site.listener` until `site.shutdown` turns true.
    fn serve_admin(&self, site: AdminSite) -> BoxFuture<()>;

    /// Serve `/metrics` and `/status` on `site.listener` until the task is aborted.
    fn serve_metrics(&self, site: MetricsSite) -> BoxFuture<()>;
}

/// The admin listener as the gateway bound it, and what it serves.
pub struct AdminSite {
    pub listener: TcpListener,
    /// The TLS configuration ([`tls_config`]); `None`: plain HTTP (loopback only, checked by
    /// the configuration).
    pub tls: Option<Arc<ServerConfig>>,
    /// The gateway's store, shared.
    pub store: Arc<dyn Store>,
    /// The hosted domains, which no partner may claim.
    pub hosted_domains: Vec<Domain>,
    /// The live streams, metrics and health of this gateway.
    pub streams: Arc<dyn StreamsSource>,
    /// The partner and gateway tests, run by this gateway.
    pub tester: Arc<dyn PartnerTester>,
    pub shutdown: watch::Receiver<bool>,
}

/// The metrics listener as the gateway bound it, and what it serves.
pub struct MetricsSite {
    pub listener: TcpListener,
    pub source: Arc<dyn StreamsSource>,
}

/// The live streams and metrics of this gateway, for `GET /api/v1/streams`, the panel and `/metrics`.
struct GatewayStreams(Arc<Shared>);

impl StreamsSource for GatewayStreams {
    fn streams(&self) -> Vec<serde_json::Value> {
        self.0
            .registry
            .status()
            .into_iter()
            .filter_map(|s| serde_json::to_value(s).ok())
            .collect()
    }

    fn metrics_text(&self) -> String {
        crate::metrics::render_metrics(&self.0)
    }

    fn status_json(&self) -> String {
        crate::metrics::render_status(&self.0)
    }

    fn partner_health(&self) -> Vec<serde_json::Value> {
        self.0
            .health
            .views()
            .into_iter()
            .filter_map(|v| serde_json::to_value(v).ok())
            .collect()
    }
}

/// The partner test of `POST /api/v1/partners/{identity}/test`, run by this gateway (which
/// also answers the partner's dialback callback), and the gateway test of `POST
/// /api/v1/gateway-configuration/test` against its external listeners as bound.
struct GatewayTester(Arc<Shared>, Vec<Listener>);

impl PartnerTester for GatewayTester {
    fn test(
        &self,
        domain: Domain,
        from: Option<String>,
    ) -> BoxFuture<Result<Report, InvalidValue>> {
        let shared = self.0.clone();
        Box::pin(async move {
            let from = crate::probe::choose_from(&shared, from.as_deref())?;
            Ok(crate::probe::test_partner(
                &shared,
                &domain,
                &from,
                crate::probe::Callback::Answered,
            )
            .await)
        })
    }

    fn test_gateway(
        &self,
        domain: Option<String>,
    ) -> BoxFuture<Result<GatewayReport, InvalidValue>> {
        let (shared, listeners) = (self.0.clone(), self.1.clone());
        Box::pin(
            async move { crate::probe::test_gateway(&shared, &listeners, domain.as_deref()).await },
        )
    }
}

/// The TLS configuration of the admin listener: the external side's certificates (SNI), the
/// first hosted domain's for clients that send no SNI (a browser on an IP address), HTTP/2 and 1.1.
pub fn tls_config(shared: &Arc<Shared>) -> Option<Arc<ServerConfig>> {
    let fallback = shared.config().hosted.first().map(|h| h.domain.to_string());
    let base = shared.tls.server_for(false, fallback.as_deref())?;
    let mut config = (*base).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Some(Arc::new(config))
}

/// The metrics listener's site: `listener` showing `shared`.
pub fn metrics_site(shared: &Arc<Shared>, listener: TcpListener) -> MetricsSite {
    MetricsSite {
        listener,
        source: Arc::new(GatewayStreams(shared.clone())),
    }
}

/// The admin listener's site: `listener` (over `tls`, if any) showing `shared`; `external`: the
/// external listeners as bound (for the gateway test).
pub fn admin_site(
    shared: &Arc<Shared>,
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    external: Vec<Listener>,
) -> AdminSite {
    let hosted_domains = shared
        .config()
        .hosted
        .iter()
        .map(|h| h.domain.clone())
        .collect();
    AdminSite {
        listener,
        tls,
        store: shared.store.clone(),
        hosted_domains,
        streams: Arc::new(GatewayStreams(shared.clone())),
        tester: Arc::new(GatewayTester(shared.clone(), external)),
        shutdown: shared.shutdown.clone(),
    }
}
