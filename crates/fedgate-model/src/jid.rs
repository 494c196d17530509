//! Addresses (JIDs) normalised the way the organisation's own XMPP servers normalise them, so that
//! the user policy, the grants and the PublicUnverified authorisations are looked up under the
//! identity the internal server will deliver to, and the stanza forwarded carries that identity.
//!
//! Owns: the split of an address into localpart, domainpart and resourcepart (RFC 6122 §2: the
//! resource starts at the first `/`, the localpart ends at the first `@` before it), the
//! preparation of each part, and the errors for an address that cannot be prepared.
//!
//! **Which profile.** The internal servers fedgate fronts apply the stringprep profiles of RFC 6122
//! (XMPP's address format before PRECIS): Prosody 0.12 calls nodeprep/nameprep/resourceprep through
//! `util.encodings` (libidn, or ICU's `usprep` RFC 3920 profiles in Debian's build), ejabberd 23
//! through its own `stringprep` (p1_stringprep). So localparts go through **nodeprep** and
//! resourceparts through **resourceprep**, using the `stringprep` crate (RFC 3454 tables; the
//! implementation tokio-postgres uses for SASLprep). Domains go through [`Domain::parse`]
//! (UTS-46), as the hosted and partner domains themselves do.
//!
//! **Where PRECIS (RFC 8265 UsernameCaseMapped) disagrees, nodeprep wins**, because it is what
//! the internal server delivers to. PRECIS lowercases without case folding (`Straße` stays
//! `straße`, nodeprep gives `strasse`, the user Prosody and ejabberd deliver to): keying the
//! policy on the PRECIS form would miss that user's grant, which is this very bug. Refusing the
//! addresses on which the two disagree would be safe but would refuse real users' variants that
//! the internal servers accept (soft hyphens, ligatures and other compatibility characters, all
//! DISALLOWED in PRECIS), and turn a policy bounce into `jid-malformed`; so fedgate applies
//! nodeprep only.
//!
//! **Stricter than the internal server, never looser**: characters unassigned in Unicode 3.2 (the
//! repertoire of RFC 3454) are refused, as ejabberd and Prosody's strict mode do: their mapping
//! is unknown to the internal server's tables, so a newer Unicode case folding could map them
//! where the internal server does not. Each part is at most 1023 bytes, before (as Prosody and
//! ejabberd check) and after preparation (RFC 6122 §2).

use std::fmt;

use crate::domain::{Domain, DomainError};
use crate::policy::UserJid;
use crate::short::ShortStr;

/// Longest localpart, domainpart or resourcepart in bytes (RFC 6122 §2), before and after
/// preparation.
pub const MAX_PART_BYTES: usize = 1023;

/// Which part of an address an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    Local,
    Domain,
    Resource,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Local => "the part before '@'",
            Part::Domain => "the domain",
            Part::Resource => "the part after '/'",
        })
    }
}

/// Why an address cannot be normalised. The `Display` text is meant for admins and logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JidError {
    /// A separator with nothing after it (resource) or before it (localpart), also when
    /// preparation maps every character to nothing.
    #[error("{0} is empty")]
    Empty(Part),
    #[error("{0} is longer than {MAX_PART_BYTES} bytes")]
    TooLong(Part),
    /// nodeprep or resourceprep refused the part: a prohibited or unassigned character
    /// (shown escaped) or a bidirectional-text rule of RFC 3454 §6.
    #[error("{part} is not allowed in an XMPP address ({reason})")]
    Prohibited { part: Part, reason: String },
    #[error("{0}")]
    Domain(#[from] DomainError),
}

/// `text` with every character but printable ASCII written as `\u{..}`: an address from the wire
/// may hold controls or look-alikes, which must not reach a log line or an error as they are.
fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == ' ' || c.is_ascii_graphic() {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{{{:04x}}}", u32::from(c)));
        }
    }
    out
}

fn prepared(
    part: Part,
    raw: &str,
    prep: fn(&str) -> Result<std::borrow::Cow<'_, str>, stringprep::Error>,
) -> Result<String, JidError> {
    if raw.is_empty() {
        return Err(JidError::Empty(part));
    }
    if raw.len() > MAX_PART_BYTES {
        return Err(JidError::TooLong(part));
    }
    let out = prep(raw).map_err(|e| JidError::Prohibited {
        part,
        reason: escaped(&e.to_string()),
    })?;
    if out.is_empty() {
        return Err(JidError::Empty(part));
    }
    if out.len() > MAX_PART_BYTES {
        return Err(JidError::TooLong(part));
    }
    Ok(out.into_owned())
}

