//! The incremental stream parser: [`StreamParser`] turns the bytes of one direction of an XMPP
//! stream into [`Event`]s, enforcing the restricted XML profile of RFC 6120 §11 and the hard
//! [`Limits`].
//!
//! Design:
//! * Bytes are appended to one buffer by [`StreamParser::feed`] and consumed from its front.
//!   They are checked for valid UTF-8 once, there, in one pass of a SIMD validator (the
//!   `simdutf8` crate, AVX2 or SSE4.2 chosen at run time); the buffer is a `String`, and
//!   tags, values and text are read from it as `&str` without checking again (invalid bytes
//!   wait behind it and are refused when the parser reaches them, with the error of the
//!   construct they fall in). Consumed bytes are dropped; nothing is ever re-scanned (tags and markers remember how far
//!   they have been scanned), so input arriving one byte at a time costs O(n).
//! * Tags are parsed only once complete, and only if they fit in the remaining budget (the
//!   stanza size limit, or the header size limit before the stream header). A start tag is read
//!   in place: its name and attributes stay ranges of the buffer (in a list reused from tag to
//!   tag) until the element is built, the common XMPP element and attribute names are static
//!   [`Name`]s, and the namespace declarations of all open elements share one list. An end tag
//!   is compared in place. What a stanza allocates is what it keeps.
//! * A first-level element keeps its **wire form**: the bytes it was parsed from, which stay
//!   in the read buffer until the element is complete (compaction keeps them), become one
//!   exactly sized shared allocation, and the element records what those bytes take from the
//!   stream header (the inherited default namespace, prefixes declared there), so the writer
//!   can forward them as they came (see [`crate::element`]).
//! * A stanza's attribute values and text are ranges of those bytes wherever they read as
//!   received: checked, never copied. Only a value holding a reference, tab, CR or LF, and a
//!   text run holding a reference, CR or CDATA, is decoded, into a side buffer (reused from
//!   stanza to stanza; a text run that meets its first reference is copied there from its
//!   start). When the first-level element is complete, its shared allocation holds the side
//!   buffer, then the wire bytes (without a side buffer, the bytes are copied once, from the
//!   read buffer), and every value and text node becomes a [`SharedStr`] slice of it. A 1 KiB
//!   chat message costs four allocations: that buffer, its attribute list and two child
//!   lists. Everything is counted against the same budget. Only a few bytes are ever held back (an incomplete UTF-8 sequence, a trailing
//!   CR, `]`/`]]`, an unterminated entity reference of at most 40 bytes).
//! * The result depends only on the bytes, never on how they were split into chunks, with one
//!   documented exception: whitespace between first-level elements is reported as soon as it is
//!   seen (keepalives must reset idle timers at once), so one run of whitespace may be reported
//!   as several consecutive [`Event::Whitespace`] events. Consecutive whitespace events are
//!   equivalent to one carrying the sum of their lengths.
//! * The first error is final: it is returned again by every later call, and the buffers are
//!   released.
//! * Memory is accounted, not assumed: the wire size limit alone does not bound what parsing
//!   allocates (a 4-byte `<a/>` is a ~100-byte node; before namespaces were shared, a long
//!   namespace URI was copied into every element). While a first-level element is built, the
//!   parser adds up what it allocates for it — see [`StreamParser::stanza_alloc`] — and
//!   refuses the stanza with `policy-violation` once that exceeds
//!   [`Limits::stanza_alloc_budget`]. Every amount is computed from lengths, capacities and
//!   `size_of` of what is really allocated, and depends only on the bytes (never on the
//!   chunking), so the refusal does not either. The side buffer is counted by its length (its
//!   shared copy is exactly sized), so decoded values and text carry no growth slack; values
//!   and text that are ranges of the wire bytes cost nothing more.

use std::ops::Range;
use std::sync::Arc;

use crate::attrs::{Attr, Attrs};
use crate::element::{Element, Inherited, Node, Outside, Wire, seal_tree};
use crate::error::{StreamError, StreamErrorCondition as C};
use crate::header::{StreamHeader, check_version};
use crate::limits::Limits;
use crate::name::Name;
use crate::namespace::Namespace;
use crate::ns;
use crate::shared::{SharedStr, arc_str_size};
use crate::xmlchar::{
    ASCII_NAME_CHAR, is_name_char_or_colon, is_ncname, is_ws, is_xml_char, split_qname,
};

/// Something the peer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The stream header (`<stream:stream ...>`), validated.
    StreamOpen(StreamHeader),
    /// One complete first-level element (stanza, `<stream:features/>`, `<db:result/>`, ...).
    Element {
        /// The element.
        element: Element,
        /// Its length on the wire, from its `<` to the `>` of its end tag.
        wire_len: usize,
    },
    /// Whitespace between first-level elements (keepalive), with its length in bytes.
    Whitespace(usize),
    /// `</stream:stream>`.
    StreamClose,
}

#[derive(Debug)]
enum State {
    /// Before the stream header.
    Prolog(PrologPos),
    /// After the header, before the close tag.
    Open,
    /// After `</stream:stream>`: only whitespace may follow.
    Closed,
    /// A stream error occurred; it is final.
    Failed(StreamError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PrologPos {
    /// Nothing consumed yet: byte order mark allowed.
    Start,
    /// XML declaration still allowed.
    AfterBom,
    /// Whitespace and the header only.
    Body,
}

enum Step {
    Event(Event),
    Again,
    NeedMore,
}

#[derive(Debug)]
struct Open {
    /// The prefix of the start tag's name (`None` when unprefixed): the end tag repeats it.
    prefix: Option<Box<str>>,
    element: Element,
    /// Where this element's namespace declarations start in [`StreamParser::decls`].
    decls_from: usize,
}

impl Open {
    /// Whether `qname` (an end tag's name) closes this element.
    fn is_closed_by(&self, qname: &str) -> bool {
        match &self.prefix {
            None => qname == self.element.name,
            Some(p) => qname
                .strip_prefix(&**p)
                .and_then(|rest| rest.strip_prefix(':'))
                .is_some_and(|local| local == self.element.name),
        }
    }

    /// The qualified name of the start tag (for error texts).
    fn qname(&self) -> String {
        match &self.prefix {
            None => self.element.name.to_string(),
            Some(p) => format!("{p}:{}", self.element.name),
        }
    }

    /// What the open element holds besides its node: the prefix.
    fn prefix_alloc(&self) -> usize {
        self.prefix.as_ref().map_or(0, |p| p.len())
    }
}

/// A namespace declaration: prefix (empty for the default namespace) and URI, allocated once
/// and shared by every element and attribute in its scope.
type Decl = (String, Namespace);

/// One attribute of a start tag being parsed, before namespace resolution: ranges of the tag's
/// text, so nothing is copied until the attribute is stored in its element.
#[derive(Debug)]
struct RawAttr {
    /// The qualified name.
    name: Range<usize>,
    /// The value as written, between the quotes.
    raw: Range<usize>,
    /// The value with references resolved and whitespace normalised, as a range of the
    /// stanza's side buffer, only when that differs from `raw` (it holds a reference, a tab,
    /// CR or LF).
    decoded: Option<Range<usize>>,
}

impl RawAttr {
    fn name<'t>(&self, tag: &'t str) -> &'t str {
        tag.get(self.name.clone()).unwrap_or("")
    }

    /// Whether its name in `tag` is `name` (lengths first, then bytes: the duplicate check of
    /// every attribute against the ones before it).
    #[inline]
    fn is_named(&self, tag: &str, name: &str) -> bool {
        self.name.len() == name.len()
            && tag.as_bytes().get(self.name.clone()) == Some(name.as_bytes())
    }

    fn value<'a>(&self, tag: &'a str, text: &'a TextBuf) -> &'a str {
        match &self.decoded {
            Some(r) => text.get(r.clone()).unwrap_or(""),
            None => tag.get(self.raw.clone()).unwrap_or(""),
        }
    }

    /// The value, not shared yet: the decoded one (a range of the stanza's side buffer), or
    /// the raw text as a range of the element's wire bytes when the tag starts at `wire_base`
    /// of them (a first-level element or its descendant), else copied into the side buffer
    /// (the stream header).
    fn value_in(&self, tag: &str, values: &mut Values<'_>) -> Result<SharedStr, StreamError> {
        let Values { text, wire_base } = values;
        let pending = match (&self.decoded, *wire_base) {
            (Some(r), _) => SharedStr::pending(r.start, r.end),
            (None, Some(base)) => {
                SharedStr::pending_wire(base + self.raw.start, base + self.raw.end)
            }
            (None, None) => {
                let start = text.len();
                text.push_str(tag.get(self.raw.clone()).unwrap_or(""));
                SharedStr::pending(start, text.len())
            }
        };
        pending.ok_or_else(StreamParser::too_much_memory)
    }
}

/// Where the values of a start tag are kept: decoded ones in the stanza's side buffer `text`,
/// the others as ranges of the element's wire bytes, where the tag starts at `wire_base`
/// (`None` for the stream header, whose values are copied into `text`).
struct Values<'a> {
    text: &'a mut TextBuf,
    wire_base: Option<usize>,
}

/// A parsed and resolved start tag (its namespace declarations are on [`StreamParser::decls`]
/// from `decls_from`).
struct StartTag {
    element: Element,
    prefix: Option<Box<str>>,
    empty: bool,
    decls_from: usize,
}

/// The side buffer of the stanza being built ([`StreamParser::text`]): its values and text
/// that had to be decoded. A `String`, appended to only from slices of the (already
/// validated) read buffer and decoded `char`s, so sharing it validates nothing again.
#[derive(Debug, Default)]
struct TextBuf(String);

impl TextBuf {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn capacity(&self) -> usize {
        self.0.capacity()
    }

    fn clear(&mut self) {
        self.0.clear();
    }

    fn truncate(&mut self, len: usize) {
        if self.0.is_char_boundary(len) {
            self.0.truncate(len);
        }
    }

    fn push_str(&mut self, s: &str) {
        self.0.push_str(s);
    }

    fn reserve_exact(&mut self, n: usize) {
        self.0.reserve_exact(n);
    }

    fn push(&mut self, c: char) {
        self.0.push(c);
    }

    /// The text of a range (`None` if it is not text: never for ranges the parser made).
    fn get(&self, r: Range<usize>) -> Option<&str> {
        self.0.get(r)
    }

    /// The whole text copied into one exactly sized shared allocation.
    fn shared(&self) -> Arc<str> {
        Arc::from(self.0.as_str())
    }
}

