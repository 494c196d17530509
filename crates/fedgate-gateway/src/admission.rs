//! Admission bookkeeping before authentication, in O(1) per connection: the counts of
//! unauthenticated connections per address, per address block and in all (a [`PreAuthTicket`]
//! holds one connection's place until it authenticates or ends), the slots for dialback
//! verifications per partner domain with their bounded queues of waiting requests ([`SlotBook`],
//! plain data; [`DialbackSlots`] wakes the waiters), and the internal listener's source networks. The decisions
//! themselves are [`fedgate_model::enforce`]'s; this module only counts.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fedgate_model::enforce::{self, AddressBlock, PreAuthCounts, PreAuthLimits, Refusal};
use tokio::sync::oneshot;

#[derive(Debug, Default)]
struct Counts {
    total: u32,
    by_address: HashMap<IpAddr, u32>,
    by_block: HashMap<AddressBlock, u32>,
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, u32>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

/// Unauthenticated connections, counted per address, per block and in all. Entries exist only
/// while a connection holds them, so the maps never outgrow the connections.
#[derive(Debug, Default)]
pub struct PreAuth {
    counts: Mutex<Counts>,
}

/// One unauthenticated connection's place in [`PreAuth`]; released when the connection
/// authenticates ([`PreAuthTicket::release`]) or ends (drop).
#[derive(Debug)]
pub struct PreAuthTicket {
    owner: Arc<PreAuth>,
    ip: IpAddr,
    held: bool,
}

impl PreAuth {
    /// Admit one more unauthenticated connection from `ip`, or refuse it (nothing counted).
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        limits: PreAuthLimits,
    ) -> Result<PreAuthTicket, Refusal> {
        let block = AddressBlock::of(ip);
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let now = PreAuthCounts {
            address: c.by_address.get(&ip).copied().unwrap_or(0),
            block: c.by_block.get(&block).copied().unwrap_or(0),
            total: c.total,
        };
        enforce::pre_auth_admission(now, limits)?;
        c.total += 1;
        *c.by_address.entry(ip).or_default() += 1;
        *c.by_block.entry(block).or_default() += 1;
        Ok(PreAuthTicket {
            owner: self.clone(),
            ip,
            held: true,
        })
    }

    /// Unauthenticated connections now (for tests and status).
    pub fn total(&self) -> u32 {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl PreAuthTicket {
    /// The connection authenticated: it no longer counts as unauthenticated.
    pub fn release(&mut self) {
        if !std::mem::replace(&mut self.held, false) {
            return;
        }
        let mut c = self.owner.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.total = c.total.saturating_sub(1);
        decrement(&mut c.by_address, &self.ip);
        decrement(&mut c.by_block, &AddressBlock::of(self.ip));
    }
}

impl Drop for PreAuthTicket {
    fn drop(&mut self) {
        self.release();
    }
}

/// Dialback verifications in flight for one partner domain at most (each one a callback to its
/// authoritative server); more requests for the domain wait in its queue.
pub const VERIFICATIONS_PER_DOMAIN: u32 = 4;
/// Requests for one domain that may wait for one of its slots, in arrival order; a request past
/// them is refused at once (`dialback_busy`). So a flood of requests for one domain, on any number
/// of streams, gets at most `VERIFICATIONS_PER_DOMAIN + WAITING_PER_DOMAIN` verifications while
/// the first ones are in flight.
pub const WAITING_PER_DOMAIN: usize = 32;
/// Dialback verifications in flight on the whole gateway: a request that would pass it is refused
/// at once (it does not wait: a slot of another domain coming free is not handed over).
pub const VERIFICATIONS_TOTAL: u32 = 256;
/// Requests waiting for a slot on the whole gateway.
pub const WAITING_TOTAL: usize = 1024;
/// How long a request waits for its domain's slot before it is refused (`dialback_busy`). Fixed,
/// and shorter than the default stream establishment timeout (60 s), so the peer hears why.
pub const SLOT_WAIT: Duration = Duration::from_secs(10);

/// The bounds of a [`SlotBook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLimits {
    pub per_domain: u32,
    pub waiting_per_domain: usize,
    pub total: u32,
    pub waiting_total: usize,
}

/// The gateway's bounds: [`VERIFICATIONS_PER_DOMAIN`], [`WAITING_PER_DOMAIN`],
/// [`VERIFICATIONS_TOTAL`], [`WAITING_TOTAL`].
pub const SLOT_LIMITS: SlotLimits = SlotLimits {
    per_domain: VERIFICATIONS_PER_DOMAIN,
    waiting_per_domain: WAITING_PER_DOMAIN,
    total: VERIFICATIONS_TOTAL,
    waiting_total: WAITING_TOTAL,
};

/// What [`SlotBook::take`] decided for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// A slot is the request's now.
    Granted,
    /// The request waits under `ticket`, `position` requests before it (0: it is next).
    Queued { ticket: u64, position: usize },
    /// Past the bounds: refused, nothing counted.
    Refused,
}

