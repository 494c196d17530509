//! Serialization of [`Element`]s: where namespaces are declared, escaping, and
//! forbidden-character replacement.
//!
//! The output is bounded by a small factor of what the element took on the wire when it was
//! parsed: a serializer that re-declares a namespace for every element or attribute using it
//! turns a 100 KiB URI declared once into gigabytes. Two plans:
//!
//! * **Natural** (every ordinary stanza): elements take the default namespace of their parent;
//!   an element in another namespace declares it as its own default (`<x xmlns="urn:x">`),
//!   which its descendants inherit; `stream:` / `db:` elements keep those prefixes (declared
//!   when the context has not bound them) and declare their own namespace as default for
//!   children in it; a namespaced attribute's namespace gets a short generated prefix declared
//!   once on the element, reused by descendants while in scope.
//! * **Compact**: as soon as the natural plan would repeat declarations of the same namespace
//!   beyond a small allowance (siblings or cousins each switching to it, `stream:` elements
//!   nested in other namespaces), the output is discarded and the element written again with every namespace
//!   it uses declared once, with a 1–2 character prefix, on the element itself; the default
//!   namespace only changes to "no namespace" (which cannot have a prefix). This form is only
//!   reached by unusual (hostile or generated) trees.
//!
//! Text uses `&lt;` / `&amp;` / `&gt;` / `&#13;`; a text node whose escaped form would be more
//! than twice as long as itself is written as CDATA. Attribute values are quoted with
//! whichever of `"` / `'` they contain less of (that quote is escaped), and their `>` is not
//! escaped.
//! Characters not allowed in XML 1.0 become U+FFFD.
//!
//! A first-level element received from a peer and not changed since is not serialized: its
//! wire form (the bytes the parser validated, see [`crate::element`]) is copied as it came
//! when the destination context gives those bytes the same meaning (the default namespace
//! they inherit, the stream-header prefixes they use); otherwise, it is serialized as above.

use std::collections::{HashMap, HashSet};

use crate::element::{Element, Node, WriteContext};
use crate::ns;

/// Serialize `el` in `ctx`: the natural plan, or the compact one when the natural plan would
/// repeat a declaration.
pub(crate) fn write_element(el: &Element, out: &mut Vec<u8>, ctx: &WriteContext<'_>) {
    if let Some(w) = el.wire().filter(|w| w.fits(ctx)) {
        #[cfg(debug_assertions)]
        assert_eq!(
            w.digest,
            crate::element::digest(el),
            "a parsed element was changed through its public fields (which keeps its received \
             bytes): change it through the `&mut self` methods of Element; element {el:?}"
        );
        out.extend_from_slice(w.bytes().as_bytes());
        return;
    }
    let start = out.len();
    let mut natural = Natural::new(ctx);
    let state = Scope {
        default: ctx.default_ns,
        stream_bound: ctx.stream_prefix,
        db_bound: ctx.dialback_prefix,
    };
    if natural.element(el, out, state, None).is_ok() {
        return;
    }
    out.truncate(start);
    Compact::new(el, ctx).element(el, out, ctx.default_ns, true);
}

/// The fixed prefix of the stream and dialback namespaces.
fn special_prefix(uri: &str) -> Option<&'static str> {
    match uri {
        ns::STREAMS => Some("stream"),
        ns::DIALBACK => Some("db"),
        _ => None,
    }
}

/// A namespace prefix: generated (1–2 characters for the first 3 276 namespaces of one
/// element tree, never `db`, never starting with `xml`) or `stream` / `db`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Prefix {
    buf: [u8; 8],
    len: u8,
}

impl Prefix {
    fn fixed(p: &str) -> Prefix {
        let mut buf = [0u8; 8];
        let n = p.len().min(8);
        buf[..n].copy_from_slice(&p.as_bytes()[..n]);
        Prefix { buf, len: n as u8 }
    }

    fn as_str(&self) -> &str {
        // Only ASCII letters and digits are ever stored.
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("p")
    }
}