/// Longest entity or character reference we wait for (`&#x0000000000000001F600;` is legal
/// XML but nobody sends it; longer references are refused).
const MAX_REF: usize = 40;

fn err(c: C, text: impl Into<String>) -> StreamError {
    StreamError::new(c, text)
}

fn nwf(text: impl Into<String>) -> StreamError {
    err(C::NotWellFormed, text)
}

/// Incremental parser for one direction of an XMPP stream. See the module documentation.
#[derive(Debug)]
pub struct StreamParser {
    limits: Limits,
    /// The bytes received and not consumed yet, from `pos`, as far as they are valid UTF-8:
    /// validated once, as they arrive ([`Self::feed`]); everything after works on `&str`.
    buf: String,
    pos: usize,
    /// Received bytes after `buf` that are not (yet) valid UTF-8: an incomplete sequence at
    /// the end of what arrived (at most 3 bytes, completed by the next feed), or, when
    /// `tail_invalid`, everything from the first invalid sequence on. The parser reports the
    /// error when it reaches them (see [`StreamParser::stalled`]), never before the bytes
    /// ahead of them are parsed.
    tail: Vec<u8>,
    tail_invalid: bool,
    state: State,
    header_bytes: usize,
    /// How far the construct starting at `pos` has been scanned (tag or XML declaration).
    scan: usize,
    scan_quote: u8,
    stream_qname: String,
    stream_decls: Vec<Decl>,
    stack: Vec<Open>,
    /// The namespace declarations of the open elements, outermost first; each [`Open`] knows
    /// where its own start. One list for all (no list per element), searched from the end.
    decls: Vec<Decl>,
    /// The attributes of the start tag being parsed (reused from tag to tag).
    raw_attrs: Vec<RawAttr>,
    stanza_bytes: usize,
    /// Bytes allocated for the first-level element being built (see [`Self::stanza_alloc`]).
    stanza_alloc: usize,
    /// The side buffer of the first-level element being built: the attribute values and text
    /// that had to be decoded (references, CDATA, normalised whitespace; the others are ranges
    /// of the element's wire bytes). Shared with the wire bytes after it once the element is
    /// complete (one allocation per stanza). Reused from stanza to stanza.
    text: TextBuf,
    /// Where the current text run (text and CDATA since the last tag, not yet a text node) is.
    run: Run,
    in_cdata: bool,
    /// Where the first-level element being parsed starts in `buf` (its `<`): its bytes are
    /// kept there until it is complete, to become its wire form.
    elem_start: usize,
    /// What the first-level element being parsed takes from outside itself.
    deps: WireDeps,
    /// The stream header's default namespace (what a first-level element inherits), as an
    /// [`Inherited`] code.
    stream_default: u8,
}

/// What the bytes of a first-level element depend on outside themselves (see
/// [`Wire`](crate::element::Wire)), gathered while its start tags are resolved.
#[derive(Debug, Default, Clone, Copy)]
struct WireDeps {
    /// Some unprefixed element name took the stream's default namespace.
    default: bool,
    /// [`Outside`] flags of the stream-header prefixes used.
    outside: u8,
}

/// Where the current text run of the element being built is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// As received, from this offset of the first-level element's wire bytes: nothing in it
    /// needed decoding so far.
    Wire(usize),
    /// Decoded into the side buffer ([`StreamParser::text`]) from this offset.
    Side(usize),
}

impl StreamParser {
    /// A parser expecting a stream header.
    pub fn new(limits: Limits) -> Self {
        StreamParser {
            limits,
            buf: String::new(),
            pos: 0,
            tail: Vec::new(),
            tail_invalid: false,
            state: State::Prolog(PrologPos::Start),
            header_bytes: 0,
            scan: 0,
            scan_quote: 0,
            stream_qname: String::new(),
            stream_decls: Vec::new(),
            stack: Vec::new(),
            decls: Vec::new(),
            raw_attrs: Vec::new(),
            stanza_bytes: 0,
            stanza_alloc: 0,
            text: TextBuf::default(),
            run: Run::Wire(0),
            in_cdata: false,
            elem_start: 0,
            deps: WireDeps::default(),
            stream_default: Inherited::OTHER,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Append received bytes. Nothing is parsed until [`next_event`](Self::next_event).
    /// Bytes fed after a stream error are discarded. The caller should feed reads of bounded
    /// size and drain events between feeds: the parser only refuses input when parsing it, so
    /// what is fed but not yet parsed is held in memory.
    pub fn feed(&mut self, bytes: &[u8]) {
        if matches!(self.state, State::Failed(_)) {
            return;
        }
        let mut bytes = bytes;
        if !self.tail.is_empty() {
            if self.tail_invalid {
                self.tail.extend_from_slice(bytes);
                return;
            }
            // Complete the sequence held back from the last feed.
            let need = utf8_width(self.tail[0]).saturating_sub(self.tail.len());
            let (head, rest) = bytes.split_at(need.min(bytes.len()));
            self.tail.extend_from_slice(head);
            bytes = rest;
            match simdutf8::compat::from_utf8(&self.tail) {
                Ok(c) => {
                    self.buf.push_str(c);
                    self.tail.clear();
                }
                Err(e) if e.error_len().is_none() => return,
                Err(_) => {
                    self.tail_invalid = true;
                    self.tail.extend_from_slice(bytes);
                    return;
                }
            }
        }
        // One pass over the bytes up to a sequence cut short by their end (found from the
        // last three), which waits for the next feed.
        let (body, end) = bytes.split_at(bytes.len() - incomplete_suffix(bytes));
        let valid = utf8_prefix(body);
        self.buf.push_str(valid);
        if valid.len() == body.len() {
            self.tail.extend_from_slice(end);
            self.tail_invalid = simdutf8::compat::from_utf8(end)
                .err()
                .and_then(|e| e.error_len())
                .is_some();
        } else {
            // Invalid bytes (rare): they and everything after them wait, and are refused
            // when the parser reaches them.
            self.tail
                .extend_from_slice(bytes.get(valid.len()..).unwrap_or_default());
            self.tail_invalid = true;
        }
    }

    /// The next event; `Ok(None)` when more bytes are needed. After an error, the same error
    /// is returned forever (until [`reset`](Self::reset)).
    pub fn next_event(&mut self) -> Result<Option<Event>, StreamError> {
        if let State::Failed(e) = &self.state {
            return Err(e.clone());
        }
        let r = self.run();
        match r {
            Ok(ev) => {
                self.compact();
                Ok(ev)
            }
            Err(e) => {
                self.state = State::Failed(e.clone());
                self.buf = String::new();
                self.tail = Vec::new();
                self.pos = 0;
                self.stack = Vec::new();
                self.decls = Vec::new();
                self.raw_attrs = Vec::new();
                self.text = TextBuf::default();
                Err(e)
            }
        }
    }

    /// Start over for a new stream (after STARTTLS `<proceed/>` or SASL `<success/>`):
    /// expect a new header (an XML declaration is allowed again). Bytes fed but not yet parsed
    /// are discarded — data that followed `<proceed/>` in the cleartext stream must never be
    /// interpreted after the TLS handshake — and their number is returned so the caller can
    /// treat it as an attack.
    pub fn reset(&mut self) -> usize {
        let discarded = self.buffered();
        *self = StreamParser::new(self.limits.clone());
        discarded
    }

    /// Bytes fed but not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos + self.tail.len()
    }

    /// Capacity of the internal byte buffer (to check memory stays bounded).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity() + self.tail.capacity()
    }

    /// Heap bytes the parser holds for parsing (the byte buffer, the open-element stack, the
    /// declaration and attribute scratch lists, the text buffer), by capacity. Between elements
    /// on an idle stream, after [`release_idle`](Self::release_idle), this is 0 (or the bytes
    /// of a partly received element). The stream header's own name and declarations are not
    /// counted.
    pub fn held_capacity(&self) -> usize {
        self.buf.capacity()
            + self.tail.capacity()
            + self.stack.capacity() * std::mem::size_of::<Open>()
            + self.decls.capacity() * std::mem::size_of::<Decl>()
            + self.raw_attrs.capacity() * std::mem::size_of::<RawAttr>()
            + self.text.capacity()
    }

    /// Give back the capacity kept for the next element: the parser keeps its buffers between
    /// elements so a busy stream does not reallocate per stanza; a stream that went quiet
    /// should not keep them (after a 64 KiB stanza the byte buffer alone is 64 KiB). Call it
    /// when the stream is idle (no bytes for a while), not per stanza. Bytes fed but not yet
    /// parsed are kept (moved into a buffer of their size), and so is the state of an element
    /// still open.
    pub fn release_idle(&mut self) {
        if self.tail.is_empty() {
            self.tail = Vec::new();
        }
        let keep = self.keep_from();
        if keep == self.buf.len() {
            self.buf = String::new();
            self.pos = 0;
            self.elem_start = 0;
        } else if self.buf.capacity() > self.buf.len() - keep && self.buf.is_char_boundary(keep) {
            self.buf.drain(..keep);
            self.buf.shrink_to_fit();
            self.pos -= keep;
            self.elem_start = self.elem_start.saturating_sub(keep);
        }
        if self.stack.is_empty() {
            self.stack = Vec::new();
        }
        if self.decls.is_empty() {
            self.decls = Vec::new();
        }
        // Used only within one start tag (cleared after each).
        self.raw_attrs = Vec::new();
        if self.text.is_empty() {
            self.text = TextBuf::default();
        }
    }

    /// Depth of the element currently being parsed (0 between first-level elements).
    pub fn depth(&self) -> usize {
        self.stack.len()
    }

    /// Bytes accounted as allocated for the first-level element being parsed, or for the last
    /// one received until the next one starts. It covers the element nodes (the top element's
    /// `size_of::<Element>()`, each child's slot in its parent's children list by the list's
    /// capacity), element names, attribute lists (by capacity, `size_of::<Attr>()` each),
    /// attribute names, the shared buffer holding the element's wire form and the attribute
    /// values and text that had to be decoded (by length and its header: it is allocated
    /// exactly; values and text that read as received are ranges of the wire form; the wire
    /// form's bytes are counted as they are consumed, while the read buffer keeps them until
    /// the element is complete), each namespace declaration once (prefix and the shared URI allocation:
    /// [`Namespace::heap_size`]; elements and attributes using it add nothing), and the
    /// state of the elements still open (name prefixes, declarations; released when they
    /// close). It never counts less than
    /// [`Element::heap_size`] of the element received plus its own struct. A received element
    /// was at most [`Limits::stanza_alloc_budget`] at its last tag; text is bounded by the
    /// wire size and checked at the next tag.
    pub fn stanza_alloc(&self) -> usize {
        self.stanza_alloc
    }

