//! What only the PostgreSQL store has: several handles (nodes) on one database writing at once,
//! the database itself refusing a second owner of a domain, login and reachability errors, the
//! schema version, and a connection that breaks under a running store. Against a real server
//! (tests/common).

#[macro_use]
mod common;

use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use common::{
    Backend, Fixture, PgServer, audit, free_port, partner, pg_password, pg_server, postgres_url,
};
use fedgate_model::Domain;
use fedgate_model::gateway_settings::Secret;
use fedgate_store::{AuditQuery, Changes, PostgresStore, Store, StoreError, StoreUrl};

/// Run `a` and `b` on two threads released at the same instant; their results.
fn at_once<T: Send + 'static>(
    a: impl FnOnce() -> T + Send + 'static,
    b: impl FnOnce() -> T + Send + 'static,
) -> (T, T) {
    let barrier = Arc::new(Barrier::new(2));
    let (ba, bb) = (barrier.clone(), barrier);
    let ta = std::thread::spawn(move || {
        ba.wait();
        a()
    });
    let tb = std::thread::spawn(move || {
        bb.wait();
        b()
    });
    (ta.join().unwrap(), tb.join().unwrap())
}

#[test]
fn two_nodes_updating_one_partner_at_once_one_wins_the_other_gets_a_conflict() {
    let fixture = Fixture::new(Backend::Postgres);
    let (node_a, node_b): (Arc<dyn Store>, Arc<dyn Store>) =
        (fixture.open_again().into(), fixture.open_again().into());
    let identity = Domain::parse("fabrikam.example").unwrap();
    node_a
        .create_partner(&partner("fabrikam.example", &[]), &audit("New"))
        .unwrap();
    for round in 0..10u32 {
        // Both nodes read the same version and write their own change of it.
        let read = node_a.partner(&identity).unwrap().unwrap();
        assert_eq!(node_b.partner(&identity).unwrap().unwrap(), read);
        let (mut from_a, mut from_b) = (read.value.clone(), read.value.clone());
        from_a.description = format!("A{round}");
        from_b.description = format!("B{round}");
        let version = read.version;
        let (a, b) = (node_a.clone(), node_b.clone());
        let (ra, rb) = at_once(
            move || a.update_partner(&from_a, version, &audit("Set A")),
            move || b.update_partner(&from_b, version, &audit("Set B")),
        );
        let (winner, loser) = match (ra, rb) {
            (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
            (ra, rb) => panic!("round {round}: exactly one must win: {ra:?} / {rb:?}"),
        };
        assert_eq!(winner.version, version + 1);
        match loser {
            StoreError::Conflict {
                expected, found, ..
            } => assert_eq!((expected, found), (version, version + 1)),
            other => panic!("round {round}: the loser must get a conflict, not {other}"),
        }
        // Nothing lost: the stored record is the winner's, seen alike from both nodes.
        for node in [&node_a, &node_b] {
            assert_eq!(node.partner(&identity).unwrap().unwrap(), winner);
        }
    }
    // One audit entry per winning write (creation + 10), none for the losers.
    let log = node_b.audit_log(&AuditQuery::default()).unwrap();
    assert_eq!(log.len(), 11);
    assert_eq!(node_a.revision().unwrap(), log[10].id);
    assert_eq!(node_b.revision().unwrap(), log[10].id);
}

#[test]
fn two_nodes_claiming_one_domain_at_once_one_wins() {
    let fixture = Fixture::new(Backend::Postgres);
    let (node_a, node_b): (Arc<dyn Store>, Arc<dyn Store>) =
        (fixture.open_again().into(), fixture.open_again().into());
    for round in 0..10u32 {
        let shared = format!("shared{round}.example");
        let (pa, pb) = (
            partner(&format!("a{round}.example"), &[&shared]),
            partner(
                &format!("b{round}.example"),
                &[&format!("*.{shared}"), &shared],
            ),
        );
        let (a, b) = (node_a.clone(), node_b.clone());
        let (ra, rb) = at_once(
            move || a.create_partner(&pa, &audit("New A")).map(|v| v.value),
            move || b.create_partner(&pb, &audit("New B")).map(|v| v.value),
        );
        let (winner, loser) = match (ra, rb) {
            (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
            (ra, rb) => panic!("round {round}: exactly one must win: {ra:?} / {rb:?}"),
        };
        match loser {
            StoreError::DomainTaken { domain, owner } => {
                assert_eq!(domain, shared);
                assert_eq!(owner, winner.identity);
            }
            other => panic!("round {round}: the loser must be told the domain is taken: {other}"),
        }
        assert_eq!(
            node_b.domain_owner(&shared).unwrap(),
            Some(winner.identity.clone())
        );
    }
    // Only the winners exist, each with all its domains.
    assert_eq!(node_a.partners(None).unwrap().len(), 10);
}

#[test]
fn the_database_itself_refuses_a_second_owner_of_a_domain() {
    // Not only the store's own check: a writer that bypasses it (another build, a hand-made
    // INSERT) meets the unique index.
    let fixture = Fixture::new(Backend::Postgres);
    fixture
        .create_partner(&partner("a.example", &["shared.example"]), &audit("New"))
        .unwrap();
    let common::Location::Postgres(url) = &fixture.location else {
        unreachable!()
    };
    let mut client = pg_server().client_as_fedgate(&url.database);
    client
        .batch_execute(
            "INSERT INTO partners (identity, description, partner_type, tls_negotiation, \
             sasl_negotiation, support_dialback, enable_keep_alive, bypass_dual_write, version) \
             VALUES ('b.example', '', 'PublicVerified', 'Optional', 'NotSupported', true, true, false, 1)",
        )
        .unwrap();
    let err = client
        .batch_execute(
            "INSERT INTO partner_domains (pattern, identity, position) VALUES ('shared.example', 'b.example', 1)",
        )
        .unwrap_err();
    let db = err.as_db_error().expect("a database error");
    assert_eq!(
        *db.code(),
        postgres::error::SqlState::UNIQUE_VIOLATION,
        "{db}"
    );
    assert_eq!(
        fixture.domain_owner("shared.example").unwrap(),
        Some(Domain::parse("a.example").unwrap())
    );
}

#[test]
fn a_change_on_one_node_is_read_on_the_other() {
    let fixture = Fixture::new(Backend::Postgres);
    let (node_a, node_b) = (fixture.open_again(), fixture.open_again());
    let before = node_b.revision().unwrap();
    node_a
        .create_partner(&partner("contoso.example", &[]), &audit("New"))
        .unwrap();
    assert!(node_b.revision().unwrap() > before);
    assert!(
        node_b
            .partner(&Domain::parse("contoso.example").unwrap())
            .unwrap()
            .is_some()
    );
}

#[test]
fn a_wrong_or_missing_password_is_a_clear_error_without_the_password() {
    let server = pg_server();
    let url = server.fresh_database();
    let wrong = "not-the-password-4711";
    let err = PostgresStore::connect(&url, Some(Secret::new(wrong.into()))).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Access { .. }), "{err:?}");
    assert!(
        text.contains(&format!(
            "PostgreSQL at 127.0.0.1:{} refused the password of user 'fedgate'",
            server.port
        )),
        "{text}"
    );
    assert!(text.contains("FEDGATE_STORE_PASSWORD_FILE"), "{text}");
    assert!(!text.contains(wrong) && !format!("{err:?}").contains(wrong));

    let err = PostgresStore::connect(&url, None).unwrap_err().to_string();
    assert!(
        err.contains("asks user 'fedgate' for a password and none was given"),
        "{err}"
    );

    let err = PostgresStore::connect(&server.url("no_such_db"), pg_password())
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no database 'no_such_db'"), "{err}");
}

