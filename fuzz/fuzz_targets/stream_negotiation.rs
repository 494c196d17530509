//! `stream_negotiation`: raw bytes through the parser, then every received element through the
//! crate's classifiers and builders for stream negotiation and errors (features, STARTTLS,
//! SASL auth, dialback result/verify, stream and stanza errors, bounces, JIDs in `to`/`from`),
//! and the stream header and any stream error re-serialised. No panic.
#![no_main]

use fedgate_xmpp::negotiation::{self, Features};
use fedgate_xmpp::{
    Element, Event, Jid, Limits, Payload, StanzaError, StanzaErrorCondition, StreamError,
    StreamParser, bounce,
};
use libfuzzer_sys::fuzz_target;

const S2S_OPEN: &[u8] = b"<stream:stream xmlns='jabber:server' \
    xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
    to='b.example' version='1.0'>";

fn classify(e: &Element) {
    if let Some(f) = Features::from_element(e) {
        let _ = f.to_element().to_bytes();
    }
    if let Some(Ok((mech, authzid))) = negotiation::parse_sasl_auth(e) {
        let _ = negotiation::sasl_auth_external(authzid.as_deref()).to_bytes();
        let _ = mech.len();
    }
    if let Some(t) = negotiation::dialback_type(e) {
        let from = e.attr("from").unwrap_or("");
        let to = e.attr("to").unwrap_or("");
        let _ = negotiation::db_result_response(from, to, &t).to_bytes();
        let _ = negotiation::db_verify_response(from, to, e.attr("id").unwrap_or(""), &t);
    }
    let _ = negotiation::base64_decode(&e.text());
    if let Some(err) = StreamError::from_element(e) {
        let _ = err.to_xml();
    }
    if let Some(err) = StanzaError::from_stanza(e) {
        let _ = err.to_element(&e.namespace).to_bytes();
    }
    let _ = StanzaError::from_element(e);
    for payload in [Payload::Keep, Payload::Drop] {
        let err = StanzaError::new(StanzaErrorCondition::ServiceUnavailable).with_text("x");
        if let Some(b) = bounce(e, &err, payload) {
            let _ = b.to_bytes();
        }
    }
    for a in ["to", "from"] {
        if let Some(Ok(j)) = e.attr(a).map(Jid::parse) {
            let _ = (j.bare().to_string(), j.is_domain());
        }
    }
    for c in e.children() {
        classify(c);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, body)) = data.split_first() else {
        return;
    };
    let mut p = StreamParser::new(Limits::default());
    if ctl & 1 == 0 {
        p.feed(S2S_OPEN);
    }
    p.feed(body);
    loop {
        match p.next_event() {
            Ok(Some(Event::StreamOpen(h))) => {
                let mut out = Vec::new();
                h.write_to(&mut out);
                let _ = h.version_numbers();
            }
            Ok(Some(Event::Element { element, .. })) => classify(&element),
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                let _ = e.to_xml();
                break;
            }
        }
    }
});
