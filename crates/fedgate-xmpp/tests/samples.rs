//! Real-world samples: a Prosody-style s2s stream opening with features, the XEP-0220
//! dialback exchange, a message with `xml:lang` and a child in another namespace, an
//! ejabberd-style header; each is parsed, checked, re-serialized and parsed again.

mod common;

use common::*;
use fedgate_xmpp::negotiation::{self, DialbackType, Features, TlsOffer};
use fedgate_xmpp::{Element, Event, Limits, StreamHeader, StreamParser, ns};

fn elements(ev: &[Event]) -> Vec<&Element> {
    ev.iter()
        .filter_map(|e| match e {
            Event::Element { element, .. } => Some(element),
            _ => None,
        })
        .collect()
}

/// Serialize an element, wrap it in our own stream header, parse it back.
fn reparse(e: &Element) -> Element {
    let mut input = Vec::new();
    StreamHeader::responding("a.example", Some("b.example".into()), "id1", true)
        .write_to(&mut input);
    e.write_to(&mut input);
    let (ev, err) = events_chunked(Limits::default(), &input, 5);
    assert!(
        err.is_none(),
        "{err:?}\n{}",
        String::from_utf8_lossy(&input)
    );
    elements(&ev)[0].clone()
}

#[test]
fn prosody_stream_opening_with_features() {
    let wire = "<?xml version='1.0'?><stream:stream xmlns:db='jabber:server:dialback' \
        xmlns:stream='http://etherx.jabber.org/streams' xml:lang='en' \
        id='8b4d5a46-0cc0-4e9b-8b6a-1b1e5a0b6b0c' from='capulet.example' to='montague.example' \
        version='1.0' xmlns='jabber:server'>\
        <stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>\
        <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>";
    for chunk in [1, 3, 64, usize::MAX] {
        let (ev, err) = events_chunked(Limits::default(), wire.as_bytes(), chunk);
        assert!(err.is_none(), "{err:?}");
        let Event::StreamOpen(h) = &ev[0] else {
            panic!()
        };
        assert_eq!(h.from.as_deref(), Some("capulet.example"));
        assert_eq!(
            h.id.as_deref(),
            Some("8b4d5a46-0cc0-4e9b-8b6a-1b1e5a0b6b0c")
        );
        assert_eq!(h.lang.as_deref(), Some("en"));
        assert!(h.dialback);
        let f = elements(&ev)[0];
        let feats = Features::from_element(f).unwrap();
        assert_eq!(feats.starttls, TlsOffer::Required);
        assert!(feats.dialback);
        assert!(feats.sasl_mechanisms.is_empty());
        assert_eq!(&reparse(f), f);
    }
}

#[test]
fn prosody_features_after_tls_with_sasl_external() {
    let wire = "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
        <mechanism>EXTERNAL</mechanism></mechanisms><dialback xmlns='urn:xmpp:features:dialback'>\
        <errors/></dialback></stream:features>";
    let (ev, err) = after_header(wire);
    assert!(err.is_none());
    let feats = Features::from_element(elements(&ev)[0]).unwrap();
    assert_eq!(feats.sasl_mechanisms, vec!["EXTERNAL".to_owned()]);
    assert_eq!(feats.starttls, TlsOffer::None);
    // our builder produces the same features
    assert_eq!(
        &negotiation::stream_features(TlsOffer::None, true, true),
        elements(&ev)[0]
    );
}

#[test]
fn xep_0220_dialback_exchange() {
    let key = "b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3";
    let wire = format!(
        "<db:result from='example.org' to='xmpp.example.com'>{key}</db:result>\n\
         <db:verify from='xmpp.example.com' id='D60000229F' to='example.org'>{key}</db:verify>\n\
         <db:verify from='example.org' id='D60000229F' to='xmpp.example.com' type='valid'/>\n\
         <db:result from='xmpp.example.com' to='example.org' type='valid'/>\n\
         <db:result from='xmpp.example.com' to='example.org' type='error'>\
         <error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>\
         </db:result>"
    );
    let (ev, err) = after_header(&wire);
    assert!(err.is_none(), "{err:?}");
    let els = elements(&ev);
    assert_eq!(els.len(), 5);
    assert_eq!(
        els[0],
        &negotiation::db_result_request("example.org", "xmpp.example.com", key)
    );
    assert_eq!(
        els[1],
        &negotiation::db_verify_request("xmpp.example.com", "example.org", "D60000229F", key)
    );
    assert_eq!(
        els[2],
        &negotiation::db_verify_response(
            "example.org",
            "xmpp.example.com",
            "D60000229F",
            &DialbackType::Valid
        )
    );
    assert_eq!(
        negotiation::dialback_type(els[3]),
        Some(DialbackType::Valid)
    );
    let Some(DialbackType::Error(e)) = negotiation::dialback_type(els[4]) else {
        panic!()
    };
    assert_eq!(
        e.condition,
        fedgate_xmpp::StanzaErrorCondition::ItemNotFound
    );
    for e in els {
        assert_eq!(&reparse(e), e);
    }
}

