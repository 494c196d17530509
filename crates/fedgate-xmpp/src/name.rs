//! [`Name`]: the local name of an element or attribute, which for the names XMPP uses all the
//! time (`message`, `body`, `from`, `to`, `type`, `id`, `xml:lang`, …) is a `'static` string
//! and costs no allocation; any other name is one exactly sized heap string.
//!
//! The type reads like a string: it derefs to `str`, compares equal to `str`, `&str` and
//! `String`, orders and hashes like its text, displays as its text, and is built from `&str` /
//! `String` (`Element::new("x", ns)` keeps working). Whether a name is static is invisible
//! except in [`Name::heap_size`], which the parser's memory accounting uses.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

/// An element or attribute name (see the module documentation).
#[derive(Clone)]
pub struct Name(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Owned(Box<str>),
}

/// The static form of a common XMPP element or attribute name, if `s` is one.
fn common(s: &str) -> Option<&'static str> {
    Some(match s {
        // Stanzas and their usual children (RFC 6120/6121).
        "message" => "message",
        "presence" => "presence",
        "iq" => "iq",
        "body" => "body",
        "subject" => "subject",
        "thread" => "thread",
        "show" => "show",
        "status" => "status",
        "priority" => "priority",
        "error" => "error",
        "text" => "text",
        // Common payloads: chat states, receipts, markers, delay, ids, caps, data forms, …
        "active" => "active",
        "composing" => "composing",
        "paused" => "paused",
        "inactive" => "inactive",
        "gone" => "gone",
        "request" => "request",
        "received" => "received",
        "markable" => "markable",
        "displayed" => "displayed",
        "delay" => "delay",
        "stanza-id" => "stanza-id",
        "origin-id" => "origin-id",
        "c" => "c",
        "x" => "x",
        "query" => "query",
        "item" => "item",
        "feature" => "feature",
        "identity" => "identity",
        "ping" => "ping",
        "html" => "html",
        "store" => "store",
        "no-store" => "no-store",
        "no-copy" => "no-copy",
        "event" => "event",
        "items" => "items",
        "field" => "field",
        "value" => "value",
        // Stream-level elements (streams, TLS, SASL, dialback).
        "stream" => "stream",
        "features" => "features",
        "starttls" => "starttls",
        "proceed" => "proceed",
        "failure" => "failure",
        "mechanisms" => "mechanisms",
        "mechanism" => "mechanism",
        "auth" => "auth",
        "success" => "success",
        "result" => "result",
        "verify" => "verify",
        "dialback" => "dialback",
        // Attribute names.
        "from" => "from",
        "to" => "to",
        "type" => "type",
        "id" => "id",
        "xml:lang" => "xml:lang",
        "jid" => "jid",
        "node" => "node",
        "name" => "name",
        "stamp" => "stamp",
        "code" => "code",
        "by" => "by",
        "ver" => "ver",
        "hash" => "hash",
        "var" => "var",
        "category" => "category",
        "version" => "version",
        "nick" => "nick",
        "role" => "role",
        "affiliation" => "affiliation",
        _ => return None,
    })
}

impl Name {
    /// A name from a `'static` string (never allocates).
    pub const fn from_static(name: &'static str) -> Self {
        Name(Repr::Static(name))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Owned(s) => s,
        }
    }

    /// Bytes of heap this name owns: its length for an uncommon name, 0 for a static one.
    pub fn heap_size(&self) -> usize {
        match &self.0 {
            Repr::Static(_) => 0,
            Repr::Owned(s) => s.len(),
        }
    }
}

impl Default for Name {
    fn default() -> Self {
        Name(Repr::Static(""))
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Self {
        match common(s) {
            Some(c) => Name(Repr::Static(c)),
            None => Name(Repr::Owned(Box::from(s))),
        }
    }
}

impl From<String> for Name {
    fn from(s: String) -> Self {
        match common(&s) {
            Some(c) => Name(Repr::Static(c)),
            None => Name(Repr::Owned(s.into_boxed_str())),
        }
    }
}

impl From<&String> for Name {
    fn from(s: &String) -> Self {
        Name::from(s.as_str())
    }
}

impl From<&Name> for Name {
    fn from(n: &Name) -> Self {
        n.clone()
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        match n.0 {
            Repr::Static(s) => s.to_owned(),
            Repr::Owned(s) => s.into_string(),
        }
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Name) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Name) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

macro_rules! eq_with {
    ($($t:ty),*) => {$(
        impl PartialEq<$t> for Name {
            fn eq(&self, other: &$t) -> bool {
                self.as_str() == AsRef::<str>::as_ref(other)
            }
        }
        impl PartialEq<Name> for $t {
            fn eq(&self, other: &Name) -> bool {
                AsRef::<str>::as_ref(self) == other.as_str()
            }
        }
    )*};
}
eq_with!(str, &str, String);

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_names_are_static_others_own_exactly_their_text() {
        for n in [
            "message", "body", "from", "to", "type", "id", "xml:lang", "active",
        ] {
            let name = Name::from(n);
            assert_eq!(name.heap_size(), 0, "{n}");
            assert_eq!(name, n);
            assert_eq!(Name::from(n.to_owned()).heap_size(), 0, "{n}");
        }
        let rare = Name::from("x-custom-element");
        assert_eq!(rare.heap_size(), "x-custom-element".len());
        assert_eq!(rare, "x-custom-element");
        // Case matters in XML: a differently cased name is not the common one.
        assert_eq!(Name::from("Message").heap_size(), 7);
    }

    #[test]
    fn behaves_like_a_string() {
        let n = Name::from("status");
        assert_eq!(n, "status");
        assert_eq!("status", n);
        assert_eq!(n, String::from("status"));
        assert_eq!(n.as_str(), "status");
        assert!(n.starts_with("sta"));
        assert_eq!(format!("{n} {n:?}"), "status \"status\"");
        assert_eq!(Name::from("a").cmp(&Name::from("b")), Ordering::Less);
        assert_eq!(Name::default(), "");
        let s: String = Name::from("uncommon").into();
        assert_eq!(s, "uncommon");
    }
}
