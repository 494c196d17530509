//! Forwarding a received element: its bytes as received when the destination stream gives them
//! the same meaning, serialized from the tree when it does not or when the element changed.
//! Each case checks what the internal server would parse.

mod common;

use common::*;
use fedgate_xmpp::{Element, Event, Limits, StreamParser, WriteContext, ns};

const CLIENT_OPEN: &str = "<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

const CLIENT_CTX: WriteContext<'static> = WriteContext {
    default_ns: ns::CLIENT,
    stream_prefix: true,
    dialback_prefix: false,
};

/// The elements of `header` + `body`, fed whole and byte by byte (the same either way).
fn received(header: &str, body: &str) -> Vec<Element> {
    let mut input = header.as_bytes().to_vec();
    input.extend_from_slice(body.as_bytes());
    let (ev, err) = events_chunked(Limits::default(), &input, usize::MAX);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        (ev.clone(), err),
        events_chunked(Limits::default(), &input, 1)
    );
    ev.into_iter()
        .filter_map(|e| match e {
            Event::Element { element, .. } => Some(element),
            _ => None,
        })
        .collect()
}

fn one(header: &str, body: &str) -> Element {
    let mut els = received(header, body);
    assert_eq!(els.len(), 1);
    els.remove(0)
}

/// What `e` is written as in a stream with `ctx`.
fn written(e: &Element, ctx: &WriteContext<'_>) -> String {
    let mut out = Vec::new();
    e.write_in(&mut out, ctx);
    String::from_utf8(out).unwrap()
}

/// What the destination server reads: `e` written after `header` (with context `ctx`), parsed.
fn read_back(e: &Element, header: &str, ctx: &WriteContext<'_>) -> Element {
    one(header, &written(e, ctx))
}

#[test]
fn an_unchanged_stanza_is_forwarded_as_received() {
    let body = "<message from='romeo@montague.example/orchard' to=\"juliet@capulet.example\" \
        type='chat' id='m1'><body>Wherefore &amp; why&#x263A;</body>\
        <active xmlns='http://jabber.org/protocol/chatstates'/></message>";
    let m = one(S2S_OPEN, body);
    assert!(m.has_wire());
    assert_eq!(m.wire_bytes(), Some(body));
    assert_eq!(written(&m, &WriteContext::S2S), body);
    assert_eq!(String::from_utf8(m.to_bytes()).unwrap(), body);
    assert_eq!(read_back(&m, S2S_OPEN, &WriteContext::S2S), m);
}

#[test]
fn prefixes_declared_on_the_stream_header() {
    let header = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
        xmlns:db='jabber:server:dialback' xmlns:x='urn:example:x' version='1.0'>";
    // `x:` comes from the header: the destination stream does not declare it, so the element
    // is serialized (declaring the namespace itself).
    let body = "<message to='a@b.example'><x:data x:k='v'>1</x:data></message>";
    let m = one(header, body);
    let out = written(&m, &WriteContext::S2S);
    assert_ne!(out, body);
    assert!(out.contains("urn:example:x"), "{out}");
    assert_eq!(read_back(&m, S2S_OPEN, &WriteContext::S2S), m);
    assert_eq!(
        m.child("data", "urn:example:x")
            .and_then(|d| d.attr_ns("urn:example:x", "k")),
        Some("v")
    );
    // `db:` comes from the header too, and every s2s stream binds it: as received.
    let body = "<db:result from='a.example' to='b.example'>key</db:result>";
    let r = one(header, body);
    assert_eq!(written(&r, &WriteContext::S2S), body);
    assert_eq!(read_back(&r, S2S_OPEN, &WriteContext::S2S), r);
    // Into a stream that does not bind it, it declares it.
    let out = written(&r, &CLIENT_CTX);
    assert!(out.contains("xmlns:db="), "{out}");
    assert_eq!(read_back(&r, CLIENT_OPEN, &CLIENT_CTX), r);
    // The same prefix declared in the element itself: as received anywhere it fits.
    let body = "<message><x:data xmlns:x='urn:example:x'/></message>";
    let m = one(header, body);
    assert_eq!(written(&m, &WriteContext::S2S), body);
}