#[derive(Debug)]
struct DomainSlots<W> {
    in_flight: u32,
    queue: VecDeque<(u64, W)>,
}

/// Slot accounting for dialback verifications, plain data: per domain the slots in flight and a
/// queue of waiting requests (each with a ticket and `W`, what wakes it), and the totals. A slot
/// given back goes straight to the domain's first waiter (the totals do not change), so a waiter
/// is never overtaken by a later request. Entries exist only while a slot is held or a request
/// waits.
#[derive(Debug)]
pub struct SlotBook<W> {
    limits: SlotLimits,
    in_flight: u32,
    waiting: usize,
    next_ticket: u64,
    domains: HashMap<String, DomainSlots<W>>,
}

impl<W> SlotBook<W> {
    pub fn new(limits: SlotLimits) -> Self {
        SlotBook {
            limits,
            in_flight: 0,
            waiting: 0,
            next_ticket: 0,
            domains: HashMap::new(),
        }
    }

    /// A request for a slot of `domain`: granted, queued (woken through `waker` when
    /// [`release`](Self::release) hands it a slot), or refused.
    pub fn take(&mut self, domain: &str, waker: W) -> Take {
        let (n, queued) = self
            .domains
            .get(domain)
            .map_or((0, 0), |d| (d.in_flight, d.queue.len()));
        if n < self.limits.per_domain {
            if self.in_flight >= self.limits.total {
                return Take::Refused;
            }
            self.in_flight += 1;
            self.domains
                .entry(domain.to_owned())
                .or_insert_with(|| DomainSlots {
                    in_flight: 0,
                    queue: VecDeque::new(),
                })
                .in_flight += 1;
            return Take::Granted;
        }
        if queued >= self.limits.waiting_per_domain || self.waiting >= self.limits.waiting_total {
            return Take::Refused;
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.waiting += 1;
        if let Some(d) = self.domains.get_mut(domain) {
            d.queue.push_back((ticket, waker));
        }
        Take::Queued {
            ticket,
            position: queued,
        }
    }

    /// A slot of `domain` given back: handed to its first waiter (returned, to be woken: its slot
    /// is counted already) or freed.
    pub fn release(&mut self, domain: &str) -> Option<(u64, W)> {
        let d = self.domains.get_mut(domain)?;
        if let Some(next) = d.queue.pop_front() {
            self.waiting -= 1;
            return Some(next);
        }
        d.in_flight = d.in_flight.saturating_sub(1);
        self.in_flight = self.in_flight.saturating_sub(1);
        if d.in_flight == 0 {
            self.domains.remove(domain);
        }
        None
    }

    /// A waiting request gone (its stream closed, or it gave up): true if it was still waiting
    /// and has left the queue; false if it was handed a slot meanwhile (which it must then give
    /// back with [`release`](Self::release)).
    pub fn leave(&mut self, domain: &str, ticket: u64) -> bool {
        let Some(d) = self.domains.get_mut(domain) else {
            return false;
        };
        let Some(i) = d.queue.iter().position(|(t, _)| *t == ticket) else {
            return false;
        };
        d.queue.remove(i);
        self.waiting -= 1;
        true
    }

    /// Where `ticket` waits in `domain`'s queue (0: next), None if it does not wait.
    pub fn position(&self, domain: &str, ticket: u64) -> Option<usize> {
        self.domains
            .get(domain)?
            .queue
            .iter()
            .position(|(t, _)| *t == ticket)
    }

    /// Slots held, on the whole gateway.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Requests waiting, on the whole gateway.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// Domains with a slot held or a request waiting.
    pub fn domains(&self) -> usize {
        self.domains.len()
    }
}

type Wake = oneshot::Sender<()>;

/// Slots for dialback verifications ([`SlotBook`] with [`SLOT_LIMITS`]), shared by all streams.
#[derive(Debug)]
pub struct DialbackSlots {
    book: Mutex<SlotBook<Wake>>,
}

impl Default for DialbackSlots {
    fn default() -> Self {
        DialbackSlots {
            book: Mutex::new(SlotBook::new(SLOT_LIMITS)),
        }
    }
}

/// One verification's slot, given back on drop (to the domain's next waiter, if any).
#[derive(Debug)]
pub struct DialbackSlot {
    owner: Arc<DialbackSlots>,
    domain: String,
}

/// A request waiting for a slot ([`SlotWait::granted`]); dropped, it leaves the queue (or gives
/// back the slot it was handed meanwhile).
#[derive(Debug)]
pub struct SlotWait {
    owner: Arc<DialbackSlots>,
    domain: String,
    ticket: u64,
    woken: Option<oneshot::Receiver<()>>,
    done: bool,
}

/// What a dialback request gets from [`DialbackSlots::request`].
#[derive(Debug)]
pub enum SlotRequest {
    Granted(DialbackSlot),
    Waiting(SlotWait),
    /// Past the bounds: refuse the request (`dialback_busy`).
    Busy,
}

impl DialbackSlots {
    fn book(&self) -> std::sync::MutexGuard<'_, SlotBook<Wake>> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for verifying `domain` now, a place in its queue, or Busy past the bounds.
    pub fn request(self: &Arc<Self>, domain: &str) -> SlotRequest {
        let (tx, rx) = oneshot::channel();
        let taken = self.book().take(domain, tx);
        match taken {
            Take::Granted => SlotRequest::Granted(DialbackSlot {
                owner: self.clone(),
                domain: domain.to_owned(),
            }),
            Take::Queued { ticket, .. } => SlotRequest::Waiting(SlotWait {
                owner: self.clone(),
                domain: domain.to_owned(),
                ticket,
                woken: Some(rx),
                done: false,
            }),
            Take::Refused => SlotRequest::Busy,
        }
    }

