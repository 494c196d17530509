//! Carrying out the route decision ([`fedgate_model::route::decide`]) on a stanza: the
//! normalised addresses written into it, `<status/>` removed where the decision says so, the
//! session change applied to the gateway-wide [`Sessions`] and an authorisation change made
//! durable before the stanza leaves ([`crate::authorisations`]) — or, when the store does not
//! commit it, the stanza answered as the decision said instead of forwarded; bounces answered
//! (within the stream's [`BounceBudget`]) and refusals logged and counted, as `dropped` where
//! nothing went back. [`LiveSessions`] is the decision's view of the sessions. [`kind`] says
//! which elements are stanzas the decision is asked about. Nothing here decides whether a stanza
//! passes.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use fedgate_model::access::{IqType, MessageType, PresenceType, StanzaKind};
use fedgate_model::enforce::Side;
use fedgate_model::jid::NormalJid;
use fedgate_model::route::{self, BounceCondition, Forward, Refused};
use fedgate_model::session::{Applied, PathState, Request, SessionView, Sessions};
use fedgate_model::{Domain, UserJid};
use fedgate_xmpp::{Element, ErrorType, Payload, StanzaError, StanzaErrorCondition};
use tracing::{info, warn};

use crate::authorisations::Writer;
use crate::log_limit::{Culprit, LogDecision};
use crate::outbound;
use crate::state::Shared;

/// What the decision needs to know of the stanza's kind (None: not a message, presence or iq,
/// which is not a stanza the decision is asked about; the caller checks the namespace).
pub fn kind(e: &Element) -> Option<StanzaKind> {
    Some(match e.name.as_str() {
        "message" => StanzaKind::Message(MessageType::parse(e.attr("type"))),
        "iq" => StanzaKind::Iq(IqType::parse(e.attr("type"))),
        // An unknown presence type is decided as unavailable presence: passed where presence
        // may pass (without <status/> for PublicVerified), dropped quietly where it may not -
        // never waved through unchecked.
        "presence" => StanzaKind::Presence(
            PresenceType::parse(e.attr("type")).unwrap_or(PresenceType::Unavailable),
        ),
        _ => return None,
    })
}

/// The route decision's view of the gateway-wide [`Sessions`] at one instant: each question
/// locks them for one lookup (the decision reads them only for PublicUnverified traffic from
/// remotes the local user has not authorised).
pub struct LiveSessions<'a> {
    pub sessions: &'a Mutex<Sessions>,
    pub now: Instant,
}

impl LiveSessions<'_> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SessionView for LiveSessions<'_> {
    fn awaits(
        &self,
        local: &UserJid,
        resource: Option<&str>,
        remote: &NormalJid,
        request: Request,
        id: &str,
    ) -> bool {
        self.lock()
            .at(self.now)
            .awaits(local, resource, remote, request, id)
    }
    fn path(&self, local: &UserJid, resource: Option<&str>, remote: &NormalJid) -> PathState {
        self.lock().at(self.now).path(local, resource, remote)
    }
    fn may_request_contact(&self, remote: &UserJid, partner: &Domain) -> bool {
        self.lock()
            .at(self.now)
            .may_request_contact(remote, partner)
    }
}

/// Write the normalised address into the stanza, so the internal server (or the partner)
/// receives the identity the policy was decided for, not a spelling it would map elsewhere.
/// An address already written in normal form (nearly all) is left as it is, without building
/// its text.
fn rewrite(e: &mut Element, attr: &str, addr: &Option<NormalJid>) {
    if let Some(a) = addr
        && !e.attr(attr).is_some_and(|written| a.is_written_as(written))
    {
        e.set_attr(attr, a.to_string());
    }
}

/// A log field's value, `-` when absent, written only when its line is: nothing is formatted
/// for a line that is off or rate-limited (tracing captures `%field` lazily).
struct OrDash<'a, T>(Option<&'a T>);

