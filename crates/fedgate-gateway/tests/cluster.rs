//! A pool of two gateways in one process on one SQLite store file (two `Gateway::start` with
//! different `[node] name`s, the same `store`): both heartbeat into the store with their stream
//! counts; a gateway that shuts down gracefully leaves no stream lease behind; a partner's
//! connection limit counts the streams of every node (and no longer those of a node that fell
//! silent, after the lease time); a dialback key one node sent is vouched for by another.

mod common;

use std::time::{Duration, Instant};

use common::*;
use fedgate_gateway::Gateway;
use fedgate_model::Domain;
use fedgate_model::health::Direction;
use fedgate_store::cluster::LEASE_TTL;
use fedgate_store::{NodeStatus, Store, StreamLease};
use fedgate_xmpp::StreamErrorCondition as C;

/// A gateway named `name` on the store in `dir` (shared by every node started there).
async fn start_node(dir: &std::path::Path, name: &str, extra: &str) -> Gateway {
    let (internal, gw_tx, _stanzas) = internal_server().await;
    let gw = common::start_gateway(config(
        dir,
        internal,
        &format!("{extra}\n[node]\nname = \"{name}\"\n"),
    ))
    .await
    .unwrap();
    gw_tx.send(gw.internal_addr).unwrap();
    gw
}

/// A store in a fresh directory with the dialback partner `partner.example`, whose keys a fake
/// authoritative server verifies with [`PARTNER_SECRET`].
async fn dialback_partner_store() -> (tempfile::TempDir, Box<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let auth = authoritative_server(PARTNER_SECRET).await;
    let store = open_store(dir.path());
    add_dialback_partner(store.as_ref(), "partner.example", Some(auth));
    (dir, store)
}

/// Take a lease for `node`'s inbound stream `stream` with partner.example through the store, as
/// that node would (admitted whatever the counts).
fn hold_lease(store: &dyn Store, node: &str, stream: u64) {
    let lease = StreamLease {
        node: node.into(),
        stream,
        partner: Domain::parse("partner.example").unwrap(),
        direction: Direction::Inbound,
    };
    assert_eq!(
        store
            .acquire_stream_lease(&lease, LEASE_TTL, &mut |_| Ok(()))
            .unwrap(),
        Ok(())
    );
}

/// The store's row of `node`, if any.
fn node(store: &dyn Store, name: &str) -> Option<NodeStatus> {
    store
        .nodes(LEASE_TTL)
        .unwrap()
        .into_iter()
        .find(|n| n.node == name)
}

