//! The matching index: "which partner owns this domain?", answered in well under a microsecond.
//!
//! The data plane asks it for every stream and many stanzas, so a lookup takes the domain as it came
//! off the wire (`&str`, any ASCII case, optional trailing dot) and does not allocate on that path.
//! Exact domains (Identity and AdditionalDomains) win over wildcards; among wildcards the most
//! specific (longest parent) wins.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use crate::domain::{Domain, DomainPattern, MAX_DOMAIN_LEN};
use crate::partner::XmppAllowedPartner;

/// Two partners claim the same domain or wildcard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{pattern}' belongs to both '{first}' and '{second}'")]
pub struct IndexConflict {
    pub pattern: String,
    pub first: Domain,
    pub second: Domain,
}

/// A compact string → partner-slot table: the keys live in one contiguous arena and the hash table
/// holds 12-byte entries, which keeps 400,000 domains in about 16 MB and lookups cache-friendly.
#[derive(Debug, Default, Clone)]
struct PatternTable {
    arena: String,
    entries: HashTable<Entry>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    start: u32,
    len: u16,
    slot: u32,
}

impl PatternTable {
    /// The key an entry points at (for rehashing; lookups compare bytes directly).
    fn key_of<'a>(arena: &'a str, e: &Entry) -> &'a [u8] {
        &arena.as_bytes()[e.start as usize..e.start as usize + e.len as usize]
    }

    fn hash_of(key: &[u8]) -> u64 {
        FxBuildHasher.hash_one(key)
    }

    fn get(&self, key: &str) -> Option<u32> {
        let key = key.as_bytes();
        let hash = Self::hash_of(key);
        let arena = self.arena.as_bytes();
        self.entries
            .find(hash, |e| {
                e.len as usize == key.len()
                    && arena.get(e.start as usize..e.start as usize + key.len()) == Some(key)
            })
            .map(|e| e.slot)
    }

    /// Insert, or return the slot that already holds `key`.
    fn insert(&mut self, key: &str, slot: u32) -> Result<(), u32> {
        if let Some(existing) = self.get(key) {
            return Err(existing);
        }
        let start = u32::try_from(self.arena.len()).expect("index arena under 4 GiB");
        self.arena.push_str(key);
        // Domains are at most 253 bytes, so the length fits.
        let entry = Entry {
            start,
            len: key.len() as u16,
            slot,
        };
        let arena = &self.arena;
        self.entries
            .insert_unique(Self::hash_of(key.as_bytes()), entry, |e| {
                Self::hash_of(Self::key_of(arena, e))
            });
        Ok(())
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn shrink_to_fit(&mut self) {
        self.arena.shrink_to_fit();
        let arena = &self.arena;
        self.entries
            .shrink_to_fit(|e| Self::hash_of(Self::key_of(arena, e)));
    }
}

/// An immutable index over a set of partners. Rebuild it (cheaply) when the list changes.
#[derive(Debug, Default, Clone)]
pub struct PartnerIndex {
    partners: Vec<Arc<XmppAllowedPartner>>,
    exact: PatternTable,
    /// `*.parent` entries, keyed by `parent`.
    wildcard: PatternTable,
}

impl PartnerIndex {
    /// Index the partners; fails if two of them claim the same pattern.
    pub fn build<I>(partners: I) -> Result<PartnerIndex, IndexConflict>
    where
        I: IntoIterator,
        I::Item: Into<Arc<XmppAllowedPartner>>,
    {
        let mut index = PartnerIndex::default();
        for partner in partners {
            index.insert(partner.into())?;
        }
        index.exact.shrink_to_fit();
        index.wildcard.shrink_to_fit();
        Ok(index)
    }

    fn insert(&mut self, partner: Arc<XmppAllowedPartner>) -> Result<(), IndexConflict> {
        let slot = u32::try_from(self.partners.len()).expect("fewer than 2^32 partners");
        for pattern in partner.patterns() {
            let (map, key) = match &pattern {
                DomainPattern::Exact(d) => (&mut self.exact, d.as_str()),
                DomainPattern::Wildcard(d) => (&mut self.wildcard, d.as_str()),
            };
            if let Err(other) = map.insert(key, slot) {
                return Err(IndexConflict {
                    pattern: pattern.to_string(),
                    first: self.partners[other as usize].identity.clone(),
                    second: partner.identity.clone(),
                });
            }
        }
        self.partners.push(partner);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.partners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.partners.is_empty()
    }

    pub fn partners(&self) -> impl Iterator<Item = &Arc<XmppAllowedPartner>> {
        self.partners.iter()
    }

    /// The partner that owns `domain`, if any. `domain` may be in any ASCII case and carry a
    /// trailing dot; other non-normalised input (Unicode) is normalised on a slower path.
    pub fn lookup(&self, domain: &str) -> Option<&Arc<XmppAllowedPartner>> {
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        if domain.len() > MAX_DOMAIN_LEN {
            return None;
        }
        if !domain.is_ascii() {
            return Domain::parse(domain)
                .ok()
                .and_then(|d| self.lookup_normalised(d.as_str()));
        }
        if domain.bytes().any(|b| b.is_ascii_uppercase()) {
            let mut buf = [0u8; MAX_DOMAIN_LEN];
            let lower = &mut buf[..domain.len()];
            for (out, b) in lower.iter_mut().zip(domain.bytes()) {
                *out = b.to_ascii_lowercase();
            }
            // Lowercasing ASCII keeps it valid UTF-8.
            let lower = std::str::from_utf8(lower).ok()?;
            return self.lookup_normalised(lower);
        }
        self.lookup_normalised(domain)
    }

