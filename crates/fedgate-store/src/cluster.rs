//! A pool of gateway nodes sharing one store: node heartbeats and stream leases.
//!
//! Every node writes a heartbeat ([`Store::heartbeat`](crate::Store::heartbeat)) every
//! [`HEARTBEAT_INTERVAL`]; its row in `nodes` carries the database's time of the last one, so the
//! nodes' own clocks never matter. A node is *alive* while its last heartbeat is at most the lease
//! time ([`LEASE_TTL`]) old, by the database's clock ([`is_alive`]).
//!
//! A node holds one *stream lease* per authenticated partner stream
//! ([`Store::acquire_stream_lease`](crate::Store::acquire_stream_lease)); the cluster-wide
//! connection limits count the leases of alive nodes only. Admission is serialised across the pool
//! (PostgreSQL: an advisory lock of its own, [`LEASE_LOCK`], not the admin write lock; SQLite: the
//! write transaction), so two nodes can never both take the last free slot. A node that dies stops
//! counting once its heartbeat is older than the lease time; its leases are deleted later, by any
//! node's heartbeat, once it has been silent for [`DEAD_NODE_PURGE_FACTOR`] lease times (or at
//! once by [`Store::forget_node`](crate::Store::forget_node)).
//!
//! Heartbeats and leases are operational state, not admin changes: they write no audit entry, do
//! not move [`Store::revision`](crate::Store::revision) and announce nothing, so gateways do not
//! reload their snapshot because of them.

pub(crate) mod pg;
pub(crate) mod sqlite;

use std::time::Duration;

use fedgate_model::Domain;
use fedgate_model::health::Direction;
use serde::Serialize;

/// How often a node writes its heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);

/// How long after its last heartbeat a node still counts as alive, and its stream leases with it
/// (five missed heartbeats). After that the pool admits streams as if the node's streams were
/// closed.
pub const LEASE_TTL: Duration = Duration::from_secs(10);

/// A heartbeat deletes the leases of nodes silent for more than this many lease times (with
/// [`LEASE_TTL`]: 100 s). They stopped counting long before; this only keeps the table small.
pub const DEAD_NODE_PURGE_FACTOR: u32 = 10;

/// At most this many dead nodes' leases are deleted per heartbeat, so that housekeeping never
/// makes one heartbeat slow; the next heartbeats take the rest.
pub const PURGE_BATCH: i64 = 1000;

/// The PostgreSQL advisory lock that serialises stream-lease admission across the pool: "fglease"
/// in ASCII. Distinct from the admin write lock, so admissions and admin writes never wait for
/// each other.
pub const LEASE_LOCK: i64 = 0x0066_676c_6561_7365;

/// What a node reports in each heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHeartbeat {
    /// The node's name, unique in the pool (the key of its row and of its leases).
    pub node: String,
    /// True on the node's first heartbeat after it started: its `started_at` becomes now.
    pub starting: bool,
    /// The fedgate version the node runs.
    pub version: String,
    /// Where the node can be reached (admin or listener address), if it says.
    pub address: Option<String>,
    /// Its inbound partner streams now.
    pub inbound_streams: u32,
    /// Its outbound partner streams now.
    pub outbound_streams: u32,
}

/// A node as listed by [`Store::nodes`](crate::Store::nodes).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeStatus {
    pub node: String,
    /// UTC, RFC 3339 (database clock): the heartbeat that said `starting`, or the first one.
    pub started_at: String,
    /// UTC, RFC 3339 (database clock).
    pub last_heartbeat: String,
    /// How long ago the last heartbeat was, by the database's clock.
    pub seconds_since_heartbeat: f64,
    /// [`is_alive`] for the lease time the list was asked with.
    pub alive: bool,
    pub version: String,
    pub address: Option<String>,
    pub inbound_streams: u32,
    pub outbound_streams: u32,
    /// How many stream leases the node holds (counted only while it is alive).
    pub leases: u32,
}

/// One authenticated partner stream of one node, as counted against the connection limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamLease {
    /// The node that holds the stream (its heartbeat name).
    pub node: String,
    /// The stream's id on that node (unique per node).
    pub stream: u64,
    /// The partner's Identity (what the partner limit counts by).
    pub partner: Domain,
    pub direction: Direction,
}

/// Whether a node whose last heartbeat was `seconds_since_heartbeat` ago (database clock) is
/// alive: iff that is at most `lease_ttl`. Both backends' SQL applies the same rule.
pub fn is_alive(seconds_since_heartbeat: f64, lease_ttl: Duration) -> bool {
    seconds_since_heartbeat <= lease_ttl.as_secs_f64()
}

/// How long a node must have been silent before a heartbeat deletes its leases:
/// [`DEAD_NODE_PURGE_FACTOR`] × `lease_ttl`.
pub fn purge_after(lease_ttl: Duration) -> Duration {
    lease_ttl.saturating_mul(DEAD_NODE_PURGE_FACTOR)
}

/// A database count as the model's `u32` (saturating; counts are never negative).
pub(crate) fn count(value: i64) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}

/// A stream id as stored (a 64-bit signed column holding the same bits).
pub(crate) fn stored_stream_id(stream: u64) -> i64 {
    i64::from_ne_bytes(stream.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alive_iff_the_heartbeat_is_at_most_the_lease_time_old() {
        let ttl = Duration::from_secs(10);
        assert!(is_alive(0.0, ttl));
        assert!(is_alive(9.999, ttl));
        assert!(is_alive(10.0, ttl));
        assert!(!is_alive(10.001, ttl));
        assert!(!is_alive(3600.0, ttl));
        // A heartbeat "in the future" (same database clock, so only by rounding) is alive.
        assert!(is_alive(-0.001, ttl));
        assert!(is_alive(0.5, Duration::from_millis(500)));
        assert!(!is_alive(0.501, Duration::from_millis(500)));
    }

    #[test]
    fn the_defaults_leave_room_for_missed_heartbeats() {
        assert!(LEASE_TTL >= HEARTBEAT_INTERVAL * 3);
        assert_eq!(purge_after(LEASE_TTL), Duration::from_secs(100));
        assert_eq!(purge_after(Duration::MAX), Duration::MAX);
    }

    #[test]
    fn counts_and_stream_ids_convert_without_loss_or_panic() {
        assert_eq!(count(0), 0);
        assert_eq!(count(7), 7);
        assert_eq!(count(-1), 0);
        assert_eq!(count(i64::MAX), u32::MAX);
        assert_eq!(stored_stream_id(5), 5);
        assert_eq!(stored_stream_id(u64::MAX), -1);
        assert_eq!(stored_stream_id(1 << 63), i64::MIN);
    }
}
