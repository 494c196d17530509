//! User-level access on relayed stanzas (DESIGN §3.4–3.5): gathers the facts for
//! [`fedgate_model::access::decide`] (effective external access policy of the local user,
//! PartnerType, PublicUnverified authorisation from the store) and carries out its verdict:
//! forward, forward without `<status/>`, bounce with `<policy-violation/>`, or drop; records
//! authorisation changes before the stanza is forwarded.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use fedgate_model::access::{
    self, AuthorisationChange, Direction, PresenceType, StanzaFacts, StanzaKind, Verdict,
};
use fedgate_model::enforce::Side;
use fedgate_model::{PartnerType, UserJid};
use fedgate_xmpp::{Element, ErrorType, Jid, Payload, StanzaError, StanzaErrorCondition};
use tracing::{info, warn};

use crate::outbound;
use crate::state::Shared;

fn kind(e: &Element) -> Option<StanzaKind> {
    let is_error = e.attr("type") == Some("error");
    Some(match e.name.as_str() {
        "message" => StanzaKind::Message { is_error },
        "iq" => StanzaKind::Iq { is_error },
        "presence" => StanzaKind::Presence(PresenceType::parse(e.attr("type"))?),
        _ => return None,
    })
}

fn user(jid: &Option<Jid>) -> Option<UserJid> {
    let j = jid.as_ref()?;
    let local = j.local()?;
    UserJid::parse(&format!("{local}@{}", j.domain())).ok()
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
        return Some(e);
    };
    let local_jid = e.attr(local_attr).and_then(|j| Jid::parse(j).ok());
    let remote_jid = e.attr(remote_attr).and_then(|j| Jid::parse(j).ok());
    let local_user = user(&local_jid);
    let remote_user = user(&remote_jid);
    let site = shared
        .config
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
            if let Some(reply) = fedgate_xmpp::bounce(&e, &error, Payload::Drop) {
                shared
                    .metrics
                    .stanzas_bounced
                    .fetch_add(1, Ordering::Relaxed);
                // Back the way it came: to the sender's side.
                outbound::route(shared, side, to_domain, from_domain, reply);
            }
            None
        }
    }
}
