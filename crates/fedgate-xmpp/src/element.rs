//! The small owned DOM for first-level stream elements ([`Element`], [`Node`]), its accessors
//! and builders, and the entry points of its serialization (done by `writer`: namespace
//! declarations, escaping, forbidden-character replacement).
//!
//! Namespaces are stored resolved (the URI, as a shared [`Namespace`]), never as prefixes.
//! Attributes are an [`Attrs`] map; string keys are the plain name for unprefixed attributes,
//! `xml:<name>` for the reserved `xml` namespace (e.g. `xml:lang`), and Clark notation
//! `{uri}name` for attributes in any other namespace.
//!
//! A first-level element built by the parser also keeps its **wire form**: the exact bytes it
//! was validated from (a slice of the stanza's shared buffer, of which its values and text are
//! slices too wherever they read as received) and what those bytes depend on
//! from outside themselves (the default namespace they inherited, whether they use a prefix
//! declared on the stream header). Serializing writes those bytes as they came when the
//! destination stream gives them the same meaning, and serializes the tree otherwise. Every
//! `&mut self` method drops the wire form, so a changed element is always serialized from its
//! tree; the fields are public for reading (and building), and a parsed element must only be
//! changed through the methods (see [`Element::children_mut`], [`Element::attrs_mut`]): in
//! builds with debug assertions the writer checks that the wire form still matches the tree.

use std::fmt;
use std::sync::Arc;

use crate::attrs::{Attr, Attrs};
use crate::name::Name;
use crate::namespace::Namespace;
use crate::ns;
use crate::shared::SharedStr;

/// One element with its attributes and children.
///
/// The fields are public to read and to build elements; on an element received from the
/// parser, change them only through the `&mut self` methods ([`set_attr`](Self::set_attr),
/// [`children_mut`](Self::children_mut), ...): they drop the element's wire form (see the
/// module documentation), direct assignment to a field does not, and the old bytes would be
/// forwarded (debug builds panic when writing such an element).
#[derive(Clone, Default)]
pub struct Element {
    /// Local name (no prefix); static for the common XMPP names. Read-only on a parsed
    /// element (see the type's documentation).
    pub name: Name,
    /// Namespace URI; empty for "no namespace". Shared with the declaration it came from.
    /// Read-only on a parsed element.
    pub namespace: Namespace,
    /// Attributes, see the module documentation for the key format. Change a parsed
    /// element's through [`set_attr`](Self::set_attr), [`remove_attr`](Self::remove_attr) or
    /// [`attrs_mut`](Self::attrs_mut).
    pub attrs: Attrs,
    /// Child elements and text, in document order. The parser never produces two adjacent
    /// text nodes nor empty text nodes (CDATA sections are merged into text). Change a parsed
    /// element's through [`children_mut`](Self::children_mut) (or `push_*`, `child_mut`).
    pub children: Vec<Node>,
    /// The bytes the parser validated this element from, when it is a first-level element
    /// not changed since (dropped by every `&mut self` method).
    wire: Option<Wire>,
}

/// The wire form of a parsed first-level element: its exact bytes and what their meaning
/// depends on outside them. Small (24 bytes), as every element node carries the field.
#[derive(Clone)]
pub(crate) struct Wire {
    /// The stanza's shared buffer: the values and text that had to be decoded (references,
    /// CDATA, normalised whitespace), then the wire bytes, to its end. A value or text that
    /// reads as it was received is a slice of the wire bytes.
    pub(crate) buf: Arc<str>,
    /// Where the bytes start in `buf`: from the element's `<` to the `>` of its end tag, as
    /// received, they run to the end of `buf`.
    pub(crate) at: u32,
    /// The default namespace the bytes inherit from the stream: [`Inherited`] (some
    /// unprefixed element name is not under a default namespace declaration of its own).
    pub(crate) inherited: u8,
    /// Prefixes the bytes use that the stream header declared ([`Outside`] flags).
    pub(crate) outside: u8,
    /// Debug builds: a digest of the tree when it was parsed, to catch a change made through
    /// the public fields (which cannot drop the wire form).
    #[cfg(debug_assertions)]
    pub(crate) digest: u64,
}

