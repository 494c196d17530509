//! The small owned DOM for first-level stream elements ([`Element`], [`Node`]), its accessors
//! and builders, and the entry points of its serialization (done by `writer`: namespace
//! declarations, escaping, forbidden-character replacement).
//!
//! Namespaces are stored resolved (the URI, as a shared [`Namespace`]), never as prefixes.
//! Attributes are an [`Attrs`] map; string keys are the plain name for unprefixed attributes,
//! `xml:<name>` for the reserved `xml` namespace (e.g. `xml:lang`), and Clark notation
//! `{uri}name` for attributes in any other namespace.

use std::sync::Arc;

use crate::attrs::{Attr, Attrs};
use crate::name::Name;
use crate::namespace::Namespace;
use crate::ns;
use crate::shared::SharedStr;

/// One element with its attributes and children.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    /// Local name (no prefix); static for the common XMPP names.
    pub name: Name,
    /// Namespace URI; empty for "no namespace". Shared with the declaration it came from.
    pub namespace: Namespace,
    /// Attributes, see the module documentation for the key format.
    pub attrs: Attrs,
    /// Child elements and text, in document order. The parser never produces two adjacent
    /// text nodes nor empty text nodes (CDATA sections are merged into text).
    pub children: Vec<Node>,
}

/// A child of an [`Element`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A child element.
    Element(Element),
    /// Character data (entities already resolved; a slice of the stanza's text buffer when
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
        self.attrs.insert(name, value);
    }

    /// Set (or replace) an attribute in a namespace (empty for none).
    pub fn set_attr_ns(
        &mut self,
        namespace: impl Into<Namespace>,
        name: impl Into<Name>,
        value: impl Into<SharedStr>,
    ) {
        self.attrs.insert_ns(namespace, name, value);
    }

    /// Remove an attribute, returning its value.
    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        self.attrs.remove(name)
    }

    /// Append a child element.
    pub fn push_child(&mut self, child: Element) {
        self.children.push(Node::Element(child));
    }

    /// Append text, merging with a preceding text node; empty text is ignored.
    pub fn push_text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
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

    /// Mutable access to the first matching child element.
    pub fn child_mut(&mut self, name: &str, namespace: &str) -> Option<&mut Element> {
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

    /// Serialize with [`write_to`](Self::write_to) into a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }
}

fn heap_size_into(el: &Element, seen: &mut Vec<usize>, total: &mut usize) {
    // Each shared allocation (namespace URI, the stanza's text buffer) once, however many elements refer to it.
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

/// Share the parser's text buffer with a finished element tree: every pending text and
/// attribute value becomes a slice of `text`.
pub(crate) fn seal_tree(el: &mut Element, text: &Arc<str>) {
    for a in el.attrs.iter_mut() {
        a.value.seal(text);
    }
    for c in &mut el.children {
        match c {
            Node::Text(t) => t.seal(text),
            Node::Element(e) => seal_tree(e, text),
        }
    }
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
