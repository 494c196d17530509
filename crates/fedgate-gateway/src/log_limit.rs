//! What the gateway writes to its log about strangers: wire values escaped so that a peer can
//! never forge a log line ([`Wire`]), and refusal lines rate-limited per reason — before
//! authentication by source address, address block and for all strangers together, after it by
//! the authenticated peer — so that a flood of bad connections costs a few lines, with the count
//! of what was left out ([`RefusalLog`]). Metrics still count every refusal.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fedgate_model::enforce::AddressBlock;

/// Displays a value that came from the network with control characters, quotes and
/// backslashes escaped (Rust's `escape_debug`) and at most [`Wire::MAX_CHARS`] characters, so a
/// `&#10;` in a stream header or a megabyte of text never reaches the log as such.
pub struct Wire<'a>(pub &'a str);

impl Wire<'_> {
    /// Longer values are cut and marked with `…`.
    pub const MAX_CHARS: usize = 256;
}

impl fmt::Display for Wire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(Self::MAX_CHARS) {
            if c.is_control() || c == '"' || c == '\\' || !c.is_ascii() && c.is_whitespace() {
                write!(f, "{}", c.escape_debug())?;
            } else {
                f.write_fmt(format_args!("{c}"))?;
            }
        }
        if chars.next().is_some() {
            f.write_str("…")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Wire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Who a refusal is charged to, for the rate limit of its log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Culprit<'a> {
    /// A connection that has not authenticated: its source address. Whatever domain it claims is
    /// not an identity (a stranger can claim a new one on every connection), so it is named in the
    /// line but never keys the limit.
    Source(IpAddr),
    /// An authenticated peer (the domain its stream authenticated).
    Peer(&'a str),
}

/// What one budget of log lines is kept for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Address(IpAddr),
    Block(AddressBlock),
    /// Every unauthenticated source together.
    Strangers,
    Peer(String),
}

impl Key {
    /// Lines per [`RefusalLog::WINDOW`] and reason.
    fn burst(&self) -> u32 {
        match self {
            Key::Address(_) | Key::Peer(_) => RefusalLog::BURST,
            Key::Block(_) => RefusalLog::BLOCK_BURST,
            Key::Strangers => RefusalLog::STRANGERS_BURST,
        }
    }
}

/// Refusal lines rate-limited per reason: an authenticated peer writes at most
/// [`RefusalLog::BURST`] lines per [`RefusalLog::WINDOW`]; before authentication a line must fit
/// the budget of its source address ([`RefusalLog::BURST`]), of the address's block (IPv4 /24,
/// IPv6 /64: [`RefusalLog::BLOCK_BURST`]) and of all unauthenticated sources together
/// ([`RefusalLog::STRANGERS_BURST`]). The next line written for a source or peer says how many of
/// its lines were left out before it; every line, written or left out, is counted
/// ([`RefusalLog::counts`]). At most [`RefusalLog::KEYS`] budgets are kept: when that many are
/// live, a source without one is left out (counted) until windows expire.
#[derive(Debug, Default)]
pub struct RefusalLog {
    windows: Mutex<HashMap<(Key, &'static str), Window>>,
    written: AtomicU64,
    suppressed: AtomicU64,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    logged: u32,
    /// Lines of this key left out since its last written line.
    suppressed: u64,
}

impl Window {
    fn new(now: Instant) -> Window {
        Window {
            start: now,
            logged: 0,
            suppressed: 0,
        }
    }

    /// Whether one more line fits, after starting a new window if this one is over.
    fn has_room(&mut self, burst: u32, now: Instant) -> bool {
        if now.duration_since(self.start) >= RefusalLog::WINDOW {
            self.start = now;
            self.logged = 0;
        }
        self.logged < burst
    }
}

/// Whether to write a refusal line now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogDecision {
    /// Write it; `suppressed` lines of this source or peer were left out before it.
    Log { suppressed: u64 },
    /// Leave it out (counted).
    Suppress,
}

impl RefusalLog {
    pub const WINDOW: Duration = Duration::from_secs(60);
    /// Lines per window and reason for one source address or one authenticated peer.
    pub const BURST: u32 = 5;
    /// Lines per window and reason for one address block before authentication.
    pub const BLOCK_BURST: u32 = 20;
    /// Lines per window and reason for all unauthenticated sources together.
    pub const STRANGERS_BURST: u32 = 100;
    pub const KEYS: usize = 4096;

    /// Decide for one refusal charged to `culprit` for `reason`.
    pub fn decide(&self, culprit: Culprit<'_>, reason: &'static str) -> LogDecision {
        self.decide_at(culprit, reason, Instant::now())
    }

