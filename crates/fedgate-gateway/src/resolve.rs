//! Outbound name resolution: where to connect for a partner domain and for a hosted domain's
//! `internal_server`. Owns the gateway's one DNS [`Resolver`] (built at start from `[dns]
//! servers`, else /etc/resolv.conf; /etc/hosts is read too) and the connection order, decided
//! by the pure [`candidates`] and [`expand`] apart from the lookups.
//!
//! - A partner with a ProxyFqdn IP: that address, port 5269 unless given.
//! - A partner with a ProxyFqdn name and a port: that name's A/AAAA at that port.
//! - Otherwise (the partner domain, or a ProxyFqdn name without port): SRV
//!   `_xmpp-server._tcp.<host>`, SRV `_xmpps-server._tcp.<host>` (Direct TLS, XEP-0368) and the
//!   host's own A/AAAA are asked at once; then the SRV targets' A/AAAA at once (at most
//!   [`MAX_SRV_TARGETS`]). Order: see [`candidates`].
//! - A hosted domain: its `internal_server` (A/AAAA, or the address given).
//!
//! Each host's A and AAAA are asked in parallel too; IPv4 addresses come first (as before,
//! when AAAA was asked only if A had none). Timeouts are short ([`QUERY_TIMEOUT`] ×
//! [`QUERY_ATTEMPTS`], 4 s per stage, two stages at most: the first lookups, then the SRV
//! targets') so that a partner whose DNS does not answer costs seconds, not tens. Negative
//! answers (NXDOMAIN, or no records, with the zone's SOA; hickory caches none without it) are
//! cached for the SOA's negative TTL but at most [`NEGATIVE_MAX_TTL`], so that a partner that
//! fixes its DNS is found again soon. Timeouts and server failures are not cached.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use fedgate_model::{ProxyHost, ProxyTarget};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use tracing::{debug, warn};

use crate::config::{DnsConfig, HostPort};

/// One query's timeout.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Tries per query in all (the first and one retry; hickory's `attempts` counts retries only).
/// A name server that does not answer costs `QUERY_TIMEOUT × QUERY_ATTEMPTS` = 4 s per stage.
pub const QUERY_ATTEMPTS: usize = 2;
/// Upper bound on how long a negative answer is cached.
pub const NEGATIVE_MAX_TTL: Duration = Duration::from_secs(30);
/// At most this many SRV targets (both services together, the preferred ones) are resolved.
pub const MAX_SRV_TARGETS: usize = 8;
/// The s2s port when neither SRV nor the configuration gives one.
pub const DEFAULT_PORT: u16 = 5269;

/// Where to connect, and whether TLS starts at once (Direct TLS) rather than with STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub direct_tls: bool,
}

/// One SRV record as answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// The target host name as in the answer (with or without the final dot); `.` means the
    /// service is not offered.
    pub target: String,
}

/// One step of the connection plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidate {
    /// An SRV target: its addresses at `port`.
    Srv {
        host: String,
        port: u16,
        direct_tls: bool,
    },
    /// A known address (the host's own A/AAAA, the fallback).
    Addr(Target),
}

