//! Domain names as fedgate stores and compares them.
//!
//! Owns normalisation (case, trailing dot, IDNA to A-labels), the RFC 1035 length and label rules,
//! the `*.example.com` wildcard patterns that AdditionalDomains may hold, and `host:port`
//! ([`HostPort`]: a server to connect to, by address or domain name). Everything here is
//! pure: a [`Domain`] is always valid and normalised, so the rest of fedgate compares plain strings.

use std::fmt;

use crate::short::ShortStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest domain name in presentation form without the trailing dot (RFC 1035: 255 octets on the
/// wire, which leaves 253 characters of text).
pub const MAX_DOMAIN_LEN: usize = 253;
/// Longest single label (RFC 1035).
pub const MAX_LABEL_LEN: usize = 63;

/// Why a text is not a domain name. The `Display` text is meant for admins.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("the domain is empty")]
    Empty,
    #[error("'{0}' contains spaces or control characters")]
    Whitespace(String),
    #[error("'{0}' looks like a URL: give the bare domain, without a scheme")]
    Scheme(String),
    #[error("'{0}' contains '{1}': give the bare domain, without user, port or path")]
    ForbiddenChar(String, char),
    #[error("'{0}' is longer than {MAX_DOMAIN_LEN} characters")]
    TooLong(String),
    #[error("'{0}' has an empty label (two dots in a row, or a leading dot)")]
    EmptyLabel(String),
    #[error("'{0}' has a label longer than {MAX_LABEL_LEN} characters")]
    LabelTooLong(String),
    #[error(
        "'{0}' has a label with characters other than letters, digits and '-', or starting or ending with '-'"
    )]
    BadLabel(String),
    #[error("'{0}' is not a valid internationalised domain name")]
    Idna(String),
    #[error("'{0}': a wildcard is allowed only as the whole first label, as in *.example.com")]
    BadWildcard(String),
    #[error(
        "'{0}': a wildcard is allowed only in AdditionalDomains, not as the partner's Identity"
    )]
    WildcardNotAllowed(String),
}

/// A valid, normalised domain name: lowercase A-labels, no trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Domain(ShortStr);

impl Domain {
    /// Normalise and validate a domain typed by an admin or read from the wire.
    pub fn parse(input: &str) -> Result<Domain, DomainError> {
        // Nearly every domain on the wire is already in normal form: one pass to recognise it,
        // one copy to keep it (inline, no allocation, when short).
        if is_normal_ascii(input) {
            return Ok(Domain(ShortStr::from(input)));
        }
        let original = input;
        if input.is_empty() {
            return Err(DomainError::Empty);
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(DomainError::Whitespace(original.to_owned()));
        }
        if input.contains("://") {
            return Err(DomainError::Scheme(original.to_owned()));
        }
        if let Some(c) = input
            .chars()
            .find(|c| matches!(c, '@' | '/' | ':' | '\\' | '?' | '#'))
        {
            return Err(DomainError::ForbiddenChar(original.to_owned(), c));
        }
        let trimmed = input.strip_suffix('.').unwrap_or(input);
        if trimmed.is_empty() {
            return Err(DomainError::Empty);
        }
        if trimmed.contains('*') {
            return Err(DomainError::WildcardNotAllowed(original.to_owned()));
        }
        let needs_idna = !trimmed.is_ascii()
            || trimmed
                .split('.')
                .any(|label| label.len() >= 4 && label[..4].eq_ignore_ascii_case("xn--"));
        let ascii = if needs_idna {
            idna::domain_to_ascii_strict(trimmed)
                .map_err(|_| DomainError::Idna(original.to_owned()))?
        } else {
            trimmed.to_ascii_lowercase()
        };
        check_ascii_rules(&ascii, original)?;
        Ok(Domain(ShortStr::from(ascii)))
    }

    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The normalised text's bytes (read without the UTF-8 check [`Domain::as_str`] makes on a
    /// short domain: for comparisons).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Whether the normalised text is `text` (compared as bytes).
    pub fn is(&self, text: &str) -> bool {
        self.as_bytes() == text.as_bytes()
    }

