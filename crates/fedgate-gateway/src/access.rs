//! User-level access on relayed stanzas (DESIGN §3.4–3.5): normalises the stanza's `from` and
//! `to` with [`fedgate_model::jid::normalise`] (as the internal servers would; an address that
//! cannot be normalised is refused with `<jid-malformed/>`) and writes them back into the stanza,
//! then gathers the facts for [`fedgate_model::access::decide`] (effective external access policy of the local user,
//! PartnerType, PublicUnverified authorisation from the store) and carries out its verdict:
//! forward, forward without `<status/>`, bounce with `<policy-violation/>`, or drop; records
//! authorisation changes before the stanza is forwarded.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use fedgate_model::access::{
    self, AuthorisationChange, Direction, PresenceType, StanzaFacts, StanzaKind, Verdict,
};
use fedgate_model::enforce::Side;
use fedgate_model::jid::{self, JidError, NormalJid};
use fedgate_model::{PartnerType, UserJid};
use fedgate_xmpp::{Element, ErrorType, Payload, StanzaError, StanzaErrorCondition};
use tracing::{info, warn};

use crate::outbound;
use crate::state::Shared;

fn kind(e: &Element) -> Option<StanzaKind> {
    let is_error = e.attr("type") == Some("error");
    Some(match e.name.as_str() {
        "message" => StanzaKind::Message { is_error },
        "iq" => StanzaKind::Iq { is_error },
        // An unknown presence type is decided as unavailable presence: passed where presence
        // may pass (without <status/> for PublicVerified), dropped quietly where it may not -
        // never waved through unchecked.
        "presence" => StanzaKind::Presence(
            PresenceType::parse(e.attr("type")).unwrap_or(PresenceType::Unavailable),
        ),
        _ => return None,
    })
}

/// An address of the stanza normalised by the model ([`jid::normalise`]: localpart nodeprep'd,
/// domain as stored, resource resourceprep'd), the whole address, whatever follows the first
/// `/`, so that no resource - empty, too long, odd - hides or changes the user. `Ok(None)`: no
/// such attribute; `Err`: an address the internal server could not prepare either (refused,
/// never forwarded unchecked).
fn normalised(e: &Element, attr: &str) -> Result<Option<NormalJid>, JidError> {
    e.attr(attr).map(jid::normalise).transpose()
}

/// Write the normalised address into the stanza, so the internal server (or the partner)
/// receives the identity the policy was decided for, not a spelling it would map elsewhere.
fn rewrite(e: &mut Element, attr: &str, addr: &Option<NormalJid>) {
    if let Some(a) = addr {
        let text = a.to_string();
        if e.attr(attr) != Some(text.as_str()) {
            e.set_attr(attr, text);
        }
    }
}

fn jid_text(u: &Option<UserJid>) -> String {
    u.as_ref().map_or_else(|| "-".to_owned(), |u| u.to_string())
}