/// The default namespace the bytes of a first-level element inherit from their stream.
pub(crate) struct Inherited;

impl Inherited {
    /// None: they declare every default namespace they use.
    pub(crate) const NOTHING: u8 = 0;
    /// [`ns::SERVER`].
    pub(crate) const SERVER: u8 = 1;
    /// [`ns::CLIENT`].
    pub(crate) const CLIENT: u8 = 2;
    /// No namespace, or one no context is compared with (never written as they came).
    pub(crate) const OTHER: u8 = 3;

    /// The code of a stream's default namespace.
    pub(crate) fn of(uri: &str) -> u8 {
        match uri {
            ns::SERVER => Self::SERVER,
            ns::CLIENT => Self::CLIENT,
            _ => Self::OTHER,
        }
    }
}

/// The prefixes declared outside a first-level element that its bytes may use.
pub(crate) struct Outside;

impl Outside {
    /// `stream:` bound to [`ns::STREAMS`] on the stream header.
    pub(crate) const STREAM: u8 = 1;
    /// `db:` bound to [`ns::DIALBACK`] on the stream header.
    pub(crate) const DIALBACK: u8 = 2;
    /// Any other prefix declared on the stream header (never `xml`).
    pub(crate) const OTHER: u8 = 4;
}

impl Wire {
    /// The bytes.
    pub(crate) fn bytes(&self) -> &str {
        self.buf.get(self.at as usize..).unwrap_or("")
    }

    /// Whether the bytes mean the same element when written as a first-level element of a
    /// stream with context `ctx`.
    pub(crate) fn fits(&self, ctx: &WriteContext<'_>) -> bool {
        let default = match self.inherited {
            Inherited::NOTHING => true,
            Inherited::SERVER => ctx.default_ns == ns::SERVER,
            Inherited::CLIENT => ctx.default_ns == ns::CLIENT,
            _ => false,
        };
        default
            && (self.outside & Outside::OTHER == 0)
            && (self.outside & Outside::STREAM == 0 || ctx.stream_prefix)
            && (self.outside & Outside::DIALBACK == 0 || ctx.dialback_prefix)
    }
}

impl fmt::Debug for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The wire form is a cache of the tree, not part of the value.
        f.debug_struct("Element")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("attrs", &self.attrs)
            .field("children", &self.children)
            .finish()
    }
}

/// Equal trees are equal elements, whether or not they carry a wire form.
impl PartialEq for Element {
    fn eq(&self, other: &Element) -> bool {
        self.name == other.name
            && self.namespace == other.namespace
            && self.attrs == other.attrs
            && self.children == other.children
    }
}

impl Eq for Element {}

/// A child of an [`Element`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A child element.
    Element(Element),
    /// Character data (entities already resolved; a slice of the stanza's shared buffer when
    /// parsed).
    Text(SharedStr),
}

impl Element {
    /// A new empty element.
    pub fn new(name: impl Into<Name>, namespace: impl Into<Namespace>) -> Self {
        Element {
            name: name.into(),
            namespace: namespace.into(),
            attrs: Attrs::new(),
            children: Vec::new(),
            wire: None,
        }
    }

    /// Builder: set an attribute.
    pub fn with_attr(mut self, name: impl Into<Name>, value: impl Into<SharedStr>) -> Self {
        self.set_attr(name, value);
        self
    }

    /// Builder: append a child element.
    pub fn with_child(mut self, child: Element) -> Self {
        self.push_child(child);
        self
    }

    /// Builder: append text.
    pub fn with_text(mut self, text: impl AsRef<str>) -> Self {
        self.push_text(text.as_ref());
        self
    }