#[test]
fn an_unreachable_server_is_named_and_the_password_is_not() {
    let port = free_port(); // nothing listens there
    let text = format!(
        "postgres://fedgate:url-secret-0815@127.0.0.1:{port}/fedgate?sslmode=disable&connect_timeout=5"
    );
    let url = StoreUrl::parse(&text).unwrap();
    let started = std::time::Instant::now();
    let err = match fedgate_store::open(&url) {
        Ok(_) => panic!("a store on a closed port"),
        Err(e) => e,
    };
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let shown = format!("{err} {err:?}");
    assert!(matches!(err, StoreError::Access { .. }), "{shown}");
    assert!(
        shown.contains(&format!("cannot use PostgreSQL at 127.0.0.1:{port}")),
        "{shown}"
    );
    assert!(!shown.contains("url-secret-0815"), "{shown}");
}

/// A TCP listener on 127.0.0.1 that accepts and never answers — a hung PostgreSQL, another
/// service on the port, a proxy that drops the traffic — or, once told to `relay_to` a port,
/// passes new connections through to it (and, told to, those it held). Counts what it held
/// unanswered; closes everything when told to (or dropped).
struct HungServer {
    port: u16,
    relay_to: Arc<Mutex<Option<u16>>>,
    held: Arc<Mutex<Vec<TcpStream>>>,
    /// Both ends of every relayed connection.
    relayed: Arc<Mutex<Vec<TcpStream>>>,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl HungServer {
    fn start() -> HungServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let server = HungServer {
            port: listener.local_addr().unwrap().port(),
            relay_to: Arc::default(),
            held: Arc::default(),
            relayed: Arc::default(),
            accepted: Arc::default(),
            stop: Arc::default(),
        };
        let (relay_to, held, relayed, accepted, stop) = (
            server.relay_to.clone(),
            server.held.clone(),
            server.relayed.clone(),
            server.accepted.clone(),
            server.stop.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok((conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                let target = *relay_to.lock().unwrap();
                match target {
                    None => {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        held.lock().unwrap().push(conn);
                    }
                    Some(port) => pipe(conn, port, &relayed),
                }
            }
        });
        server
    }