/// The connection plan from the three answers (no I/O).
///
/// 1. `_xmpp-server._tcp` targets (STARTTLS), by priority (lowest first), then weight
///    (highest first), then as answered;
/// 2. then `_xmpps-server._tcp` targets (Direct TLS, `direct_tls: true`), ordered the same way.
///    The two lists are not merged by priority: the first choice stays what it was before
///    Direct TLS was looked up alongside (the `_xmpp-server` targets when there are any), and
///    the `_xmpps-server` targets are the next candidates when those all fail (before, they
///    were used only when `_xmpp-server` had none). RFC 6120 and XEP-0368 allow either.
/// 3. The host's own addresses (`fallback`, IPv4 first) at `fallback_port` only when neither
///    SRV gave a target.
///
/// A target `.` (RFC 2782: "service decidedly not available") is dropped like a missing
/// record: an SRV answer of only `.` counts as no target, so A/AAAA is still the fallback
/// when the other service has none either (today's behaviour, kept; RFC 2782 would stop).
/// At most [`MAX_SRV_TARGETS`] SRV targets are kept, the preferred ones.
pub fn candidates(
    xmpp: &[SrvRecord],
    xmpps: &[SrvRecord],
    fallback: &[IpAddr],
    fallback_port: u16,
) -> Vec<Candidate> {
    fn ordered(records: &[SrvRecord], direct_tls: bool) -> Vec<Candidate> {
        let mut v: Vec<&SrvRecord> = records
            .iter()
            .filter(|r| !r.target.trim_end_matches('.').is_empty())
            .collect();
        // Stable: equal priority and weight keep the answer's order.
        v.sort_by_key(|r| (r.priority, std::cmp::Reverse(r.weight)));
        v.into_iter()
            .map(|r| Candidate::Srv {
                host: r.target.trim_end_matches('.').to_ascii_lowercase(),
                port: r.port,
                direct_tls,
            })
            .collect()
    }
    let mut out: Vec<Candidate> = Vec::new();
    for c in ordered(xmpp, false).into_iter().chain(ordered(xmpps, true)) {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out.truncate(MAX_SRV_TARGETS);
    if out.is_empty() {
        let mut ips = fallback.to_vec();
        ips.sort_by_key(IpAddr::is_ipv6);
        out = ips
            .into_iter()
            .map(|ip| {
                Candidate::Addr(Target {
                    addr: SocketAddr::new(ip, fallback_port),
                    direct_tls: false,
                })
            })
            .collect();
    }
    out
}

/// The SRV target names of a plan, each once, to look up.
pub fn names_to_resolve(plan: &[Candidate]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for c in plan {
        if let Candidate::Srv { host, .. } = c
            && !names.contains(host)
        {
            names.push(host.clone());
        }
    }
    names
}

/// The targets in plan order, each SRV target replaced by its addresses (IPv4 first; a name
/// without addresses is skipped), duplicates dropped (no I/O).
pub fn expand(plan: &[Candidate], addresses: &HashMap<String, Vec<IpAddr>>) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    let mut push = |t: Target| {
        if !out.contains(&t) {
            out.push(t);
        }
    };
    for c in plan {
        match c {
            Candidate::Addr(t) => push(*t),
            Candidate::Srv {
                host,
                port,
                direct_tls,
            } => {
                let mut ips = addresses.get(host).cloned().unwrap_or_default();
                ips.sort_by_key(IpAddr::is_ipv6);
                for ip in ips {
                    push(Target {
                        addr: SocketAddr::new(ip, *port),
                        direct_tls: *direct_tls,
                    });
                }
            }
        }
    }
    out
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

fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// What a partner's resolution saw, and the connection order it gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookup {
    /// One line per question, in the order asked, with every answer (or `none`).
    pub records: Vec<String>,
    /// The SRV target host names (both services), lowercase, without the final dot.
    pub srv_hosts: Vec<String>,
    /// The targets in connection order (see [`candidates`]).
    pub targets: Vec<Target>,
}

/// `_xmpp-server._tcp.example SRV 10 5 5269 xmpp.example.; …` or `… SRV none`.
fn srv_record(name: &str, records: &[SrvRecord]) -> String {
    if records.is_empty() {
        return format!("{name} SRV none");
    }
    let answers: Vec<String> = records
        .iter()
        .map(|r| format!("{} {} {} {}", r.priority, r.weight, r.port, r.target))
        .collect();
    format!("{name} SRV {}", answers.join(", "))
}

/// `xmpp.example A/AAAA 192.0.2.1, 2001:db8::1` or `… A/AAAA none`.
fn address_record(host: &str, ips: &[IpAddr]) -> String {
    if ips.is_empty() {
        return format!("{host} A/AAAA none");
    }
    let answers: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
    format!("{host} A/AAAA {}", answers.join(", "))
}

/// The gateway's DNS resolver: built once at start, shared (cheap to clone), with its cache.
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

