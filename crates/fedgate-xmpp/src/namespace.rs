//! [`Namespace`]: a namespace URI that parsed elements and attributes *share* instead of
//! copying.
//!
//! A namespace declaration received from a peer is allocated once (an `Arc<str>`); every
//! element that inherits it as default namespace, every element and attribute that uses its
//! prefix, holds a reference to that one allocation. The namespaces XMPP uses all the time
//! (content namespaces, streams, dialback, stream/stanza errors, TLS, SASL, a few common
//! payloads) are `'static` and never allocate. A long URI declared once and used by thousands
//! of elements therefore costs its length once, not once per element.
//!
//! The type behaves like a string for reading: it derefs to `str`, compares equal to `str`,
//! `&str` and `String`, orders and hashes like its text, and is built from `&str` / `String`
//! (`Element::new("x", "urn:x")` keeps working).

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use crate::ns;

/// A namespace URI (empty for "no namespace"). Cheap to clone: either a `'static` string or a
/// reference-counted shared one.
#[derive(Clone)]
pub struct Namespace(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
}

/// Namespaces recognised when a `Namespace` is built from text, so that they never allocate.
const COMMON: &[&str] = &[
    ns::SERVER,
    ns::CLIENT,
    ns::STREAMS,
    ns::DIALBACK,
    ns::DIALBACK_FEATURE,
    ns::STREAM_ERRORS,
    ns::STANZA_ERRORS,
    ns::TLS,
    ns::SASL,
    ns::XML,
    "http://jabber.org/protocol/chatstates",
    "http://jabber.org/protocol/disco#info",
    "http://jabber.org/protocol/disco#items",
    "http://jabber.org/protocol/pubsub",
    "http://jabber.org/protocol/pubsub#event",
    "http://jabber.org/protocol/caps",
    "http://jabber.org/protocol/muc",
    "http://jabber.org/protocol/muc#user",
    "jabber:x:data",
    "jabber:iq:version",
    "jabber:iq:roster",
    "vcard-temp",
    "vcard-temp:x:update",
    "urn:xmpp:ping",
    "urn:xmpp:time",
    "urn:xmpp:delay",
    "urn:xmpp:receipts",
    "urn:xmpp:carbons:2",
    "urn:xmpp:forward:0",
    "urn:xmpp:sid:0",
    "urn:xmpp:hints",
    "urn:xmpp:mam:2",
];

impl Namespace {
    /// No namespace.
    pub const EMPTY: Namespace = Namespace(Repr::Static(""));
    /// [`ns::SERVER`].
    pub const SERVER: Namespace = Namespace(Repr::Static(ns::SERVER));
    /// [`ns::XML`].
    pub const XML: Namespace = Namespace(Repr::Static(ns::XML));

    /// A namespace from a `'static` string (never allocates).
    pub const fn from_static(uri: &'static str) -> Self {
        Namespace(Repr::Static(uri))
    }

    /// The URI.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Shared(s) => s,
        }
    }

    /// Whether both refer to the same allocation — sharing, not just equal text — or are both
    /// the same static namespace (which has no allocation).
    pub fn shares_allocation(&self, other: &Namespace) -> bool {
        match (&self.0, &other.0) {
            (Repr::Shared(a), Repr::Shared(b)) => Arc::ptr_eq(a, b),
            (Repr::Static(a), Repr::Static(b)) => a == b,
            _ => false,
        }
    }

    /// Bytes of the heap allocation this value refers to (shared with its clones): the URI
    /// after the two reference counts, padded to their alignment; 0 for a static namespace.
    pub fn heap_size(&self) -> usize {
        match &self.0 {
            Repr::Static(_) => 0,
            Repr::Shared(s) => (2 * std::mem::size_of::<usize>() + s.len())
                .next_multiple_of(std::mem::align_of::<usize>()),
        }
    }

    /// Address identifying the shared allocation (`None` for a static namespace), to count
    /// each allocation once.
    pub(crate) fn allocation_id(&self) -> Option<usize> {
        match &self.0 {
            Repr::Static(_) => None,
            Repr::Shared(s) => Some(Arc::as_ptr(s) as *const u8 as usize),
        }
    }

    fn known(uri: &str) -> Option<&'static str> {
        if uri.is_empty() {
            return Some("");
        }
        COMMON.iter().copied().find(|c| *c == uri)
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Namespace::EMPTY
    }
}