/// Decide one routed stanza received on `side` (External: from a partner to a local user;
/// Internal: from a local user to a partner). Returns the stanza to forward, or None when it
/// was bounced or dropped.
pub async fn apply(
    shared: &Arc<Shared>,
    side: Side,
    from_domain: &str,
    to_domain: &str,
    mut e: Element,
    bounces: &mut BounceBudget,
) -> Option<Element> {
    let Some(kind) = kind(&e) else {
        return Some(e);
    };
    let policy = shared.policy();
    let (direction, local_domain, remote_domain, local_attr, remote_attr) = match side {
        Side::External => (Direction::Inbound, to_domain, from_domain, "to", "from"),
        Side::Internal => (Direction::Outbound, from_domain, to_domain, "from", "to"),
    };
    let Some(partner) = policy.partner(remote_domain) else {
        // The partner went away since the stream admitted the stanza (a live Remove): the
        // stream is being closed; nothing more passes.
        info!(%side, remote = remote_domain, reason = "not_listed", "stanza dropped: the partner is no longer allowed");
        shared.metrics.refused(side, "not_listed");
        return None;
    };
    let (local_addr, remote_addr) = match (normalised(&e, local_attr), normalised(&e, remote_attr))
    {
        (Ok(l), Ok(r)) => (l, r),
        (Err(err), _) | (_, Err(err)) => {
            info!(%side, partner = %partner.identity, from = ?e.attr("from"), to = ?e.attr("to"), error = %err, reason = "malformed_jid", "stanza refused: an address cannot be normalised");
            shared.metrics.refused(side, "malformed_jid");
            let error = StanzaError::new(StanzaErrorCondition::JidMalformed)
                .with_type(ErrorType::Modify)
                .with_text("The address is not a valid JID.");
            bounce_back(shared, side, from_domain, to_domain, &e, &error, bounces);
            return None;
        }
    };
    rewrite(&mut e, local_attr, &local_addr);
    rewrite(&mut e, remote_attr, &remote_addr);
    let local_user = local_addr.as_ref().and_then(NormalJid::user);
    let remote_user = remote_addr.as_ref().and_then(NormalJid::user);
    let config = shared.config();
    let site = config
        .hosted_domain(local_domain)
        .and_then(|h| h.site.as_deref());
    let user_enabled = local_user
        .as_ref()
        .is_none_or(|u| policy.access.effective(u, site).enable_xmpp_access);
    let authorised = match (
        partner.partner_type,
        direction,
        &local_user,
        &remote_user,
        user_enabled,
    ) {
        (PartnerType::PublicUnverified, Direction::Inbound, Some(l), Some(r), true) => {
            let (store, l, r) = (shared.store.clone(), l.clone(), r.clone());
            match tokio::task::spawn_blocking(move || store.is_authorised(&l, &r)).await {
                Ok(Ok(a)) => a,
                Ok(Err(err)) => {
                    warn!(error = %err, "authorisation lookup failed; treating as not authorised");
                    false
                }
                Err(_) => false,
            }
        }
        _ => false,
    };
    let facts = StanzaFacts {
        direction,
        kind,
        local_is_user: local_user.is_some(),
        remote_is_user: remote_user.is_some(),
        partner_type: partner.partner_type,
        user_enabled,
        authorised,
    };
    let decision = access::decide(&facts);
    if let (Some(change), Some(l), Some(r)) = (decision.authorisation, &local_user, &remote_user) {
        let grant = change == AuthorisationChange::Authorise;
        let (store, l, r) = (shared.store.clone(), l.clone(), r.clone());
        match tokio::task::spawn_blocking(move || store.set_authorisation(&l, &r, grant)).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => warn!(error = %err, "recording an authorisation failed"),
            Err(err) => warn!(error = %err, "recording an authorisation failed"),
        }
    }
    match decision.verdict {
        Verdict::Pass => Some(e),
        Verdict::PassWithoutStatus => {
            e.children
                .retain(|n| !matches!(n, fedgate_xmpp::Node::Element(c) if c.name == "status"));
            Some(e)
        }
        Verdict::Drop(reason) => {
            info!(%side, partner = %partner.identity, local = %jid_text(&local_user), remote = %jid_text(&remote_user), kind = %e.name, reason = reason.label(), "stanza dropped by user policy: {}", reason.text(direction));
            shared.metrics.refused(side, reason.label());
            None
        }
        Verdict::Bounce(reason) => {
            info!(%side, partner = %partner.identity, local = %jid_text(&local_user), remote = %jid_text(&remote_user), kind = %e.name, reason = reason.label(), "stanza bounced by user policy: {}", reason.text(direction));
            shared.metrics.refused(side, reason.label());
            let error = StanzaError::new(StanzaErrorCondition::PolicyViolation)
                .with_type(ErrorType::Cancel)
                .with_text(reason.text(direction));
            bounce_back(shared, side, from_domain, to_domain, &e, &error, bounces);
            None
        }
    }
}

/// Answer the sender of `e` (received on `side`) with `error`, unless `e` is an error or an iq
/// result (never answered).
fn bounce_back(
    shared: &Arc<Shared>,
    side: Side,
    from_domain: &str,
    to_domain: &str,
    e: &Element,
    error: &StanzaError,
    bounces: &mut BounceBudget,
) {
    if !bounces.take(std::time::Instant::now()) {
        shared.metrics.refused(side, "bounce_rate_limited");
        return;
    }
    if let Some(reply) = fedgate_xmpp::bounce(e, error, Payload::Drop) {
        shared
            .metrics
            .stanzas_bounced
            .fetch_add(1, Ordering::Relaxed);
        // Back the way it came: to the sender's side.
        outbound::route(shared, side, to_domain, from_domain, reply);
    }
}

