//! Heartbeats and stream leases on PostgreSQL (the SQL of [`crate::cluster`]). Each function runs
//! inside a transaction of the caller's that is neither announced nor under the admin write lock;
//! lease admission takes [`LEASE_LOCK`](super::LEASE_LOCK) itself. Times and ages are the server's
//! (`clock_timestamp()`, so a wait for the lock does not make heartbeats look younger).

use std::time::Duration;

use fedgate_model::enforce::{ConnectionCounts, Refusal};
use postgres::Transaction;

use super::{
    LEASE_LOCK, NodeHeartbeat, NodeStatus, PURGE_BATCH, StreamLease, count, is_alive, purge_after,
    stored_stream_id,
};
use crate::StoreError;
use crate::pg::db;

/// Seconds since the heartbeat of node row `n`, by the server's clock.
const SECONDS_SINCE_HEARTBEAT: &str =
    "extract(epoch FROM clock_timestamp() - n.last_heartbeat)::FLOAT8";

/// How long an admission waits for another node's admission before it fails (they take
/// milliseconds; a longer wait means a node stuck inside one).
const LEASE_LOCK_TIMEOUT: &str = "5s";

/// A time column as UTC RFC 3339 text, as the other tables keep times.
fn utc_text(column: &str) -> String {
    format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')")
}

pub(crate) fn heartbeat(
    tx: &mut Transaction<'_>,
    path: &str,
    beat: &NodeHeartbeat,
    lease_ttl: Duration,
) -> Result<(), StoreError> {
    let e = db(path);
    tx.execute(
        "INSERT INTO nodes (name, started_at, last_heartbeat, version, address, inbound_streams, \
         outbound_streams) VALUES ($1, clock_timestamp(), clock_timestamp(), $2, $3, $4, $5) \
         ON CONFLICT (name) DO UPDATE SET last_heartbeat = excluded.last_heartbeat, \
         started_at = CASE WHEN $6 THEN excluded.started_at ELSE nodes.started_at END, \
         version = excluded.version, address = excluded.address, \
         inbound_streams = excluded.inbound_streams, outbound_streams = excluded.outbound_streams",
        &[
            &beat.node,
            &beat.version,
            &beat.address,
            &i64::from(beat.inbound_streams),
            &i64::from(beat.outbound_streams),
            &beat.starting,
        ],
    )
    .map_err(&e)?;
    tx.execute(
        &format!(
            "DELETE FROM stream_leases WHERE (node, stream) IN (SELECT l.node, l.stream \
             FROM stream_leases l JOIN nodes n ON n.name = l.node \
             WHERE {SECONDS_SINCE_HEARTBEAT} > $1 LIMIT $2)"
        ),
        &[&purge_after(lease_ttl).as_secs_f64(), &PURGE_BATCH],
    )
    .map_err(&e)?;
    Ok(())
}

pub(crate) fn nodes(
    tx: &mut Transaction<'_>,
    path: &str,
    lease_ttl: Duration,
) -> Result<Vec<NodeStatus>, StoreError> {
    let rows = tx
        .query(
            &format!(
                "SELECT n.name, {}, {}, {SECONDS_SINCE_HEARTBEAT}, n.version, n.address, \
                 n.inbound_streams, n.outbound_streams, \
                 (SELECT count(*) FROM stream_leases l WHERE l.node = n.name) \
                 FROM nodes n ORDER BY n.name",
                utc_text("n.started_at"),
                utc_text("n.last_heartbeat"),
            ),
            &[],
        )
        .map_err(db(path))?;
    rows.iter()
        .map(|r| {
            let get = |e: postgres::Error| crate::records::corrupt(path, format!("nodes row: {e}"));
            let seconds_since_heartbeat: f64 = r.try_get(3).map_err(get)?;
            Ok(NodeStatus {
                node: r.try_get(0).map_err(get)?,
                started_at: r.try_get(1).map_err(get)?,
                last_heartbeat: r.try_get(2).map_err(get)?,
                seconds_since_heartbeat,
                alive: is_alive(seconds_since_heartbeat, lease_ttl),
                version: r.try_get(4).map_err(get)?,
                address: r.try_get(5).map_err(get)?,
                inbound_streams: count(r.try_get(6).map_err(get)?),
                outbound_streams: count(r.try_get(7).map_err(get)?),
                leases: count(r.try_get(8).map_err(get)?),
            })
        })
        .collect()
}

