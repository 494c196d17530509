//! The per-stanza work of an inbound stream between "stanza parsed" and "handed to the outbound
//! queue", on the codec bench's 1 KiB chat messages from a Federated partner, for a given number
//! of rounds, with no timing of its own: run it under an instruction counter (a busy machine
//! does not disturb it) and subtract two runs to remove the setup, and the parse-only runs to
//! remove the parser:
//!
//! ```text
//! cargo build --release -p fedgate-gateway --example decide_count
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/decide_count 1
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/decide_count 11
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/decide_count 1 parse
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/decide_count 11 parse
//! ```
//!
//! Instructions per stanza of the decision = ((Ir 11 − Ir 1) − (Ir 11 parse − Ir 1 parse)) /
//! (10 × 256). Per stanza, as `inbound.rs` `on_stanza` does: [`Incoming::classify`],
//! [`route::decide`] (with the gateway's session view), [`access::rewrite_stanza`], and the
//! partner's traffic count.

use std::hint::black_box;
use std::sync::Mutex;
use std::time::Instant;

use fedgate_gateway::access;
use fedgate_gateway::incoming::Incoming;
use fedgate_gateway::state::PartnerHealthTable;
use fedgate_model::enforce::Side;
use fedgate_model::health::Direction;
use fedgate_model::route::{self, Decision};
use fedgate_model::session::Sessions;
use fedgate_model::snapshot::{Authorisations, Hosted, Snapshot};
use fedgate_model::traffic::Tally;
use fedgate_model::{
    AccessPolicies, Domain, ExternalAccessPolicy, PartnerIndex, PartnerType, PolicyScope,
    XmppAllowedPartner,
};
use fedgate_xmpp::{Event, Limits, StreamParser};

#[path = "../../fedgate-xmpp/benches/chat_input/mod.rs"]
mod chat_input;

use chat_input::{HEADER, stanzas};

/// corp.example hosted; partner.example (the stanzas' sender) Federated; everyone enabled.
fn snapshot() -> Snapshot {
    let mut partner = XmppAllowedPartner::new(Domain::parse("partner.example").unwrap());
    partner.partner_type = PartnerType::Federated;
    let mut global = ExternalAccessPolicy::new(PolicyScope::Global);
    global.enable_xmpp_access = true;
    Snapshot::new(
        1,
        [Hosted {
            domain: Domain::parse("corp.example").unwrap(),
            site: None,
            internal_server: fedgate_model::HostPort::parse("127.0.0.1:5269", 5269).unwrap(),
        }],
        PartnerIndex::build([partner]).unwrap(),
        AccessPolicies::new([global], []),
        Default::default(),
        Authorisations::new([]),
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let decide = args.next().as_deref() != Some("parse");
    let body = stanzas();
    let snapshot = snapshot();
    let sessions = Mutex::new(Sessions::default());
    let health = PartnerHealthTable::default();
    let authenticated = vec!["partner.example".to_owned()];
    let mut tally = Tally::default();
    let mut forwarded = 0usize;
    for _ in 0..rounds {
        let mut p = StreamParser::new(Limits::default());
        p.feed(HEADER.as_bytes());
        for chunk in body.chunks(16 * 1024) {
            p.feed(chunk);
            while let Ok(Some(ev)) = p.next_event() {
                let Event::Element { mut element, .. } = ev else {
                    continue;
                };
                if !decide {
                    black_box(&element);
                    continue;
                }
                // The stream's one clock read per event (`last_data`, on_read), which the
                // decision and `last_stanza` use too.
                let now = black_box(Instant::now());
                let Incoming::Stanza(kind) = Incoming::classify(&element) else {
                    panic!("not a stanza: {element:?}");
                };
                let decision = route::decide(
                    &snapshot,
                    route::StreamFacts {
                        side: Side::External,
                        authenticated: &authenticated,
                    },
                    route::Addressing {
                        from: element.attr("from"),
                        to: element.attr("to"),
                        id: element.attr("id"),
                    },
                    kind,
                    &access::LiveSessions {
                        sessions: &sessions,
                        now,
                    },
                );
                let Decision::Forward(f) = decision else {
                    panic!("not forwarded: {decision:?}");
                };
                access::rewrite_stanza(&mut element, &f);
                // Counted in the stream's tally, handed to the table each tick (once at the end
                // here).
                if let Some(p) = &f.partner
                    && tally.add(p)
                {
                    health.relayed_tally(Direction::Inbound, &mut tally);
                }
                black_box((&element, &f));
                forwarded += 1;
            }
        }
    }
    health.relayed_tally(Direction::Inbound, &mut tally);
    println!("{forwarded}");
}
