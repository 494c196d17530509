//! The one decision on every stanza an authenticated stream carries: [`decide`] takes the
//! [`Snapshot`], the stream's authenticated facts and the stanza's addressing and kind, and says
//! where it goes — forwarded (with its addresses normalised, `<status/>` perhaps removed, an
//! authorisation perhaps recorded), bounced to its sender, dropped, or the stream closed with a
//! [`Refusal`]. The gateway carries the decision out and decides nothing itself.
//!
//! In order: the stream-level addressing rules ([`crate::enforce::stanza_verdict`]: authenticated,
//! `from` and `to` present, the sender's domain authenticated on this stream, the recipient a
//! hosted domain or a partner domain as the side requires); the partner of the remote domain
//! (gone since the stream was admitted: dropped, the live re-check closes the stream); both
//! addresses normalised as the internal servers would ([`crate::jid::normalise`], refused with
//! `<jid-malformed/>` when they cannot be); then the user-level rules of
//! [`crate::access::decide`] with the local user's effective policy (by the hosted domain's site)
//! and the PublicUnverified authorisation from the snapshot.

use crate::access::{self, AuthorisationChange, Direction, StanzaFacts, StanzaKind, Verdict};
use crate::enforce::{self, Refusal, Side, StanzaVerdict};
use crate::jid::{self, NormalJid};
use crate::snapshot::Snapshot;
use crate::{Domain, PartnerType, UserJid};

/// What the decision knows about the stream a stanza arrived on.
#[derive(Debug, Clone, Copy)]
pub struct StreamFacts<'a> {
    /// The side the stream is on (External: from a partner; Internal: from a hosted domain's
    /// server).
    pub side: Side,
    /// The domains the stream authenticated (lowercase); empty before authentication.
    pub authenticated: &'a [String],
}

/// A stanza's `from` and `to` attributes as received.
#[derive(Debug, Clone, Copy)]
pub struct Addressing<'a> {
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
}

/// Forward the stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// The side it leaves on (the other one).
    pub out: Side,
    /// The sending and receiving domains, normalised: the outbound stream to use.
    pub from_domain: String,
    pub to_domain: String,
    /// The normalised addresses to write into the stanza (None: the attribute stays as it is —
    /// not a message, presence or iq).
    pub from: Option<NormalJid>,
    pub to: Option<NormalJid>,
    /// Remove the `<status/>` children (PublicVerified, local users' presence).
    pub strip_status: bool,
    /// An authorisation change to make durable before the stanza leaves (PublicUnverified):
    /// (local user, remote user, change).
    pub authorisation: Option<(UserJid, UserJid, AuthorisationChange)>,
}

/// The stanza error a bounce carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BounceCondition {
    /// `<jid-malformed/>`, type modify.
    JidMalformed,
    /// `<policy-violation/>`, type cancel.
    PolicyViolation,
}

/// Why a stanza is not forwarded (bounced or dropped), for the answer, the log and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The stable metrics label (`user_not_enabled`, `not_authorised`, `malformed_jid`,
    /// `not_listed`).
    pub reason: &'static str,
    /// The text of the stanza error (and of the log line).
    pub text: &'static str,
    /// The sending and receiving domains (a bounce goes back from `to_domain` to `from_domain`).
    pub from_domain: String,
    pub to_domain: String,
    /// The partner concerned, the local and the remote user, when known (for the log).
    pub partner: Option<Domain>,
    pub local: Option<UserJid>,
    pub remote: Option<UserJid>,
}

/// The decision on one stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Forward(Forward),
    /// Answer the sender with this stanza error; do not forward.
    Bounce(BounceCondition, Refused),
    /// Neither forward nor answer.
    Drop(Refused),
    /// Close the stream with this error (nothing more is read from it).
    Close(Refusal),
}

/// The partner domain and local domain of a stanza crossing from `side`, and its direction.
fn orient<'a>(side: Side, from: &'a str, to: &'a str) -> (Direction, &'a str, &'a str) {
    match side {
        Side::External => (Direction::Inbound, to, from),
        Side::Internal => (Direction::Outbound, from, to),
    }
}

