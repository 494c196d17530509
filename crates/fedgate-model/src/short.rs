//! [`ShortStr`]: the text of an address part (a domain, a localpart, a resourcepart), kept
//! inline when short (up to [`INLINE`] bytes: nearly every domain and user name on the wire) and
//! in one shared allocation otherwise, so that building one from a part already in normal form,
//! and copying it into a decision, a user key or a session entry, allocate nothing in the
//! common case (issue 26). It compares, orders and hashes exactly like its text (as `String`
//! does), so swapping it for a `String` inside a key changes no map.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// Longest text stored inline.
pub const INLINE: usize = 22;

/// Immutable text: inline when at most [`INLINE`] bytes, shared (`Arc<str>`) otherwise. Cheap to
/// clone (a copy of 24 bytes, or a reference count).
#[derive(Clone)]
pub struct ShortStr(Repr);

#[derive(Clone)]
enum Repr {
    /// `buf[..len]` holds valid UTF-8 (copied from a `&str`).
    Inline {
        len: u8,
        buf: [u8; INLINE],
    },
    Shared(Arc<str>),
}

impl ShortStr {
    /// The text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Always valid: copied from a `str` of exactly that length.
            Repr::Inline { len, buf } => std::str::from_utf8(&buf[..*len as usize]).unwrap_or(""),
            Repr::Shared(s) => s,
        }
    }

    /// The text's bytes, without the UTF-8 check [`ShortStr::as_str`] makes on inline text: what
    /// comparisons read.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, buf } => &buf[..*len as usize],
            Repr::Shared(s) => s.as_bytes(),
        }
    }

    /// The text as a `String` (one copy).
    pub fn into_string(self) -> String {
        self.as_str().to_owned()
    }
}

impl From<&str> for ShortStr {
    fn from(s: &str) -> Self {
        if s.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..s.len()].copy_from_slice(s.as_bytes());
            ShortStr(Repr::Inline {
                len: s.len() as u8,
                buf,
            })
        } else {
            ShortStr(Repr::Shared(Arc::from(s)))
        }
    }
}

impl From<String> for ShortStr {
    fn from(s: String) -> Self {
        ShortStr::from(s.as_str())
    }
}

impl Deref for ShortStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ShortStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for ShortStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for ShortStr {
    fn eq(&self, other: &ShortStr) -> bool {
        // As `str` compares: byte for byte.
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for ShortStr {}

impl PartialOrd for ShortStr {
    fn partial_cmp(&self, other: &ShortStr) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ShortStr {
    fn cmp(&self, other: &ShortStr) -> Ordering {
        // As `str` orders: by bytes.
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl Hash for ShortStr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Debug for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn reads_compares_and_hashes_like_its_text() {
        let h = std::collections::hash_map::RandomState::new();
        for s in [
            "",
            "corp.example",
            "exactly-22-bytes-long!",
            "a-much-longer-domain.partner.example",
            "caf\u{e9}",
        ] {
            let v = ShortStr::from(s);
            assert_eq!(v.as_str(), s);
            assert_eq!(format!("{v}|{v:?}"), format!("{s}|{s:?}"));
            assert_eq!(h.hash_one(&v), h.hash_one(s.to_owned()));
            assert_eq!(v.clone(), v);
            assert_eq!(v.clone().into_string(), s);
        }
        assert_eq!(std::mem::size_of::<ShortStr>(), 24);
        assert!(ShortStr::from("a") < ShortStr::from("b"));
        assert!(ShortStr::from("a".repeat(30).as_str()) > ShortStr::from("a"));
    }
}