    /// The normalised text, as an owned string (one copy).
    pub fn into_string(self) -> String {
        self.0.into_string()
    }

    /// True when `self` is a strict subdomain of `parent` (`a.b.com` of `b.com`, not `b.com` itself).
    pub fn is_strict_subdomain_of(&self, parent: &Domain) -> bool {
        self.0.len() > parent.0.len()
            && self.0.ends_with(parent.as_str())
            && self.0.as_bytes()[self.0.len() - parent.0.len() - 1] == b'.'
    }
}

/// Whether `s` is a domain in normal form as [`Domain::parse`] would return it, without IDNA:
/// at most [`MAX_DOMAIN_LEN`] bytes of dot-separated labels of 1 to [`MAX_LABEL_LEN`] lowercase
/// ASCII letters, digits and inner hyphens, no trailing dot, no `xn--` label (A-labels are
/// checked by IDNA on the full path).
fn is_normal_ascii(s: &str) -> bool {
    if s.is_empty() || s.len() > MAX_DOMAIN_LEN {
        return false;
    }
    // One pass over the bytes (this runs on both domains of every stanza): each byte checked,
    // each label's rules checked at the dot (or the end) that closes it.
    let b = s.as_bytes();
    let mut start = 0;
    for i in 0..=b.len() {
        if i < b.len() && b[i] != b'.' {
            if !(b[i].is_ascii_lowercase() || b[i].is_ascii_digit() || b[i] == b'-') {
                return false;
            }
            continue;
        }
        let label = &b[start..i];
        if label.is_empty()
            || label.len() > MAX_LABEL_LEN
            || label[0] == b'-'
            || label[label.len() - 1] == b'-'
            || label.starts_with(b"xn--")
        {
            return false;
        }
        start = i + 1;
    }
    true
}