/// A localpart through nodeprep (RFC 6122 Appendix A): case folded, NFKC, the characters of
/// RFC 3454 table B.1 (soft hyphen, zero-width space, …) removed; refused when empty, too long,
/// or holding a prohibited (`"&'/:<>@`, spaces, controls, …), unassigned or bidi-breaking
/// character.
pub fn nodeprep(local: &str) -> Result<String, JidError> {
    prepared(Part::Local, local, stringprep::nodeprep)
}

/// A resourcepart through resourceprep (RFC 6122 Appendix B): NFKC and table B.1, case kept.
pub fn resourceprep(resource: &str) -> Result<String, JidError> {
    prepared(Part::Resource, resource, stringprep::resourceprep)
}

/// Whether nodeprep leaves `local` as it is and accepts it, decided on ASCII alone: printable
/// ASCII other than space, no uppercase (case folded), none of `"&'/:<>@` (prohibited by
/// nodeprep). On ASCII, NFKC and table B.1 change nothing and the bidi rules cannot fail.
fn is_normal_ascii_local(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= MAX_PART_BYTES
        && local.bytes().all(|b| {
            (0x21..0x7F).contains(&b)
                && !b.is_ascii_uppercase()
                && !matches!(b, b'"' | b'&' | b'\'' | b'/' | b':' | b'<' | b'>' | b'@')
        })
}

/// Whether resourceprep leaves `resource` as it is and accepts it, decided on ASCII alone:
/// printable ASCII other than space (the space is allowed, but left to the full path).
fn is_normal_ascii_resource(resource: &str) -> bool {
    !resource.is_empty()
        && resource.len() <= MAX_PART_BYTES
        && resource.bytes().all(|b| (0x21..0x7F).contains(&b))
}

/// [`nodeprep`], without building a new string when the part is already in normal form; and
/// whether it was (the part is then exactly `local`).
fn nodeprep_short(local: &str) -> Result<(ShortStr, bool), JidError> {
    if is_normal_ascii_local(local) {
        return Ok((ShortStr::from(local), true));
    }
    nodeprep(local).map(|l| (ShortStr::from(l), false))
}

/// [`resourceprep`], without building a new string when the part is already in normal form; and
/// whether it was (the part is then exactly `resource`).
fn resourceprep_short(resource: &str) -> Result<(ShortStr, bool), JidError> {
    if is_normal_ascii_resource(resource) {
        return Ok((ShortStr::from(resource), true));
    }
    resourceprep(resource).map(|r| (ShortStr::from(r), false))
}

/// A normalised address: nodeprep'd localpart, domain as [`Domain::parse`] gives it,
/// resourceprep'd resourcepart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NormalJid {
    local: Option<ShortStr>,
    domain: Domain,
    resource: Option<ShortStr>,
}

impl NormalJid {
    /// The localpart, if any.
    pub fn local(&self) -> Option<&str> {
        self.local.as_deref()
    }

    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// The resourcepart, if any.
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    /// The user the address names (its bare JID), or None for a server address (no localpart).
    pub fn user(&self) -> Option<UserJid> {
        self.local
            .as_ref()
            .map(|l| UserJid::from_prepared(l.clone(), self.domain.clone()))
    }
}

impl NormalJid {
    /// Whether `text` is exactly this address as [`Display`](fmt::Display) writes it
    /// (`local@domain/resource`), compared without building the text.
    pub fn is_written_as(&self, text: &str) -> bool {
        let rest = match &self.local {
            Some(l) => match text
                .strip_prefix(l.as_str())
                .and_then(|r| r.strip_prefix('@'))
            {
                Some(r) => r,
                None => return false,
            },
            None => text,
        };
        let Some(rest) = rest.strip_prefix(self.domain.as_str()) else {
            return false;
        };
        match &self.resource {
            Some(r) => rest.strip_prefix('/') == Some(r.as_str()),
            None => rest.is_empty(),
        }
    }
}

impl fmt::Display for NormalJid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = &self.local {
            write!(f, "{l}@")?;
        }
        write!(f, "{}", self.domain)?;
        if let Some(r) = &self.resource {
            write!(f, "/{r}")?;
        }
        Ok(())
    }
}

