//! What a running gateway shows and does for the management faces (the REST API, the panel, the
//! metrics listener): its live streams, metrics text, `/status`, partner health, and the partner
//! and gateway tests. The gateway implements these; the admin side serves them over HTTP, so
//! neither crate depends on the other.

use fedgate_model::Domain;

/// Where `GET /api/v1/streams` gets the live streams from; the gateway plugs in its own.
pub trait StreamsSource: Send + Sync {
    /// One JSON object per live stream (direction, partner, auth method, TLS version, since, bytes).
    fn streams(&self) -> Vec<serde_json::Value>;

    /// The gateway's own Prometheus metrics, served on `/metrics` before the API's counters.
    fn metrics_text(&self) -> String {
        String::new()
    }

    /// Partner health, one JSON object per partner and direction (see `GET /partner-health`).
    fn partner_health(&self) -> Vec<serde_json::Value> {
        Vec::new()
    }

    /// The JSON of the metrics listener's `/status` (node, streams, refusals, store, health).
    fn status_json(&self) -> String {
        "{}".to_owned()
    }
}

/// A boxed future, for the gateway's hooks.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

/// Runs the partner test for `POST /api/v1/partners/{identity}/test` and the gateway test for
/// `POST /api/v1/gateway-configuration/test`; the gateway plugs in its
/// probe (the test makes outbound connections from the gateway, and the gateway answers the
/// partner's dialback callback).
pub trait PartnerTester: Send + Sync {
    /// Test `domain` speaking as hosted domain `from` (default: the first); an unknown `from`
    /// is an invalid value naming `From` and the hosted domains.
    fn test(
        &self,
        domain: Domain,
        from: Option<String>,
    ) -> BoxFuture<Result<fedgate_model::probe::Report, fedgate_model::InvalidValue>>;

    /// The gateway test (`POST /api/v1/gateway-configuration/test`): hosted domain `domain`, or
    /// every one, as partners see it; an unknown `domain` is an invalid value naming `Domain`
    /// and the hosted domains.
    fn test_gateway(
        &self,
        domain: Option<String>,
    ) -> BoxFuture<Result<fedgate_model::gateway_test::GatewayReport, fedgate_model::InvalidValue>>;
}

/// The source used when no gateway runs in this process: no streams.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoStreams;

impl StreamsSource for NoStreams {
    fn streams(&self) -> Vec<serde_json::Value> {
        Vec::new()
    }
}
