//! `xml_stream`: arbitrary bytes through `StreamParser`, fed whole and split at points chosen
//! by the input. Checks: the same events and error either way (consecutive whitespace events
//! merged, the documented exception); each received element's accounted allocation within the
//! budget and not below what the element holds; re-serialising an element stays within twice
//! its wire size (plus the stream header's declarations and a constant) and parses back to the
//! same element.
#![no_main]

use fedgate_xmpp::{Element, Event, Limits, StreamError, StreamParser};
use libfuzzer_sys::fuzz_target;

const S2S_OPEN: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
    xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
    from='a.example' to='b.example' version='1.0'>";

/// Slack of the output bound (see the crate's property test), plus twice the header.
const SLACK: usize = 640;

fn limits(choice: u8) -> Limits {
    match choice % 3 {
        0 => Limits::default(),
        // small limits, so the fuzzer reaches them
        1 => Limits {
            max_stanza_size: 512,
            max_depth: 6,
            max_attributes: 6,
            max_header_size: 600,
            ..Limits::default()
        },
        _ => Limits {
            max_stanza_size: 2048,
            max_stanza_alloc: Some(4096),
            ..Limits::default()
        },
    }
}

fn push_merged(out: &mut Vec<Event>, e: Event) {
    if let (Event::Whitespace(n), Some(Event::Whitespace(m))) = (&e, out.last_mut()) {
        *m += *n;
        return;
    }
    out.push(e);
}

/// Feed `input` in chunks whose sizes cycle through `sizes` (empty: whole); check each
/// element as it arrives.
fn run(
    limits: &Limits,
    input: &[u8],
    sizes: &[u8],
    check: bool,
) -> (Vec<Event>, Option<StreamError>) {
    let mut p = StreamParser::new(limits.clone());
    let mut out = Vec::new();
    let mut rest = input;
    let mut k = 0;
    let mut header_len = 0usize;
    loop {
        let n = if sizes.is_empty() {
            rest.len()
        } else {
            1 + sizes[k % sizes.len()] as usize % 97
        };
        k += 1;
        let (chunk, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        p.feed(chunk);
        loop {
            match p.next_event() {
                Ok(Some(e)) => {
                    if check {
                        match &e {
                            Event::StreamOpen(_) => {
                                header_len = input.len() - rest.len() - p.buffered()
                            }
                            Event::Element { element, wire_len } => {
                                check_element(limits, &p, element, *wire_len, header_len)
                            }
                            _ => {}
                        }
                    }
                    push_merged(&mut out, e);
                }
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
        if rest.is_empty() {
            return (out, None);
        }
    }
}

fn check_element(
    limits: &Limits,
    p: &StreamParser,
    e: &Element,
    wire_len: usize,
    header_len: usize,
) {
    let accounted = p.stanza_alloc();
    assert!(
        accounted <= limits.stanza_alloc_budget(),
        "accounted {accounted} over budget"
    );
    // Namespaces declared on the stream header are shared, not allocated for the stanza:
    // the element may hold them (at most about the header's size) without them being
    // accounted.
    let held = e.heap_size() + std::mem::size_of::<Element>();
    assert!(
        accounted + 2 * header_len >= held,
        "accounted {accounted} < held {held}"
    );
    // Serialized from the tree (forwarding as received is `forward_wire`'s).
    let mut tree = e.clone();
    tree.forget_wire();
    let out = tree.to_bytes();
    assert!(
        out.len() <= 2 * wire_len + 2 * header_len + SLACK,
        "{} bytes out for {wire_len} in: {}",
        out.len(),
        String::from_utf8_lossy(&out)
    );
    let mut again = S2S_OPEN.to_vec();
    again.extend_from_slice(&out);
    let roomy = Limits {
        max_stanza_size: usize::MAX / 16,
        max_depth: limits.max_depth,
        max_attributes: usize::MAX,
        ..Limits::default()
    };
    let (ev, err) = run(&roomy, &again, &[], false);
    assert!(
        err.is_none(),
        "{err:?} for {}",
        String::from_utf8_lossy(&out)
    );
    match ev.get(1) {
        Some(Event::Element { element, .. }) => {
            assert_eq!(element, e, "{}", String::from_utf8_lossy(&out))
        }
        other => panic!("{other:?} for {}", String::from_utf8_lossy(&out)),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let n_sizes = (ctl as usize >> 2) % 8;
    if rest.len() < n_sizes {
        return;
    }
    let (sizes, body) = rest.split_at(n_sizes);
    let limits = limits(ctl);
    let mut input = Vec::with_capacity(body.len() + S2S_OPEN.len());
    if ctl & 0x80 == 0 {
        input.extend_from_slice(S2S_OPEN);
    }
    input.extend_from_slice(body);
    let whole = run(&limits, &input, &[], true);
    let split = run(
        &limits,
        &input,
        if sizes.is_empty() { &[0] } else { sizes },
        false,
    );
    assert_eq!(whole, split, "chunking changed the result");
});