    /// Whether `</stream:stream>` has been received.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Whether a stream error occurred.
    pub fn is_failed(&self) -> bool {
        matches!(self.state, State::Failed(_))
    }

    fn compact(&mut self) {
        if self.text.is_empty() && self.text.capacity() > 64 * 1024 {
            self.text = TextBuf::default();
        }
        let keep = self.keep_from();
        if keep == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            self.elem_start = 0;
            if self.buf.capacity() > 64 * 1024 {
                self.buf.shrink_to(8 * 1024);
            }
        } else if keep > 8 * 1024 && keep * 2 > self.buf.len() && self.buf.is_char_boundary(keep) {
            self.buf.drain(..keep);
            self.pos -= keep;
            self.elem_start = self.elem_start.saturating_sub(keep);
        }
    }

    /// Where the bytes still needed start in `buf`: the first-level element being parsed (its
    /// wire form) or, between elements, the first byte not consumed.
    fn keep_from(&self) -> usize {
        if self.stack.is_empty() {
            self.pos
        } else {
            self.elem_start.min(self.pos)
        }
    }

    fn run(&mut self) -> Result<Option<Event>, StreamError> {
        loop {
            let step = match self.state {
                State::Prolog(p) => self.step_prolog(p)?,
                State::Open if self.stack.is_empty() => self.step_top()?,
                State::Open if self.in_cdata => self.step_cdata()?,
                State::Open => self.step_content()?,
                State::Closed => self.step_closed()?,
                State::Failed(_) => Step::NeedMore,
            };
            match step {
                Step::Event(e) => return Ok(Some(e)),
                Step::Again => {}
                Step::NeedMore => {
                    if !self.tail.is_empty() {
                        self.stalled()?;
                    }
                    return Ok(None);
                }
            }
        }
    }

    /// What the parser does when it needs more bytes and the valid ones are used up: the next
    /// bytes are [`Self::tail`]. An incomplete sequence is waited for (except where any byte
    /// but whitespace is an error); an invalid one is refused, with the error the construct
    /// it falls in gets (too big when it lies beyond the size limit).
    fn stalled(&self) -> Result<(), StreamError> {
        let a = self.avail().as_bytes();
        let first = self.tail.first().copied().unwrap_or(0);
        match self.state {
            State::Closed => return Err(nwf("data after </stream:stream>")),
            State::Open if self.stack.is_empty() && a.is_empty() => {
                return Err(if (0x80..0xC2).contains(&first) || first >= 0xF5 {
                    nwf("binary data at stream level (not XML)")
                } else {
                    err(C::BadFormat, "character data at stream level")
                });
            }
            _ if !self.tail_invalid => return Ok(()),
            _ => {}
        }
        let at = a.len();
        if let State::Prolog(_) = self.state {
            // The checks at the start of the stream look at up to 6 raw bytes (byte order
            // marks, the XML declaration): until there are that many, they decide.
            if self.head().1 < 6 {
                return Ok(());
            }
            let budget = self.header_budget();
            if a.starts_with(b"<?xml") {
                return Err(if at >= budget {
                    err(C::PolicyViolation, "XML declaration too large")
                } else {
                    nwf("invalid UTF-8 in XML declaration")
                });
            }
            return Err(if at + 1 >= budget {
                err(C::PolicyViolation, "stream header too large")
            } else {
                nwf("invalid UTF-8 in tag")
            });
        }
        let top = self.stack.is_empty();
        let budget = if top {
            self.limits.max_stanza_size
        } else {
            self.stanza_budget()
        };
        if self.in_cdata || a.first() != Some(&b'<') {
            if top {
                return Err(nwf("invalid UTF-8 in reference"));
            }
            return Err(if at >= budget {
                Self::too_big()
            } else {
                nwf("invalid UTF-8")
            });
        }
        if a.starts_with(b"<!") {
            return Err(if a.len() == 2 {
                bang_error(a)
            } else if top {
                err(C::BadFormat, "character data at stream level")
            } else {
                nwf("invalid markup declaration")
            });
        }
        Err(if at + 1 >= budget {
            Self::too_big()
        } else {
            nwf("invalid UTF-8 in tag")
        })
    }

    /// The bytes not consumed yet that are valid UTF-8.
    fn avail(&self) -> &str {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// The first bytes not consumed yet, valid or not (for the checks at the start of a
    /// stream, which look at raw bytes).
    fn head(&self) -> ([u8; 6], usize) {
        let mut h = [0; 6];
        let mut n = 0;
        for b in self
            .avail()
            .bytes()
            .chain(self.tail.iter().copied())
            .take(6)
        {
            h[n] = b;
            n += 1;
        }
        (h, n)
    }

    fn consume_header(&mut self, n: usize) -> Result<(), StreamError> {
        self.pos += n;
        self.header_bytes += n;
        if self.header_bytes > self.limits.max_header_size {
            return Err(err(C::PolicyViolation, "stream header too large"));
        }
        Ok(())
    }

    fn header_budget(&self) -> usize {
        self.limits
            .max_header_size
            .saturating_sub(self.header_bytes)
    }

    fn stanza_budget(&self) -> usize {
        self.limits
            .max_stanza_size
            .saturating_sub(self.stanza_bytes)
    }

    fn too_big() -> StreamError {
        err(C::PolicyViolation, "stanza exceeds the maximum stanza size")
    }

    fn too_much_memory() -> StreamError {
        err(
            C::PolicyViolation,
            "stanza exceeds the maximum stanza size (parsed, it needs more memory than allowed)",
        )
    }

    /// Refuse the stanza if what it allocated exceeds the budget.
    fn check_alloc(&self) -> Result<(), StreamError> {
        if self.stanza_alloc > self.limits.stanza_alloc_budget() {
            return Err(Self::too_much_memory());
        }
        Ok(())
    }

    /// Append a child node to the element being built. When its list is full, the list grows
    /// (1 slot first — most elements have one child, often a text —, 2 for the first-level
    /// element, which rarely has fewer; then doubling) only after
    /// the growth has been accounted and found within the budget, so a refused stanza never
    /// allocated the list that would have exceeded it.
    fn push_node(&mut self, node: Node) -> Result<(), StreamError> {
        let first = if self.stack.len() == 1 { 2 } else { 1 };
        let Some(top) = self.stack.last_mut() else {
            return Err(err(C::InternalServerError, "parser stack empty"));
        };
        let children = &mut top.element.children;
        let (len, cap) = (children.len(), children.capacity());
        if len == cap {
            let new_cap = (cap * 2).max(first);
            self.stanza_alloc += (new_cap - cap) * std::mem::size_of::<Node>();
            if self.stanza_alloc > self.limits.stanza_alloc_budget() {
                return Err(Self::too_much_memory());
            }
            children.reserve_exact(new_cap - len);
        }
        children.push(node);
        Ok(())
    }

    /// Where the read position is in the wire bytes of the first-level element being built.
    fn wire_offset(&self) -> usize {
        self.pos.saturating_sub(self.elem_start)
    }

    /// The current text run ending here (at the read position for a run as received, at
    /// `side_end` of the side buffer for a decoded one) as a pending text node; `None` when
    /// it is empty. Its bytes were accounted when consumed or decoded.
    fn run_text(&self, side_end: usize) -> Result<Option<SharedStr>, StreamError> {
        let node = match self.run {
            Run::Wire(start) if start < self.wire_offset() => {
                SharedStr::pending_wire(start, self.wire_offset())
            }
            Run::Side(start) if start < side_end => SharedStr::pending(start, side_end),
            _ => return Ok(None),
        };
        node.map(Some).ok_or_else(Self::too_much_memory)
    }

    /// Add a text run ([`Self::run_text`]) as a text node of the element being built; the
    /// next run starts at the read position, as received.
    fn commit_text(&mut self, node: Option<SharedStr>) -> Result<(), StreamError> {
        self.run = Run::Wire(self.wire_offset());
        match node {
            Some(node) => self.push_node(Node::Text(node)),
            None => Ok(()),
        }
    }

    /// The current text run needs decoding from the read position on: what it holds so far
    /// (as received) is copied into the side buffer, where the rest is decoded.
    fn run_to_side(&mut self) -> Result<(), StreamError> {
        if let Run::Wire(start) = self.run {
            let side = self.text.len();
            let bytes = self
                .buf
                .get(self.elem_start + start..self.pos)
                .ok_or_else(|| err(C::InternalServerError, "element bytes not kept"))?;
            self.text.push_str(bytes);
            self.stanza_alloc += bytes.len();
            self.run = Run::Side(side);
        }
        Ok(())
    }

    /// Share the side buffer with the stream header: one allocation, exactly sized, which
    /// every value of the header refers to.
    fn seal(&mut self, element: &mut Element) -> Result<(), StreamError> {
        if !self.text.is_empty() {
            let buf = self.text.shared();
            seal_tree(element, &buf, 0);
        }
        self.text.clear();
        self.run = Run::Wire(0);
        Ok(())
    }

    /// Consume `n` bytes of the first-level element being parsed. They stay in the read
    /// buffer until the element is complete, then are copied into its shared buffer (its
    /// wire form): counted in [`Self::stanza_alloc`] as they are consumed.
    fn consume_stanza(&mut self, n: usize) -> Result<(), StreamError> {
        self.pos += n;
        self.stanza_bytes += n;
        self.stanza_alloc += n;
        if self.stanza_bytes > self.limits.max_stanza_size {
            return Err(Self::too_big());
        }
        Ok(())
    }

    /// The complete tag of `len` bytes at `pos` (found by [`Self::scan_tag`]).
    fn tag(&self, len: usize) -> Result<&str, StreamError> {
        self.avail()
            .get(..len)
            .ok_or_else(|| nwf("invalid UTF-8 in tag"))
    }

    /// Scan for the `>` ending the tag at `pos`, looking at no more than `budget` bytes.
    /// Returns the tag length, `None` if incomplete.
    fn scan_tag(
        &mut self,
        budget: usize,
        over: fn() -> StreamError,
    ) -> Result<Option<usize>, StreamError> {
        let a = self.avail().as_bytes();
        let mut i = self.scan.max(1);
        let mut q = self.scan_quote;
        let limit = a.len().min(budget);
        // Jump from one byte that matters to the next: inside quotes only the closing quote,
        // outside them a quote, `>` or `<`.
        while i < limit {
            let rest = &a[i..limit];
            if q != 0 {
                match rest.iter().position(|b| *b == q) {
                    Some(k) => {
                        i += k + 1;
                        q = 0;
                    }
                    None => i = limit,
                }
                continue;
            }
            let Some(k) = rest
                .iter()
                .position(|b| matches!(b, b'"' | b'\'' | b'>' | b'<'))
            else {
                i = limit;
                continue;
            };
            i += k;
            match a[i] {
                b'>' => {
                    self.scan = 0;
                    self.scan_quote = 0;
                    return Ok(Some(i + 1));
                }
                b'<' => return Err(nwf("'<' inside a tag")),
                b => {
                    q = b;
                    i += 1;
                }
            }
        }
        if a.len() >= budget {
            return Err(over());
        }
        self.scan = i;
        self.scan_quote = q;
        Ok(None)
    }

    // ---- prolog -------------------------------------------------------------------------

    fn step_prolog(&mut self, p: PrologPos) -> Result<Step, StreamError> {
        let (head, n) = self.head();
        let a = &head[..n];
        if a.is_empty() {
            return Ok(Step::NeedMore);
        }
        if p == PrologPos::Start {
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            match a[0] {
                0xEF => {
                    let n = a.len().min(3);
                    if a[..n] != BOM[..n] {
                        return Err(nwf("invalid UTF-8 at start of stream"));
                    }
                    if n < 3 {
                        return Ok(Step::NeedMore);
                    }
                    self.consume_header(3)?;
                    self.state = State::Prolog(PrologPos::AfterBom);
                    return Ok(Step::Again);
                }
                0xFE | 0xFF => {
                    if a.len() < 2 {
                        return Ok(Step::NeedMore);
                    }
                    if (a[0], a[1]) == (0xFE, 0xFF) || (a[0], a[1]) == (0xFF, 0xFE) {
                        return Err(err(
                            C::UnsupportedEncoding,
                            "UTF-16 byte order mark: only UTF-8 is supported",
                        ));
                    }
                    return Err(nwf("invalid UTF-8 at start of stream"));
                }
                0x00 => {
                    if a.len() < 2 {
                        return Ok(Step::NeedMore);
                    }
                    if a[1] == b'<' || a[1] == 0 {
                        return Err(err(
                            C::UnsupportedEncoding,
                            "UTF-16/UTF-32 input: only UTF-8 is supported",
                        ));
                    }
                    return Err(nwf("NUL byte at start of stream"));
                }
                b'<' if a.len() < 2 => return Ok(Step::NeedMore),
                b'<' if a[1] == 0 => {
                    return Err(err(
                        C::UnsupportedEncoding,
                        "UTF-16 input: only UTF-8 is supported",
                    ));
                }
                _ => {}
            }
            self.state = State::Prolog(PrologPos::AfterBom);
            return Ok(Step::Again);
        }
        if p == PrologPos::AfterBom {
            const DECL: &[u8] = b"<?xml";
            let n = a.len().min(DECL.len());
            if a[..n] == DECL[..n] {
                if a.len() < 6 {
                    return Ok(Step::NeedMore);
                }
                if is_ws(a[5]) {
                    return self.xml_decl();
                }
            }
            self.state = State::Prolog(PrologPos::Body);
            return Ok(Step::Again);
        }
        // Body: whitespace, then the stream header.
        let n = self.avail().bytes().take_while(|b| is_ws(*b)).count();
        if n > 0 {
            self.consume_header(n)?;
            return Ok(Step::Again);
        }
        if a[0] != b'<' {
            return Err(nwf("expected an XML stream header"));
        }
        if a.len() < 3 {
            return Ok(Step::NeedMore);
        }
        match a[1] {
            b'?' => {
                return Err(err(
                    C::RestrictedXml,
                    "processing instructions are not allowed",
                ));
            }
            b'!' => return Err(bang_error(a)),
            b'/' => return Err(nwf("end tag before the stream header")),
            _ => {}
        }
        let budget = self.header_budget();
        let Some(len) = self.scan_tag(budget, || {
            err(C::PolicyViolation, "stream header too large")
        })?
        else {
            return Ok(Step::NeedMore);
        };
        let tag = self.read_start_tag(len)?;
        let header = self.accept_header(tag)?;
        self.consume_header(len)?;
        self.state = State::Open;
        Ok(Step::Event(Event::StreamOpen(header)))
    }

    fn xml_decl(&mut self) -> Result<Step, StreamError> {
        let budget = self.header_budget();
        let a = self.buf.get(self.pos..).unwrap_or_default();
        let limit = a.len().min(budget);
        let mut i = self.scan.max(5);
        while i + 1 < limit {
            if a.as_bytes()[i] == b'?' && a.as_bytes()[i + 1] == b'>' {
                break;
            }
            i += 1;
        }
        if i + 1 >= limit {
            if a.len() >= budget {
                return Err(err(C::PolicyViolation, "XML declaration too large"));
            }
            self.scan = i.saturating_sub(1).max(5);
            return Ok(Step::NeedMore);
        }
        let len = i + 2;
        self.scan = 0;
        let body = a
            .get(5..i)
            .ok_or_else(|| nwf("invalid UTF-8 in XML declaration"))?;
        check_xml_decl(body)?;
        self.consume_header(len)?;
        self.state = State::Prolog(PrologPos::Body);
        Ok(Step::Again)
    }

    fn accept_header(&mut self, tag: StartTag) -> Result<StreamHeader, StreamError> {
        let (mut el, empty) = (tag.element, tag.empty);
        self.seal(&mut el)?;
        let decls: Vec<Decl> = self.decls.drain(tag.decls_from..).collect();
        let qname = match &tag.prefix {
            Some(p) => format!("{p}:{}", el.name),
            None => el.name.to_string(),
        };
        if el.namespace != ns::STREAMS {
            return Err(err(
                C::InvalidNamespace,
                "the stream namespace must be http://etherx.jabber.org/streams",
            ));
        }
        if el.name != "stream" {
            return Err(err(C::BadFormat, "expected a <stream:stream> header"));
        }
        if empty {
            return Err(err(C::BadFormat, "empty stream header"));
        }
        let content = decls
            .iter()
            .find(|(p, _)| p.is_empty())
            .map(|(_, u)| u.as_str())
            .unwrap_or("");
        if content != ns::SERVER && content != ns::CLIENT {
            return Err(err(
                C::InvalidNamespace,
                "the content namespace must be jabber:server or jabber:client",
            ));
        }
        let version = el.attr("version").map(str::to_owned);
        check_version(version.as_deref(), self.limits.allow_missing_version)?;
        let header = StreamHeader {
            from: el.attr("from").map(str::to_owned),
            to: el.attr("to").map(str::to_owned),
            id: el.attr("id").map(str::to_owned),
            version,
            lang: el.attr("xml:lang").map(str::to_owned),
            content_ns: content.to_owned(),
            dialback: decls
                .iter()
                .any(|(p, u)| !p.is_empty() && u == ns::DIALBACK),
        };
        self.stream_qname = qname;
        self.stream_default = Inherited::of(content);
        self.stream_decls = decls;
        Ok(header)
    }

    // ---- between first-level elements ---------------------------------------------------

    fn step_top(&mut self) -> Result<Step, StreamError> {
        let a = self.avail().as_bytes();
        if a.is_empty() {
            return Ok(Step::NeedMore);
        }
        let n = a.iter().take_while(|b| is_ws(**b)).count();
        if n > 0 {
            self.pos += n;
            return Ok(Step::Event(Event::Whitespace(n)));
        }
        match a[0] {
            b'<' => {
                if a.len() < 2 {
                    return Ok(Step::NeedMore);
                }
                match a[1] {
                    b'/' => {
                        let Some(len) =
                            self.scan_tag(self.limits.max_stanza_size, Self::too_big)?
                        else {
                            return Ok(Step::NeedMore);
                        };
                        let name = parse_end_tag(self.tag(len)?)?;
                        if name != self.stream_qname {
                            return Err(nwf(format!(
                                "end tag does not match the stream element (expected </{}>)",
                                self.stream_qname
                            )));
                        }
                        self.pos += len;
                        self.state = State::Closed;
                        Ok(Step::Event(Event::StreamClose))
                    }
                    b'!' => {
                        if a.len() < 3 {
                            return Ok(Step::NeedMore);
                        }
                        if a[2] == b'[' {
                            return Err(err(C::BadFormat, "character data at stream level"));
                        }
                        Err(bang_error(a))
                    }
                    b'?' => Err(err(
                        C::RestrictedXml,
                        "processing instructions are not allowed",
                    )),
                    _ => {
                        self.stanza_bytes = 0;
                        self.elem_start = self.pos;
                        self.run = Run::Wire(0);
                        self.deps = WireDeps::default();
                        self.start_tag()
                    }
                }
            }
            b'&' => match parse_ref(a)? {
                None => Ok(Step::NeedMore),
                Some(_) => Err(err(C::BadFormat, "character data at stream level")),
            },
            b if (b < 0x20) || (0x80..0xC2).contains(&b) || b >= 0xF5 => {
                Err(nwf("binary data at stream level (not XML)"))
            }
            _ => Err(err(C::BadFormat, "character data at stream level")),
        }
    }

    fn step_closed(&mut self) -> Result<Step, StreamError> {
        let a = self.avail().as_bytes();
        let n = a.iter().take_while(|b| is_ws(**b)).count();
        let rest = a.len() - n;
        self.pos += n;
        if rest > 0 {
            return Err(nwf("data after </stream:stream>"));
        }
        Ok(Step::NeedMore)
    }

    // ---- inside a first-level element ---------------------------------------------------

    fn start_tag(&mut self) -> Result<Step, StreamError> {
        let budget = self.stanza_budget();
        // The text run before this tag ends here; the tag's decoded values follow it in the
        // side buffer.
        let run_end = self.text.len();
        let run = self.run_text(run_end);
        // A tag complete in the buffer and well-formed (nearly every one) is read in one pass;
        // any other is found by `scan_tag` first, then read, with the errors in that order.
        let (len, tag) = match self.lex_tag(budget) {
            Some((len, raw_attrs, qname, empty)) => {
                self.check_depth()?;
                (len, self.resolve_start_tag(raw_attrs, len, qname, empty)?)
            }
            None => {
                let Some(len) = self.scan_tag(budget, Self::too_big)? else {
                    return Ok(Step::NeedMore);
                };
                self.check_depth()?;
                (len, self.read_start_tag(len)?)
            }
        };
        let StartTag {
            element,
            prefix,
            empty,
            decls_from,
        } = tag;
        let values = self.text.len() - run_end;
        self.consume_stanza(len)?;
        if self.stack.is_empty() {
            // The element's struct, the header of the shared buffer with its padding, and
            // the element's bytes so far (its start tag: see `consume_stanza`).
            self.stanza_alloc =
                std::mem::size_of::<Element>() + arc_str_size(0) + 7 + self.stanza_bytes;
        }
        self.commit_text(run?)?;
        self.stanza_alloc += values + node_alloc(&element) + uris_alloc(&self.decls[decls_from..]);
        if empty {
            self.decls.truncate(decls_from);
            self.finish(element)
        } else {
            let open = Open {
                prefix,
                element,
                decls_from,
            };
            self.stanza_alloc += open.prefix_alloc() + decls_alloc(&self.decls[decls_from..]);
            self.stack.push(open);
            self.check_alloc()?;
            Ok(Step::Again)
        }
    }

    /// Parse the complete start tag of `len` bytes at `pos` (not consumed yet) and resolve its
    /// namespaces; its declarations are pushed on [`Self::decls`]. Names and values are read
    /// from the buffer in place: what is allocated is what the element keeps.
    fn read_start_tag(&mut self, len: usize) -> Result<StartTag, StreamError> {
        let mut raw_attrs = std::mem::take(&mut self.raw_attrs);
        raw_attrs.clear();
        let tag = self
            .buf
            .get(self.pos..self.pos + len)
            .ok_or_else(|| nwf("invalid UTF-8 in tag"))?;
        let (qname, empty) = parse_start_tag(
            tag,
            self.limits.max_attributes,
            &mut raw_attrs,
            &mut self.text,
        )?;
        let qname = 1..1 + qname.len();
        self.resolve_start_tag(raw_attrs, len, qname, empty)
    }

    fn check_depth(&self) -> Result<(), StreamError> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(err(C::PolicyViolation, "maximum element depth exceeded"));
        }
        Ok(())
    }

    /// Read the start tag at `pos` in one pass, if it is complete within `budget` bytes and
    /// well-formed: its length, attributes (as [`parse_start_tag`] reads them), name (a range
    /// of the tag) and whether it is empty. `None` (nothing kept: the attribute list and the
    /// text buffer as they were) when it is not complete, is not well-formed, or a scan is
    /// under way (the tag arrived in pieces): the caller then goes the long way.
    fn lex_tag(&mut self, budget: usize) -> Option<(usize, Vec<RawAttr>, Range<usize>, bool)> {
        if self.scan != 0 {
            return None;
        }
        let mut raw_attrs = std::mem::take(&mut self.raw_attrs);
        raw_attrs.clear();
        let w = cut(self.buf.get(self.pos..).unwrap_or_default(), budget);
        let before = self.text.len();
        match lex_start_tag(
            w,
            self.limits.max_attributes,
            &mut raw_attrs,
            &mut self.text,
        ) {
            Some((len, qname, empty)) => Some((len, raw_attrs, qname, empty)),
            None => {
                self.text.truncate(before);
                raw_attrs.clear();
                self.raw_attrs = raw_attrs;
                None
            }
        }
    }

    /// Resolve the namespaces of the start tag of `len` bytes at `pos`, read into `raw_attrs`
    /// and `qname` (a range of the tag), and build its element.
    fn resolve_start_tag(
        &mut self,
        mut raw_attrs: Vec<RawAttr>,
        len: usize,
        qname: Range<usize>,
        empty: bool,
    ) -> Result<StartTag, StreamError> {
        let decls_from = self.decls.len();
        let tag = self
            .buf
            .get(self.pos..self.pos + len)
            .ok_or_else(|| nwf("invalid UTF-8 in tag"))?;
        let qname = tag.get(qname).ok_or_else(|| nwf("invalid element name"))?;
        // Inside the stream, values that read as received are ranges of the element's wire
        // bytes (this tag starts at `wire_base` of them); the header's are copied.
        let (stream_decls, wire_base): (&[Decl], _) = match self.state {
            State::Open => (&self.stream_decls, Some(self.wire_offset())),
            _ => (&[], None),
        };
        let element = resolve(
            &mut self.decls,
            stream_decls,
            tag,
            qname,
            &raw_attrs,
            &mut Values {
                text: &mut self.text,
                wire_base,
            },
            &mut self.deps,
        )?;
        let prefix = if empty {
            None
        } else {
            qname.split_once(':').map(|(p, _)| Box::from(p))
        };
        raw_attrs.clear();
        self.raw_attrs = raw_attrs;
        Ok(StartTag {
            element,
            prefix,
            empty,
            decls_from,
        })
    }

    /// A complete element: a child of the element being built, or the first-level element.
    fn finish(&mut self, mut element: Element) -> Result<Step, StreamError> {
        if self.stack.is_empty() {
            // The element's bytes, its wire form, go into the shared buffer after its decoded
            // values and text (counted as they were consumed); the other values and text are
            // ranges of them.
            let wire_len = self.stanza_bytes;
            let wire_range = self.elem_start..self.pos;
            if wire_range.len() != wire_len {
                return Err(err(C::InternalServerError, "element bytes not kept"));
            }
            self.check_alloc()?;
            // The shared buffer's header was counted with the most padding it can need; now
            // that its length is known, count exactly what it takes.
            let wire_at = self.text.len();
            let at = u32::try_from(wire_at).map_err(|_| Self::too_much_memory())?;
            let len = wire_at + wire_len;
            let exact = arc_str_size(len) - len;
            self.stanza_alloc = self.stanza_alloc.saturating_sub(arc_str_size(0) + 7) + exact;
            let bytes = self
                .buf
                .get(wire_range)
                .ok_or_else(|| err(C::InternalServerError, "element bytes not kept"))?;
            let buf = if self.text.is_empty() {
                // Nothing decoded (no reference, CDATA, CR, nor tab or newline in a value):
                // the bytes are copied once, from the read buffer.
                Arc::from(bytes)
            } else {
                // Exactly: the buffer is reused, and doubling it for a large element's bytes
                // would keep (or allocate) twice what they need.
                self.text.reserve_exact(bytes.len());
                self.text.push_str(bytes);
                self.text.shared()
            };
            seal_tree(&mut element, &buf, at);
            self.text.clear();
            self.run = Run::Wire(0);
            let WireDeps { default, outside } = self.deps;
            element.set_wire(Wire {
                buf,
                at,
                inherited: if default {
                    self.stream_default
                } else {
                    Inherited::NOTHING
                },
                outside,
                #[cfg(debug_assertions)]
                digest: crate::element::digest(&element),
            });
            self.stanza_bytes = 0;
            return Ok(Step::Event(Event::Element { element, wire_len }));
        }
        self.push_node(Node::Element(element))?;
        self.check_alloc()?;
        Ok(Step::Again)
    }

    fn step_content(&mut self) -> Result<Step, StreamError> {
        let a = self.avail().as_bytes();
        if a.is_empty() {
            return Ok(Step::NeedMore);
        }
        if a[0] != b'<' {
            return self.text();
        }
        if a.len() < 2 {
            return Ok(Step::NeedMore);
        }
        match a[1] {
            b'/' => {
                let budget = self.stanza_budget();
                // Read in one pass when complete and well-formed, else scanned first (as a
                // start tag).
                let lexed = if self.scan == 0 {
                    lex_end_tag(cut(self.avail(), budget))
                } else {
                    None
                };
                let len = match lexed {
                    Some((len, _)) => len,
                    None => {
                        let Some(len) = self.scan_tag(budget, Self::too_big)? else {
                            return Ok(Step::NeedMore);
                        };
                        len
                    }
                };
                {
                    let name = match lexed {
                        Some((_, end)) => self
                            .avail()
                            .get(2..end)
                            .ok_or_else(|| nwf("malformed end tag"))?,
                        None => parse_end_tag(self.tag(len)?)?,
                    };
                    let Some(open) = self.stack.last() else {
                        return Err(err(C::InternalServerError, "parser stack empty"));
                    };
                    if !open.is_closed_by(name) {
                        return Err(nwf(if name == self.stream_qname {
                            "stream closed inside an unclosed element".to_owned()
                        } else {
                            format!("end tag </{name}> does not match <{}>", open.qname())
                        }));
                    }
                }
                let run = self.run_text(self.text.len());
                self.consume_stanza(len)?;
                self.commit_text(run?)?;
                let Some(open) = self.stack.pop() else {
                    return Err(err(C::InternalServerError, "parser stack empty"));
                };
                // The open element's prefix and declarations are released; the URIs stay
                // accounted (the element or its attributes may share them).
                let own = &self.decls[open.decls_from.min(self.decls.len())..];
                self.stanza_alloc -= open.prefix_alloc() + decls_alloc(own);
                self.decls.truncate(open.decls_from);
                self.finish(open.element)
            }
            b'!' => {
                const CDATA: &[u8] = b"<![CDATA[";
                if a.len() < 3 {
                    return Ok(Step::NeedMore);
                }
                if a[2] != b'[' {
                    return Err(bang_error(a));
                }
                let n = a.len().min(CDATA.len());
                if a[..n] != CDATA[..n] {
                    return Err(nwf("invalid markup declaration"));
                }
                if n < CDATA.len() {
                    return Ok(Step::NeedMore);
                }
                // CDATA is merged into the text run, which no longer reads as received.
                self.run_to_side()?;
                self.consume_stanza(CDATA.len())?;
                self.in_cdata = true;
                Ok(Step::Again)
            }
            b'?' => Err(err(
                C::RestrictedXml,
                "processing instructions are not allowed",
            )),
            _ => self.start_tag(),
        }
    }

    fn text(&mut self) -> Result<Step, StreamError> {
        let budget = self.stanza_budget();
        let a = self.buf.get(self.pos..).unwrap_or_default();
        // Never look past the stanza budget: a byte beyond it makes the stanza too big,
        // whatever it is, however the input was split (an invalid byte there must not be
        // reported in one chunking and the size in another).
        let truncated = a.len() > budget;
        let window = cut(a, budget);
        let mut plain = 0;
        if let Run::Wire(start) = self.run {
            // As received so far: checked, not copied, until something needs decoding.
            let (used, stop) = check_plain_text(window)?;
            if stop != Plain::Decode {
                self.consume_stanza(used)?;
                return match stop {
                    Plain::End if truncated => Err(Self::too_big()),
                    Plain::End if used == 0 => Ok(Step::NeedMore),
                    _ => Ok(Step::Again),
                };
            }
            // Decoded from here on: what the run holds so far is copied into the side buffer.
            let run = self
                .buf
                .get(self.elem_start + start..self.pos + used)
                .ok_or_else(|| err(C::InternalServerError, "element bytes not kept"))?;
            self.run = Run::Side(self.text.len());
            self.text.push_str(run);
            self.stanza_alloc += run.len();
            plain = used;
        }
        let window = slice(window, plain..window.len())?;
        let before = self.text.len();
        let res = decode_text(window, &mut self.text);
        self.stanza_alloc += self.text.len() - before;
        let (used, at_lt) = res?;
        let used = plain + used;
        self.consume_stanza(used)?;
        if at_lt {
            return Ok(Step::Again);
        }
        if truncated {
            return Err(Self::too_big());
        }
        Ok(if used == 0 {
            Step::NeedMore
        } else {
            Step::Again
        })
    }

    fn step_cdata(&mut self) -> Result<Step, StreamError> {
        let budget = self.stanza_budget();
        let a = self.buf.get(self.pos..).unwrap_or_default();
        if a.is_empty() {
            return Ok(Step::NeedMore);
        }
        // Never look past the stanza budget: a byte beyond it makes the stanza too big,
        // whatever it is, however the input was split (an invalid byte there must not be
        // reported in one chunking and the size in another).
        let truncated = a.len() > budget;
        let window = cut(a, budget);
        let end = window.find("]]>");
        let s = &mut self.text;
        let before = s.len();
        let (used, done) = match end {
            Some(k) => {
                let used = decode_chars(slice(window, 0..k)?, s, true)?;
                debug_assert_eq!(used, k);
                (k + 3, true)
            }
            None => {
                let keep = window
                    .bytes()
                    .rev()
                    .take(2)
                    .take_while(|b| *b == b']')
                    .count();
                (
                    decode_chars(slice(window, 0..window.len() - keep)?, s, false)?,
                    false,
                )
            }
        };
        self.stanza_alloc += s.len() - before;
        self.consume_stanza(used)?;
        if done {
            self.in_cdata = false;
            return Ok(Step::Again);
        }
        if truncated {
            return Err(Self::too_big());
        }
        Ok(if used == 0 {
            Step::NeedMore
        } else {
            Step::Again
        })
    }
}