    /// Refusal lines (written, left out) since start.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.written.load(Ordering::Relaxed),
            self.suppressed.load(Ordering::Relaxed),
        )
    }

    fn decide_at(&self, culprit: Culprit<'_>, reason: &'static str, now: Instant) -> LogDecision {
        let keys = match culprit {
            Culprit::Source(ip) => vec![
                Key::Address(ip),
                Key::Block(AddressBlock::of(ip)),
                Key::Strangers,
            ],
            Culprit::Peer(domain) => vec![Key::Peer(
                domain.chars().take(Wire::MAX_CHARS).collect::<String>(),
            )],
        };
        let decision = self.decide_keys(keys, reason, now);
        let counter = match decision {
            LogDecision::Log { .. } => &self.written,
            LogDecision::Suppress => &self.suppressed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        decision
    }

    /// A line is written only if every key has room; the first key (the most specific) carries
    /// the count of what was left out.
    fn decide_keys(&self, keys: Vec<Key>, reason: &'static str, now: Instant) -> LogDecision {
        let mut map = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let missing = keys
            .iter()
            .filter(|k| !map.contains_key(&((*k).clone(), reason)))
            .count();
        if missing > 0 && map.len() + missing > Self::KEYS {
            map.retain(|_, w| now.duration_since(w.start) < Self::WINDOW);
            if map.len() + missing > Self::KEYS {
                return LogDecision::Suppress;
            }
        }
        let mut room = true;
        for k in &keys {
            let burst = k.burst();
            let w = map
                .entry((k.clone(), reason))
                .or_insert_with(|| Window::new(now));
            room &= w.has_room(burst, now);
        }
        let first = (keys[0].clone(), reason);
        if !room {
            if let Some(w) = map.get_mut(&first) {
                w.suppressed += 1;
            }
            return LogDecision::Suppress;
        }
        for k in keys {
            if let Some(w) = map.get_mut(&(k, reason)) {
                w.logged += 1;
            }
        }
        let suppressed = map
            .get_mut(&first)
            .map_or(0, |w| std::mem::take(&mut w.suppressed));
        LogDecision::Log { suppressed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_values_cannot_break_a_line() {
        let forged = "evil.example\n2026-01-01T00:00:00Z  INFO fedgate: admin logged in\r\"\\";
        let shown = Wire(forged).to_string();
        assert!(!shown.contains('\n') && !shown.contains('\r'), "{shown}");
        assert!(shown.contains("\\n") && shown.contains("\\\""), "{shown}");
        assert_eq!(Wire("ok.example").to_string(), "ok.example");
        assert_eq!(Wire("ünïcode").to_string(), "ünïcode");
        assert!(!Wire("a\u{2028}b").to_string().contains('\u{2028}'));
        let long = "x".repeat(10_000);
        assert_eq!(Wire(&long).to_string().chars().count(), Wire::MAX_CHARS + 1);
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refusals_are_logged_in_bursts_with_the_count_left_out() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        let peer = Culprit::Peer("partner.example");
        for _ in 0..RefusalLog::BURST {
            assert_eq!(
                log.decide_at(peer, "not_listed", t0),
                LogDecision::Log { suppressed: 0 }
            );
        }
        for _ in 0..100 {
            assert_eq!(log.decide_at(peer, "not_listed", t0), LogDecision::Suppress);
        }
        // Another reason or peer has its own budget.
        assert_eq!(
            log.decide_at(peer, "bad_input", t0),
            LogDecision::Log { suppressed: 0 }
        );
        assert_eq!(
            log.decide_at(Culprit::Peer("other.example"), "not_listed", t0),
            LogDecision::Log { suppressed: 0 }
        );
        assert_eq!(
            log.decide_at(peer, "not_listed", t0 + RefusalLog::WINDOW),
            LogDecision::Log { suppressed: 100 }
        );
        assert_eq!(log.counts(), (RefusalLog::BURST as u64 + 3, 100));
    }

    #[test]
    fn before_authentication_the_source_address_is_charged_not_the_claimed_domain() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        let stranger = Culprit::Source(ip("192.0.2.1"));
        let written = (0..200)
            .filter(|_| {
                matches!(
                    log.decide_at(stranger, "not_listed", t0),
                    LogDecision::Log { .. }
                )
            })
            .count();
        assert_eq!(written, RefusalLog::BURST as usize);
        assert_eq!(log.counts(), (5, 195));
        // The next window's first line says how many were left out.
        assert_eq!(
            log.decide_at(stranger, "not_listed", t0 + RefusalLog::WINDOW),
            LogDecision::Log { suppressed: 195 }
        );
    }

    #[test]
    fn an_address_block_and_all_strangers_have_a_budget_of_their_own() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        // 250 addresses of one /24: the block's budget, not 5 per address.
        let written = (0..250u32)
            .filter(|i| {
                let a = Culprit::Source(ip(&format!("198.51.100.{}", i % 250)));
                matches!(log.decide_at(a, "not_listed", t0), LogDecision::Log { .. })
            })
            .count();
        assert_eq!(written, RefusalLog::BLOCK_BURST as usize);
        // IPv6: one /64 is one block.
        let log = RefusalLog::default();
        let written = (0..100u32)
            .filter(|i| {
                let a = Culprit::Source(ip(&format!("2001:db8::{i:x}")));
                matches!(log.decide_at(a, "not_listed", t0), LogDecision::Log { .. })
            })
            .count();
        assert_eq!(written, RefusalLog::BLOCK_BURST as usize);
        // Many blocks: all strangers together.
        let log = RefusalLog::default();
        let written = (0..2000u32)
            .filter(|i| {
                let a = Culprit::Source(ip(&format!("10.{}.{}.1", i / 256, i % 256)));
                matches!(log.decide_at(a, "not_listed", t0), LogDecision::Log { .. })
            })
            .count();
        assert_eq!(written, RefusalLog::STRANGERS_BURST as usize);
        // An authenticated partner is not affected by strangers.
        assert_eq!(
            log.decide_at(Culprit::Peer("partner.example"), "not_listed", t0),
            LogDecision::Log { suppressed: 0 }
        );
    }

    #[test]
    fn the_key_map_is_bounded() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        for i in 0..RefusalLog::KEYS * 3 {
            log.decide_at(Culprit::Peer(&format!("peer{i}")), "not_listed", t0);
        }
        assert!(log.windows.lock().unwrap().len() <= RefusalLog::KEYS);
        // Once the windows are over, new keys are admitted again.
        assert_eq!(
            log.decide_at(
                Culprit::Peer("late.example"),
                "not_listed",
                t0 + RefusalLog::WINDOW
            ),
            LogDecision::Log { suppressed: 0 }
        );
        assert!(log.windows.lock().unwrap().len() <= RefusalLog::KEYS);
    }
}