/// How many policy bounces one stream may provoke: a burst of [`BounceBudget::BURST`], then
/// [`BounceBudget::PER_SECOND`]; past that the refused stanza is dropped without an answer
/// (counted as `bounce_rate_limited`), so a peer cannot make the gateway write for it without
/// bound.
#[derive(Debug, Clone)]
pub struct BounceBudget {
    tokens: f64,
    at: Option<std::time::Instant>,
}

impl Default for BounceBudget {
    fn default() -> Self {
        BounceBudget {
            tokens: Self::BURST,
            at: None,
        }
    }
}

impl BounceBudget {
    pub const BURST: f64 = 64.0;
    pub const PER_SECOND: f64 = 32.0;

    /// Whether one more bounce may be sent at `now`.
    pub fn take(&mut self, now: std::time::Instant) -> bool {
        if let Some(at) = self.at {
            let refill = now.saturating_duration_since(at).as_secs_f64() * Self::PER_SECOND;
            self.tokens = (self.tokens + refill).min(Self::BURST);
        }
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounces_are_a_burst_then_a_rate() {
        let mut b = BounceBudget::default();
        let t0 = std::time::Instant::now();
        let burst = (0..1000).filter(|_| b.take(t0)).count();
        assert_eq!(burst, BounceBudget::BURST as usize);
        assert!(!b.take(t0));
        let t1 = t0 + std::time::Duration::from_millis(500);
        let later = (0..1000).filter(|_| b.take(t1)).count();
        assert_eq!(later, (BounceBudget::PER_SECOND / 2.0) as usize);
        let t2 = t1 + std::time::Duration::from_secs(3600);
        let refilled = (0..1000).filter(|_| b.take(t2)).count();
        assert_eq!(
            refilled,
            BounceBudget::BURST as usize,
            "the bucket never exceeds its burst"
        );
    }

    fn user_of(addr: &str) -> Result<Option<UserJid>, JidError> {
        let e = Element::new("message", fedgate_xmpp::ns::SERVER).with_attr("to", addr);
        normalised(&e, "to").map(|a| a.and_then(|a| a.user()))
    }

    #[test]
    fn the_user_is_the_normalised_bare_jid_whatever_the_resource() {
        let alice = Some(UserJid::parse("alice@corp.example").unwrap());
        for addr in [
            "alice@corp.example",
            "Alice@CORP.example/phone",
            "ＡＬＩＣＥ@corp.example",
            "al\u{AD}ice@ｃｏｒｐ.example/Ｐｈｏｎｅ",
            "alice@corp.example/a/b@c",
        ] {
            assert_eq!(user_of(addr), Ok(alice.clone()), "{addr}");
        }
        assert_eq!(user_of("corp.example"), Ok(None));
        assert_eq!(user_of("corp.example/x@y"), Ok(None));
        for bad in [
            "a b@corp.example",
            "@corp.example",
            "a<b@corp.example",
            "alice@bad domain",
            // A resource the internal server could not prepare either: refused, not ignored.
            "alice@corp.example/",
            &format!("alice@corp.example/{}", "r".repeat(2000)),
        ] {
            assert!(user_of(bad).is_err(), "{bad}");
        }
        let e = Element::new("message", fedgate_xmpp::ns::SERVER);
        assert_eq!(normalised(&e, "to"), Ok(None));
    }

    #[test]
    fn the_forwarded_stanza_carries_the_normalised_addresses() {
        let mut e = Element::new("message", fedgate_xmpp::ns::SERVER)
            .with_attr("from", "ＢＯＢ@partner.example/Ｒ")
            .with_attr("to", "car\u{AD}ol@ｃｏｒｐ.example");
        for attr in ["from", "to"] {
            let a = normalised(&e, attr).unwrap();
            rewrite(&mut e, attr, &a);
        }
        assert_eq!(e.attr("from"), Some("bob@partner.example/R"));
        assert_eq!(e.attr("to"), Some("carol@corp.example"));
    }

    #[test]
    fn unknown_presence_types_are_decided_as_unavailable() {
        let p = |t: Option<&str>| {
            let mut e = Element::new("presence", fedgate_xmpp::ns::SERVER);
            if let Some(t) = t {
                e.set_attr("type", t);
            }
            kind(&e)
        };
        assert_eq!(
            p(Some("bogus")),
            Some(StanzaKind::Presence(PresenceType::Unavailable))
        );
        assert_eq!(p(None), Some(StanzaKind::Presence(PresenceType::Available)));
        assert_eq!(
            p(Some("subscribe")),
            Some(StanzaKind::Presence(PresenceType::Subscribe))
        );
    }
}
