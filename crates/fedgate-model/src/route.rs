//! The one decision on every stanza an authenticated stream carries: [`decide`] takes the
//! [`Snapshot`], the stream's authenticated facts and the stanza's addressing and kind, and says
//! where it goes — forwarded (with its addresses normalised, `<status/>` perhaps removed, an
//! authorisation perhaps recorded), bounced to its sender, dropped, or the stream closed with a
//! [`Refusal`]. The gateway carries the decision out and decides nothing itself — also when the
//! store does not commit a stanza's authorisation change: [`Commit::if_not_committed`], decided
//! here with the rest, says what becomes of the stanza then (bounced, never forwarded).
//!
//! In order: the stream-level addressing rules ([`crate::enforce::stanza_verdict`]: authenticated,
//! `from` and `to` present, the sender's domain authenticated on this stream, the recipient a
//! hosted domain or a partner domain as the side requires); the partner of the remote domain
//! (gone since the stream was admitted: dropped, the live re-check closes the stream); both
//! addresses normalised as the internal servers would ([`crate::jid::normalise`], refused with
//! `<jid-malformed/>` when they cannot be); then the user-level rules of
//! [`crate::access::decide`] with the local user's effective policy (by the hosted domain's site),
//! the PublicUnverified authorisation from the snapshot and, for PublicUnverified traffic from a
//! remote the local user has not authorised, what her own traffic opened ([`SessionView`]: an
//! answer she awaits, a directed-presence path, the contact-request budgets). The session change a
//! stanza makes is returned in [`Forward::session`] for the gateway to apply.

use std::cell::Cell;

use crate::access::{
    self, AuthorisationChange, Direction, SessionEffect, StanzaFacts, StanzaKind, Verdict,
};
use crate::enforce::{self, Refusal, Side, StanzaVerdict};
use crate::jid::{self, NormalJid};
use crate::session::{Outgoing, PathState, Request, SessionUpdate, SessionView};
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

/// A stanza's `from`, `to` and `id` attributes as received.
#[derive(Debug, Clone, Copy)]
pub struct Addressing<'a> {
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub id: Option<&'a str>,
}

/// An authorisation change the gateway makes durable before the stanza that makes it leaves
/// (PublicUnverified), and what becomes of that stanza if the store does not commit it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The local user, the remote user, the change.
    pub local: UserJid,
    pub remote: UserJid,
    pub change: AuthorisationChange,
    /// The stanza's fate when the change is not committed (see [`not_committed`]): the gateway
    /// answers it with this instead of forwarding it.
    pub if_not_committed: (BounceCondition, Refused),
}

/// Forward the stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// The side it leaves on (the other one).
    pub out: Side,
    /// The sending and receiving domains, normalised: the outbound stream to use. `Domain`s,
    /// not `String`s: one in normal form of up to 22 bytes (nearly all) is kept inline, so the
    /// decision to forward allocates nothing for them.
    pub from_domain: Domain,
    pub to_domain: Domain,
    /// The normalised addresses to write into the stanza, where it does not carry them written
    /// so already (None: the attribute stays as it is; nearly every address is written in
    /// normal form, and the stanza is then forwarded without looking at it again).
    pub from: Option<NormalJid>,
    pub to: Option<NormalJid>,
    /// Remove the `<status/>` children (PublicVerified, local users' presence).
    pub strip_status: bool,
    /// An authorisation change to make durable before the stanza leaves (PublicUnverified);
    /// boxed, as it is rare.
    pub authorisation: Option<Box<Commit>>,
    /// A session change to apply before the stanza leaves (PublicUnverified; see
    /// [`crate::session::Sessions::apply`]); boxed, as it is rare and large.
    pub session: Option<Box<SessionUpdate>>,
    /// The partner the stanza comes from or goes to (its Identity), for the partner's traffic
    /// count.
    pub partner: Option<Domain>,
}

/// The stanza error a bounce carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BounceCondition {
    /// `<jid-malformed/>`, type modify.
    JidMalformed,
    /// `<policy-violation/>`, type cancel.
    PolicyViolation,
    /// `<resource-constraint/>`, type wait: the gateway could not do what the stanza needs now;
    /// the sender may try again later (see [`not_committed`]).
    ResourceConstraint,
}