/// An address cut at its separators (RFC 6122 §2): the resource starts at the first `/`, the
/// localpart ends at the first `@` before it. Nothing is checked or prepared: [`split`] once,
/// then the stream-level rules read [`Parts::domain`] and [`normalise_parts`] prepares the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts<'a> {
    pub local: Option<&'a str>,
    pub domain: &'a str,
    pub resource: Option<&'a str>,
}

/// `address` cut into its [`Parts`] (one pass over its bytes).
pub fn split(address: &str) -> Parts<'_> {
    let b = address.as_bytes();
    // Both separators are ASCII: the byte positions are character boundaries.
    let (rest, resource) = match b.iter().position(|&c| c == b'/') {
        Some(i) => (&address[..i], Some(&address[i + 1..])),
        None => (address, None),
    };
    let (local, domain) = match rest.as_bytes().iter().position(|&c| c == b'@') {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    Parts {
        local,
        domain,
        resource,
    }
}

/// Normalise an address as it appears in a stanza's `from` or `to`: split (RFC 6122 §2), then
/// each part prepared. The gateway calls this on every routed stanza before it looks up the user
/// policy, grants or authorisations, and forwards the result; an error means the stanza is
/// refused (`jid-malformed`), never forwarded as it came.
pub fn normalise(address: &str) -> Result<NormalJid, JidError> {
    let parts = split(address);
    normalise_parts(parts, |d| Domain::parse(d).map_err(JidError::from)).map(|n| n.jid)
}

/// A normalised address, and whether the text it was normalised from is that address written
/// in normal form already (then a stanza carrying it needs no rewrite).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalised {
    pub jid: NormalJid,
    pub as_written: bool,
}

