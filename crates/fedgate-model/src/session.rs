//! Session-scoped paths through a PublicUnverified partner: what a local user's own traffic opens
//! for the remote JIDs she talks to, so that their answers reach her although she has not
//! authorised them (issue 24). Owns, gateway-wide and in memory only (never persisted):
//!
//! - **pending requests**: an iq `get`/`set` (or a message or presence with an `id`) that a local
//!   user's address sent to a remote JID she has not authorised, keyed by (local user, her
//!   resource, remote JID, id, kind) until [`Limits::request_timeout`]; the `result`/`error` (or
//!   the error message/presence) that answers it passes, once;
//! - **directed-presence paths**: available presence from her resource to a remote JID she has not
//!   authorised (a chat room, `room@conference.partner/nick`) opens a path from that bare JID to
//!   her resource, closed by her `unavailable` to it (her server sends one for every directed
//!   presence when her resource goes offline), after which, for [`Limits::path_closing`], the
//!   remote's unavailable presence and errors still pass and its other traffic in flight is
//!   dropped rather than bounced; a path unused by her for [`Limits::path_idle`] expires;
//! - **contact-request budgets**: token buckets for `subscribe` from a remote user, per remote
//!   user and per partner.
//!
//! Every map is bounded per local user and in total ([`Limits`]; the defaults are documented
//! there) and entries expire; every method takes `now`, so the type is tested without a clock.
//! [`crate::route::decide`] reads it through [`SessionView`] and returns the [`SessionUpdate`] the
//! stanza makes; the gateway applies that with [`Sessions::apply`] before the stanza leaves. The
//! read and the update are two short critical sections, so streams deciding at the same moment
//! may each spend the last token of a contact-request budget (an overshoot of at most one request
//! per concurrent stream), and an answer arriving twice at once may pass twice.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::access::{IqType, MessageType, PresenceType, StanzaKind};
use crate::jid::NormalJid;
use crate::{Domain, UserJid};

/// A token bucket's shape: `burst` at once, then one more every `every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub burst: u32,
    pub every: Duration,
}

/// The bounds of [`Sessions`]. The defaults ([`Limits::DEFAULT`]) keep the worst case near
/// 40 MB: 100 000 pending requests of about 250 bytes and 50 000 paths of about 150 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a request waits for its answer (default 120 s).
    pub request_timeout: Duration,
    /// Pending requests per local user (default 64; a newer request evicts her oldest).
    pub requests_per_user: usize,
    /// Pending requests in total (default 100 000; past that a request is not tracked).
    pub requests_total: usize,
    /// How long a path lasts after the last stanza her resource sent through it (default 24 h).
    pub path_idle: Duration,
    /// How long the remote's unavailable presence (and errors) still pass after she closed a
    /// path (default 30 s: the room's answer to her leaving).
    pub path_closing: Duration,
    /// Paths per local user (default 64; a newer path evicts her least recently used).
    pub paths_per_user: usize,
    /// Paths in total (default 50 000; past that a path is not opened).
    pub paths_total: usize,
    /// Contact requests from one remote user (default 3, then one a minute).
    pub subscribe_per_remote: Rate,
    /// Contact requests from one partner's users together (default 30, then one every 2 s).
    pub subscribe_per_partner: Rate,
    /// Remote users with a contact-request budget in use (default 10 000; past that, contact
    /// requests from users not yet counted are dropped until budgets refill).
    pub subscribe_remotes_total: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        request_timeout: Duration::from_secs(120),
        requests_per_user: 64,
        requests_total: 100_000,
        path_idle: Duration::from_secs(24 * 3600),
        path_closing: Duration::from_secs(30),
        paths_per_user: 64,
        paths_total: 50_000,
        subscribe_per_remote: Rate {
            burst: 3,
            every: Duration::from_secs(60),
        },
        subscribe_per_partner: Rate {
            burst: 30,
            every: Duration::from_secs(2),
        },
        subscribe_remotes_total: 10_000,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// The kind of stanza a request was and its answer is: an iq `get`/`set` is answered by an iq
