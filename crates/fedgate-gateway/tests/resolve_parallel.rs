//! Outbound resolution against a fake DNS server on 127.0.0.1 (UDP; messages parsed and built
//! with hickory-proto): the three first lookups are made at once, targets come in the order
//! of `resolve::candidates`, and negative answers are quick and cached.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::dns::*;
use fedgate_gateway::resolve::{QUERY_TIMEOUT, Target};
use hickory_resolver::proto::rr::RecordType;

/// Every test fails rather than hangs past this.
const DEADLINE: Duration = Duration::from_secs(20);

const PARTNER: &str = "partner.fedgate.test";

fn partner_zone(n: &str, t: RecordType) -> Answer {
    use RecordType::{A as TA, AAAA as TAAAA, SRV as TSRV};
    match (n, t) {
        ("_xmpp-server._tcp.partner.fedgate.test", TSRV) => found(vec![
            srv(n, 10, 0, 5270, "a.partner.fedgate.test"),
            srv(n, 5, 0, 5271, "b.partner.fedgate.test"),
        ]),
        ("_xmpps-server._tcp.partner.fedgate.test", TSRV) => {
            found(vec![srv(n, 0, 0, 5223, "tls.partner.fedgate.test")])
        }
        ("partner.fedgate.test", TA) => found(vec![a(n, [127, 0, 0, 50])]),
        ("a.partner.fedgate.test", TA) => found(vec![a(n, [127, 0, 0, 51])]),
        ("b.partner.fedgate.test", TA) => found(vec![a(n, [127, 0, 0, 52])]),
        ("b.partner.fedgate.test", TAAAA) => found(vec![aaaa(n, Ipv6Addr::LOCALHOST)]),
        ("tls.partner.fedgate.test", TA) => found(vec![a(n, [127, 0, 0, 53])]),
        (n, _) if n.ends_with("partner.fedgate.test") => no_data(),
        _ => nxdomain(),
    }
}

/// Open only once both SRV queries and an address query for the partner host have arrived:
/// a resolver that waits for one answer before the next question never gets any.
fn all_three_first(seen: &Seen) -> bool {
    let has = |n: &str, t: RecordType| seen.iter().any(|(sn, st)| sn == n && *st == t);
    has("_xmpp-server._tcp.partner.fedgate.test", RecordType::SRV)
        && has("_xmpps-server._tcp.partner.fedgate.test", RecordType::SRV)
        && (has(PARTNER, RecordType::A) || has(PARTNER, RecordType::AAAA))
}

fn target(ip: IpAddr, port: u16, direct_tls: bool) -> Target {
    Target {
        addr: SocketAddr::new(ip, port),
        direct_tls,
    }
}

#[tokio::test]
async fn srv_and_host_lookups_go_out_together_and_targets_come_in_order() {
    let dns = FakeDns::start(partner_zone, all_three_first).await;
    let resolver = dns.resolver();
    let started = Instant::now();
    let targets = tokio::time::timeout(DEADLINE, resolver.partner_targets(PARTNER, None))
        .await
        .expect("resolution finished");
    let took = started.elapsed();
    let v4 = |last: u8| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
    assert_eq!(
        targets,
        [
            // _xmpp-server, priority 5: b (IPv4 first, then IPv6).
            target(v4(52), 5271, false),
            target(IpAddr::V6(Ipv6Addr::LOCALHOST), 5271, false),
            // _xmpp-server, priority 10: a.
            target(v4(51), 5270, false),
            // Then _xmpps-server (Direct TLS), though its priority is lower.
            target(v4(53), 5223, true),
            // Not the host's own A (127.0.0.50): SRV gave targets.
        ],
        "queries: {:?}",
        dns.queries()
    );
    // The server answered nothing until all three had come: well under one query timeout
    // means none of them waited for another.
    assert!(
        took < QUERY_TIMEOUT,
        "took {took:?}; queries: {:?}",
        dns.queries()
    );
    // The SRV targets were asked too (after the first three were answered).
    let q = dns.queries();
    for host in [
        "a.partner.fedgate.test",
        "b.partner.fedgate.test",
        "tls.partner.fedgate.test",
    ] {
        assert!(q.iter().any(|(n, _)| n == host), "{host} not asked: {q:?}");
    }
}

