//! Parser behaviour: every event, every limit and every error condition, including hostile
//! input (DTDs, entities, deep nesting, huge attributes/text, garbage, bad encodings).

mod common;

use common::*;
use fedgate_xmpp::{Element, Event, Limits, Node, StreamErrorCondition as C, StreamParser, ns};

fn cond(r: &(Vec<Event>, Option<fedgate_xmpp::StreamError>)) -> Option<C> {
    r.1.as_ref().map(|e| e.condition.clone())
}

fn only_element(ev: &[Event]) -> &Element {
    match ev {
        [Event::Element { element, .. }] => element,
        other => panic!("expected one element, got {other:?}"),
    }
}

// ---- events -------------------------------------------------------------------------------

#[test]
fn stream_open_fields() {
    let (ev, err) = events(
        b"<?xml version='1.0' encoding='UTF-8'?>\n<stream:stream xmlns='jabber:server' \
          xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
          from='a.example' to='b.example' id='s1' version='1.0' xml:lang='en'>",
    );
    assert!(err.is_none(), "{err:?}");
    let [Event::StreamOpen(h)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(h.from.as_deref(), Some("a.example"));
    assert_eq!(h.to.as_deref(), Some("b.example"));
    assert_eq!(h.id.as_deref(), Some("s1"));
    assert_eq!(h.version.as_deref(), Some("1.0"));
    assert_eq!(h.version_numbers(), Some((1, 0)));
    assert_eq!(h.lang.as_deref(), Some("en"));
    assert_eq!(h.content_ns, ns::SERVER);
    assert!(h.dialback);
}

#[test]
fn stream_open_client_ns_without_dialback_and_other_prefix() {
    let (ev, err) = events(
        b"<s:stream xmlns='jabber:client' xmlns:s='http://etherx.jabber.org/streams' version='1.0'>\
          <message/></s:stream>",
    );
    assert!(err.is_none(), "{err:?}");
    let Event::StreamOpen(h) = &ev[0] else {
        panic!()
    };
    assert_eq!(h.content_ns, ns::CLIENT);
    assert!(!h.dialback);
    assert!(h.id.is_none() && h.from.is_none());
    assert!(matches!(&ev[1], Event::Element { element, .. } if element.is("message", ns::CLIENT)));
    assert_eq!(ev[2], Event::StreamClose);
}

#[test]
fn element_whitespace_close() {
    let body = "<message to='x@example.com' from='y@example.org' type='chat'><body>Hi &amp; bye</body></message> \n\t<presence/></stream:stream>";
    let (ev, err) = after_header(body);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(ev.len(), 4, "{ev:?}");
    let Event::Element { element, wire_len } = &ev[0] else {
        panic!()
    };
    assert_eq!(
        *wire_len,
        body.find("</message>").unwrap() + "</message>".len()
    );
    assert!(element.is("message", ns::SERVER));
    assert_eq!(element.attr("type"), Some("chat"));
    assert_eq!(
        element.child("body", ns::SERVER).unwrap().text(),
        "Hi & bye"
    );
    assert_eq!(ev[1], Event::Whitespace(3));
    assert!(matches!(&ev[2], Event::Element { wire_len: 11, .. }));
    assert_eq!(ev[3], Event::StreamClose);
}

#[test]
fn whitespace_keepalive_reported_immediately() {
    let mut p = StreamParser::new(Limits::default());
    p.feed(S2S_OPEN.as_bytes());
    assert!(matches!(p.next_event(), Ok(Some(Event::StreamOpen(_)))));
    assert_eq!(p.next_event(), Ok(None));
    p.feed(b" ");
    assert_eq!(p.next_event(), Ok(Some(Event::Whitespace(1))));
    assert_eq!(p.next_event(), Ok(None));
    assert_eq!(p.buffered(), 0);
}

#[test]
fn text_cdata_references_and_newlines() {
    let (ev, err) = after_header(
        "<message><body>a&lt;&gt;&amp;&apos;&quot;&#65;&#x1F600;<![CDATA[<x>&amp;]]]]>\r\nb\rc</body></message>",
    );
    assert!(err.is_none(), "{err:?}");
    let m = only_element(&ev);
    let body = m.child("body", ns::SERVER).unwrap();
    assert_eq!(body.children.len(), 1, "text merged: {body:?}");
    assert_eq!(body.text(), "a<>&'\"A\u{1F600}<x>&amp;]]\nb\nc");
}

#[test]
fn attribute_value_normalisation() {
    let (ev, err) = after_header("<iq id=\"a&#10;b\" x='c\td\r\ne' y='&lt;&quot;'/>");
    assert!(err.is_none(), "{err:?}");
    let e = only_element(&ev);
    assert_eq!(e.attr("id"), Some("a\nb"));
    assert_eq!(e.attr("x"), Some("c d e"));
    assert_eq!(e.attr("y"), Some("<\""));
}

#[test]
fn namespaces_resolved() {
    let (ev, err) = after_header(
        "<message xml:lang='de'><x xmlns='urn:a'><y/><p:z xmlns:p='urn:b' p:k='1' k='2'/></x>\
         <db:verify from='a' to='b' id='c'/><q xmlns=''/></message>",
    );
    assert!(err.is_none(), "{err:?}");
    let m = only_element(&ev);
    assert_eq!(m.lang(), Some("de"));
    let x = m.child("x", "urn:a").unwrap();
    assert!(x.child("y", "urn:a").is_some());
    let z = x.child("z", "urn:b").unwrap();
    assert_eq!(z.attr("{urn:b}k"), Some("1"));
    assert_eq!(z.attr("k"), Some("2"));
    assert!(m.child("verify", ns::DIALBACK).is_some());
    assert!(m.child("q", "").is_some());
}

#[test]
fn unknown_prefix_is_bad_namespace_prefix() {
    let r = after_header("<foo:message/>");
    assert_eq!(cond(&r), Some(C::BadNamespacePrefix));
    let r = after_header("<message foo:a='1'/>");
    assert_eq!(cond(&r), Some(C::BadNamespacePrefix));
    // db: is not bound when the header did not declare it
    let (_, err) = events(
        b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'><db:result/>",
    );
    assert_eq!(err.unwrap().condition, C::BadNamespacePrefix);
}

#[test]
fn a_declaration_is_in_scope_only_inside_its_element() {
    // Declared on an empty element, on an element closed before, on a sibling's child: out of
    // scope for what follows.
    for body in [
        "<message><x xmlns:p='urn:b'/><p:y/></message>",
        "<message><x xmlns:p='urn:b'><y/></x><p:z/></message>",
        "<message><x><y xmlns:p='urn:b'/><p:z/></x></message>",
        "<message><x xmlns:p='urn:b'/><y p:k='1'/></message>",
    ] {
        let r = after_header(body);
        assert_eq!(cond(&r), Some(C::BadNamespacePrefix), "{body}: {r:?}");
    }
    // In scope for descendants, the innermost declaration of a prefix winning.
    let (ev, err) = after_header(
        "<message xmlns:p='urn:a'><x xmlns:p='urn:b'><p:y p:k='1'/></x><p:z/></message>",
    );
    assert!(err.is_none(), "{err:?}");
    let m = only_element(&ev);
    let y = m.child("x", ns::SERVER).and_then(|x| x.child("y", "urn:b"));
    assert_eq!(y.and_then(|y| y.attr("{urn:b}k")), Some("1"));
    assert!(m.child("z", "urn:a").is_some());
}

#[test]
fn an_end_tag_repeats_the_start_tag_qualified_name() {
    let (ev, err) = after_header("<message><p:a xmlns:p='urn:b'>t</p:a></message>");
    assert!(err.is_none(), "{err:?}");
    assert!(only_element(&ev).child("a", "urn:b").is_some());
    for body in [
        "<message><p:a xmlns:p='urn:b'></a></message>",
        "<message xmlns:p='urn:b'><a></p:a></message>",
        // Another prefix bound to the same namespace does not close it either.
        "<message xmlns:q='urn:b'><p:a xmlns:p='urn:b'></q:a></message>",
        "<message><p:a xmlns:p='urn:b'></p:ab></message>",
        "<message><p:a xmlns:p='urn:b'></pp:a></message>",
    ] {
        let r = after_header(body);
        assert_eq!(cond(&r), Some(C::NotWellFormed), "{body}: {r:?}");
    }
}

#[test]
fn attribute_values_are_checked_whether_or_not_they_need_decoding() {
    for body in [
        "<message a='x\u{FFFE}'/>",
        "<message a='\u{FFFF}&amp;'/>",
        "<message a='x\u{1}y'/>",
        "<message a='x<y'/>",
    ] {
        let r = after_header(body);
        assert_eq!(cond(&r), Some(C::NotWellFormed), "{body:?}: {r:?}");
    }
    let (ev, err) = after_header("<message a='caf\u{e9} \u{FFFD}' b='x&amp;y' c='\u{EFFF}'/>");
    assert!(err.is_none(), "{err:?}");
    let m = only_element(&ev);
    assert_eq!(m.attr("a"), Some("caf\u{e9} \u{FFFD}"));
    assert_eq!(m.attr("b"), Some("x&y"));
    assert_eq!(m.attr("c"), Some("\u{EFFF}"));
}

#[test]
fn reset_for_stream_restart() {
    let mut p = StreamParser::new(Limits::default());
    p.feed(S2S_OPEN.as_bytes());
    p.feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    assert!(matches!(p.next_event(), Ok(Some(Event::StreamOpen(_)))));
    assert!(matches!(p.next_event(), Ok(Some(Event::Element { .. }))));
    p.feed(b"<injected/>");
    assert_eq!(p.reset(), 11, "unparsed bytes are discarded and counted");
    p.feed(S2S_OPEN.as_bytes());
    assert!(matches!(p.next_event(), Ok(Some(Event::StreamOpen(_)))));
    p.feed(b"</stream:stream>");
    assert_eq!(p.next_event(), Ok(Some(Event::StreamClose)));
    assert!(p.is_closed());
    assert_eq!(p.next_event(), Ok(None));
}

#[test]
fn trailing_whitespace_after_close_is_fine() {
    let (ev, err) = after_header("</stream:stream>\n  ");
    assert!(err.is_none());
    assert_eq!(ev, vec![Event::StreamClose]);
}

// ---- well-formedness ----------------------------------------------------------------------

#[test]
fn not_well_formed_cases() {
    for body in [
        "<message><body></message>",
        "<message><body>x</stream:stream>",
        "<message a='1' a='2'/>",
        "<message a=1/>",
        "<message a='<'/>",
        "<message><body>a]]>b</body></message>",
        "<message>&#0;</message>",
        "<message>&#xD800;</message>",
        "<message>& amp;</message>",
        "<message>&#xZZ;</message>",
        "<message>\u{1}</message>",
        "<1message/>",
        "<message a:b:c='1'/>",
        "</message>",
        "<message xmlns:p=''/>",
        "<message xmlns:xml='urn:other'/>",
        "<message><a></b></message>",
        "<message/ >",
    ] {
        let r = after_header(body);
        assert_eq!(cond(&r), Some(C::NotWellFormed), "{body}: {r:?}");
    }
}

#[test]
fn unclosed_tags_at_stream_close() {
    let r = after_header("<message><body>hi</stream:stream>");
    assert_eq!(cond(&r), Some(C::NotWellFormed));
    assert!(r.1.unwrap().text.contains("unclosed"));
}

#[test]
fn bytes_after_close() {
    let r = after_header("</stream:stream><message/>");
    assert_eq!(r.0, vec![Event::StreamClose]);
    assert_eq!(cond(&r), Some(C::NotWellFormed));
}

#[test]
fn text_at_stream_level_is_bad_format() {
    assert_eq!(cond(&after_header("hello")), Some(C::BadFormat));
    assert_eq!(cond(&after_header("&amp;")), Some(C::BadFormat));
    assert_eq!(cond(&after_header("<![CDATA[x]]>")), Some(C::BadFormat));
}

#[test]
fn invalid_utf8() {
    let mut body = b"<message><body>".to_vec();
    body.extend_from_slice(&[0xC3, 0x28]);
    body.extend_from_slice(b"</body></message>");
    let r = after_header_with(Limits::default(), &body);
    assert_eq!(cond(&r), Some(C::NotWellFormed));
    let r = after_header_with(Limits::default(), b"<message a='\xFF'/>");
    assert_eq!(cond(&r), Some(C::NotWellFormed));
    let r = after_header_with(Limits::default(), b"<message>\xEF\xBF\xBE</message>");
    assert_eq!(
        cond(&r),
        Some(C::NotWellFormed),
        "U+FFFE is not an XML char"
    );
    // a multi-byte char split across chunks is fine
    let r = after_header("<message>\u{e9}\u{20AC}\u{1F600}</message>");
    assert!(r.1.is_none());
}

#[test]
fn garbage_instead_of_xml() {
    // A TLS ClientHello where the stream header was expected.
    let hello = [
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03,
    ];
    let (ev, err) = events(&hello);
    assert!(ev.is_empty());
    assert_eq!(err.unwrap().condition, C::NotWellFormed);
    // ... and after the header (a peer starting TLS without STARTTLS negotiation).
    assert_eq!(
        cond(&after_header_with(Limits::default(), &hello)),
        Some(C::NotWellFormed)
    );
    // HTTP
    let (_, err) = events(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(err.unwrap().condition, C::NotWellFormed);
    assert_eq!(events(b"\x00\x01").1.unwrap().condition, C::NotWellFormed);
}

#[test]
fn encodings() {
    let (_, err) = events(b"<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream/>");
    assert_eq!(err.unwrap().condition, C::UnsupportedEncoding);
    let (_, err) = events(b"\xFE\xFF\x00<\x00?");
    assert_eq!(err.unwrap().condition, C::UnsupportedEncoding);
    let (_, err) = events(b"\xFF\xFE<\x00?\x00");
    assert_eq!(err.unwrap().condition, C::UnsupportedEncoding);
    let (_, err) = events(b"\x00<\x00?");
    assert_eq!(err.unwrap().condition, C::UnsupportedEncoding);
    let (_, err) = events(b"<\x00?\x00");
    assert_eq!(err.unwrap().condition, C::UnsupportedEncoding);
    // UTF-8 BOM is accepted, as is encoding='utf-8' in any case
    let mut s =
        b"\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"utf-8\" standalone='yes' ?>".to_vec();
    s.extend_from_slice(&S2S_OPEN.as_bytes()[21..]);
    let (ev, err) = events_chunked(Limits::default(), &s, 1);
    assert!(err.is_none(), "{err:?}");
    assert!(matches!(ev[0], Event::StreamOpen(_)));
    let (_, err) = events(b"<?xml version='2.0'?>");
    assert_eq!(err.unwrap().condition, C::NotWellFormed);
    let (_, err) = events(b"<?xml encoding='UTF-8'?>");
    assert_eq!(err.unwrap().condition, C::NotWellFormed);
}

// ---- header checks ------------------------------------------------------------------------

#[test]
fn wrong_stream_namespace() {
    let (_, err) = events(b"<stream:stream xmlns='jabber:server' xmlns:stream='http://example.com/streams' version='1.0'>");
    assert_eq!(err.unwrap().condition, C::InvalidNamespace);
    let (_, err) = events(b"<stream xmlns='jabber:server' version='1.0'>");
    assert_eq!(err.unwrap().condition, C::InvalidNamespace);
    let (_, err) = events(b"<stream:stream xmlns='jabber:other' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>");
    assert_eq!(err.unwrap().condition, C::InvalidNamespace);
    let (_, err) =
        events(b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>");
    assert_eq!(
        err.unwrap().condition,
        C::InvalidNamespace,
        "no content namespace"
    );
    let (_, err) = events(b"<stream:stream xmlns='jabber:server' version='1.0'>");
    assert_eq!(err.unwrap().condition, C::BadNamespacePrefix);
    let (_, err) = events(b"<stream:features xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>");
    assert_eq!(err.unwrap().condition, C::BadFormat);
    let (_, err) = events(b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'/>");
    assert_eq!(err.unwrap().condition, C::BadFormat);
}

#[test]
fn versions() {
    let open = |v: &str| {
        format!(
            "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'{v}>"
        )
    };
    assert_eq!(
        events(open("").as_bytes()).1.unwrap().condition,
        C::UnsupportedVersion
    );
    assert_eq!(
        events(open(" version='2.0'").as_bytes())
            .1
            .unwrap()
            .condition,
        C::UnsupportedVersion
    );
    assert_eq!(
        events(open(" version='one'").as_bytes())
            .1
            .unwrap()
            .condition,
        C::UnsupportedVersion
    );
    assert!(events(open(" version='1.1'").as_bytes()).1.is_none());
    let lenient = Limits {
        allow_missing_version: true,
        ..Limits::default()
    };
    let (ev, err) = events_chunked(lenient, open("").as_bytes(), 3);
    assert!(err.is_none());
    let Event::StreamOpen(h) = &ev[0] else {
        panic!()
    };
    assert_eq!(h.version, None);
}

#[test]
fn end_tag_or_element_before_header() {
    assert_eq!(
        events(b"</stream:stream>").1.unwrap().condition,
        C::NotWellFormed
    );
    assert_eq!(events(b"hello").1.unwrap().condition, C::NotWellFormed);
}

// ---- restricted XML -----------------------------------------------------------------------

#[test]
fn billion_laughs_dtd() {
    let bomb = b"<?xml version='1.0'?>\n<!DOCTYPE lolz [\n<!ENTITY lol 'lol'>\n\
        <!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>\n\
        <!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>]>\n\
        <stream:stream>&lol3;";
    let (ev, err) = events_chunked(Limits::default(), bomb, 1);
    assert!(ev.is_empty());
    assert_eq!(err.unwrap().condition, C::RestrictedXml);
}

#[test]
fn external_entity() {
    let xxe = b"<!DOCTYPE foo [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]><stream:stream>&xxe;";
    assert_eq!(events(xxe).1.unwrap().condition, C::RestrictedXml);
    // entity declaration inside the stream
    let r = after_header("<!ENTITY x 'y'>");
    assert_eq!(cond(&r), Some(C::RestrictedXml));
    let r = after_header("<message><!DOCTYPE x></message>");
    assert_eq!(cond(&r), Some(C::RestrictedXml));
}

#[test]
fn custom_entity_reference() {
    assert_eq!(
        cond(&after_header("<message>&custom;</message>")),
        Some(C::RestrictedXml)
    );
    assert_eq!(
        cond(&after_header("<message a='&custom;'/>")),
        Some(C::RestrictedXml)
    );
    assert_eq!(cond(&after_header("&custom;")), Some(C::RestrictedXml));
    let long = format!("<message>&{};</message>", "a".repeat(100));
    assert_eq!(cond(&after_header(&long)), Some(C::RestrictedXml));
}

#[test]
fn comments_and_processing_instructions() {
    assert_eq!(cond(&after_header("<!-- hi -->")), Some(C::RestrictedXml));
    assert_eq!(
        cond(&after_header("<message><!-- hi --></message>")),
        Some(C::RestrictedXml)
    );
    assert_eq!(
        cond(&after_header("<?php echo 1; ?>")),
        Some(C::RestrictedXml)
    );
    assert_eq!(
        cond(&after_header("<message><?pi x?></message>")),
        Some(C::RestrictedXml)
    );
    assert_eq!(
        cond(&after_header("<?xml version='1.0'?>")),
        Some(C::RestrictedXml)
    );
    assert_eq!(
        events(b"<!-- c --><stream:stream>").1.unwrap().condition,
        C::RestrictedXml
    );
    assert_eq!(
        events(b"<?xml version='1.0'?><?pi?><stream:stream>")
            .1
            .unwrap()
            .condition,
        C::RestrictedXml
    );
}

// ---- limits -------------------------------------------------------------------------------

#[test]
fn stanza_size_limit() {
    let limits = Limits {
        max_stanza_size: 100,
        ..Limits::default()
    };
    // exactly at the limit is fine
    let at = format!("<message>{}</message>", "a".repeat(100 - 19));
    assert_eq!(at.len(), 100);
    let (ev, err) = after_header_with(limits.clone(), at.as_bytes());
    assert!(err.is_none(), "{err:?}");
    assert!(matches!(ev[0], Event::Element { wire_len: 100, .. }));
    let over = format!("<message>{}</message>", "a".repeat(100 - 18));
    let r = after_header_with(limits.clone(), over.as_bytes());
    assert_eq!(cond(&r), Some(C::PolicyViolation));
    // over the limit in a tag, in an attribute, in CDATA, via many children
    for body in [
        format!("<message a='{}'/>", "x".repeat(200)),
        format!("<message><![CDATA[{}]]></message>", "x".repeat(200)),
        format!("<message>{}</message>", "<a/>".repeat(30)),
        format!("<message>{}</message>", "&amp;".repeat(30)),
    ] {
        let r = after_header_with(limits.clone(), body.as_bytes());
        assert_eq!(cond(&r), Some(C::PolicyViolation), "{body}");
    }
}

#[test]
fn depth_limit() {
    let limits = Limits {
        max_depth: 3,
        ..Limits::default()
    };
    let ok = after_header_with(limits.clone(), b"<a><b><c/></b></a>");
    assert!(ok.1.is_none());
    let r = after_header_with(limits, b"<a><b><c><d/></c></b></a>");
    assert_eq!(cond(&r), Some(C::PolicyViolation));
}

#[test]
fn nesting_100k_deep_fails_at_depth_limit() {
    let body = "<a>".repeat(100_000);
    let mut p = StreamParser::new(Limits::default());
    p.feed(S2S_OPEN.as_bytes());
    assert!(matches!(p.next_event(), Ok(Some(Event::StreamOpen(_)))));
    p.feed(body.as_bytes());
    let e = p.next_event().unwrap_err();
    assert_eq!(e.condition, C::PolicyViolation);
    assert!(e.text.contains("depth"));
    assert_eq!(p.depth(), 0, "stack released");
    assert_eq!(p.buffer_capacity(), 0, "buffer released");
}

#[test]
fn attribute_count_limit() {
    let limits = Limits {
        max_attributes: 7, // the standard header has 6
        ..Limits::default()
    };
    let ok = b"<a b='1' c='2' d='3' e='4' f='5' g='6' xmlns:h='urn:h'/>";
    assert!(after_header_with(limits.clone(), ok).1.is_none());
    let r = after_header_with(
        limits,
        b"<a b='1' c='2' d='3' e='4' f='5' g='6' h='7' i='8'/>",
    );
    assert_eq!(cond(&r), Some(C::PolicyViolation));
}

#[test]
fn header_size_limit() {
    let limits = Limits {
        max_header_size: 200,
        ..Limits::default()
    };
    let big = format!(
        "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' from='{}'>",
        "a".repeat(200)
    );
    let (_, err) = events_chunked(limits.clone(), big.as_bytes(), 1);
    assert_eq!(err.unwrap().condition, C::PolicyViolation);
    let ws = " ".repeat(300);
    let (_, err) = events_chunked(limits.clone(), ws.as_bytes(), 10);
    assert_eq!(err.unwrap().condition, C::PolicyViolation);
    let decl = format!("<?xml version='1.0'{}?>", " ".repeat(300));
    let (_, err) = events_chunked(limits, decl.as_bytes(), 10);
    assert_eq!(err.unwrap().condition, C::PolicyViolation);
}

/// Feed `total` bytes of `filler` after `prefix` in 16 KiB chunks, draining events; returns
/// the error, how many bytes were fed when it happened, and the peak buffer capacity.
fn flood(prefix: &[u8], filler: u8, total: usize) -> (fedgate_xmpp::StreamError, usize, usize) {
    let mut p = StreamParser::new(Limits::default());
    p.feed(S2S_OPEN.as_bytes());
    p.feed(prefix);
    let chunk = vec![filler; 16 * 1024];
    let mut fed = 0;
    let mut peak = 0;
    while fed < total {
        p.feed(&chunk);
        fed += chunk.len();
        peak = peak.max(p.buffer_capacity());
        loop {
            match p.next_event() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(p.buffer_capacity(), 0);
                    assert_eq!(p.next_event(), Err(e.clone()), "errors are final");
                    p.feed(b"more");
                    assert_eq!(p.buffered(), 0, "input after an error is dropped");
                    return (e, fed, peak);
                }
            }
        }
    }
    panic!("10 MB accepted");
}

#[test]
fn ten_megabyte_attribute_fails_at_limit() {
    let (e, fed, peak) = flood(b"<message to='", b'a', 10 << 20);
    assert_eq!(e.condition, C::PolicyViolation);
    assert!(fed <= 262_144 + 16 * 1024, "failed only after {fed} bytes");
    assert!(peak <= 2 * (262_144 + 16 * 1024), "buffer grew to {peak}");
}

#[test]
fn ten_megabyte_text_fails_at_limit() {
    let (e, fed, peak) = flood(b"<message><body>", b'a', 10 << 20);
    assert_eq!(e.condition, C::PolicyViolation);
    assert!(fed <= 262_144 + 16 * 1024, "failed only after {fed} bytes");
    // Text is decoded as it arrives; its bytes stay in the byte buffer (the element's wire
    // form) until the element is complete: never more than the size limit and a read.
    assert!(peak <= 2 * (262_144 + 16 * 1024), "buffer grew to {peak}");
}

#[test]
fn never_ending_whitespace_between_stanzas_is_fine() {
    let mut p = StreamParser::new(Limits::default());
    p.feed(S2S_OPEN.as_bytes());
    assert!(matches!(p.next_event(), Ok(Some(Event::StreamOpen(_)))));
    let chunk = vec![b' '; 64 * 1024];
    let mut total = 0;
    for _ in 0..160 {
        p.feed(&chunk);
        while let Some(ev) = p.next_event().unwrap() {
            let Event::Whitespace(n) = ev else { panic!() };
            total += n;
        }
        assert!(p.buffer_capacity() <= 128 * 1024);
    }
    assert_eq!(total, 160 * 64 * 1024);
}

#[test]
fn never_ending_tag_name_fails_at_limit() {
    let (e, fed, _) = flood(b"<", b'a', 10 << 20);
    assert_eq!(e.condition, C::PolicyViolation);
    assert!(fed <= 262_144 + 16 * 1024);
}

#[test]
fn never_ending_cdata_fails_at_limit() {
    let (e, fed, peak) = flood(b"<message><![CDATA[", b'a', 10 << 20);
    assert_eq!(e.condition, C::PolicyViolation);
    assert!(fed <= 262_144 + 16 * 1024);
    assert!(peak <= 2 * (262_144 + 16 * 1024), "buffer grew to {peak}");
}

#[test]
fn wire_len_counts_exact_bytes() {
    let stanza =
        "<message xmlns:x='urn:x' x:a='1'>\r\n<body>&#x263A;</body><![CDATA[z]]></message>";
    let (ev, err) = after_header(&format!("  {stanza}  "));
    assert!(err.is_none());
    let Event::Element { element, wire_len } = &ev[1] else {
        panic!("{ev:?}")
    };
    assert_eq!(*wire_len, stanza.len());
    assert_eq!(element.children[0], Node::Text("\n".into()));
    assert_eq!(element.children[2], Node::Text("z".into()));
}

// ---- allocation accounting ----------------------------------------------------------------

/// Parse one first-level element after the s2s header, fed in chunks of `chunk` bytes:
/// the element or the error, and the parser's accounting at that point.
fn parse_one(limits: &Limits, body: &str, chunk: usize) -> (Result<Element, C>, usize) {
    let mut input = S2S_OPEN.as_bytes().to_vec();
    input.extend_from_slice(body.as_bytes());
    let mut p = StreamParser::new(limits.clone());
    for c in input.chunks(chunk) {
        p.feed(c);
        loop {
            match p.next_event() {
                Ok(Some(Event::Element { element, .. })) => return (Ok(element), p.stanza_alloc()),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return (Err(e.condition), p.stanza_alloc()),
            }
        }
    }
    panic!("no element in {body}")
}

/// The same result and accounting whatever the chunking.
fn parse_one_all_chunkings(limits: &Limits, body: &str) -> (Result<Element, C>, usize) {
    let whole = parse_one(limits, body, usize::MAX);
    for chunk in [1, 7, 100] {
        assert_eq!(parse_one(limits, body, chunk), whole, "chunk {chunk}");
    }
    whole
}

fn small_limits() -> Limits {
    Limits {
        max_stanza_size: 8192,
        ..Limits::default()
    }
}

#[test]
fn empty_elements_are_accounted_by_node_size_not_wire_size() {
    let body = format!("<message>{}</message>", "<a/>".repeat(2000));
    assert!(body.len() < 8192);
    let limits = small_limits();
    // 2000 nodes of ~100 bytes for 8 KiB of wire: over the default 8 × 8 KiB + 16 KiB.
    let (r, accounted) = parse_one_all_chunkings(&limits, &body);
    assert_eq!(r, Err(C::PolicyViolation));
    assert!(accounted > limits.stanza_alloc_budget());
    // With a larger budget it is accepted, and accounted at no less than the nodes' size.
    let roomy = Limits {
        max_stanza_alloc: Some(usize::MAX),
        ..small_limits()
    };
    let (r, accounted) = parse_one_all_chunkings(&roomy, &body);
    let el = r.expect("accepted");
    assert_eq!(el.children.len(), 2000);
    assert!(
        accounted >= 2000 * std::mem::size_of::<Node>(),
        "{accounted}"
    );
    assert!(accounted >= el.heap_size() + std::mem::size_of::<Element>());
}

#[test]
fn a_long_default_namespace_is_stored_and_accounted_once() {
    let uri = format!("urn:x:{}", "u".repeat(4000));
    let body = format!(
        "<message><x xmlns='{uri}'>{}<b>t</b></x></message>",
        "<a/>".repeat(100)
    );
    let (r, accounted) = parse_one_all_chunkings(&small_limits(), &body);
    let msg = r.expect("accepted");
    let x = msg.child("x", &uri).expect("x");
    assert!(
        x.children()
            .all(|c| c.namespace.shares_allocation(&x.namespace))
    );
    // Copied into each of the 102 elements this would be 400 KiB.
    let nodes = 102 * 2 * std::mem::size_of::<Node>();
    assert!(accounted < uri.len() + nodes + 1024, "{accounted}");
    assert!(accounted >= uri.len());
    assert!(msg.heap_size() < uri.len() + nodes + 1024);
}

#[test]
fn a_long_prefixed_namespace_is_shared_by_attributes_and_elements() {
    let uri = format!("urn:x:{}", "u".repeat(4000));
    let body = format!(
        "<message xmlns:p='{uri}'>{}<p:c p:k='v'/></message>",
        "<a p:k='' p:l='1'/>".repeat(50)
    );
    let (r, accounted) = parse_one_all_chunkings(&small_limits(), &body);
    let msg = r.expect("accepted");
    let c = msg.child("c", &uri).expect("c");
    assert_eq!(c.attr(&format!("{{{uri}}}k")), Some("v"));
    assert_eq!(c.attr_ns(&uri, "k"), Some("v"));
    for a in msg.children().flat_map(|e| e.attrs.iter()) {
        assert!(a.namespace.shares_allocation(&c.namespace));
    }
    // 101 attributes: copied into each key this would be 400 KiB. Counted: the declaration
    // once, the element's bytes (its wire form, which hold the URI once more), the nodes.
    assert!(
        accounted < uri.len() + body.len() + 20 * 1024,
        "{accounted}"
    );
}

#[test]
fn ordinary_stanzas_are_accounted_close_to_what_they_hold() {
    for text in [
        "Hello &amp; welcome",
        "Hello and welcome",
        "a<![CDATA[b]]>c\r\n",
    ] {
        let body = format!(
            "<message from='a@b.example/r' to='c@d.example' type='chat' id='m1'>\
            <body>{text}</body><active xmlns='http://jabber.org/protocol/chatstates'/>\
            </message>"
        );
        let (r, accounted) = parse_one_all_chunkings(&Limits::default(), &body);
        let el = r.expect("accepted");
        let held = el.heap_size() + std::mem::size_of::<Element>();
        // Nothing is left uncounted, and what is counted is what the element holds (the
        // chatstates namespace is static: no allocation).
        assert_eq!(accounted, held, "{text}");
    }
}

/// Found by the `xml_stream` fuzz target: text or CDATA running past the stanza size limit
/// into an invalid byte was refused as not well-formed when fed whole (the decoder looked 64
/// bytes past the limit) and as too big when fed in small chunks.
#[test]
fn bytes_past_the_size_limit_are_too_big_whatever_they_are() {
    let limits = Limits {
        max_stanza_size: 100,
        ..Limits::default()
    };
    for (open, close) in [("<message>", ""), ("<message><![CDATA[", "")] {
        for bad in [&b"\xC3\x28"[..], b"&am<", b"\x01", b"]]>", b"&#0;"] {
            for fill in 85..95 {
                let mut body = open.as_bytes().to_vec();
                body.extend(std::iter::repeat_n(b'a', fill));
                body.extend_from_slice(bad);
                body.extend_from_slice(close.as_bytes());
                body.extend_from_slice(b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx</message>");
                // after_header_with checks whole, 1-byte and 7-byte feeding agree
                let r = after_header_with(limits.clone(), &body);
                assert!(r.1.is_some(), "{}", String::from_utf8_lossy(&body));
            }
        }
    }
}

/// Found by the `xml_stream` fuzz target: U+FFFF followed by an invalid UTF-8 byte was
/// "invalid UTF-8" when fed whole and "character not allowed" when the bytes came apart;
/// errors are now reported in byte order.
#[test]
fn a_forbidden_character_before_invalid_utf8_is_reported_first() {
    for body in [
        &b"<s>\xef\xbf\xbf\xbf"[..],
        b"<s>\xef\xbf\xbe\xff</s>",
        b"<s><![CDATA[\xef\xbf\xbf\xbf]]></s>",
    ] {
        let r = after_header_with(Limits::default(), body);
        assert_eq!(
            r.1.map(|e| e.text),
            Some("character not allowed in XML".to_owned())
        );
    }
}

#[test]
fn release_idle_gives_back_what_a_large_stanza_left() {
    let mut p = StreamParser::new(Limits::default());
    p.feed(S2S_OPEN.as_bytes());
    assert!(matches!(p.next_event(), Ok(Some(Event::StreamOpen(_)))));
    let big = format!(
        "<message to='bob@corp.example' a='1' b='2'><body xmlns:x='urn:x'>{}</body><x:y xmlns:x='urn:y'/></message>",
        "a".repeat(60 * 1024)
    );
    p.feed(big.as_bytes());
    assert!(matches!(p.next_event(), Ok(Some(Event::Element { .. }))));
    assert_eq!(p.next_event(), Ok(None));
    // Kept for the next stanza (no reallocation per stanza on a busy stream)…
    assert!(p.held_capacity() >= 60 * 1024, "{}", p.held_capacity());
    // …until the stream is idle.
    p.release_idle();
    assert_eq!(p.held_capacity(), 0);
    // The parser still works, and releasing again is harmless.
    p.release_idle();
    p.feed(b"<message to='bob@corp.example'><body>hi</body></message>");
    assert!(matches!(p.next_event(), Ok(Some(Event::Element { .. }))));
}

#[test]
fn release_idle_keeps_a_partly_received_element() {
    let mut p = StreamParser::new(Limits::default());
    p.feed(S2S_OPEN.as_bytes());
    assert!(matches!(p.next_event(), Ok(Some(Event::StreamOpen(_)))));
    let whole = b"<message to='bob@corp.example'><body>hello &amp; more</body><active xmlns='urn:a'/></message>";
    // Cut inside a start tag, inside text, inside the nested element.
    for cut in [5, 40, 50, 70] {
        let mut q = StreamParser::new(Limits::default());
        q.feed(S2S_OPEN.as_bytes());
        assert!(matches!(q.next_event(), Ok(Some(Event::StreamOpen(_)))));
        q.feed(&whole[..cut]);
        assert_eq!(q.next_event(), Ok(None));
        q.release_idle();
        assert!(q.held_capacity() < 1024, "cut {cut}: {}", q.held_capacity());
        q.feed(&whole[cut..]);
        match q.next_event() {
            Ok(Some(Event::Element { element, .. })) => {
                assert_eq!(
                    element.children().next().map(|b| b.text()),
                    Some("hello & more".to_owned()),
                    "cut {cut}"
                )
            }
            other => panic!("cut {cut}: {other:?}"),
        }
    }
    p.release_idle();
    assert_eq!(p.held_capacity(), 0);
}

/// Found by `arbitrary_bytes_never_panic` while UTF-8 moved into `feed`: invalid bytes where
/// the stream starts are judged by the byte-order-mark checks, which wait for enough bytes,
/// whatever the chunking; invalid bytes anywhere are refused the same way fed whole or not.
#[test]
fn invalid_bytes_are_refused_alike_whatever_the_chunking() {
    let mut header_then = S2S_OPEN.as_bytes().to_vec();
    header_then.extend_from_slice(b"<message to='a@b'>x\xC3");
    for input in [
        &b"\xFE\x00\x00\x00\x00\x00\x00\x00"[..],
        b"\xEF\xBB\x00",
        b"<\xFF\xFF\xFF\xFF\xFF\xFF>",
        b"<?xml \xFF version='1.0'?>",
        &header_then,
    ] {
        let whole = events(input);
        for chunk in [1, 2, 3, 7] {
            assert_eq!(
                events_chunked(Limits::default(), input, chunk),
                whole,
                "{chunk}: {}",
                String::from_utf8_lossy(input)
            );
        }
    }
}

// ---- UTF-8 validation in `feed` (SIMD for feeds of 64 bytes and more) ----------------------

/// Feed `input` in pieces cut at `cuts` (ascending offsets), collecting events as
/// [`events_chunked`] does.
fn events_cut(input: &[u8], cuts: &[usize]) -> (Vec<Event>, Option<fedgate_xmpp::StreamError>) {
    let ends = cuts.iter().copied().chain([input.len()]);
    let starts = [0].into_iter().chain(cuts.iter().copied());
    events_of_pieces(
        Limits::default(),
        starts.zip(ends).map(|(from, to)| &input[from..to]),
    )
}

/// A body of 1-, 2-, 3- and 4-byte characters, long enough that both sides of every cut hold
/// a 64-byte block for the SIMD validator: a character cut at any of its bytes, by one cut or
/// by several close together, is carried over to the next feed and read whole.
#[test]
fn a_character_split_across_feeds_at_every_byte_is_read_whole() {
    let text = "a\u{e9}\u{20ac}\u{1f600} Grüße, привет, 你好 ".repeat(8);
    let mut input = S2S_OPEN.as_bytes().to_vec();
    input.extend_from_slice(format!("<message><body>{text}</body></message>").as_bytes());
    input.extend_from_slice(format!("<message><body>{text}</body></message>").as_bytes());
    let whole = events(&input);
    assert!(whole.1.is_none(), "{whole:?}");
    assert_eq!(whole.0.len(), 3, "{whole:?}");
    let Event::Element { element, .. } = &whole.0[1] else {
        panic!("{whole:?}")
    };
    assert_eq!(
        element.children().next().map(|b| b.text()),
        Some(text.clone())
    );
    let header = S2S_OPEN.len();
    for cut in header..input.len() {
        assert_eq!(events_cut(&input, &[cut]), whole, "cut at {cut}");
        // A 4-byte character in three or four pieces.
        if cut + 3 <= input.len() {
            assert_eq!(
                events_cut(&input, &[cut, cut + 1, cut + 2]),
                whole,
                "cuts at {cut}, +1, +2"
            );
            assert_eq!(
                events_cut(&input, &[cut, cut + 2]),
                whole,
                "cuts at {cut}, +2"
            );
        }
    }
    for chunk in [1, 2, 3, 5, 63, 64, 65, 100] {
        assert_eq!(
            events_chunked(Limits::default(), &input, chunk),
            whole,
            "chunk {chunk}"
        );
    }
}

/// Invalid UTF-8 in a long text, at every position of a 64-byte block and with a feed boundary
/// before, inside or after it: refused with the error it gets fed whole ("invalid UTF-8", in
/// text), after the stanza ahead of it was delivered, never earlier or later.
#[test]
fn invalid_utf8_at_a_feed_boundary_is_refused_as_fed_whole() {
    let first = format!(
        "<message><body>{}</body></message>",
        "ok \u{e9} ".repeat(20)
    );
    let invalid: [&[u8]; 8] = [
        b"\x80",             // a continuation byte without a lead
        b"\xC3\x28",         // a 2-byte lead before ASCII
        b"\xC0\xAF",         // an overlong '/'
        b"\xE0\x80\x80",     // an overlong 3-byte sequence
        b"\xED\xA0\x80",     // a surrogate
        b"\xF4\x90\x80\x80", // above U+10FFFF
        b"\xF0\x9F\x98<",    // a 4-byte sequence cut short
        b"\xFF",
    ];
    for bad in invalid {
        for at in 0..70 {
            let mut input = S2S_OPEN.as_bytes().to_vec();
            input.extend_from_slice(first.as_bytes());
            input.extend_from_slice(b"<message><body>");
            input.extend(std::iter::repeat_n(b'x', at));
            let pos = input.len();
            input.extend_from_slice(bad);
            input.extend_from_slice("tail \u{20ac} ".repeat(20).as_bytes());
            input.extend_from_slice(b"</body></message>");
            let whole = events(&input);
            let show = format!("{bad:x?} at {at}");
            assert_eq!(whole.0.len(), 2, "{show}: {whole:?}");
            let err = whole.1.as_ref().expect(&show);
            assert_eq!(err.condition, C::NotWellFormed, "{show}");
            assert_eq!(err.text, "invalid UTF-8", "{show}");
            for cut in pos.saturating_sub(3)..=pos + bad.len() + 1 {
                assert_eq!(events_cut(&input, &[cut]), whole, "{show}, cut at {cut}");
            }
        }
    }
    // In an attribute value: the error of a tag.
    let mut input = S2S_OPEN.as_bytes().to_vec();
    input.extend_from_slice(first.as_bytes());
    input.extend_from_slice(format!("<message id='{}\u{e9}", "v".repeat(80)).as_bytes());
    let pos = input.len();
    input.extend_from_slice(b"\xC3\x28' to='a@b'/>");
    let whole = events(&input);
    assert_eq!(
        whole
            .1
            .as_ref()
            .map(|e| (e.condition.clone(), e.text.as_str())),
        Some((C::NotWellFormed, "invalid UTF-8 in tag"))
    );
    for cut in pos - 70..pos + 3 {
        assert_eq!(events_cut(&input, &[cut]), whole, "cut at {cut}");
    }
}