    /// Start relaying the connections held so far to `port` (the hung server answers at last).
    fn relay_held(&self, port: u16) {
        for conn in self.held.lock().unwrap().drain(..) {
            pipe(conn, port, &self.relayed);
        }
    }

    /// How many connections were relayed (from the start or later).
    fn relayed(&self) -> usize {
        self.relayed.lock().unwrap().len() / 2
    }

    /// How many connections it accepted without relaying them.
    fn unanswered(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Relay new connections to `port` from now on (None: hold them unanswered).
    fn relay(&self, port: Option<u16>) {
        *self.relay_to.lock().unwrap() = port;
    }

    /// End the relayed connections (as a server restart or a failover would).
    fn cut_relayed(&self) {
        for c in self.relayed.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// End the connections held unanswered (the hung server is killed, say).
    fn close_held(&self) {
        for c in self.held.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

/// Relay `conn` to 127.0.0.1:`port`, keeping both ends in `relayed`.
fn pipe(conn: TcpStream, port: u16, relayed: &Mutex<Vec<TcpStream>>) {
    let upstream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    for (from, to) in [(&conn, &upstream), (&upstream, &conn)] {
        let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
        });
    }
    relayed.lock().unwrap().extend([conn, upstream]);
}

impl Drop for HungServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut_relayed();
        self.close_held();
    }
}