/// Wait (at most `limit`) until the store's rows say `seen`.
async fn until_nodes(
    store: &dyn Store,
    limit: Duration,
    what: &str,
    seen: impl Fn(&[NodeStatus]) -> bool,
) {
    let started = Instant::now();
    loop {
        let nodes = store.nodes(LEASE_TTL).unwrap();
        if seen(&nodes) {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "{what}: not seen within {limit:?}: {nodes:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_store_heartbeat_their_streams_and_a_graceful_stop_releases_leases() {
    let (dir, store) = dialback_partner_store().await;
    let a = start_node(dir.path(), "edge-a", "").await;
    let b = start_node(dir.path(), "edge-b", "").await;
    // Both joined before accepting: alive at once, started, with their version and address.
    for (gw, name) in [(&a, "edge-a"), (&b, "edge-b")] {
        let n = node(store.as_ref(), name).expect("joined before accepting");
        assert!(n.alive, "{n:?}");
        assert_eq!(n.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(n.address, Some(gw.external_addr.to_string()));
        assert!(n.started_at.ends_with('Z'), "{n:?}");
    }
    // Two authenticated partner streams on A, one on B: the heartbeats (every 2 s) say so.
    let _a1 = dialback_peer(&a).await;
    let _a2 = dialback_peer(&a).await;
    let _b1 = dialback_peer(&b).await;
    until_nodes(
        store.as_ref(),
        Duration::from_secs(5),
        "the stream counts",
        |nodes| {
            let counts: Vec<_> = nodes
                .iter()
                .map(|n| (n.node.as_str(), n.alive, n.inbound_streams))
                .collect();
            counts == [("edge-a", true, 2), ("edge-b", true, 1)]
        },
    )
    .await;
    // /metrics and /status name the node.
    let m = scrape(&a).await;
    assert!(
        m.contains(&format!(
            "fedgate_node_info{{node=\"edge-a\",version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{m}"
    );
    let (_, status) = http_get_plain(b.metrics_addr.unwrap(), "/status").await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["node"], "edge-b", "{status}");

    // Each node holds a lease (taken through the store as the node would); A stops gracefully.
    hold_lease(store.as_ref(), "edge-a", 1001);
    hold_lease(store.as_ref(), "edge-b", 1002);
    assert!(node(store.as_ref(), "edge-a").unwrap().leases >= 1);
    a.shutdown(Duration::from_secs(5)).await;
    let after = node(store.as_ref(), "edge-a").unwrap();
    assert_eq!(after.leases, 0, "A's leases are gone: {after:?}");
    assert!(
        node(store.as_ref(), "edge-b").unwrap().leases >= 1,
        "B's stay"
    );
    b.shutdown(Duration::from_secs(5)).await;
    assert_eq!(node(store.as_ref(), "edge-b").unwrap().leases, 0);
}

/// Set the partner's own ConnectionLimit.
fn set_connection_limit(store: &dyn Store, partner: &str, limit: u32) {
    let current = store
        .partner(&Domain::parse(partner).unwrap())
        .unwrap()
        .unwrap();
    let mut p = current.value;
    p.connection_limit = Some(limit);
    store.update_partner(&p, current.version, &audit()).unwrap();
}

/// The leases `name` holds, as the store counts them.
fn leases(store: &dyn Store, name: &str) -> u32 {
    node(store, name).map_or(0, |n| n.leases)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partners_connection_limit_counts_the_streams_of_every_node() {
    let (dir, store) = dialback_partner_store().await;
    set_connection_limit(store.as_ref(), "partner.example", 2);
    let a = start_node(dir.path(), "edge-a", "").await;
    let b = start_node(dir.path(), "edge-b", "").await;
    // Two streams through A take the partner's two slots...
    let mut a1 = dialback_request(&a, "partner.example").await;
    expect_valid(&mut a1).await;
    let mut a2 = dialback_request(&a, "partner.example").await;
    expect_valid(&mut a2).await;
    assert_eq!(leases(store.as_ref(), "edge-a"), 2);
    // ...so a third through B is refused, though B itself has none.
    let mut b1 = dialback_request(&b, "partner.example").await;
    let e = expect_condition(&mut b1, C::PolicyViolation).await;
    assert!(
        e.text.contains("already has 2 connections (limit 2)"),
        "{e:?}"
    );
    assert_eq!(
        wait_refusals(&b, "external", "partner_connection_limit", 1).await,
        1
    );
    assert_eq!(leases(store.as_ref(), "edge-b"), 0);
    // One of A's streams closes: its lease goes, and B admits one.
    drop(a1);
    until_nodes(
        store.as_ref(),
        Duration::from_secs(5),
        "A's closed stream released",
        |nodes| nodes.iter().any(|n| n.node == "edge-a" && n.leases == 1),
    )
    .await;
    let mut b2 = dialback_request(&b, "partner.example").await;
    expect_valid(&mut b2).await;
    assert_eq!(leases(store.as_ref(), "edge-b"), 1);
    // Full again, whichever node is asked.
    let mut a3 = dialback_request(&a, "partner.example").await;
    expect_condition(&mut a3, C::PolicyViolation).await;
    // The store was there all along: no admission fell back to a node's own streams.
    for gw in [&a, &b] {
        assert_eq!(
            sample(&scrape(gw).await, "fedgate_lease_fallbacks_total", &[]),
            Some(0)
        );
    }
    drop((a2, b2));
    a.shutdown(Duration::from_secs(5)).await;
    b.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        (
            leases(store.as_ref(), "edge-a"),
            leases(store.as_ref(), "edge-b")
        ),
        (0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_nodes_streams_stop_counting_after_the_lease_time() {
    let (dir, store) = dialback_partner_store().await;
    set_connection_limit(store.as_ref(), "partner.example", 2);
    // A node that heartbeats once, takes the partner's two slots and then falls silent.
    store
        .heartbeat(
            &fedgate_store::NodeHeartbeat {
                node: "ghost".into(),
                starting: true,
                version: "0.0.1".into(),
                address: None,
                inbound_streams: 2,
                outbound_streams: 0,
            },
            LEASE_TTL,
        )
        .unwrap();
    let silent_since = Instant::now();
    hold_lease(store.as_ref(), "ghost", 1);
    hold_lease(store.as_ref(), "ghost", 2);
    let gw = start_node(dir.path(), "edge-b", "").await;
    let mut refused = dialback_request(&gw, "partner.example").await;
    expect_condition(&mut refused, C::PolicyViolation).await;
    // Once the ghost's last heartbeat is older than the lease time, its streams no longer count.
    let dead_at = LEASE_TTL + Duration::from_millis(500);
    tokio::time::sleep(dead_at.saturating_sub(silent_since.elapsed())).await;
    assert!(!node(store.as_ref(), "ghost").unwrap().alive);
    let mut admitted = dialback_request(&gw, "partner.example").await;
    expect_valid(&mut admitted).await;
    assert!(
        silent_since.elapsed() < LEASE_TTL + Duration::from_secs(5),
        "admitted soon after the lease time"
    );
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialback_verification_at_one_node_vouches_for_a_stream_another_node_opened() {
    let dir = tempfile::tempdir().unwrap();
    // The partner's server: it verifies the key of an incoming stream by asking corp.example's
    // authoritative server, which the test points at node B.
    let (partner_addr, partner_gw, mut partner_stanzas) = receiving_server(PARTNER_SECRET).await;
    let store = open_store(dir.path());
    add_dialback_partner(store.as_ref(), "partner.example", Some(partner_addr));
    let a = start_node(dir.path(), "edge-a", "").await;
    let b = start_node(dir.path(), "edge-b", "").await;
    partner_gw.send(b.external_addr).unwrap();
    let b_accepted = sample(&scrape(&b).await, "fedgate_connections_accepted_total", &[]);
    // A local user's message leaves through A: A opens the outbound stream, the partner asks B.
    let mut internal = Peer::connect(a.internal_addr).await;
    internal
        .dialback("corp.example", "partner.example", INTERNAL_SECRET)
        .await
        .unwrap();
    internal
        .send_el(&message(
            "bob@corp.example/x",
            "alice@partner.example",
            "via A, vouched for by B",
        ))
        .await;
    let delivered = tokio::time::timeout(T, partner_stanzas.recv())
        .await
        .expect("the partner accepts A's stream once B vouches for its key")
        .unwrap();
    assert_eq!(delivered.attr("to"), Some("alice@partner.example"));
    let b_after = sample(&scrape(&b).await, "fedgate_connections_accepted_total", &[]);
    assert!(
        b_after > b_accepted,
        "the verification went to B: {b_accepted:?} -> {b_after:?}"
    );
    // A's outbound stream counts in the pool: a lease and, at the next heartbeat, a stream out.
    until_nodes(
        store.as_ref(),
        Duration::from_secs(5),
        "A's outbound stream counted",
        |nodes| {
            nodes
                .iter()
                .any(|n| n.node == "edge-a" && n.leases == 1 && n.outbound_streams == 1)
        },
    )
    .await;
    a.shutdown(Duration::from_secs(5)).await;
    b.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_lease_admission_falls_back_to_the_nodes_own_streams_and_is_counted() {
    let (dir, store) = dialback_partner_store().await;
    let gw = start_node(dir.path(), "edge-b", "").await;
    let fallbacks =
        |m: &str| sample(m, "fedgate_lease_fallbacks_total", &[]).expect("the counter is there");
    assert_eq!(fallbacks(&scrape(&gw).await), 0);
    // Forgotten by the store, the node is not alive there until its next heartbeat (2 s): the
    // store refuses it a lease (NodeNotAlive) and the stream is admitted on its own counts.
    // (Tried again should a heartbeat come between the two.)
    let mut streams = Vec::new();
    for _ in 0..3 {
        assert!(store.forget_node("edge-b").unwrap());
        let mut p = dialback_request(&gw, "partner.example").await;
        expect_valid(&mut p).await;
        streams.push(p);
        if fallbacks(&scrape(&gw).await) > 0 {
            break;
        }
    }
    assert_eq!(fallbacks(&scrape(&gw).await), 1);
    // The next heartbeat brings the node back; then streams take leases again.
    until_nodes(
        store.as_ref(),
        Duration::from_secs(5),
        "the node back",
        |nodes| nodes.iter().any(|n| n.node == "edge-b" && n.alive),
    )
    .await;
    let mut p = dialback_request(&gw, "partner.example").await;
    expect_valid(&mut p).await;
    assert_eq!(leases(store.as_ref(), "edge-b"), 1);
    assert_eq!(fallbacks(&scrape(&gw).await), 1);
    gw.shutdown(Duration::from_secs(5)).await;
}
