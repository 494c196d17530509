//! The attributes of an [`Element`](crate::Element): [`Attrs`], a small map kept sorted by
//! (namespace, name), and [`Attr`], one attribute.
//!
//! A namespaced attribute holds its namespace as a shared [`Namespace`], so a long URI used by
//! many attributes is stored once. Keys can still be written as strings, as before:
//! the plain name for unprefixed attributes, `xml:<name>` for the reserved `xml` namespace
//! (e.g. `xml:lang`, stored as that name with no namespace), and Clark notation `{uri}name`
//! for attributes in any other namespace.

use std::cmp::Ordering;
use std::fmt;

use crate::name::Name;
use crate::namespace::Namespace;
use crate::shared::SharedStr;

/// One attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Namespace of the attribute; empty for unprefixed attributes and for `xml:*` ones.
    pub namespace: Namespace,
    /// Local name (`xml:lang` for the `xml` namespace).
    pub name: Name,
    /// Value, references resolved (a slice of the stanza's shared buffer when parsed).
    pub value: SharedStr,
}

impl Attr {
    fn key(&self) -> (&str, &str) {
        (self.namespace.as_str(), self.name.as_str())
    }

    /// The key in string form: `name`, `xml:name` or `{uri}name`.
    pub fn clark_key(&self) -> String {
        if self.namespace.is_empty() {
            self.name.to_string()
        } else {
            format!("{{{}}}{}", self.namespace, self.name)
        }
    }
}

/// Order two strings as `str::cmp` does, without calling `memcmp` when one is empty.
///
/// An empty `&str` may point at a dangling address (`""` literals and empty constants such as
/// [`Namespace::EMPTY`] do), and glibc's AVX-512 `memcmp` reads even 0 bytes with a masked load,
/// which costs a fault-suppression assist when the address is not mapped: ~300 ns per call on
/// the development VM, against ~5 ns. Every unprefixed attribute's namespace is empty, so every
/// attribute lookup and the parser's sort of each element's attributes hit it; it was 42 % of
/// the gateway's CPU per relayed stanza (docs/benchmarks.md, issue 26).
///
/// Two texts whose first bytes differ (most pairs of attribute names: `from`, `id`, `to`,
/// `xml:lang`) are ordered by those bytes, without a call.
#[inline]
fn cmp_text(a: &str, b: &str) -> Ordering {
    match (a.as_bytes().first(), b.as_bytes().first()) {
        (Some(x), Some(y)) if x != y => x.cmp(y),
        (Some(_), Some(_)) => a.cmp(b),
        _ => a.len().cmp(&b.len()),
    }
}

/// Order attribute keys (namespace, name) as the tuple's `cmp` does ([`cmp_text`]).
fn cmp_key(a: (&str, &str), b: (&str, &str)) -> Ordering {
    cmp_text(a.0, b.0).then_with(|| cmp_text(a.1, b.1))
}

/// Split a string key into (namespace, local name): `{uri}name` → (`uri`, `name`), anything
/// else → (``, key).
pub fn split_clark(key: &str) -> (&str, &str) {
    if let Some(rest) = key.strip_prefix('{') {
        if let Some((uri, local)) = rest.rsplit_once('}') {
            return (uri, local);
        }
    }
    ("", key)
}

/// The attributes of one element, sorted by (namespace, name), each key once.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Attrs(Vec<Attr>);

/// Two attributes with the same namespace and name (refused by the parser as not
/// well-formed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateAttr;

impl Attrs {
    /// No attributes.
    pub const fn new() -> Self {
        Attrs(Vec::new())
    }

    /// Build from a list in any order; a repeated key is an error. Keeps the list's
    /// allocation (so the caller controls its capacity).
    pub fn from_vec(mut v: Vec<Attr>) -> Result<Attrs, DuplicateAttr> {
        if v.len() <= 12 {
            // Few attributes (nearly every element): an insertion sort, which meets a repeated
            // key where the second one's insertion stops (the largest key not above it).
            for i in 1..v.len() {
                let mut j = i;
                while j > 0 {
                    match cmp_key(v[j - 1].key(), v[j].key()) {
                        Ordering::Greater => {
                            v.swap(j - 1, j);
                            j -= 1;
                        }
                        Ordering::Equal => return Err(DuplicateAttr),
                        Ordering::Less => break,
                    }
                }
            }
            return Ok(Attrs(v));
        }
        v.sort_unstable_by(|a, b| cmp_key(a.key(), b.key()));
        if v.windows(2)
            .any(|w| cmp_key(w[0].key(), w[1].key()) == Ordering::Equal)
        {
            return Err(DuplicateAttr);
        }
        Ok(Attrs(v))
    }

    fn find(&self, namespace: &str, name: &str) -> Result<usize, usize> {
        self.0
            .binary_search_by(|a| cmp_key(a.key(), (namespace, name)))
    }

    /// Number of attributes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Capacity of the underlying list (for memory accounting).
    pub fn capacity(&self) -> usize {
        self.0.capacity()
    }