/// `result` or `error`; a message or presence only by an error of its own kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Request {
    Iq,
    Message,
    Presence,
}

impl Request {
    /// The request `kind` answers, if it is an answer (iq result or error, error message,
    /// error presence).
    pub fn answered_by(kind: StanzaKind) -> Option<Request> {
        match kind {
            StanzaKind::Iq(IqType::Result | IqType::Error) => Some(Request::Iq),
            StanzaKind::Message(MessageType::Error) => Some(Request::Message),
            StanzaKind::Presence(PresenceType::Error) => Some(Request::Presence),
            _ => None,
        }
    }
}

/// What a local user's stanza to a remote JID she has not authorised does to her sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outgoing {
    /// Available presence: opens (or keeps open) a path from the remote bare JID.
    Available,
    /// Unavailable presence: closes that path.
    Unavailable,
    /// Something that may be answered (tracked when it has an `id` and no path covers it).
    Request(Request),
}

impl Outgoing {
    /// None for stanzas that open nothing: answers and errors, and subscription management
    /// (which authorises or withdraws instead).
    pub fn of(kind: StanzaKind) -> Option<Outgoing> {
        Some(match kind {
            StanzaKind::Presence(PresenceType::Available) => Outgoing::Available,
            StanzaKind::Presence(PresenceType::Unavailable) => Outgoing::Unavailable,
            StanzaKind::Presence(PresenceType::Probe) => Outgoing::Request(Request::Presence),
            StanzaKind::Presence(_) => return None,
            StanzaKind::Iq(IqType::Get | IqType::Set) => Outgoing::Request(Request::Iq),
            StanzaKind::Iq(_) => return None,
            StanzaKind::Message(MessageType::Error) => return None,
            StanzaKind::Message(_) => Outgoing::Request(Request::Message),
        })
    }
}

/// Whether a path from a remote bare JID to a local user's resource is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathState {
    None,
    Open,
    /// She closed it a moment ago: the remote's unavailable presence and errors still pass.
    Closing,
}

/// A change [`crate::route::decide`] asks for; [`Sessions::apply`] makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionUpdate {
    /// `local` (from `resource`) sent `what` to `remote`, which she has not authorised.
    Sent {
        local: UserJid,
        resource: Option<String>,
        remote: NormalJid,
        what: Outgoing,
        id: Option<String>,
    },
    /// The answer to this pending request passed: forget the request.
    Answered {
        local: UserJid,
        resource: Option<String>,
        remote: NormalJid,
        request: Request,
        id: String,
    },
    /// A contact request from `remote` (of `partner`) passed: count it.
    ContactRequest { remote: UserJid, partner: Domain },
}

/// What [`Sessions::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// Nothing recorded: the table is at its total bound (the answer will be dropped).
    Full,
}

/// What the route decision reads (see [`Sessions::at`]).
pub trait SessionView {
    /// Whether `local`/`resource` awaits an answer of kind `request` with `id` from `remote`.
    fn awaits(
        &self,
        local: &UserJid,
        resource: Option<&str>,
        remote: &NormalJid,
        request: Request,
        id: &str,
    ) -> bool;
    /// The path from `remote`'s bare JID to `local`/`resource` (a bare `local` address: any of
    /// her resources).
    fn path(&self, local: &UserJid, resource: Option<&str>, remote: &NormalJid) -> PathState;
    /// Whether a contact request from `remote` (of `partner`) is within both budgets.
    fn may_request_contact(&self, remote: &UserJid, partner: &Domain) -> bool;
}

/// No session state at all (everything answers "no"): for callers with no PublicUnverified
/// traffic to track.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSessions;

impl SessionView for NoSessions {
    fn awaits(&self, _: &UserJid, _: Option<&str>, _: &NormalJid, _: Request, _: &str) -> bool {
        false
    }
    fn path(&self, _: &UserJid, _: Option<&str>, _: &NormalJid) -> PathState {
        PathState::None
    }
    fn may_request_contact(&self, _: &UserJid, _: &Domain) -> bool {
        false
    }
}