impl Deref for Namespace {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Namespace {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Namespace {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Namespace {
    fn from(uri: &str) -> Self {
        match Namespace::known(uri) {
            Some(s) => Namespace(Repr::Static(s)),
            None => Namespace(Repr::Shared(Arc::from(uri))),
        }
    }
}

impl From<String> for Namespace {
    fn from(uri: String) -> Self {
        Namespace::from(uri.as_str())
    }
}

impl From<&String> for Namespace {
    fn from(uri: &String) -> Self {
        Namespace::from(uri.as_str())
    }
}

impl From<&Namespace> for Namespace {
    fn from(ns: &Namespace) -> Self {
        ns.clone()
    }
}

impl From<Arc<str>> for Namespace {
    fn from(uri: Arc<str>) -> Self {
        match Namespace::known(&uri) {
            Some(s) => Namespace(Repr::Static(s)),
            None => Namespace(Repr::Shared(uri)),
        }
    }
}

impl From<Namespace> for String {
    fn from(ns: Namespace) -> String {
        ns.as_str().to_owned()
    }
}

impl PartialEq for Namespace {
    fn eq(&self, other: &Namespace) -> bool {
        match (&self.0, &other.0) {
            (Repr::Shared(a), Repr::Shared(b)) if Arc::ptr_eq(a, b) => true,
            _ => self.as_str() == other.as_str(),
        }
    }
}

impl Eq for Namespace {}

impl PartialOrd for Namespace {
    fn partial_cmp(&self, other: &Namespace) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Namespace {
    fn cmp(&self, other: &Namespace) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Namespace {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

macro_rules! eq_with {
    ($($t:ty),*) => {$(
        impl PartialEq<$t> for Namespace {
            fn eq(&self, other: &$t) -> bool {
                self.as_str() == AsRef::<str>::as_ref(other)
            }
        }
        impl PartialEq<Namespace> for $t {
            fn eq(&self, other: &Namespace) -> bool {
                AsRef::<str>::as_ref(self) == other.as_str()
            }
        }
    )*};
}
eq_with!(str, &str, String);

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_namespaces_do_not_allocate() {
        for uri in COMMON.iter().copied().chain([""]) {
            let n = Namespace::from(uri.to_owned());
            assert_eq!(n.heap_size(), 0, "{uri}");
            assert_eq!(n, uri);
        }
        assert!(Namespace::from(ns::SERVER).shares_allocation(&Namespace::SERVER));
    }

    #[test]
    fn clones_share_one_allocation() {
        let a = Namespace::from("urn:example:long");
        let b = a.clone();
        assert!(a.shares_allocation(&b));
        assert_eq!(a.heap_size(), 16 + 16);
        assert_eq!(Namespace::from("urn:x").heap_size(), 24);
        let c = Namespace::from("urn:example:long");
        assert!(!a.shares_allocation(&c));
        assert_eq!(a, c);
    }

    #[test]
    fn behaves_like_a_string() {
        let n = Namespace::from("urn:x");
        let owned = String::from("urn:x");
        assert_eq!(n, "urn:x");
        assert_eq!("urn:x", n);
        assert_eq!(n, *"urn:x");
        assert_eq!(n, owned);
        assert_eq!(owned, n);
        assert_eq!(n.len(), 5);
        assert!(n.starts_with("urn:"));
        assert_eq!(format!("{n} {n:?}"), "urn:x \"urn:x\"");
        assert_eq!(
            Namespace::from("a").cmp(&Namespace::from("b")),
            Ordering::Less
        );
        assert_eq!(Namespace::default(), "");
        let s: String = n.into();
        assert_eq!(s, "urn:x");
    }
}