    /// The attributes in order, mutable (keys must not change: the list stays sorted).
    pub(crate) fn iter_mut(&mut self) -> std::slice::IterMut<'_, Attr> {
        self.0.iter_mut()
    }

    /// The attributes in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Attr> {
        self.0.iter()
    }

    /// Value of an attribute by string key (`"to"`, `"xml:lang"`, `"{uri}name"`).
    pub fn get(&self, key: &str) -> Option<&str> {
        let (ns, name) = split_clark(key);
        self.get_ns(ns, name)
    }

    /// Value of an attribute by namespace (empty for none) and local name.
    pub fn get_ns(&self, namespace: &str, name: &str) -> Option<&str> {
        self.find(namespace, name)
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    /// Whether the attribute exists (string key).
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Set an attribute by string key, returning the previous value.
    pub fn insert(&mut self, key: impl Into<Name>, value: impl Into<SharedStr>) -> Option<String> {
        let key = key.into();
        match split_clark(&key) {
            ("", _) => self.insert_ns(Namespace::EMPTY, key, value),
            (ns, name) => {
                let (ns, name) = (Namespace::from(ns), Name::from(name));
                self.insert_ns(ns, name, value)
            }
        }
    }

    /// Set an attribute in a namespace (empty for none), returning the previous value.
    pub fn insert_ns(
        &mut self,
        namespace: impl Into<Namespace>,
        name: impl Into<Name>,
        value: impl Into<SharedStr>,
    ) -> Option<String> {
        let mut attr = Attr {
            namespace: namespace.into(),
            name: name.into(),
            value: value.into(),
        };
        if attr.namespace == crate::ns::XML {
            // Stored as the parser stores it: `xml:name`, no namespace.
            attr.name = Name::from(format!("xml:{}", attr.name));
            attr.namespace = Namespace::EMPTY;
        }
        match self.find(&attr.namespace, &attr.name) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].value, attr.value).into_string()),
            Err(i) => {
                self.0.insert(i, attr);
                None
            }
        }
    }

    /// Remove an attribute by string key, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let (ns, name) = split_clark(key);
        let i = self.find(ns, name).ok()?;
        Some(self.0.remove(i).value.into_string())
    }
}

impl<'a> IntoIterator for &'a Attrs {
    type Item = &'a Attr;
    type IntoIter = std::slice::Iter<'a, Attr>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<K: Into<Name>, V: Into<SharedStr>> FromIterator<(K, V)> for Attrs {
    /// From (string key, value) pairs; a later pair replaces an earlier one with the same key.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut a = Attrs::new();
        for (k, v) in iter {
            a.insert(k, v);
        }
        a
    }
}

impl fmt::Debug for Attrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|a| (a.clark_key(), &a.value)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_keys_and_namespaced_keys_agree() {
        let mut a: Attrs = [("to", "x"), ("{urn:q}k", "v"), ("xml:lang", "en")]
            .into_iter()
            .collect();
        assert_eq!(a.get("to"), Some("x"));
        assert_eq!(a.get("{urn:q}k"), Some("v"));
        assert_eq!(a.get_ns("urn:q", "k"), Some("v"));
        assert_eq!(a.get("xml:lang"), Some("en"));
        assert_eq!(a.get("k"), None);
        assert_eq!(a.insert_ns("urn:q", "k", "w"), Some("v".into()));
        assert_eq!(a.remove("{urn:q}k"), Some("w".into()));
        assert!(!a.contains_key("{urn:q}k"));
        assert_eq!(a.len(), 2);
        assert_eq!(format!("{a:?}"), r#"{"to": "x", "xml:lang": "en"}"#);
    }

    #[test]
    fn keys_order_as_the_tuples_of_their_text() {
        let texts = ["", "a", "ab", "b", "to", "urn:x", "urn:xy", "\u{e9}"];
        for a0 in texts {
            for a1 in texts {
                for b0 in texts {
                    for b1 in texts {
                        assert_eq!(
                            cmp_key((a0, a1), (b0, b1)),
                            (a0, a1).cmp(&(b0, b1)),
                            "({a0:?}, {a1:?}) vs ({b0:?}, {b1:?})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn sorted_and_duplicates_refused() {
        let at = |ns: &str, n: &str| Attr {
            namespace: ns.into(),
            name: n.into(),
            value: SharedStr::EMPTY,
        };
        let a = Attrs::from_vec(vec![at("urn:b", "k"), at("", "z"), at("", "a")]).unwrap();
        let keys: Vec<String> = a.iter().map(Attr::clark_key).collect();
        assert_eq!(keys, ["a", "z", "{urn:b}k"]);
        assert_eq!(
            Attrs::from_vec(vec![at("urn:b", "k"), at("", "a"), at("urn:b", "k")]),
            Err(DuplicateAttr)
        );
        // Every rotation of short and long lists (both sorts), with and without a repeat.
        let names: Vec<String> = (0..20).map(|i| format!("n{}", (i * 7) % 20)).collect();
        for len in [2, 5, 12, 13, 20] {
            let list: Vec<&str> = names.iter().take(len).map(String::as_str).collect();
            let mut want: Vec<&str> = list.clone();
            want.sort();
            for r in 0..len {
                let mut rotated = list.clone();
                rotated.rotate_left(r);
                let v = rotated.iter().map(|n| at("", n)).collect();
                let a = Attrs::from_vec(v).expect("no repeat");
                let got: Vec<&str> = a.iter().map(|x| x.name.as_str()).collect();
                assert_eq!(got, want, "{len} {r}");
                let mut v: Vec<Attr> = rotated.iter().map(|n| at("", n)).collect();
                v.insert(r / 2, at("", rotated[len - 1 - r / 3]));
                assert_eq!(Attrs::from_vec(v), Err(DuplicateAttr), "{len} {r}");
            }
        }
    }
}
