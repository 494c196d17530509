//! What the gateway writes to its log about strangers: wire values escaped so that a peer can
//! never forge a log line ([`Wire`]), and refusal lines rate-limited per (peer, reason) so that a
//! flood of bad connections costs a few lines, with the count of what was left out
//! ([`RefusalLog`]). Metrics still count every refusal.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// Per (peer, reason): at most [`RefusalLog::BURST`] lines per [`RefusalLog::WINDOW`]; the first
/// line of the next window says how many were suppressed. At most [`RefusalLog::KEYS`] keys are
/// tracked; past that, the map starts over (a flood from many peers then logs a burst again,
/// which is bounded by the window too).
#[derive(Debug, Default)]
pub struct RefusalLog {
    windows: Mutex<HashMap<(String, &'static str), Window>>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    logged: u32,
    suppressed: u64,
}

/// Whether to write a refusal line now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogDecision {
    /// Write it; `suppressed` lines of this key were left out before it.
    Log { suppressed: u64 },
    /// Leave it out (counted).
    Suppress,
}

impl RefusalLog {
    pub const WINDOW: Duration = Duration::from_secs(60);
    pub const BURST: u32 = 5;
    pub const KEYS: usize = 4096;

    /// Decide for one refusal of `peer` (an address or a domain) for `reason`.
    pub fn decide(&self, peer: &str, reason: &'static str) -> LogDecision {
        self.decide_at(peer, reason, Instant::now())
    }

    fn decide_at(&self, peer: &str, reason: &'static str, now: Instant) -> LogDecision {
        let mut map = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let key = (
            peer.chars().take(Wire::MAX_CHARS).collect::<String>(),
            reason,
        );
        if !map.contains_key(&key) && map.len() >= Self::KEYS {
            map.clear();
        }
        let w = map.entry(key).or_insert(Window {
            start: now,
            logged: 0,
            suppressed: 0,
        });
        if now.duration_since(w.start) >= Self::WINDOW {
            let suppressed = std::mem::take(&mut w.suppressed);
            w.start = now;
            w.logged = 1;
            return LogDecision::Log { suppressed };
        }
        if w.logged < Self::BURST {
            w.logged += 1;
            LogDecision::Log { suppressed: 0 }
        } else {
            w.suppressed += 1;
            LogDecision::Suppress
        }
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

    #[test]
    fn refusals_are_logged_in_bursts_with_the_count_left_out() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        for _ in 0..RefusalLog::BURST {
            assert_eq!(
                log.decide_at("192.0.2.1", "not_listed", t0),
                LogDecision::Log { suppressed: 0 }
            );
        }
        for _ in 0..100 {
            assert_eq!(
                log.decide_at("192.0.2.1", "not_listed", t0),
                LogDecision::Suppress
            );
        }
        // Another reason or peer has its own budget.
        assert_eq!(
            log.decide_at("192.0.2.1", "bad_input", t0),
            LogDecision::Log { suppressed: 0 }
        );
        assert_eq!(
            log.decide_at("192.0.2.2", "not_listed", t0),
            LogDecision::Log { suppressed: 0 }
        );
        assert_eq!(
            log.decide_at("192.0.2.1", "not_listed", t0 + RefusalLog::WINDOW),
            LogDecision::Log { suppressed: 100 }
        );
    }

    #[test]
    fn the_key_map_is_bounded() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        for i in 0..RefusalLog::KEYS * 3 {
            log.decide_at(&format!("peer{i}"), "not_listed", t0);
        }
        assert!(log.windows.lock().unwrap().len() <= RefusalLog::KEYS);
    }
}
