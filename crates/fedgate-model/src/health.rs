//! Partner health (issue 14, item 3): per partner and direction, the last stream that came up
//! (time, method, TLS version), the last that failed (time, step, reason), how many came up and
//! failed in the last hour and day, and the partner certificate's not-after last seen. Plain
//! data with pure updates over the time given; the gateway records into it.

use serde::{Deserialize, Serialize};

use crate::negotiation::AuthMethod;
use crate::traffic::TrafficView;

/// Which way the stream went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }

    pub fn parse(text: &str) -> Option<Direction> {
        match text {
            "inbound" => Some(Direction::Inbound),
            "outbound" => Some(Direction::Outbound),
            _ => None,
        }
    }
}

/// The last stream that came up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Success {
    /// Seconds since 1970.
    pub at: u64,
    pub method: AuthMethod,
    pub tls_version: Option<String>,
}

/// The last stream that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Failure {
    /// Seconds since 1970.
    pub at: u64,
    /// Where it failed (e.g. `outbound setup`, `authentication`).
    pub step: String,
    pub reason: String,
}

/// Event counts over a sliding hour (per minute) and day (per hour).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// `(minute since 1970, count)` by minute % 60.
    minutes: Vec<(u64, u32)>,
    /// `(hour since 1970, count)` by hour % 24.
    hours: Vec<(u64, u32)>,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            minutes: vec![(u64::MAX, 0); 60],
            hours: vec![(u64::MAX, 0); 24],
        }
    }
}

impl Window {
    /// One event at `now` (seconds since 1970).
    pub fn add(&mut self, now: u64) {
        // A stored window of another shape (a damaged row) starts over.
        if self.minutes.len() != 60 || self.hours.len() != 24 {
            *self = Window::default();
        }
        let (minute, hour) = (now / 60, now / 3600);
        if let Some(m) = self.minutes.get_mut((minute % 60) as usize) {
            if m.0 != minute {
                *m = (minute, 0);
            }
            m.1 = m.1.saturating_add(1);
        }
        if let Some(h) = self.hours.get_mut((hour % 24) as usize) {
            if h.0 != hour {
                *h = (hour, 0);
            }
            h.1 = h.1.saturating_add(1);
        }
    }

    /// Events in the 60 minutes up to `now` (this minute included).
    pub fn last_hour(&self, now: u64) -> u64 {
        let minute = now / 60;
        self.minutes
            .iter()
            .filter(|(m, _)| *m != u64::MAX && *m <= minute && minute - *m < 60)
            .map(|(_, n)| u64::from(*n))
            .sum()
    }

    /// Events in the 24 hours up to `now` (this hour included).
    pub fn last_day(&self, now: u64) -> u64 {
        let hour = now / 3600;
        self.hours
            .iter()
            .filter(|(h, _)| *h != u64::MAX && *h <= hour && hour - *h < 24)
            .map(|(_, n)| u64::from(*n))
            .sum()
    }
}

/// The health of one partner in one direction (stored as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PartnerHealth {
    pub last_success: Option<Success>,
    pub last_failure: Option<Failure>,
    pub streams: Window,
    pub failures: Window,
    /// Refusals on the partner's authenticated streams (stanzas or streams refused by policy).
    #[serde(default)]
    pub refusals: Window,
    /// The partner certificate's not-after (seconds since 1970) last seen on this direction.
    pub certificate_not_after: Option<i64>,
}

impl PartnerHealth {
    /// A stream came up.
    pub fn succeeded(&mut self, now: u64, method: AuthMethod, tls_version: Option<&str>) {
        self.last_success = Some(Success {
            at: now,
            method,
            tls_version: tls_version.map(str::to_owned),
        });
        self.streams.add(now);
    }

    /// A stream failed at `step` for `reason`.
    pub fn failed(&mut self, now: u64, step: &str, reason: &str) {
        self.last_failure = Some(Failure {
            at: now,
            step: step.to_owned(),
            reason: reason.to_owned(),
        });
        self.failures.add(now);
    }

