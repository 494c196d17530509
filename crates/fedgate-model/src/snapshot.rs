//! The data plane's view of the world as one immutable value: the hosted domains (their sites and
//! internal servers, in a map by normalised name built once per configuration), the partners and their matching index, the external access policies and grants, the gateway
//! settings and the PublicUnverified authorisations. The gateway holds one `Arc<Snapshot>` and
//! swaps it whole when anything in it changes; a stanza is decided on the one snapshot it read,
//! so no decision ever mixes two versions of the policy.
//!
//! Building a new snapshot from an old one with one part replaced ([`Snapshot::with_hosted`],
//! [`Snapshot::with_authorisations`]) shares the other parts (each is behind its own `Arc`).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use rustc_hash::FxHashMap;
use std::sync::Arc;

use crate::access::AuthorisationChange;
use crate::{
    AccessPolicies, Domain, HostPort, PartnerIndex, UserJid, XmppAllowedPartner,
    XmppGatewayConfiguration,
};

/// A hosted domain as the data plane needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hosted {
    pub domain: Domain,
    /// The site its users belong to (for site-scoped external access policies).
    pub site: Option<String>,
    /// Its internal XMPP server (where stanzas for it go; the authoritative server for its
    /// dialback keys).
    pub internal_server: HostPort,
}

/// The PublicUnverified authorisations: which local user authorised which remote bare JIDs
/// (keyed by the local user, so a lookup borrows both users instead of building a pair).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authorisations(HashMap<UserJid, HashSet<UserJid>>);

impl Authorisations {
    pub fn new(pairs: impl IntoIterator<Item = (UserJid, UserJid)>) -> Authorisations {
        let mut map: HashMap<UserJid, HashSet<UserJid>> = HashMap::new();
        for (local, remote) in pairs {
            map.entry(local).or_default().insert(remote);
        }
        Authorisations(map)
    }

    /// Whether `local` has authorised `remote`.
    pub fn contains(&self, local: &UserJid, remote: &UserJid) -> bool {
        self.0.get(local).is_some_and(|r| r.contains(remote))
    }

    /// Whether applying `change` would change anything.
    pub fn changes(&self, local: &UserJid, remote: &UserJid, change: AuthorisationChange) -> bool {
        self.contains(local, remote) != (change == AuthorisationChange::Authorise)
    }

    /// A copy with `changes` applied in order.
    pub fn with_changes<'a>(
        &self,
        changes: impl IntoIterator<Item = (&'a UserJid, &'a UserJid, AuthorisationChange)>,
    ) -> Authorisations {
        let mut map = self.0.clone();
        for (local, remote, change) in changes {
            match change {
                AuthorisationChange::Authorise => {
                    map.entry(local.clone()).or_default().insert(remote.clone());
                }
                AuthorisationChange::Withdraw => {
                    if let Some(set) = map.get_mut(local) {
                        set.remove(remote);
                        if set.is_empty() {
                            map.remove(local);
                        }
                    }
                }
            }
        }
        Authorisations(map)
    }

    /// How many (local, remote) pairs.
    pub fn len(&self) -> usize {
        self.0.values().map(HashSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Everything a stanza is decided on. See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The store revision the partners, policies and settings were read at.
    pub revision: u64,
    /// Hosted domains by their normalised (lowercase ASCII) name.
    /// (Fx-hashed: looked up on every stanza, and its keys come from the configuration, not
    /// from peers.)
    hosted: Arc<FxHashMap<String, Hosted>>,
    pub index: Arc<PartnerIndex>,
    pub access: Arc<AccessPolicies>,
    pub settings: Arc<XmppGatewayConfiguration>,
    pub authorisations: Arc<Authorisations>,
}

/// `domain` as the keys of the hosted map are written: lowercase, no trailing dot.
fn domain_key(domain: &str) -> Cow<'_, str> {
    let d = domain.strip_suffix('.').unwrap_or(domain);
    if d.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(d.to_ascii_lowercase())
    } else {
        Cow::Borrowed(d)
    }
}

impl Snapshot {
    pub fn new(
        revision: u64,
        hosted: impl IntoIterator<Item = Hosted>,
        index: PartnerIndex,
        access: AccessPolicies,
        settings: XmppGatewayConfiguration,
        authorisations: Authorisations,
    ) -> Snapshot {
        Snapshot {
            revision,
            hosted: Arc::new(Self::hosted_map(hosted)),
            index: Arc::new(index),
            access: Arc::new(access),
            settings: Arc::new(settings),
            authorisations: Arc::new(authorisations),
        }
    }

    fn hosted_map(hosted: impl IntoIterator<Item = Hosted>) -> FxHashMap<String, Hosted> {
        hosted
            .into_iter()
            .map(|h| (h.domain.as_str().to_owned(), h))
            .collect()
    }