#[test]
fn the_default_namespace_differs_between_streams() {
    // Received on a jabber:client stream, forwarded into a jabber:server one: the stanza's
    // namespace is jabber:client, which the bytes only inherited.
    let body = "<message to='a@b.example'><body>hi</body></message>";
    let m = one(CLIENT_OPEN, body);
    assert!(m.is("message", ns::CLIENT));
    let out = written(&m, &WriteContext::S2S);
    assert_ne!(out, body);
    let back = read_back(&m, S2S_OPEN, &WriteContext::S2S);
    assert_eq!(back, m);
    assert!(back.is("message", ns::CLIENT));
    // Into a jabber:client stream: as received.
    assert_eq!(written(&m, &CLIENT_CTX), body);
    // A stanza that declares its own default namespace does not depend on the stream's.
    let body = "<message xmlns='jabber:server' to='a@b.example'><body>hi</body></message>";
    let m = one(CLIENT_OPEN, body);
    assert_eq!(written(&m, &WriteContext::S2S), body);
    assert_eq!(read_back(&m, S2S_OPEN, &WriteContext::S2S), m);
    // Nor does one in another namespace with only prefixed or local names.
    let body = "<p:x xmlns:p='urn:p'><y xmlns='urn:y'/></p:x>";
    let x = one(CLIENT_OPEN, body);
    assert_eq!(written(&x, &WriteContext::S2S), body);
}

#[test]
fn cdata_character_references_and_raw_line_ends() {
    let body = "<message><body><![CDATA[<b>&amp;</b> ]]]]>\r\n&#x1F600;&#60;&lt;\r</body>\
        <x xmlns='urn:x' a='&#9;tab&#10;&quot;'/></message>";
    let m = one(S2S_OPEN, body);
    assert_eq!(written(&m, &WriteContext::S2S), body);
    let back = read_back(&m, S2S_OPEN, &WriteContext::S2S);
    assert_eq!(back, m);
    assert_eq!(
        back.child("body", ns::SERVER).map(|b| b.text()),
        Some("<b>&amp;</b> ]]\n\u{1F600}<<\n".to_owned())
    );
    assert_eq!(
        back.child("x", "urn:x").and_then(|x| x.attr("a")),
        Some("\ttab\n\"")
    );
    // The same element serialized from its tree is read the same.
    let mut tree = m.clone();
    tree.forget_wire();
    assert_eq!(read_back(&tree, S2S_OPEN, &WriteContext::S2S), m);
}

#[test]
fn xml_lang_on_the_header_and_in_the_stanza() {
    let header = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
        xml:lang='de' version='1.0'>";
    let body = "<message xml:lang='en'><body>hi</body><body xml:lang='fr'>salut</body></message>";
    let m = one(header, body);
    assert_eq!(written(&m, &WriteContext::S2S), body);
    let back = read_back(&m, S2S_OPEN, &WriteContext::S2S);
    assert_eq!(back, m);
    assert_eq!(back.lang(), Some("en"));
    assert_eq!(back.children().nth(1).and_then(Element::lang), Some("fr"));
    // A stanza without its own xml:lang is forwarded without one, as when serialized: the
    // header's language is not part of the element.
    let m = one(header, "<message><body>hallo</body></message>");
    assert_eq!(m.lang(), None);
    assert_eq!(read_back(&m, S2S_OPEN, &WriteContext::S2S).lang(), None);
}