#[derive(Debug, Clone)]
struct Pending {
    resource: Option<String>,
    remote: NormalJid,
    request: Request,
    id: String,
    expires: Instant,
}

/// A remote bare JID, as a path names it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bare {
    local: Option<String>,
    domain: Domain,
}

impl Bare {
    fn of(j: &NormalJid) -> Bare {
        Bare {
            local: j.local().map(str::to_owned),
            domain: j.domain().clone(),
        }
    }
    fn is(&self, j: &NormalJid) -> bool {
        self.local.as_deref() == j.local() && self.domain == *j.domain()
    }
}

#[derive(Debug, Clone)]
struct Path {
    resource: Option<String>,
    remote: Bare,
    /// Open until `until`; after a close, `closing` is set and `until` is the end of the grace.
    until: Instant,
    closing: bool,
}

impl Path {
    fn state(&self, now: Instant) -> PathState {
        match (now < self.until, self.closing) {
            (false, _) => PathState::None,
            (true, false) => PathState::Open,
            (true, true) => PathState::Closing,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct User {
    /// Oldest first; all share one timeout, so expiries are in order too.
    pending: VecDeque<Pending>,
    paths: Vec<Path>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(rate.burst),
            at: now,
        }
    }
    /// The tokens at `now` (never more than the burst).
    fn level(&self, rate: Rate, now: Instant) -> f64 {
        let every = rate.every.as_secs_f64();
        let refill = if every > 0.0 {
            now.saturating_duration_since(self.at).as_secs_f64() / every
        } else {
            f64::INFINITY
        };
        (self.tokens + refill).min(f64::from(rate.burst))
    }
    fn take(&mut self, rate: Rate, now: Instant) {
        self.tokens = (self.level(rate, now) - 1.0).max(0.0);
        self.at = now;
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Sessions {
    limits: Limits,
    users: HashMap<UserJid, User>,
    requests: usize,
    paths: usize,
    remotes: HashMap<UserJid, Bucket>,
    partners: HashMap<Domain, Bucket>,
    /// When the last full sweep ran (a full table sweeps at most once a second).
    swept: Option<Instant>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new(Limits::DEFAULT)
    }
}

/// [`Sessions`] read at one instant.
#[derive(Debug, Clone, Copy)]
pub struct SessionsAt<'a> {
    sessions: &'a Sessions,
    now: Instant,
}

impl SessionView for SessionsAt<'_> {
    fn awaits(
        &self,
        local: &UserJid,
        resource: Option<&str>,
        remote: &NormalJid,
        request: Request,
        id: &str,
    ) -> bool {
        self.sessions.users.get(local).is_some_and(|u| {
            u.pending.iter().any(|p| {
                p.expires > self.now
                    && p.request == request
                    && p.id == id
                    && p.resource.as_deref() == resource
                    && p.remote == *remote
            })
        })
    }

    fn path(&self, local: &UserJid, resource: Option<&str>, remote: &NormalJid) -> PathState {
        let Some(u) = self.sessions.users.get(local) else {
            return PathState::None;
        };
        u.paths
            .iter()
            .filter(|p| {
                p.remote.is(remote) && (resource.is_none() || p.resource.as_deref() == resource)
            })
            .map(|p| p.state(self.now))
            .fold(PathState::None, |best, s| match (best, s) {
                (PathState::Open, _) | (_, PathState::Open) => PathState::Open,
                (PathState::Closing, _) | (_, PathState::Closing) => PathState::Closing,
                _ => PathState::None,
            })
    }

    fn may_request_contact(&self, remote: &UserJid, partner: &Domain) -> bool {
        let l = &self.sessions.limits;
        let within = |b: Option<&Bucket>, rate: Rate| {
            b.map_or(rate.burst >= 1, |b| b.level(rate, self.now) >= 1.0)
        };
        let known = self.sessions.remotes.contains_key(remote);
        within(self.sessions.remotes.get(remote), l.subscribe_per_remote)
            && within(self.sessions.partners.get(partner), l.subscribe_per_partner)
            && (known || self.sessions.remotes.len() < l.subscribe_remotes_total)
    }
}

