//! Partner traffic (issue 14, item 4): per partner, the stanzas forwarded from it (inbound) and
//! to it (outbound) and the refusals by reason, per minute over the last hour — rings of
//! [`MINUTES`] one-minute buckets, rotated by the time given (pure; the gateway records into it
//! and keeps it in memory only). Read as [`MINUTES`] values oldest → newest, the current minute
//! last, minutes without events as zeros. Recording is O(1) and allocates nothing, except the
//! first refusal of a reason on a partner (at most [`MAX_REASONS`] of them; more fold into
//! [`OTHER_REASON`]). Forwarded stanzas are counted first where they are relayed, in a [`Tally`]
//! of the stream's (no lock, no clock per stanza), which the gateway adds to the rings in one go
//! about once a second.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::Domain;
use crate::health::Direction;

/// Buckets of a ring: one per minute of the last hour.
pub const MINUTES: usize = 60;

/// Refusal reasons kept apart per partner (the gateway's reasons are a fixed set of labels, far
/// fewer than this); the refusals of any further reason are counted under [`OTHER_REASON`].
pub const MAX_REASONS: usize = 32;

/// Where refusals of reasons past [`MAX_REASONS`] are counted.
pub const OTHER_REASON: &str = "other";

/// A bucket no event was recorded in.
const NEVER: u64 = u64::MAX;

/// Events per minute over the last hour: bucket `minute % 60` holds `(minute, count)` (minutes
/// since 1970), so a bucket whose minute is not the one asked for is a minute without events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    buckets: [(u64, u32); MINUTES],
}

impl Default for Ring {
    fn default() -> Self {
        Ring {
            buckets: [(NEVER, 0); MINUTES],
        }
    }
}

impl Ring {
    /// `n` events at `now` (seconds since 1970). The bucket of an older minute is started over;
    /// counts saturate.
    pub fn add(&mut self, now: u64, n: u32) {
        let minute = now / 60;
        let b = &mut self.buckets[(minute % MINUTES as u64) as usize];
        if b.0 != minute {
            *b = (minute, 0);
        }
        b.1 = b.1.saturating_add(n);
    }

    /// The counts of the [`MINUTES`] minutes up to `now`, oldest first (this minute last).
    pub fn series(&self, now: u64) -> Vec<u32> {
        let current = now / 60;
        (0..MINUTES as u64)
            .map(|i| {
                let Some(minute) = current.checked_sub(MINUTES as u64 - 1 - i) else {
                    return 0;
                };
                match self.buckets[(minute % MINUTES as u64) as usize] {
                    (m, n) if m == minute => n,
                    _ => 0,
                }
            })
            .collect()
    }

    /// Whether no event was recorded in the [`MINUTES`] minutes up to `now`.
    pub fn is_quiet(&self, now: u64) -> bool {
        let current = now / 60;
        self.buckets
            .iter()
            .all(|&(m, n)| n == 0 || m == NEVER || m > current || current - m >= MINUTES as u64)
    }
}

/// One partner's traffic and refusals per minute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartnerTraffic {
    inbound: Ring,
    outbound: Ring,
    /// By reason, in the order first seen; at most [`MAX_REASONS`] (the last may be
    /// [`OTHER_REASON`]).
    refusals: Vec<(&'static str, Ring)>,
}

impl PartnerTraffic {
    /// `n` stanzas forwarded from the partner (inbound) or to it (outbound) at `now`.
    pub fn relayed(&mut self, direction: Direction, now: u64, n: u32) {
        match direction {
            Direction::Inbound => self.inbound.add(now, n),
            Direction::Outbound => self.outbound.add(now, n),
        }
    }

    /// Something of the partner's was refused at `now`, for `reason` (a stable label such as
    /// `not_authorised`).
    pub fn refused(&mut self, reason: &'static str, now: u64) {
        if let Some((_, ring)) = self.refusals.iter_mut().find(|(r, _)| *r == reason) {
            return ring.add(now, 1);
        }
        let label = if self.refusals.len() < MAX_REASONS - 1 {
            reason
        } else {
            OTHER_REASON
        };
        match self.refusals.iter_mut().find(|(r, _)| *r == label) {
            Some((_, ring)) => ring.add(now, 1),
            None => {
                let mut ring = Ring::default();
                ring.add(now, 1);
                self.refusals.push((label, ring));
            }
        }
    }

    /// Whether nothing was recorded in the last hour up to `now`.
    pub fn is_quiet(&self, now: u64) -> bool {
        self.inbound.is_quiet(now)
            && self.outbound.is_quiet(now)
            && self.refusals.iter().all(|(_, r)| r.is_quiet(now))
    }