/// Why a stanza is not forwarded (bounced or dropped), for the answer, the log and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The stable metrics label (`user_not_enabled`, `not_authorised`, `malformed_jid`,
    /// `not_listed`, `authorisation_not_committed`, …).
    pub reason: &'static str,
    /// The text of the stanza error (and of the log line).
    pub text: &'static str,
    /// The sending and receiving domains (a bounce goes back from `to_domain` to `from_domain`).
    pub from_domain: Domain,
    pub to_domain: Domain,
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

/// The stable label of a stanza refused because its authorisation change was not committed.
pub const AUTHORISATION_NOT_COMMITTED: &str = "authorisation_not_committed";

/// What becomes of a stanza whose authorisation change the store did not commit (the store
/// unreachable, locked, full or read-only), `refused` naming its sender and recipient: it is not
/// forwarded — the remote side would believe a subscription (or its end) the gateway does not
/// honour — and its sender gets `<resource-constraint/>` of type `wait`. Of RFC 6120's stanza
/// error conditions (§8.3.3) this is the one for "the server lacks the resources to service the
/// request", and its type `wait` tells the sender's client the failure is temporary and the same
/// stanza may succeed later, which is the case: nothing changed, the store is usually back soon.
/// (`<internal-server-error/>`, the other candidate, has type `cancel` by the RFC — "do not
/// retry" — which would tell the user her contact request is refused for good.)
pub fn not_committed(refused: Refused) -> (BounceCondition, Refused) {
    (
        BounceCondition::ResourceConstraint,
        Refused {
            reason: AUTHORISATION_NOT_COMMITTED,
            text: "The gateway could not record this authorisation, so it was not sent; try again later.",
            ..refused
        },
    )
}

/// The direction of a stanza crossing from `side`, its local domain and its remote (partner)
/// domain.
fn orient<T>(side: Side, from: T, to: T) -> (Direction, T, T) {
    match side {
        Side::External => (Direction::Inbound, to, from),
        Side::Internal => (Direction::Outbound, from, to),
    }
}