// ---- namespaces -------------------------------------------------------------------------

/// Resolve a parsed start tag (`qname` and `raw_attrs`, ranges of `tag` or of `text`): its namespace
/// declarations are pushed on `decls` (the declarations in scope, innermost last), prefixes
/// are looked up there, then in `stream_decls` (the stream header's, once the stream is open),
/// and the element is built with its attributes. Each attribute value is a range of the
/// element's wire bytes or, decoded, of the stanza's side buffer (see [`Values`]); element and
/// attribute names are [`Name`]s (the common ones allocate nothing).
fn resolve(
    decls: &mut Vec<Decl>,
    stream_decls: &[Decl],
    tag: &str,
    qname: &str,
    raw_attrs: &[RawAttr],
    values: &mut Values<'_>,
    deps: &mut WireDeps,
) -> Result<Element, StreamError> {
    let mut plain = 0;
    for a in raw_attrs {
        let (k, v) = (a.name(tag), a.value(tag, values.text));
        if k == "xmlns" {
            if v == ns::XML || v == ns::XMLNS {
                return Err(nwf("reserved namespace bound as default namespace"));
            }
            decls.push((String::new(), Namespace::from(v)));
        } else if let Some(p) = k.strip_prefix("xmlns:") {
            if !is_ncname(p) || p == "xmlns" {
                return Err(nwf("invalid namespace prefix declaration"));
            }
            if p == "xml" {
                if v != ns::XML {
                    return Err(nwf("the xml prefix cannot be rebound"));
                }
                continue;
            }
            if v.is_empty() {
                return Err(nwf("a namespace prefix cannot be bound to an empty name"));
            }
            if v == ns::XML || v == ns::XMLNS {
                return Err(nwf("reserved namespace bound to another prefix"));
            }
            decls.push((p.to_owned(), Namespace::from(v)));
        } else {
            plain += 1;
        }
    }
    let decls: &[Decl] = decls;
    // A prefix declared in the element (or its first-level ancestor), else on the stream
    // header (noted in `deps`: the element's bytes depend on it).
    let mut lookup = |prefix: &str| -> Option<&Namespace> {
        if let Some((_, u)) = decls.iter().rev().find(|(p, _)| p == prefix) {
            return Some(u);
        }
        if let Some((_, u)) = stream_decls.iter().rev().find(|(p, _)| p == prefix) {
            match prefix {
                "" => deps.default = true,
                "stream" if *u == ns::STREAMS => deps.outside |= Outside::STREAM,
                "db" if *u == ns::DIALBACK => deps.outside |= Outside::DIALBACK,
                _ => deps.outside |= Outside::OTHER,
            }
            return Some(u);
        }
        if prefix.is_empty() {
            // No default namespace anywhere: the element depends on there being none.
            deps.default = true;
        }
        (prefix == "xml").then_some(&Namespace::XML)
    };
    let Some((prefix, local)) = split_qname(qname) else {
        return Err(nwf("invalid element name"));
    };
    let namespace = match prefix {
        None => lookup("").cloned().unwrap_or_default(),
        Some("xml") | Some("xmlns") => return Err(nwf("reserved prefix on an element")),
        Some(p) => match lookup(p) {
            Some(u) => u.clone(),
            None => {
                return Err(err(
                    C::BadNamespacePrefix,
                    format!("undeclared namespace prefix '{p}'"),
                ));
            }
        },
    };
    let mut el = Element::new(local, namespace);
    let mut attrs = Vec::with_capacity(plain);
    for a in raw_attrs {
        let k = a.name(tag);
        if k == "xmlns" || k.starts_with("xmlns:") {
            continue;
        }
        let Some((prefix, local)) = split_qname(k) else {
            return Err(nwf("invalid attribute name"));
        };
        let (namespace, name) = match prefix {
            None | Some("xml") => (Namespace::EMPTY, Name::from(k)),
            Some(p) => match lookup(p) {
                Some(u) if *u == ns::XML => (Namespace::EMPTY, Name::from(format!("xml:{local}"))),
                Some(u) => (u.clone(), Name::from(local)),
                None => {
                    return Err(err(
                        C::BadNamespacePrefix,
                        format!("undeclared namespace prefix '{p}'"),
                    ));
                }
            },
        };
        attrs.push(Attr {
            namespace,
            name,
            value: a.value_in(tag, values)?,
        });
    }
    el.attrs = Attrs::from_vec(attrs).map_err(|_| nwf("duplicate attribute"))?;
    Ok(el)
}

