//! # fedgate-gateway — the s2s runtime of fedgate
//!
//! Two listeners (internal: the organisation's servers; external: partners), one task per
//! connection, framing by fedgate-xmpp kept apart from policy: every decision comes from the
//! pure functions of [`fedgate_model::enforce`] and [`fedgate_model::route`] over one
//! [`state::Snapshot`]; this crate gathers the facts and carries out the answers.
//!
//! - [`config`] — the `fedgate serve` TOML configuration (docs/config-contract.md).
//! - [`access`] — carrying out the route decision on a stanza (rewrite, bounce, log, count).
//! - [`authorisations`] — PublicUnverified authorisation changes: durable, then in the snapshot.
//! - [`admin`] — the admin listener: the REST API and web panel of fedgate-admin.
//! - [`runtime`] — start/serve/shutdown, policy refresh from the store, live re-checks.
//! - [`cluster`] — this node in a pool sharing the store: heartbeats, stream leases.
//! - [`inbound`] — inbound streams: features, STARTTLS, SASL EXTERNAL, dialback, stanzas.
//! - [`outbound`] — outbound streams per (side, local, remote), queueing, bounces, dialback verify.
//! - [`conn`] — one connection's transport, parser and writes.
//! - [`tls`] — certificates (loaded, self-signed, minted), rustls configs, peer certificate checks.
//! - [`probe`] — the partner test: each step of an outbound stream, timed and described.
//! - [`resolve`] — outbound DNS (the resolver from `[dns]`, SRV/A/AAAA/ProxyFqdn, the order).
//! - [`dialback`] — XEP-0185 keys.
//! - [`state`] — shared state: the snapshot, stream registry, metrics counters.
//! - [`metrics`] — `/metrics` and `/status`.
//! - [`status`] — the `fedgate status` client.

pub mod access;
pub mod admin;
pub mod admission;
pub mod authorisations;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod dialback;
pub mod inbound;
pub mod internal_dns;
pub mod log_limit;
pub mod metrics;
pub mod outbound;
pub mod probe;
pub mod resolve;
pub mod runtime;
pub mod state;
pub mod status;
pub mod tls;

pub use config::{Config, ConfigError};
pub use runtime::{Gateway, serve};

/// Install the tracing subscriber: `RUST_LOG` if set, else the config's `log_level`.
pub fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: log files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

/// Run `fedgate serve`: logging, a multi-threaded runtime, serve until a signal.
pub fn run_serve(config: Config) -> anyhow::Result<()> {
    init_logging(&config.log_level);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(config))
}
