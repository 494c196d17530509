//! A fake DNS server on 127.0.0.1 (UDP; messages parsed and built with hickory-proto) and
//! record builders, for tests of outbound resolution: by the resolver alone
//! (`resolve_parallel`) or by a gateway whose `[dns] servers` is [`FakeDns::addr`]
//! ([`FakeDns::config`]).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use fedgate_gateway::config::DnsConfig;
use fedgate_gateway::resolve::Resolver;
use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;

/// What a zone answers for a question (lowercase name without the final dot, type).
pub type Zone = dyn Fn(&str, RecordType) -> Answer + Send + Sync;

/// What the fake server answers for one question.
pub struct Answer {
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    /// The authority section: the zone's SOA on negative answers.
    pub authority: Vec<Record>,
}

pub type Seen = Vec<(String, RecordType)>;

/// A UDP DNS server on 127.0.0.1 that holds every query until `gate` accepts the queries
/// seen so far, then answers them all (and every later one at once), from `zone`.
pub struct FakeDns {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeDns {
    /// A server answering from `zone` (a closure, so that a zone can name the ports of servers
    /// the test started), holding queries until `gate` accepts those seen (`|_| true`: answers at once).
    pub async fn start(
        zone: impl Fn(&str, RecordType) -> Answer + Send + Sync + 'static,
        gate: fn(&Seen) -> bool,
    ) -> FakeDns {
        let zone: Arc<Zone> = Arc::new(zone);
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
                        let reply = respond(&request, zone.as_ref());
                        let _ = socket.send_to(&reply, from).await;
                    }
                }
            }
        });
        FakeDns { addr, seen, task }
    }

    pub fn resolver(&self) -> Resolver {
        Resolver::new(&DnsConfig {
            servers: vec![self.addr],
        })
    }

    pub fn queries(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }

    /// The gateway config lines that make it ask this server: `[dns]` and its `servers`.
    pub fn config(&self) -> String {
        format!("[dns]\nservers = [\"{}\"]\n", self.addr)
    }
}

fn respond(request: &Message, zone: &Zone) -> Vec<u8> {
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

pub fn name(n: &str) -> Name {
    Name::from_ascii(format!("{n}.")).unwrap()
}

pub fn srv(owner: &str, priority: u16, weight: u16, port: u16, target: &str) -> Record {
    Record::from_rdata(
        name(owner),
        300,
        RData::SRV(SRV::new(priority, weight, port, name(target))),
    )
}

pub fn a(owner: &str, ip: [u8; 4]) -> Record {
    Record::from_rdata(name(owner), 300, RData::A(A(Ipv4Addr::from(ip))))
}

pub fn aaaa(owner: &str, ip: Ipv6Addr) -> Record {
    Record::from_rdata(name(owner), 300, RData::AAAA(AAAA(ip)))
}

/// The zone's SOA, negative TTL one hour (the resolver caps it to 30 s).
pub fn soa() -> Record {
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

pub fn found(answers: Vec<Record>) -> Answer {
    Answer {
        code: ResponseCode::NoError,
        answers,
        authority: Vec::new(),
    }
}

pub fn no_data() -> Answer {
    Answer {
        code: ResponseCode::NoError,
        answers: Vec::new(),
        authority: vec![soa()],
    }
}

pub fn nxdomain() -> Answer {
    Answer {
        code: ResponseCode::NXDomain,
        answers: Vec::new(),
        authority: vec![soa()],
    }
}