const FIRST: &[u8; 52] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const NEXT: &[u8; 62] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Generates prefixes in order: `a`..`Z`, then `aa`, `ab`, ...
#[derive(Default)]
struct PrefixGen {
    next: usize,
}

impl PrefixGen {
    fn next(&mut self) -> Prefix {
        loop {
            let p = Self::nth(self.next);
            self.next += 1;
            let s = p.as_str();
            if s != "db" && !s.get(..3).is_some_and(|h| h.eq_ignore_ascii_case("xml")) {
                return p;
            }
        }
    }

    /// The `i`-th name of the bijective numbering: first character from 52 letters, the
    /// following ones from 62 letters and digits.
    fn nth(mut i: usize) -> Prefix {
        let mut len = 1;
        let mut block = FIRST.len();
        while i >= block && len < 8 {
            i -= block;
            block = block.saturating_mul(NEXT.len());
            len += 1;
        }
        let mut buf = [b'a'; 8];
        for k in (1..len).rev() {
            buf[k] = NEXT[i % NEXT.len()];
            i /= NEXT.len();
        }
        buf[0] = FIRST[i % FIRST.len()];
        Prefix {
            buf,
            len: len as u8,
        }
    }
}

/// What is in scope for an element being written.
#[derive(Clone, Copy)]
struct Scope<'a> {
    default: &'a str,
    stream_bound: bool,
    db_bound: bool,
}

/// The natural plan gave up: some namespace would be declared twice.
struct Repeated;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// `xmlns="uri"`.
    Default,
    /// `xmlns:p="uri"`.
    Prefixed,
    /// A `stream:` / `db:` element inside an element of another namespace.
    Nested,
}

/// Bytes of repeated declarations the natural plan may write before giving up.
const REPEAT_ALLOWANCE: usize = 512;

/// A list held in a fixed array while it has at most `N` entries (no allocation: what an
/// ordinary stanza needs), in a `Vec` once it grows past that.
struct SmallList<T: Copy, const N: usize> {
    inline: [T; N],
    len: usize,
    spilled: Vec<T>,
}

impl<T: Copy + PartialEq, const N: usize> SmallList<T, N> {
    /// An empty list; `filler` only initialises the unused slots.
    fn new(filler: T) -> Self {
        SmallList {
            inline: [filler; N],
            len: 0,
            spilled: Vec::new(),
        }
    }