    /// Set (or replace) an attribute (string key: `"to"`, `"xml:lang"`, `"{uri}name"`).
    pub fn set_attr(&mut self, name: impl Into<Name>, value: impl Into<SharedStr>) {
        self.wire = None;
        self.attrs.insert(name, value);
    }

    /// Set (or replace) an attribute in a namespace (empty for none).
    pub fn set_attr_ns(
        &mut self,
        namespace: impl Into<Namespace>,
        name: impl Into<Name>,
        value: impl Into<SharedStr>,
    ) {
        self.wire = None;
        self.attrs.insert_ns(namespace, name, value);
    }

    /// Remove an attribute, returning its value (the element is unchanged, and keeps its wire
    /// form, when it had no such attribute).
    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let removed = self.attrs.remove(name);
        if removed.is_some() {
            self.wire = None;
        }
        removed
    }

    /// The attributes, to change them.
    pub fn attrs_mut(&mut self) -> &mut Attrs {
        self.wire = None;
        &mut self.attrs
    }

    /// The children, to change them.
    pub fn children_mut(&mut self) -> &mut Vec<Node> {
        self.wire = None;
        &mut self.children
    }

    /// Remove the child elements for which `remove` is true (text is kept: text that was on
    /// both sides of a removed element becomes one text node, as a parser reads the result);
    /// the number removed. The element is unchanged, and keeps its wire form, when none is.
    pub fn remove_children(&mut self, mut remove: impl FnMut(&Element) -> bool) -> usize {
        let before = self.children.len();
        if !self.children().any(&mut remove) {
            return 0;
        }
        let children = self.children_mut();
        children.retain(|n| !matches!(n, Node::Element(c) if remove(c)));
        let removed = before - children.len();
        join_adjacent_text(children);
        removed
    }

    /// Append a child element.
    pub fn push_child(&mut self, child: Element) {
        self.wire = None;
        self.children.push(Node::Element(child));
    }

    /// Append text, merging with a preceding text node; empty text is ignored.
    pub fn push_text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.wire = None;
        if let Some(Node::Text(last)) = self.children.last_mut() {
            let mut joined = String::with_capacity(last.len() + text.len());
            joined.push_str(last);
            joined.push_str(text);
            *last = SharedStr::from(joined);
        } else {
            self.children.push(Node::Text(SharedStr::from(text)));
        }
    }

    /// Value of an attribute (`"to"`, `"xml:lang"`, `"{uri}name"`).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.get(name)
    }

    /// Value of an attribute by namespace (empty for none) and local name.
    pub fn attr_ns(&self, namespace: &str, name: &str) -> Option<&str> {
        self.attrs.get_ns(namespace, name)
    }

    /// The `xml:lang` attribute.
    pub fn lang(&self) -> Option<&str> {
        self.attr("xml:lang")
    }

    /// Whether this element has the given local name and namespace.
    pub fn is(&self, name: &str, namespace: &str) -> bool {
        self.name == name && self.namespace == namespace
    }

    /// The first child element with the given name and namespace.
    pub fn child(&self, name: &str, namespace: &str) -> Option<&Element> {
        self.children().find(|c| c.is(name, namespace))
    }

    /// Mutable access to the first matching child element (this element is serialized from
    /// its tree from then on, whether or not the child is changed).
    pub fn child_mut(&mut self, name: &str, namespace: &str) -> Option<&mut Element> {
        self.wire = None;
        self.children.iter_mut().find_map(|n| match n {
            Node::Element(e) if e.is(name, namespace) => Some(e),
            _ => None,
        })
    }

    /// The child elements (text nodes skipped).
    pub fn children(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The direct text content (text children concatenated; child elements ignored).
    pub fn text(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                s.push_str(t);
            }
        }
        s
    }

    /// Bytes this element owns on the heap (its own struct excluded): names, attribute list,
    /// attribute names and values, children list, text, recursively, by capacity; each shared
    /// namespace allocation is counted once however many elements and attributes refer to it.
    pub fn heap_size(&self) -> usize {
        let mut seen = Vec::new();
        let mut total = 0;
        heap_size_into(self, &mut seen, &mut total);
        total
    }

    /// Serialize as a first-level child of an s2s stream opened by
    /// [`StreamHeader::write_to`](crate::StreamHeader::write_to): default namespace
    /// `jabber:server` (not repeated), `stream:` bound, `db:` bound. Same as
    /// `write_in(out, &WriteContext::S2S)`.
    ///
    /// Characters not allowed in XML 1.0 (C0 controls other than tab/LF/CR, U+FFFE, U+FFFF)
    /// cannot be escaped and are replaced with U+FFFD, so the output is always well-formed
    /// as long as names are valid XML names (the parser and the builders of this crate only
    /// produce valid names).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        self.write_in(out, &WriteContext::S2S);
    }

    /// Serialize in the given context (what the enclosing stream already declares).
    pub fn write_in(&self, out: &mut Vec<u8>, ctx: &WriteContext<'_>) {
        crate::writer::write_element(self, out, ctx);
    }

    /// Whether the element still has the wire form the parser gave it: the bytes it was
    /// validated from, which serialization writes as they came when the destination stream
    /// gives them the same meaning.
    pub fn has_wire(&self) -> bool {
        self.wire.is_some()
    }

    /// The bytes the parser validated this element from, while it has them (see
    /// [`has_wire`](Self::has_wire)).
    pub fn wire_bytes(&self) -> Option<&str> {
        self.wire.as_ref().map(Wire::bytes)
    }

    /// Drop the wire form: the element is serialized from its tree from now on.
    pub fn forget_wire(&mut self) {
        self.wire = None;
    }

    pub(crate) fn wire(&self) -> Option<&Wire> {
        self.wire.as_ref()
    }

    pub(crate) fn set_wire(&mut self, wire: Wire) {
        self.wire = Some(wire);
    }

    /// Serialize with [`write_to`](Self::write_to) into a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }
}