    /// Something on an authenticated stream of the partner was refused.
    pub fn refused(&mut self, now: u64) {
        self.refusals.add(now);
    }

    /// What `fedgate status` and the API show, at `now`, with the partner's `traffic` (see
    /// [`crate::traffic`]; the same on both directions' rows).
    pub fn view(
        &self,
        partner: &str,
        direction: Direction,
        now: u64,
        traffic: TrafficView,
    ) -> HealthView {
        HealthView {
            partner: partner.to_owned(),
            direction,
            last_success: self.last_success.clone(),
            last_failure: self.last_failure.clone(),
            streams_last_hour: self.streams.last_hour(now),
            streams_last_day: self.streams.last_day(now),
            failures_last_hour: self.failures.last_hour(now),
            failures_last_day: self.failures.last_day(now),
            refusals_last_hour: self.refusals.last_hour(now),
            refusals_last_day: self.refusals.last_day(now),
            certificate_not_after: self.certificate_not_after,
            traffic,
        }
    }
}

/// One row of partner health as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthView {
    pub partner: String,
    pub direction: Direction,
    pub last_success: Option<Success>,
    pub last_failure: Option<Failure>,
    pub streams_last_hour: u64,
    pub streams_last_day: u64,
    pub failures_last_hour: u64,
    pub failures_last_day: u64,
    pub refusals_last_hour: u64,
    pub refusals_last_day: u64,
    pub certificate_not_after: Option<i64>,
    /// The partner's stanzas each way and refusals by reason per minute over the last hour (in
    /// memory only: a restart starts them over).
    pub traffic: TrafficView,
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000;

    #[test]
    fn windows_count_the_last_hour_and_day() {
        let mut w = Window::default();
        assert_eq!((w.last_hour(T0), w.last_day(T0)), (0, 0));
        w.add(T0 - 2 * 3600); // two hours ago: in the day, not the hour
        w.add(T0 - 59 * 60); // 59 minutes ago
        w.add(T0);
        w.add(T0);
        assert_eq!(w.last_hour(T0), 3);
        assert_eq!(w.last_day(T0), 4);
        // An hour later the three recent ones left the hour; a day later all are gone.
        assert_eq!(w.last_hour(T0 + 3600), 0);
        assert_eq!(w.last_day(T0 + 3600), 4);
        assert_eq!(w.last_day(T0 + 25 * 3600), 0);
        // A slot is reused, not added to, when its minute comes round again.
        w.add(T0 + 3600);
        assert_eq!(w.last_hour(T0 + 3600), 1);
    }

    #[test]
    fn success_and_failure_are_kept_with_their_details() {
        let mut h = PartnerHealth::default();
        h.succeeded(T0, AuthMethod::SaslExternal, Some("TLSv1.3"));
        h.failed(T0 + 5, "outbound setup", "connection refused");
        h.succeeded(T0 + 10, AuthMethod::TlsDialback, Some("TLSv1.2"));
        h.refused(T0 + 10);
        let v = h.view(
            "partner.example",
            Direction::Outbound,
            T0 + 10,
            TrafficView::quiet(T0 + 10),
        );
        assert_eq!(
            v.last_success,
            Some(Success {
                at: T0 + 10,
                method: AuthMethod::TlsDialback,
                tls_version: Some("TLSv1.2".into())
            })
        );
        assert_eq!(
            v.last_failure.as_ref().unwrap().reason,
            "connection refused"
        );
        assert_eq!((v.streams_last_hour, v.failures_last_hour), (2, 1));
        assert_eq!((v.refusals_last_hour, v.refusals_last_day), (1, 1));
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["Direction"], "outbound");
        assert_eq!(json["LastSuccess"]["Method"], "TlsDialback");
        assert_eq!(json["LastFailure"]["Step"], "outbound setup");
        assert_eq!(json["Traffic"]["Inbound"].as_array().unwrap().len(), 60);
        // Stored and read back: the same.
        let stored = serde_json::to_string(&h).unwrap();
        let back: PartnerHealth = serde_json::from_str(&stored).unwrap();
        assert_eq!(back, h);
    }
}