/// Decide one stanza. See the module documentation for the order of the rules. `sessions` is read
/// only for PublicUnverified traffic from a remote user the local user has not authorised.
pub fn decide(
    snapshot: &Snapshot,
    stream: StreamFacts<'_>,
    addressing: Addressing<'_>,
    kind: StanzaKind,
    sessions: &dyn SessionView,
) -> Decision {
    // Each address is split once, its domain parsed once (for the stream-level rules, then
    // kept for its normalisation), and the recipient domain looked up once (the target check
    // keeps what it found: the hosted domain on the external side, the partner on the internal).
    let (from_parts, to_parts) = (
        addressing.from.map(jid::split),
        addressing.to.map(jid::split),
    );
    let target_hosted = Cell::new(None);
    let target_partner = Cell::new(None);
    let is_target = |d: &str| match stream.side {
        Side::External => {
            target_hosted.set(snapshot.hosted(d));
            target_hosted.get().is_some()
        }
        Side::Internal => {
            target_partner.set(snapshot.partner(d));
            target_partner.get().is_some()
        }
    };
    let (from_domain, to_domain) = match enforce::stanza_verdict_parts(
        stream.side,
        stream.authenticated,
        from_parts,
        to_parts,
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
        session: None,
        partner: None,
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
    let partner = match stream.side {
        Side::External => snapshot.partner(remote_domain.as_str()),
        Side::Internal => target_partner.get(),
    };
    let Some(partner) = partner else {
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
    // Both addresses are there: the stream-level rules refuse a stanza without either.
    let normalised = |parts: Option<jid::Parts<'_>>, domain: &Domain| {
        parts
            .map(|p| jid::normalise_parts(p, |_| Ok(domain.clone())))
            .transpose()
    };
    let (from, to) = match (
        normalised(from_parts, &from_domain),
        normalised(to_parts, &to_domain),
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
        Direction::Inbound => (to.as_ref().map(|n| &n.jid), from.as_ref().map(|n| &n.jid)),
        Direction::Outbound => (from.as_ref().map(|n| &n.jid), to.as_ref().map(|n| &n.jid)),
    };
    let local_user = local_addr.and_then(NormalJid::user);
    let remote_user = remote_addr.and_then(NormalJid::user);
    let hosted = match stream.side {
        Side::External => target_hosted.get(),
        Side::Internal => snapshot.hosted(local_domain.as_str()),
    };
    let site = hosted.and_then(|h| h.site.as_deref());
    let user_enabled = local_user
        .as_ref()
        .is_none_or(|u| snapshot.access.effective(u, site).enable_xmpp_access);
    let unverified = partner.partner_type == PartnerType::PublicUnverified && user_enabled;
    let authorised = match (&local_user, &remote_user) {
        (Some(l), Some(r)) if unverified => snapshot.authorisations.contains(l, r),
        _ => false,
    };
    // What her own traffic opened, read only where it can matter: inbound from a remote she has
    // not authorised, to her (not to a server), from a PublicUnverified partner.
    let mut answers_request = false;
    let mut path = PathState::None;
    let mut contact_request_allowed = false;
    if let (true, false, Direction::Inbound, Some(l), Some(local), Some(remote)) = (
        unverified,
        authorised,
        direction,
        &local_user,
        local_addr,
        remote_addr,
    ) {
        if let (Some(request), Some(id)) = (Request::answered_by(kind), addressing.id) {
            answers_request = sessions.awaits(l, local.resource(), remote, request, id);
        }
        if kind == StanzaKind::Presence(access::PresenceType::Subscribe) {
            contact_request_allowed = remote_user
                .as_ref()
                .is_some_and(|r| sessions.may_request_contact(r, &partner.identity));
        } else if !answers_request {
            path = sessions.path(l, local.resource(), remote);
        }
    }
    let decision = access::decide(&StanzaFacts {
        direction,
        kind,
        local_is_user: local_user.is_some(),
        remote_is_user: remote_user.is_some(),
        partner_type: partner.partner_type,
        user_enabled,
        authorised,
        answers_request,
        path,
        contact_request_allowed,
    });
    let partner = Some(partner.identity.clone());
    match decision.verdict {
        Verdict::Pass | Verdict::PassWithoutStatus => {
            let authorisation = match (decision.authorisation, &local_user, &remote_user) {
                (Some(change), Some(l), Some(r))
                    if snapshot.authorisations.changes(l, r, change) =>
                {
                    Some(Box::new(Commit {
                        local: l.clone(),
                        remote: r.clone(),
                        change,
                        if_not_committed: not_committed(refused(
                            AUTHORISATION_NOT_COMMITTED,
                            "",
                            partner.clone(),
                            Some(l.clone()),
                            Some(r.clone()),
                        )),
                    }))
                }
                _ => None,
            };
            let session = match (decision.session, &local_user, local_addr, remote_addr) {
                (Some(effect), Some(l), Some(local), Some(remote)) => {
                    session_update(effect, kind, l, local, remote, addressing.id, &partner)
                        .map(Box::new)
                }
                _ => None,
            };
            Decision::Forward(Forward {
                strip_status: decision.verdict == Verdict::PassWithoutStatus,
                authorisation,
                session,
                partner,
                // Only the addresses not written in normal form already are written anew.
                ..forward(
                    from.filter(|n| !n.as_written).map(|n| n.jid),
                    to.filter(|n| !n.as_written).map(|n| n.jid),
                )
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

/// The session change for `effect` on a stanza of `kind` between `local` (the local user `l`'s
/// address) and `remote`.
fn session_update(
    effect: SessionEffect,
    kind: StanzaKind,
    l: &UserJid,
    local: &NormalJid,
    remote: &NormalJid,
    id: Option<&str>,
    partner: &Option<Domain>,
) -> Option<SessionUpdate> {
    Some(match effect {
        SessionEffect::Sent => SessionUpdate::Sent {
            local: l.clone(),
            resource: local.resource().map(str::to_owned),
            remote: remote.clone(),
            what: Outgoing::of(kind)?,
            id: id.map(str::to_owned),
        },
        SessionEffect::Answered => SessionUpdate::Answered {
            local: l.clone(),
            resource: local.resource().map(str::to_owned),
            remote: remote.clone(),
            request: Request::answered_by(kind)?,
            id: id?.to_owned(),
        },
        SessionEffect::ContactRequest => SessionUpdate::ContactRequest {
            remote: remote.user()?,
            partner: partner.clone()?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::PresenceType;
    use crate::snapshot::{Authorisations, Hosted};
    use crate::{
        AccessPolicies, ExternalAccessPolicy, PartnerIndex, PolicyScope, XmppAllowedPartner,
    };

    use crate::access::{IqType, MessageType};
    use crate::session::{NoSessions, Sessions};
    use std::time::{Duration, Instant};

    const MESSAGE: StanzaKind = StanzaKind::Message(MessageType::Chat);

    /// The decision with no session state.
    fn decide(
        s: &Snapshot,
        stream: StreamFacts<'_>,
        addressing: Addressing<'_>,
        kind: StanzaKind,
    ) -> Decision {
        super::decide(s, stream, addressing, kind, &NoSessions)
    }

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
            {
                let mut p = partner("unv.example", PartnerType::PublicUnverified);
                p.additional_domains =
                    vec![crate::DomainPattern::parse("conference.unv.example").unwrap()];
                p
            },
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
                internal_server: crate::HostPort::parse("127.0.0.1:5269", 5269).unwrap(),
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
            id: None,
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
        // Counted in the partner's traffic.
        assert_eq!(f.partner.as_ref().map(|p| p.as_str()), Some("fed.example"));
        assert_eq!(f.from.unwrap().to_string(), "bob@fed.example/Phone");
        assert_eq!(f.to.unwrap().to_string(), "alice@corp.example");
        assert!(!f.strip_status && f.authorisation.is_none());
    }

    #[test]
    fn addresses_written_in_normal_form_are_left_as_they_are() {
        let s = snapshot();
        let auth = ["fed.example".to_owned()];
        let forwarded = |from, to| match decide(&s, external(&auth), addr(from, to), MESSAGE) {
            Decision::Forward(f) => (f.from.map(|a| a.to_string()), f.to.map(|a| a.to_string())),
            d => panic!("{d:?}"),
        };
        assert_eq!(
            forwarded("bob@fed.example/Phone", "alice@corp.example"),
            (None, None)
        );
        assert_eq!(
            forwarded("bob@fed.example/Phone", "Alice@corp.example/x"),
            (None, Some("alice@corp.example/x".to_owned()))
        );
        assert_eq!(
            forwarded("bob@FED.example", "alice@corp.example"),
            (Some("bob@fed.example".to_owned()), None)
        );
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
                    to: Some("b@corp.example"),
                    id: None,
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
            StanzaKind::Presence(PresenceType::Unavailable),
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
            StanzaKind::Presence(PresenceType::Available),
        );
        assert!(
            matches!(d, Decision::Forward(ref f) if f.strip_status),
            "{d:?}"
        );
    }

    /// The authorisation change a forwarded stanza makes: (local, remote, change).
    fn change_of(f: &Forward) -> Option<(UserJid, UserJid, AuthorisationChange)> {
        f.authorisation
            .as_ref()
            .map(|c| (c.local.clone(), c.remote.clone(), c.change))
    }

    #[test]
    fn a_change_the_store_does_not_commit_is_bounced_to_its_sender_to_retry_later() {
        let s = snapshot();
        let int = ["corp.example".to_owned()];
        for (kind, to, change) in [
            (
                PresenceType::Subscribed,
                "Stranger@unv.example/x",
                AuthorisationChange::Authorise,
            ),
            (
                PresenceType::Subscribe,
                "stranger@unv.example",
                AuthorisationChange::Authorise,
            ),
            (
                PresenceType::Unsubscribe,
                "friend@unv.example",
                AuthorisationChange::Withdraw,
            ),
            (
                PresenceType::Unsubscribed,
                "friend@unv.example",
                AuthorisationChange::Withdraw,
            ),
        ] {
            let d = decide(
                &s,
                internal(&int),
                addr("alice@corp.example/phone", to),
                StanzaKind::Presence(kind),
            );
            let Decision::Forward(f) = d else {
                panic!("{kind:?}: {d:?}")
            };
            let commit = f.authorisation.expect("a change to commit");
            assert_eq!(commit.change, change, "{kind:?}");
            assert_eq!(
                commit.remote,
                user(if change == AuthorisationChange::Authorise {
                    "stranger@unv.example"
                } else {
                    "friend@unv.example"
                })
            );
            // Not forwarded then, but answered: retry later, from the recipient to the sender.
            let (condition, r) = commit.if_not_committed.clone();
            assert_eq!(condition, BounceCondition::ResourceConstraint, "{kind:?}");
            assert_eq!(r.reason, AUTHORISATION_NOT_COMMITTED);
            assert!(r.text.contains("try again later"), "{}", r.text);
            assert_eq!(
                (r.from_domain.as_str(), r.to_domain.as_str()),
                ("corp.example", "unv.example")
            );
            assert_eq!(r.partner.as_ref().map(|p| p.as_str()), Some("unv.example"));
            assert_eq!(r.local, Some(user("alice@corp.example")));
            assert_eq!(r.remote, Some(commit.remote.clone()), "{kind:?}");
        }
        // Nothing to commit, nothing that could fail: a Federated partner's subscription.
        let d = decide(
            &s,
            internal(&int),
            addr("alice@corp.example", "bob@fed.example"),
            StanzaKind::Presence(PresenceType::Subscribed),
        );
        assert!(
            matches!(d, Decision::Forward(ref f) if f.authorisation.is_none()),
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
        let subscribed = StanzaKind::Presence(PresenceType::Subscribed);
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
            change_of(&f),
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

    /// What the gateway does with a stanza: decide on the session state at `now`, then apply
    /// the session change of a forwarded stanza.
    fn through(
        s: &Snapshot,
        sessions: &mut Sessions,
        now: Instant,
        side: Side,
        (from, to, id): (&str, &str, Option<&str>),
        kind: StanzaKind,
    ) -> Decision {
        // The partner's stream authenticated all its domains; the internal server, the hosted one.
        let auth = match side {
            Side::External => vec![
                "unv.example".to_owned(),
                "conference.unv.example".to_owned(),
                "fed.example".to_owned(),
                "pub.example".to_owned(),
            ],
            Side::Internal => vec!["corp.example".to_owned()],
        };
        let d = super::decide(
            s,
            StreamFacts {
                side,
                authenticated: &auth,
            },
            Addressing {
                from: Some(from),
                to: Some(to),
                id,
            },
            kind,
            &sessions.at(now),
        );
        if let Decision::Forward(Forward {
            session: Some(u), ..
        }) = &d
        {
            sessions.apply(u, now);
        }
        d
    }

    fn passes(d: &Decision) -> bool {
        matches!(d, Decision::Forward(_))
    }

    fn dropped_as(d: &Decision) -> Option<&'static str> {
        match d {
            Decision::Drop(r) => Some(r.reason),
            _ => None,
        }
    }

    fn bounced_as(d: &Decision) -> Option<&'static str> {
        match d {
            Decision::Bounce(BounceCondition::PolicyViolation, r) => Some(r.reason),
            _ => None,
        }
    }

    const GET: StanzaKind = StanzaKind::Iq(IqType::Get);
    const RESULT: StanzaKind = StanzaKind::Iq(IqType::Result);

    #[test]
    fn a_reply_to_her_request_passes_once_within_the_timeout_and_an_unsolicited_one_is_dropped() {
        let s = snapshot();
        let mut sessions = Sessions::default();
        let t0 = Instant::now();
        let (ext, int) = (Side::External, Side::Internal);
        // Unsolicited: dropped (never bounced), from a user or a server.
        for from in ["stranger@unv.example/x", "unv.example"] {
            let d = through(
                &s,
                &mut sessions,
                t0,
                ext,
                (from, "alice@corp.example/phone", Some("p1")),
                RESULT,
            );
            assert_eq!(dropped_as(&d), Some("unsolicited"), "{from}: {d:?}");
        }
        // She pings the partner's server and a partner user's full JID.
        for to in ["unv.example", "Stranger@unv.example/x"] {
            let d = through(
                &s,
                &mut sessions,
                t0,
                int,
                ("alice@corp.example/phone", to, Some("p1")),
                GET,
            );
            assert!(
                matches!(
                    d,
                    Decision::Forward(Forward {
                        session: Some(_),
                        ..
                    })
                ),
                "{d:?}"
            );
        }
        // A reply from elsewhere, to another resource of hers or with another id: dropped.
        for (from, to, id) in [
            ("eve@unv.example/x", "alice@corp.example/phone", "p1"),
            ("unv.example", "alice@corp.example/laptop", "p1"),
            ("unv.example", "alice@corp.example/phone", "p2"),
        ] {
            let d = through(&s, &mut sessions, t0, ext, (from, to, Some(id)), RESULT);
            assert_eq!(dropped_as(&d), Some("unsolicited"), "{from} {to} {id}");
        }
        // The replies pass (an error reply too), each once.
        let t1 = t0 + Duration::from_secs(1);
        let d = through(
            &s,
            &mut sessions,
            t1,
            ext,
            ("unv.example", "alice@corp.example/phone", Some("p1")),
            RESULT,
        );
        assert!(passes(&d), "{d:?}");
        let d = through(
            &s,
            &mut sessions,
            t1,
            ext,
            ("unv.example", "alice@corp.example/phone", Some("p1")),
            RESULT,
        );
        assert_eq!(dropped_as(&d), Some("unsolicited"), "a second reply: {d:?}");
        let d = through(
            &s,
            &mut sessions,
            t1,
            ext,
            (
                "stranger@unv.example/x",
                "alice@corp.example/phone",
                Some("p1"),
            ),
            StanzaKind::Iq(IqType::Error),
        );
        assert!(passes(&d), "{d:?}");
        // After the timeout, the reply is dropped.
        through(
            &s,
            &mut sessions,
            t1,
            int,
            ("alice@corp.example/phone", "unv.example", Some("late")),
            GET,
        );
        let late = t1 + sessions.limits().request_timeout;
        let d = through(
            &s,
            &mut sessions,
            late,
            ext,
            ("unv.example", "alice@corp.example/phone", Some("late")),
            RESULT,
        );
        assert_eq!(dropped_as(&d), Some("unsolicited"), "{d:?}");
        // An error reply to her message passes; an unsolicited error message is dropped.
        through(
            &s,
            &mut sessions,
            t1,
            int,
            (
                "alice@corp.example/phone",
                "stranger@unv.example",
                Some("m1"),
            ),
            StanzaKind::Message(MessageType::Chat),
        );
        let error = StanzaKind::Message(MessageType::Error);
        let d = through(
            &s,
            &mut sessions,
            t1,
            ext,
            (
                "stranger@unv.example",
                "alice@corp.example/phone",
                Some("m1"),
            ),
            error,
        );
        assert!(passes(&d), "{d:?}");
        let d = through(
            &s,
            &mut sessions,
            t1,
            ext,
            (
                "stranger@unv.example",
                "alice@corp.example/phone",
                Some("m9"),
            ),
            error,
        );
        assert_eq!(dropped_as(&d), Some("unsolicited"), "{d:?}");
        // A request with the same id does not pass as if it were the answer.
        through(
            &s,
            &mut sessions,
            t1,
            int,
            (
                "alice@corp.example/phone",
                "stranger@unv.example/x",
                Some("q"),
            ),
            GET,
        );
        let d = through(
            &s,
            &mut sessions,
            t1,
            ext,
            (
                "stranger@unv.example/x",
                "alice@corp.example/phone",
                Some("q"),
            ),
            GET,
        );
        assert_eq!(bounced_as(&d), Some("not_authorised"), "{d:?}");
    }

    #[test]
    fn directed_presence_opens_a_path_that_her_unavailable_closes() {
        let s = snapshot();
        let mut sessions = Sessions::default();
        let t0 = Instant::now();
        let (ext, int) = (Side::External, Side::Internal);
        let me = "alice@corp.example/phone";
        let groupchat = StanzaKind::Message(MessageType::Groupchat);
        let available = StanzaKind::Presence(PresenceType::Available);
        let room_says = |sessions: &mut Sessions, t, kind| {
            through(
                &s,
                sessions,
                t,
                ext,
                ("room@conference.unv.example/bob", me, None),
                kind,
            )
        };
        // Before she joins, the room is a stranger.
        assert_eq!(
            bounced_as(&room_says(&mut sessions, t0, groupchat)),
            Some("not_authorised")
        );
        let d = through(
            &s,
            &mut sessions,
            t0,
            int,
            (me, "room@conference.unv.example/Alice", None),
            available,
        );
        assert!(passes(&d), "{d:?}");
        for kind in [available, groupchat, GET] {
            let d = room_says(&mut sessions, t0, kind);
            assert!(passes(&d), "{kind:?}: {d:?}");
        }
        // Only her resource that joined; only that room; a chat message is not room traffic.
        let d = through(
            &s,
            &mut sessions,
            t0,
            ext,
            (
                "room@conference.unv.example/bob",
                "alice@corp.example/laptop",
                None,
            ),
            groupchat,
        );
        assert_eq!(bounced_as(&d), Some("not_authorised"), "{d:?}");
        let d = through(
            &s,
            &mut sessions,
            t0,
            ext,
            ("other@conference.unv.example/bob", me, None),
            groupchat,
        );
        assert_eq!(bounced_as(&d), Some("not_authorised"), "{d:?}");
        assert_eq!(
            bounced_as(&room_says(
                &mut sessions,
                t0,
                StanzaKind::Message(MessageType::Chat)
            )),
            Some("not_authorised")
        );
        // She leaves: the room's unavailable still passes; its groupchat in flight is dropped
        // (not bounced), and once the grace is over it is bounced like a stranger's.
        let t1 = t0 + Duration::from_secs(5);
        through(
            &s,
            &mut sessions,
            t1,
            int,
            (me, "room@conference.unv.example/Alice", None),
            StanzaKind::Presence(PresenceType::Unavailable),
        );
        assert!(passes(&room_says(
            &mut sessions,
            t1,
            StanzaKind::Presence(PresenceType::Unavailable)
        )));
        assert_eq!(
            dropped_as(&room_says(&mut sessions, t1, groupchat)),
            Some("path_closed")
        );
        assert_eq!(
            dropped_as(&room_says(&mut sessions, t1, available)),
            Some("path_closed")
        );
        let t2 = t1 + sessions.limits().path_closing;
        assert_eq!(
            bounced_as(&room_says(&mut sessions, t2, groupchat)),
            Some("not_authorised")
        );
        assert_eq!(
            dropped_as(&room_says(
                &mut sessions,
                t2,
                StanzaKind::Presence(PresenceType::Unavailable)
            )),
            Some("not_authorised")
        );
    }

    #[test]
    fn contact_requests_pass_within_their_budget_and_her_approval_authorises() {
        let s = snapshot();
        let mut sessions = Sessions::default();
        let t0 = Instant::now();
        let burst = sessions.limits().subscribe_per_remote.burst as usize;
        let subscribe = StanzaKind::Presence(PresenceType::Subscribe);
        let outcomes: Vec<Decision> = (0..burst + 5)
            .map(|_| {
                through(
                    &s,
                    &mut sessions,
                    t0,
                    Side::External,
                    ("stranger@unv.example/x", "alice@corp.example", None),
                    subscribe,
                )
            })
            .collect();
        assert_eq!(outcomes.iter().filter(|d| passes(d)).count(), burst);
        assert!(
            outcomes[burst..]
                .iter()
                .all(|d| dropped_as(d) == Some("contact_request_limited")),
            "{outcomes:?}"
        );
        // Her approval is an authorisation, as her own subscribe is.
        let d = through(
            &s,
            &mut sessions,
            t0,
            Side::Internal,
            ("alice@corp.example", "stranger@unv.example", None),
            StanzaKind::Presence(PresenceType::Subscribed),
        );
        let Decision::Forward(f) = d else {
            panic!("{d:?}")
        };
        assert_eq!(
            change_of(&f),
            Some((
                user("alice@corp.example"),
                user("stranger@unv.example"),
                AuthorisationChange::Authorise
            ))
        );
        assert_eq!(f.session, None);
    }

    #[test]
    fn stanzas_for_the_hosted_domain_itself_pass_for_every_partner_type() {
        let s = snapshot();
        let mut sessions = Sessions::default();
        let t0 = Instant::now();
        for from in [
            "stranger@unv.example/x",
            "unv.example",
            "bob@fed.example/x",
            "pub.example",
        ] {
            for kind in [GET, StanzaKind::Message(MessageType::Normal)] {
                let d = through(
                    &s,
                    &mut sessions,
                    t0,
                    Side::External,
                    (from, "corp.example", Some("ping")),
                    kind,
                );
                assert!(passes(&d), "{from} {kind:?}: {d:?}");
            }
        }
        assert!(sessions.is_empty());
    }

    #[test]
    fn federated_traffic_does_not_touch_the_sessions() {
        let s = snapshot();
        let mut sessions = Sessions::default();
        let t0 = Instant::now();
        for (from, to) in [
            ("alice@corp.example/r", "bob@fed.example"),
            ("alice@corp.example/r", "bob@pub.example"),
            // An authorised contact needs no session either.
            ("alice@corp.example/r", "friend@unv.example"),
        ] {
            let d = through(
                &s,
                &mut sessions,
                t0,
                Side::Internal,
                (from, to, Some("x")),
                GET,
            );
            assert!(
                matches!(d, Decision::Forward(Forward { session: None, .. })),
                "{to}: {d:?}"
            );
        }
        assert!(sessions.is_empty());
    }
}
