//! The control plane of `fedgate serve`: fedgate-admin's REST API and web panel on the gateway's
//! admin listener and its `/metrics` and `/status` routes on the metrics listener, showing the
//! gateway through the view it hands over.

use fedgate_admin::{AdminState, BoxFuture};
use fedgate_gateway::admin::{AdminSite, ControlPlane, MetricsSite};

/// fedgate-admin serving the gateway's admin and metrics listeners.
pub struct AdminPlane;

impl ControlPlane for AdminPlane {
    fn serve_admin(&self, site: AdminSite) -> BoxFuture<()> {
        let state = AdminState::new(site.store)
            .with_streams(site.streams)
            .with_tester(site.tester)
            .with_hosted_domains(site.hosted_domains);
        Box::pin(fedgate_admin::listener::serve(
            state,
            site.listener,
            site.tls,
            site.shutdown,
        ))
    }

    fn serve_metrics(&self, site: MetricsSite) -> BoxFuture<()> {
        Box::pin(fedgate_admin::listener::serve_metrics(
            site.source,
            site.listener,
        ))
    }
}