pub(crate) fn forget_node(
    tx: &mut Transaction<'_>,
    path: &str,
    node: &str,
) -> Result<bool, StoreError> {
    let e = db(path);
    tx.execute("DELETE FROM stream_leases WHERE node = $1", &[&node])
        .map_err(&e)?;
    let deleted = tx
        .execute("DELETE FROM nodes WHERE name = $1", &[&node])
        .map_err(&e)?;
    Ok(deleted > 0)
}

pub(crate) fn acquire_stream_lease(
    tx: &mut Transaction<'_>,
    path: &str,
    lease: &StreamLease,
    lease_ttl: Duration,
    decide: &mut dyn FnMut(ConnectionCounts) -> Result<(), Refusal>,
) -> Result<Result<(), Refusal>, StoreError> {
    let e = db(path);
    let ttl = lease_ttl.as_secs_f64();
    let stream = stored_stream_id(lease.stream);
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LEASE_LOCK_TIMEOUT}'"))
        .map_err(&e)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LEASE_LOCK])
        .map_err(&e)?;
    // Each statement from here on sees every admission committed before the lock was granted.
    let node_age: Option<f64> = tx
        .query_opt(
            &format!("SELECT {SECONDS_SINCE_HEARTBEAT} FROM nodes n WHERE n.name = $1"),
            &[&lease.node],
        )
        .map_err(&e)?
        .map(|r| r.get(0));
    if !node_age.is_some_and(|age| is_alive(age, lease_ttl)) {
        return Err(StoreError::NodeNotAlive(lease.node.clone()));
    }
    let held = tx
        .query_opt(
            "SELECT 1 FROM stream_leases WHERE node = $1 AND stream = $2",
            &[&lease.node, &stream],
        )
        .map_err(&e)?;
    if held.is_some() {
        return Ok(Ok(()));
    }
    let row = tx
        .query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE l.partner = $1), count(*) \
                 FROM stream_leases l JOIN nodes n ON n.name = l.node \
                 WHERE {SECONDS_SINCE_HEARTBEAT} <= $2"
            ),
            &[&lease.partner.as_str(), &ttl],
        )
        .map_err(&e)?;
    let counts = ConnectionCounts {
        partner: count(row.get(0)),
        total: count(row.get(1)),
    };
    if let Err(refusal) = decide(counts) {
        return Ok(Err(refusal));
    }
    tx.execute(
        "INSERT INTO stream_leases (node, stream, partner, direction) VALUES ($1, $2, $3, $4)",
        &[
            &lease.node,
            &stream,
            &lease.partner.as_str(),
            &lease.direction.name(),
        ],
    )
    .map_err(&e)?;
    Ok(Ok(()))
}

pub(crate) fn release_stream_lease(
    tx: &mut Transaction<'_>,
    path: &str,
    node: &str,
    stream: u64,
) -> Result<bool, StoreError> {
    tx.execute(
        "DELETE FROM stream_leases WHERE node = $1 AND stream = $2",
        &[&node, &stored_stream_id(stream)],
    )
    .map(|n| n > 0)
    .map_err(db(path))
}

pub(crate) fn release_node_leases(
    tx: &mut Transaction<'_>,
    path: &str,
    node: &str,
) -> Result<u64, StoreError> {
    tx.execute("DELETE FROM stream_leases WHERE node = $1", &[&node])
        .map_err(db(path))
}