    /// Give a slot of `domain` back: to its next waiter, or free.
    fn give_back(&self, domain: &str) {
        if let Some((_, wake)) = self.book().release(domain) {
            // A waiter gone meanwhile finds itself out of the queue and gives the slot back.
            let _ = wake.send(());
        }
    }

    /// Verifications in flight now (for tests and status).
    pub fn in_flight(&self) -> u32 {
        self.book().in_flight()
    }

    /// Requests waiting for a slot now (for tests and status).
    pub fn waiting(&self) -> usize {
        self.book().waiting()
    }
}

impl SlotWait {
    /// Wait for the slot, at most `limit`; None when the time is up (the request left the queue).
    pub async fn granted(mut self, limit: Duration) -> Option<DialbackSlot> {
        let woken = self.woken.take()?;
        match tokio::time::timeout(limit, woken).await {
            Ok(Ok(())) => {
                self.done = true;
                Some(DialbackSlot {
                    owner: self.owner.clone(),
                    domain: std::mem::take(&mut self.domain),
                })
            }
            _ => None,
        }
    }
}

impl Drop for SlotWait {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let handed = !self.owner.book().leave(&self.domain, self.ticket);
        if handed {
            self.owner.give_back(&self.domain);
        }
    }
}

impl Drop for DialbackSlot {
    fn drop(&mut self) {
        self.owner.give_back(&self.domain);
    }
}