#[test]
fn an_element_changed_after_parsing_is_serialized_with_its_change() {
    let body = "<presence from='a@b.example/r' to='c@d.example'><status>away</status>\
        <show>xa</show></presence>";
    let p = one(S2S_OPEN, body);

    let mut to = p.clone();
    to.set_attr("to", "c@d.example/res");
    assert!(!to.has_wire());
    let out = written(&to, &WriteContext::S2S);
    assert!(out.contains("c@d.example/res"), "{out}");
    assert_eq!(read_back(&to, S2S_OPEN, &WriteContext::S2S), to);

    let mut stripped = p.clone();
    assert_eq!(stripped.remove_children(|c| c.name == "status"), 1);
    assert!(!written(&stripped, &WriteContext::S2S).contains("status"));
    let back = read_back(&stripped, S2S_OPEN, &WriteContext::S2S);
    assert_eq!(back, stripped);
    assert_eq!(back.children().count(), 1);

    let mut child = p.clone();
    if let Some(show) = child.child_mut("show", ns::SERVER) {
        show.children_mut().clear();
        show.push_text("dnd");
    }
    assert!(written(&child, &WriteContext::S2S).contains("<show>dnd</show>"));

    for change in [
        (|e: &mut Element| e.push_text("x")) as fn(&mut Element),
        |e| e.push_child(Element::new("x", "urn:x")),
        |e| e.set_attr_ns("urn:q", "k", "v"),
        |e| {
            e.attrs_mut().remove("from");
        },
        |e| e.children_mut().pop().map(drop).unwrap_or_default(),
        |e| {
            e.remove_attr("from");
        },
    ] {
        let mut c = p.clone();
        change(&mut c);
        assert_ne!(c, p);
        assert!(!c.has_wire());
        assert_eq!(read_back(&c, S2S_OPEN, &WriteContext::S2S), c);
    }

    // What changes nothing keeps the bytes.
    let mut same = p.clone();
    assert_eq!(same.remove_children(|c| c.name == "body"), 0);
    assert_eq!(same.remove_attr("id"), None);
    assert_eq!(written(&same, &WriteContext::S2S), body);
}

/// A change made through a public field cannot drop the wire form: debug builds refuse to
/// write such an element rather than forward the old bytes.
#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "changed through its public fields")]
fn a_change_through_a_public_field_is_caught_in_debug_builds() {
    let mut m = one(
        S2S_OPEN,
        "<message><status>x</status><body>hi</body></message>",
    );
    m.children.remove(0);
    let _ = m.to_bytes();
}

#[test]
fn the_bytes_survive_buffer_compaction_and_release_idle() {
    // Many small stanzas, then a large one fed in small pieces: the parser compacts its read
    // buffer while the large one is under way, and an idle stream releases it.
    let small = "<message to='a@b.example'><body>filler</body></message>";
    let big = format!(
        "<message to='a@b.example'><body>{}</body></message>",
        "text &amp; more ".repeat(3000)
    );
    // Its text, with nothing to decode, is a slice of its bytes, which move in the read buffer
    // while it is parsed.
    let plain = "plain text ".repeat(3000);
    let big_plain = format!("<message to='a@b.example'><body>{plain}</body></message>");
    let mut input = S2S_OPEN.as_bytes().to_vec();
    for _ in 0..400 {
        input.extend_from_slice(small.as_bytes());
    }
    input.extend_from_slice(big.as_bytes());
    input.extend_from_slice(big_plain.as_bytes());
    for (chunk, release) in [(97, false), (4096, false), (333, true)] {
        let mut p = StreamParser::new(Limits::default());
        let mut seen = Vec::new();
        for c in input.chunks(chunk) {
            p.feed(c);
            while let Some(ev) = p.next_event().unwrap() {
                if let Event::Element { element, wire_len } = ev {
                    assert_eq!(element.wire_bytes().map(str::len), Some(wire_len));
                    seen.push(element);
                }
            }
            if release {
                p.release_idle();
            }
        }
        assert_eq!(seen.len(), 402);
        assert!(seen[..400].iter().all(|e| e.wire_bytes() == Some(small)));
        assert_eq!(seen[400].wire_bytes(), Some(big.as_str()), "chunk {chunk}");
        assert_eq!(
            seen[401].wire_bytes(),
            Some(big_plain.as_str()),
            "chunk {chunk}"
        );
        let body = seen[401].child("body", ns::SERVER).map(|b| b.text());
        assert_eq!(body.as_deref(), Some(plain.as_str()), "chunk {chunk}");
        assert_eq!(seen[401].attr("to"), Some("a@b.example"));
    }
}

#[test]
fn only_first_level_elements_carry_bytes_and_equality_ignores_them() {
    let m = one(S2S_OPEN, "<message><body>hi</body></message>");
    assert!(m.children().all(|c| !c.has_wire()));
    let built = Element::new("message", ns::SERVER)
        .with_child(Element::new("body", ns::SERVER).with_text("hi"));
    assert!(!built.has_wire());
    assert_eq!(built, m);
    assert_eq!(format!("{built:?}"), format!("{m:?}"));
}

