//! A pool of two gateways in one process on one SQLite store file (two `Gateway::start` with
//! different `[node] name`s, the same `store`): both heartbeat into the store with their stream
//! counts, and a gateway that shuts down gracefully leaves no stream lease behind.

mod common;

use std::time::{Duration, Instant};

use common::*;
use fedgate_gateway::Gateway;
use fedgate_model::Domain;
use fedgate_model::health::Direction;
use fedgate_model::{SaslNegotiation as S, TlsNegotiation as Tls};
use fedgate_store::cluster::LEASE_TTL;
use fedgate_store::{NodeStatus, Store, StreamLease};

/// A gateway named `name` on the store in `dir` (shared by every node started there).
async fn start_node(dir: &std::path::Path, name: &str, extra: &str) -> Gateway {
    let (internal, gw_tx, _stanzas) = internal_server().await;
    let gw = Gateway::start(config(
        dir,
        internal,
        &format!("{extra}\n[node]\nname = \"{name}\"\n"),
    ))
    .await
    .unwrap();
    gw_tx.send(gw.internal_addr).unwrap();
    gw
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
    let dir = tempfile::tempdir().unwrap();
    let auth = authoritative_server(PARTNER_SECRET).await;
    let store = open_store(dir.path());
    add_partner(
        store.as_ref(),
        "partner.example",
        Tls::NotSupported,
        S::NotSupported,
        true,
        Some(auth),
    );
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
    for (name, stream) in [("edge-a", 1001), ("edge-b", 1002)] {
        let lease = StreamLease {
            node: name.into(),
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