impl Sessions {
    pub fn new(limits: Limits) -> Sessions {
        Sessions {
            limits,
            users: HashMap::new(),
            requests: 0,
            paths: 0,
            remotes: HashMap::new(),
            partners: HashMap::new(),
            swept: None,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The view of the sessions at `now`, for [`crate::route::decide`].
    pub fn at(&self, now: Instant) -> SessionsAt<'_> {
        SessionsAt {
            sessions: self,
            now,
        }
    }

    /// (pending requests, paths, remote users with a contact-request budget in use).
    pub fn len(&self) -> (usize, usize, usize) {
        (self.requests, self.paths, self.remotes.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0, 0) && self.partners.is_empty()
    }

    /// Make `update` at `now`.
    pub fn apply(&mut self, update: &SessionUpdate, now: Instant) -> Applied {
        match update {
            SessionUpdate::Sent {
                local,
                resource,
                remote,
                what,
                id,
            } => self.sent(
                local,
                resource.as_deref(),
                remote,
                *what,
                id.as_deref(),
                now,
            ),
            SessionUpdate::Answered {
                local,
                resource,
                remote,
                request,
                id,
            } => {
                if let Some(u) = self.users.get_mut(local) {
                    let before = u.pending.len();
                    u.pending.retain(|p| {
                        !(p.request == *request
                            && p.id == *id
                            && p.resource == *resource
                            && p.remote == *remote)
                    });
                    self.requests -= before - u.pending.len();
                }
                self.forget_if_empty(local);
                Applied::Done
            }
            SessionUpdate::ContactRequest { remote, partner } => {
                let l = self.limits;
                if !self.remotes.contains_key(remote)
                    && self.remotes.len() >= l.subscribe_remotes_total
                {
                    self.sweep(now);
                    if self.remotes.len() >= l.subscribe_remotes_total {
                        return Applied::Full;
                    }
                }
                self.remotes
                    .entry(remote.clone())
                    .or_insert_with(|| Bucket::full(l.subscribe_per_remote, now))
                    .take(l.subscribe_per_remote, now);
                self.partners
                    .entry(partner.clone())
                    .or_insert_with(|| Bucket::full(l.subscribe_per_partner, now))
                    .take(l.subscribe_per_partner, now);
                Applied::Done
            }
        }
    }

    fn sent(
        &mut self,
        local: &UserJid,
        resource: Option<&str>,
        remote: &NormalJid,
        what: Outgoing,
        id: Option<&str>,
        now: Instant,
    ) -> Applied {
        let l = self.limits;
        // Nothing to open, close or refresh for her: no entry made (and none allocated).
        let opens = what == Outgoing::Available || (id.is_some() && what != Outgoing::Unavailable);
        if !opens && !self.users.contains_key(local) {
            return Applied::Done;
        }
        let user = self.users.entry(local.clone()).or_default();
        // Her own entries that expired go first (bounded by the per-user limits).
        let (requests, paths) = (user.pending.len(), user.paths.len());
        while user.pending.front().is_some_and(|p| p.expires <= now) {
            user.pending.pop_front();
        }
        user.paths.retain(|p| p.until > now);
        self.requests -= requests - user.pending.len();
        self.paths -= paths - user.paths.len();
        let mine = |p: &Path| p.remote.is(remote) && p.resource.as_deref() == resource;
        let applied = match what {
            Outgoing::Available => {
                if let Some(p) = user.paths.iter_mut().find(|p| mine(p)) {
                    p.until = now + l.path_idle;
                    p.closing = false;
                    Applied::Done
                } else {
                    if user.paths.len() >= l.paths_per_user {
                        // Her least recently used path makes room.
                        if let Some(i) = (0..user.paths.len()).min_by_key(|&i| user.paths[i].until)
                        {
                            user.paths.swap_remove(i);
                            self.paths -= 1;
                        }
                    }
                    if self.paths >= l.paths_total {
                        Applied::Full
                    } else {
                        user.paths.push(Path {
                            resource: resource.map(str::to_owned),
                            remote: Bare::of(remote),
                            until: now + l.path_idle,
                            closing: false,
                        });
                        self.paths += 1;
                        Applied::Done
                    }
                }
            }
            Outgoing::Unavailable => {
                // A bare `from` (her server, for all of her): every resource's path closes.
                for p in user.paths.iter_mut().filter(|p| {
                    p.remote.is(remote) && (resource.is_none() || p.resource.as_deref() == resource)
                }) {
                    if !p.closing {
                        p.closing = true;
                        p.until = now + l.path_closing;
                    }
                }
                Applied::Done
            }
            Outgoing::Request(request) => {
                if let Some(p) = user.paths.iter_mut().find(|p| mine(p) && !p.closing) {
                    // The path covers the answers; using it keeps it open.
                    p.until = now + l.path_idle;
                    Applied::Done
                } else if let Some(id) = id {
                    if user.pending.len() >= l.requests_per_user
                        && user.pending.pop_front().is_some()
                    {
                        self.requests -= 1;
                    }
                    if self.requests >= l.requests_total {
                        Applied::Full
                    } else {
                        user.pending.push_back(Pending {
                            resource: resource.map(str::to_owned),
                            remote: remote.clone(),
                            request,
                            id: id.to_owned(),
                            expires: now + l.request_timeout,
                        });
                        self.requests += 1;
                        Applied::Done
                    }
                } else {
                    Applied::Done
                }
            }
        };
        self.forget_if_empty(local);
        if applied == Applied::Full && self.sweep(now) {
            // Room was made: try once more.
            return self.sent(local, resource, remote, what, id, now);
        }
        applied
    }

    fn forget_if_empty(&mut self, local: &UserJid) {
        if self
            .users
            .get(local)
            .is_some_and(|u| u.pending.is_empty() && u.paths.is_empty())
        {
            self.users.remove(local);
        }
    }

    /// Remove everything expired at `now` (and contact-request budgets that refilled). The
    /// gateway calls this periodically; a full table calls it itself, at most once a second.
    /// True if it ran.
    pub fn expire(&mut self, now: Instant) -> bool {
        self.swept = None;
        self.sweep(now)
    }

    fn sweep(&mut self, now: Instant) -> bool {
        if self
            .swept
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return false;
        }
        self.swept = Some(now);
        let (mut requests, mut paths) = (0, 0);
        self.users.retain(|_, u| {
            while u.pending.front().is_some_and(|p| p.expires <= now) {
                u.pending.pop_front();
            }
            u.paths.retain(|p| p.until > now);
            requests += u.pending.len();
            paths += u.paths.len();
            !(u.pending.is_empty() && u.paths.is_empty())
        });
        (self.requests, self.paths) = (requests, paths);
        let l = self.limits;
        let refilled = |b: &Bucket, rate: Rate| b.level(rate, now) >= f64::from(rate.burst);
        self.remotes
            .retain(|_, b| !refilled(b, l.subscribe_per_remote));
        self.partners
            .retain(|_, b| !refilled(b, l.subscribe_per_partner));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jid::normalise;

    fn user(s: &str) -> UserJid {
        UserJid::parse(s).unwrap()
    }
    fn jid(s: &str) -> NormalJid {
        normalise(s).unwrap()
    }
    fn sent(local: &str, remote: &str, what: Outgoing, id: Option<&str>) -> SessionUpdate {
        let l = jid(local);
        SessionUpdate::Sent {
            local: l.user().unwrap(),
            resource: l.resource().map(str::to_owned),
            remote: jid(remote),
            what,
            id: id.map(str::to_owned),
        }
    }
    const IQ: Outgoing = Outgoing::Request(Request::Iq);

    fn awaits(s: &Sessions, now: Instant, local: &str, remote: &str, id: &str) -> bool {
        let l = jid(local);
        s.at(now).awaits(
            &l.user().unwrap(),
            l.resource(),
            &jid(remote),
            Request::Iq,
            id,
        )
    }
    fn path(s: &Sessions, now: Instant, local: &str, remote: &str) -> PathState {
        let l = jid(local);
        s.at(now)
            .path(&l.user().unwrap(), l.resource(), &jid(remote))
    }

    #[test]
    fn a_request_is_awaited_by_its_sender_from_its_recipient_with_its_id_until_the_timeout() {
        let mut s = Sessions::default();
        let t0 = Instant::now();
        let a = "alice@corp.example/phone";
        s.apply(&sent(a, "Bob@partner.example/pc", IQ, Some("q1")), t0);
        assert!(awaits(&s, t0, a, "bob@partner.example/pc", "q1"));
        // Not another id, recipient, resource of hers or user.
        assert!(!awaits(&s, t0, a, "bob@partner.example/pc", "q2"));
        assert!(!awaits(&s, t0, a, "bob@partner.example", "q1"));
        assert!(!awaits(&s, t0, a, "eve@partner.example/pc", "q1"));
        assert!(!awaits(
            &s,
            t0,
            "alice@corp.example/laptop",
            "bob@partner.example/pc",
            "q1"
        ));
        assert!(!awaits(
            &s,
            t0,
            "carol@corp.example/phone",
            "bob@partner.example/pc",
            "q1"
        ));
        // Not a message error with that id either.
        let l = jid(a);
        assert!(!s.at(t0).awaits(
            &l.user().unwrap(),
            l.resource(),
            &jid("bob@partner.example/pc"),
            Request::Message,
            "q1"
        ));
        let timeout = s.limits().request_timeout;
        assert!(awaits(
            &s,
            t0 + timeout - Duration::from_secs(1),
            a,
            "bob@partner.example/pc",
            "q1"
        ));
        assert!(!awaits(&s, t0 + timeout, a, "bob@partner.example/pc", "q1"));
        assert!(s.expire(t0 + timeout));
        assert!(s.is_empty(), "{s:?}");
    }

    #[test]
    fn an_answer_is_taken_once() {
        let mut s = Sessions::default();
        let t0 = Instant::now();
        let a = "alice@corp.example/phone";
        s.apply(&sent(a, "partner.example", IQ, Some("ping")), t0);
        assert!(awaits(&s, t0, a, "partner.example", "ping"));
        s.apply(
            &SessionUpdate::Answered {
                local: user("alice@corp.example"),
                resource: Some("phone".into()),
                remote: jid("partner.example"),
                request: Request::Iq,
                id: "ping".into(),
            },
            t0,
        );
        assert!(!awaits(&s, t0, a, "partner.example", "ping"));
        assert_eq!(s.len(), (0, 0, 0));
    }

    #[test]
    fn what_opens_nothing_makes_no_entry() {
        let mut s = Sessions::default();
        let t0 = Instant::now();
        let a = "alice@corp.example/phone";
        s.apply(
            &sent(
                a,
                "bob@partner.example",
                Outgoing::Request(Request::Message),
                None,
            ),
            t0,
        );
        s.apply(
            &sent(
                a,
                "room@conference.partner.example",
                Outgoing::Unavailable,
                None,
            ),
            t0,
        );
        assert!(s.is_empty(), "{s:?}");
    }

    #[test]
    fn requests_are_bounded_per_user_and_in_total() {
        let limits = Limits {
            requests_per_user: 4,
            requests_total: 6,
            ..Limits::DEFAULT
        };
        let mut s = Sessions::new(limits);
        let t0 = Instant::now();
        let a = "alice@corp.example/r";
        for i in 0..10 {
            assert_eq!(
                s.apply(&sent(a, "partner.example", IQ, Some(&format!("a{i}"))), t0),
                Applied::Done
            );
        }
        // Her newest four are kept.
        assert_eq!(s.len().0, 4);
        assert!(!awaits(&s, t0, a, "partner.example", "a5"));
        assert!(awaits(&s, t0, a, "partner.example", "a6"));
        assert!(awaits(&s, t0, a, "partner.example", "a9"));
        let c = "carol@corp.example/r";
        for i in 0..2 {
            assert_eq!(
                s.apply(&sent(c, "partner.example", IQ, Some(&format!("c{i}"))), t0),
                Applied::Done
            );
        }
        assert_eq!(
            s.apply(&sent(c, "partner.example", IQ, Some("c2")), t0),
            Applied::Full
        );
        assert!(!awaits(&s, t0, c, "partner.example", "c2"));
        assert_eq!(s.len().0, 6);
        // Once the old ones expired, there is room again (a full table sweeps itself).
        let later = t0 + limits.request_timeout;
        assert_eq!(
            s.apply(&sent(c, "partner.example", IQ, Some("c3")), later),
            Applied::Done
        );
        assert!(s.len().0 <= 6);
        s.expire(later);
        assert_eq!(s.len().0, 1);
    }

    #[test]
    fn directed_presence_opens_a_path_until_unavailable() {
        let mut s = Sessions::default();
        let t0 = Instant::now();
        let a = "alice@corp.example/phone";
        let room = "room@conference.partner.example";
        assert_eq!(path(&s, t0, a, room), PathState::None);
        s.apply(
            &sent(a, &format!("{room}/Alice"), Outgoing::Available, None),
            t0,
        );
        // From any occupant of the room, to the resource that joined (or her bare JID).
        assert_eq!(path(&s, t0, a, &format!("{room}/bob")), PathState::Open);
        assert_eq!(path(&s, t0, a, room), PathState::Open);
        assert_eq!(path(&s, t0, "alice@corp.example", room), PathState::Open);
        assert_eq!(
            path(&s, t0, "alice@corp.example/laptop", room),
            PathState::None
        );
        assert_eq!(
            path(&s, t0, a, "other@conference.partner.example"),
            PathState::None
        );
        assert_eq!(
            path(&s, t0, "carol@corp.example/phone", room),
            PathState::None
        );
        // A request to the room is covered by the path (not tracked on its own) and keeps it.
        s.apply(&sent(a, &format!("{room}/bob"), IQ, Some("v")), t0);
        assert_eq!(s.len(), (0, 1, 0));
        let t1 = t0 + Duration::from_secs(60);
        s.apply(
            &sent(a, &format!("{room}/Alice"), Outgoing::Unavailable, None),
            t1,
        );
        assert_eq!(path(&s, t1, a, room), PathState::Closing);
        let t2 = t1 + s.limits().path_closing;
        assert_eq!(path(&s, t2, a, room), PathState::None);
        s.expire(t2);
        assert!(s.is_empty(), "{s:?}");
        // Joining again reopens it.
        s.apply(&sent(a, room, Outgoing::Available, None), t2);
        assert_eq!(path(&s, t2, a, room), PathState::Open);
    }

    #[test]
    fn a_path_expires_when_unused_and_her_server_closes_all_of_hers() {
        let mut s = Sessions::default();
        let t0 = Instant::now();
        let room = "room@conference.partner.example";
        s.apply(
            &sent("alice@corp.example/a", room, Outgoing::Available, None),
            t0,
        );
        s.apply(
            &sent("alice@corp.example/b", room, Outgoing::Available, None),
            t0,
        );
        let idle = s.limits().path_idle;
        // Used by resource a: its path lives on, b's expires.
        let t1 = t0 + idle / 2;
        s.apply(
            &sent(
                "alice@corp.example/a",
                room,
                Outgoing::Request(Request::Message),
                None,
            ),
            t1,
        );
        let t2 = t0 + idle;
        assert_eq!(path(&s, t2, "alice@corp.example/a", room), PathState::Open);
        assert_eq!(path(&s, t2, "alice@corp.example/b", room), PathState::None);
        // Unavailable from her bare JID closes every resource's path.
        s.apply(
            &sent("alice@corp.example", room, Outgoing::Unavailable, None),
            t2,
        );
        assert_eq!(
            path(&s, t2, "alice@corp.example/a", room),
            PathState::Closing
        );
    }

    #[test]
    fn paths_are_bounded_per_user_and_in_total() {
        let limits = Limits {
            paths_per_user: 2,
            paths_total: 3,
            ..Limits::DEFAULT
        };
        let mut s = Sessions::new(limits);
        let t0 = Instant::now();
        let a = "alice@corp.example/r";
        for (i, r) in ["r1", "r2", "r3"].iter().enumerate() {
            let t = t0 + Duration::from_secs(i as u64);
            let room = format!("{r}@conference.partner.example");
            assert_eq!(
                s.apply(&sent(a, &room, Outgoing::Available, None), t),
                Applied::Done
            );
        }
        let t = t0 + Duration::from_secs(3);
        // Her least recently used made room.
        assert_eq!(
            path(&s, t, a, "r1@conference.partner.example"),
            PathState::None
        );
        assert_eq!(
            path(&s, t, a, "r3@conference.partner.example"),
            PathState::Open
        );
        let c = "carol@corp.example/r";
        assert_eq!(
            s.apply(
                &sent(c, "x@conference.partner.example", Outgoing::Available, None),
                t
            ),
            Applied::Done
        );
        assert_eq!(
            s.apply(
                &sent(c, "y@conference.partner.example", Outgoing::Available, None),
                t
            ),
            Applied::Full
        );
        assert_eq!(
            path(&s, t, c, "y@conference.partner.example"),
            PathState::None
        );
        assert_eq!(s.len().1, 3);
    }

    #[test]
    fn contact_requests_have_a_budget_per_remote_user_and_per_partner() {
        let mut s = Sessions::default();
        let l = *s.limits();
        let t0 = Instant::now();
        let partner = Domain::parse("partner.example").unwrap();
        let request = |s: &mut Sessions, who: &str, t: Instant| {
            let remote = user(who);
            let ok = s.at(t).may_request_contact(&remote, &partner);
            if ok {
                s.apply(
                    &SessionUpdate::ContactRequest {
                        remote,
                        partner: partner.clone(),
                    },
                    t,
                );
            }
            ok
        };
        let bob = (0..10)
            .filter(|_| request(&mut s, "bob@partner.example", t0))
            .count();
        assert_eq!(bob, l.subscribe_per_remote.burst as usize);
        // One more after the refill period.
        let t1 = t0 + l.subscribe_per_remote.every;
        assert!(request(&mut s, "bob@partner.example", t1));
        assert!(!request(&mut s, "bob@partner.example", t1));
        // Many users of one partner: the partner's budget.
        let many = (0..100)
            .filter(|i| request(&mut s, &format!("u{i}@partner.example"), t1))
            .count();
        // (The partner's budget refilled by t1; bob's request at t1 took one of it.)
        assert_eq!(many, l.subscribe_per_partner.burst as usize - 1);
        // Budgets that refilled are forgotten.
        s.expire(t1 + Duration::from_secs(3600));
        assert_eq!(s.len(), (0, 0, 0));
        assert!(s.is_empty());
    }

    #[test]
    fn outgoing_kinds() {
        use crate::access::{IqType, MessageType};
        assert_eq!(Outgoing::of(StanzaKind::Iq(IqType::Get)), Some(IQ));
        assert_eq!(Outgoing::of(StanzaKind::Iq(IqType::Result)), None);
        assert_eq!(Outgoing::of(StanzaKind::Message(MessageType::Error)), None);
        assert_eq!(
            Outgoing::of(StanzaKind::Message(MessageType::Groupchat)),
            Some(Outgoing::Request(Request::Message))
        );
        assert_eq!(
            Outgoing::of(StanzaKind::Presence(PresenceType::Subscribed)),
            None
        );
        assert_eq!(
            Request::answered_by(StanzaKind::Iq(IqType::Error)),
            Some(Request::Iq)
        );
        assert_eq!(Request::answered_by(StanzaKind::Iq(IqType::Set)), None);
    }
}
