//! User-level access on live traffic (README, "PartnerType: what passes"): may this stanza between
//! a local user and a partner's user pass, given the local user's effective external access policy,
//! the partner's trust level (PartnerType), whether the local user has authorised the remote user,
//! and what her own traffic opened ([`crate::session`])?
//!
//! One pure function, [`decide`], answers for every stanza; the route decision
//! ([`crate::route::decide`]) gathers the facts and the gateway carries out the verdict. Rules:
//! - Stanzas that involve no local *user* (server-to-server iq, server pings and disco to a hosted
//!   domain itself) are not user traffic: they pass, for every partner type.
//! - EnableXmppAccess False: the user can neither send to nor receive from partners. Such stanzas
//!   bounce to their sender with `<policy-violation/>`, except that what is never answered (errors,
//!   iq results) and unavailable presence are dropped quietly (a bounce would tell nothing useful
//!   and presence must not leak).
//! - Federated: everything passes. PublicVerified: as Federated, but the `<status/>` note is removed
//!   from local users' presence sent out.
//! - PublicUnverified: outbound traffic passes; outbound `subscribe`/`subscribed` records that the
//!   local user authorised the remote bare JID, `unsubscribe`/`unsubscribed` withdraws it; other
//!   outbound traffic to a remote she has not authorised is session traffic (tracked requests,
//!   directed-presence paths: [`SessionEffect::Sent`]). Inbound from a remote she has authorised
//!   passes. From anyone else:
//!   - an answer (iq result/error, error message or presence) passes when it answers a request
//!     of hers or comes through an open path, and is otherwise dropped as `unsolicited` (never
//!     bounced);
//!   - `subscribe` from a remote user (a contact request) passes within the contact-request
//!     budgets, and is otherwise dropped as `contact_request_limited`;
//!   - presence, `groupchat` messages and iq `get`/`set` pass through an open path (her directed
//!     presence); through a path she is closing, only unavailable presence passes and the rest
//!     is dropped as `path_closed` (in flight when she left: a bounce would make the room kick
//!     her if she joined again meanwhile);
//!   - everything else bounces with `<policy-violation/>` (a probe is answered with an error, never
//!     with presence); unavailable presence is dropped.

use crate::choice::PartnerType;
use crate::session::PathState;

/// Which way a stanza crosses the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From a partner's user to a local user.
    Inbound,
    /// From a local user to a partner's user.
    Outbound,
}

/// The presence types of RFC 6121 (`None` = available).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PresenceType {
    Available,
    Unavailable,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    Probe,
    Error,
}

impl PresenceType {
    /// From the `type` attribute; None for an unknown type.
    pub fn parse(attr: Option<&str>) -> Option<PresenceType> {
        Some(match attr {
            None => PresenceType::Available,
            Some("unavailable") => PresenceType::Unavailable,
            Some("subscribe") => PresenceType::Subscribe,
            Some("subscribed") => PresenceType::Subscribed,
            Some("unsubscribe") => PresenceType::Unsubscribe,
            Some("unsubscribed") => PresenceType::Unsubscribed,
            Some("probe") => PresenceType::Probe,
            Some("error") => PresenceType::Error,
            Some(_) => return None,
        })
    }
}

/// The message types of RFC 6121 (a missing or unknown type is `normal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    Normal,
    Chat,
    Groupchat,
    Headline,
    Error,
}

impl MessageType {
    /// From the `type` attribute (RFC 6121 §5.2.2: an unknown type is treated as `normal`).
    pub fn parse(attr: Option<&str>) -> MessageType {
        match attr {
            Some("chat") => MessageType::Chat,
            Some("groupchat") => MessageType::Groupchat,
            Some("headline") => MessageType::Headline,
            Some("error") => MessageType::Error,
            _ => MessageType::Normal,
        }
    }
}

/// The iq types of RFC 6120.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IqType {
    Get,
    Set,
    Result,
    Error,
}

