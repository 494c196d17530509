//! Node heartbeats and stream leases (cluster-wide connection limits), the same tests against
//! both backends: SQLite on a real file and PostgreSQL on a real server (tests/common). The
//! admission decision is the gateway's own, `fedgate_model::enforce::connection_admission`.

#[macro_use]
mod common;

use std::sync::Barrier;
use std::time::Duration;

use common::{Fixture, audit, partner};
use fedgate_model::Domain;
use fedgate_model::enforce::{Refusal, connection_admission};
use fedgate_model::health::Direction;
use fedgate_store::cluster::LEASE_TTL;
use fedgate_store::{AuditQuery, NodeHeartbeat, Store, StoreError, StreamLease};

on_both_backends!(
    heartbeats_upsert_and_nodes_are_listed,
    the_partner_limit_counts_every_nodes_leases,
    the_total_limit_counts_every_nodes_leases,
    releasing_a_lease_frees_its_slot,
    a_silent_node_stops_counting_after_the_lease_time,
    heartbeats_delete_the_leases_of_long_dead_nodes,
    forgetting_a_node_removes_it_and_its_leases,
    heartbeats_and_leases_are_not_admin_changes,
    two_nodes_racing_are_granted_exactly_the_limit,
);

fn beat(node: &str) -> NodeHeartbeat {
    NodeHeartbeat {
        node: node.to_owned(),
        starting: false,
        version: "0.1.0".to_owned(),
        address: None,
        inbound_streams: 0,
        outbound_streams: 0,
    }
}

fn lease(node: &str, stream: u64, partner: &str) -> StreamLease {
    StreamLease {
        node: node.to_owned(),
        stream,
        partner: Domain::parse(partner).unwrap(),
        direction: if stream % 2 == 0 {
            Direction::Inbound
        } else {
            Direction::Outbound
        },
    }
}

/// Ask for a lease with the gateway's decision: the partner has no ConnectionLimit of its own, so
/// `partner_limit` (the gateway's PartnerConnectionLimit) applies, and `total_limit` overall.
fn admit(
    store: &dyn Store,
    lease: &StreamLease,
    ttl: Duration,
    partner_limit: u32,
    total_limit: u32,
) -> Result<Result<(), Refusal>, StoreError> {
    let p = partner(lease.partner.as_str(), &[]);
    store.acquire_stream_lease(lease, ttl, &mut |counts| {
        connection_admission(&p, partner_limit, total_limit, counts)
    })
}

fn leases_of(store: &dyn Store, node: &str) -> u32 {
    store
        .nodes(LEASE_TTL)
        .unwrap()
        .into_iter()
        .find(|n| n.node == node)
        .map_or(0, |n| n.leases)
}

fn heartbeats_upsert_and_nodes_are_listed(store: Fixture) {
    assert!(store.nodes(LEASE_TTL).unwrap().is_empty());
    let first = NodeHeartbeat {
        starting: true,
        address: Some("10.0.0.2:5269".into()),
        inbound_streams: 3,
        outbound_streams: 4,
        ..beat("node-b")
    };
    store.heartbeat(&first, LEASE_TTL).unwrap();
    let listed = store.nodes(LEASE_TTL).unwrap();
    assert_eq!(listed.len(), 1);
    let b = &listed[0];
    assert_eq!(b.node, "node-b");
    assert_eq!(b.version, "0.1.0");
    assert_eq!(b.address.as_deref(), Some("10.0.0.2:5269"));
    assert_eq!((b.inbound_streams, b.outbound_streams, b.leases), (3, 4, 0));
    assert!(b.alive);
    assert!(
        (0.0..5.0).contains(&b.seconds_since_heartbeat),
        "{}",
        b.seconds_since_heartbeat
    );
    // UTC RFC 3339 with milliseconds, as every time the store keeps.
    for time in [&b.started_at, &b.last_heartbeat] {
        assert!(
            time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
            "{time}"
        );
    }

    // The next heartbeat updates the row in place and keeps started_at.
    std::thread::sleep(Duration::from_millis(20));
    let later = NodeHeartbeat {
        version: "0.2.0".into(),
        address: None,
        inbound_streams: 1,
        ..beat("node-b")
    };
    store.heartbeat(&later, LEASE_TTL).unwrap();
    let again = store.nodes(LEASE_TTL).unwrap();
    assert_eq!(again.len(), 1);
    let b2 = &again[0];
    assert_eq!(b2.started_at, b.started_at);
    assert!(b2.last_heartbeat > b.last_heartbeat, "{b2:?} after {b:?}");
    assert_eq!(b2.version, "0.2.0");
    assert_eq!(b2.address, None);
    assert_eq!((b2.inbound_streams, b2.outbound_streams), (1, 0));

    // A restart (starting) sets started_at anew; other nodes are listed by name.
    std::thread::sleep(Duration::from_millis(20));
    store
        .heartbeat(
            &NodeHeartbeat {
                starting: true,
                ..beat("node-b")
            },
            LEASE_TTL,
        )
        .unwrap();
    store.heartbeat(&beat("node-a"), LEASE_TTL).unwrap();
    let both = store.nodes(LEASE_TTL).unwrap();
    let names: Vec<&str> = both.iter().map(|n| n.node.as_str()).collect();
    assert_eq!(names, ["node-a", "node-b"]);
    assert!(both[1].started_at > b.started_at, "{both:?}");
    assert!(both.iter().all(|n| n.alive));
    // Another handle (another node's view) sees the same.
    assert_eq!(store.open_again().nodes(LEASE_TTL).unwrap().len(), 2);
}

