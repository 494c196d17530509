//! `forward_wire`: what fedgate forwards parses to the element the decision saw. Arbitrary
//! bytes are parsed as a stream (after one of a few headers: jabber:server or jabber:client,
//! prefixes declared on the header, another prefix for the stream namespace — or a header
//! taken from the input); every element received is written into a jabber:server stream and
//! into a jabber:client one (as received where the element's bytes fit the destination, else
//! serialized), and, changed after parsing, into the jabber:server one; each is parsed again
//! there and must equal the element written.
#![no_main]

use fedgate_xmpp::{Element, Event, Limits, StreamParser, WriteContext, ns};
use libfuzzer_sys::fuzz_target;

const HEADERS: [&[u8]; 4] = [
    b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
      xmlns:db='jabber:server:dialback' version='1.0'>",
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
      xml:lang='en' version='1.0'>",
    b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
      xmlns:db='jabber:server:dialback' xmlns:a='urn:a' xmlns:c='jabber:client' version='1.0'>",
    b"<s:stream xmlns='jabber:server' xmlns:s='http://etherx.jabber.org/streams' \
      xmlns:db='urn:not-dialback' version='1.0'>",
];

const S2S: &[u8] = HEADERS[0];
const C2S: &[u8] = b"<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
const C2S_CTX: WriteContext<'static> = WriteContext {
    default_ns: ns::CLIENT,
    stream_prefix: true,
    dialback_prefix: false,
};

/// The elements of `input` (parsing stops at the first error).
fn elements(limits: &Limits, input: &[u8]) -> Vec<(Element, usize)> {
    let mut p = StreamParser::new(limits.clone());
    p.feed(input);
    let mut out = Vec::new();
    while let Ok(Some(ev)) = p.next_event() {
        if let Event::Element { element, wire_len } = ev {
            out.push((element, wire_len));
        }
    }
    out
}

/// Write `e` into the stream opened by `header` (context `ctx`), parse it there: it must be
/// `e`.
fn check_forward(e: &Element, header: &[u8], ctx: &WriteContext<'_>, max_depth: usize) {
    let mut input = header.to_vec();
    let at = input.len();
    e.write_in(&mut input, ctx);
    let roomy = Limits {
        max_stanza_size: usize::MAX / 16,
        max_depth,
        max_attributes: usize::MAX,
        max_stanza_alloc: Some(usize::MAX / 16),
        ..Limits::default()
    };
    let back = elements(&roomy, &input);
    let written = String::from_utf8_lossy(&input[at..]);
    match back.as_slice() {
        [(b, _)] => assert_eq!(b, e, "forwarded as\n{written}"),
        other => panic!("{} elements read back from\n{written}", other.len()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, body)) = data.split_first() else {
        return;
    };
    let mut input = Vec::with_capacity(body.len() + 200);
    if ctl & 0x80 == 0 {
        input.extend_from_slice(HEADERS[ctl as usize % HEADERS.len()]);
    }
    input.extend_from_slice(body);
    let limits = Limits {
        max_stanza_size: 4096,
        max_depth: 8,
        ..Limits::default()
    };
    for (e, wire_len) in elements(&limits, &input) {
        assert_eq!(e.wire_bytes().map(str::len), Some(wire_len));
        check_forward(&e, S2S, &WriteContext::S2S, limits.max_depth);
        check_forward(&e, C2S, &C2S_CTX, limits.max_depth);
        let mut changed = e.clone();
        changed.set_attr("to", "juliet@capulet.example");
        changed.remove_children(|c| c.name == "status");
        check_forward(&changed, S2S, &WriteContext::S2S, limits.max_depth);
    }
});