/// [`normalise`] of an address already [`split`], its domain given by `domain` (called with
/// [`Parts::domain`] once it is known not to be empty or too long): the route decision passes the
/// [`Domain`] it parsed for the stream-level rules, so the domain is not parsed twice. Errors
/// come in the order [`normalise`] gives them: an empty or too long domain, the localpart, the
/// domain, the resourcepart.
pub fn normalise_parts(
    parts: Parts<'_>,
    domain: impl FnOnce(&str) -> Result<Domain, JidError>,
) -> Result<Normalised, JidError> {
    if parts.domain.is_empty() {
        return Err(JidError::Empty(Part::Domain));
    }
    if parts.domain.len() > MAX_PART_BYTES {
        return Err(JidError::TooLong(Part::Domain));
    }
    let mut as_written = true;
    let local = match parts.local.map(nodeprep_short).transpose()? {
        Some((l, same)) => {
            as_written &= same;
            Some(l)
        }
        None => None,
    };
    let domain = domain(parts.domain)?;
    as_written &= domain.is(parts.domain);
    let resource = match parts.resource.map(resourceprep_short).transpose()? {
        Some((r, same)) => {
            as_written &= same;
            Some(r)
        }
        None => None,
    };
    Ok(Normalised {
        jid: NormalJid {
            local,
            domain,
            resource,
        },
        as_written,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ascii_fast_paths_agree_with_stringprep() {
        // Every printable ASCII character alone, inside a part and at its edges.
        for b in 0x20u8..0x7F {
            let c = b as char;
            for t in [
                c.to_string(),
                format!("ab{c}cd"),
                format!("{c}x"),
                format!("x{c}"),
            ] {
                if is_normal_ascii_local(&t) {
                    assert_eq!(nodeprep(&t).as_deref(), Ok(t.as_str()), "{t:?}");
                }
                if is_normal_ascii_resource(&t) {
                    assert_eq!(resourceprep(&t).as_deref(), Ok(t.as_str()), "{t:?}");
                }
                // Same result; "as given" only where it is.
                let short = nodeprep_short(&t);
                assert_eq!(
                    short.clone().map(|s| s.0.into_string()),
                    nodeprep(&t),
                    "{t:?}"
                );
                assert!(short.is_err() || short.unwrap().1 == is_normal_ascii_local(&t));
                let short = resourceprep_short(&t);
                assert_eq!(
                    short.clone().map(|s| s.0.into_string()),
                    resourceprep(&t),
                    "{t:?}"
                );
                assert!(short.is_err() || short.unwrap().1 == is_normal_ascii_resource(&t));
            }
        }
        assert!(is_normal_ascii_local("romeo"));
        assert!(!is_normal_ascii_local("Romeo"));
        assert!(!is_normal_ascii_local(""));
        assert!(is_normal_ascii_resource("Orchard-1"));
        let long = "a".repeat(MAX_PART_BYTES + 1);
        assert!(!is_normal_ascii_local(&long) && !is_normal_ascii_resource(&long));
    }

    fn local(s: &str) -> String {
        nodeprep(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn refused(s: &str) -> JidError {
        match nodeprep(s) {
            Ok(out) => panic!("{s:?} was accepted as {out:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn an_address_is_written_as_its_display_text_only() {
        for (addr, same, other) in [
            (
                "Alice@Corp.example/Phone",
                "alice@corp.example/Phone",
                "alice@corp.example/phone",
            ),
            (
                "alice@corp.example",
                "alice@corp.example",
                "alice@corp.example/",
            ),
            ("corp.example/r", "corp.example/r", "corp.example"),
            ("corp.example", "corp.example", "@corp.example"),
            ("a@b.example/c/d", "a@b.example/c/d", "a@b.example/c"),
        ] {
            let n = normalise(addr).unwrap();
            assert_eq!(n.to_string(), same);
            assert!(n.is_written_as(same), "{addr} as {same}");
            assert!(!n.is_written_as(other), "{addr} as {other}");
            assert!(!n.is_written_as(addr) || addr == same, "{addr}");
        }
    }

    #[test]
    fn case_and_width_variants_are_the_same_user() {
        for v in [
            "alice",
            "ALICE",
            "Alice",
            "ＡＬＩＣＥ",
            "ａｌｉｃｅ",
            "ＡｌＩｃＥ",
            "al\u{00AD}ice", // soft hyphen: table B.1, mapped to nothing
            "\u{00AD}alice\u{00AD}",
            "al\u{200B}ice",         // zero-width space
            "al\u{200C}i\u{200D}ce", // zero-width non-joiner / joiner
            "ali\u{2060}ce",         // word joiner
            "a\u{FEFF}lice",         // zero-width no-break space
            "ali\u{FE0F}ce",         // variation selector 16
            "al\u{034F}ice",         // combining grapheme joiner
            "\u{1806}alice",         // Mongolian todo soft hyphen
        ] {
            assert_eq!(local(v), "alice", "{v:?}");
        }
    }

    #[test]
    fn compatibility_variants_are_the_same_user() {
        assert_eq!(local("\u{FB01}ona"), "fiona"); // ﬁ ligature
        assert_eq!(local("\u{FB00}"), "ff");
        assert_eq!(local("A\u{030A}sa"), "\u{00E5}sa"); // decomposed Å composes (NFKC)
        assert_eq!(local("\u{00C5}sa"), "\u{00E5}sa");
        assert_eq!(local("\u{212B}sa"), "\u{00E5}sa"); // ANGSTROM SIGN
        assert_eq!(local("Stra\u{00DF}e"), "strasse"); // case folding, not lowercasing
        assert_eq!(local("\u{212A}elvin"), "kelvin"); // KELVIN SIGN
        assert_eq!(local("user\u{2168}"), "userix"); // ROMAN NUMERAL NINE
        assert_eq!(local("\u{2460}"), "1"); // CIRCLED DIGIT ONE
        assert_eq!(local("\u{24B8}\u{24D0}\u{24E1}\u{24DE}\u{24DB}"), "carol"); // Ⓒⓐⓡⓞⓛ
        assert_eq!(local("\u{00B5}"), "\u{03BC}"); // MICRO SIGN -> Greek mu
        assert_eq!(local("\u{01C5}"), "d\u{017E}"); // titlecase digraph Dž: folded, decomposed
        // Unchanged: already prepared text, and characters nodeprep allows as they are.
        for same in [
            "alice",
            "bob.smith",
            "o_o",
            "a+tag",
            "x#1",
            "\u{00E5}sa",
            "\u{0434}\u{0438}\u{043C}\u{0430}",
        ] {
            assert_eq!(local(same), same);
        }
    }

    #[test]
    fn prohibited_characters_are_refused() {
        for c in ['"', '&', '\'', '/', ':', '<', '>', '@'] {
            let e = refused(&format!("al{c}ice"));
            assert!(
                matches!(
                    e,
                    JidError::Prohibited {
                        part: Part::Local,
                        ..
                    }
                ),
                "{c}: {e:?}"
            );
        }
        for bad in [
            "a b",               // ASCII space (C.1.1)
            "a\u{00A0}b",        // no-break space (C.1.2)
            "a\u{3000}b",        // ideographic space (C.1.2)
            "a\tb",              // control (C.2.1)
            "a\u{0085}b",        // NEL (C.2.2)
            "a\u{E000}b",        // private use (C.3)
            "a\u{FDD0}b",        // non-character (C.4)
            "a\u{FFFD}b",        // replacement character (C.6)
            "a\u{2FF0}b",        // ideographic description (C.7)
            "a\u{202E}b",        // right-to-left override (C.8)
            "a\u{E0001}b",       // language tag (C.9)
            "ali\u{FF0F}ce",     // fullwidth solidus: NFKC gives '/'
            "ali\u{FF20}ce",     // fullwidth commercial at: NFKC gives '@'
            "ali\u{FE64}ce",     // small less-than sign: NFKC gives '<'
            "\u{05D0}1",         // RandALCat not at both ends (RFC 3454 §6)
            "\u{05D0}a\u{05D1}", // RandALCat mixed with LCat
            "\u{0221}x",         // unassigned in Unicode 3.2 (A.1)
            "\u{1F600}",         // unassigned in Unicode 3.2 (A.1)
        ] {
            let e = refused(bad);
            assert!(
                matches!(
                    e,
                    JidError::Prohibited {
                        part: Part::Local,
                        ..
                    }
                ),
                "{bad:?}: {e:?}"
            );
            // The text never carries the raw character (logs, API errors).
            assert!(e.to_string().is_ascii(), "{bad:?}: {e}");
        }
        // Right-to-left text on its own is fine.
        assert_eq!(local("\u{05D0}\u{05D1}"), "\u{05D0}\u{05D1}");
        assert_eq!(refused(""), JidError::Empty(Part::Local));
        assert_eq!(refused("\u{00AD}\u{200B}"), JidError::Empty(Part::Local));
        assert_eq!(
            refused(&"a".repeat(MAX_PART_BYTES + 1)),
            JidError::TooLong(Part::Local)
        );
        assert_eq!(local(&"a".repeat(MAX_PART_BYTES)).len(), MAX_PART_BYTES);
        // Under the limit before, over it after: U+337F (3 bytes) is NFKC "株式会社" (12 bytes).
        assert_eq!(local("\u{337F}"), "\u{682A}\u{5F0F}\u{4F1A}\u{793E}");
        assert_eq!(
            refused(&"\u{337F}".repeat(100)),
            JidError::TooLong(Part::Local)
        );
        // Over the limit before, even though preparation would shrink it (as the servers check).
        assert_eq!(
            refused(&format!("{}alice", "\u{00AD}".repeat(600))),
            JidError::TooLong(Part::Local)
        );
    }

    #[test]
    fn resources_keep_case_and_lose_b1() {
        assert_eq!(resourceprep("Phone").unwrap(), "Phone");
        assert_eq!(resourceprep("Ｐｈｏｎｅ 2").unwrap(), "Phone 2");
        assert_eq!(resourceprep("ph\u{00AD}one").unwrap(), "phone");
        assert_eq!(resourceprep("a/b@c").unwrap(), "a/b@c");
        // Spaces are allowed in resources; a no-break space becomes one (NFKC).
        assert_eq!(resourceprep("a\u{00A0}b").unwrap(), "a b");
        for bad in ["a\u{0000}b", "a\u{2028}b", "a\u{E000}b", "\u{05D0}1"] {
            assert!(
                matches!(
                    resourceprep(bad),
                    Err(JidError::Prohibited {
                        part: Part::Resource,
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
        assert_eq!(resourceprep(""), Err(JidError::Empty(Part::Resource)));
        assert_eq!(
            resourceprep(&"r".repeat(MAX_PART_BYTES + 1)),
            Err(JidError::TooLong(Part::Resource))
        );
    }

    #[test]
    fn full_addresses() {
        let n = |s: &str| normalise(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        let j = n("ＡＬＩＣＥ@ＣＯＲＰ.Example./Ｐｈｏｎｅ");
        assert_eq!(j.to_string(), "alice@corp.example/Phone");
        assert_eq!(j.local(), Some("alice"));
        assert_eq!(j.domain().as_str(), "corp.example");
        assert_eq!(j.resource(), Some("Phone"));
        assert_eq!(j.user().unwrap().to_string(), "alice@corp.example");
        // Fullwidth letters and full stop, a soft hyphen: the hosted domain itself.
        for d in [
            "ｃｏｒｐ.example",
            "corp\u{FF0E}example",
            "cor\u{00AD}p.example",
            "CORP.EXAMPLE",
        ] {
            assert_eq!(
                n(&format!("al\u{00AD}ice@{d}")).to_string(),
                "alice@corp.example"
            );
        }
        // The resource starts at the first '/', the localpart ends at the first '@' before it.
        let r = n("juliet@capulet.example/balcony/a@b");
        assert_eq!(r.resource(), Some("balcony/a@b"));
        let s = n("corp.example/x@y");
        assert_eq!((s.local(), s.user()), (None, None));
        assert_eq!(n("partner.example").to_string(), "partner.example");
        for (bad, expected) in [
            ("@corp.example", JidError::Empty(Part::Local)),
            ("alice@", JidError::Empty(Part::Domain)),
            ("alice@corp.example/", JidError::Empty(Part::Resource)),
            ("/r", JidError::Empty(Part::Domain)),
            ("\u{00AD}@corp.example", JidError::Empty(Part::Local)),
        ] {
            assert_eq!(normalise(bad), Err(expected), "{bad:?}");
        }
        for bad in [
            "a b@corp.example",
            "a@b@corp.example",
            "alice@bad domain",
            "alice@corp_example",
            "alice@corp.example/\u{0007}",
            "ali\u{FF20}ce@corp.example",
        ] {
            assert!(normalise(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            normalise(&format!("alice@corp.example/{}", "r".repeat(2000))),
            Err(JidError::TooLong(Part::Resource))
        );
    }

    #[test]
    fn an_address_splits_at_the_first_slash_then_the_first_at_before_it() {
        let p = |local, domain, resource| Parts {
            local,
            domain,
            resource,
        };
        for (addr, parts) in [
            ("a@b.example/c", p(Some("a"), "b.example", Some("c"))),
            ("b.example", p(None, "b.example", None)),
            ("b.example/x@y/z", p(None, "b.example", Some("x@y/z"))),
            ("a@b@c/d", p(Some("a"), "b@c", Some("d"))),
            ("@/", p(Some(""), "", Some(""))),
            ("ａ@ｂ/ｃ", p(Some("ａ"), "ｂ", Some("ｃ"))),
            ("", p(None, "", None)),
        ] {
            assert_eq!(split(addr), parts, "{addr:?}");
        }
    }

    #[test]
    fn an_address_is_known_as_written_only_when_its_text_is_its_normal_form() {
        let parsed = |a: &str| {
            normalise_parts(split(a), |d| Domain::parse(d).map_err(JidError::from))
                .unwrap_or_else(|e| panic!("{a:?}: {e}"))
        };
        for same in [
            "alice@corp.example",
            "alice@corp.example/Phone",
            "corp.example",
            "corp.example/r@x/y",
            "a+tag@b-c.example/Orchard-1",
        ] {
            let n = parsed(same);
            assert!(n.as_written, "{same:?}");
            assert_eq!(n.jid.to_string(), same);
        }
        for other in [
            "Alice@corp.example",
            "alice@CORP.example",
            "alice@corp.example./r",
            "alice@corp.example/Ｐhone",
            "al\u{AD}ice@corp.example",
            "alice@ｃｏｒｐ.example",
            "alice@corp.example/a b",
            // Already normal, but not ASCII: not recognised (the stanza gets the same text).
            "\u{e5}sa@corp.example",
        ] {
            let n = parsed(other);
            assert!(!n.as_written, "{other:?}");
            assert_eq!(n.jid, normalise(other).unwrap(), "{other:?}");
        }
        // The domain given is the one used; errors come in normalise's order.
        let given = Domain::parse("given.example").unwrap();
        let n = normalise_parts(split("a@x.example"), |_| Ok(given.clone())).unwrap();
        assert_eq!((n.jid.domain(), n.as_written), (&given, false));
        assert_eq!(
            normalise_parts(split("@corp.example"), |_| Ok(given.clone())),
            Err(JidError::Empty(Part::Local))
        );
        assert_eq!(
            normalise_parts(split("a@/r"), |_| Ok(given.clone())),
            Err(JidError::Empty(Part::Domain))
        );
    }

    #[test]
    fn normalising_is_idempotent() {
        for s in [
            "ＡＬＩＣＥ@ｃｏｒｐ.example/Ｒｅｓ",
            "\u{FB01}ona@corp.example",
            "A\u{030A}sa@corp.example/x",
            "Stra\u{00DF}e@corp.example",
        ] {
            let once = normalise(s).unwrap().to_string();
            assert_eq!(normalise(&once).unwrap().to_string(), once, "{s:?}");
        }
    }
}