    /// What the API shows at `now`: the reasons with a refusal in the last hour.
    pub fn view(&self, now: u64) -> TrafficView {
        TrafficView {
            refusals: self
                .refusals
                .iter()
                .filter(|(_, r)| !r.is_quiet(now))
                .map(|(reason, r)| (*reason, r.series(now)))
                .collect(),
            inbound: self.inbound.series(now),
            outbound: self.outbound.series(now),
            minutes: TrafficView::minutes(now),
        }
    }
}

/// Stanzas forwarded per partner (its Identity) and not yet added to its [`PartnerTraffic`]: a
/// stream counts here per stanza, and hands the counts over ([`Tally::drain`]) on its 1-second
/// tick, when it ends, and when [`Tally::add`] says so. At most [`Tally::MAX_PARTNERS`] partners:
/// a stream relays for one partner (external side) or a few at a time (internal side).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    counts: Vec<(Domain, u32)>,
}

impl Tally {
    /// Partners held before [`Tally::add`] asks for a hand-over.
    pub const MAX_PARTNERS: usize = 8;

    /// One stanza forwarded from or to `partner`. True when the counts should be handed over now
    /// (the tally holds [`Tally::MAX_PARTNERS`] partners).
    pub fn add(&mut self, partner: &Domain) -> bool {
        match self.counts.iter_mut().find(|(p, _)| p == partner) {
            Some((_, n)) => *n = n.saturating_add(1),
            None => self.counts.push((partner.clone(), 1)),
        }
        self.counts.len() >= Self::MAX_PARTNERS
    }

    /// Whether nothing was counted since the last hand-over.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The counts per partner, in the order first counted; the tally is empty after.
    pub fn drain(&mut self) -> impl Iterator<Item = (Domain, u32)> + '_ {
        self.counts.drain(..)
    }
}

/// A partner's traffic as shown (the `Traffic` object of the admin API's partner health): every
/// series has [`MINUTES`] values, oldest first, at the minutes of `Minutes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TrafficView {
    /// The start of each minute, seconds since 1970; the last is the current minute.
    pub minutes: Vec<u64>,
    /// Stanzas forwarded from the partner, per minute.
    pub inbound: Vec<u32>,
    /// Stanzas forwarded to the partner, per minute.
    pub outbound: Vec<u32>,
    /// Refusals per minute by reason (only the reasons with a refusal in the last hour).
    pub refusals: BTreeMap<&'static str, Vec<u32>>,
}

impl TrafficView {
    /// No traffic in the hour up to `now`.
    pub fn quiet(now: u64) -> TrafficView {
        TrafficView {
            minutes: Self::minutes(now),
            inbound: vec![0; MINUTES],
            outbound: vec![0; MINUTES],
            refusals: BTreeMap::new(),
        }
    }