    /// The same snapshot with other hosted domains (a re-read configuration).
    pub fn with_hosted(&self, hosted: impl IntoIterator<Item = Hosted>) -> Snapshot {
        Snapshot {
            hosted: Arc::new(Self::hosted_map(hosted)),
            ..self.clone()
        }
    }

    /// The same snapshot with other authorisations.
    pub fn with_authorisations(&self, authorisations: Authorisations) -> Snapshot {
        Snapshot {
            authorisations: Arc::new(authorisations),
            ..self.clone()
        }
    }

    /// A new policy (partners, policies, settings at `revision`), keeping the hosted domains and
    /// the authorisations of this one.
    pub fn with_policy(
        &self,
        revision: u64,
        index: PartnerIndex,
        access: AccessPolicies,
        settings: XmppGatewayConfiguration,
    ) -> Snapshot {
        Snapshot {
            revision,
            index: Arc::new(index),
            access: Arc::new(access),
            settings: Arc::new(settings),
            ..self.clone()
        }
    }

    /// The hosted domain `domain` (any case, trailing dot allowed), if it is one: one hash
    /// lookup, no allocation when `domain` is already lowercase.
    pub fn hosted(&self, domain: &str) -> Option<&Hosted> {
        self.hosted.get(domain_key(domain).as_ref())
    }

    pub fn is_hosted(&self, domain: &str) -> bool {
        self.hosted(domain).is_some()
    }

    /// The partner whose domains include `domain`, if any.
    pub fn partner(&self, domain: &str) -> Option<&Arc<XmppAllowedPartner>> {
        self.index.lookup(domain)
    }

    /// The dialback secret (always set once the gateway runs).
    pub fn secret(&self) -> &str {
        self.settings
            .dialback_passphrase
            .as_ref()
            .map(|s| s.expose())
            .unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserJid {
        UserJid::parse(s).unwrap()
    }

    #[test]
    fn hosted_domains_are_found_in_any_case_and_with_a_trailing_dot() {
        let hosted = |domain: &str, site: Option<&str>, server: &str| Hosted {
            domain: Domain::parse(domain).unwrap(),
            site: site.map(str::to_owned),
            internal_server: HostPort::parse(server, 5269).unwrap(),
        };
        let s = Snapshot::default().with_hosted([
            hosted("corp.example", Some("emea"), "10.0.0.1:5269"),
            hosted("Other.Example", None, "xmpp.other.example"),
        ]);
        for d in ["corp.example", "CORP.Example", "corp.example."] {
            let h = s.hosted(d).unwrap_or_else(|| panic!("{d}"));
            assert_eq!(h.site.as_deref(), Some("emea"), "{d}");
            assert_eq!(h.internal_server.to_string(), "10.0.0.1:5269", "{d}");
        }
        // A domain configured in capitals is found under its normal form too.
        for d in ["other.example", "OTHER.example."] {
            let h = s.hosted(d).unwrap_or_else(|| panic!("{d}"));
            assert_eq!(h.internal_server.to_string(), "xmpp.other.example:5269");
        }
        assert!(!s.is_hosted("third.example"));
        assert!(!s.is_hosted("sub.corp.example"));
        assert!(!s.is_hosted("corp.example.."));
        // Replaced whole: a domain no longer configured is no longer hosted.
        let t = s.with_hosted([hosted("corp.example", None, "10.0.0.2:5269")]);
        assert!(!t.is_hosted("other.example"));
        assert_eq!(
            t.hosted("corp.example")
                .map(|h| h.internal_server.to_string()),
            Some("10.0.0.2:5269".to_owned())
        );
        assert!(
            s.is_hosted("other.example"),
            "the old snapshot is unchanged"
        );
    }

    #[test]
    fn authorisation_changes_make_a_new_set_and_leave_the_old_one() {
        let (alice, bob) = (user("alice@corp.example"), user("bob@partner.example"));
        let old = Authorisations::default();
        assert!(old.changes(&alice, &bob, AuthorisationChange::Authorise));
        assert!(!old.changes(&alice, &bob, AuthorisationChange::Withdraw));
        let new = old.with_changes([(&alice, &bob, AuthorisationChange::Authorise)]);
        assert!(new.contains(&alice, &bob) && !old.contains(&alice, &bob));
        assert!(!new.contains(&bob, &alice), "authorisation is one way");
        let back = new.with_changes([
            (&alice, &bob, AuthorisationChange::Withdraw),
            (&alice, &bob, AuthorisationChange::Authorise),
            (&alice, &bob, AuthorisationChange::Withdraw),
        ]);
        assert!(back.is_empty(), "changes apply in order");
    }

    #[test]
    fn replacing_one_part_shares_the_others() {
        let s = Snapshot::default();
        let t = s.with_authorisations(Authorisations::default());
        assert!(Arc::ptr_eq(&s.index, &t.index));
        assert!(Arc::ptr_eq(&s.settings, &t.settings));
        assert!(!Arc::ptr_eq(&s.authorisations, &t.authorisations));
    }
}