fn the_partner_limit_counts_every_nodes_leases(store: Fixture) {
    let other = store.open_again();
    store.heartbeat(&beat("node-a"), LEASE_TTL).unwrap();
    other.heartbeat(&beat("node-b"), LEASE_TTL).unwrap();
    let granted = |s: &dyn Store, l: &StreamLease| admit(s, l, LEASE_TTL, 2, 100).unwrap();

    assert_eq!(
        granted(&*store, &lease("node-a", 1, "fabrikam.com")),
        Ok(())
    );
    assert_eq!(
        granted(&*other, &lease("node-b", 1, "fabrikam.com")),
        Ok(())
    );
    // The third stream with fabrikam.com, on either node, is over the partner limit of 2.
    for (s, node) in [(&*store, "node-a"), (&*other, "node-b")] {
        let refusal = granted(s, &lease(node, 2, "fabrikam.com")).unwrap_err();
        assert_eq!(refusal.reason, "partner_connection_limit", "{refusal}");
    }
    // Another partner is not affected.
    assert_eq!(granted(&*other, &lease("node-b", 3, "contoso.com")), Ok(()));
    // Refused streams hold no lease.
    assert_eq!(leases_of(&*store, "node-a"), 1);
    assert_eq!(leases_of(&*store, "node-b"), 2);

    // A node that never sent a heartbeat cannot take a lease (it would not be counted).
    let err = admit(
        &*store,
        &lease("node-x", 1, "contoso.com"),
        LEASE_TTL,
        2,
        100,
    )
    .unwrap_err();
    assert!(
        matches!(&err, StoreError::NodeNotAlive(n) if n == "node-x"),
        "{err:?}"
    );
}

fn the_total_limit_counts_every_nodes_leases(store: Fixture) {
    let other = store.open_again();
    store.heartbeat(&beat("node-a"), LEASE_TTL).unwrap();
    other.heartbeat(&beat("node-b"), LEASE_TTL).unwrap();
    let granted = |s: &dyn Store, l: &StreamLease| admit(s, l, LEASE_TTL, 10, 3).unwrap();
    assert_eq!(granted(&*store, &lease("node-a", 1, "a.example")), Ok(()));
    assert_eq!(granted(&*other, &lease("node-b", 1, "b.example")), Ok(()));
    assert_eq!(granted(&*store, &lease("node-a", 2, "c.example")), Ok(()));
    let refusal = granted(&*other, &lease("node-b", 2, "d.example")).unwrap_err();
    assert_eq!(refusal.reason, "connection_limit", "{refusal}");
    assert!(refusal.text.contains("3 partner connections"), "{refusal}");
}