#[test]
fn a_server_that_accepts_and_never_answers_fails_the_open_within_connect_timeout() {
    let hung = HungServer::start();
    let port = hung.port;
    let url = postgres_url(&format!(
        "postgres://fedgate@127.0.0.1:{port}/fedgate?sslmode=disable&connect_timeout=1"
    ));
    for open in [
        Box::new(|| PostgresStore::connect(&url, pg_password()).map(|_| ()))
            as Box<dyn Fn() -> Result<(), StoreError>>,
        Box::new(|| fedgate_store::open(&StoreUrl::Postgres(url.clone())).map(|_| ())),
    ] {
        let started = Instant::now();
        let err = match open() {
            Ok(()) => panic!("a store on a server that never answers"),
            Err(e) => e,
        };
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert!(matches!(err, StoreError::Access { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&format!(
                "PostgreSQL at 127.0.0.1:{port} did not complete the connection within 1 s"
            )),
            "{err}"
        );
    }
    assert_eq!(hung.unanswered(), 2);
}

/// A fresh database with the schema already in place, for the tests that then connect with
/// `connect_timeout=1`: the 1 s is for what they test, and a loaded machine (CI beside other
/// builds) can take longer than that to run the migrations.
fn migrated_database(server: &PgServer) -> String {
    let direct = server.fresh_database();
    drop(PostgresStore::connect(&direct, pg_password()).unwrap());
    direct.database.clone()
}

#[test]
fn a_store_whose_server_starts_hanging_fails_calls_within_connect_timeout_and_piles_up_nothing() {
    let server = pg_server();
    let database = migrated_database(server);
    let hung = HungServer::start();
    let port = hung.port;
    hung.relay(Some(server.port));
    let url = postgres_url(&format!(
        "postgres://fedgate@127.0.0.1:{port}/{database}?sslmode=disable&connect_timeout=1"
    ));
    let store = PostgresStore::connect(&url, pg_password()).unwrap();
    store
        .create_partner(&partner("a.example", &[]), &audit("New"))
        .unwrap();
    let mut watch = store.watch().unwrap().unwrap();
    let names_the_server = |err: &StoreError| {
        let text = err.to_string();
        assert!(matches!(err, StoreError::Access { .. }), "{err:?}");
        assert!(
            text.contains(&format!(
                "PostgreSQL at 127.0.0.1:{port} did not complete the connection within 1 s"
            )),
            "{text}"
        );
        text
    };

    // The connections end and the address now leads to a server that never answers.
    hung.relay(None);
    hung.cut_relayed();
    let started = Instant::now();
    let err = store.partners(None).unwrap_err();
    let took = started.elapsed();
    names_the_server(&err);
    assert!(took < Duration::from_millis(2500), "{took:?}");
    assert_eq!(hung.unanswered(), 1);
    // The watch notices its connection ended.
    assert!(watch.wait(Duration::from_secs(2)).is_err());
    drop(watch);

    // Callers retrying meanwhile (as a gateway's refresh loop every 250 ms) fail at once, and no
    // new attempt is made while the abandoned one still waits: a write, a read, a new watch.
    for round in 0..6 {
        let started = Instant::now();
        let errors = [
            store
                .update_partner(&partner("a.example", &[]), 1, &audit("Set"))
                .unwrap_err(),
            store.revision().unwrap_err(),
            store.watch().err().unwrap(),
        ];
        let took = started.elapsed();
        assert!(took < Duration::from_millis(200), "round {round}: {took:?}");
        for err in &errors {
            let text = names_the_server(err);
            assert!(text.contains("an earlier attempt"), "{text}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(hung.unanswered(), 1, "new connection attempts were made");

    // The hung server goes away and the real one answers again: the abandoned attempt ends
    // with its connection and the next calls connect.
    hung.relay(Some(server.port));
    hung.close_held();
    let deadline = Instant::now() + Duration::from_secs(5);
    let partners = loop {
        match store.partners(None) {
            Ok(p) => break p,
            Err(e) => assert!(Instant::now() < deadline, "still failing: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(partners.len(), 1);
    // A new connection for the watch: on a loaded machine its login can itself exceed the 1 s.
    let mut watch = loop {
        match store.watch() {
            Ok(w) => break w.unwrap(),
            Err(e) => assert!(Instant::now() < deadline, "still failing: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    store
        .create_partner(&partner("b.example", &[]), &audit("New"))
        .unwrap();
    assert!(watch.wait(Duration::from_secs(1)).unwrap().records);
    assert_eq!(hung.unanswered(), 1);
}

#[test]
fn a_connection_the_server_completes_after_connect_timeout_is_used_by_the_next_call() {
    let server = pg_server();
    let database = migrated_database(server);
    let hung = HungServer::start();
    let port = hung.port;
    hung.relay(Some(server.port));
    let url = postgres_url(&format!(
        "postgres://fedgate@127.0.0.1:{port}/{database}?sslmode=disable&connect_timeout=1"
    ));
    let store = PostgresStore::connect(&url, pg_password()).unwrap();
    hung.relay(None);
    hung.cut_relayed();
    let err = store.revision().unwrap_err().to_string();
    assert!(
        err.contains("did not complete the connection within 1 s"),
        "{err}"
    );
    assert_eq!(hung.unanswered(), 1);
    // The server answers the attempt the call gave up on: the next call uses its connection
    // instead of making another.
    hung.relay(Some(server.port));
    hung.relay_held(server.port);
    let relayed = hung.relayed();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match store.revision() {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "still failing: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    store
        .create_partner(&partner("a.example", &[]), &audit("New"))
        .unwrap();
    assert_eq!(hung.relayed(), relayed, "a new connection was made");
    assert_eq!(hung.unanswered(), 1);
}

#[test]
fn a_schema_newer_than_this_build_is_refused() {
    let fixture = Fixture::new(Backend::Postgres);
    let common::Location::Postgres(url) = &fixture.location else {
        unreachable!()
    };
    let mut client = pg_server().client_as_fedgate(&url.database);
    client
        .batch_execute("UPDATE fedgate_schema SET version = 99")
        .unwrap();
    let err = PostgresStore::connect(url, pg_password()).unwrap_err();
    assert!(
        matches!(err, StoreError::NewerSchema { found: 99, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("upgrade fedgate"), "{err}");
    // Opening a store that is already current changes nothing.
    client
        .batch_execute(&format!(
            "UPDATE fedgate_schema SET version = {}",
            fedgate_store::schema::POSTGRES_MIGRATIONS.len()
        ))
        .unwrap();
    PostgresStore::connect(url, pg_password()).unwrap();
    let versions: i64 = client
        .query_one("SELECT count(*) FROM fedgate_schema", &[])
        .unwrap()
        .get(0);
    assert_eq!(versions, 1);
}

#[test]
fn a_broken_connection_is_made_again() {
    let fixture = Fixture::new(Backend::Postgres);
    fixture
        .create_partner(&partner("a.example", &[]), &audit("New"))
        .unwrap();
    let common::Location::Postgres(url) = &fixture.location else {
        unreachable!()
    };
    // The server ends every session of this database (as a restart or a failover would).
    let end_sessions = || {
        let ended: i64 = pg_server()
            .admin_client()
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1",
                &[&url.database],
            )
            .unwrap()
            .get(0);
        assert!(ended >= 1);
    };
    end_sessions();
    // A read goes through on a new connection.
    assert_eq!(fixture.partners(None).unwrap().len(), 1);
    end_sessions();
    // So does a write (it failed at BEGIN: nothing could have committed), exactly once.
    fixture
        .create_partner(&partner("b.example", &[]), &audit("New"))
        .unwrap();
    assert_eq!(fixture.partners(None).unwrap().len(), 2);
    assert_eq!(fixture.audit_log(&AuditQuery::default()).unwrap().len(), 2);
}

/// How many sessions of `database` run over TLS, as the server sees them.
fn tls_sessions(database: &str) -> i64 {
    pg_server()
        .admin_client()
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE datname = $1 AND ssl",
            &[&database],
        )
        .unwrap()
        .get(0)
}

#[test]
fn tls_with_the_servers_ca_is_used_and_verified() {
    let server = pg_server();
    let plain = server.fresh_database();
    let with_ca = |mode: &str, host: &str| {
        let text = format!(
            "postgres://fedgate@{host}:{}/{}?sslmode={mode}&sslrootcert={}",
            server.port,
            plain.database,
            server.ca_file().display()
        );
        postgres_url(&text)
    };
    for (mode, host) in [("verify-full", "127.0.0.1"), ("require", "localhost")] {
        let store = PostgresStore::connect(&with_ca(mode, host), pg_password())
            .unwrap_or_else(|e| panic!("{mode} {host}: {e}"));
        store
            .create_partner(&partner(&format!("{mode}.example"), &[]), &audit("New"))
            .unwrap();
        assert!(
            tls_sessions(&plain.database) >= 1,
            "{mode}: the store's session is not encrypted"
        );
    }
    // sslmode=disable: the same server, plain TCP.
    let store = PostgresStore::connect(&plain, pg_password()).unwrap();
    assert_eq!(store.partners(None).unwrap().len(), 2);
}

#[test]
fn a_server_certificate_that_does_not_verify_is_refused() {
    let server = pg_server();
    let database = server.fresh_database().database;
    let refused = |query: &str| {
        let url = postgres_url(&format!(
            "postgres://fedgate@127.0.0.1:{}/{database}?{query}",
            server.port
        ));
        PostgresStore::connect(&url, pg_password())
            .unwrap_err()
            .to_string()
    };
    // The system's roots do not know the test CA; prefer verifies too once TLS is used.
    for mode in ["verify-full", "require", "prefer"] {
        let err = refused(&format!("sslmode={mode}"));
        assert!(
            err.contains(&format!("PostgreSQL at 127.0.0.1:{}", server.port))
                && err.to_lowercase().contains("certificate"),
            "{mode}: {err}"
        );
        assert!(err.contains("sslrootcert=<PEM file>"), "{mode}: {err}");
    }
    // A CA file that does not exist is named.
    let err = refused("sslmode=verify-full&sslrootcert=/nonexistent/ca.pem");
    assert!(
        err.contains("cannot read sslrootcert '/nonexistent/ca.pem'"),
        "{err}"
    );
}

#[test]
fn a_write_on_one_node_wakes_a_watch_on_another_within_a_second() {
    let fixture = Fixture::new(Backend::Postgres);
    let (node_a, node_b) = (fixture.open_again(), fixture.open_again());
    let mut watch = node_b
        .watch()
        .unwrap()
        .expect("PostgreSQL stores can be watched");
    assert!(
        !watch.wait(Duration::from_millis(200)).unwrap().any(),
        "nothing was written yet"
    );
    let revision = node_b.revision().unwrap();
    let mut slowest = Duration::ZERO;
    for i in 0..5 {
        let written = Instant::now();
        node_a
            .create_partner(&partner(&format!("p{i}.example"), &[]), &audit("New"))
            .unwrap();
        assert_eq!(
            watch.wait(Duration::from_secs(1)).unwrap(),
            Changes {
                records: true,
                authorisations: false
            },
            "write {i} not announced within 1 s"
        );
        slowest = slowest.max(written.elapsed());
    }
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
    // The announcement comes after the commit: node B reads the change at once.
    assert!(node_b.revision().unwrap() >= revision + 5);
    // A write that fails (rolled back) announces nothing; authorisations (no revision) do.
    assert!(
        node_a
            .create_partner(&partner("p0.example", &[]), &audit("New"))
            .is_err()
    );
    assert!(!watch.wait(Duration::from_millis(300)).unwrap().any());
    let user = |s: &str| fedgate_model::UserJid::parse(s).unwrap();
    node_a
        .set_authorisation(&user("alice@corp.example"), &user("bob@p0.example"), true)
        .unwrap();
    assert_eq!(
        watch.wait(Duration::from_secs(1)).unwrap(),
        Changes {
            records: false,
            authorisations: true
        }
    );
    // Several writes while nobody waits are taken together by one wait.
    for i in 5..8 {
        node_a
            .create_partner(&partner(&format!("p{i}.example"), &[]), &audit("New"))
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(watch.wait(Duration::from_secs(1)).unwrap().records);
    assert!(!watch.wait(Duration::from_millis(200)).unwrap().any());
}

#[test]
fn a_watch_whose_connection_ends_says_so() {
    let fixture = Fixture::new(Backend::Postgres);
    let mut watch = fixture.watch().unwrap().unwrap();
    let common::Location::Postgres(url) = &fixture.location else {
        unreachable!()
    };
    pg_server()
        .admin_client()
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&url.database],
        )
        .unwrap();
    let err = watch
        .wait(std::time::Duration::from_secs(2))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "the change notifications from PostgreSQL at 127.0.0.1:{} stopped",
            url.port
        )),
        "{err}"
    );
    // A new watch works (the store reconnects its own connection too).
    let mut again = fixture.watch().unwrap().unwrap();
    fixture
        .create_partner(&partner("a.example", &[]), &audit("New"))
        .unwrap();
    assert!(
        again
            .wait(std::time::Duration::from_secs(1))
            .unwrap()
            .records
    );
}

#[test]
fn a_role_that_may_only_read_and_write_rows_can_use_a_migrated_store() {
    // Least privilege: an admin (here: fedgate, the owner) creates the schema once; the nodes log
    // in as a role that may read and write rows but not create tables.
    let server = pg_server();
    let url = server.fresh_database();
    PostgresStore::connect(&url, pg_password()).unwrap();
    server.admin_sql(&format!(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fedgate_node') THEN \
           CREATE ROLE fedgate_node LOGIN PASSWORD 'node-password'; END IF; END $$; \
         GRANT CONNECT ON DATABASE {db} TO fedgate_node;",
        db = url.database
    ));
    server
        .client_as_fedgate(&url.database)
        .batch_execute(
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO fedgate_node; \
             GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO fedgate_node;",
        )
        .unwrap();
    let mut node_url = url.clone();
    node_url.user = "fedgate_node".into();
    let node = PostgresStore::connect(&node_url, Some(Secret::new("node-password".into())))
        .unwrap_or_else(|e| panic!("{e}"));
    node.create_partner(&partner("a.example", &[]), &audit("New"))
        .unwrap();
    assert_eq!(node.partners(None).unwrap().len(), 1);
    assert!(node.revision().unwrap() > 0);
}

#[test]
fn nodes_starting_together_on_an_empty_database_migrate_it_once() {
    let server = pg_server();
    let url = server.fresh_database();
    let (a, b) = (url.clone(), url.clone());
    let (ra, rb) = at_once(
        move || PostgresStore::connect(&a, pg_password()).map(|_| ()),
        move || PostgresStore::connect(&b, pg_password()).map(|_| ()),
    );
    ra.unwrap();
    rb.unwrap();
    let rows: Vec<i32> = server
        .client_as_fedgate(&url.database)
        .query("SELECT version FROM fedgate_schema", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        rows,
        [fedgate_store::schema::POSTGRES_MIGRATIONS.len() as i32]
    );
}

/// Not part of the suite (run it alone: docs/benchmarks.md): write latency of the two backends
/// side by side, one handle each, creating then updating partners one at a time.
#[test]
#[ignore]
fn bench_write_latency_sqlite_vs_postgresql() {
    const N: usize = 300;
    let percentile = |samples: &mut Vec<Duration>, p: f64| {
        samples.sort();
        samples[((samples.len() as f64 - 1.0) * p) as usize]
    };
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let store = Fixture::new(backend);
        let (mut create, mut update) = (Vec::new(), Vec::new());
        for i in 0..N {
            let p = partner(&format!("p{i}.example"), &[&format!("x{i}.example")]);
            let t = Instant::now();
            let v = store.create_partner(&p, &audit("New")).unwrap();
            create.push(t.elapsed());
            let mut changed = v.value.clone();
            changed.description = "changed".into();
            let t = Instant::now();
            store
                .update_partner(&changed, v.version, &audit("Set"))
                .unwrap();
            update.push(t.elapsed());
        }
        println!(
            "{backend:?}: create p50 {:?} p99 {:?}; update p50 {:?} p99 {:?} ({N} each)",
            percentile(&mut create, 0.5),
            percentile(&mut create, 0.99),
            percentile(&mut update, 0.5),
            percentile(&mut update, 0.99),
        );
    }
}
