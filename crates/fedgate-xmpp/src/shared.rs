//! [`SharedStr`]: the text of an attribute value or a text node. A parsed stanza keeps all its
//! attribute values and text in *one* shared allocation, with its bytes as received (a value
//! that reads as received is a slice of those bytes; one that had to be decoded, of the
//! decoded text kept before them), and each value is a slice of it (a reference count and a
//! range, no allocation of its own); a value built by code is an owned string (or a
//! `'static` one).
//!
//! The type reads like a string: it derefs to `str`, compares equal to `str`, `&str` and
//! `String`, orders and hashes like its text, displays as its text, and is built from `&str` /
//! `String`. Whether a value is shared is invisible except in [`SharedStr::heap_size`] and
//! [`SharedStr::allocation_id`], which memory accounting uses (a shared buffer is counted once
//! for the whole element tree). Keeping one value alive (a clone of it) keeps the stanza's
//! whole shared buffer alive: call [`SharedStr::detach`] before storing a value for long.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// A string value: `'static`, owned, or a slice of a shared buffer (see the module
/// documentation).
#[derive(Clone)]
pub struct SharedStr(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Owned(String),
    /// `buf[start..end]`; both offsets are on character boundaries (checked when built).
    Slice {
        buf: Arc<str>,
        start: u32,
        end: u32,
    },
    /// A range of the stanza the parser is building, before its buffer is shared
    /// ([`SharedStr::seal`]): of its wire bytes when `wire`, else of its side buffer (decoded
    /// values and text); reads as empty. Never leaves the parser.
    Pending {
        start: u32,
        end: u32,
        wire: bool,
    },
}

impl SharedStr {
    /// The empty string.
    pub const EMPTY: SharedStr = SharedStr(Repr::Static(""));

    /// A value from a `'static` string (never allocates).
    pub const fn from_static(s: &'static str) -> Self {
        SharedStr(Repr::Static(s))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Owned(s) => s,
            Repr::Slice { buf, start, end } => {
                buf.get(*start as usize..*end as usize).unwrap_or("")
            }
            Repr::Pending { .. } => "",
        }
    }

    /// Bytes of heap this value owns alone (an owned string's capacity; 0 for a static value
    /// or a slice of a shared buffer, see [`shared_heap_size`](Self::shared_heap_size)).
    pub fn heap_size(&self) -> usize {
        match &self.0 {
            Repr::Owned(s) => s.capacity(),
            _ => 0,
        }
    }

    /// Bytes of the shared buffer this value is a slice of (the text after the two reference
    /// counts, padded to their alignment), 0 when it is not a slice. Shared with every other
    /// value of the same stanza: count it once per [`allocation_id`](Self::allocation_id).
    pub fn shared_heap_size(&self) -> usize {
        match &self.0 {
            Repr::Slice { buf, .. } => arc_str_size(buf.len()),
            _ => 0,
        }
    }

    /// Address identifying the shared buffer (`None` when the value is not a slice of one).
    pub fn allocation_id(&self) -> Option<usize> {
        match &self.0 {
            Repr::Slice { buf, .. } => Some(Arc::as_ptr(buf) as *const u8 as usize),
            _ => None,
        }
    }

    /// An owned copy of the text that keeps no shared buffer alive (no copy for an owned or
    /// static value).
    pub fn detach(self) -> SharedStr {
        match self.0 {
            Repr::Slice { .. } => SharedStr(Repr::Owned(self.as_str().to_owned())),
            _ => self,
        }
    }

    /// The text as a `String` (moved out of an owned value, copied otherwise).
    pub fn into_string(self) -> String {
        match self.0 {
            Repr::Owned(s) => s,
            _ => self.as_str().to_owned(),
        }
    }

    /// A range of the parser's side buffer (decoded values and text) not shared yet (see
    /// [`seal`](Self::seal)).
    pub(crate) fn pending(start: usize, end: usize) -> Option<SharedStr> {
        Self::pending_in(start, end, false)
    }

    /// A range of the wire bytes of the element the parser is building (a value or text that
    /// reads as it was received), not shared yet (see [`seal`](Self::seal)).
    pub(crate) fn pending_wire(start: usize, end: usize) -> Option<SharedStr> {
        Self::pending_in(start, end, true)
    }

    fn pending_in(start: usize, end: usize, wire: bool) -> Option<SharedStr> {
        if start == end {
            return Some(SharedStr::EMPTY);
        }
        Some(SharedStr(Repr::Pending {
            start: u32::try_from(start).ok()?,
            end: u32::try_from(end).ok()?,
            wire,
        }))
    }

    /// Turn a pending range into a slice of `buf`, the stanza's shared buffer: its side
    /// buffer, then from `wire_at` its wire bytes (a wire range is moved by `wire_at`). A
    /// range that is not on character boundaries of `buf` (never produced by the parser)
    /// becomes empty rather than panicking.
    #[inline]
    pub(crate) fn seal(&mut self, buf: &Arc<str>, wire_at: u32) {
        if let Repr::Pending { start, end, wire } = self.0 {
            let at = if wire { wire_at } else { 0 };
            let (start, end) = (start.saturating_add(at), end.saturating_add(at));
            self.0 = if buf.get(start as usize..end as usize).is_some() {
                Repr::Slice {
                    buf: Arc::clone(buf),
                    start,
                    end,
                }
            } else {
                Repr::Static("")
            };
        }
    }
}