/// What one element node allocates, its children excepted: its name, its attribute list and
/// the attributes' names (namespaces are shared with their declaration; values are ranges of
/// the wire bytes, accounted as consumed, or of the side buffer, accounted as it grows).
fn node_alloc(el: &Element) -> usize {
    let attrs: usize = el
        .attrs
        .iter()
        .map(|a| a.name.heap_size() + a.value.heap_size())
        .sum();
    el.name.heap_size() + el.attrs.capacity() * std::mem::size_of::<Attr>() + attrs
}

/// What an element's namespace declarations take, held while the element is open: their
/// slots in the parser's declaration list and their prefixes.
fn decls_alloc(decls: &[Decl]) -> usize {
    let prefixes: usize = decls.iter().map(|(p, _)| p.capacity()).sum();
    std::mem::size_of_val(decls) + prefixes
}

/// What the declared URIs allocate: each one allocation, which every element and attribute in
/// its scope shares (0 for the static common namespaces).
fn uris_alloc(decls: &[Decl]) -> usize {
    decls.iter().map(|(_, u)| u.heap_size()).sum()
}

fn bang_error(a: &[u8]) -> StreamError {
    if a.get(2) == Some(&b'-') {
        err(C::RestrictedXml, "comments are not allowed")
    } else {
        err(
            C::RestrictedXml,
            "DTDs and markup declarations are not allowed",
        )
    }
}