impl IqType {
    /// From the `type` attribute; a missing or unknown type is decided as a request (`get`): it
    /// may be bounced, and is never taken for an answer.
    pub fn parse(attr: Option<&str>) -> IqType {
        match attr {
            Some("set") => IqType::Set,
            Some("result") => IqType::Result,
            Some("error") => IqType::Error,
            _ => IqType::Get,
        }
    }
}

/// What kind of stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StanzaKind {
    Message(MessageType),
    Presence(PresenceType),
    Iq(IqType),
}

impl StanzaKind {
    /// An error stanza, or an iq result: answers, which are never answered in turn.
    pub fn is_answer(self) -> bool {
        matches!(
            self,
            StanzaKind::Message(MessageType::Error)
                | StanzaKind::Iq(IqType::Error | IqType::Result)
                | StanzaKind::Presence(PresenceType::Error)
        )
    }
}

/// Everything [`decide`] needs to know about one stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StanzaFacts {
    pub direction: Direction,
    pub kind: StanzaKind,
    /// Whether the local side of the stanza is a user (a JID with a localpart).
    pub local_is_user: bool,
    /// Whether the remote side is a user (a JID with a localpart).
    pub remote_is_user: bool,
    /// The partner's trust level.
    pub partner_type: PartnerType,
    /// The local user's effective EnableXmppAccess.
    pub user_enabled: bool,
    /// Whether the local user has authorised the remote bare JID (PublicUnverified).
    pub authorised: bool,
    /// Inbound answers: whether it answers a request the local user's address sent to this
    /// remote address with this id, within the timeout ([`crate::session`]).
    pub answers_request: bool,
    /// Inbound: the directed-presence path from the remote bare JID to the local address.
    pub path: PathState,
    /// Inbound `subscribe`: whether it is within the contact-request budgets.
    pub contact_request_allowed: bool,
}

/// Why a stanza was refused, for logs, status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// The local user's external access policy does not enable XMPP federation.
    UserNotEnabled,
    /// PublicUnverified partner: the local user has not authorised this remote user.
    NotAuthorised,
    /// PublicUnverified partner: an answer (iq result/error, error message or presence) to
    /// nothing the local user sent, from a remote she has not authorised.
    Unsolicited,
    /// PublicUnverified partner: a contact request past the budget of its sender or partner.
    ContactRequestLimited,
    /// PublicUnverified partner: room traffic that was in flight when the local user left
    /// (closed her directed-presence path).
    PathClosed,
}

impl RefusalReason {
    /// A stable label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            RefusalReason::UserNotEnabled => "user_not_enabled",
            RefusalReason::NotAuthorised => "not_authorised",
            RefusalReason::Unsolicited => "unsolicited",
            RefusalReason::ContactRequestLimited => "contact_request_limited",
            RefusalReason::PathClosed => "path_closed",
        }
    }

    /// The text sent in the `<policy-violation/>` stanza error.
    pub fn text(self, direction: Direction) -> &'static str {
        match (self, direction) {
            (RefusalReason::UserNotEnabled, Direction::Outbound) => {
                "Federation with external XMPP users is not enabled for you by your organisation's external access policy."
            }
            (RefusalReason::UserNotEnabled, Direction::Inbound) => {
                "The recipient may not receive messages from external XMPP users."
            }
            (RefusalReason::NotAuthorised, _) => {
                "The recipient has not authorised you: they must add you to their contacts first."
            }
            (RefusalReason::Unsolicited, _) => {
                "An answer to nothing the recipient sent to its sender (or after the timeout)."
            }
            (RefusalReason::ContactRequestLimited, _) => {
                "Too many contact requests from this user or partner for now."
            }
            (RefusalReason::PathClosed, _) => {
                "The recipient left (sent unavailable presence to the sender) a moment ago."
            }
        }
    }
}

/// A change to the local user's authorisations (PublicUnverified), to persist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorisationChange {
    /// The local user sent `subscribe` or `subscribed` to the remote bare JID.
    Authorise,
    /// The local user sent `unsubscribe` or `unsubscribed`.
    Withdraw,
}

/// What to do with a stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Pass, with the `<status/>` child removed (PublicVerified, local users' presence).
    PassWithoutStatus,
    /// Answer the sender with a `<policy-violation/>` stanza error; do not forward.
    Bounce(RefusalReason),
    /// Do not forward and do not answer.
    Drop(RefusalReason),
}

