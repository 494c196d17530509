//! Two nodes on one PostgreSQL store: a running gateway and another node (a second store handle,
//! as the CLI or the API of another machine would be) that changes partners and PublicUnverified
//! authorisations. The gateway applies each change within a second, told by the store's
//! announcements (authorisations move no revision, so only an announcement brings them), and
//! catches up after PostgreSQL restarts under it. This binary's one test owns its server.

mod common;
#[path = "../../fedgate-store/tests/common/mod.rs"]
mod pg;

use std::time::{Duration, Instant};

use fedgate_gateway::Gateway;
use fedgate_model::gateway_settings::Secret;
use fedgate_model::{Domain, UserJid};
use fedgate_store::{PostgresStore, Store, StoreUrl};

/// `fedgate_store_available` from the gateway's /metrics.
async fn store_available(gw: &Gateway) -> Option<u64> {
    common::sample(&common::scrape(gw).await, "fedgate_store_available", &[])
}

/// Wait until `seen` holds, at most `limit`; how long it took.
async fn within(limit: Duration, seen: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !seen() {
        assert!(started.elapsed() < limit, "not seen within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_on_another_node_reach_the_gateway_within_a_second_and_after_a_database_restart()
 {
    let dir = tempfile::tempdir().unwrap();
    let url = tokio::task::spawn_blocking(|| pg::pg_server().fresh_database())
        .await
        .unwrap();
    let (internal, gw_tx, _stanzas) = common::internal_server().await;
    let mut config = common::config(dir.path(), internal, "");
    let mut with_password = url.clone();
    with_password.password = Some(Secret::new(pg::PG_PASSWORD.into()));
    config.store = StoreUrl::Postgres(with_password);
    let gw = common::start_gateway(config).await.unwrap();
    gw_tx.send(gw.internal_addr).unwrap();
    let node_b = tokio::task::spawn_blocking(move || {
        PostgresStore::connect(&url, pg::pg_password()).unwrap()
    })
    .await
    .unwrap();
    let node_b = std::sync::Arc::new(node_b);
    let on_b = |f: Box<dyn FnOnce(&PostgresStore) + Send>| {
        let b = node_b.clone();
        tokio::task::spawn_blocking(move || f(&b))
    };

    // A partner created on node B.
    on_b(Box::new(|b| {
        b.create_partner(
            &pg::partner("contoso.example", &["*.contoso.example"]),
            &pg::audit("New-CsXmppAllowedPartner"),
        )
        .unwrap();
    }))
    .await
    .unwrap();
    let took = within(Duration::from_secs(1), || {
        gw.shared.snapshot().partner("contoso.example").is_some()
    })
    .await;
    eprintln!("partner applied after {took:?}");

    // An authorisation recorded on node B (a subscription that went through node B).
    let alice = UserJid::parse("alice@corp.example").unwrap();
    let bob = UserJid::parse("bob@contoso.example").unwrap();
    let (a, b) = (alice.clone(), bob.clone());
    on_b(Box::new(move |s| {
        s.set_authorisation(&a, &b, true).unwrap();
    }))
    .await
    .unwrap();
    let took = within(Duration::from_secs(1), || {
        gw.shared.snapshot().authorisations.contains(&alice, &bob)
    })
    .await;
    eprintln!("authorisation applied after {took:?}");
    // And withdrawn there.
    let (a, b) = (alice.clone(), bob.clone());
    on_b(Box::new(move |s| {
        s.set_authorisation(&a, &b, false).unwrap();
    }))
    .await
    .unwrap();
    within(Duration::from_secs(1), || {
        !gw.shared.snapshot().authorisations.contains(&alice, &bob)
    })
    .await;

    // The partner removed on node B: gone from the gateway too.
    on_b(Box::new(|b| {
        b.delete_partner(
            &Domain::parse("contoso.example").unwrap(),
            None,
            &pg::audit("Remove-CsXmppAllowedPartner"),
        )
        .unwrap();
    }))
    .await
    .unwrap();
    within(Duration::from_secs(1), || {
        gw.shared.snapshot().partner("contoso.example").is_none()
    })
    .await;

    // PostgreSQL stopped under the running gateway: /metrics and /status say the store cannot be
    // read, the policy read last stays in force; started again: the gateway reconnects, says so,
    // and applies what node B writes.
    on_b(Box::new(|b| {
        b.create_partner(&pg::partner("kept.example", &[]), &pg::audit("New"))
            .unwrap();
    }))
    .await
    .unwrap();
    within(Duration::from_secs(1), || {
        gw.shared.snapshot().partner("kept.example").is_some()
    })
    .await;
    assert_eq!(store_available(&gw).await, Some(1));
    tokio::task::spawn_blocking(|| pg::pg_server().stop())
        .await
        .unwrap();
    let started = Instant::now();
    while store_available(&gw).await != Some(0) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "/metrics does not say the store is unavailable"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, status) = common::http_get_plain(gw.metrics_addr.unwrap(), "/status").await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["store"]["available"], false, "{status}");
    assert!(
        status["store"]["error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("127.0.0.1:{}", pg::pg_server().port))),
        "{status}"
    );
    assert!(
        !status.to_string().contains(pg::PG_PASSWORD),
        "the password is in /status: {status}"
    );
    assert!(gw.shared.snapshot().partner("kept.example").is_some());
    tokio::task::spawn_blocking(|| pg::pg_server().start())
        .await
        .unwrap();
    assert!(gw.shared.snapshot().partner("fabrikam.example").is_none());
    let carol = UserJid::parse("carol@corp.example").unwrap();
    let dave = UserJid::parse("dave@fabrikam.example").unwrap();
    let (c, d) = (carol.clone(), dave.clone());
    on_b(Box::new(move |s| {
        s.create_partner(&pg::partner("fabrikam.example", &[]), &pg::audit("New"))
            .unwrap();
        s.set_authorisation(&c, &d, true).unwrap();
    }))
    .await
    .unwrap();
    let took = within(Duration::from_secs(10), || {
        let snapshot = gw.shared.snapshot();
        snapshot.partner("fabrikam.example").is_some()
            && snapshot.authorisations.contains(&carol, &dave)
    })
    .await;
    eprintln!("caught up {took:?} after the restart");
    assert_eq!(store_available(&gw).await, Some(1));

    // A PostgreSQL store dropped on a thread that drives async tasks closes its connection
    // elsewhere (the driver's close blocks, which used to panic here), as the gateway's own
    // store may be dropped at shutdown.
    drop(node_b);
    gw.shutdown(Duration::from_secs(2)).await;
}

/// Not part of the suite (run it alone, it shares this binary's server: docs/benchmarks.md): how
/// long a partner created by another process takes to reach a running gateway's snapshot, with a
/// PostgreSQL store (announced) and, as the baseline, an SQLite store (revision poll only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_change_propagation_postgresql_vs_sqlite() {
    const N: usize = 100;
    for postgres in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (internal, gw_tx, _stanzas) = common::internal_server().await;
        let mut config = common::config(dir.path(), internal, "");
        let other: std::sync::Arc<dyn Store> = if postgres {
            let url = tokio::task::spawn_blocking(|| pg::pg_server().fresh_database())
                .await
                .unwrap();
            let mut with_password = url.clone();
            with_password.password = Some(Secret::new(pg::PG_PASSWORD.into()));
            config.store = StoreUrl::Postgres(with_password);
            std::sync::Arc::new(
                tokio::task::spawn_blocking(move || {
                    PostgresStore::connect(&url, pg::pg_password()).unwrap()
                })
                .await
                .unwrap(),
            )
        } else {
            // The config's own store: sqlite:fedgate.db in `dir`.
            let path = dir.path().join("fedgate.db");
            std::sync::Arc::new(fedgate_store::SqliteStore::open(&path).unwrap())
        };
        let gw = common::start_gateway(config).await.unwrap();
        gw_tx.send(gw.internal_addr).unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await; // the watch is listening
        let mut took = Vec::new();
        for i in 0..N {
            let name = format!("p{i}.example");
            let (store, p) = (other.clone(), pg::partner(&name, &[]));
            tokio::task::spawn_blocking(move || {
                store.create_partner(&p, &pg::audit("New")).unwrap();
            })
            .await
            .unwrap();
            took.push(
                within(Duration::from_secs(2), || {
                    gw.shared.snapshot().partner(&name).is_some()
                })
                .await,
            );
        }
        took.sort();
        println!(
            "{}: a partner created by another process is in the gateway's snapshot after p50 {:?}, p99 {:?} ({N} changes)",
            if postgres {
                "PostgreSQL (announced)"
            } else {
                "SQLite (250 ms poll)"
            },
            took[N / 2],
            took[N * 99 / 100],
        );
        gw.shutdown(Duration::from_secs(2)).await;
        drop(other);
    }
}
