//! The small owned DOM for first-level stream elements ([`Element`], [`Node`]) and its
//! serialization: escaping, forbidden-character replacement and namespace declarations.
//!
//! Namespaces are stored resolved (the URI, as a shared [`Namespace`]), never as prefixes.
//! Attributes are an [`Attrs`] map; string keys are the plain name for unprefixed attributes,
//! `xml:<name>` for the reserved `xml` namespace (e.g. `xml:lang`), and Clark notation
//! `{uri}name` for attributes in any other namespace.

use crate::attrs::Attrs;
use crate::namespace::Namespace;
use crate::ns;

/// One element with its attributes and children.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    /// Local name (no prefix).
    pub name: String,
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
    /// Character data (entities already resolved).
    Text(String),
}

impl Element {
    /// A new empty element.
    pub fn new(name: impl Into<String>, namespace: impl Into<Namespace>) -> Self {
        Element {
            name: name.into(),
            namespace: namespace.into(),
            attrs: Attrs::new(),
            children: Vec::new(),
        }
    }

    /// Builder: set an attribute.
    pub fn with_attr(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
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
    pub fn set_attr(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.attrs.insert(name, value);
    }

    /// Set (or replace) an attribute in a namespace (empty for none).
    pub fn set_attr_ns(
        &mut self,
        namespace: impl Into<Namespace>,
        name: impl Into<String>,
        value: impl Into<String>,
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
            last.push_str(text);
        } else {
            self.children.push(Node::Text(text.to_owned()));
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
        write_element(self, out, ctx.default_ns, ctx);
    }

    /// Serialize with [`write_to`](Self::write_to) into a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }
}

fn heap_size_into(el: &Element, seen: &mut Vec<usize>, total: &mut usize) {
    let mut ns = |n: &Namespace, total: &mut usize| {
        if let Some(id) = n.allocation_id() {
            if !seen.contains(&id) {
                seen.push(id);
                *total += n.heap_size();
            }
        }
    };
    ns(&el.namespace, total);
    *total += el.name.capacity();
    *total += el.attrs.capacity() * std::mem::size_of::<crate::attrs::Attr>();
    for a in &el.attrs {
        ns(&a.namespace, total);
        *total += a.name.capacity() + a.value.capacity();
    }
    *total += el.children.capacity() * std::mem::size_of::<Node>();
    for c in &el.children {
        match c {
            Node::Text(t) => *total += t.capacity(),
            Node::Element(e) => heap_size_into(e, seen, total),
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

fn write_element(el: &Element, out: &mut Vec<u8>, default_ns: &str, ctx: &WriteContext<'_>) {
    out.push(b'<');
    let prefix: Option<&str>;
    let mut child_default = default_ns;
    if el.namespace == ns::STREAMS {
        prefix = Some("stream");
    } else if el.namespace == ns::DIALBACK {
        prefix = Some("db");
    } else {
        prefix = None;
    }
    if let Some(p) = prefix {
        out.extend_from_slice(p.as_bytes());
        out.push(b':');
    }
    out.extend_from_slice(el.name.as_bytes());
    match prefix {
        Some("stream") if !ctx.stream_prefix => {
            write_attr(out, "xmlns:stream", ns::STREAMS);
        }
        Some("db") if !ctx.dialback_prefix => {
            write_attr(out, "xmlns:db", ns::DIALBACK);
        }
        Some(_) => {}
        None => {
            if el.namespace != default_ns {
                write_attr(out, "xmlns", &el.namespace);
            }
            child_default = &el.namespace;
        }
    }
    let mut generated = 0usize;
    for a in &el.attrs {
        if !a.namespace.is_empty() {
            // A namespaced attribute: declare a private prefix on this element.
            let p = format!("ns{generated}");
            generated += 1;
            write_attr(out, &format!("xmlns:{p}"), &a.namespace);
            write_attr(out, &format!("{p}:{}", a.name), &a.value);
            continue;
        }
        write_attr(out, &a.name, &a.value);
    }
    if el.children.is_empty() {
        out.extend_from_slice(b"/>");
        return;
    }
    out.push(b'>');
    for n in &el.children {
        match n {
            Node::Text(t) => escape_into(out, t, false),
            Node::Element(c) => write_element(c, out, child_default, ctx),
        }
    }
    out.extend_from_slice(b"</");
    if let Some(p) = prefix {
        out.extend_from_slice(p.as_bytes());
        out.push(b':');
    }
    out.extend_from_slice(el.name.as_bytes());
    out.push(b'>');
}

pub(crate) fn write_attr(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"=\"");
    escape_into(out, value, true);
    out.push(b'"');
}

/// Escape character data. Text: `&`, `<`, `>` and CR (as `&#13;`, which end-of-line
/// normalisation would otherwise turn into LF). Attributes additionally `"`, tab and LF (as
/// character references, which attribute-value normalisation would otherwise turn into
/// spaces). Characters not allowed in XML 1.0 become U+FFFD.
pub(crate) fn escape_into(out: &mut Vec<u8>, s: &str, attr: bool) {
    let b = s.as_bytes();
    let special = if attr { &ATTR_SPECIAL } else { &TEXT_SPECIAL };
    let mut start = 0;
    let mut i = 0;
    loop {
        // Most text needs no escaping: skip plain bytes with one table lookup each.
        while i < b.len() && !special[b[i] as usize] {
            i += 1;
        }
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

/// Bytes that [`escape_into`] must look at in text: markup, CR, control characters other than
/// tab and LF, and 0xEF (the lead byte of U+FFFE / U+FFFF).
static TEXT_SPECIAL: [bool; 256] = special_bytes(false);
/// The same for attribute values, which also escape `"`, tab and LF.
static ATTR_SPECIAL: [bool; 256] = special_bytes(true);

const fn special_bytes(attr: bool) -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'\t' as usize] = attr;
    t[b'\n' as usize] = attr;
    t[b'"' as usize] = attr;
    t[b'&' as usize] = true;
    t[b'<' as usize] = true;
    t[b'>' as usize] = true;
    t[0xEF] = true;
    t
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
            "<a v=\"&quot;&lt;&amp;&gt;'&#9;&#10;&#13;\">&lt;&amp;&gt;\"'&#13;\n\t</a>"
        );
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
        assert_eq!(s(&m), r#"<a xmlns:ns0="urn:q" ns0:k="v"/>"#);
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
