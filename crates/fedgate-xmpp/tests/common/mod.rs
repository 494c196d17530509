//! Shared helpers for the integration tests: run a parser over bytes fed in chunks.
#![allow(dead_code)]

use fedgate_xmpp::{Event, Limits, StreamError, StreamParser};

pub const S2S_OPEN: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
    xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
    from='example.org' to='example.com' version='1.0'>";

/// Feed `input` in chunks of `chunk` bytes, collecting events until an error or the end.
/// Consecutive whitespace events are merged.
pub fn events_chunked(
    limits: Limits,
    input: &[u8],
    chunk: usize,
) -> (Vec<Event>, Option<StreamError>) {
    events_of_pieces(limits, input.chunks(chunk.max(1)))
}

/// Feed `pieces` one after another, collecting events until an error or the end.
/// Consecutive whitespace events are merged.
pub fn events_of_pieces<'a>(
    limits: Limits,
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<Event>, Option<StreamError>) {
    let mut p = StreamParser::new(limits);
    let mut out = Vec::new();
    for c in pieces {
        p.feed(c);
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

pub fn push_merged(out: &mut Vec<Event>, e: Event) {
    if let (Event::Whitespace(n), Some(Event::Whitespace(m))) = (&e, out.last_mut()) {
        *m += *n;
        return;
    }
    out.push(e);
}

pub fn events(input: &[u8]) -> (Vec<Event>, Option<StreamError>) {
    events_chunked(Limits::default(), input, usize::MAX)
}

/// Parse `body` after the standard s2s header and return the events after the header and
/// the error, checking the result is the same with 1-byte and 7-byte chunks.
pub fn after_header(body: &str) -> (Vec<Event>, Option<StreamError>) {
    after_header_with(Limits::default(), body.as_bytes())
}

pub fn after_header_with(limits: Limits, body: &[u8]) -> (Vec<Event>, Option<StreamError>) {
    let mut input = S2S_OPEN.as_bytes().to_vec();
    input.extend_from_slice(body);
    let whole = events_chunked(limits.clone(), &input, usize::MAX);
    for chunk in [1, 7] {
        let split = events_chunked(limits.clone(), &input, chunk);
        assert_eq!(whole, split, "chunk size {chunk} changed the result");
    }
    let (mut ev, err) = whole;
    assert!(
        matches!(ev.first(), Some(Event::StreamOpen(_))),
        "no header: {ev:?} {err:?}"
    );
    ev.remove(0);
    (ev, err)
}
