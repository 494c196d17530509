//! User-level access on live traffic (DESIGN §3.4–3.5): may this stanza between a local user and a
//! partner's user pass, given the local user's effective external access policy, the partner's
//! trust level (PartnerType) and whether the local user has authorised the remote user?
//!
//! One pure function, [`decide`], answers for every stanza; the gateway gathers the facts (it
//! resolves the effective policy with [`crate::AccessPolicies::effective`] and looks the
//! authorisation up in the store) and carries out the verdict. Rules:
//! - Stanzas that involve no local *user* (server-to-server iq, stanzas to the bare domain) are not
//!   user traffic: they pass.
//! - EnableXmppAccess False: the user can neither send to nor receive from partners. Such stanzas
//!   bounce to their sender with `<policy-violation/>`, except that errors are never answered with
//!   errors and unavailable presence is dropped quietly (a bounce would tell nothing useful and
//!   presence must not leak).
//! - Federated: everything passes. PublicVerified: as Federated, but the `<status/>` note is removed
//!   from local users' presence sent out.
//! - PublicUnverified: outbound traffic passes; outbound `subscribe`/`subscribed` records that the
//!   local user authorised the remote bare JID, `unsubscribe`/`unsubscribed` withdraws it. Inbound
//!   message, presence and iq from a remote user the local user has not authorised bounce with
//!   `<policy-violation/>` (a probe is answered with an error, never with presence); inbound errors
//!   and unavailable presence from them are dropped.

use crate::choice::PartnerType;

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

/// What kind of stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StanzaKind {
    /// `is_error`: `type='error'`.
    Message {
        is_error: bool,
    },
    Presence(PresenceType),
    /// `is_error`: `type='error'`.
    Iq {
        is_error: bool,
    },
}

