//! Outbound name resolution: where to connect for a partner domain and for a hosted domain's
//! `internal_server`. Owns the gateway's one DNS [`Resolver`] (built at start from `[dns]
//! servers`, else /etc/resolv.conf; /etc/hosts is read too) and the connection order, decided
//! by the pure [`candidates`] and [`expand`] apart from the lookups. The SRV targets are
//! ordered as RFC 2782 says ([`srv_order`]): lowest priority first and, within a priority, by
//! weighted random selection drawn afresh for each lookup, so that over many streams each
//! target gets its weight's share of first choices. The outbound side tries the targets in
//! this order and goes on to the next when one cannot be reached (`outbound::open_first`).
//!
//! - A partner with a ProxyFqdn IP: that address, port 5269 unless given.
//! - A partner with a ProxyFqdn name and a port: that name's A/AAAA at that port.
//! - Otherwise (the partner domain, or a ProxyFqdn name without port): SRV
//!   `_xmpp-server._tcp.<host>`, SRV `_xmpps-server._tcp.<host>` (Direct TLS, XEP-0368) and the
//!   host's own A/AAAA are asked at once; then the SRV targets' A/AAAA at once (at most
//!   [`MAX_SRV_TARGETS`]). Order: see [`candidates`] — `_xmpp-server` targets (RFC 2782
//!   order), then `_xmpps-server` targets (RFC 2782 order), the host's A/AAAA only when
//!   neither gave a target.
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
use rand::Rng;
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

/// One service's records in the order RFC 2782 (section "Weight" and "Usage rules") gives:
/// priorities lowest first; within a priority, targets drawn one by one by weighted random
/// selection until none is left — the records not yet drawn listed with the weight-0 ones first
/// (then as answered), a number picked uniformly in `0..=sum of their weights`, and the first
/// record whose running sum of weights reaches it drawn. So a weight-60 target comes first
/// about three times as often as a weight-20 one, a weight-0 target beside others with weight
/// is rarely first, and targets that all have weight 0 keep the answer's order. The randomness
/// is `rng`'s (the resolver passes `rand::rng()`; tests a seeded one).
pub fn srv_order<'a>(records: &[&'a SrvRecord], rng: &mut impl Rng) -> Vec<&'a SrvRecord> {
    let mut by_priority = records.to_vec();
    // Stable: within a priority the answer's order stays, for the list the draws start from.
    by_priority.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(by_priority.len());
    for group in by_priority.chunk_by(|a, b| a.priority == b.priority) {
        let mut left = group.to_vec();
        // Weight 0 first (stable), so that such a record is drawn only when the pick is 0.
        left.sort_by_key(|r| r.weight != 0);
        while !left.is_empty() {
            let sum: u64 = left.iter().map(|r| u64::from(r.weight)).sum();
            let pick = rng.random_range(0..=sum);
            let mut running = 0u64;
            let drawn = left
                .iter()
                .position(|r| {
                    running += u64::from(r.weight);
                    running >= pick
                })
                // Unreachable (the last running sum is `sum` ≥ `pick`); the last one then.
                .unwrap_or(left.len() - 1);
            out.push(left.remove(drawn));
        }
    }
    out
}