/// Join each run of adjacent text nodes into one (in one pass, each run copied once).
fn join_adjacent_text(children: &mut Vec<Node>) {
    let adjacent = |w: &[Node]| matches!(w, [Node::Text(_), Node::Text(_)]);
    if !children.windows(2).any(adjacent) {
        return;
    }
    let mut joined = Vec::with_capacity(children.len());
    let mut run: Vec<SharedStr> = Vec::new();
    let flush = |run: &mut Vec<SharedStr>, joined: &mut Vec<Node>| match run.len() {
        0 => {}
        1 => joined.extend(run.drain(..).map(Node::Text)),
        _ => {
            let mut text = String::with_capacity(run.iter().map(|t| t.len()).sum());
            for t in run.drain(..) {
                text.push_str(&t);
            }
            joined.push(Node::Text(SharedStr::from(text)));
        }
    };
    for node in children.drain(..) {
        match node {
            Node::Text(t) => run.push(t),
            other => {
                flush(&mut run, &mut joined);
                joined.push(other);
            }
        }
    }
    flush(&mut run, &mut joined);
    *children = joined;
}

fn heap_size_into(el: &Element, seen: &mut Vec<usize>, total: &mut usize) {
    // Each shared allocation (namespace URI, the stanza's shared buffer) once, however many elements refer to it.
    fn shared(seen: &mut Vec<usize>, id: Option<usize>, size: usize, total: &mut usize) {
        if let Some(id) = id {
            if !seen.contains(&id) {
                seen.push(id);
                *total += size;
            }
        }
    }
    shared(
        seen,
        el.namespace.allocation_id(),
        el.namespace.heap_size(),
        total,
    );
    *total += el.name.heap_size();
    *total += el.attrs.capacity() * std::mem::size_of::<Attr>();
    for a in &el.attrs {
        shared(
            seen,
            a.namespace.allocation_id(),
            a.namespace.heap_size(),
            total,
        );
        shared(
            seen,
            a.value.allocation_id(),
            a.value.shared_heap_size(),
            total,
        );
        *total += a.name.heap_size() + a.value.heap_size();
    }
    if let Some(w) = &el.wire {
        // The stanza's shared buffer (counted once with its values and text).
        shared(
            seen,
            Some(Arc::as_ptr(&w.buf) as *const u8 as usize),
            crate::shared::arc_str_size(w.buf.len()),
            total,
        );
    }
    *total += el.children.capacity() * std::mem::size_of::<Node>();
    for c in &el.children {
        match c {
            Node::Text(t) => {
                shared(seen, t.allocation_id(), t.shared_heap_size(), total);
                *total += t.heap_size();
            }
            Node::Element(e) => heap_size_into(e, seen, total),
        }
    }
}