impl StanzaKind {
    fn is_error(self) -> bool {
        matches!(
            self,
            StanzaKind::Message { is_error: true }
                | StanzaKind::Iq { is_error: true }
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
}

/// Why a stanza was refused, for logs, status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// The local user's external access policy does not enable XMPP federation.
    UserNotEnabled,
    /// PublicUnverified partner: the local user has not authorised this remote user.
    NotAuthorised,
}

impl RefusalReason {
    /// A stable label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            RefusalReason::UserNotEnabled => "user_not_enabled",
            RefusalReason::NotAuthorised => "not_authorised",
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

/// The decision for one stanza, and the authorisation change it makes, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub authorisation: Option<AuthorisationChange>,
}

fn refuse(kind: StanzaKind, reason: RefusalReason) -> Verdict {
    if kind.is_error() || kind == StanzaKind::Presence(PresenceType::Unavailable) {
        Verdict::Drop(reason)
    } else {
        Verdict::Bounce(reason)
    }
}

/// Decide one stanza. See the module documentation for the rules.
pub fn decide(f: &StanzaFacts) -> Decision {
    let pass = Decision {
        verdict: Verdict::Pass,
        authorisation: None,
    };
    if !f.local_is_user {
        return pass;
    }
    if !f.user_enabled {
        return Decision {
            verdict: refuse(f.kind, RefusalReason::UserNotEnabled),
            authorisation: None,
        };
    }
    match (f.partner_type, f.direction) {
        (PartnerType::Federated, _) => pass,
        (PartnerType::PublicVerified, Direction::Outbound) => match f.kind {
            StanzaKind::Presence(PresenceType::Available | PresenceType::Unavailable) => Decision {
                verdict: Verdict::PassWithoutStatus,
                authorisation: None,
            },
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
            Decision {
                verdict: Verdict::Pass,
                authorisation,
            }
        }
        (PartnerType::PublicUnverified, Direction::Inbound) => {
            if f.authorised {
                pass
            } else {
                Decision {
                    verdict: refuse(f.kind, RefusalReason::NotAuthorised),
                    authorisation: None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::choice::Choice;

    const KINDS: [StanzaKind; 12] = [
        StanzaKind::Message { is_error: false },
        StanzaKind::Message { is_error: true },
        StanzaKind::Iq { is_error: false },
        StanzaKind::Iq { is_error: true },
        StanzaKind::Presence(PresenceType::Available),
        StanzaKind::Presence(PresenceType::Unavailable),
        StanzaKind::Presence(PresenceType::Subscribe),
        StanzaKind::Presence(PresenceType::Subscribed),
        StanzaKind::Presence(PresenceType::Unsubscribe),
        StanzaKind::Presence(PresenceType::Unsubscribed),
        StanzaKind::Presence(PresenceType::Probe),
        StanzaKind::Presence(PresenceType::Error),
    ];

    /// The expected verdict, written independently of `decide` for every combination of partner
    /// type, user policy, authorisation, direction and stanza kind (3 × 2 × 2 × 2 × 12 = 288).
    fn expected(f: &StanzaFacts) -> Decision {
        use AuthorisationChange::*;
        use PresenceType as P;
        let k = f.kind;
        let is_error = matches!(
            k,
            StanzaKind::Message { is_error: true }
                | StanzaKind::Iq { is_error: true }
                | StanzaKind::Presence(P::Error)
        );
        let quiet = is_error || k == StanzaKind::Presence(P::Unavailable);
        let no_change = |verdict| Decision {
            verdict,
            authorisation: None,
        };
        if !f.user_enabled {
            let r = RefusalReason::UserNotEnabled;
            return no_change(if quiet {
                Verdict::Drop(r)
            } else {
                Verdict::Bounce(r)
            });
        }
        match f.partner_type {
            PartnerType::Federated => no_change(Verdict::Pass),
            PartnerType::PublicVerified => {
                let status = f.direction == Direction::Outbound
                    && matches!(
                        k,
                        StanzaKind::Presence(P::Available) | StanzaKind::Presence(P::Unavailable)
                    );
                no_change(if status {
                    Verdict::PassWithoutStatus
                } else {
                    Verdict::Pass
                })
            }
            PartnerType::PublicUnverified => match f.direction {
                Direction::Outbound => Decision {
                    verdict: Verdict::Pass,
                    authorisation: match k {
                        StanzaKind::Presence(P::Subscribe)
                        | StanzaKind::Presence(P::Subscribed) => Some(Authorise),
                        StanzaKind::Presence(P::Unsubscribe)
                        | StanzaKind::Presence(P::Unsubscribed) => Some(Withdraw),
                        _ => None,
                    },
                },
                Direction::Inbound if f.authorised => no_change(Verdict::Pass),
                Direction::Inbound => {
                    let r = RefusalReason::NotAuthorised;
                    no_change(if quiet {
                        Verdict::Drop(r)
                    } else {
                        Verdict::Bounce(r)
                    })
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
                    for direction in [Direction::Inbound, Direction::Outbound] {
                        for kind in KINDS {
                            let f = StanzaFacts {
                                direction,
                                kind,
                                local_is_user: true,
                                remote_is_user: true,
                                partner_type,
                                user_enabled,
                                authorised,
                            };
                            assert_eq!(decide(&f), expected(&f), "{f:?}");
                            n += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(n, 288);
    }

    #[test]
    fn no_local_user_means_no_user_policy() {
        for &partner_type in PartnerType::ALL {
            for kind in KINDS {
                for direction in [Direction::Inbound, Direction::Outbound] {
                    let f = StanzaFacts {
                        direction,
                        kind,
                        local_is_user: false,
                        remote_is_user: true,
                        partner_type,
                        user_enabled: false,
                        authorised: false,
                    };
                    assert_eq!(decide(&f).verdict, Verdict::Pass, "{f:?}");
                }
            }
        }
    }

    #[test]
    fn errors_are_never_answered_with_errors() {
        for &partner_type in PartnerType::ALL {
            for (user_enabled, authorised) in [(false, false), (true, false), (false, true)] {
                for kind in [
                    StanzaKind::Message { is_error: true },
                    StanzaKind::Iq { is_error: true },
                    StanzaKind::Presence(PresenceType::Error),
                ] {
                    for direction in [Direction::Inbound, Direction::Outbound] {
                        let f = StanzaFacts {
                            direction,
                            kind,
                            local_is_user: true,
                            remote_is_user: true,
                            partner_type,
                            user_enabled,
                            authorised,
                        };
                        assert!(!matches!(decide(&f).verdict, Verdict::Bounce(_)), "{f:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn subscription_to_a_server_records_nothing() {
        let f = StanzaFacts {
            direction: Direction::Outbound,
            kind: StanzaKind::Presence(PresenceType::Subscribe),
            local_is_user: true,
            remote_is_user: false,
            partner_type: PartnerType::PublicUnverified,
            user_enabled: true,
            authorised: false,
        };
        assert_eq!(
            decide(&f),
            Decision {
                verdict: Verdict::Pass,
                authorisation: None
            }
        );
    }

    #[test]
    fn presence_types_parse() {
        assert_eq!(PresenceType::parse(None), Some(PresenceType::Available));
        assert_eq!(
            PresenceType::parse(Some("probe")),
            Some(PresenceType::Probe)
        );
        assert_eq!(PresenceType::parse(Some("bogus")), None);
        assert!(
            RefusalReason::NotAuthorised
                .text(Direction::Inbound)
                .contains("authorised")
        );
        assert_eq!(RefusalReason::UserNotEnabled.label(), "user_not_enabled");
    }
}
