//! # fedgate-gateway — the s2s runtime of fedgate
//!
//! Two listeners (internal: the organisation's servers; external: partners), one task per
//! connection, framing by fedgate-xmpp kept apart from policy: every decision comes from the
//! pure functions of [`fedgate_model::enforce`] and [`fedgate_model::route`] over one
//! [`state::Snapshot`]; this crate gathers the facts and carries out the answers.
//!
//! - [`config`] — the `fedgate serve` TOML configuration, re-exported from fedgate-config.
//! - [`access`] — carrying out the route decision on a stanza (rewrite, bounce, log, count).
//! - [`authorisations`] — PublicUnverified authorisation changes: durable, then in the snapshot.
//! - [`admin`] — what the admin and metrics listeners serve, and the [`ControlPlane`] that serves them.
//! - [`runtime`] — start/serve/shutdown, policy refresh from the store, live re-checks.
//! - [`cluster`] — this node in a pool sharing the store: heartbeats, stream leases.
//! - [`inbound`] — inbound streams: features, STARTTLS, SASL EXTERNAL, dialback, stanzas.
//! - [`incoming`] — what a peer's element is (STARTTLS, SASL, dialback, error, stanza), once.
//! - [`outbound`] — outbound streams per (side, local, remote), queueing, bounces, dialback verify.
//! - [`conn`] — one connection's stream: transport, TLS upgrades, restarts, parser, writes.
//! - [`tls`] — certificates (loaded, self-signed, minted), rustls configs, peer certificate checks.
//! - [`probe`] — the partner test: each step of an outbound stream, timed and described.
//! - [`resolve`] — outbound DNS (the resolver from `[dns]`, SRV/A/AAAA/ProxyFqdn, the order).
//! - [`dialback`] — XEP-0185 keys.
//! - [`state`] — shared state: the snapshot, stream registry, metrics counters.
//! - [`stop`] — waits of a stream task that hear its control channel and shutdown.
//! - [`metrics`] — the text of `/metrics` and `/status`.

#![forbid(unsafe_code)]

pub mod access;
pub mod admin;
pub mod admission;
pub mod authorisations;
pub mod callback;
pub mod cluster;
/// The configuration, from its own crate (the CLI reads it without a gateway).
pub use fedgate_config as config;
pub mod conn;
pub mod dialback;
pub mod inbound;
pub mod incoming;
pub mod internal_dns;
pub mod log_limit;
pub mod metrics;
pub mod outbound;
pub mod probe;
pub mod resolve;
pub mod runtime;
pub mod state;
pub mod stop;
pub mod tls;

pub use admin::ControlPlane;
pub use config::{Config, ConfigError};
pub use runtime::{Gateway, serve, serve_with};

/// Libraries that log what they send at debug level, secrets included: the PostgreSQL driver
/// writes every statement's parameters (the dialback secret, token hashes). They are held at
/// `info` whatever `log_level` or `RUST_LOG` say, so no log level shows a secret.
const QUIET_LIBRARIES: [&str; 2] = ["tokio_postgres=info", "postgres=info"];

/// The log filter: `RUST_LOG` if set, else `level` (else `info`), with `QUIET_LIBRARIES`.
pub fn log_filter(rust_log: Option<&str>, level: &str) -> tracing_subscriber::EnvFilter {
    let mut filter = rust_log
        .and_then(|r| tracing_subscriber::EnvFilter::try_new(r).ok())
        .or_else(|| tracing_subscriber::EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    for directive in QUIET_LIBRARIES {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
        }
    }
    filter
}

/// Install the tracing subscriber: `RUST_LOG` if set, else the config's `log_level`.
pub fn init_logging(level: &str) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = log_filter(rust_log.as_deref(), level);
    // Colours only on a terminal: log files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

/// Run `fedgate serve`: logging, a multi-threaded runtime, serve until a signal, `control`
/// serving the admin and metrics listeners.
pub fn run_serve(config: Config, control: std::sync::Arc<dyn ControlPlane>) -> anyhow::Result<()> {
    init_logging(&config.log_level);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve_with(config, Some(control)))
}

#[cfg(test)]
mod log_filter_tests {
    use super::log_filter;

    /// Whether the filter lets a debug event of `target` through.
    fn shows_debug(filter: tracing_subscriber::EnvFilter, target: &'static str) -> bool {
        use tracing_subscriber::layer::SubscriberExt;
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        struct Probe(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Probe {
            fn on_event(
                &self,
                _: &tracing::Event<'_>,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let subscriber = tracing_subscriber::registry()
            .with(filter)
            .with(Probe(seen.clone()));
        tracing::subscriber::with_default(subscriber, || match target {
            "tokio_postgres::query" => tracing::debug!(target: "tokio_postgres::query", "x"),
            "postgres" => tracing::debug!(target: "postgres", "x"),
            _ => tracing::debug!(target: "fedgate_gateway::inbound", "x"),
        });
        seen.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[test]
    fn no_log_level_shows_the_postgresql_drivers_debug_lines() {
        for (rust_log, level) in [
            (None, "debug"),
            (None, "trace"),
            (Some("debug"), "info"),
            (Some("trace,tokio_postgres=trace"), "info"),
        ] {
            let f = || log_filter(rust_log, level);
            assert!(
                !shows_debug(f(), "tokio_postgres::query"),
                "{rust_log:?} {level}"
            );
            assert!(!shows_debug(f(), "postgres"), "{rust_log:?} {level}");
            assert!(
                shows_debug(f(), "fedgate_gateway::inbound"),
                "fedgate's own debug lines still show: {rust_log:?} {level}"
            );
        }
        assert!(!shows_debug(
            log_filter(None, "info"),
            "fedgate_gateway::inbound"
        ));
    }
}