/// Whether `ip` may connect to the internal listener (an IPv4-mapped IPv6 source is checked as
/// its IPv4 address).
pub fn internal_source_allowed(allowed: &[ipnet::IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    allowed.iter().any(|n| n.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: PreAuthLimits = PreAuthLimits {
        per_address: 2,
        per_block: 3,
        total: 4,
    };

    #[test]
    fn tickets_count_until_released_or_dropped() {
        let p = Arc::new(PreAuth::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let c: IpAddr = "198.51.100.1".parse().unwrap();
        let t1 = p.admit(a, LIMITS).unwrap();
        let mut t2 = p.admit(a, LIMITS).unwrap();
        assert_eq!(p.admit(a, LIMITS).unwrap_err().reason, "connections_per_ip");
        let t3 = p.admit(b, LIMITS).unwrap();
        assert_eq!(
            p.admit(b, LIMITS).unwrap_err().reason,
            "connections_per_block"
        );
        let t4 = p.admit(c, LIMITS).unwrap();
        assert_eq!(
            p.admit("203.0.113.1".parse().unwrap(), LIMITS)
                .unwrap_err()
                .reason,
            "unauthenticated_streams"
        );
        assert_eq!(p.total(), 4);
        t2.release();
        t2.release();
        assert_eq!(p.total(), 3);
        drop(t2);
        assert_eq!(p.total(), 3, "a released ticket is not given back twice");
        drop((t1, t3, t4));
        assert_eq!(p.total(), 0);
        let c = p.counts.lock().unwrap();
        assert!(c.by_address.is_empty() && c.by_block.is_empty());
    }

    const SMALL: SlotLimits = SlotLimits {
        per_domain: 2,
        waiting_per_domain: 2,
        total: 3,
        waiting_total: 3,
    };

    #[test]
    fn slot_book_grants_queues_and_refuses_past_the_bounds() {
        let mut b = SlotBook::new(SMALL);
        assert_eq!(b.take("a", 'x'), Take::Granted);
        assert_eq!(b.take("a", 'x'), Take::Granted);
        let Take::Queued {
            ticket: t1,
            position: 0,
        } = b.take("a", '1')
        else {
            panic!("the third request for a waits first in line");
        };
        let Take::Queued {
            ticket: t2,
            position: 1,
        } = b.take("a", '2')
        else {
            panic!("the fourth waits second");
        };
        assert_eq!(b.take("a", '3'), Take::Refused, "a's queue is full");
        assert_eq!((b.in_flight(), b.waiting()), (2, 2));
        assert_eq!(b.position("a", t2), Some(1));
        // The total in flight: b gets the third slot, c none (refused, not queued).
        assert_eq!(b.take("b", 'x'), Take::Granted);
        assert_eq!(b.take("c", 'x'), Take::Refused);
        // b has a free slot of its own, but the gateway's are taken: refused, not queued.
        assert_eq!(b.take("b", 'x'), Take::Refused, "total in flight");
        assert_eq!(b.position("a", t1), Some(0));

        // The total waiting.
        let mut b = SlotBook::new(SlotLimits {
            per_domain: 1,
            waiting_per_domain: 2,
            total: 4,
            waiting_total: 3,
        });
        for d in ["a", "b"] {
            assert_eq!(b.take(d, 'x'), Take::Granted);
            assert!(matches!(b.take(d, 'x'), Take::Queued { .. }));
        }
        assert!(matches!(b.take("a", 'x'), Take::Queued { .. }));
        assert_eq!(b.take("b", 'x'), Take::Refused, "three wait in all");
        assert_eq!((b.in_flight(), b.waiting()), (2, 3));
    }

    #[test]
    fn release_hands_the_slot_to_the_first_waiter_in_order() {
        let mut b = SlotBook::new(SMALL);
        b.take("a", 'x');
        b.take("a", 'x');
        let Take::Queued { ticket: t1, .. } = b.take("a", '1') else {
            panic!()
        };
        let Take::Queued { ticket: t2, .. } = b.take("a", '2') else {
            panic!()
        };
        assert_eq!(b.release("a"), Some((t1, '1')));
        assert_eq!((b.in_flight(), b.waiting()), (2, 1), "handed over, still 2");
        assert_eq!(b.position("a", t2), Some(0), "the second is next now");
        assert_eq!(b.release("a"), Some((t2, '2')));
        assert_eq!(b.release("a"), None);
        assert_eq!(b.release("a"), None);
        assert_eq!((b.in_flight(), b.waiting(), b.domains()), (0, 0, 0));
        assert_eq!(b.release("a"), None, "nothing held: nothing to give back");
        assert_eq!(b.in_flight(), 0);
    }

    #[test]
    fn a_waiter_that_leaves_frees_its_place_and_a_handed_one_must_give_back() {
        let mut b = SlotBook::new(SMALL);
        b.take("a", 'x');
        b.take("a", 'x');
        let Take::Queued { ticket: t1, .. } = b.take("a", '1') else {
            panic!()
        };
        let Take::Queued { ticket: t2, .. } = b.take("a", '2') else {
            panic!()
        };
        assert!(b.leave("a", t1), "t1 was waiting");
        assert!(!b.leave("a", t1), "gone already");
        assert_eq!(b.waiting(), 1);
        assert_eq!(b.release("a"), Some((t2, '2')));
        assert!(!b.leave("a", t2), "t2 was handed a slot: it gives it back");
        assert_eq!(b.release("a"), None);
        assert_eq!(b.release("a"), None);
        assert_eq!((b.in_flight(), b.waiting(), b.domains()), (0, 0, 0));
    }

    #[test]
    fn the_gateway_bounds() {
        let mut b = SlotBook::new(SLOT_LIMITS);
        let mut queued = 0;
        let mut refused = 0;
        for _ in 0..200 {
            match b.take("stranger.example", ()) {
                Take::Granted => {}
                Take::Queued { .. } => queued += 1,
                Take::Refused => refused += 1,
            }
        }
        assert_eq!(b.in_flight(), VERIFICATIONS_PER_DOMAIN);
        assert_eq!(queued, WAITING_PER_DOMAIN);
        assert_eq!(
            refused,
            200 - VERIFICATIONS_PER_DOMAIN as usize - WAITING_PER_DOMAIN
        );
    }

    #[tokio::test]
    async fn waiters_are_woken_in_order_and_leave_on_drop() {
        let s = Arc::new(DialbackSlots::default());
        let held: Vec<_> = (0..VERIFICATIONS_PER_DOMAIN)
            .map(|_| match s.request("a.example") {
                SlotRequest::Granted(slot) => slot,
                other => panic!("{other:?}"),
            })
            .collect();
        let SlotRequest::Waiting(first) = s.request("a.example") else {
            panic!("the fifth waits");
        };
        let SlotRequest::Waiting(second) = s.request("a.example") else {
            panic!("the sixth waits");
        };
        assert!(matches!(s.request("b.example"), SlotRequest::Granted(_)));
        assert_eq!(s.waiting(), 2);
        // Its time up, the first leaves the queue.
        assert!(first.granted(Duration::from_millis(10)).await.is_none());
        assert_eq!(s.waiting(), 1);
        let second = tokio::spawn(second.granted(Duration::from_secs(10)));
        drop(held);
        let slot = second.await.unwrap().expect("woken with a slot");
        assert_eq!((s.in_flight(), s.waiting()), (1, 0));
        drop(slot);
        assert_eq!(s.in_flight(), 0);

        // A waiter dropped before it is woken leaves; one dropped after it was handed a slot
        // gives the slot back.
        let held: Vec<_> = (0..VERIFICATIONS_PER_DOMAIN)
            .map(|_| s.request("a.example"))
            .collect();
        let SlotRequest::Waiting(w1) = s.request("a.example") else {
            panic!()
        };
        let SlotRequest::Waiting(w2) = s.request("a.example") else {
            panic!()
        };
        drop(w1);
        assert_eq!(s.waiting(), 1);
        drop(held);
        assert_eq!((s.in_flight(), s.waiting()), (1, 0), "w2 holds a slot");
        drop(w2);
        assert_eq!((s.in_flight(), s.waiting()), (0, 0));
        assert_eq!(s.book().domains(), 0);
    }

    #[test]
    fn internal_sources() {
        let nets: Vec<ipnet::IpNet> =
            vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        assert!(internal_source_allowed(&nets, "10.1.2.3".parse().unwrap()));
        assert!(internal_source_allowed(
            &nets,
            "::ffff:10.1.2.3".parse().unwrap()
        ));
        assert!(internal_source_allowed(&nets, "::1".parse().unwrap()));
        assert!(!internal_source_allowed(&nets, "11.0.0.1".parse().unwrap()));
        assert!(!internal_source_allowed(&[], "10.1.2.3".parse().unwrap()));
    }
}