/// The connection plan from the three answers (no I/O but `rng`'s draws).
///
/// 1. `_xmpp-server._tcp` targets (STARTTLS) in RFC 2782 order ([`srv_order`]: by priority,
///    lowest first, and within a priority by weighted random selection);
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
/// A target named twice (same host, port and service) is kept once, where it is first drawn.
/// At most [`MAX_SRV_TARGETS`] SRV targets are kept, the first ones of this order.
pub fn candidates(
    xmpp: &[SrvRecord],
    xmpps: &[SrvRecord],
    fallback: &[IpAddr],
    fallback_port: u16,
    rng: &mut impl Rng,
) -> Vec<Candidate> {
    let mut ordered = |records: &[SrvRecord], direct_tls: bool| -> Vec<Candidate> {
        let offered: Vec<&SrvRecord> = records
            .iter()
            .filter(|r| !r.target.trim_end_matches('.').is_empty())
            .collect();
        srv_order(&offered, rng)
            .into_iter()
            .map(|r| Candidate::Srv {
                host: r.target.trim_end_matches('.').to_ascii_lowercase(),
                port: r.port,
                direct_tls,
            })
            .collect()
    };
    let starttls = ordered(xmpp, false);
    let direct = ordered(xmpps, true);
    let mut out: Vec<Candidate> = Vec::new();
    for c in starttls.into_iter().chain(direct) {
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
        expand(
            &candidates(&[], &[], &ips, server.port, &mut rand::rng()),
            &HashMap::new(),
        )
    }

    /// Candidates for a host with an optional port: with a port (or an IP), its addresses;
    /// else the three lookups at once, then the SRV targets' addresses at once.
    async fn host_lookup(&self, host: &str, port: Option<u16>) -> Lookup {
        let mut records = Vec::new();
        let plan = if port.is_some() || host.parse::<IpAddr>().is_ok() {
            let ips = self.addresses(host).await;
            records.push(address_record(host, &ips));
            candidates(
                &[],
                &[],
                &ips,
                port.unwrap_or(DEFAULT_PORT),
                &mut rand::rng(),
            )
        } else {
            let starttls = format!("_xmpp-server._tcp.{host}");
            let direct = format!("_xmpps-server._tcp.{host}");
            let (xmpp, xmpps, ips) =
                tokio::join!(self.srv(&starttls), self.srv(&direct), self.addresses(host),);
            records.push(srv_record(&starttls, &xmpp));
            records.push(srv_record(&direct, &xmpps));
            records.push(address_record(host, &ips));
            // Drawn afresh for each lookup (RFC 2782), so load spreads as the weights say.
            candidates(&xmpp, &xmpps, &ips, DEFAULT_PORT, &mut rand::rng())
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
        self.host_addresses(host).await.unwrap_or_else(|e| {
            debug!(host, error = %e, "address lookup failed");
            Vec::new()
        })
    }

    /// A host's addresses (A and AAAA); an IP address is itself. No such name or no records:
    /// `Ok` and empty; a lookup that failed (timeout, server failure): `Err` with the reason.
    /// For `fedgate init`'s DNS check, which tells "not published" from "could not ask".
    pub async fn host_addresses(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        match self.inner.lookup_ip(fqdn(host)).await {
            Ok(ips) => Ok(ips.iter().collect()),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// A name's SRV records as answered. Empty on any failure (logged).
    async fn srv(&self, name: &str) -> Vec<SrvRecord> {
        self.srv_records(name).await.unwrap_or_else(|e| {
            debug!(name, error = %e, "SRV lookup failed");
            Vec::new()
        })
    }

    /// A name's SRV records as answered. No such name or no records: `Ok` and empty; a lookup
    /// that failed (timeout, server failure): `Err` with the reason.
    pub async fn srv_records(&self, name: &str) -> Result<Vec<SrvRecord>, String> {
        match self.inner.srv_lookup(fqdn(name)).await {
            Ok(records) => Ok(records
                .iter()
                .map(|s| SrvRecord {
                    priority: s.priority(),
                    weight: s.weight(),
                    port: s.port(),
                    target: s.target().to_utf8(),
                })
                .collect()),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// A seeded RNG: the draws, and so the orders, are the same on every run.
    fn seeded() -> StdRng {
        StdRng::seed_from_u64(2782)
    }

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
    fn xmpp_server_by_priority_then_xmpps_server() {
        let xmpp = [
            srv(20, 0, 5269, "c.example."),
            srv(10, 5, 5269, "b.example."),
            srv(10, 50, 5270, "A.example."),
        ];
        let xmpps = [
            srv(5, 0, 5223, "tls2.example."),
            srv(1, 0, 5223, "tls1.example."),
        ];
        for seed in 0..50 {
            let plan = candidates(
                &xmpp,
                &xmpps,
                &[ip("192.0.2.1")],
                5269,
                &mut StdRng::seed_from_u64(seed),
            );
            // Priority 10 (a and b, in a drawn order) before 20; then _xmpps-server, though
            // its priorities are lower; never the host's own address.
            let mut first_two = plan[..2].to_vec();
            first_two.sort_by_key(|c| format!("{c:?}"));
            assert_eq!(
                first_two,
                [s("a.example", 5270, false), s("b.example", 5269, false)]
            );
            assert_eq!(
                plan[2..],
                [
                    s("c.example", 5269, false),
                    s("tls1.example", 5223, true),
                    s("tls2.example", 5223, true),
                ]
            );
        }
    }

    #[test]
    fn a_seeded_rng_gives_the_same_order_every_time() {
        let xmpp: Vec<SrvRecord> = (0..5)
            .map(|i| srv(10, 10 * (i + 1), 5269, &format!("h{i}.example")))
            .collect();
        let first = candidates(&xmpp, &[], &[], 5269, &mut seeded());
        assert_eq!(first.len(), 5);
        for _ in 0..10 {
            assert_eq!(candidates(&xmpp, &[], &[], 5269, &mut seeded()), first);
        }
        // Every target once.
        assert_eq!(names_to_resolve(&first).len(), 5);
    }

    #[test]
    fn equal_priority_and_weight_zero_keep_the_answer_order() {
        let xmpp = [srv(10, 0, 1, "z.example"), srv(10, 0, 2, "a.example")];
        for seed in 0..20 {
            assert_eq!(
                candidates(&xmpp, &[], &[], 5269, &mut StdRng::seed_from_u64(seed)),
                [s("z.example", 1, false), s("a.example", 2, false)]
            );
        }
    }

    /// How often each target of `records` comes first in `n` orderings.
    fn first_choices(records: &[SrvRecord], n: usize) -> HashMap<String, usize> {
        let refs: Vec<&SrvRecord> = records.iter().collect();
        let mut rng = seeded();
        let mut counts = HashMap::new();
        for _ in 0..n {
            let order = srv_order(&refs, &mut rng);
            assert_eq!(order.len(), records.len());
            *counts.entry(order[0].target.clone()).or_insert(0) += 1;
        }
        counts
    }

    fn share(counts: &HashMap<String, usize>, target: &str, n: usize) -> f64 {
        counts.get(target).copied().unwrap_or(0) as f64 / n as f64
    }

    #[test]
    fn first_choices_follow_the_weights() {
        const N: usize = 10_000;
        // 60/20/20: 60 %, 20 %, 20 % of first choices (RFC 2782's inclusive pick gives the
        // first-listed record one extra chance in 101: 60.4 %, 19.8 %, 19.8 %).
        let c = first_choices(
            &[
                srv(10, 20, 5269, "b.example"),
                srv(10, 60, 5269, "a.example"),
                srv(10, 20, 5269, "c.example"),
            ],
            N,
        );
        for (target, expected) in [
            ("a.example", 0.60),
            ("b.example", 0.20),
            ("c.example", 0.20),
        ] {
            let got = share(&c, target, N);
            assert!((got - expected).abs() < 0.03, "{target}: {got} ({c:?})");
        }
        // 60 against 20: about 3 in 4.
        let c = first_choices(
            &[srv(0, 20, 5269, "b.example"), srv(0, 60, 5269, "a.example")],
            N,
        );
        let got = share(&c, "a.example", N);
        assert!((got - 0.75).abs() < 0.03, "{got} ({c:?})");
    }

    #[test]
    fn weight_zero_beside_weights_is_rarely_first_but_never_lost() {
        const N: usize = 10_000;
        let records = [
            srv(10, 0, 5269, "zero.example"),
            srv(10, 50, 5269, "a.example"),
            srv(10, 50, 5269, "b.example"),
        ];
        let c = first_choices(&records, N);
        // 1 chance in 101 per ordering.
        assert!(share(&c, "zero.example", N) < 0.03, "{c:?}");
        assert!((share(&c, "a.example", N) - 0.5).abs() < 0.03, "{c:?}");
        // It is still in every ordering, mostly last.
        let refs: Vec<&SrvRecord> = records.iter().collect();
        let mut rng = seeded();
        let mut last = 0;
        for _ in 0..1000 {
            let order = srv_order(&refs, &mut rng);
            assert!(order.iter().any(|r| r.target == "zero.example"));
            if order[2].target == "zero.example" {
                last += 1;
            }
        }
        assert!(last > 900, "{last}");
    }

    #[test]
    fn priority_always_wins_over_weight() {
        let records = [
            srv(20, 65535, 5269, "heavy.example"),
            srv(10, 0, 5269, "light.example"),
            srv(10, 1, 5269, "light2.example"),
            srv(30, 0, 5269, "last.example"),
        ];
        let refs: Vec<&SrvRecord> = records.iter().collect();
        let mut rng = seeded();
        for _ in 0..10_000 {
            let order: Vec<u16> = srv_order(&refs, &mut rng)
                .iter()
                .map(|r| r.priority)
                .collect();
            assert_eq!(order, [10, 10, 20, 30]);
        }
    }

    #[test]
    fn extreme_weights_do_not_overflow() {
        let records: Vec<SrvRecord> = (0..100)
            .map(|i| srv(0, u16::MAX, 5269, &format!("h{i}.example")))
            .collect();
        let refs: Vec<&SrvRecord> = records.iter().collect();
        let order = srv_order(&refs, &mut seeded());
        assert_eq!(order.len(), 100);
        assert!(srv_order(&[], &mut seeded()).is_empty());
    }

    #[test]
    fn only_xmpps_server() {
        let xmpps = [srv(0, 0, 5223, "tls.example.")];
        assert_eq!(
            candidates(&[], &xmpps, &[ip("192.0.2.1")], 5269, &mut seeded()),
            [s("tls.example", 5223, true)]
        );
    }

    #[test]
    fn host_addresses_only_when_neither_srv_has_a_target_ipv4_first() {
        assert_eq!(
            candidates(
                &[],
                &[],
                &[ip("2001:db8::1"), ip("192.0.2.1")],
                5269,
                &mut seeded()
            ),
            [
                Candidate::Addr(addr("192.0.2.1:5269", false)),
                Candidate::Addr(addr("[2001:db8::1]:5269", false)),
            ]
        );
        assert!(candidates(&[], &[], &[], 5269, &mut seeded()).is_empty());
    }

    #[test]
    fn dot_target_is_dropped_and_the_host_is_still_the_fallback() {
        let dot = [srv(0, 0, 0, ".")];
        assert_eq!(
            candidates(&dot, &dot, &[ip("192.0.2.1")], 5269, &mut seeded()),
            [Candidate::Addr(addr("192.0.2.1:5269", false))]
        );
        // "." beside real targets: only the real ones.
        let mixed = [srv(0, 0, 0, "."), srv(5, 0, 5269, "x.example.")];
        assert_eq!(
            candidates(&mixed, &[], &[ip("192.0.2.1")], 5269, &mut seeded()),
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
        let plan = candidates(&xmpp, &xmpps, &[], 5269, &mut seeded());
        assert_eq!(plan.len(), MAX_SRV_TARGETS);
        assert_eq!(plan[5], s("h5.example", 5269, false));
        assert_eq!(plan[6], s("t0.example", 5223, true));
        assert_eq!(plan[7], s("t1.example", 5223, true));
        // The host's own addresses are not bounded.
        let many: Vec<IpAddr> = (1..=10).map(|i| ip(&format!("192.0.2.{i}"))).collect();
        assert_eq!(candidates(&[], &[], &many, 5269, &mut seeded()).len(), 10);
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