impl Resolver {
    /// A resolver for `[dns] servers`, or the system's (/etc/resolv.conf; its defaults when the
    /// file cannot be read, logged), with the short timeouts and negative-cache bound of this
    /// module (they override resolv.conf's `timeout` and `attempts`).
    pub fn new(dns: &DnsConfig) -> Resolver {
        let mut builder = if dns.servers.is_empty() {
            match TokioResolver::builder_tokio() {
                Ok(b) => b,
                Err(e) => {
                    warn!(error = %e, "cannot read the system resolver configuration (/etc/resolv.conf); using hickory's defaults");
                    TokioResolver::builder_with_config(
                        ResolverConfig::default(),
                        TokioConnectionProvider::default(),
                    )
                }
            }
        } else {
            let mut config = ResolverConfig::new();
            for &addr in &dns.servers {
                for protocol in [Protocol::Udp, Protocol::Tcp] {
                    config.add_name_server(NameServerConfig::new(addr, protocol));
                }
            }
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = QUERY_TIMEOUT;
        opts.attempts = QUERY_ATTEMPTS - 1;
        opts.negative_max_ttl = Some(NEGATIVE_MAX_TTL);
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        Resolver {
            inner: builder.build(),
        }
    }

    /// Where to reach a partner domain.
    pub async fn partner_targets(&self, domain: &str, proxy: Option<&ProxyTarget>) -> Vec<Target> {
        self.partner_lookup(domain, proxy).await.targets
    }

    /// [`partner_targets`](Self::partner_targets) with every record seen on the way (for the
    /// partner test).
    pub async fn partner_lookup(&self, domain: &str, proxy: Option<&ProxyTarget>) -> Lookup {
        match proxy {
            Some(ProxyTarget {
                host: ProxyHost::Ip(ip),
                port,
            }) => {
                let addr = SocketAddr::new(*ip, port.unwrap_or(DEFAULT_PORT));
                Lookup {
                    records: vec![format!("ProxyFqdn {addr}")],
                    srv_hosts: Vec::new(),
                    targets: plain(vec![addr]),
                }
            }
            Some(ProxyTarget {
                host: ProxyHost::Name(n),
                port,
            }) => {
                let mut l = self.host_lookup(n.as_str(), *port).await;
                l.records.insert(
                    0,
                    match port {
                        Some(p) => format!("ProxyFqdn {n}:{p}"),
                        None => format!("ProxyFqdn {n}"),
                    },
                );
                l
            }
            None => self.host_lookup(domain, None).await,
        }
    }

    /// Where to reach a hosted domain's internal server.
    pub async fn internal_targets(&self, server: &HostPort) -> Vec<Target> {
        let ips = self.addresses(&server.host).await;
        expand(&candidates(&[], &[], &ips, server.port), &HashMap::new())
    }

    /// Candidates for a host with an optional port: with a port (or an IP), its addresses;
    /// else the three lookups at once, then the SRV targets' addresses at once.
    async fn host_lookup(&self, host: &str, port: Option<u16>) -> Lookup {
        let mut records = Vec::new();
        let plan = if port.is_some() || host.parse::<IpAddr>().is_ok() {
            let ips = self.addresses(host).await;
            records.push(address_record(host, &ips));
            candidates(&[], &[], &ips, port.unwrap_or(DEFAULT_PORT))
        } else {
            let starttls = format!("_xmpp-server._tcp.{host}");
            let direct = format!("_xmpps-server._tcp.{host}");
            let (xmpp, xmpps, ips) =
                tokio::join!(self.srv(&starttls), self.srv(&direct), self.addresses(host),);
            records.push(srv_record(&starttls, &xmpp));
            records.push(srv_record(&direct, &xmpps));
            records.push(address_record(host, &ips));
            candidates(&xmpp, &xmpps, &ips, DEFAULT_PORT)
        };
        let mut lookups = tokio::task::JoinSet::new();
        let srv_hosts = names_to_resolve(&plan);
        for name in srv_hosts.clone() {
            let r = self.clone();
            lookups.spawn(async move {
                let ips = r.addresses(&name).await;
                (name, ips)
            });
        }
        let mut addresses = HashMap::new();
        while let Some(done) = lookups.join_next().await {
            match done {
                Ok((name, ips)) => {
                    addresses.insert(name, ips);
                }
                Err(e) => warn!(host, error = %e, "an SRV target lookup task failed"),
            }
        }
        for name in &srv_hosts {
            records.push(address_record(
                name,
                addresses.get(name).map_or(&[][..], Vec::as_slice),
            ));
        }
        let targets = expand(&plan, &addresses);
        debug!(host, ?targets, "resolved");
        Lookup {
            records,
            srv_hosts,
            targets,
        }
    }

    /// A host's addresses (A and AAAA); an IP address is itself. Empty on any failure (logged).
    async fn addresses(&self, host: &str) -> Vec<IpAddr> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return vec![ip];
        }
        match self.inner.lookup_ip(fqdn(host)).await {
            Ok(ips) => ips.iter().collect(),
            Err(e) => {
                debug!(host, error = %e, "address lookup failed");
                Vec::new()
            }
        }
    }

    /// A name's SRV records as answered. Empty on any failure (logged).
    async fn srv(&self, name: &str) -> Vec<SrvRecord> {
        match self.inner.srv_lookup(fqdn(name)).await {
            Ok(records) => records
                .iter()
                .map(|s| SrvRecord {
                    priority: s.priority(),
                    weight: s.weight(),
                    port: s.port(),
                    target: s.target().to_utf8(),
                })
                .collect(),
            Err(e) => {
                debug!(name, error = %e, "SRV lookup failed");
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, port: u16, target: &str) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port,
            target: target.into(),
        }
    }

    fn s(host: &str, port: u16, direct_tls: bool) -> Candidate {
        Candidate::Srv {
            host: host.into(),
            port,
            direct_tls,
        }
    }

    fn ip(t: &str) -> IpAddr {
        t.parse().unwrap()
    }

    fn addr(t: &str, direct_tls: bool) -> Target {
        Target {
            addr: t.parse().unwrap(),
            direct_tls,
        }
    }

    #[test]
    fn xmpp_server_by_priority_then_weight_then_xmpps_server() {
        let xmpp = [
            srv(20, 0, 5269, "c.example."),
            srv(10, 5, 5269, "b.example."),
            srv(10, 50, 5270, "A.example."),
        ];
        let xmpps = [
            srv(5, 0, 5223, "tls2.example."),
            srv(1, 0, 5223, "tls1.example."),
        ];
        assert_eq!(
            candidates(&xmpp, &xmpps, &[ip("192.0.2.1")], 5269),
            [
                s("a.example", 5270, false),
                s("b.example", 5269, false),
                s("c.example", 5269, false),
                s("tls1.example", 5223, true),
                s("tls2.example", 5223, true),
            ]
        );
    }

    #[test]
    fn equal_priority_and_weight_keep_the_answer_order() {
        let xmpp = [srv(10, 0, 1, "z.example"), srv(10, 0, 2, "a.example")];
        assert_eq!(
            candidates(&xmpp, &[], &[], 5269),
            [s("z.example", 1, false), s("a.example", 2, false)]
        );
    }

    #[test]
    fn only_xmpps_server() {
        let xmpps = [srv(0, 0, 5223, "tls.example.")];
        assert_eq!(
            candidates(&[], &xmpps, &[ip("192.0.2.1")], 5269),
            [s("tls.example", 5223, true)]
        );
    }

    #[test]
    fn host_addresses_only_when_neither_srv_has_a_target_ipv4_first() {
        assert_eq!(
            candidates(&[], &[], &[ip("2001:db8::1"), ip("192.0.2.1")], 5269),
            [
                Candidate::Addr(addr("192.0.2.1:5269", false)),
                Candidate::Addr(addr("[2001:db8::1]:5269", false)),
            ]
        );
        assert!(candidates(&[], &[], &[], 5269).is_empty());
    }

    #[test]
    fn dot_target_is_dropped_and_the_host_is_still_the_fallback() {
        let dot = [srv(0, 0, 0, ".")];
        assert_eq!(
            candidates(&dot, &dot, &[ip("192.0.2.1")], 5269),
            [Candidate::Addr(addr("192.0.2.1:5269", false))]
        );
        // "." beside real targets: only the real ones.
        let mixed = [srv(0, 0, 0, "."), srv(5, 0, 5269, "x.example.")];
        assert_eq!(
            candidates(&mixed, &[], &[ip("192.0.2.1")], 5269),
            [s("x.example", 5269, false)]
        );
    }

    #[test]
    fn at_most_eight_srv_targets_the_preferred_ones() {
        let xmpp: Vec<SrvRecord> = (0..6)
            .map(|i| srv(i, 0, 5269, &format!("h{i}.example")))
            .collect();
        let xmpps: Vec<SrvRecord> = (0..6)
            .map(|i| srv(i, 0, 5223, &format!("t{i}.example")))
            .collect();
        let plan = candidates(&xmpp, &xmpps, &[], 5269);
        assert_eq!(plan.len(), MAX_SRV_TARGETS);
        assert_eq!(plan[5], s("h5.example", 5269, false));
        assert_eq!(plan[6], s("t0.example", 5223, true));
        assert_eq!(plan[7], s("t1.example", 5223, true));
        // The host's own addresses are not bounded.
        let many: Vec<IpAddr> = (1..=10).map(|i| ip(&format!("192.0.2.{i}"))).collect();
        assert_eq!(candidates(&[], &[], &many, 5269).len(), 10);
    }

    #[test]
    fn names_once_and_expansion_in_plan_order() {
        let plan = vec![
            s("a.example", 5269, false),
            s("gone.example", 5269, false),
            s("b.example", 5270, false),
            s("a.example", 5223, true),
        ];
        assert_eq!(
            names_to_resolve(&plan),
            ["a.example", "gone.example", "b.example"]
        );
        let addresses = HashMap::from([
            (
                "a.example".to_string(),
                vec![ip("2001:db8::a"), ip("192.0.2.10")],
            ),
            ("b.example".to_string(), vec![ip("192.0.2.10")]),
        ]);
        assert_eq!(
            expand(&plan, &addresses),
            [
                addr("192.0.2.10:5269", false),
                addr("[2001:db8::a]:5269", false),
                addr("192.0.2.10:5270", false),
                addr("192.0.2.10:5223", true),
                addr("[2001:db8::a]:5223", true),
            ]
        );
        // Same address and port from two targets: once.
        let twice = vec![s("a.example", 5269, false), s("b.example", 5269, false)];
        let same = HashMap::from([
            ("a.example".to_string(), vec![ip("192.0.2.10")]),
            ("b.example".to_string(), vec![ip("192.0.2.10")]),
        ]);
        assert_eq!(expand(&twice, &same), [addr("192.0.2.10:5269", false)]);
    }
}
