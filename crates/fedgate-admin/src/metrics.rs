//! Request counters for `/metrics` (Prometheus text format), by method, route template and status.
//!
//! The route is the matched template (`/api/v1/partners/{identity}`), never the raw path, so the
//! number of series stays bounded whatever clients send.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::AdminState;

/// Counts of answered requests.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
}

impl Metrics {
    /// Count one answered request. Known methods are counted by name, any other as `other`, so
    /// that clients cannot add label values.
    pub fn record(&self, method: &str, route: &str, status: u16) {
        let method = match method {
            "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => method,
            _ => "other",
        };
        let mut map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry((method.to_owned(), route.to_owned(), status))
            .or_insert(0) += 1;
    }

    /// The counters in Prometheus text exposition format.
    pub fn render(&self) -> String {
        let map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::from(
            "# HELP fedgate_admin_requests_total Admin API requests answered, by method, route and status.\n\
             # TYPE fedgate_admin_requests_total counter\n",
        );
        for ((method, route, status), count) in map.iter() {
            let _ = writeln!(
                out,
                "fedgate_admin_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {count}",
                escape(method),
                escape(route)
            );
        }
        out
    }
}

/// Escape a label value (backslash, quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Middleware (a route layer, so the matched route is known): count the request once answered.
pub async fn count(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    state
        .metrics()
        .record(&method, &route, response.status().as_u16());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.record("GET", "/api/v1/partners", 200);
        m.record("GET", "/api/v1/partners", 200);
        m.record("POST", "/x\"y", 400);
        let text = m.render();
        assert!(text.contains(
            "fedgate_admin_requests_total{method=\"GET\",route=\"/api/v1/partners\",status=\"200\"} 2\n"
        ));
        assert!(text.contains("route=\"/x\\\"y\""), "{text}");
        assert!(text.starts_with("# HELP"));
    }
}
