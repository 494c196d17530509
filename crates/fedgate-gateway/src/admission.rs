//! Admission bookkeeping before authentication, in O(1) per connection: the counts of
//! unauthenticated connections per address, per address block and in all (a [`PreAuthTicket`]
//! holds one connection's place until it authenticates or ends), the slots for dialback
//! verifications per partner domain, and the internal listener's source networks. The decisions
//! themselves are [`fedgate_model::enforce`]'s; this module only counts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use fedgate_model::enforce::{self, AddressBlock, PreAuthCounts, PreAuthLimits, Refusal};

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

/// Dialback verifications in flight for one partner domain at most; more wait for none — they
/// are answered with an error at once, so a flood of requests for one domain (on any number of
/// streams) opens at most this many connections to its authoritative server.
pub const VERIFICATIONS_PER_DOMAIN: u32 = 4;
/// Dialback verifications in flight on the whole gateway.
pub const VERIFICATIONS_TOTAL: u32 = 256;

/// Slots for dialback verifications, per originating domain and in all.
#[derive(Debug, Default)]
pub struct DialbackSlots {
    in_flight: Mutex<(u32, HashMap<String, u32>)>,
}

/// One verification's slot, given back on drop.
#[derive(Debug)]
pub struct DialbackSlot {
    owner: Arc<DialbackSlots>,
    domain: String,
}

impl DialbackSlots {
    /// A slot for verifying `domain`, or None when its verifications (or all) are at the limit.
    pub fn try_take(self: &Arc<Self>, domain: &str) -> Option<DialbackSlot> {
        let mut g = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let (total, per) = &mut *g;
        let n = per.get(domain).copied().unwrap_or(0);
        if n >= VERIFICATIONS_PER_DOMAIN || *total >= VERIFICATIONS_TOTAL {
            return None;
        }
        *total += 1;
        per.insert(domain.to_owned(), n + 1);
        Some(DialbackSlot {
            owner: self.clone(),
            domain: domain.to_owned(),
        })
    }

    /// Verifications in flight now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

impl Drop for DialbackSlot {
    fn drop(&mut self) {
        let mut g = self
            .owner
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (total, per) = &mut *g;
        *total = total.saturating_sub(1);
        decrement(per, &self.domain);
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

    #[test]
    fn dialback_slots_per_domain_and_in_all() {
        let s = Arc::new(DialbackSlots::default());
        let held: Vec<_> = (0..VERIFICATIONS_PER_DOMAIN)
            .map(|_| s.try_take("a.example").unwrap())
            .collect();
        assert!(s.try_take("a.example").is_none());
        assert!(s.try_take("b.example").is_some());
        drop(held);
        assert_eq!(s.in_flight(), 0);
        assert!(s.try_take("a.example").is_some());
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