fn releasing_a_lease_frees_its_slot(store: Fixture) {
    store.heartbeat(&beat("node-a"), LEASE_TTL).unwrap();
    store.heartbeat(&beat("node-b"), LEASE_TTL).unwrap();
    let granted = |l: &StreamLease| admit(&*store, l, LEASE_TTL, 2, 100).unwrap();
    assert_eq!(granted(&lease("node-a", 7, "fabrikam.com")), Ok(()));
    assert_eq!(granted(&lease("node-b", 8, "fabrikam.com")), Ok(()));
    assert!(granted(&lease("node-a", 9, "fabrikam.com")).is_err());

    // Taking a lease the node already holds again is admitted without asking (retry after a
    // lost reply), and adds nothing.
    let mut asked = 0;
    let again = store
        .acquire_stream_lease(&lease("node-a", 7, "fabrikam.com"), LEASE_TTL, &mut |_| {
            asked += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!((again, asked), (Ok(()), 0));
    assert_eq!(leases_of(&*store, "node-a"), 1);

    assert!(store.release_stream_lease("node-a", 7).unwrap());
    assert!(!store.release_stream_lease("node-a", 7).unwrap());
    assert_eq!(granted(&lease("node-a", 9, "fabrikam.com")), Ok(()));
    assert!(granted(&lease("node-a", 10, "fabrikam.com")).is_err());

    // Releasing all of a node's leases (start-up, shutdown) frees its slots, only its own.
    assert_eq!(granted(&lease("node-a", 11, "contoso.com")), Ok(()));
    assert_eq!(store.release_node_leases("node-a").unwrap(), 2);
    assert_eq!(store.release_node_leases("node-a").unwrap(), 0);
    assert_eq!(leases_of(&*store, "node-b"), 1);
    assert_eq!(granted(&lease("node-a", 12, "fabrikam.com")), Ok(()));
    // Stream ids use all 64 bits.
    assert_eq!(granted(&lease("node-a", u64::MAX, "contoso.com")), Ok(()));
    assert!(store.release_stream_lease("node-a", u64::MAX).unwrap());
}

fn a_silent_node_stops_counting_after_the_lease_time(store: Fixture) {
    let ttl = Duration::from_secs(1);
    let other = store.open_again();
    store.heartbeat(&beat("node-a"), ttl).unwrap();
    other.heartbeat(&beat("node-b"), ttl).unwrap();
    let granted = |s: &dyn Store, l: &StreamLease| admit(s, l, ttl, 2, 100);
    assert_eq!(
        granted(&*store, &lease("node-a", 1, "fabrikam.com")).unwrap(),
        Ok(())
    );
    assert_eq!(
        granted(&*store, &lease("node-a", 2, "fabrikam.com")).unwrap(),
        Ok(())
    );
    assert!(
        granted(&*other, &lease("node-b", 1, "fabrikam.com"))
            .unwrap()
            .is_err()
    );

    // node-a falls silent; node-b keeps beating.
    std::thread::sleep(Duration::from_millis(1500));
    other.heartbeat(&beat("node-b"), ttl).unwrap();
    let nodes = other.nodes(ttl).unwrap();
    let alive: Vec<(&str, bool)> = nodes.iter().map(|n| (n.node.as_str(), n.alive)).collect();
    assert_eq!(alive, [("node-a", false), ("node-b", true)], "{nodes:?}");
    assert!(nodes[0].seconds_since_heartbeat > 1.0, "{nodes:?}");
    // Its leases are still there (not yet purged) but no longer count.
    assert_eq!(nodes[0].leases, 2);
    assert_eq!(
        granted(&*other, &lease("node-b", 1, "fabrikam.com")).unwrap(),
        Ok(())
    );
    // The silent node itself cannot take a lease until it beats again.
    let err = granted(&*store, &lease("node-a", 3, "contoso.com")).unwrap_err();
    assert!(matches!(err, StoreError::NodeNotAlive(_)), "{err:?}");

    // Back: its two leases count again, so fabrikam.com is over its limit (3 of 2).
    store.heartbeat(&beat("node-a"), ttl).unwrap();
    let refusal = granted(&*other, &lease("node-b", 2, "fabrikam.com"))
        .unwrap()
        .unwrap_err();
    assert_eq!(refusal.reason, "partner_connection_limit");
    assert!(refusal.text.contains("already has 3"), "{refusal}");
}

fn heartbeats_delete_the_leases_of_long_dead_nodes(store: Fixture) {
    store.heartbeat(&beat("node-a"), LEASE_TTL).unwrap();
    store.heartbeat(&beat("node-b"), LEASE_TTL).unwrap();
    for stream in 1..=3 {
        let granted = admit(
            &*store,
            &lease("node-a", stream, "a.example"),
            LEASE_TTL,
            9,
            9,
        );
        assert_eq!(granted.unwrap(), Ok(()));
    }
    assert_eq!(
        admit(&*store, &lease("node-b", 1, "a.example"), LEASE_TTL, 9, 9).unwrap(),
        Ok(())
    );
    // With a lease time of 100 ms a node silent for over 1 s (10 lease times) is purged.
    let ttl = Duration::from_millis(100);
    std::thread::sleep(Duration::from_millis(1200));
    store.heartbeat(&beat("node-b"), ttl).unwrap();
    let nodes = store.nodes(ttl).unwrap();
    let leases: Vec<(&str, u32)> = nodes.iter().map(|n| (n.node.as_str(), n.leases)).collect();
    // node-b had beaten just before its own purge check: its lease stays. node-a stays listed.
    assert_eq!(leases, [("node-a", 0), ("node-b", 1)], "{nodes:?}");
}

fn forgetting_a_node_removes_it_and_its_leases(store: Fixture) {
    store.heartbeat(&beat("node-a"), LEASE_TTL).unwrap();
    store.heartbeat(&beat("node-b"), LEASE_TTL).unwrap();
    for node in ["node-a", "node-b"] {
        assert_eq!(
            admit(&*store, &lease(node, 1, "a.example"), LEASE_TTL, 2, 9).unwrap(),
            Ok(())
        );
    }
    assert!(store.forget_node("node-a").unwrap());
    assert!(!store.forget_node("node-a").unwrap());
    let names: Vec<String> = store
        .nodes(LEASE_TTL)
        .unwrap()
        .into_iter()
        .map(|n| n.node)
        .collect();
    assert_eq!(names, ["node-b"]);
    // node-a's lease went with it: a.example has a free slot again.
    assert_eq!(
        admit(&*store, &lease("node-b", 2, "a.example"), LEASE_TTL, 2, 9).unwrap(),
        Ok(())
    );
}

fn heartbeats_and_leases_are_not_admin_changes(store: Fixture) {
    let mut watch = store.watch().unwrap();
    let revision = store.revision().unwrap();
    store.heartbeat(&beat("node-a"), LEASE_TTL).unwrap();
    assert_eq!(
        admit(&*store, &lease("node-a", 1, "a.example"), LEASE_TTL, 2, 9).unwrap(),
        Ok(())
    );
    assert!(
        admit(&*store, &lease("node-a", 2, "a.example"), LEASE_TTL, 1, 9)
            .unwrap()
            .is_err()
    );
    store.heartbeat(&beat("node-a"), LEASE_TTL).unwrap();
    store.release_stream_lease("node-a", 1).unwrap();
    store.release_node_leases("node-a").unwrap();
    store.forget_node("node-a").unwrap();
    // The revision did not move (gateways do not reload), nothing was audited ...
    assert_eq!(store.revision().unwrap(), revision);
    assert!(store.audit_log(&AuditQuery::default()).unwrap().is_empty());
    // ... and on PostgreSQL nothing was announced, while an admin change is.
    if let Some(watch) = watch.as_mut() {
        let changes = watch.wait(Duration::from_millis(300)).unwrap();
        assert!(!changes.any(), "{changes:?}");
        store
            .create_partner(
                &partner("a.example", &[]),
                &audit("New-CsXmppAllowedPartner"),
            )
            .unwrap();
        assert!(watch.wait(Duration::from_secs(5)).unwrap().records);
    }
}

fn two_nodes_racing_are_granted_exactly_the_limit(store: Fixture) {
    const LIMIT: u32 = 5;
    let nodes = [
        ("node-a", store.open_again()),
        ("node-b", store.open_again()),
    ];
    for (name, handle) in &nodes {
        handle.heartbeat(&beat(name), LEASE_TTL).unwrap();
    }
    let start = Barrier::new(nodes.len());
    let granted: u32 = std::thread::scope(|scope| {
        let racers: Vec<_> = nodes
            .iter()
            .map(|(name, handle)| {
                let start = &start;
                scope.spawn(move || {
                    start.wait();
                    let mut granted = 0;
                    let p = partner("fabrikam.com", &[]);
                    for stream in 0..20 {
                        let l = lease(name, stream, "fabrikam.com");
                        // A slow decision widens the window between counting and inserting, so
                        // that admissions not serialised across handles would over-grant.
                        let decided = handle.acquire_stream_lease(&l, LEASE_TTL, &mut |counts| {
                            std::thread::sleep(Duration::from_millis(20));
                            connection_admission(&p, LIMIT, 100, counts)
                        });
                        match decided {
                            Ok(Ok(())) => granted += 1,
                            Ok(Err(refusal)) => {
                                assert_eq!(refusal.reason, "partner_connection_limit")
                            }
                            Err(e) => panic!("{name} stream {stream}: {e}"),
                        }
                    }
                    granted
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).sum()
    });
    assert_eq!(granted, LIMIT);
    let held: u32 = store
        .nodes(LEASE_TTL)
        .unwrap()
        .iter()
        .map(|n| n.leases)
        .sum();
    assert_eq!(held, LIMIT);
}