    fn as_slice(&self) -> &[T] {
        if self.spilled.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spilled
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn push(&mut self, item: T) {
        if !self.spilled.is_empty() {
            self.spilled.push(item);
        } else if self.len < N {
            self.inline[self.len] = item;
            self.len += 1;
        } else {
            self.spilled.reserve(2 * N);
            self.spilled.extend_from_slice(&self.inline[..self.len]);
            self.spilled.push(item);
        }
    }

    fn truncate(&mut self, len: usize) {
        if self.spilled.is_empty() {
            self.len = self.len.min(len);
        } else {
            self.spilled.truncate(len);
            if self.spilled.is_empty() {
                self.len = 0;
            }
        }
    }

    fn clear(&mut self) {
        self.spilled.clear();
        self.len = 0;
    }
}

/// The declarations made so far (few: a linear list, a set past 16).
struct Seen<'a> {
    list: SmallList<(&'a str, Kind), 16>,
    set: HashSet<(&'a str, Kind)>,
    /// Bytes of declarations written again.
    repeated: usize,
}

impl<'a> Seen<'a> {
    fn new() -> Self {
        Seen {
            list: SmallList::new(("", Kind::Default)),
            set: HashSet::new(),
            repeated: 0,
        }
    }

    /// Note a declaration; repeating ones is allowed up to [`REPEAT_ALLOWANCE`] bytes in all
    /// (two stanza-error children each declaring `urn:ietf:params:xml:ns:xmpp-stanzas`, as
    /// RFC 6120 writes them, stay natural).
    fn note(&mut self, uri: &'a str, kind: Kind) -> Result<(), Repeated> {
        let new = if self.set.is_empty() {
            let new = !self.list.as_slice().contains(&(uri, kind));
            if new {
                self.list.push((uri, kind));
                if self.list.len() > 16 {
                    self.set.extend(self.list.as_slice().iter().copied());
                    self.list.clear();
                }
            }
            new
        } else {
            self.set.insert((uri, kind))
        };
        if !new {
            self.repeated += uri.len() + 16;
            if self.repeated > REPEAT_ALLOWANCE {
                return Err(Repeated);
            }
        }
        Ok(())
    }
}

struct Natural<'a> {
    seen: Seen<'a>,
    /// Attribute prefixes declared by the ancestors (and `stream` / `db` when bound).
    scope: SmallList<(&'a str, Prefix), 8>,
    prefixes: PrefixGen,
}

impl<'a> Natural<'a> {
    fn new(ctx: &WriteContext<'_>) -> Self {
        let mut scope = SmallList::new(("", Prefix::fixed("")));
        if ctx.stream_prefix {
            scope.push((ns::STREAMS, Prefix::fixed("stream")));
        }
        if ctx.dialback_prefix {
            scope.push((ns::DIALBACK, Prefix::fixed("db")));
        }
        Natural {
            seen: Seen::new(),
            scope,
            prefixes: PrefixGen::default(),
        }
    }

    fn lookup(&self, uri: &str) -> Option<Prefix> {
        self.scope
            .as_slice()
            .iter()
            .rev()
            .find(|(u, _)| *u == uri)
            .map(|(_, p)| *p)
    }

    fn element(
        &mut self,
        el: &'a Element,
        out: &mut Vec<u8>,
        mut st: Scope<'a>,
        parent_ns: Option<&str>,
    ) -> Result<(), Repeated> {
        let uri: &'a str = &el.namespace;
        let scope_len = self.scope.len();
        let prefix = special_prefix(uri).filter(|_| uri != st.default);
        out.push(b'<');
        write_qname(out, prefix, &el.name);
        if let Some(p) = prefix {
            let bound = if p == "stream" {
                &mut st.stream_bound
            } else {
                &mut st.db_bound
            };
            if !*bound {
                write_xmlns(out, Some(p), uri);
                self.seen.note(uri, Kind::Prefixed)?;
                *bound = true;
                self.scope.push((uri, Prefix::fixed(p)));
            }
            if parent_ns.is_some_and(|p| p != uri) {
                self.seen.note(uri, Kind::Nested)?;
            }
            if el.children().any(|c| *c.namespace == *uri) {
                write_xmlns(out, None, uri);
                self.seen.note(uri, Kind::Default)?;
                st.default = uri;
            }
        } else if uri != st.default {
            write_xmlns(out, None, uri);
            self.seen.note(uri, Kind::Default)?;
            st.default = uri;
        }
        for a in &el.attrs {
            if a.namespace.is_empty() || self.lookup(&a.namespace).is_some() {
                continue;
            }
            let p = self.prefixes.next();
            write_xmlns(out, Some(p.as_str()), &a.namespace);
            self.seen.note(&a.namespace, Kind::Prefixed)?;
            self.scope.push((&a.namespace, p));
        }
        for a in &el.attrs {
            let p = if a.namespace.is_empty() {
                None
            } else {
                self.lookup(&a.namespace)
            };
            write_attr_q(out, p.as_ref().map(Prefix::as_str), &a.name, &a.value);
        }
        if el.children.is_empty() {
            out.extend_from_slice(b"/>");
        } else {
            out.push(b'>');
            for n in &el.children {
                match n {
                    Node::Text(t) => write_text(out, t),
                    Node::Element(c) => self.element(c, out, st, Some(uri))?,
                }
            }
            write_end(out, prefix, &el.name);
        }
        self.scope.truncate(scope_len);
        Ok(())
    }
}

/// Every namespace used in the tree, declared once on the element being written.
struct Compact<'a> {
    prefixes: HashMap<&'a str, Prefix>,
    /// In declaration order.
    decls: Vec<(&'a str, Prefix)>,
    /// The `stream` / `db` declaration the top element needs for itself.
    top_special: Option<(&'static str, &'a str)>,
}

#[derive(Default)]
struct Uses {
    elements: usize,
    attrs: usize,
    first: usize,
}

impl<'a> Compact<'a> {
    fn new(top: &'a Element, ctx: &WriteContext<'_>) -> Self {
        let mut uses: HashMap<&'a str, Uses> = HashMap::new();
        let mut any_unqualified = false;
        let mut order = 0usize;
        let mut stack = vec![(top, true)];
        while let Some((el, is_top)) = stack.pop() {
            let uri: &'a str = &el.namespace;
            if uri.is_empty() {
                any_unqualified = true;
            } else if !(is_top && special_prefix(uri).is_some()) {
                let u = uses.entry(uri).or_insert_with(|| Uses {
                    first: order,
                    ..Uses::default()
                });
                u.elements += 1;
                order += 1;
            }
            for a in &el.attrs {
                if !a.namespace.is_empty() {
                    let u = uses.entry(&a.namespace).or_insert_with(|| Uses {
                        first: order,
                        ..Uses::default()
                    });
                    u.attrs += 1;
                    order += 1;
                }
            }
            let first_child = stack.len();
            stack.extend(el.children().map(|c| (c, false)));
            stack[first_child..].reverse();
        }
        // The context's default namespace needs a prefix only where the default became "no
        // namespace" (elements in it elsewhere are unprefixed), or for attributes.
        let mut list: Vec<(&'a str, Uses)> = uses
            .into_iter()
            .filter(|(uri, u)| u.attrs > 0 || any_unqualified || *uri != ctx.default_ns)
            .collect();
        list.sort_by(|a, b| {
            (b.1.elements + b.1.attrs)
                .cmp(&(a.1.elements + a.1.attrs))
                .then(a.1.first.cmp(&b.1.first))
        });
        let mut prefix_gen = PrefixGen::default();
        let decls: Vec<(&'a str, Prefix)> = list
            .into_iter()
            .map(|(u, _)| (u, prefix_gen.next()))
            .collect();
        let top_special = special_prefix(&top.namespace).and_then(|p| {
            let bound = if p == "stream" {
                ctx.stream_prefix
            } else {
                ctx.dialback_prefix
            };
            (!bound).then_some((p, &*top.namespace))
        });
        Compact {
            prefixes: decls.iter().copied().collect(),
            decls,
            top_special,
        }
    }

    fn prefix_of(&self, uri: &str) -> Prefix {
        // Every namespace of the tree got one in `new`.
        self.prefixes
            .get(uri)
            .copied()
            .unwrap_or(Prefix::fixed("p"))
    }

    fn element(&self, el: &'a Element, out: &mut Vec<u8>, default: &'a str, top: bool) {
        let uri: &'a str = &el.namespace;
        let unqualified_child = el.children().any(|c| c.namespace.is_empty());
        let qualified = || -> Prefix {
            match special_prefix(uri) {
                Some(p) if top => Prefix::fixed(p),
                _ => self.prefix_of(uri),
            }
        };
        let (prefix, declare_empty, child_default) = if uri.is_empty() {
            (None, !default.is_empty(), "")
        } else if unqualified_child && !default.is_empty() {
            (Some(qualified()), true, "")
        } else if uri == default {
            (None, false, default)
        } else {
            (Some(qualified()), false, default)
        };
        let prefix_str = prefix.as_ref().map(Prefix::as_str);
        out.push(b'<');
        write_qname(out, prefix_str, &el.name);
        if top {
            if let Some((p, u)) = self.top_special {
                if prefix_str == Some(p) {
                    write_xmlns(out, Some(p), u);
                }
            }
            for (u, p) in &self.decls {
                write_xmlns(out, Some(p.as_str()), u);
            }
        }
        if declare_empty {
            write_xmlns(out, None, "");
        }
        for a in &el.attrs {
            let p = (!a.namespace.is_empty()).then(|| self.prefix_of(&a.namespace));
            write_attr_q(out, p.as_ref().map(Prefix::as_str), &a.name, &a.value);
        }
        if el.children.is_empty() {
            out.extend_from_slice(b"/>");
            return;
        }
        out.push(b'>');
        for n in &el.children {
            match n {
                Node::Text(t) => write_text(out, t),
                Node::Element(c) => self.element(c, out, child_default, false),
            }
        }
        write_end(out, prefix_str, &el.name);
    }
}

fn write_qname(out: &mut Vec<u8>, prefix: Option<&str>, name: &str) {
    if let Some(p) = prefix {
        out.extend_from_slice(p.as_bytes());
        out.push(b':');
    }
    out.extend_from_slice(name.as_bytes());
}

fn write_end(out: &mut Vec<u8>, prefix: Option<&str>, name: &str) {
    out.extend_from_slice(b"</");
    write_qname(out, prefix, name);
    out.push(b'>');
}

fn write_xmlns(out: &mut Vec<u8>, prefix: Option<&str>, uri: &str) {
    out.extend_from_slice(b" xmlns");
    if let Some(p) = prefix {
        out.push(b':');
        out.extend_from_slice(p.as_bytes());
    }
    write_value(out, uri);
}

/// ` name="value"` (or with single quotes, see [`write_value`]).
pub(crate) fn write_attr(out: &mut Vec<u8>, name: &str, value: &str) {
    write_attr_q(out, None, name, value);
}

fn write_attr_q(out: &mut Vec<u8>, prefix: Option<&str>, name: &str, value: &str) {
    out.push(b' ');
    write_qname(out, prefix, name);
    write_value(out, value);
}

/// `="value"`, or `='value'` when the value contains more `"` than `'`: only the quote used
/// is escaped, so a value costs at most about what it cost on the wire.
fn write_value(out: &mut Vec<u8>, value: &str) {
    let b = value.as_bytes();
    let single = b.contains(&b'"') && {
        let dq = b.iter().filter(|c| **c == b'"').count();
        let sq = b.iter().filter(|c| **c == b'\'').count();
        sq < dq
    };
    let (q, table) = if single {
        (b'\'', &ATTR_SQ)
    } else {
        (b'"', &ATTR_DQ)
    };
    out.push(b'=');
    out.push(q);
    escape_into(out, value, table);
    out.push(q);
}

/// Text content: escaped, or as CDATA when escaping would more than double it (text made
/// mostly of `<`, `&`, `>`, which a CDATA section on the wire carries at one byte each).
fn write_text(out: &mut Vec<u8>, t: &str) {
    let start = out.len();
    escape_into(out, t, &TEXT);
    let escaped = out.len() - start;
    if escaped > 2 * t.len() + 24 {
        let mut cdata = Vec::with_capacity(t.len() + 32);
        write_cdata(&mut cdata, t);
        if cdata.len() < escaped {
            out.truncate(start);
            out.extend_from_slice(&cdata);
        }
    }
}

/// `<![CDATA[...]]>`: `]]>` split across two sections, CR as a character reference between
/// sections (a raw CR would be read back as LF), forbidden characters as U+FFFD.
fn write_cdata(out: &mut Vec<u8>, t: &str) {
    out.extend_from_slice(b"<![CDATA[");
    let b = t.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let rep: Option<&[u8]> = match c {
            b'>' if i >= 2 && b[i - 1] == b']' && b[i - 2] == b']' => Some(b"]]><![CDATA[>"),
            b'\r' => Some(b"]]>&#13;<![CDATA["),
            b'\t' | b'\n' => None,
            0..=0x1f => Some("\u{FFFD}".as_bytes()),
            0xEF if i + 2 < b.len()
                && b[i + 1] == 0xBF
                && (b[i + 2] == 0xBE || b[i + 2] == 0xBF) =>
            {
                out.extend_from_slice(&b[start..i]);
                out.extend_from_slice("\u{FFFD}".as_bytes());
                i += 3;
                start = i;
                continue;
            }
            _ => None,
        };
        if let Some(r) = rep {
            out.extend_from_slice(&b[start..i]);
            out.extend_from_slice(r);
            start = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(&b[start..]);
    out.extend_from_slice(b"]]>");
}

/// Escape `s`, looking only at the bytes `special` marks. `&`, `<`, CR, tab and LF become
/// references (tab/LF only in attribute values, where they would be normalised to spaces),
/// the quote in use becomes `&quot;` / `&apos;`, `>` becomes `&gt;` in text (in attribute
/// values it needs no escaping, and is not: a value of `>` would grow fourfold).
/// Characters not allowed in XML 1.0 become U+FFFD.
fn escape_into(out: &mut Vec<u8>, s: &str, special: &Special) {
    let b = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    loop {
        // Most text needs no escaping: runs of plain bytes are skipped sixteen at a time and
        // copied whole.
        i = special.find(b, i);
        if i == b.len() {
            break;
        }
        let c = b[i];
        let rep: Option<&[u8]> = match c {
            b'&' => Some(b"&amp;"),
            b'<' => Some(b"&lt;"),
            b'>' => Some(b"&gt;"),
            b'\r' => Some(b"&#13;"),
            b'"' => Some(b"&quot;"),
            b'\'' => Some(b"&apos;"),
            b'\t' => Some(b"&#9;"),
            b'\n' => Some(b"&#10;"),
            0..=0x1f => Some("\u{FFFD}".as_bytes()),
            // 0xEF: U+FFFE / U+FFFF are not XML characters; other U+Fxxx are.
            _ if i + 2 < b.len() && b[i + 1] == 0xBF && (b[i + 2] == 0xBE || b[i + 2] == 0xBF) => {
                out.extend_from_slice(&b[start..i]);
                out.extend_from_slice("\u{FFFD}".as_bytes());
                i += 3;
                start = i;
                continue;
            }
            _ => None,
        };
        if let Some(r) = rep {
            out.extend_from_slice(&b[start..i]);
            out.extend_from_slice(r);
            start = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(&b[start..]);
}

/// The bytes [`escape_into`] must look at in one context: `table` marks them; every one of
/// them is below 0x20, `&`, `<`, 0xEF or `markup` (`>` in text, the quote in attribute
/// values), which lets [`Special::find`] rule out sixteen bytes at a time.
struct Special {
    table: [bool; 256],
    markup: u8,
}

impl Special {
    /// The index of the first marked byte of `b` at or after `i`, or `b.len()`: sixteen
    /// bytes ruled out at a time ([`crate::scan::find`]).
    fn find(&self, b: &[u8], i: usize) -> usize {
        crate::scan::find(b, i, |c| self.may(c), &self.table)
    }

    /// Whether `c` may be marked (a superset of `table`: tab and LF count in text, where
    /// they are not escaped), without a table lookup.
    #[inline(always)]
    fn may(&self, c: u8) -> bool {
        (c < 0x20) | (c == b'&') | (c == b'<') | (c == self.markup) | (c == 0xEF)
    }
}

/// Bytes [`escape_into`] must look at in text: markup, CR, control characters other than
/// tab and LF, and 0xEF (the lead byte of U+FFFE / U+FFFF).
static TEXT: Special = Special {
    table: special_bytes(None),
    markup: b'>',
};
/// The same for attribute values quoted with `"`: also `"`, tab and LF, but not `>`.
static ATTR_DQ: Special = Special {
    table: special_bytes(Some(b'"')),
    markup: b'"',
};
/// The same for attribute values quoted with `'`.
static ATTR_SQ: Special = Special {
    table: special_bytes(Some(b'\'')),
    markup: b'\'',
};

const fn special_bytes(attr_quote: Option<u8>) -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    let attr = attr_quote.is_some();
    t[b'\t' as usize] = attr;
    t[b'\n' as usize] = attr;
    if let Some(q) = attr_quote {
        t[q as usize] = true;
    }
    t[b'&' as usize] = true;
    t[b'<' as usize] = true;
    t[b'>' as usize] = !attr;
    t[0xEF] = true;
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `escape_into` as it was: one table lookup per byte.
    fn escape_bytewise(s: &str, special: &Special) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4];
        let chars: Vec<char> = s.chars().collect();
        for c in chars {
            let enc = c.encode_utf8(&mut buf).as_bytes();
            if !special.table[enc[0] as usize] {
                out.extend_from_slice(enc);
                continue;
            }
            match c {
                '&' => out.extend_from_slice(b"&amp;"),
                '<' => out.extend_from_slice(b"&lt;"),
                '>' => out.extend_from_slice(b"&gt;"),
                '\r' => out.extend_from_slice(b"&#13;"),
                '"' => out.extend_from_slice(b"&quot;"),
                '\'' => out.extend_from_slice(b"&apos;"),
                '\t' => out.extend_from_slice(b"&#9;"),
                '\n' => out.extend_from_slice(b"&#10;"),
                '\u{0}'..='\u{1f}' | '\u{FFFE}' | '\u{FFFF}' => {
                    out.extend_from_slice("\u{FFFD}".as_bytes())
                }
                _ => out.extend_from_slice(enc),
            }
        }
        out
    }

    #[test]
    fn escaping_sixteen_bytes_at_a_time_finds_every_special_byte_at_every_offset() {
        let specials = [
            "&", "<", ">", "\"", "'", "\r", "\n", "\t", "\u{0}", "\u{1f}", "\u{FFFE}", "\u{FFFF}",
            "\u{EFFF}", "\u{F000}", "é", "\u{7f}", " ",
        ];
        for special in [&TEXT, &ATTR_DQ, &ATTR_SQ] {
            for sp in specials {
                for len in [0, 1, 7, 8, 9, 15, 16, 17, 23, 31, 32, 33, 47, 48, 49] {
                    for at in 0..=len {
                        let s = format!("{}{sp}{}", "a".repeat(at), "b".repeat(len - at));
                        let mut out = Vec::new();
                        escape_into(&mut out, &s, special);
                        assert_eq!(
                            String::from_utf8_lossy(&out),
                            String::from_utf8_lossy(&escape_bytewise(&s, special)),
                            "{s:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_small_list_keeps_its_order_past_its_inline_room_and_back() {
        let mut l: SmallList<u32, 3> = SmallList::new(0);
        for i in 1..=5 {
            l.push(i);
            assert_eq!(l.as_slice(), (1..=i).collect::<Vec<_>>(), "after {i}");
        }
        l.truncate(4);
        assert_eq!(l.as_slice(), [1, 2, 3, 4]);
        l.truncate(2);
        l.push(9);
        assert_eq!(l.as_slice(), [1, 2, 9]);
        l.truncate(0);
        assert_eq!(l.len(), 0);
        l.push(7);
        assert_eq!(l.as_slice(), [7]);
        l.clear();
        assert!(l.as_slice().is_empty());
    }

    #[test]
    fn the_block_test_covers_every_special_byte() {
        for special in [&TEXT, &ATTR_DQ, &ATTR_SQ] {
            for c in 0..=255u8 {
                assert!(!special.table[c as usize] || special.may(c), "{c}");
            }
        }
    }

    #[test]
    fn prefixes_are_short_and_never_reserved() {
        let mut g = PrefixGen::default();
        let names: Vec<String> = (0..4000).map(|_| g.next().as_str().to_owned()).collect();
        assert_eq!(&names[..3], ["a", "b", "c"]);
        assert!(names[..3200].iter().all(|n| n.len() <= 2));
        assert!(
            !names
                .iter()
                .any(|n| n == "db" || n.to_ascii_lowercase().starts_with("xml"))
        );
        let unique: HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
        assert!(names.iter().all(|n| crate::xmlchar::is_ncname(n)));
    }
}