/// What a passing stanza does to the session state ([`crate::session`]), PublicUnverified only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEffect {
    /// Outbound to a remote she has not authorised: track what may answer it.
    Sent,
    /// Inbound, the answer to a request of hers: the request is answered.
    Answered,
    /// Inbound contact request: counted against the budgets.
    ContactRequest,
}

/// The decision for one stanza, and the authorisation change and session effect it makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub authorisation: Option<AuthorisationChange>,
    pub session: Option<SessionEffect>,
}

impl Decision {
    fn verdict(verdict: Verdict) -> Decision {
        Decision {
            verdict,
            authorisation: None,
            session: None,
        }
    }
}

fn refuse(kind: StanzaKind, reason: RefusalReason) -> Verdict {
    if kind.is_answer() || kind == StanzaKind::Presence(PresenceType::Unavailable) {
        Verdict::Drop(reason)
    } else {
        Verdict::Bounce(reason)
    }
}

/// Decide one stanza. See the module documentation for the rules.
pub fn decide(f: &StanzaFacts) -> Decision {
    let pass = Decision::verdict(Verdict::Pass);
    if !f.local_is_user {
        return pass;
    }
    if !f.user_enabled {
        return Decision::verdict(refuse(f.kind, RefusalReason::UserNotEnabled));
    }
    match (f.partner_type, f.direction) {
        (PartnerType::Federated, _) => pass,
        (PartnerType::PublicVerified, Direction::Outbound) => match f.kind {
            StanzaKind::Presence(PresenceType::Available | PresenceType::Unavailable) => {
                Decision::verdict(Verdict::PassWithoutStatus)
            }
            _ => pass,
        },
        (PartnerType::PublicVerified, Direction::Inbound) => pass,
        (PartnerType::PublicUnverified, Direction::Outbound) => {
            let authorisation =
                match f.kind {
                    StanzaKind::Presence(PresenceType::Subscribe | PresenceType::Subscribed)
                        if f.remote_is_user =>
                    {
                        Some(AuthorisationChange::Authorise)
                    }
                    StanzaKind::Presence(
                        PresenceType::Unsubscribe | PresenceType::Unsubscribed,
                    ) if f.remote_is_user => Some(AuthorisationChange::Withdraw),
                    _ => None,
                };
            let session = match f.kind {
                _ if f.authorised || authorisation.is_some() => None,
                StanzaKind::Presence(
                    PresenceType::Subscribe
                    | PresenceType::Subscribed
                    | PresenceType::Unsubscribe
                    | PresenceType::Unsubscribed,
                ) => None,
                k if k.is_answer() => None,
                _ => Some(SessionEffect::Sent),
            };
            Decision {
                verdict: Verdict::Pass,
                authorisation,
                session,
            }
        }
        (PartnerType::PublicUnverified, Direction::Inbound) => inbound_unverified(f),
    }
}