/// Whether `s` is a part of `outer` in memory (the same bytes, not only equal text).
fn inside(s: &str, outer: &str) -> bool {
    let (a, b) = (s.as_ptr() as usize, outer.as_ptr() as usize);
    a >= b && a + s.len() <= b + outer.len()
}

#[test]
fn values_and_text_that_read_as_received_are_the_received_bytes() {
    let body = "<message from='a@b.example/r' to='c@d.example' id='x&amp;y' a='t&#9;b' b='\t'>\
        <body>plain text \u{e9}</body><b2>one &lt; two</b2><b3>ab<![CDATA[<c>]]>d</b3>\
        <b4>x\r\ny</b4><b5>]] ok</b5></message>";
    // `one` also checks that byte-by-byte feeding reads the same.
    let m = one(S2S_OPEN, body);
    let wire = m.wire_bytes().expect("wire bytes");
    let text = |name: &str| {
        m.child(name, ns::SERVER)
            .map(|c| c.text())
            .unwrap_or_default()
    };
    let node = |name: &str| {
        m.child(name, ns::SERVER)
            .and_then(|c| c.children.first())
            .map(|n| match n {
                fedgate_xmpp::Node::Text(t) => t.clone(),
                _ => panic!("{name}: not text"),
            })
            .expect(name)
    };
    // As received: parts of the wire bytes, not copies.
    for v in ["from", "to"] {
        assert!(inside(m.attr(v).expect(v), wire), "{v}");
    }
    assert_eq!(text("body"), "plain text \u{e9}");
    assert!(inside(&node("body"), wire));
    assert_eq!(text("b5"), "]] ok");
    assert!(inside(&node("b5"), wire));
    // Decoded (a reference, a tab in a value, CDATA, CR LF): kept beside the wire bytes.
    let decoded = [
        (m.attr("id").map(str::to_owned), "x&y"),
        (m.attr("a").map(str::to_owned), "t\tb"),
        (m.attr("b").map(str::to_owned), " "),
        (Some(text("b2")), "one < two"),
        (Some(text("b3")), "ab<c>d"),
        (Some(text("b4")), "x\ny"),
    ];
    for (got, want) in &decoded {
        assert_eq!(got.as_deref(), Some(*want));
    }
    for v in ["id", "a", "b"] {
        assert!(!inside(m.attr(v).expect(v), wire), "{v}");
    }
    for name in ["b2", "b3", "b4"] {
        assert!(!inside(&node(name), wire), "{name}");
    }
    // One shared buffer: the decoded values and text, then the wire bytes, each once.
    let extra: usize = decoded.iter().map(|(_, w)| w.len()).sum();
    let shared = m.attrs.iter().map(|a| a.value.shared_heap_size()).max();
    let arc = |len: usize| (2 * std::mem::size_of::<usize>() + len).next_multiple_of(8);
    assert_eq!(shared, Some(arc(extra + wire.len())));
    // Nothing to decode: the buffer is the wire bytes alone.
    let plain = one(
        S2S_OPEN,
        "<message to='c@d.example'><body>hi</body></message>",
    );
    let shared = plain.attrs.iter().map(|a| a.value.shared_heap_size()).max();
    assert_eq!(shared, Some(arc(plain.wire_bytes().map_or(0, str::len))));
}

/// Found by the `forward_wire` fuzz target: removing an element between two text nodes (the
/// gateway removes `<status/>` from some presences) left two adjacent text nodes, which the
/// destination reads as one: what was forwarded did not parse to the element the decision saw.
#[test]
fn removing_an_element_between_texts_joins_them() {
    let body = "<presence>status a='<status a='1'/>iii<status/>jj<x/>k</presence>";
    let mut p = one(CLIENT_OPEN, body);
    assert_eq!(p.remove_children(|c| c.name == "status"), 2);
    let texts: Vec<String> = p
        .children
        .iter()
        .map(|n| match n {
            fedgate_xmpp::Node::Text(t) => t.to_string(),
            fedgate_xmpp::Node::Element(e) => format!("<{}>", e.name),
        })
        .collect();
    assert_eq!(texts, ["status a='iiijj", "<x>", "k"]);
    assert_eq!(read_back(&p, S2S_OPEN, &WriteContext::S2S), p);
    assert_eq!(read_back(&p, CLIENT_OPEN, &CLIENT_CTX), p);
}