fn check_xml_decl(body: &str) -> Result<(), StreamError> {
    let bad = || nwf("malformed XML declaration");
    let mut rest = body;
    let mut seen = Vec::new();
    loop {
        let trimmed = rest.trim_start_matches([' ', '\t', '\r', '\n']);
        if trimmed.is_empty() {
            break;
        }
        if trimmed.len() == rest.len() {
            return Err(bad());
        }
        let (name, after) = trimmed.split_once('=').ok_or_else(bad)?;
        let name = name.trim_end_matches([' ', '\t', '\r', '\n']);
        let after = after.trim_start_matches([' ', '\t', '\r', '\n']);
        let q = after.chars().next().ok_or_else(bad)?;
        if q != '"' && q != '\'' {
            return Err(bad());
        }
        let (value, tail) = after[1..].split_once(q).ok_or_else(bad)?;
        match (name, seen.as_slice()) {
            ("version", []) => {
                let ok = value
                    .strip_prefix("1.")
                    .is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()));
                if !ok {
                    return Err(bad());
                }
            }
            ("encoding", ["version"]) => {
                if !value.eq_ignore_ascii_case("utf-8") {
                    return Err(err(C::UnsupportedEncoding, "only UTF-8 is supported"));
                }
            }
            ("standalone", ["version"] | ["version", "encoding"]) => {
                if value != "yes" && value != "no" {
                    return Err(bad());
                }
            }
            _ => return Err(bad()),
        }
        seen.push(name);
        rest = tail;
    }
    if seen.first() != Some(&"version") {
        return Err(bad());
    }
    Ok(())
}

fn skip_ws(s: &str, i: &mut usize) -> bool {
    let start = *i;
    while *i < s.len() && is_ws(s.as_bytes()[*i]) {
        *i += 1;
    }
    *i > start
}

// Inlined into its callers: names are short (2-8 bytes), the call cost more than the scan.
#[inline(always)]
fn take_name<'a>(s: &'a str, i: &mut usize) -> &'a str {
    let start = *i;
    let rest = &s[start..];
    // ASCII names (nearly all) byte by byte from a table; from the first non-ASCII byte on
    // (a character boundary), character by character.
    let ascii = rest
        .bytes()
        .position(|b| b >= 0x80 || !ASCII_NAME_CHAR[b as usize])
        .unwrap_or(rest.len());
    let n = if rest.as_bytes().get(ascii).is_some_and(|b| *b >= 0x80) {
        ascii
            + rest[ascii..]
                .char_indices()
                .find(|(_, c)| !is_name_char_or_colon(*c))
                .map(|(k, _)| k)
                .unwrap_or(rest.len() - ascii)
    } else {
        ascii
    };
    *i += n;
    &s[start..start + n]
}