    fn minutes(now: u64) -> Vec<u64> {
        let current = now / 60;
        (0..MINUTES as u64)
            .map(|i| {
                current
                    .saturating_sub(MINUTES as u64 - 1 - i)
                    .saturating_mul(60)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start of a minute.
    const T0: u64 = 1_800_000_000 / 60 * 60;

    #[test]
    fn a_ring_reads_oldest_first_with_quiet_minutes_as_zeros() {
        let mut r = Ring::default();
        assert_eq!(r.series(T0), vec![0; MINUTES]);
        assert!(r.is_quiet(T0));
        r.add(T0 - 59 * 60, 1); // the oldest minute shown
        r.add(T0 - 30 * 60 + 59, 2); // the last second of a minute
        r.add(T0, 3);
        r.add(T0 + 59, 4); // still this minute
        let s = r.series(T0 + 10);
        assert_eq!(s.len(), MINUTES);
        assert_eq!((s[0], s[29], s[59]), (1, 2, 7));
        assert_eq!(s.iter().sum::<u32>(), 10, "{s:?}");
        assert!(!r.is_quiet(T0));
    }

    #[test]
    fn minutes_leave_the_hour_and_buckets_are_reused_not_added_to() {
        let mut r = Ring::default();
        r.add(T0, 5);
        // A minute later the count moved one to the left.
        let s = r.series(T0 + 60);
        assert_eq!((s[58], s[59]), (5, 0));
        // An hour later it is gone, though its bucket still holds it.
        assert_eq!(r.series(T0 + 60 * 60), vec![0; MINUTES]);
        assert!(r.is_quiet(T0 + 60 * 60));
        // The same bucket, an hour on: started over.
        r.add(T0 + 60 * 60, 1);
        assert_eq!(r.series(T0 + 60 * 60)[59], 1);
        assert_eq!(r.series(T0 + 60 * 60).iter().sum::<u32>(), 1);
        // Long gaps (a day, a year) read as zeros, then counting resumes.
        let later = T0 + 365 * 24 * 3600;
        assert_eq!(r.series(later), vec![0; MINUTES]);
        r.add(later, 2);
        assert_eq!(r.series(later)[59], 2);
        // A clock set back: minutes "from the future" are not shown.
        assert_eq!(r.series(T0).iter().sum::<u32>(), 0);
    }

    #[test]
    fn counts_saturate_and_early_times_do_not_underflow() {
        let mut r = Ring::default();
        r.add(T0, u32::MAX);
        r.add(T0, 7);
        assert_eq!(r.series(T0)[59], u32::MAX);
        let mut early = Ring::default();
        early.add(0, 1);
        let s = early.series(30);
        assert_eq!((s.len(), s[59], s.iter().sum::<u32>()), (MINUTES, 1, 1));
        let m = TrafficView::quiet(30).minutes;
        assert_eq!((m.len(), m[0], m[59]), (MINUTES, 0, 0));
    }

    #[test]
    fn a_partner_has_both_directions_and_refusals_by_reason() {
        let mut t = PartnerTraffic::default();
        assert!(t.is_quiet(T0));
        t.relayed(Direction::Inbound, T0 - 120, 3);
        t.relayed(Direction::Outbound, T0, 2);
        t.refused("not_authorised", T0);
        t.refused("not_authorised", T0);
        t.refused("user_not_enabled", T0 - 3600); // left the hour: not shown
        let v = t.view(T0);
        assert_eq!(v.minutes.len(), MINUTES);
        assert_eq!(v.minutes[59], T0);
        assert_eq!(v.minutes[0], T0 - 59 * 60);
        assert_eq!(v.inbound[57], 3);
        assert_eq!(v.outbound[59], 2);
        assert_eq!(
            v.refusals.keys().copied().collect::<Vec<_>>(),
            ["not_authorised"]
        );
        assert_eq!(v.refusals["not_authorised"][59], 2);
        assert!(!t.is_quiet(T0));
        assert!(t.is_quiet(T0 + 3600));
        let json = serde_json::to_value(&v).unwrap();
        for key in ["Minutes", "Inbound", "Outbound"] {
            assert_eq!(json[key].as_array().unwrap().len(), MINUTES, "{key}");
        }
        assert_eq!(json["Refusals"]["not_authorised"][59], 2);
    }

    #[test]
    fn a_tally_counts_per_partner_until_it_is_drained() {
        let d = |s: &str| Domain::parse(s).unwrap();
        let mut t = Tally::default();
        assert!(t.is_empty());
        for p in ["a.example", "b.example", "a.example", "a.example"] {
            assert!(!t.add(&d(p)));
        }
        assert!(!t.is_empty());
        assert_eq!(
            t.drain().collect::<Vec<_>>(),
            [(d("a.example"), 3), (d("b.example"), 1)]
        );
        assert!(t.is_empty());
        // Drained: counting starts over.
        t.add(&d("b.example"));
        assert_eq!(t.drain().collect::<Vec<_>>(), [(d("b.example"), 1)]);
        // Full: the partner that fills it asks for the hand-over, and is counted.
        let many: Vec<Domain> = (0..Tally::MAX_PARTNERS)
            .map(|i| d(&format!("p{i}.example")))
            .collect();
        let asked: Vec<bool> = many.iter().map(|p| t.add(p)).collect();
        assert_eq!(asked.iter().filter(|a| **a).count(), 1);
        assert_eq!(asked.last(), Some(&true));
        assert_eq!(
            t.drain().map(|(_, n)| n).sum::<u32>(),
            Tally::MAX_PARTNERS as u32
        );
    }

    #[test]
    fn reasons_are_bounded() {
        // Labels are &'static str: make a few hundred distinct ones.
        let labels: Vec<&'static str> = (0..200)
            .map(|i| &*Box::leak(format!("reason_{i}").into_boxed_str()))
            .collect();
        let mut t = PartnerTraffic::default();
        for l in &labels {
            t.refused(l, T0);
        }
        let v = t.view(T0);
        assert_eq!(v.refusals.len(), MAX_REASONS);
        assert_eq!(v.refusals[OTHER_REASON][59], 200 - (MAX_REASONS as u32 - 1));
        // A reason already kept still counts on its own.
        t.refused(labels[0], T0);
        assert_eq!(t.view(T0).refusals[labels[0]][59], 2);
    }
}