    fn lookup_normalised(&self, domain: &str) -> Option<&Arc<XmppAllowedPartner>> {
        if let Some(slot) = self.exact.get(domain) {
            return Some(&self.partners[slot as usize]);
        }
        if self.wildcard.is_empty() {
            return None;
        }
        // Most specific first: drop one leading label at a time.
        let mut rest = domain;
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some(slot) = self.wildcard.get(parent) {
                return Some(&self.partners[slot as usize]);
            }
            rest = parent;
        }
        None
    }

    /// Which partner already holds exactly this pattern (for uniqueness checks).
    pub fn owner_of(&self, pattern: &DomainPattern) -> Option<&Domain> {
        let slot = match pattern {
            DomainPattern::Exact(d) => self.exact.get(d.as_str()),
            DomainPattern::Wildcard(d) => self.wildcard.get(d.as_str()),
        }?;
        Some(&self.partners[slot as usize].identity)
    }

    /// Number of indexed patterns (exact, wildcard).
    pub fn pattern_counts(&self) -> (usize, usize) {
        (self.exact.len(), self.wildcard.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn partner(identity: &str, extra: &[&str]) -> XmppAllowedPartner {
        let mut p = XmppAllowedPartner::new(Domain::parse(identity).unwrap());
        p.additional_domains = extra
            .iter()
            .map(|e| DomainPattern::parse(e).unwrap())
            .collect();
        p
    }

    fn owner<'a>(index: &'a PartnerIndex, domain: &str) -> Option<&'a str> {
        index.lookup(domain).map(|p| p.identity.as_str())
    }

    #[test]
    fn exact_wildcard_and_most_specific() {
        let index = PartnerIndex::build([
            partner("example.com", &["*.example.com"]),
            partner("research.example.com", &["*.lab.example.com"]),
            partner("fabrikam.com", &["research.fabrikam2.com"]),
        ])
        .unwrap();
        assert_eq!(owner(&index, "example.com"), Some("example.com"));
        assert_eq!(owner(&index, "a.example.com"), Some("example.com"));
        assert_eq!(
            owner(&index, "research.example.com"),
            Some("research.example.com")
        );
        assert_eq!(
            owner(&index, "x.lab.example.com"),
            Some("research.example.com")
        );
        assert_eq!(owner(&index, "lab.example.com"), Some("example.com"));
        assert_eq!(
            owner(&index, "Research.Fabrikam2.COM."),
            Some("fabrikam.com")
        );
        assert_eq!(owner(&index, "fabrikam2.com"), None);
        assert_eq!(owner(&index, "other.com"), None);
        assert_eq!(owner(&index, "com"), None);
        assert_eq!(owner(&index, ""), None);
    }

    #[test]
    fn unicode_lookup_is_normalised() {
        let index = PartnerIndex::build([partner("xn--bcher-kva.example", &[])]).unwrap();
        assert_eq!(
            owner(&index, "Bücher.example"),
            Some("xn--bcher-kva.example")
        );
    }

    #[test]
    fn conflicts_are_reported() {
        let err = PartnerIndex::build([
            partner("a.com", &["shared.com"]),
            partner("b.com", &["shared.com"]),
        ])
        .unwrap_err();
        assert_eq!(err.pattern, "shared.com");
        assert!(
            PartnerIndex::build([
                partner("a.com", &["*.x.com"]),
                partner("b.com", &["*.x.com"])
            ])
            .is_err()
        );
        // An exact domain and a wildcard over it may belong to different partners.
        assert!(
            PartnerIndex::build([
                partner("a.com", &["y.x.com"]),
                partner("b.com", &["*.x.com"])
            ])
            .is_ok()
        );
    }

    fn label() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,5}"
    }

    proptest! {
        /// The index agrees with a brute-force scan over every pattern: exact beats wildcard,
        /// longer wildcard parent beats shorter.
        #[test]
        fn index_matches_brute_force(
            partners in prop::collection::vec((prop::collection::vec(label(), 1..4), prop::collection::vec((any::<bool>(), prop::collection::vec(label(), 1..4)), 0..4)), 1..12),
            queries in prop::collection::vec(prop::collection::vec(label(), 1..5), 1..30),
        ) {
            let mut seen = std::collections::HashSet::new();
            let mut list = Vec::new();
            for (id_labels, extras) in partners {
                let id = id_labels.join(".");
                if !seen.insert(format!("={id}")) { continue; }
                let mut p = partner(&id, &[]);
                for (wild, labels) in extras {
                    let text = if wild { format!("*.{}", labels.join(".")) } else { labels.join(".") };
                    let key = if wild { text.clone() } else { format!("={text}") };
                    if seen.insert(key) {
                        p.additional_domains.push(DomainPattern::parse(&text).unwrap());
                    }
                }
                list.push(p);
            }
            let index = PartnerIndex::build(list.clone()).unwrap();
            for q in queries {
                let q = q.join(".");
                let d = Domain::parse(&q).unwrap();
                let exact = list.iter().find(|p| p.patterns().any(|pat| pat == DomainPattern::Exact(d.clone())));
                let d = &d;
                let best_wild = list.iter().flat_map(|p| p.patterns().filter_map(move |pat| match pat {
                    DomainPattern::Wildcard(parent) if d.is_strict_subdomain_of(&parent) => Some((parent.as_str().len(), p)),
                    _ => None,
                })).max_by_key(|(len, _)| *len).map(|(_, p)| p);
                let expected = exact.or(best_wild).map(|p| p.identity.as_str());
                prop_assert_eq!(owner(&index, &q), expected);
                prop_assert_eq!(owner(&index, &q.to_ascii_uppercase()), expected);
            }
        }
    }
}
