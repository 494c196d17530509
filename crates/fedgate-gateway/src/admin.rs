//! The admin listener of `fedgate serve`: the REST API and web control panel of `fedgate-admin`,
//! over TLS with the gateway's certificate (or plain HTTP, allowed only on a loopback address),
//! sharing the gateway's store and showing its live streams.

use std::sync::Arc;
use std::time::Duration;

use fedgate_admin::{AdminState, BoxFuture, PartnerTester, StreamsSource};
use fedgate_model::gateway_test::{GatewayReport, Listener};
use fedgate_model::probe::Report;
use fedgate_model::{Domain, InvalidValue};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::state::Shared;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Serve the admin router on `listener` until shutdown; `external`: the external listeners as
/// bound (for the gateway test).
pub async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    external: Vec<Listener>,
    mut shutdown: watch::Receiver<bool>,
) {
    let hosted = shared
        .config()
        .hosted
        .iter()
        .map(|h| h.domain.clone())
        .collect();
    let state = AdminState::new(shared.store.clone())
        .with_streams(Arc::new(GatewayStreams(shared.clone())))
        .with_tester(Arc::new(GatewayTester(shared.clone(), external)))
        .with_hosted_domains(hosted)
        .with_secure_cookies(tls.is_some());
    let router = fedgate_admin::router(state);
    let Some(tls) = tls else {
        let stop = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(stop)
            .await
        {
            warn!(error = %e, "the admin listener stopped");
        }
        return;
    };
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "admin listener: accept failed");
                    continue;
                }
            },
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    return debug!(%peer, error = %e, "admin listener: TLS handshake failed");
                }
                Err(_) => return debug!(%peer, "admin listener: TLS handshake timed out"),
            };
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(%peer, error = %e, "admin listener: connection ended with an error");
            }
        });
    }
}

/// Log where the panel is.
pub fn announce(addr: std::net::SocketAddr, tls: bool) {
    let scheme = if tls { "https" } else { "http" };
    info!(%addr, "admin API and web panel at {scheme}://{addr}/");
}
