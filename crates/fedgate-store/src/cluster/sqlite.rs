//! Heartbeats and stream leases on SQLite (the SQL of [`crate::cluster`]). Each function runs
//! inside the caller's immediate (write-locked) transaction, which is what serialises lease
//! admission between processes sharing the file. Times are UTC text; ages come from `julianday`.

use std::time::Duration;

use fedgate_model::enforce::{ConnectionCounts, Refusal};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{
    NodeHeartbeat, NodeStatus, PURGE_BATCH, StreamLease, count, is_alive, purge_after,
    stored_stream_id,
};
use crate::StoreError;
use crate::sqlite::map_err;

/// Seconds since the heartbeat of node row `n`, by SQLite's clock.
const SECONDS_SINCE_HEARTBEAT: &str =
    "((julianday('now') - julianday(n.last_heartbeat)) * 86400.0)";

/// Now, as the text the tables keep.
const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

pub(crate) fn heartbeat(
    tx: &Transaction<'_>,
    path: &str,
    beat: &NodeHeartbeat,
    lease_ttl: Duration,
) -> Result<(), StoreError> {
    let e = |err| map_err(path, err);
    tx.prepare_cached(&format!(
        "INSERT INTO nodes (name, started_at, last_heartbeat, version, address, inbound_streams, \
         outbound_streams) VALUES (?1, {NOW}, {NOW}, ?2, ?3, ?4, ?5) \
         ON CONFLICT (name) DO UPDATE SET last_heartbeat = excluded.last_heartbeat, \
         started_at = CASE WHEN ?6 THEN excluded.started_at ELSE nodes.started_at END, \
         version = excluded.version, address = excluded.address, \
         inbound_streams = excluded.inbound_streams, outbound_streams = excluded.outbound_streams"
    ))
    .map_err(e)?
    .execute(params![
        beat.node,
        beat.version,
        beat.address,
        beat.inbound_streams,
        beat.outbound_streams,
        beat.starting,
    ])
    .map_err(e)?;
    tx.prepare_cached(&format!(
        "DELETE FROM stream_leases WHERE (node, stream) IN (SELECT l.node, l.stream \
         FROM stream_leases l JOIN nodes n ON n.name = l.node \
         WHERE {SECONDS_SINCE_HEARTBEAT} > ?1 LIMIT ?2)"
    ))
    .map_err(e)?
    .execute(params![purge_after(lease_ttl).as_secs_f64(), PURGE_BATCH])
    .map_err(e)?;
    Ok(())
}

pub(crate) fn nodes(
    c: &Connection,
    path: &str,
    lease_ttl: Duration,
) -> Result<Vec<NodeStatus>, StoreError> {
    let e = |err| map_err(path, err);
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT n.name, n.started_at, n.last_heartbeat, {SECONDS_SINCE_HEARTBEAT}, n.version, \
             n.address, n.inbound_streams, n.outbound_streams, \
             (SELECT count(*) FROM stream_leases l WHERE l.node = n.name) \
             FROM nodes n ORDER BY n.name"
        ))
        .map_err(e)?;
    let rows = stmt
        .query_map([], |r| {
            let seconds_since_heartbeat: f64 = r.get(3)?;
            Ok(NodeStatus {
                node: r.get(0)?,
                started_at: r.get(1)?,
                last_heartbeat: r.get(2)?,
                seconds_since_heartbeat,
                alive: is_alive(seconds_since_heartbeat, lease_ttl),
                version: r.get(4)?,
                address: r.get(5)?,
                inbound_streams: count(r.get(6)?),
                outbound_streams: count(r.get(7)?),
                leases: count(r.get(8)?),
            })
        })
        .map_err(e)?;
    rows.collect::<rusqlite::Result<_>>().map_err(e)
}

pub(crate) fn forget_node(
    tx: &Transaction<'_>,
    path: &str,
    node: &str,
) -> Result<bool, StoreError> {
    let e = |err| map_err(path, err);
    tx.execute("DELETE FROM stream_leases WHERE node = ?1", [node])
        .map_err(e)?;
    let deleted = tx
        .execute("DELETE FROM nodes WHERE name = ?1", [node])
        .map_err(e)?;
    Ok(deleted > 0)
}

pub(crate) fn acquire_stream_lease(
    tx: &Transaction<'_>,
    path: &str,
    lease: &StreamLease,
    lease_ttl: Duration,
    decide: &mut dyn FnMut(ConnectionCounts) -> Result<(), Refusal>,
) -> Result<Result<(), Refusal>, StoreError> {
    let e = |err| map_err(path, err);
    let ttl = lease_ttl.as_secs_f64();
    let stream = stored_stream_id(lease.stream);
    let node_age: Option<f64> = tx
        .prepare_cached(&format!(
            "SELECT {SECONDS_SINCE_HEARTBEAT} FROM nodes n WHERE n.name = ?1"
        ))
        .map_err(e)?
        .query_row([&lease.node], |r| r.get(0))
        .optional()
        .map_err(e)?;
    if !node_age.is_some_and(|age| is_alive(age, lease_ttl)) {
        return Err(StoreError::NodeNotAlive(lease.node.clone()));
    }
    let held = tx
        .prepare_cached("SELECT 1 FROM stream_leases WHERE node = ?1 AND stream = ?2")
        .map_err(e)?
        .query_row(params![lease.node, stream], |_| Ok(()))
        .optional()
        .map_err(e)?;
    if held.is_some() {
        return Ok(Ok(()));
    }
    let (partner, total): (i64, i64) = tx
        .prepare_cached(&format!(
            "SELECT coalesce(sum(l.partner = ?1), 0), count(*) \
             FROM stream_leases l JOIN nodes n ON n.name = l.node \
             WHERE {SECONDS_SINCE_HEARTBEAT} <= ?2"
        ))
        .map_err(e)?
        .query_row(params![lease.partner.as_str(), ttl], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(e)?;
    let counts = ConnectionCounts {
        partner: count(partner),
        total: count(total),
    };
    if let Err(refusal) = decide(counts) {
        return Ok(Err(refusal));
    }
    tx.prepare_cached(
        "INSERT INTO stream_leases (node, stream, partner, direction) VALUES (?1, ?2, ?3, ?4)",
    )
    .map_err(e)?
    .execute(params![
        lease.node,
        stream,
        lease.partner.as_str(),
        lease.direction.name()
    ])
    .map_err(e)?;
    Ok(Ok(()))
}

pub(crate) fn release_stream_lease(
    tx: &Transaction<'_>,
    path: &str,
    node: &str,
    stream: u64,
) -> Result<bool, StoreError> {
    tx.prepare_cached("DELETE FROM stream_leases WHERE node = ?1 AND stream = ?2")
        .and_then(|mut s| s.execute(params![node, stored_stream_id(stream)]))
        .map(|n| n > 0)
        .map_err(|err| map_err(path, err))
}

pub(crate) fn release_node_leases(
    tx: &Transaction<'_>,
    path: &str,
    node: &str,
) -> Result<u64, StoreError> {
    tx.prepare_cached("DELETE FROM stream_leases WHERE node = ?1")
        .and_then(|mut s| s.execute([node]))
        .map(|n| n as u64)
        .map_err(|err| map_err(path, err))
}