fn check_ascii_rules(ascii: &str, original: &str) -> Result<(), DomainError> {
    if ascii.len() > MAX_DOMAIN_LEN {
        return Err(DomainError::TooLong(original.to_owned()));
    }
    for label in ascii.split('.') {
        if label.is_empty() {
            return Err(DomainError::EmptyLabel(original.to_owned()));
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(DomainError::LabelTooLong(original.to_owned()));
        }
        let bytes = label.as_bytes();
        let ldh = bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if !ldh || bytes[0] == b'-' || bytes[bytes.len() - 1] == b'-' {
            return Err(DomainError::BadLabel(original.to_owned()));
        }
    }
    Ok(())
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Domain {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for Domain {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Domain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Domain::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An entry of AdditionalDomains: a domain, or `*.domain` meaning every strict subdomain of it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DomainPattern {
    Exact(Domain),
    /// `*.parent`: matches `x.parent`, `y.x.parent`, but not `parent` itself.
    Wildcard(Domain),
}

impl DomainPattern {
    pub fn parse(input: &str) -> Result<DomainPattern, DomainError> {
        match input.strip_prefix("*.") {
            Some(rest) => {
                if rest.contains('*') {
                    return Err(DomainError::BadWildcard(input.to_owned()));
                }
                Domain::parse(rest).map(DomainPattern::Wildcard)
            }
            None if input.contains('*') => Err(DomainError::BadWildcard(input.to_owned())),
            None => Domain::parse(input).map(DomainPattern::Exact),
        }
    }

    pub fn matches(&self, domain: &Domain) -> bool {
        match self {
            DomainPattern::Exact(d) => d == domain,
            DomainPattern::Wildcard(parent) => domain.is_strict_subdomain_of(parent),
        }
    }

    /// The stored text form: `example.com` or `*.example.com`.
    pub fn to_text(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainPattern::Exact(d) => write!(f, "{d}"),
            DomainPattern::Wildcard(d) => write!(f, "*.{d}"),
        }
    }
}

impl From<Domain> for DomainPattern {
    fn from(d: Domain) -> Self {
        DomainPattern::Exact(d)
    }
}

impl Serialize for DomainPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DomainPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        DomainPattern::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `host:port`: an IP address or a DNS name, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl HostPort {
    /// Parse `host:port`, `1.2.3.4:5269`, `[::1]:5269`; `host` alone gets `default_port`.
    pub fn parse(text: &str, default_port: u16) -> Result<HostPort, String> {
        let t = text.trim();
        if let Ok(sa) = t.parse::<std::net::SocketAddr>() {
            return Ok(HostPort {
                host: sa.ip().to_string(),
                port: sa.port(),
            });
        }
        if let Ok(ip) = t.parse::<std::net::IpAddr>() {
            return Ok(HostPort {
                host: ip.to_string(),
                port: default_port,
            });
        }
        let (h, p) = match t.rsplit_once(':') {
            Some((h, p)) => (
                h,
                match p.parse::<u16>() {
                    Ok(p) if p > 0 => p,
                    _ => return Err(format!("'{text}': the port must be 1 to 65535")),
                },
            ),
            None => (t, default_port),
        };
        let d = Domain::parse(h).map_err(|e| format!("'{text}': {e}"))?;
        Ok(HostPort {
            host: d.as_str().to_owned(),
            port: p,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(
            HostPort::parse("[::1]:5269", 1).unwrap().to_string(),
            "[::1]:5269"
        );
        assert_eq!(
            HostPort::parse("XMPP.example", 5269).unwrap().to_string(),
            "xmpp.example:5269"
        );
        assert!(HostPort::parse("x.example:99999", 1).is_err());
    }

    fn ok(s: &str) -> String {
        Domain::parse(s)
            .map(|d| d.0.into_string())
            .unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn the_normal_form_fast_path_agrees_with_the_full_path() {
        for d in [
            "corp.example",
            "a.b-c.d9.example",
            "xn--bcher-kva.example",
            "0.example",
            &format!("{}.com", "a".repeat(63)),
        ] {
            // The uppercase spelling never takes the fast path.
            assert_eq!(ok(d), ok(&d.to_uppercase()), "{d}");
            assert_eq!(ok(d), d, "{d}");
        }
        for (d, fast) in [
            ("corp.example", true),
            ("Corp.example", false),
            ("corp.example.", false),
            ("-corp.example", false),
            ("corp-.example", false),
            ("corp..example", false),
            ("xn--bcher-kva.example", false),
            ("cörp.example", false),
            ("corp_x.example", false),
            ("", false),
            (".corp.example", false),
            ("localhost", true),
            ("a.b", true),
            ("corp.xn--p1ai", false),
            ("corp.example-", false),
            ("corp.e-x", true),
            ("corp.example/x", false),
            ("corp.EXAMPLE", false),
        ] {
            assert_eq!(is_normal_ascii(d), fast, "{d:?}");
        }
        assert!(!is_normal_ascii(&format!("{}.com", "a".repeat(64))));
        assert!(is_normal_ascii(&format!("{}.com", "a".repeat(63))));
        assert!(!is_normal_ascii(&format!("com.{}", "a".repeat(64))));
        assert!(!is_normal_ascii(&"a.".repeat(127)));
    }

    #[test]
    fn normalises_case_and_trailing_dot() {
        assert_eq!(ok("Contoso.COM"), "contoso.com");
        assert_eq!(ok("contoso.com."), "contoso.com");
        assert_eq!(ok("localhost"), "localhost");
        assert_eq!(ok("a-b.c0.example"), "a-b.c0.example");
    }

    #[test]
    fn idn_becomes_a_labels() {
        assert_eq!(ok("bücher.example"), "xn--bcher-kva.example");
        assert_eq!(ok("BÜCHER.example"), "xn--bcher-kva.example");
        assert_eq!(ok("xn--bcher-kva.example"), "xn--bcher-kva.example");
        assert_eq!(ok("例え.テスト"), "xn--r8jz45g.xn--zckzah");
        assert!(matches!(
            Domain::parse("xn--zz.example"),
            Err(DomainError::Idna(_))
        ));
    }

    #[test]
    fn rejects_what_is_not_a_bare_domain() {
        type Check = fn(&DomainError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, DomainError::Empty)),
            (".", |e| matches!(e, DomainError::Empty)),
            ("con toso.com", |e| matches!(e, DomainError::Whitespace(_))),
            (" contoso.com", |e| matches!(e, DomainError::Whitespace(_))),
            ("https://contoso.com", |e| {
                matches!(e, DomainError::Scheme(_))
            }),
            ("contoso.com:5269", |e| {
                matches!(e, DomainError::ForbiddenChar(_, ':'))
            }),
            ("user@contoso.com", |e| {
                matches!(e, DomainError::ForbiddenChar(_, '@'))
            }),
            ("contoso.com/path", |e| {
                matches!(e, DomainError::ForbiddenChar(_, '/'))
            }),
            ("a..b", |e| matches!(e, DomainError::EmptyLabel(_))),
            (".a.b", |e| matches!(e, DomainError::EmptyLabel(_))),
            ("-a.b", |e| matches!(e, DomainError::BadLabel(_))),
            ("a-.b", |e| matches!(e, DomainError::BadLabel(_))),
            ("a_b.c", |e| matches!(e, DomainError::BadLabel(_))),
            ("*.a.b", |e| matches!(e, DomainError::WildcardNotAllowed(_))),
        ];
        for (input, check) in cases {
            let err = Domain::parse(input).expect_err(input);
            assert!(check(&err), "{input}: unexpected {err:?}");
        }
    }

    #[test]
    fn length_limits() {
        let label63 = "a".repeat(63);
        assert!(Domain::parse(&format!("{label63}.com")).is_ok());
        assert!(matches!(
            Domain::parse(&format!("{}.com", "a".repeat(64))),
            Err(DomainError::LabelTooLong(_))
        ));
        // 4 * 63 + 3 dots = 255 > 253
        let long = [label63.as_str(); 4].join(".");
        assert!(matches!(Domain::parse(&long), Err(DomainError::TooLong(_))));
        let just_fits = format!("{}.{}", [label63.as_str(); 3].join("."), "a".repeat(61));
        assert_eq!(just_fits.len(), 253);
        assert!(Domain::parse(&just_fits).is_ok());
    }

    #[test]
    fn wildcard_patterns() {
        let p = DomainPattern::parse("*.Example.com").unwrap();
        assert_eq!(p.to_string(), "*.example.com");
        assert!(p.matches(&Domain::parse("a.example.com").unwrap()));
        assert!(p.matches(&Domain::parse("b.a.example.com").unwrap()));
        assert!(!p.matches(&Domain::parse("example.com").unwrap()));
        assert!(!p.matches(&Domain::parse("badexample.com").unwrap()));
        for bad in ["*", "*.", "a.*.com", "*a.com", "*.*.com", "**.com"] {
            assert!(DomainPattern::parse(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Normalising twice changes nothing; case and one trailing dot never matter; the result
        /// obeys the RFC 1035 rules.
        #[test]
        fn normalisation_is_idempotent_and_case_blind(input in "[a-zA-Z0-9ü-]{1,20}(\\.[a-zA-Z0-9é-]{1,20}){0,4}\\.?") {
            if let Ok(d) = Domain::parse(&input) {
                prop_assert_eq!(Domain::parse(d.as_str()).ok(), Some(d.clone()));
                prop_assert_eq!(Domain::parse(&input.to_uppercase()).ok(), Some(d.clone()));
                prop_assert_eq!(Domain::parse(&format!("{}.", input.trim_end_matches('.'))).ok(), Some(d.clone()));
                prop_assert!(d.as_str().len() <= MAX_DOMAIN_LEN);
                prop_assert!(d.as_str().is_ascii() && !d.as_str().ends_with('.'));
                for label in d.as_str().split('.') {
                    prop_assert!(!label.is_empty() && label.len() <= MAX_LABEL_LEN);
                    prop_assert!(!label.starts_with('-') && !label.ends_with('-'));
                }
            }
        }

        /// Arbitrary text never panics, and anything accepted is ASCII lowercase.
        #[test]
        fn arbitrary_text_never_panics(input in any::<String>()) {
            if let Ok(d) = Domain::parse(&input) {
                prop_assert!(!d.as_str().bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()));
            }
            let _ = DomainPattern::parse(&input);
        }
    }
}