#[tokio::test]
async fn nxdomain_is_quick_and_cached() {
    let dns = FakeDns::start(partner_zone, |_| true).await;
    let resolver = dns.resolver();
    let domain = "nowhere.fedgate.test";
    let started = Instant::now();
    let first = tokio::time::timeout(DEADLINE, resolver.partner_targets(domain, None))
        .await
        .expect("resolution finished");
    let took = started.elapsed();
    assert!(first.is_empty(), "{first:?}");
    assert!(took < QUERY_TIMEOUT, "took {took:?}");
    let asked = dns.queries();
    for (n, t) in [
        ("_xmpp-server._tcp.nowhere.fedgate.test", RecordType::SRV),
        ("_xmpps-server._tcp.nowhere.fedgate.test", RecordType::SRV),
        (domain, RecordType::A),
    ] {
        assert!(
            asked.iter().any(|(sn, st)| sn == n && *st == t),
            "{n} {t} not asked: {asked:?}"
        );
    }
    // Within the negative TTL (30 s at most): answered from the cache, no new query. A query
    // would be counted before its answer, so it would show once the lookup returned.
    let second = tokio::time::timeout(DEADLINE, resolver.partner_targets(domain, None))
        .await
        .expect("resolution finished");
    assert!(second.is_empty(), "{second:?}");
    assert_eq!(dns.queries(), asked, "the second lookup asked again");
}

#[tokio::test]
async fn a_proxy_name_with_a_port_is_its_addresses_only() {
    let dns = FakeDns::start(partner_zone, |_| true).await;
    let proxy = fedgate_model::ProxyTarget::parse("b.partner.fedgate.test:6000").unwrap();
    let targets = tokio::time::timeout(
        DEADLINE,
        dns.resolver().partner_targets(PARTNER, Some(&proxy)),
    )
    .await
    .expect("resolution finished");
    assert_eq!(
        targets,
        [
            target(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 52)), 6000, false),
            target(IpAddr::V6(Ipv6Addr::LOCALHOST), 6000, false),
        ]
    );
    assert!(
        dns.queries().iter().all(|(_, t)| *t != RecordType::SRV),
        "{:?}",
        dns.queries()
    );
}

/// `fedgate init`'s DNS check: the records, "none" (NXDOMAIN, or the name without records of
/// that type) and a lookup that failed (a server that does not answer) are told apart.
#[tokio::test]
async fn srv_records_and_host_addresses_tell_none_from_a_failed_lookup() {
    let dns = FakeDns::start(partner_zone, |_| true).await;
    let r = dns.resolver();
    let srv = r
        .srv_records("_xmpp-server._tcp.partner.fedgate.test")
        .await
        .expect("answered");
    let mut targets: Vec<(u16, &str)> = srv.iter().map(|s| (s.port, s.target.as_str())).collect();
    targets.sort();
    assert_eq!(
        targets,
        [
            (5270, "a.partner.fedgate.test."),
            (5271, "b.partner.fedgate.test.")
        ]
    );
    assert_eq!(
        r.srv_records("_xmpp-server._tcp.nowhere.fedgate.test")
            .await,
        Ok(vec![]),
        "NXDOMAIN"
    );
    assert_eq!(
        r.srv_records("_xmpp-server._tcp.a.partner.fedgate.test")
            .await,
        Ok(vec![]),
        "no SRV records"
    );
    assert_eq!(
        r.host_addresses("a.partner.fedgate.test").await,
        Ok(vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 51))])
    );
    assert_eq!(r.host_addresses("nowhere.fedgate.test").await, Ok(vec![]));
    // A server that never answers: an error (init shows it as a warning), after the timeouts.
    let silent = FakeDns::start(partner_zone, |_| false).await;
    let s = silent.resolver();
    let (srv, ips) = tokio::time::timeout(DEADLINE, async {
        tokio::join!(
            s.srv_records("_xmpp-server._tcp.partner.fedgate.test"),
            s.host_addresses("partner.fedgate.test")
        )
    })
    .await
    .expect("the lookups gave up");
    assert!(srv.is_err(), "{srv:?}");
    assert!(ips.is_err(), "{ips:?}");
}