/// Parse a complete start tag `<name attr='v' ...>` or `<name .../>` (`t` includes `<`, `>`):
/// returns the qualified name and whether the tag is empty; the attributes are appended to
/// `attrs` as ranges of `t` (a value is decoded, appended to `text`, only when it holds a
/// reference, a tab, CR or LF).
fn parse_start_tag<'t>(
    t: &'t str,
    max_attrs: usize,
    attrs: &mut Vec<RawAttr>,
    text: &mut TextBuf,
) -> Result<(&'t str, bool), StreamError> {
    let inner = &t[1..t.len() - 1];
    let (inner, empty) = match inner.strip_suffix('/') {
        Some(i) => (i, true),
        None => (inner, false),
    };
    // Offsets below are in `inner`, which starts at byte 1 of `t`.
    let mut i = 0;
    let qname = take_name(inner, &mut i);
    if qname.is_empty() {
        return Err(nwf("invalid element name"));
    }
    loop {
        let had_ws = skip_ws(inner, &mut i);
        if i == inner.len() {
            break;
        }
        if !had_ws {
            return Err(nwf("malformed tag"));
        }
        let name_start = i;
        let name = take_name(inner, &mut i);
        if name.is_empty() {
            return Err(nwf("malformed attribute"));
        }
        let name_range = 1 + name_start..1 + i;
        skip_ws(inner, &mut i);
        if inner.as_bytes().get(i) != Some(&b'=') {
            return Err(nwf("attribute without value"));
        }
        i += 1;
        skip_ws(inner, &mut i);
        let q = match inner.as_bytes().get(i) {
            Some(&q @ (b'"' | b'\'')) => q,
            _ => return Err(nwf("unquoted attribute value")),
        };
        i += 1;
        let Some(len) = inner.as_bytes()[i..].iter().position(|b| *b == q) else {
            return Err(nwf("unterminated attribute value"));
        };
        let raw = &inner[i..i + len];
        let raw_range = 1 + i..1 + i + len;
        i += len + 1;
        if attrs.len() >= max_attrs {
            return Err(err(C::PolicyViolation, "too many attributes"));
        }
        if attrs.iter().any(|a| a.is_named(t, name)) {
            return Err(nwf("duplicate attribute"));
        }
        push_attr(attrs, text, raw, name_range, raw_range)?;
    }
    Ok((qname, empty))
}

/// [`parse_start_tag`] in one pass over a tag not known to be complete: `w` starts with the
/// tag's `<` and may go on past its `>`. Returns the tag's length, its name (a range of `w`)
/// and whether it is empty, with the attributes appended to `attrs` exactly as
/// [`parse_start_tag`] appends them for the tag. `None` (having appended what it may have:
/// the caller drops it) when the tag does not end in `w` or is not well-formed, or when an
/// attribute would be refused: the caller then scans for the tag's end and reads it with
/// [`parse_start_tag`], which reports the error. On success, the end found is the one
/// [`StreamParser::scan_tag`] finds: the first `>` outside quotes, quotes opening only after
/// `=`.
fn lex_start_tag(
    w: &str,
    max_attrs: usize,
    attrs: &mut Vec<RawAttr>,
    text: &mut TextBuf,
) -> Option<(usize, Range<usize>, bool)> {
    let b = w.as_bytes();
    let mut i = 1;
    let qname = take_name(w, &mut i);
    if qname.is_empty() {
        return None;
    }
    let qname = 1..i;
    loop {
        let had_ws = skip_ws(w, &mut i);
        match b.get(i)? {
            b'>' => return Some((i + 1, qname, false)),
            b'/' => return (b.get(i + 1) == Some(&b'>')).then_some((i + 2, qname, true)),
            _ if !had_ws => return None,
            _ => {}
        }
        let name_start = i;
        let name = take_name(w, &mut i);
        if name.is_empty() {
            return None;
        }
        let name_range = name_start..i;
        skip_ws(w, &mut i);
        if b.get(i) != Some(&b'=') {
            return None;
        }
        i += 1;
        skip_ws(w, &mut i);
        let q = match b.get(i)? {
            &q @ (b'"' | b'\'') => q,
            _ => return None,
        };
        i += 1;
        let len = b.get(i..)?.iter().position(|c| *c == q)?;
        let raw_range = i..i + len;
        let raw = w.get(raw_range.clone())?;
        i += len + 1;
        if attrs.len() >= max_attrs || attrs.iter().any(|a| a.is_named(w, name)) {
            return None;
        }
        push_attr(attrs, text, raw, name_range, raw_range).ok()?;
    }
}

/// Bytes after which an attribute value is not its raw text: `&` (a reference), tab, CR, LF
/// (normalised to spaces), and the bytes [`decode_attr`] refuses or must check (`<`, control
/// characters, 0xEF: the lead byte of U+FFFE / U+FFFF). A value without any of them is valid
/// as it is and needs no decoding.
static ATTR_NEEDS_DECODING: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'&' as usize] = true;
    t[b'<' as usize] = true;
    t[0xEF] = true;
    t
};

/// [`parse_end_tag`] in one pass over a tag not known to be complete: `w` starts with `</`
/// and may go on past the tag. Returns the tag's length and where its name ends, when it ends
/// in `w` and is well-formed; else `None` (the caller scans for its end and reads it with
/// [`parse_end_tag`], which reports the error).
fn lex_end_tag(w: &str) -> Option<(usize, usize)> {
    let mut i = 2;
    let name = take_name(w, &mut i);
    if name.is_empty() || split_qname(name).is_none() {
        return None;
    }
    let end = i;
    skip_ws(w, &mut i);
    (w.as_bytes().get(i) == Some(&b'>')).then_some((i + 1, end))
}

/// Parse a complete end tag `</name>` and return the name.
fn parse_end_tag(s: &str) -> Result<&str, StreamError> {
    let inner = &s[2..s.len() - 1];
    let mut i = 0;
    let name = take_name(inner, &mut i);
    skip_ws(inner, &mut i);
    if name.is_empty() || i != inner.len() || split_qname(name).is_none() {
        return Err(nwf("malformed end tag"));
    }
    Ok(name)
}

/// Add one attribute of a start tag read by either path: its value decoded into `text` only when
/// it needs decoding (a reference, a tab, CR or LF).
#[inline(always)]
fn push_attr(
    attrs: &mut Vec<RawAttr>,
    text: &mut TextBuf,
    raw: &str,
    name: Range<usize>,
    raw_range: Range<usize>,
) -> Result<(), StreamError> {
    let decoded = if raw.bytes().any(|b| ATTR_NEEDS_DECODING[b as usize]) {
        let start = text.len();
        decode_attr(raw, text)?;
        Some(start..text.len())
    } else {
        None
    };
    attrs.push(RawAttr {
        name,
        raw: raw_range,
        decoded,
    });
    Ok(())
}

/// Decode an attribute value, appended to `out`: references resolved, whitespace normalised
/// (XML 1.0 §3.3.3).
fn decode_attr(raw: &str, out: &mut TextBuf) -> Result<(), StreamError> {
    let b = raw.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'<' => return Err(nwf("'<' in attribute value")),
            b'&' => match parse_ref(&b[i..])? {
                Some((c, n)) => {
                    out.push(c);
                    i += n;
                }
                None => return Err(nwf("unterminated reference in attribute value")),
            },
            b'\r' => {
                out.push(' ');
                i += if b.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
            }
            b'\t' | b'\n' => {
                out.push(' ');
                i += 1;
            }
            c if c < 0x20 => return Err(nwf("control character in attribute value")),
            _ => {
                let start = i;
                while i < b.len() && !matches!(b[i], b'<' | b'&' | b'\r' | b'\t' | b'\n' | 0..0x20)
                {
                    i += 1;
                }
                let chunk = &raw[start..i];
                if chunk.contains(['\u{FFFE}', '\u{FFFF}']) {
                    return Err(nwf("character not allowed in XML"));
                }
                out.push_str(chunk);
            }
        }
    }
    Ok(())
}

/// One of the five predefined entity references at the start of `a` (which starts with `&`):
/// the character and the reference's length. Inlined: `#[inline]` alone left it a call per
/// reference in the text decoder.
#[inline(always)]
fn predefined_ref(a: &[u8]) -> Option<(char, usize)> {
    match a.get(1..4)? {
        b"amp" if a.get(4) == Some(&b';') => Some(('&', 5)),
        b"lt;" => Some(('<', 4)),
        b"gt;" => Some(('>', 4)),
        b"quo" if a.get(4..6) == Some(b"t;") => Some(('"', 6)),
        b"apo" if a.get(4..6) == Some(b"s;") => Some(('\'', 6)),
        _ => None,
    }
}

/// Parse a reference at the start of `a` (which starts with `&`). `Ok(None)`: incomplete.
fn parse_ref(a: &[u8]) -> Result<Option<(char, usize)>, StreamError> {
    // The predefined entities (nearly every reference) first.
    if let Some(r) = predefined_ref(a) {
        return Ok(Some(r));
    }
    let window = &a[..a.len().min(MAX_REF)];
    let semi = window.iter().position(|b| *b == b';');
    // Decide on the bytes seen so far only, so the outcome never depends on chunking.
    let plausible = window[1..semi.unwrap_or(window.len())].iter().all(|b| {
        b.is_ascii_alphanumeric() || matches!(b, b'#' | b'_' | b'-' | b'.' | b':') || *b >= 0x80
    });
    if !plausible {
        return Err(nwf("'&' must start an entity or character reference"));
    }
    let Some(semi) = semi else {
        if a.len() >= MAX_REF {
            return Err(if a.get(1) == Some(&b'#') {
                nwf("character reference too long")
            } else {
                err(
                    C::RestrictedXml,
                    "entity reference too long (only the predefined entities are allowed)",
                )
            });
        }
        return Ok(None);
    };
    let body = std::str::from_utf8(&a[1..semi]).map_err(|_| nwf("invalid UTF-8 in reference"))?;
    let c = if let Some(num) = body.strip_prefix('#') {
        let (digits, radix) = match num.strip_prefix('x') {
            Some(h) => (h, 16),
            None => (num, 10),
        };
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return Err(nwf("malformed character reference"));
        }
        let v = u32::from_str_radix(digits, radix)
            .map_err(|_| nwf("character reference out of range"))?;
        match char::from_u32(v) {
            Some(c) if is_xml_char(c) => c,
            _ => return Err(nwf("character reference to a character not allowed in XML")),
        }
    } else {
        match body {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "apos" => '\'',
            "quot" => '"',
            name if split_qname(name).is_some() || is_ncname(name) => {
                return Err(err(
                    C::RestrictedXml,
                    "entity references other than the five predefined entities are not allowed",
                ));
            }
            _ => return Err(nwf("malformed entity reference")),
        }
    };
    Ok(Some((c, semi + 1)))
}