#[test]
fn message_with_lang_and_foreign_namespace_child() {
    let wire = "<message from='juliet@capulet.example/balcony' id='ktx72v49' \
        to='romeo@montague.example' type='chat' xml:lang='en'>\
        <body>Art thou not Romeo, and a Montague?</body>\
        <body xml:lang='fr'>N'es-tu pas Rom\u{e9}o, un Montaigu ?</body>\
        <thread>e0ffe42b28561960c6b12b944a092794b9683a38</thread>\
        <active xmlns='http://jabber.org/protocol/chatstates'/></message>";
    let (ev, err) = after_header(wire);
    assert!(err.is_none());
    let m = elements(&ev)[0];
    assert_eq!(m.lang(), Some("en"));
    let bodies: Vec<_> = m.children().filter(|c| c.is("body", ns::SERVER)).collect();
    assert_eq!(bodies[1].lang(), Some("fr"));
    assert!(
        m.child("active", "http://jabber.org/protocol/chatstates")
            .is_some()
    );
    // Unchanged, into a jabber:server stream: forwarded as received.
    assert_eq!(String::from_utf8(m.to_bytes()).unwrap(), wire);
    assert_eq!(&reparse(m), m);
    // Serialized from its tree: the same element, written our way.
    let mut tree = m.clone();
    tree.forget_wire();
    let out = String::from_utf8(tree.to_bytes()).unwrap();
    assert!(out.contains("<active xmlns=\"http://jabber.org/protocol/chatstates\"/>"));
    assert!(!out.contains("jabber:server"));
    assert_eq!(&reparse(&tree), m);
    let jid = fedgate_xmpp::Jid::parse(m.attr("from").unwrap()).unwrap();
    assert_eq!(jid.domain(), "capulet.example");
    assert_eq!(jid.bare().to_string(), "juliet@capulet.example");
}

#[test]
fn ejabberd_style_header_and_sasl_success_restart() {
    let mut p = StreamParser::new(Limits::default());
    p.feed(
        b"<?xml version=\"1.0\"?><stream:stream xmlns=\"jabber:server\" \
          xmlns:stream=\"http://etherx.jabber.org/streams\" xmlns:db=\"jabber:server:dialback\" \
          id=\"1234\" from=\"ejabberd.test\" to=\"gw.test\" version=\"1.0\" xml:lang=\"en\">\
          <success xmlns=\"urn:ietf:params:xml:ns:xmpp-sasl\"/>",
    );
    assert!(matches!(p.next_event(), Ok(Some(Event::StreamOpen(_)))));
    let Ok(Some(Event::Element { element, .. })) = p.next_event() else {
        panic!()
    };
    assert_eq!(element, negotiation::sasl_success());
    assert_eq!(p.reset(), 0);
    p.feed(b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' id='5678'>");
    let Ok(Some(Event::StreamOpen(h))) = p.next_event() else {
        panic!()
    };
    assert_eq!(h.id.as_deref(), Some("5678"));
}

#[test]
fn stream_error_from_peer() {
    let (ev, err) = after_header(
        "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
         <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>no such host</text></stream:error></stream:stream>",
    );
    assert!(err.is_none());
    let se = fedgate_xmpp::StreamError::from_element(elements(&ev)[0]).unwrap();
    assert_eq!(
        se.condition,
        fedgate_xmpp::StreamErrorCondition::HostUnknown
    );
    assert_eq!(se.text, "no such host");
    assert_eq!(ev.last(), Some(&Event::StreamClose));
    // our serialization parses back to the same error
    let (ev, _) = after_header_with(Limits::default(), &se.to_xml());
    assert_eq!(
        fedgate_xmpp::StreamError::from_element(elements(&ev)[0]),
        Some(se)
    );
}
