//! Property tests: serialize → parse round trip of generated elements; identical events
//! whatever the chunking; no panic (and bounded buffering) on arbitrary bytes.

mod common;

use common::*;
use fedgate_xmpp::{Element, Event, Limits, Node, StreamParser, ns};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("message".to_owned()),
        Just("body".to_owned()),
        Just("x".to_owned()),
        Just("result".to_owned()),
        "[a-zA-Z_][a-zA-Z0-9_.-]{0,8}",
        "[\u{e0}-\u{f6}][a-z\u{e9}0-9]{0,4}",
    ]
}

fn namespace() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(ns::SERVER.to_owned()),
        1 => Just(ns::DIALBACK.to_owned()),
        1 => Just(ns::STREAMS.to_owned()),
        1 => Just("urn:example:a".to_owned()),
        1 => Just("http://jabber.org/protocol/chatstates".to_owned()),
        1 => Just(String::new()),
    ]
}

/// Text of XML characters (including the ones that need escaping).
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z <>&\"'\\]]{0,12}",
        "[ \t\r\n]{1,4}",
        any::<String>().prop_map(|s| s.chars().filter(|c| xml_char(*c)).collect()),
    ]
}

fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

fn attr_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("to".to_owned()),
        Just("from".to_owned()),
        Just("id".to_owned()),
        Just("type".to_owned()),
        Just("xml:lang".to_owned()),
        Just("{urn:example:attr}k".to_owned()),
        "[a-z][a-z0-9-]{0,6}".prop_filter("xmlns is a declaration", |k| !k.starts_with("xml")),
    ]
}

fn leaf() -> impl Strategy<Value = Element> {
    (
        name(),
        namespace(),
        prop::collection::btree_map(attr_key(), text(), 0..4),
    )
        .prop_map(|(name, namespace, attrs)| Element {
            name,
            namespace: namespace.into(),
            attrs: attrs.into_iter().collect(),
            children: Vec::new(),
        })
}

fn element() -> impl Strategy<Value = Element> {
    leaf().prop_recursive(4, 40, 5, |inner| {
        (
            leaf(),
            prop::collection::vec(
                prop_oneof![inner.prop_map(Node::Element), text().prop_map(Node::Text)],
                0..5,
            ),
        )
            .prop_map(|(mut e, kids)| {
                for k in kids {
                    match k {
                        Node::Element(c) => e.push_child(c),
                        Node::Text(t) => e.push_text(&t),
                    }
                }
                e
            })
    })
}

fn stream_of(elements: &[Element], gaps: &[String]) -> Vec<u8> {
    let mut out = S2S_OPEN.as_bytes().to_vec();
    for (i, e) in elements.iter().enumerate() {
        if let Some(g) = gaps.get(i) {
            out.extend_from_slice(g.as_bytes());
        }
        e.write_to(&mut out);
    }
    out.extend_from_slice(b"</stream:stream>");
    out
}

/// Feed `input` split at the given cut points.
fn events_split(input: &[u8], cuts: &[usize]) -> (Vec<Event>, Option<fedgate_xmpp::StreamError>) {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut p = StreamParser::new(Limits::default());
    let mut out = Vec::new();
    let mut last = 0;
    for c in cuts.into_iter().chain([input.len()]) {
        p.feed(&input[last..c]);
        last = c;
        loop {
            match p.next_event() {
                Ok(Some(e)) => push_merged(&mut out, e),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn serialize_then_parse_round_trips(els in prop::collection::vec(element(), 1..4),
                                        gaps in prop::collection::vec("[ \t\r\n]{0,3}", 0..4)) {
        let input = stream_of(&els, &gaps);
        let (ev, err) = events(&input);
        prop_assert!(err.is_none(), "{:?}\n{}", err, String::from_utf8_lossy(&input));
        let parsed: Vec<Element> = ev.iter().filter_map(|e| match e {
            Event::Element { element, .. } => Some(element.clone()),
            _ => None,
        }).collect();
        prop_assert_eq!(&parsed, &els);
        // wire lengths add up: header + elements + whitespace + close == input
        let total: usize = ev.iter().map(|e| match e {
            Event::Element { wire_len, .. } => *wire_len,
            Event::Whitespace(n) => *n,
            Event::StreamClose => "</stream:stream>".len(),
            Event::StreamOpen(_) => S2S_OPEN.len(),
        }).sum();
        prop_assert_eq!(total, input.len());
    }

    #[test]
    fn chunking_never_changes_events(els in prop::collection::vec(element(), 1..3),
                                     gaps in prop::collection::vec("[ \n]{0,2}", 0..3),
                                     cuts in prop::collection::vec(any::<usize>(), 0..40),
                                     junk in prop::collection::vec(any::<u8>(), 0..8),
                                     junk_at in any::<usize>()) {
        let mut input = stream_of(&els, &gaps);
        // sometimes corrupt the input so error paths are compared too
        if !junk.is_empty() {
            let at = junk_at % input.len();
            input.splice(at..at, junk);
        }
        let whole = events_split(&input, &[]);
        prop_assert_eq!(&events_split(&input, &cuts), &whole);
        let bytewise = events_chunked(Limits::default(), &input, 1);
        prop_assert_eq!(&bytewise, &whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic(prefix in prop::bool::ANY,
                                   data in prop::collection::vec(any::<u8>(), 0..2048),
                                   cuts in prop::collection::vec(any::<usize>(), 0..16)) {
        let mut input = if prefix { S2S_OPEN.as_bytes().to_vec() } else { Vec::new() };
        input.extend_from_slice(&data);
        let whole = events_split(&input, &[]);
        prop_assert_eq!(&events_split(&input, &cuts), &whole);
    }

    #[test]
    fn arbitrary_xmlish_text_never_panics(s in "[<>/&;#x!?\\[\\]a-z:='\" \r\n\u{e9}-]{0,300}") {
        let mut input = S2S_OPEN.as_bytes().to_vec();
        input.extend_from_slice(b"<message>");
        input.extend_from_slice(s.as_bytes());
        let whole = events_split(&input, &[]);
        prop_assert_eq!(&events_chunked(Limits::default(), &input, 1), &whole);
    }
}
