//! Where to connect: for a partner domain its ProxyFqdn (SRV on it first, then A/AAAA, port
//! 5269 unless given), else SRV `_xmpp-server._tcp`, then A/AAAA:5269; for a hosted domain its
//! configured `internal_server`. hickory-resolver reads /etc/resolv.conf and /etc/hosts.
//!
//! `_xmpps-server._tcp` (Direct TLS, XEP-0368) targets are used when `_xmpp-server._tcp` has
//! none, before falling back to A/AAAA; they are marked [`Target::direct_tls`].

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use fedgate_model::{ProxyHost, ProxyTarget};
use hickory_resolver::TokioResolver;
use tracing::debug;

use crate::config::HostPort;

fn resolver() -> Option<&'static TokioResolver> {
    static R: OnceLock<Option<TokioResolver>> = OnceLock::new();
    R.get_or_init(|| match TokioResolver::builder_tokio() {
        Ok(b) => Some(b.build()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the system resolver configuration; using defaults");
            Some(
                TokioResolver::builder_with_config(
                    hickory_resolver::config::ResolverConfig::default(),
                    hickory_resolver::name_server::TokioConnectionProvider::default(),
                )
                .build(),
            )
        }
    })
    .as_ref()
}

async fn addresses(host: &str, port: u16) -> Vec<SocketAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![SocketAddr::new(ip, port)];
    }
    let Some(r) = resolver() else {
        return Vec::new();
    };
    match r
        .lookup_ip(format!("{}.", host.trim_end_matches('.')))
        .await
    {
        Ok(ips) => ips.iter().map(|ip| SocketAddr::new(ip, port)).collect(),
        Err(e) => {
            debug!(host, error = %e, "address lookup failed");
            Vec::new()
        }
    }
}

async fn srv(name: &str) -> Vec<(String, u16)> {
    let Some(r) = resolver() else {
        return Vec::new();
    };
    match r
        .srv_lookup(format!("{}.", name.trim_end_matches('.')))
        .await
    {
        Ok(records) => {
            let mut v: Vec<_> = records
                .iter()
                .filter(|s| s.target().to_utf8() != ".")
                .map(|s| {
                    (
                        s.priority(),
                        std::cmp::Reverse(s.weight()),
                        s.target().to_utf8(),
                        s.port(),
                    )
                })
                .collect();
            v.sort();
            v.into_iter().map(|(_, _, t, p)| (t, p)).collect()
        }
        Err(_) => Vec::new(),
    }
}

/// Where to connect, and whether TLS starts at once (Direct TLS) rather than with STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub direct_tls: bool,
}

fn plain(addrs: Vec<SocketAddr>) -> Vec<Target> {
    addrs
        .into_iter()
        .map(|addr| Target {
            addr,
            direct_tls: false,
        })
        .collect()
}

/// Candidate addresses for a host with an optional port: SRV `_xmpp-server` first (when no
/// port), then SRV `_xmpps-server` (Direct TLS), then A/AAAA.
async fn host_targets(host: &str, port: Option<u16>) -> Vec<Target> {
    let mut out = Vec::new();
    if port.is_none() && host.parse::<IpAddr>().is_err() {
        for (target, p) in srv(&format!("_xmpp-server._tcp.{host}")).await {
            out.extend(plain(addresses(&target, p).await));
        }
        if out.is_empty() {
            for (target, p) in srv(&format!("_xmpps-server._tcp.{host}")).await {
                out.extend(addresses(&target, p).await.into_iter().map(|addr| Target {
                    addr,
                    direct_tls: true,
                }));
            }
        }
    }
    if out.is_empty() {
        out = plain(addresses(host, port.unwrap_or(5269)).await);
    }
    out
}

/// Where to reach a partner domain.
pub async fn partner_targets(domain: &str, proxy: Option<&ProxyTarget>) -> Vec<Target> {
    match proxy {
        Some(ProxyTarget {
            host: ProxyHost::Ip(ip),
            port,
        }) => plain(vec![SocketAddr::new(*ip, port.unwrap_or(5269))]),
        Some(ProxyTarget {
            host: ProxyHost::Name(n),
            port,
        }) => host_targets(n.as_str(), *port).await,
        None => host_targets(domain, None).await,
    }
}

/// Where to reach a hosted domain's internal server.
pub async fn internal_targets(server: &HostPort) -> Vec<Target> {
    plain(addresses(&server.host, server.port).await)
}