/// Inbound from a PublicUnverified partner to an enabled local user.
fn inbound_unverified(f: &StanzaFacts) -> Decision {
    if f.authorised {
        return Decision::verdict(Verdict::Pass);
    }
    let with = |session| Decision {
        verdict: Verdict::Pass,
        authorisation: None,
        session,
    };
    match f.kind {
        k if k.is_answer() => {
            if f.answers_request {
                with(Some(SessionEffect::Answered))
            } else if f.path != PathState::None {
                with(None)
            } else {
                Decision::verdict(Verdict::Drop(RefusalReason::Unsolicited))
            }
        }
        StanzaKind::Presence(PresenceType::Subscribe) if f.remote_is_user => {
            if f.contact_request_allowed {
                with(Some(SessionEffect::ContactRequest))
            } else {
                Decision::verdict(Verdict::Drop(RefusalReason::ContactRequestLimited))
            }
        }
        StanzaKind::Presence(PresenceType::Available | PresenceType::Unavailable)
        | StanzaKind::Message(MessageType::Groupchat)
        | StanzaKind::Iq(IqType::Get | IqType::Set)
            if f.path == PathState::Open =>
        {
            with(None)
        }
        StanzaKind::Presence(PresenceType::Unavailable) if f.path == PathState::Closing => {
            with(None)
        }
        // In flight while she left: dropped quietly, for a bounce would make the room kick her
        // if she joined again meanwhile.
        StanzaKind::Presence(PresenceType::Available)
        | StanzaKind::Message(MessageType::Groupchat)
        | StanzaKind::Iq(IqType::Get | IqType::Set)
            if f.path == PathState::Closing =>
        {
            Decision::verdict(Verdict::Drop(RefusalReason::PathClosed))
        }
        k => Decision::verdict(refuse(k, RefusalReason::NotAuthorised)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::choice::Choice;

    const KINDS: [StanzaKind; 17] = [
        StanzaKind::Message(MessageType::Normal),
        StanzaKind::Message(MessageType::Chat),
        StanzaKind::Message(MessageType::Groupchat),
        StanzaKind::Message(MessageType::Headline),
        StanzaKind::Message(MessageType::Error),
        StanzaKind::Iq(IqType::Get),
        StanzaKind::Iq(IqType::Set),
        StanzaKind::Iq(IqType::Result),
        StanzaKind::Iq(IqType::Error),
        StanzaKind::Presence(PresenceType::Available),
        StanzaKind::Presence(PresenceType::Unavailable),
        StanzaKind::Presence(PresenceType::Subscribe),
        StanzaKind::Presence(PresenceType::Subscribed),
        StanzaKind::Presence(PresenceType::Unsubscribe),
        StanzaKind::Presence(PresenceType::Unsubscribed),
        StanzaKind::Presence(PresenceType::Probe),
        StanzaKind::Presence(PresenceType::Error),
    ];

    fn facts(direction: Direction, kind: StanzaKind, partner_type: PartnerType) -> StanzaFacts {
        StanzaFacts {
            direction,
            kind,
            local_is_user: true,
            remote_is_user: true,
            partner_type,
            user_enabled: true,
            authorised: false,
            answers_request: false,
            path: PathState::None,
            contact_request_allowed: false,
        }
    }

    /// The expected verdict, written independently of `decide` (as a table of what passes) for
    /// every combination of partner type, user policy, authorisation, session facts, direction
    /// and stanza kind.
    fn expected(f: &StanzaFacts) -> Decision {
        use AuthorisationChange::*;
        use PresenceType as P;
        let k = f.kind;
        let answer = matches!(
            k,
            StanzaKind::Message(MessageType::Error)
                | StanzaKind::Iq(IqType::Error)
                | StanzaKind::Iq(IqType::Result)
                | StanzaKind::Presence(P::Error)
        );
        let quiet = answer || k == StanzaKind::Presence(P::Unavailable);
        let plain = |verdict| Decision {
            verdict,
            authorisation: None,
            session: None,
        };
        let refused = |r| {
            plain(if quiet {
                Verdict::Drop(r)
            } else {
                Verdict::Bounce(r)
            })
        };
        if !f.user_enabled {
            return refused(RefusalReason::UserNotEnabled);
        }
        match f.partner_type {
            PartnerType::Federated => plain(Verdict::Pass),
            PartnerType::PublicVerified => {
                let status = f.direction == Direction::Outbound
                    && matches!(
                        k,
                        StanzaKind::Presence(P::Available) | StanzaKind::Presence(P::Unavailable)
                    );
                plain(if status {
                    Verdict::PassWithoutStatus
                } else {
                    Verdict::Pass
                })
            }
            PartnerType::PublicUnverified => match f.direction {
                Direction::Outbound => {
                    let authorisation = match k {
                        StanzaKind::Presence(P::Subscribe)
                        | StanzaKind::Presence(P::Subscribed) => Some(Authorise),
                        StanzaKind::Presence(P::Unsubscribe)
                        | StanzaKind::Presence(P::Unsubscribed) => Some(Withdraw),
                        _ => None,
                    };
                    let opens = matches!(
                        k,
                        StanzaKind::Message(
                            MessageType::Normal
                                | MessageType::Chat
                                | MessageType::Groupchat
                                | MessageType::Headline
                        ) | StanzaKind::Iq(IqType::Get)
                            | StanzaKind::Iq(IqType::Set)
                            | StanzaKind::Presence(P::Available)
                            | StanzaKind::Presence(P::Unavailable)
                            | StanzaKind::Presence(P::Probe)
                    );
                    Decision {
                        verdict: Verdict::Pass,
                        authorisation,
                        session: (opens && !f.authorised).then_some(SessionEffect::Sent),
                    }
                }
                Direction::Inbound if f.authorised => plain(Verdict::Pass),
                Direction::Inbound => {
                    let through_path = match f.path {
                        PathState::Open => {
                            matches!(
                                k,
                                StanzaKind::Presence(P::Available)
                                    | StanzaKind::Presence(P::Unavailable)
                                    | StanzaKind::Message(MessageType::Groupchat)
                                    | StanzaKind::Iq(IqType::Get)
                                    | StanzaKind::Iq(IqType::Set)
                            ) || answer
                        }
                        PathState::Closing => k == StanzaKind::Presence(P::Unavailable) || answer,
                        PathState::None => false,
                    };
                    if answer && f.answers_request {
                        Decision {
                            verdict: Verdict::Pass,
                            authorisation: None,
                            session: Some(SessionEffect::Answered),
                        }
                    } else if through_path {
                        plain(Verdict::Pass)
                    } else if f.path == PathState::Closing
                        && matches!(
                            k,
                            StanzaKind::Presence(P::Available)
                                | StanzaKind::Message(MessageType::Groupchat)
                                | StanzaKind::Iq(IqType::Get)
                                | StanzaKind::Iq(IqType::Set)
                        )
                    {
                        plain(Verdict::Drop(RefusalReason::PathClosed))
                    } else if answer {
                        plain(Verdict::Drop(RefusalReason::Unsolicited))
                    } else if k == StanzaKind::Presence(P::Subscribe) {
                        if f.contact_request_allowed {
                            Decision {
                                verdict: Verdict::Pass,
                                authorisation: None,
                                session: Some(SessionEffect::ContactRequest),
                            }
                        } else {
                            plain(Verdict::Drop(RefusalReason::ContactRequestLimited))
                        }
                    } else {
                        refused(RefusalReason::NotAuthorised)
                    }
                }
            },
        }
    }

    #[test]
    fn every_combination() {
        let mut n = 0;
        for &partner_type in PartnerType::ALL {
            for user_enabled in [true, false] {
                for authorised in [true, false] {
                    for answers_request in [true, false] {
                        for path in [PathState::None, PathState::Open, PathState::Closing] {
                            for contact_request_allowed in [true, false] {
                                for direction in [Direction::Inbound, Direction::Outbound] {
                                    for kind in KINDS {
                                        let f = StanzaFacts {
                                            user_enabled,
                                            authorised,
                                            answers_request,
                                            path,
                                            contact_request_allowed,
                                            ..facts(direction, kind, partner_type)
                                        };
                                        assert_eq!(decide(&f), expected(&f), "{f:?}");
                                        n += 1;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(n, 3 * 2 * 2 * 2 * 3 * 2 * 2 * KINDS.len());
    }

    #[test]
    fn no_local_user_means_no_user_policy() {
        // Server pings and disco to (or from) a domain itself pass for every partner type.
        for &partner_type in PartnerType::ALL {
            for kind in KINDS {
                for direction in [Direction::Inbound, Direction::Outbound] {
                    let f = StanzaFacts {
                        local_is_user: false,
                        user_enabled: false,
                        ..facts(direction, kind, partner_type)
                    };
                    assert_eq!(decide(&f).verdict, Verdict::Pass, "{f:?}");
                }
            }
        }
    }

    #[test]
    fn answers_are_never_answered_with_errors() {
        for &partner_type in PartnerType::ALL {
            for (user_enabled, authorised) in [(false, false), (true, false), (false, true)] {
                for kind in KINDS.into_iter().filter(|k| k.is_answer()) {
                    for direction in [Direction::Inbound, Direction::Outbound] {
                        let f = StanzaFacts {
                            user_enabled,
                            authorised,
                            ..facts(direction, kind, partner_type)
                        };
                        assert!(!matches!(decide(&f).verdict, Verdict::Bounce(_)), "{f:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn public_unverified_inbound_in_words() {
        let inbound = |kind| facts(Direction::Inbound, kind, PartnerType::PublicUnverified);
        let result = StanzaKind::Iq(IqType::Result);
        // A reply to her request passes and answers it; an unsolicited one is dropped.
        let d = decide(&StanzaFacts {
            answers_request: true,
            ..inbound(result)
        });
        assert_eq!(
            (d.verdict, d.session),
            (Verdict::Pass, Some(SessionEffect::Answered))
        );
        assert_eq!(
            decide(&inbound(result)).verdict,
            Verdict::Drop(RefusalReason::Unsolicited)
        );
        // A chat room she joined may send her presence and groupchat, not chat messages.
        let room = |kind| StanzaFacts {
            path: PathState::Open,
            ..inbound(kind)
        };
        assert_eq!(
            decide(&room(StanzaKind::Message(MessageType::Groupchat))).verdict,
            Verdict::Pass
        );
        assert_eq!(
            decide(&room(StanzaKind::Presence(PresenceType::Available))).verdict,
            Verdict::Pass
        );
        assert_eq!(
            decide(&room(StanzaKind::Message(MessageType::Chat))).verdict,
            Verdict::Bounce(RefusalReason::NotAuthorised)
        );
        // Just after she left, the room's groupchat in flight is dropped; then it bounces.
        assert_eq!(
            decide(&StanzaFacts {
                path: PathState::Closing,
                ..inbound(StanzaKind::Message(MessageType::Groupchat))
            })
            .verdict,
            Verdict::Drop(RefusalReason::PathClosed)
        );
        // A contact request passes within its budget, is dropped past it.
        let subscribe = StanzaKind::Presence(PresenceType::Subscribe);
        assert_eq!(
            decide(&StanzaFacts {
                contact_request_allowed: true,
                ..inbound(subscribe)
            })
            .session,
            Some(SessionEffect::ContactRequest)
        );
        assert_eq!(
            decide(&inbound(subscribe)).verdict,
            Verdict::Drop(RefusalReason::ContactRequestLimited)
        );
        // A message from a stranger still bounces.
        assert_eq!(
            decide(&inbound(StanzaKind::Message(MessageType::Chat))).verdict,
            Verdict::Bounce(RefusalReason::NotAuthorised)
        );
    }

    #[test]
    fn subscription_to_a_server_records_nothing() {
        let f = StanzaFacts {
            remote_is_user: false,
            ..facts(
                Direction::Outbound,
                StanzaKind::Presence(PresenceType::Subscribe),
                PartnerType::PublicUnverified,
            )
        };
        assert_eq!(decide(&f), Decision::verdict(Verdict::Pass));
    }

    #[test]
    fn types_parse() {
        assert_eq!(PresenceType::parse(None), Some(PresenceType::Available));
        assert_eq!(
            PresenceType::parse(Some("probe")),
            Some(PresenceType::Probe)
        );
        assert_eq!(PresenceType::parse(Some("bogus")), None);
        assert_eq!(MessageType::parse(None), MessageType::Normal);
        assert_eq!(MessageType::parse(Some("bogus")), MessageType::Normal);
        assert_eq!(
            MessageType::parse(Some("groupchat")),
            MessageType::Groupchat
        );
        assert_eq!(IqType::parse(Some("result")), IqType::Result);
        assert_eq!(IqType::parse(Some("bogus")), IqType::Get);
        assert_eq!(IqType::parse(None), IqType::Get);
        assert!(
            RefusalReason::NotAuthorised
                .text(Direction::Inbound)
                .contains("authorised")
        );
        assert_eq!(RefusalReason::UserNotEnabled.label(), "user_not_enabled");
        assert_eq!(RefusalReason::Unsolicited.label(), "unsolicited");
    }
}
