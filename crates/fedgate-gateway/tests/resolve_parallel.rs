//! Outbound resolution against a fake DNS server on 127.0.0.1 (UDP; messages parsed and built
//! with hickory-proto): the three first lookups are made at once, targets come in the order
//! of `resolve::candidates`, and negative answers are quick and cached.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fedgate_gateway::config::DnsConfig;
use fedgate_gateway::resolve::{QUERY_TIMEOUT, Resolver, Target};
use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;

/// Every test fails rather than hangs past this.
const DEADLINE: Duration = Duration::from_secs(20);

/// What the fake server answers for one question.
struct Answer {
    code: ResponseCode,
    answers: Vec<Record>,
    /// The authority section: the zone's SOA on negative answers.
    authority: Vec<Record>,
}

type Seen = Vec<(String, RecordType)>;

/// A UDP DNS server on 127.0.0.1 that holds every query until `gate` accepts the queries
/// seen so far, then answers them all (and every later one at once), from `zone`.
struct FakeDns {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeDns {
    async fn start(zone: fn(&str, RecordType) -> Answer, gate: fn(&Seen) -> bool) -> FakeDns {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let log = seen.clone();
        let task = tokio::spawn(async move {
            let mut held: Vec<(Message, SocketAddr)> = Vec::new();
            let mut open = false;
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(request) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let Some(q) = request.queries().first() else {
                    continue;
                };
                let name = q
                    .name()
                    .to_ascii()
                    .trim_end_matches('.')
                    .to_ascii_lowercase();
                {
                    let mut seen = log.lock().unwrap();
                    seen.push((name, q.query_type()));
                    open = open || gate(&seen);
                }
                held.push((request, from));
                if open {
                    for (request, from) in held.drain(..) {
                        let reply = respond(&request, zone);
                        let _ = socket.send_to(&reply, from).await;
                    }
                }
            }
        });
        FakeDns { addr, seen, task }
    }

    fn resolver(&self) -> Resolver {
        Resolver::new(&DnsConfig {
            servers: vec![self.addr],
        })
    }

    fn queries(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }
}

fn respond(request: &Message, zone: fn(&str, RecordType) -> Answer) -> Vec<u8> {
    let q = &request.queries()[0];
    let name = q
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let a = zone(&name, q.query_type());
    let mut m = Message::new();
    m.set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(true)
        .set_response_code(a.code);
    m.add_queries(request.queries().to_vec());
    m.add_answers(a.answers);
    m.add_name_servers(a.authority);
    m.to_vec().unwrap()
}

fn name(n: &str) -> Name {
    Name::from_ascii(format!("{n}.")).unwrap()
}

fn srv(owner: &str, priority: u16, weight: u16, port: u16, target: &str) -> Record {
    Record::from_rdata(
        name(owner),
        300,
        RData::SRV(SRV::new(priority, weight, port, name(target))),
    )
}

fn a(owner: &str, ip: [u8; 4]) -> Record {
    Record::from_rdata(name(owner), 300, RData::A(A(Ipv4Addr::from(ip))))
}

fn aaaa(owner: &str, ip: Ipv6Addr) -> Record {
    Record::from_rdata(name(owner), 300, RData::AAAA(AAAA(ip)))
}

/// The zone's SOA, negative TTL one hour (the resolver caps it to 30 s).
fn soa() -> Record {
    Record::from_rdata(
        name("fedgate.test"),
        3600,
        RData::SOA(SOA::new(
            name("ns.fedgate.test"),
            name("hostmaster.fedgate.test"),
            1,
            3600,
            600,
            86400,
            3600,
        )),
    )
}

fn found(answers: Vec<Record>) -> Answer {
    Answer {
        code: ResponseCode::NoError,
        answers,
        authority: Vec::new(),
    }
}

fn no_data() -> Answer {
    Answer {
        code: ResponseCode::NoError,
        answers: Vec::new(),
        authority: vec![soa()],
    }
}

fn nxdomain() -> Answer {
    Answer {
        code: ResponseCode::NXDomain,
        answers: Vec::new(),
        authority: vec![soa()],
    }
}

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
