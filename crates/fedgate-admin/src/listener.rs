//! Serving over TCP: the admin router on the admin listener (over TLS with the certificate the
//! gateway hands over, or plain HTTP, which the configuration allows only on a loopback address),
//! and the metrics listener: Prometheus text at `/metrics` and JSON at `/status` (loopback
//! clients only), GET only, with a bound on requests answered at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::{AdminState, StreamsSource};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve the admin router over `state` on `listener` until `shutdown` turns true; over TLS with
/// `tls`, else plain HTTP.
pub async fn serve(
    state: AdminState,
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let router = crate::router(state.with_secure_cookies(tls.is_some()));
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
pub fn announce(addr: SocketAddr, tls: bool) {
    let scheme = if tls { "https" } else { "http" };
    info!(%addr, "admin API and web panel at {scheme}://{addr}/");
}

/// Requests the metrics listener answers at once.
pub const METRICS_CONNECTIONS: usize = 32;

/// How long the metrics listener gives one connection (request and answer).
const METRICS_CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// The metrics listener's routes: `/metrics`, `/status`, and a 404 naming them for anything else.
pub fn metrics_router(source: Arc<dyn StreamsSource>) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .route("/status", axum::routing::get(status))
        .fallback(not_found)
        .with_state(source)
}

async fn metrics(State(source): State<Arc<dyn StreamsSource>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        source.metrics_text(),
    )
        .into_response()
}

async fn status(
    State(source): State<Arc<dyn StreamsSource>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    // The live streams name partners and addresses: loopback only (the admin API serves them
    // to authenticated users anywhere).
    if !status_allowed(peer.ip()) {
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain")],
            "/status is served to loopback addresses only; use the admin API's /api/v1/streams\n",
        )
            .into_response();
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        source.status_json(),
    )
        .into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain")],
        "not found: try /metrics or /status\n",
    )
        .into_response()
}

/// Serve the metrics listener until the task is aborted: at most [`METRICS_CONNECTIONS`]
/// connections at once (more wait in the listen backlog), each for at most 5 seconds.
pub async fn serve_metrics(source: Arc<dyn StreamsSource>, listener: TcpListener) {
    let router = metrics_router(source);
    let slots = Arc::new(tokio::sync::Semaphore::new(METRICS_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((tcp, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let service =
            TowerToHyperService::new(router.clone().layer(axum::Extension(ConnectInfo(peer))));
        tokio::spawn(async move {
            let _slot = slot;
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .serve_connection(TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(METRICS_CONNECTION_TIMEOUT, connection).await;
        });
    }
}

/// Whether `/status` is served to `peer`: loopback addresses only (also IPv4-mapped).
pub fn status_allowed(peer: std::net::IpAddr) -> bool {
    match peer {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        v4 => v4.is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    struct Fixed;

    impl StreamsSource for Fixed {
        fn streams(&self) -> Vec<serde_json::Value> {
            Vec::new()
        }
        fn metrics_text(&self) -> String {
            "fedgate_streams 0\n".to_owned()
        }
        fn status_json(&self) -> String {
            "{\"node\":\"n1\"}".to_owned()
        }
    }

    /// Status, content type and body of `GET path` from `peer`.
    async fn get(path: &str, peer: &str) -> (u16, String, String) {
        let peer: SocketAddr = peer.parse().unwrap();
        let router = metrics_router(Arc::new(Fixed)).layer(axum::Extension(ConnectInfo(peer)));
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = router.oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let ctype = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, ctype, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn the_metrics_listeners_routes() {
        let (status, ctype, body) = get("/metrics", "192.0.2.1:5000").await;
        assert_eq!(
            (status, ctype.as_str(), body.as_str()),
            (200, "text/plain; version=0.0.4", "fedgate_streams 0\n")
        );
        let (status, ctype, body) = get("/status", "127.0.0.1:5000").await;
        assert_eq!(
            (status, ctype.as_str(), body.as_str()),
            (200, "application/json", "{\"node\":\"n1\"}")
        );
        let (status, ctype, body) = get("/status", "192.0.2.1:5000").await;
        assert_eq!((status, ctype.as_str()), (403, "text/plain"));
        assert!(body.contains("/api/v1/streams"), "{body}");
        let (status, _, body) = get("/other", "127.0.0.1:5000").await;
        assert_eq!(status, 404);
        assert_eq!(body, "not found: try /metrics or /status\n");
    }

    #[test]
    fn status_is_for_loopback_only() {
        for ok in ["127.0.0.1", "127.0.5.22", "::1", "::ffff:127.0.0.1"] {
            assert!(status_allowed(ok.parse().unwrap()), "{ok}");
        }
        for no in [
            "192.0.2.1",
            "10.0.0.1",
            "2001:db8::1",
            "0.0.0.0",
            "::ffff:192.0.2.1",
        ] {
            assert!(!status_allowed(no.parse().unwrap()), "{no}");
        }
    }
}