impl<T: fmt::Display> fmt::Display for OrDash<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// Make the stanza what the decision forwards: the authorisation change durable first (the
/// stanza waits for its commit; see [`crate::authorisations`]), then the session change applied
/// (before the stanza leaves, so its answer finds it), normalised addresses, `<status/>` removed.
/// None when the store did not commit the authorisation change: the stanza was then answered as
/// the decision said ([`route::Commit::if_not_committed`]), received on `side` within `bounces`,
/// and must not be sent on.
pub async fn forward(
    shared: &Arc<Shared>,
    side: Side,
    f: &Forward,
    mut e: Element,
    bounces: &mut BounceBudget,
) -> Option<Element> {
    if let Some(c) = &f.authorisation
        && let Err(error) =
            Writer::record(shared, (c.local.clone(), c.remote.clone(), c.change)).await
    {
        let (condition, r) = &c.if_not_committed;
        refuse_with(shared, side, &e, Some(*condition), r, bounces, Some(&error));
        return None;
    }
    if let Some(update) = &f.session
        && shared.sessions().apply(update, Instant::now()) == Applied::Full
    {
        shared
            .metrics
            .session_table_full
            .fetch_add(1, Ordering::Relaxed);
        if let LogDecision::Log { suppressed } = shared
            .refusal_log
            .decide(Culprit::Peer("-"), "session_table_full")
        {
            warn!(
                suppressed,
                "the session table is full: an answer to this stanza will be dropped"
            );
        }
    }
    rewrite_stanza(&mut e, f);
    Some(e)
}

/// What the decision `f` changes in the stanza itself: the normalised addresses written into
/// it, `<status/>` removed where it says so (a stanza neither changes leaves as received).
pub fn rewrite_stanza(e: &mut Element, f: &Forward) {
    rewrite(e, "from", &f.from);
    rewrite(e, "to", &f.to);
    if f.strip_status {
        // Through the method: a parsed stanza changed through its fields would be forwarded
        // as received.
        e.remove_children(|c| c.name == "status");
    }
}

/// A stanza the decision refused: log and count it, and with `bounce` answer its sender with
/// that stanza error (within the stream's budget). Logged and counted as `dropped` when nothing
/// was sent back (a drop, an answer that is never answered, a spent bounce budget).
pub fn refuse(
    shared: &Arc<Shared>,
    side: Side,
    e: &Element,
    bounce: Option<BounceCondition>,
    r: &Refused,
    bounces: &mut BounceBudget,
) {
    refuse_with(shared, side, e, bounce, r, bounces, None);
}

/// [`refuse`], with the `error` that made the stanza fail (for its log line).
fn refuse_with(
    shared: &Arc<Shared>,
    side: Side,
    e: &Element,
    bounce: Option<BounceCondition>,
    r: &Refused,
    bounces: &mut BounceBudget,
    error: Option<&str>,
) {
    shared.metrics.refused(side, r.reason);
    // Counted in the partner's health: from it (external side) or to it (internal side).
    if let Some(p) = &r.partner {
        let direction = match side {
            Side::External => fedgate_model::health::Direction::Inbound,
            Side::Internal => fedgate_model::health::Direction::Outbound,
        };
        shared.health.refused(p.as_str(), direction, r.reason);
    }
    let bounced = bounce.is_some_and(|c| bounce_back(shared, side, r, e, c, bounces));
    if !bounced {
        shared.metrics.dropped(side, r.reason);
    }
    let partner = OrDash(r.partner.as_ref());
    let (local, remote) = (OrDash(r.local.as_ref()), OrDash(r.remote.as_ref()));
    match (r.reason, bounced) {
        (route::AUTHORISATION_NOT_COMMITTED, _) => {
            // The store's trouble, not the sender's; one line per window for all the stanzas
            // it fails (rate-limited like drops, per sending domain).
            if let LogDecision::Log { suppressed } = shared
                .refusal_log
                .decide(Culprit::Peer(r.from_domain.as_str()), r.reason)
            {
                warn!(%side, %partner, %local, %remote, kind = %e.name, reason = r.reason, bounced, suppressed, error = error.unwrap_or("-"), "stanza not forwarded: its authorisation change was not committed to the store")
            }
        }
        ("malformed_jid", _) => {
            info!(%side, %partner, from = ?e.attr("from"), to = ?e.attr("to"), reason = r.reason, bounced, "stanza refused: an address cannot be normalised")
        }
        ("not_listed", _) => {
            info!(%side, remote = %r.from_domain, reason = r.reason, "stanza dropped: the partner is no longer allowed")
        }
        (_, true) => {
            info!(%side, %partner, %local, %remote, kind = %e.name, reason = r.reason, "stanza bounced by user policy: {}", r.text)
        }
        (_, false) => {
            // A drop costs the sender nothing: its lines are rate-limited per (sender, reason).
            if let LogDecision::Log { suppressed } = shared
                .refusal_log
                .decide(Culprit::Peer(r.from_domain.as_str()), r.reason)
            {
                info!(%side, %partner, %local, %remote, kind = %e.name, reason = r.reason, suppressed, "stanza dropped by user policy: {}", r.text)
            }
        }
    }
}