/// Decide one stanza. See the module documentation for the order of the rules.
pub fn decide(
    snapshot: &Snapshot,
    stream: StreamFacts<'_>,
    addressing: Addressing<'_>,
    kind: Option<StanzaKind>,
) -> Decision {
    let is_target = |d: &str| match stream.side {
        Side::External => snapshot.is_hosted(d),
        Side::Internal => snapshot.partner(d).is_some(),
    };
    let (from_domain, to_domain) = match enforce::stanza_verdict(
        stream.side,
        stream.authenticated,
        addressing.from,
        addressing.to,
        &is_target,
    ) {
        StanzaVerdict::Route { from, to } => (from, to),
        StanzaVerdict::Refuse(r) => return Decision::Close(r),
    };
    let out = match stream.side {
        Side::External => Side::Internal,
        Side::Internal => Side::External,
    };
    let forward = |from, to| Forward {
        out,
        from_domain: from_domain.clone(),
        to_domain: to_domain.clone(),
        from,
        to,
        strip_status: false,
        authorisation: None,
    };
    // Not a message, presence or iq: no user traffic to decide on.
    let Some(kind) = kind else {
        return Decision::Forward(forward(None, None));
    };
    let (direction, local_domain, remote_domain) = orient(stream.side, &from_domain, &to_domain);
    let refused = |reason, text, partner, local, remote| Refused {
        reason,
        text,
        from_domain: from_domain.clone(),
        to_domain: to_domain.clone(),
        partner,
        local,
        remote,
    };
    let Some(partner) = snapshot.partner(remote_domain) else {
        // The partner went away after the stream was admitted (a live Remove): the stream is
        // being closed; nothing more passes.
        return Decision::Drop(refused(
            "not_listed",
            "The partner is no longer allowed.",
            None,
            None,
            None,
        ));
    };
    let (from, to) = match (
        addressing.from.map(jid::normalise).transpose(),
        addressing.to.map(jid::normalise).transpose(),
    ) {
        (Ok(f), Ok(t)) => (f, t),
        _ => {
            return Decision::Bounce(
                BounceCondition::JidMalformed,
                refused(
                    "malformed_jid",
                    "The address is not a valid JID.",
                    Some(partner.identity.clone()),
                    None,
                    None,
                ),
            );
        }
    };
    let (local_addr, remote_addr) = match direction {
        Direction::Inbound => (&to, &from),
        Direction::Outbound => (&from, &to),
    };
    let local_user = local_addr.as_ref().and_then(NormalJid::user);
    let remote_user = remote_addr.as_ref().and_then(NormalJid::user);
    let site = snapshot
        .hosted(local_domain)
        .and_then(|h| h.site.as_deref());
    let user_enabled = local_user
        .as_ref()
        .is_none_or(|u| snapshot.access.effective(u, site).enable_xmpp_access);
    let authorised = match (&local_user, &remote_user) {
        (Some(l), Some(r))
            if partner.partner_type == PartnerType::PublicUnverified
                && direction == Direction::Inbound
                && user_enabled =>
        {
            snapshot.authorisations.contains(l, r)
        }
        _ => false,
    };
    let decision = access::decide(&StanzaFacts {
        direction,
        kind,
        local_is_user: local_user.is_some(),
        remote_is_user: remote_user.is_some(),
        partner_type: partner.partner_type,
        user_enabled,
        authorised,
    });
    let partner = Some(partner.identity.clone());
    match decision.verdict {
        Verdict::Pass | Verdict::PassWithoutStatus => {
            let authorisation = match (decision.authorisation, &local_user, &remote_user) {
                (Some(change), Some(l), Some(r))
                    if snapshot.authorisations.changes(l, r, change) =>
                {
                    Some((l.clone(), r.clone(), change))
                }
                _ => None,
            };
            Decision::Forward(Forward {
                strip_status: decision.verdict == Verdict::PassWithoutStatus,
                authorisation,
                ..forward(from, to)
            })
        }
        Verdict::Bounce(reason) => Decision::Bounce(
            BounceCondition::PolicyViolation,
            refused(
                reason.label(),
                reason.text(direction),
                partner,
                local_user,
                remote_user,
            ),
        ),
        Verdict::Drop(reason) => Decision::Drop(refused(
            reason.label(),
            reason.text(direction),
            partner,
            local_user,
            remote_user,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::PresenceType;
    use crate::snapshot::{Authorisations, Hosted};
    use crate::{
        AccessPolicies, ExternalAccessPolicy, PartnerIndex, PolicyScope, XmppAllowedPartner,
    };

    const MESSAGE: Option<StanzaKind> = Some(StanzaKind::Message { is_error: false });

    fn partner(domain: &str, t: PartnerType) -> XmppAllowedPartner {
        let mut p = XmppAllowedPartner::new(Domain::parse(domain).unwrap());
        p.partner_type = t;
        p
    }

    fn user(s: &str) -> UserJid {
        UserJid::parse(s).unwrap()
    }

    /// corp.example hosted (site emea); fed.example Federated, pub.example PublicVerified,
    /// unv.example PublicUnverified; carol@corp.example not enabled (a user policy).
    fn snapshot() -> Snapshot {
        let index = PartnerIndex::build([
            partner("fed.example", PartnerType::Federated),
            partner("pub.example", PartnerType::PublicVerified),
            partner("unv.example", PartnerType::PublicUnverified),
        ])
        .unwrap();
        let mut off = ExternalAccessPolicy::new(PolicyScope::parse("Tag:NoFederation").unwrap());
        off.enable_xmpp_access = false;
        let mut global = ExternalAccessPolicy::new(PolicyScope::Global);
        global.enable_xmpp_access = true;
        let access = AccessPolicies::new(
            [global, off],
            [(user("carol@corp.example"), "NoFederation".to_owned())],
        );
        Snapshot::new(
            7,
            [Hosted {
                domain: Domain::parse("corp.example").unwrap(),
                site: Some("emea".into()),
            }],
            index,
            access,
            Default::default(),
            Authorisations::new([(user("alice@corp.example"), user("friend@unv.example"))]),
        )
    }

    fn external(auth: &[String]) -> StreamFacts<'_> {
        StreamFacts {
            side: Side::External,
            authenticated: auth,
        }
    }

    fn internal(auth: &[String]) -> StreamFacts<'_> {
        StreamFacts {
            side: Side::Internal,
            authenticated: auth,
        }
    }

    fn addr<'a>(from: &'a str, to: &'a str) -> Addressing<'a> {
        Addressing {
            from: Some(from),
            to: Some(to),
        }
    }

    #[test]
    fn a_message_from_a_federated_partner_is_forwarded_normalised() {
        let s = snapshot();
        let auth = ["fed.example".to_owned()];
        let d = decide(
            &s,
            external(&auth),
            addr("Bob@FED.example/Phone", "ＡＬＩＣＥ@corp.example"),
            MESSAGE,
        );
        let Decision::Forward(f) = d else {
            panic!("{d:?}")
        };
        assert_eq!(f.out, Side::Internal);
        assert_eq!(
            (f.from_domain.as_str(), f.to_domain.as_str()),
            ("fed.example", "corp.example")
        );
        assert_eq!(f.from.unwrap().to_string(), "bob@fed.example/Phone");
        assert_eq!(f.to.unwrap().to_string(), "alice@corp.example");
        assert!(!f.strip_status && f.authorisation.is_none());
    }

    #[test]
    fn stream_level_addressing_faults_close_the_stream() {
        let s = snapshot();
        let auth = ["fed.example".to_owned()];
        let reason = |d: Decision| match d {
            Decision::Close(r) => r.reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            reason(decide(
                &s,
                external(&[]),
                addr("a@fed.example", "b@corp.example"),
                MESSAGE
            )),
            "not_authenticated"
        );
        assert_eq!(
            reason(decide(
                &s,
                external(&auth),
                Addressing {
                    from: None,
                    to: Some("b@corp.example")
                },
                MESSAGE
            )),
            "improper_addressing"
        );
        assert_eq!(
            reason(decide(
                &s,
                external(&auth),
                addr("a@pub.example", "b@corp.example"),
                MESSAGE
            )),
            "spoofed_from"
        );
        assert_eq!(
            reason(decide(
                &s,
                external(&auth),
                addr("a@fed.example", "b@other.example"),
                MESSAGE
            )),
            "unknown_target"
        );
        let auth = ["corp.example".to_owned()];
        assert_eq!(
            reason(decide(
                &s,
                internal(&auth),
                addr("a@corp.example", "b@unlisted.example"),
                MESSAGE
            )),
            "unknown_target"
        );
    }

    #[test]
    fn a_removed_partner_gets_nothing_through_and_bad_addresses_bounce() {
        let s = snapshot();
        let auth = ["gone.example".to_owned()];
        let d = decide(
            &s,
            external(&auth),
            addr("a@gone.example", "b@corp.example"),
            MESSAGE,
        );
        assert!(
            matches!(d, Decision::Drop(ref r) if r.reason == "not_listed"),
            "{d:?}"
        );
        let auth = ["fed.example".to_owned()];
        let d = decide(
            &s,
            external(&auth),
            addr("a b@fed.example", "alice@corp.example"),
            MESSAGE,
        );
        assert!(
            matches!(d, Decision::Bounce(BounceCondition::JidMalformed, ref r) if r.reason == "malformed_jid"),
            "{d:?}"
        );
    }

    #[test]
    fn user_policy_bounces_with_the_users_named() {
        let s = snapshot();
        let auth = ["corp.example".to_owned()];
        let d = decide(
            &s,
            internal(&auth),
            addr("Carol@corp.example/pc", "bob@fed.example"),
            MESSAGE,
        );
        let Decision::Bounce(BounceCondition::PolicyViolation, r) = d else {
            panic!("{d:?}")
        };
        assert_eq!(r.reason, "user_not_enabled");
        assert_eq!(r.local, Some(user("carol@corp.example")));
        assert_eq!(r.remote, Some(user("bob@fed.example")));
        assert_eq!(
            (r.from_domain.as_str(), r.to_domain.as_str()),
            ("corp.example", "fed.example")
        );
        // Unavailable presence is dropped, not bounced.
        let d = decide(
            &s,
            internal(&auth),
            addr("carol@corp.example", "bob@fed.example"),
            Some(StanzaKind::Presence(PresenceType::Unavailable)),
        );
        assert!(
            matches!(d, Decision::Drop(ref r) if r.reason == "user_not_enabled"),
            "{d:?}"
        );
    }

    #[test]
    fn public_verified_presence_loses_its_status_going_out() {
        let s = snapshot();
        let auth = ["corp.example".to_owned()];
        let d = decide(
            &s,
            internal(&auth),
            addr("alice@corp.example", "bob@pub.example"),
            Some(StanzaKind::Presence(PresenceType::Available)),
        );
        assert!(
            matches!(d, Decision::Forward(ref f) if f.strip_status),
            "{d:?}"
        );
    }

    #[test]
    fn public_unverified_authorisations_come_from_the_snapshot_and_changes_are_returned() {
        let s = snapshot();
        let ext = ["unv.example".to_owned()];
        let d = decide(
            &s,
            external(&ext),
            addr("friend@unv.example", "alice@corp.example"),
            MESSAGE,
        );
        assert!(matches!(d, Decision::Forward(_)), "authorised: {d:?}");
        let d = decide(
            &s,
            external(&ext),
            addr("stranger@unv.example", "alice@corp.example"),
            MESSAGE,
        );
        assert!(
            matches!(d, Decision::Bounce(BounceCondition::PolicyViolation, ref r) if r.reason == "not_authorised"),
            "{d:?}"
        );
        let int = ["corp.example".to_owned()];
        let subscribed = Some(StanzaKind::Presence(PresenceType::Subscribed));
        let d = decide(
            &s,
            internal(&int),
            addr("alice@corp.example", "Stranger@unv.example/x"),
            subscribed,
        );
        let Decision::Forward(f) = d else {
            panic!("{d:?}")
        };
        assert_eq!(
            f.authorisation,
            Some((
                user("alice@corp.example"),
                user("stranger@unv.example"),
                AuthorisationChange::Authorise
            ))
        );
        // Already authorised: nothing to record.
        let d = decide(
            &s,
            internal(&int),
            addr("alice@corp.example", "friend@unv.example"),
            subscribed,
        );
        assert!(
            matches!(d, Decision::Forward(ref f) if f.authorisation.is_none()),
            "{d:?}"
        );
        let s2 = s.with_authorisations(s.authorisations.with_changes([(
            &user("alice@corp.example"),
            &user("stranger@unv.example"),
            AuthorisationChange::Authorise,
        )]));
        let d = decide(
            &s2,
            external(&ext),
            addr("stranger@unv.example", "alice@corp.example"),
            MESSAGE,
        );
        assert!(matches!(d, Decision::Forward(_)), "after the change: {d:?}");
    }

    #[test]
    fn other_elements_pass_unchanged_after_the_addressing_rules() {
        let s = snapshot();
        let auth = ["fed.example".to_owned()];
        let d = decide(
            &s,
            external(&auth),
            addr("a b@fed.example", "alice@corp.example"),
            None,
        );
        assert!(
            matches!(d, Decision::Forward(ref f) if f.from.is_none() && f.to.is_none()),
            "{d:?}"
        );
    }
}