/// Share the stanza's buffer with a finished element tree: every pending text and attribute
/// value becomes a slice of `buf` (its decoded side buffer, then from `wire_at` its wire
/// bytes).
pub(crate) fn seal_tree(el: &mut Element, buf: &Arc<str>, wire_at: u32) {
    for a in el.attrs.iter_mut() {
        a.value.seal(buf, wire_at);
    }
    for c in &mut el.children {
        match c {
            Node::Text(t) => t.seal(buf, wire_at),
            Node::Element(e) => seal_tree(e, buf, wire_at),
        }
    }
}

/// A digest of the tree (names, namespaces, attributes, text, structure): what the wire form
/// was taken from, checked again when it is written (debug builds only).
#[cfg(debug_assertions)]
pub(crate) fn digest(el: &Element) -> u64 {
    fn eat(h: &mut u64, bytes: &[u8]) {
        for b in bytes.iter().chain(&[0xFF]) {
            *h = (*h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn walk(el: &Element, h: &mut u64) {
        eat(h, el.name.as_bytes());
        eat(h, el.namespace.as_bytes());
        for a in &el.attrs {
            eat(h, a.namespace.as_bytes());
            eat(h, a.name.as_bytes());
            eat(h, a.value.as_bytes());
        }
        for c in &el.children {
            match c {
                Node::Text(t) => {
                    eat(h, b"t");
                    eat(h, t.as_bytes());
                }
                Node::Element(e) => {
                    eat(h, b"<");
                    walk(e, h);
                    eat(h, b">");
                }
            }
        }
    }
    let mut h = 0xcbf2_9ce4_8422_2325;
    walk(el, &mut h);
    h
}

/// What the surrounding stream has declared, so serialization can omit redundant
/// declarations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteContext<'a> {
    /// The default namespace in scope (the stream's content namespace).
    pub default_ns: &'a str,
    /// Whether the `stream:` prefix is bound to [`ns::STREAMS`]. Elements in that namespace
    /// are written with the `stream:` prefix (declared on the element when not bound).
    pub stream_prefix: bool,
    /// Whether the `db:` prefix is bound to [`ns::DIALBACK`]. Dialback elements are written
    /// as `db:result` / `db:verify` (declared on the element when not bound).
    pub dialback_prefix: bool,
}

impl WriteContext<'static> {
    /// Inside a `jabber:server` stream whose header declared `xmlns:stream` and `xmlns:db`.
    pub const S2S: WriteContext<'static> = WriteContext {
        default_ns: ns::SERVER,
        stream_prefix: true,
        dialback_prefix: true,
    };
    /// Standalone: nothing declared; every namespace is declared on the element.
    pub const STANDALONE: WriteContext<'static> = WriteContext {
        default_ns: "",
        stream_prefix: false,
        dialback_prefix: false,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(e: &Element) -> String {
        String::from_utf8(e.to_bytes()).unwrap()
    }

    #[test]
    fn stanza_in_server_ns_has_no_xmlns() {
        let m = Element::new("message", ns::SERVER)
            .with_attr("to", "a@b")
            .with_child(Element::new("body", ns::SERVER).with_text("hi"));
        assert_eq!(s(&m), r#"<message to="a@b"><body>hi</body></message>"#);
    }

    #[test]
    fn foreign_namespace_declared_once() {
        let m = Element::new("message", ns::SERVER)
            .with_child(Element::new("x", "urn:x").with_child(Element::new("y", "urn:x")));
        assert_eq!(s(&m), r#"<message><x xmlns="urn:x"><y/></x></message>"#);
    }

    #[test]
    fn empty_namespace_undeclares_default() {
        let m = Element::new("a", "");
        assert_eq!(s(&m), r#"<a xmlns=""/>"#);
        let mut out = Vec::new();
        m.write_in(&mut out, &WriteContext::STANDALONE);
        assert_eq!(out, b"<a/>");
    }

    #[test]
    fn stream_and_dialback_prefixes() {
        let f = Element::new("features", ns::STREAMS);
        assert_eq!(s(&f), "<stream:features/>");
        let d = Element::new("result", ns::DIALBACK).with_text("k");
        assert_eq!(s(&d), "<db:result>k</db:result>");
        let mut out = Vec::new();
        d.write_in(&mut out, &WriteContext::STANDALONE);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"<db:result xmlns:db="jabber:server:dialback">k</db:result>"#
        );
    }

    #[test]
    fn escaping() {
        let m = Element::new("a", ns::SERVER)
            .with_attr("v", "\"<&>'\t\n\r")
            .with_text("<&>\"'\r\n\t");
        assert_eq!(
            s(&m),
            "<a v=\"&quot;&lt;&amp;>'&#9;&#10;&#13;\">&lt;&amp;&gt;\"'&#13;\n\t</a>"
        );
        // More double quotes than single ones: single-quoted, only `'` escaped.
        let m = Element::new("a", ns::SERVER).with_attr("v", "say \"hi\" isn't");
        assert_eq!(s(&m), "<a v='say \"hi\" isn&apos;t'/>");
    }

    #[test]
    fn forbidden_chars_replaced() {
        let m = Element::new("a", ns::SERVER)
            .with_attr("v", "x\u{0}y")
            .with_text("\u{1b}\u{FFFE}\u{FFFF}é\u{FFFD}");
        assert_eq!(
            s(&m),
            "<a v=\"x\u{FFFD}y\">\u{FFFD}\u{FFFD}\u{FFFD}é\u{FFFD}</a>"
        );
    }

    #[test]
    fn clark_attribute_gets_prefix() {
        let m = Element::new("a", ns::SERVER).with_attr("{urn:q}k", "v");
        assert_eq!(s(&m), r#"<a xmlns:a="urn:q" a:k="v"/>"#);
    }

    #[test]
    fn helpers() {
        let mut m = Element::new("message", ns::SERVER)
            .with_attr("xml:lang", "en")
            .with_text("a")
            .with_text("b")
            .with_child(Element::new("body", ns::SERVER).with_text("x"))
            .with_text("")
            .with_text("c");
        assert_eq!(m.lang(), Some("en"));
        assert_eq!(m.text(), "abc");
        assert_eq!(m.children.len(), 3);
        assert_eq!(
            m.child("body", ns::SERVER).map(|b| b.text()),
            Some("x".into())
        );
        assert!(m.child("body", ns::CLIENT).is_none());
        assert_eq!(m.children().count(), 1);
        m.child_mut("body", ns::SERVER).unwrap().push_text("y");
        assert_eq!(m.child("body", ns::SERVER).unwrap().text(), "xy");
        assert_eq!(m.remove_attr("xml:lang").as_deref(), Some("en"));
        assert!(m.attr("xml:lang").is_none());
    }
}