/// Answer the sender of `e` (received on `side`) with the stanza error for `condition`, unless
/// `e` is an error or an iq result (never answered) or the stream's bounce budget is spent.
/// True if the answer was sent.
fn bounce_back(
    shared: &Arc<Shared>,
    side: Side,
    r: &Refused,
    e: &Element,
    condition: BounceCondition,
    bounces: &mut BounceBudget,
) -> bool {
    let error = match condition {
        BounceCondition::JidMalformed => {
            StanzaError::new(StanzaErrorCondition::JidMalformed).with_type(ErrorType::Modify)
        }
        BounceCondition::PolicyViolation => {
            StanzaError::new(StanzaErrorCondition::PolicyViolation).with_type(ErrorType::Cancel)
        }
        BounceCondition::ResourceConstraint => {
            StanzaError::new(StanzaErrorCondition::ResourceConstraint).with_type(ErrorType::Wait)
        }
    }
    .with_text(r.text);
    let Some(reply) = fedgate_xmpp::bounce(e, &error, Payload::Drop) else {
        return false;
    };
    if !bounces.take(Instant::now()) {
        shared.metrics.refused(side, "bounce_rate_limited");
        shared.metrics.dropped(side, "bounce_rate_limited");
        return false;
    }
    shared
        .metrics
        .stanzas_bounced
        .fetch_add(1, Ordering::Relaxed);
    // Back the way it came: to the sender's side.
    outbound::route(
        shared,
        side,
        r.to_domain.as_str(),
        r.from_domain.as_str(),
        reply,
    );
    true
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
    use fedgate_model::jid::{self, JidError};

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
        jid::normalise(addr).map(|a| a.user())
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
    }

    #[test]
    fn the_forwarded_stanza_carries_the_normalised_addresses() {
        let mut e = Element::new("message", fedgate_xmpp::ns::SERVER)
            .with_attr("from", "ＢＯＢ@partner.example/Ｒ")
            .with_attr("to", "car\u{AD}ol@ｃｏｒｐ.example");
        for attr in ["from", "to"] {
            let a = e.attr(attr).map(|a| jid::normalise(a).unwrap());
            rewrite(&mut e, attr, &a);
        }
        assert_eq!(e.attr("from"), Some("bob@partner.example/R"));
        assert_eq!(e.attr("to"), Some("carol@corp.example"));
    }

    /// A received stanza the decision does not change leaves as the bytes it came in; one it
    /// changes is serialized with the change.
    #[test]
    fn a_stanza_nothing_changes_is_forwarded_as_received() {
        let parsed = |body: &str| {
            let mut p = fedgate_xmpp::StreamParser::new(fedgate_xmpp::Limits::default());
            p.feed(
                b"<stream:stream xmlns='jabber:server' \
                  xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
            );
            p.feed(body.as_bytes());
            loop {
                match p.next_event() {
                    Ok(Some(fedgate_xmpp::Event::Element { element, .. })) => return element,
                    Ok(Some(_)) => {}
                    other => panic!("{other:?}"),
                }
            }
        };
        let forwarded = |body: &str, strip_status: bool| {
            let mut e = parsed(body);
            for attr in ["from", "to"] {
                let a = e.attr(attr).map(|a| jid::normalise(a).unwrap());
                rewrite(&mut e, attr, &a);
            }
            if strip_status {
                e.remove_children(|c| c.name == "status");
            }
            String::from_utf8(e.to_bytes()).unwrap()
        };
        let same = "<presence from='bob@partner.example/R' to='carol@corp.example'>\
            <show>away</show></presence>";
        assert_eq!(forwarded(same, false), same);
        assert_eq!(forwarded(same, true), same);
        let out = forwarded(
            "<presence from='BOB@partner.example/R' to='carol@corp.example'>\
             <status>lunch</status><show>away</show></presence>",
            true,
        );
        assert!(out.contains("from=\"bob@partner.example/R\""), "{out}");
        assert!(!out.contains("status"), "{out}");
    }

    #[test]
    fn absent_log_fields_are_written_as_a_dash() {
        let alice = UserJid::parse("alice@corp.example").unwrap();
        assert_eq!(OrDash(Some(&alice)).to_string(), "alice@corp.example");
        assert_eq!(OrDash::<Domain>(None).to_string(), "-");
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
