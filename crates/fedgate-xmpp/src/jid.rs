//! A small JID splitter (RFC 7622 §3.1 shape): `[localpart@]domainpart[/resourcepart]`.
//!
//! No stringprep/PRECIS: the domain is ASCII-lowercased and a trailing dot dropped; IDNA
//! normalisation of the domain is done elsewhere (fedgate-model). Parts are checked for the
//! shape rules only: no empty part where its separator is present, no empty domain label, at most 1023 bytes each,
//! no control characters or spaces, and no characters RFC 7622 forbids in a localpart.

use std::fmt;
use std::str::FromStr;

/// Maximum length of each part in bytes (RFC 7622 §3.2–3.4).
pub const MAX_PART_LEN: usize = 1023;

/// A parsed JID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jid {
    local: Option<String>,
    domain: String,
    resource: Option<String>,
}

/// Why a string is not a JID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JidError {
    /// No domainpart.
    #[error("empty domainpart")]
    EmptyDomain,
    /// An empty label in the domainpart (`a..b`, `.a`, `a..`: only one trailing dot is
    /// dropped).
    #[error("empty label in domainpart")]
    EmptyLabel,
    /// `@` present with nothing before it.
    #[error("empty localpart")]
    EmptyLocal,
    /// `/` present with nothing after it.
    #[error("empty resourcepart")]
    EmptyResource,
    /// A part is longer than 1023 bytes.
    #[error("{0} longer than 1023 bytes")]
    TooLong(&'static str),
    /// A character not allowed in that part.
    #[error("character not allowed in {0}")]
    BadChar(&'static str),
}

impl Jid {
    /// Split and check a JID.
    pub fn parse(s: &str) -> Result<Jid, JidError> {
        let (rest, resource) = match s.split_once('/') {
            Some((r, res)) => (r, Some(res)),
            None => (s, None),
        };
        let (local, domain) = match rest.split_once('@') {
            Some((l, d)) => (Some(l), d),
            None => (None, rest),
        };
        if let Some(l) = local {
            if l.is_empty() {
                return Err(JidError::EmptyLocal);
            }
            if l.len() > MAX_PART_LEN {
                return Err(JidError::TooLong("localpart"));
            }
            if l.chars().any(|c| {
                c.is_control()
                    || c.is_whitespace()
                    || matches!(c, '"' | '&' | '\'' | '/' | ':' | '<' | '>' | '@')
            }) {
                return Err(JidError::BadChar("localpart"));
            }
        }
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        if domain.is_empty() {
            return Err(JidError::EmptyDomain);
        }
        if domain.len() > MAX_PART_LEN {
            return Err(JidError::TooLong("domainpart"));
        }
        if domain.split('.').any(str::is_empty) {
            return Err(JidError::EmptyLabel);
        }
        if domain
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '@' | '/'))
        {
            return Err(JidError::BadChar("domainpart"));
        }
        if let Some(r) = resource {
            if r.is_empty() {
                return Err(JidError::EmptyResource);
            }
            if r.len() > MAX_PART_LEN {
                return Err(JidError::TooLong("resourcepart"));
            }
            if r.chars().any(char::is_control) {
                return Err(JidError::BadChar("resourcepart"));
            }
        }
        Ok(Jid {
            local: local.map(str::to_owned),
            domain: domain.to_ascii_lowercase(),
            resource: resource.map(str::to_owned),
        })
    }

    /// The localpart, if any.
    pub fn local(&self) -> Option<&str> {
        self.local.as_deref()
    }

    /// The domainpart (ASCII-lowercased, no trailing dot).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The resourcepart, if any.
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    /// The JID without its resource.
    pub fn bare(&self) -> Jid {
        Jid {
            local: self.local.clone(),
            domain: self.domain.clone(),
            resource: None,
        }
    }

    /// Whether there is no resource.
    pub fn is_bare(&self) -> bool {
        self.resource.is_none()
    }

    /// Whether this is a domain-only JID (a server).
    pub fn is_domain(&self) -> bool {
        self.local.is_none() && self.resource.is_none()
    }
}

impl FromStr for Jid {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Jid::parse(s)
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = &self.local {
            write!(f, "{l}@")?;
        }
        f.write_str(&self.domain)?;
        if let Some(r) = &self.resource {
            write!(f, "/{r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parsing the `Display` form of a parsed JID gives the same JID.
    #[test]
    fn display_form_parses_to_the_same_jid() {
        for s in [
            "Ezammsi+:Exaher.",
            "juliet@Capulet.Example./balcony/a@b",
            "x.",
            "[::1]",
        ] {
            let j = Jid::parse(s).unwrap();
            assert_eq!(Jid::parse(&j.to_string()), Ok(j), "{s}");
        }
    }

    #[test]
    fn shapes() {
        let j = Jid::parse("juliet@Capulet.Example./balcony/a@b").unwrap();
        assert_eq!(j.local(), Some("juliet"));
        assert_eq!(j.domain(), "capulet.example");
        assert_eq!(j.resource(), Some("balcony/a@b"));
        assert_eq!(j.bare().to_string(), "juliet@capulet.example");
        assert_eq!(j.to_string(), "juliet@capulet.example/balcony/a@b");
        let d = Jid::parse("example.com").unwrap();
        assert!(d.is_domain() && d.is_bare());
        let r = Jid::parse("example.com/res@x").unwrap();
        assert_eq!(r.local(), None);
        assert_eq!(r.resource(), Some("res@x"));
        assert_eq!("a@b".parse::<Jid>().unwrap().local(), Some("a"));
        // localpart keeps its case (no PRECIS here)
        assert_eq!(Jid::parse("Romeo@x").unwrap().local(), Some("Romeo"));
    }

    #[test]
    fn rejects() {
        assert_eq!(Jid::parse(""), Err(JidError::EmptyDomain));
        assert_eq!(Jid::parse("."), Err(JidError::EmptyDomain));
        // found by the domain_jid fuzz target: "x.." parsed as "x.", which parsed as "x"
        for bad in ["x..", "a..b", ".a", "u@x../r"] {
            assert_eq!(Jid::parse(bad), Err(JidError::EmptyLabel), "{bad}");
        }
        assert_eq!(Jid::parse("@x"), Err(JidError::EmptyLocal));
        assert_eq!(Jid::parse("a@"), Err(JidError::EmptyDomain));
        assert_eq!(Jid::parse("a@x/"), Err(JidError::EmptyResource));
        assert_eq!(Jid::parse("/r"), Err(JidError::EmptyDomain));
        assert_eq!(Jid::parse("a b@x"), Err(JidError::BadChar("localpart")));
        assert_eq!(Jid::parse("a@b@x"), Err(JidError::BadChar("domainpart")));
        assert_eq!(Jid::parse("a@x y"), Err(JidError::BadChar("domainpart")));
        assert_eq!(
            Jid::parse("a@x/\u{0}"),
            Err(JidError::BadChar("resourcepart"))
        );
        let long = "a".repeat(1024);
        assert_eq!(
            Jid::parse(&format!("{long}@x")),
            Err(JidError::TooLong("localpart"))
        );
        assert_eq!(Jid::parse(&long), Err(JidError::TooLong("domainpart")));
        assert_eq!(
            Jid::parse(&format!("x/{long}")),
            Err(JidError::TooLong("resourcepart"))
        );
        assert!(Jid::parse(&"a".repeat(1023)).is_ok());
    }
}