/// What an `Arc<str>` (or `Arc<[T]>`) of `len` bytes allocates: two counters and the data,
/// padded to the counters' alignment.
pub(crate) fn arc_str_size(len: usize) -> usize {
    (2 * std::mem::size_of::<usize>() + len).next_multiple_of(std::mem::align_of::<usize>())
}

impl Default for SharedStr {
    fn default() -> Self {
        SharedStr::EMPTY
    }
}

impl Deref for SharedStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for SharedStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for SharedStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for SharedStr {
    fn from(s: &str) -> Self {
        if s.is_empty() {
            return SharedStr::EMPTY;
        }
        SharedStr(Repr::Owned(s.to_owned()))
    }
}

impl From<String> for SharedStr {
    fn from(s: String) -> Self {
        SharedStr(Repr::Owned(s))
    }
}

impl From<Box<str>> for SharedStr {
    fn from(s: Box<str>) -> Self {
        SharedStr(Repr::Owned(s.into_string()))
    }
}

impl From<std::borrow::Cow<'_, str>> for SharedStr {
    fn from(s: std::borrow::Cow<'_, str>) -> Self {
        SharedStr(Repr::Owned(s.into_owned()))
    }
}

impl From<&String> for SharedStr {
    fn from(s: &String) -> Self {
        SharedStr::from(s.as_str())
    }
}

impl From<&SharedStr> for SharedStr {
    fn from(s: &SharedStr) -> Self {
        s.clone()
    }
}

impl From<SharedStr> for String {
    fn from(s: SharedStr) -> String {
        s.into_string()
    }
}

impl PartialEq for SharedStr {
    fn eq(&self, other: &SharedStr) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for SharedStr {}

impl PartialOrd for SharedStr {
    fn partial_cmp(&self, other: &SharedStr) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SharedStr {
    fn cmp(&self, other: &SharedStr) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for SharedStr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

macro_rules! eq_with {
    ($($t:ty),*) => {$(
        impl PartialEq<$t> for SharedStr {
            fn eq(&self, other: &$t) -> bool {
                self.as_str() == AsRef::<str>::as_ref(other)
            }
        }
        impl PartialEq<SharedStr> for $t {
            fn eq(&self, other: &SharedStr) -> bool {
                AsRef::<str>::as_ref(self) == other.as_str()
            }
        }
    )*};
}
eq_with!(str, &str, String);

impl fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_share_one_buffer_and_read_like_strings() {
        // Side buffer "hello ", wire bytes "world" from 6.
        let buf: Arc<str> = Arc::from("hello world");
        let mut a = SharedStr::pending(0, 5).unwrap();
        let mut b = SharedStr::pending_wire(0, 5).unwrap();
        let mut c = SharedStr::pending_wire(1, 3).unwrap();
        assert_eq!(a, "");
        a.seal(&buf, 6);
        b.seal(&buf, 6);
        c.seal(&buf, 6);
        assert_eq!(a, "hello");
        assert_eq!("world", b);
        assert_eq!(c, "or");
        assert_eq!(a.allocation_id(), b.allocation_id());
        assert_eq!(a.heap_size(), 0);
        assert_eq!(a.shared_heap_size(), arc_str_size(11));
        let d = b.clone().detach();
        assert_eq!(d, b);
        assert_eq!(d.allocation_id(), None);
        assert_eq!(d.heap_size(), 5);
        assert_eq!(format!("{a} {b:?}"), "hello \"world\"");
        assert_eq!(String::from(a), "hello");
        // Out-of-range or split characters never panic.
        let mut bad = SharedStr::pending(3, 40).unwrap();
        bad.seal(&buf, 0);
        assert_eq!(bad, "");
        let mut bad = SharedStr::pending_wire(3, 5).unwrap();
        bad.seal(&buf, 7);
        assert_eq!(bad, "");
        let e: Arc<str> = Arc::from("é");
        let mut split = SharedStr::pending(0, 1).unwrap();
        split.seal(&e, 0);
        assert_eq!(split, "");
    }
}