/// `s` cut to at most `n` bytes, at a character boundary.
fn cut(s: &str, n: usize) -> &str {
    let mut n = n.min(s.len());
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    s.get(..n).unwrap_or_default()
}

/// A range of `s` the decoder found (always at character boundaries).
fn slice(s: &str, r: Range<usize>) -> Result<&str, StreamError> {
    s.get(r).ok_or_else(|| {
        err(
            C::InternalServerError,
            "text decoder off a character boundary",
        )
    })
}

/// The longest prefix of `b` that is valid UTF-8 (all of `b` when it is valid), validated by
/// the SIMD validator: `basic` in one pass (64 bytes a step, AVX2 or SSE4.2 as the CPU has,
/// whatever the mix of ASCII and multi-byte characters; std's validator restarts its ASCII
/// fast path after every non-ASCII character), then, only for invalid bytes, `compat`, which
/// says where they start.
fn utf8_prefix(b: &[u8]) -> &str {
    if let Ok(s) = simdutf8::basic::from_utf8(b) {
        return s;
    }
    let n = simdutf8::compat::from_utf8(b)
        .err()
        .map_or(0, |e| e.valid_up_to());
    let (valid, _) = b.split_at(n.min(b.len()));
    simdutf8::basic::from_utf8(valid).unwrap_or_default()
}

/// How many bytes at the end of `b` are the start of a UTF-8 sequence the bytes end before it
/// is complete (0 to 3).
fn incomplete_suffix(b: &[u8]) -> usize {
    for k in 1..=b.len().min(3) {
        let c = b[b.len() - k];
        if (0x80..0xC0).contains(&c) {
            continue;
        }
        return if c >= 0xC0 && utf8_width(c) > k { k } else { 0 };
    }
    0
}

/// The length of the UTF-8 sequence a lead byte starts (1 for anything else).
fn utf8_width(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

/// Bytes that end a run of character data copied as it is: `<`, `&`, `]`, the control
/// characters (CR is normalised, tab and LF are not: they stay in the run) and 0xEF, the lead
/// byte of U+FFFE and U+FFFF, which are not XML characters. Every other character of valid
/// UTF-8 is an XML character.
static TEXT_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = c != b'\t' as usize && c != b'\n' as usize;
        c += 1;
    }
    t[b'<' as usize] = true;
    t[b'&' as usize] = true;
    t[b']' as usize] = true;
    t[0xEF] = true;
    t
};

/// A superset of [`TEXT_STOP`] without a table lookup (tab and LF count), for
/// [`crate::scan::find`].
#[inline(always)]
fn text_may_stop(c: u8) -> bool {
    (c < 0x20) | (c == b'<') | (c == b'&') | (c == b']') | (c == 0xEF)
}

/// The same for CDATA content: only control characters and 0xEF.
static CDATA_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = c != b'\t' as usize && c != b'\n' as usize;
        c += 1;
    }
    t[0xEF] = true;
    t
};

/// The character at `i` of `s`, whose first byte is 0xEF: refused if it is U+FFFE or U+FFFF,
/// else appended to `out`. Returns its length.
fn ef_char(s: &str, i: usize, out: &mut TextBuf) -> Result<usize, StreamError> {
    let b = s.as_bytes();
    if b.get(i + 1) == Some(&0xBF) && matches!(b.get(i + 2), Some(0xBE | 0xBF)) {
        return Err(nwf("character not allowed in XML"));
    }
    out.push_str(slice(s, i..(i + 3).min(s.len()))?);
    Ok(3)
}

/// Where [`check_plain_text`] stopped.
#[derive(Debug, PartialEq, Eq)]
enum Plain {
    /// At a `<`.
    Lt,
    /// At a byte after which the text does not read as received (a reference, CR) or that
    /// [`decode_text`] must report (a control character).
    Decode,
    /// At the end of the input, or at what [`decode_text`] holds back there (`]`, `]]`).
    End,
}

/// Check character data that reads as received, up to the first byte that needs decoding or
/// ends it: the bytes checked and where it stopped. Accepts and refuses what [`decode_text`]
/// does, without copying: `]]>` and U+FFFE / U+FFFF are refused here, everything else that is
/// not plain text is left to [`decode_text`].
fn check_plain_text(input: &str) -> Result<(usize, Plain), StreamError> {
    let b = input.as_bytes();
    let n = b.len();
    let mut i = 0;
    loop {
        i = crate::scan::find(b, i, text_may_stop, &TEXT_STOP);
        if i == n {
            return Ok((i, Plain::End));
        }
        match b[i] {
            b'<' => return Ok((i, Plain::Lt)),
            b']' => {
                if i + 2 < n {
                    if b[i + 1] == b']' && b[i + 2] == b'>' {
                        return Err(nwf("']]>' in character data"));
                    }
                } else if i + 1 == n || b[i + 1] == b']' {
                    return Ok((i, Plain::End));
                }
                i += 1;
            }
            0xEF => {
                if b.get(i + 1) == Some(&0xBF) && matches!(b.get(i + 2), Some(0xBE | 0xBF)) {
                    return Err(nwf("character not allowed in XML"));
                }
                i = (i + 3).min(n);
            }
            _ => return Ok((i, Plain::Decode)),
        }
    }
}

/// Decode character data up to (not including) the next `<`. Returns the bytes consumed and
/// whether a `<` stopped the decoding. Holds back an incomplete reference, a trailing CR or
/// `]`/`]]` at the end of `input`. Runs of ordinary characters are copied as they are, found
/// in one pass over their bytes.
fn decode_text(input: &str, out: &mut TextBuf) -> Result<(usize, bool), StreamError> {
    let b = input.as_bytes();
    let n = b.len();
    let mut i = 0;
    while i < n {
        let start = i;
        i = crate::scan::find(b, i, text_may_stop, &TEXT_STOP);
        if i > start {
            out.push_str(slice(input, start..i)?);
        }
        if i == n {
            break;
        }
        match b[i] {
            b'<' => return Ok((i, true)),
            b'&' => match predefined_ref(&b[i..]) {
                Some((c, len)) => {
                    out.push(c);
                    i += len;
                }
                None => match parse_ref(&b[i..])? {
                    Some((c, len)) => {
                        out.push(c);
                        i += len;
                    }
                    None => break,
                },
            },
            b']' => {
                if i + 2 < n {
                    if b[i + 1] == b']' && b[i + 2] == b'>' {
                        return Err(nwf("']]>' in character data"));
                    }
                } else if i + 1 == n || b[i + 1] == b']' {
                    break;
                }
                out.push(']');
                i += 1;
            }
            b'\r' => {
                if i + 1 == n {
                    break;
                }
                out.push('\n');
                i += if b[i + 1] == b'\n' { 2 } else { 1 };
            }
            0xEF => i += ef_char(input, i, out)?,
            _ => return Err(nwf("control character in character data")),
        }
    }
    Ok((i, false))
}

/// Decode raw character data (CDATA content): XML `Char` checks, CR/CRLF → LF. When not
/// `complete`, a trailing CR is held back.
fn decode_chars(input: &str, out: &mut TextBuf, complete: bool) -> Result<usize, StreamError> {
    let b = input.as_bytes();
    let n = b.len();
    let mut i = 0;
    while i < n {
        let start = i;
        while i < n && !CDATA_STOP[b[i] as usize] {
            i += 1;
        }
        if i > start {
            out.push_str(slice(input, start..i)?);
        }
        if i == n {
            break;
        }
        match b[i] {
            b'\r' => {
                if i + 1 == n && !complete {
                    break;
                }
                out.push('\n');
                i += if b.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
            }
            0xEF => i += ef_char(input, i, out)?,
            _ => return Err(nwf("control character in character data")),
        }
    }
    Ok(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_start_tags_read_as_the_long_way() {
        for t in [
            "<a>",
            "<a/>",
            "<a b='1'/>",
            "<a b='1' />",
            "<m from='x&amp;y' to=\"z\"\tid='i\n'  >",
            "<a b='>'>",
            "<\u{e9} x:y='1'>",
        ] {
            let w = format!("{t}<b>tail");
            let (mut a1, mut t1) = (Vec::new(), TextBuf::default());
            let (len, q, empty) = lex_start_tag(&w, 10, &mut a1, &mut t1).expect(t);
            assert_eq!(len, t.len(), "{t}");
            let (mut a2, mut t2) = (Vec::new(), TextBuf::default());
            let (q2, e2) = parse_start_tag(t, 10, &mut a2, &mut t2).expect(t);
            assert_eq!((&t[q], empty), (q2, e2), "{t}");
            assert_eq!(t1.0, t2.0, "{t}");
            let key = |a: &RawAttr| (a.name.clone(), a.raw.clone(), a.decoded.clone());
            assert_eq!(
                a1.iter().map(key).collect::<Vec<_>>(),
                a2.iter().map(key).collect::<Vec<_>>(),
                "{t}"
            );
        }
        for bad in [
            "<a",
            "<a b='1'",
            "<a b>",
            "<a b='1'c='2'>",
            "<a/ >",
            "<a b='<'>",
            "<a b='1' b='2'>",
            "< a>",
        ] {
            let mut a = Vec::new();
            let mut t = TextBuf::default();
            assert!(lex_start_tag(bad, 10, &mut a, &mut t).is_none(), "{bad}");
        }
    }

    #[test]
    fn one_pass_end_tags_read_as_the_long_way() {
        for t in ["</a>", "</db:result >", "</\u{e9}\n>"] {
            let w = format!("{t}<b/>");
            let (len, end) = lex_end_tag(&w).expect(t);
            assert_eq!(len, t.len(), "{t}");
            assert_eq!(parse_end_tag(t).ok(), w.get(2..end), "{t}");
        }
        for bad in ["</a", "</a b>", "</>", "</a:b:c>", "</9a>", "</a/>"] {
            assert!(lex_end_tag(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_block_test_covers_every_byte_that_ends_a_text_run() {
        for c in 0..=255u8 {
            assert!(!TEXT_STOP[c as usize] || text_may_stop(c), "{c}");
        }
    }
}
