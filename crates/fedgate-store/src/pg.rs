//! The PostgreSQL backend: one database shared by every fedgate node of a pool.
//!
//! Each handle keeps one connection (a `Mutex<Client>`, as the SQLite backend keeps one
//! connection; callers already run store calls on tokio's blocking pool, and admin writes are
//! rare), made again on the next call after it breaks. Every write is one transaction that first
//! takes a pool-wide advisory lock, so writers on all nodes run one after the other: a precondition
//! (version, domain owner, existing name) checked inside the transaction still holds at commit,
//! and audit-log ids are handed out in commit order, so [`Store::revision`] (the highest audit id)
//! only ever grows. Domain uniqueness does not rest on the lock alone: `partner_domains.pattern`
//! is the primary key, so the database refuses a second owner whoever writes.
//!
//! Every write transaction also sends a NOTIFY on [`CHANNEL`], delivered to listeners when (and
//! only if) it commits; [`Store::watch`] listens on a connection of its own, so nodes learn of a
//! change within milliseconds instead of at their next revision poll.
//!
//! Operational state is the exception to both: partner health and the pool's node heartbeats and
//! stream leases ([`crate::cluster`]) are written outside the write lock (lease admission takes a
//! lock of its own, [`cluster::LEASE_LOCK`]) and announce nothing, so they neither wait for admin
//! writes nor make gateways reload.
//!
//! Making a connection (TCP, TLS, PostgreSQL's startup and authentication, and the schema check
//! when opening or the LISTEN of a watch) takes at most the URL's `connect_timeout`, a server
//! that accepts the TCP connection and never answers included: the attempt runs on a thread of
//! its own, one at a time per store, and while an attempt its caller gave up on still waits,
//! further calls fail at once (`PostgresStore::connect_bounded`). A call on an established
//! connection is not bounded that way: a network that goes dead under it ends it through TCP
//! keepalives and `TCP_USER_TIMEOUT` (within about a minute), but a server process that hangs while its
//! kernel still acknowledges keeps the call (and the calls queued behind it) waiting.
//!
//! TLS goes through rustls (ring provider, as the rest of fedgate), verifying the server against
//! the system's roots or the URL's `sslrootcert`.

use std::sync::{Arc, LazyLock, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use fedgate_model::enforce::{ConnectionCounts, Refusal};
use fedgate_model::gateway_settings::Secret;
use fedgate_model::{
    Domain, ExternalAccessPolicy, PolicyScope, UserJid, XmppAllowedPartner,
    XmppGatewayConfiguration,
};
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, GenericClient, NoTls, Row, Transaction};

use crate::copy::{
    AuditRecord, CLEAR_SQL, COPY_TARGET, COUNT_SQL, RecordCounts, StoreDump, counts_from,
    is_configured, refuse_unless_empty,
};
use crate::records::{
    Column, PartnerRow, PolicyRow, Stored, authorisations_from_rows, check_version,
    configuration_from_rows, corrupt, default_global_policy, grants_from_rows, parse_pattern,
    settings_rows, to_json, token_from_row, token_record_from_row, with_default_global,
};
use crate::schema::POSTGRES_MIGRATIONS;
use crate::url::{PASSWORD_ENV, PASSWORD_FILE_ENV, PostgresUrl, SslMode};
use crate::writes::{self, AuditTx, GrantsTx, Partners, Policies, RecordTx, SettingsTx, TokensTx};
use crate::{
    AuditContext, AuditEntry, AuditQuery, Authorisation, ChangeWatch, Changes, ImportBatch,
    NodeHeartbeat, NodeStatus, Store, StoreError, StreamLease, TokenInfo, TokenRole, Versioned,
    cluster,
};

/// The advisory lock every write (and the migration) holds: "fedgate" in ASCII.
const WRITE_LOCK: i64 = 0x0066_6564_6761_7465;

/// How long a connection may take to answer the ping that tells a broken connection after a
/// failed read.
const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The NOTIFY channel every committed write announces itself on. The payload says what changed:
/// `authorisations` (PublicUnverified authorisations, which do not move the revision) or
/// `records` (everything audited); see [`Changes`].
pub const CHANNEL: &str = "fedgate_changes";
const RECORDS: &str = "records";
const AUTHORISATIONS: &str = "authorisations";

/// The PostgreSQL store.
pub struct PostgresStore {
    server: Arc<Server>,
    client: Mutex<Option<Client>>,
    /// Held while a connection attempt runs (so one runs at a time), and keeping the attempt
    /// its caller stopped waiting for while it still runs; see [`PostgresStore::connect_bounded`].
    connecting: Mutex<Option<Abandoned>>,
}

/// Where and how to connect: what a connection attempt's thread needs.
struct Server {
    url: PostgresUrl,
    /// The URL as errors show it (password masked).
    shown: String,
    password: Option<Secret>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// What a connection attempt does once logged in, within the same time bound.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setup {
    /// Nothing: a connection for store calls.
    Plain,
    /// Check the schema (and bring it up to date): opening the store.
    Migrate,
    /// LISTEN on [`CHANNEL`]: a watch.
    Listen,
}

/// A connection attempt whose caller stopped waiting at `connect_timeout`; its thread runs on
/// until the server answers or the connection ends, and then leaves its outcome here.
struct Abandoned {
    outcome: mpsc::Receiver<Result<Closing, StoreError>>,
    started: Instant,
    setup: Setup,
}

/// A client that, wherever it is dropped, is closed on a thread of its own ([`close_elsewhere`]):
/// an abandoned attempt's client may be dropped by whoever drops its channel.
struct Closing(Option<Client>);

impl Closing {
    fn take(mut self) -> Option<Client> {
        self.0.take()
    }
}

impl Drop for Closing {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            close_elsewhere(client);
        }
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.server.shown)
            .finish()
    }
}

type PgResult<T> = Result<T, postgres::Error>;

/// Close a connection on a thread of its own: `postgres::Client` blocks on its private runtime
/// when dropped (to say goodbye to the server), which panics when the drop happens on a thread
/// that drives async tasks — as the gateway's last reference to its store may be at shutdown.
/// (Should no thread start, the client is dropped here after all.)
fn close_elsewhere(client: Client) {
    let _closing = std::thread::Builder::new()
        .name("pg-close".into())
        .spawn(move || drop(client));
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(client) = self
            .client
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            close_elsewhere(client);
        }
    }
}

impl PostgresStore {
    /// Connect with the password from the environment ([`PostgresUrl::resolve_password`]) and
    /// migrate the schema.
    pub fn open(url: &PostgresUrl) -> Result<PostgresStore, StoreError> {
        let password = url.resolve_password()?;
        PostgresStore::connect(url, password)
    }

    /// Connect with this password (None: the server must not ask for one) and migrate, all of
    /// it within the URL's `connect_timeout` (`PostgresStore::connect_bounded`).
    pub fn connect(
        url: &PostgresUrl,
        password: Option<Secret>,
    ) -> Result<PostgresStore, StoreError> {
        let shown = url.to_string();
        let tls = match url.ssl_mode {
            SslMode::Disable => None,
            _ => Some(Arc::new(tls_config(url, &shown)?)),
        };
        let store = PostgresStore {
            server: Arc::new(Server {
                url: url.clone(),
                shown,
                password,
                tls,
            }),
            client: Mutex::new(None),
            connecting: Mutex::new(None),
        };
        let client = store.connect_bounded(Setup::Migrate)?;
        *store.lock() = Some(client);
        Ok(store)
    }

    /// A new connection, `setup` done on it, within `connect_timeout` in all (TCP, TLS,
    /// PostgreSQL's startup and authentication, the setup's queries). The driver bounds only the
    /// TCP connect, so the attempt runs on a thread of its own and the caller waits for it at
    /// most `connect_timeout`; a server that accepts the connection and never answers leaves the
    /// thread waiting, abandoned. One attempt runs at a time per store, and while an abandoned one
    /// still waits no other is made: calls fail at once (no pile of threads while callers retry
    /// against a hung server). An abandoned attempt ends when the server answers or the
    /// connection ends (keepalives, [`TCP_USER_TIMEOUT`]); a plain connection it then made is
    /// used by the next call needing one, anything else is closed.
    fn connect_bounded(&self, setup: Setup) -> Result<Client, StoreError> {
        let limit = self.server.url.connect_timeout;
        let deadline = Instant::now() + limit;
        // Waits (at most about `limit`) while another caller's attempt runs.
        let mut connecting = self.connecting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(abandoned) = connecting.take() {
            match abandoned.outcome.try_recv() {
                Err(mpsc::TryRecvError::Empty) => {
                    let err = self.server.not_connected(&format!(
                        "an earlier attempt, started {} s ago, still waits for an answer; \
                         no other is made until it ends",
                        abandoned.started.elapsed().as_secs()
                    ));
                    *connecting = Some(abandoned);
                    return Err(err);
                }
                Ok(Ok(late)) => {
                    if let Some(client) = late.take() {
                        if abandoned.setup == Setup::Plain
                            && setup == Setup::Plain
                            && !client.is_closed()
                        {
                            return Ok(client);
                        }
                        close_elsewhere(client);
                    }
                }
                // It failed (or its thread died): a new attempt.
                Ok(Err(_)) | Err(mpsc::TryRecvError::Disconnected) => {}
            }
        }
        let started = Instant::now();
        let left = deadline.saturating_duration_since(started);
        if left.is_zero() {
            return Err(self
                .server
                .not_connected("another connection attempt took all that time"));
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let server = self.server.clone();
        std::thread::Builder::new()
            .name("pg-connect".into())
            .spawn(move || {
                let outcome = server.open_client(setup).map(|c| Closing(Some(c)));
                // Nobody waits any more when the store is gone: the client is closed here.
                let _ = tx.send(outcome);
            })
            .map_err(|e| {
                self.server
                    .unavailable(&format!("cannot start a thread to connect: {e}"))
            })?;
        match rx.recv_timeout(left) {
            Ok(outcome) => outcome.and_then(|c| {
                c.take().ok_or_else(|| {
                    self.server
                        .unavailable("the connection attempt lost its client")
                })
            }),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                *connecting = Some(Abandoned {
                    outcome: rx,
                    started,
                    setup,
                });
                Err(self.server.not_connected(
                    "no answer to the login (a hung server, another service on that port, or a \
                     network that drops the traffic?)",
                ))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(self
                .server
                .unavailable("the connection attempt ended without an outcome")),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Client>> {
        // A panic while holding the lock leaves the connection usable (transactions roll back on drop).
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection, made again if there is none or it broke.
    fn connection<'a>(
        &self,
        guard: &'a mut MutexGuard<'_, Option<Client>>,
    ) -> Result<&'a mut Client, StoreError> {
        if guard.as_ref().is_none_or(Client::is_closed) {
            **guard = None;
            **guard = Some(self.connect_bounded(Setup::Plain)?);
        }
        match guard.as_mut() {
            Some(client) => Ok(client),
            None => Err(self.unavailable("no connection")),
        }
    }

    /// Run a read; once more on a fresh connection if the connection broke under it. A server
    /// that ends the session answers the query in flight with an error (57P01) before the client
    /// sees the connection close, so after a failed read a connection that does not answer a
    /// ping counts as broken too (a read can always be run again).
    fn read<T>(
        &self,
        f: impl Fn(&mut Client, &str) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = self.lock();
        let first = f(self.connection(&mut guard)?, &self.server.shown);
        if first.is_err()
            && guard
                .as_mut()
                .is_some_and(|c| c.is_closed() || c.is_valid(PING_TIMEOUT).is_err())
        {
            *guard = None;
            return f(self.connection(&mut guard)?, &self.server.shown);
        }
        first
    }

    /// Run a read of several queries in one read-only REPEATABLE READ transaction, so that they
    /// all see one snapshot whatever other nodes commit in between.
    fn read_snapshot<T>(
        &self,
        f: impl Fn(&mut Transaction<'_>, &str) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.read(|c, path| {
            let mut tx = c
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .map_err(db(path))?;
            let out = f(&mut tx, path)?;
            tx.commit().map_err(db(path))?;
            Ok(out)
        })
    }

    /// Run `f` in a transaction holding the pool-wide write lock, announce it on [`CHANNEL`]
    /// with `what` (sent at commit), and commit.
    fn write<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Transaction<'_>, &str) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = self.lock();
        let e = |err| self.map_err(err);
        let mut f = Some(f);
        let mut retried = false;
        loop {
            let mut tx = match self.connection(&mut guard)?.transaction() {
                Ok(tx) => tx,
                // Nothing can have committed when BEGIN fails; typically the server ended the
                // connection while it was idle (restart, failover): once more, on a new one.
                Err(_) if !retried => {
                    retried = true;
                    continue;
                }
                Err(err) => return Err(e(err)),
            };
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
                .map_err(e)?;
            let Some(f) = f.take() else {
                return Err(self.unavailable("a write ran twice"));
            };
            let out = f(&mut tx, &self.server.shown)?;
            tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &what])
                .map_err(e)?;
            tx.commit().map_err(e)?;
            return Ok(out);
        }
    }

    /// Run `f` in a transaction that is neither under the admin write lock nor announced
    /// (operational state: heartbeats, stream leases; `f` takes any lock it needs itself), and
    /// commit. As with [`read`](Self::read), once more on a fresh connection if the connection
    /// broke under the first attempt, so `f` must be safe to run again.
    fn operational<T>(
        &self,
        mut f: impl FnMut(&mut Transaction<'_>, &str) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = self.lock();
        let mut attempt = |client: &mut Client| {
            let mut tx = client.transaction().map_err(|e| self.map_err(e))?;
            let out = f(&mut tx, &self.server.shown)?;
            tx.commit().map_err(|e| self.map_err(e))?;
            Ok(out)
        };
        let first = attempt(self.connection(&mut guard)?);
        if first.is_err()
            && guard
                .as_mut()
                .is_some_and(|c| c.is_closed() || c.is_valid(PING_TIMEOUT).is_err())
        {
            *guard = None;
            return attempt(self.connection(&mut guard)?);
        }
        first
    }

    fn unavailable(&self, reason: &str) -> StoreError {
        self.server.unavailable(reason)
    }

    fn map_err(&self, err: postgres::Error) -> StoreError {
        self.server.map_err(err)
    }
}

/// How long unacknowledged data (a query sent, keepalive probes) may wait before the kernel
/// ends the connection (Linux; elsewhere the system's default): a network that went dead under
/// an established connection fails its call instead of waiting for TCP's retransmissions.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

impl Server {
    /// Connect (the driver bounds only the TCP connect by `connect_timeout`: see
    /// [`PostgresStore::connect_bounded`]) and do `setup`.
    fn open_client(&self, setup: Setup) -> Result<Client, StoreError> {
        let mut client = self.new_client()?;
        match setup {
            Setup::Plain => {}
            Setup::Migrate => {
                migrate(&mut client, &self.shown).map_err(|e| self.map_migrate_err(e))?;
            }
            Setup::Listen => client
                .batch_execute(&format!("LISTEN {CHANNEL}"))
                .map_err(|e| self.map_err(e))?,
        }
        Ok(client)
    }

    fn new_client(&self) -> Result<Client, StoreError> {
        let url = &self.url;
        let mut config = postgres::Config::new();
        config
            .host(&url.host)
            .port(url.port)
            .user(&url.user)
            .dbname(&url.database)
            .application_name("fedgate")
            .connect_timeout(url.connect_timeout)
            // A connection idle for long (the watch's) still notices a vanished server or NAT,
            // and one whose network went dead under a call fails it (neither helps against a
            // server process that hangs while its kernel still acknowledges).
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .keepalives_interval(Duration::from_secs(10))
            .keepalives_retries(3)
            .tcp_user_timeout(TCP_USER_TIMEOUT);
        if let Some(password) = &self.password {
            config.password(password.expose());
        }
        let connected = match &self.tls {
            None => {
                config.ssl_mode(postgres::config::SslMode::Disable);
                config.connect(NoTls)
            }
            Some(tls) => {
                config.ssl_mode(match url.ssl_mode {
                    SslMode::Prefer => postgres::config::SslMode::Prefer,
                    _ => postgres::config::SslMode::Require,
                });
                config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(
                    tls.as_ref().clone(),
                ))
            }
        };
        connected.map_err(|e| self.map_err(e))
    }

    fn unavailable(&self, reason: &str) -> StoreError {
        StoreError::Access {
            path: self.shown.clone(),
            reason: format!("PostgreSQL at {}: {reason}", self.url.address()),
        }
    }

    /// A connection not made within `connect_timeout`, and why.
    fn not_connected(&self, why: &str) -> StoreError {
        StoreError::Access {
            path: self.shown.clone(),
            reason: format!(
                "PostgreSQL at {} did not complete the connection within {} s: {why}",
                self.url.address(),
                self.url.connect_timeout.as_secs()
            ),
        }
    }

    /// A PostgreSQL error as an admin can act on it: it names the server and, for a refused
    /// login, where the password came from; never the password.
    fn map_err(&self, err: postgres::Error) -> StoreError {
        let url = &self.url;
        let addr = url.address();
        let access = |reason: String| StoreError::Access {
            path: self.shown.clone(),
            reason,
        };
        let password_sources = format!(
            "the password is read from {PASSWORD_FILE_ENV}, {PASSWORD_ENV}, the URL or PGPASSWORD, in that order"
        );
        if let Some(db) = err.as_db_error() {
            let code = db.code();
            let message = db.message();
            if *code == SqlState::INVALID_PASSWORD {
                return access(format!(
                    "PostgreSQL at {addr} refused the password of user '{}' ({password_sources}): {message}",
                    url.user
                ));
            }
            if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
                return access(format!(
                    "PostgreSQL at {addr} does not let user '{}' into database '{}': {message}",
                    url.user, url.database
                ));
            }
            if *code == SqlState::INVALID_CATALOG_NAME {
                return access(format!(
                    "PostgreSQL at {addr} has no database '{}': {message}",
                    url.database
                ));
            }
            // Connection, resources, operator intervention (shutdown), or a missing privilege.
            let class = code.code().get(..2).unwrap_or("");
            if matches!(class, "08" | "53" | "57") || *code == SqlState::INSUFFICIENT_PRIVILEGE {
                return access(format!("PostgreSQL at {addr}: {message}"));
            }
            return StoreError::Database {
                path: self.shown.clone(),
                reason: match db.detail() {
                    Some(detail) => format!("{message} ({detail})"),
                    None => message.to_owned(),
                },
            };
        }
        let text = with_causes(&err);
        if text.contains("password missing") {
            return access(format!(
                "PostgreSQL at {addr} asks user '{}' for a password and none was given ({password_sources})",
                url.user
            ));
        }
        let hint = if text.contains("invalid peer certificate") {
            " (name the CA that signed the server's certificate with sslrootcert=<PEM file> in the store URL)"
        } else {
            ""
        };
        access(format!("cannot use PostgreSQL at {addr}: {text}{hint}"))
    }
}

/// An error's text followed by its causes' (the driver says "invalid configuration" and keeps
/// the "password missing" in the cause).
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// The rustls client configuration: the URL's `sslrootcert`, else the system's roots.
fn tls_config(url: &PostgresUrl, shown: &str) -> Result<rustls::ClientConfig, StoreError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let fail = |reason: String| StoreError::Access {
        path: shown.to_owned(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    match &url.ssl_root_cert {
        Some(file) => {
            let certs = CertificateDer::pem_file_iter(file)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| fail(format!("cannot read sslrootcert '{}': {e}", file.display())))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(fail(format!(
                    "sslrootcert '{}' holds no usable CA certificate",
                    file.display()
                )));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() && url.ssl_mode != SslMode::Prefer {
                return Err(fail(
                    "no system CA certificates to verify PostgreSQL's certificate with; give sslrootcert=<PEM file> in the store URL".into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Bring the schema up to [`POSTGRES_MIGRATIONS`], under the write lock so that nodes starting
/// together migrate once; refuse a schema newer than this build.
fn migrate(client: &mut Client, shown: &str) -> Result<(), MigrateError> {
    let supported = POSTGRES_MIGRATIONS.len() as i64;
    // A current schema needs no lock and no DDL, so nodes may log in as a role that can only
    // read and write rows (an admin, or the first start as the owner, migrates).
    if let Some(found) = schema_version(client)? {
        check_version(shown, i64::from(found), supported)?;
        if i64::from(found) == supported {
            return Ok(());
        }
    }
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
    // Another node may have migrated while we waited for the lock.
    let found = match schema_version(&mut tx)? {
        Some(found) => found,
        None => {
            tx.batch_execute("CREATE TABLE fedgate_schema (version INTEGER NOT NULL)")?;
            0
        }
    };
    check_version(shown, i64::from(found), supported)?;
    for (i, sql) in POSTGRES_MIGRATIONS
        .iter()
        .enumerate()
        .skip(found.max(0) as usize)
    {
        tx.batch_execute(sql)?;
        let version = (i + 1) as i32;
        tx.execute("DELETE FROM fedgate_schema", &[])?;
        tx.execute(
            "INSERT INTO fedgate_schema (version) VALUES ($1)",
            &[&version],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// The schema version recorded in the database; None when fedgate has never created its tables.
fn schema_version(c: &mut impl GenericClient) -> PgResult<Option<i32>> {
    // From pg_class with this statement's snapshot, not to_regclass(): name lookups may use a
    // catalog snapshot older than the advisory lock, missing a table another node just created.
    let exists: bool = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relname = 'fedgate_schema' AND n.nspname = current_schema())",
            &[],
        )?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = c.query_one("SELECT coalesce(max(version), 0) FROM fedgate_schema", &[])?;
    Ok(Some(row.get(0)))
}

/// Why a migration failed: the database, or a schema newer than this build.
enum MigrateError {
    Pg(postgres::Error),
    Store(StoreError),
}

impl From<postgres::Error> for MigrateError {
    fn from(e: postgres::Error) -> Self {
        MigrateError::Pg(e)
    }
}

impl From<StoreError> for MigrateError {
    fn from(e: StoreError) -> Self {
        MigrateError::Store(e)
    }
}

impl Server {
    fn map_migrate_err(&self, e: MigrateError) -> StoreError {
        match e {
            MigrateError::Pg(e) => self.map_err(e),
            MigrateError::Store(e) => e,
        }
    }
}

/// Map a database error inside a read or write closure (no access to the store there).
pub(crate) fn db(path: &str) -> impl Fn(postgres::Error) -> StoreError + '_ {
    move |err| match err.as_db_error() {
        Some(db) => StoreError::Database {
            path: path.to_owned(),
            reason: match db.detail() {
                Some(detail) => format!("{} ({detail})", db.message()),
                None => db.message().to_owned(),
            },
        },
        None => StoreError::Access {
            path: path.to_owned(),
            reason: format!("PostgreSQL: {}", with_causes(&err)),
        },
    }
}

fn insert_audit(
    tx: &mut Transaction<'_>,
    audit: &AuditContext,
    target: &str,
    before: Option<String>,
    after: Option<String>,
) -> PgResult<()> {
    tx.execute(
        "INSERT INTO audit_log (actor, command, target, before, after) VALUES ($1, $2, $3, $4, $5)",
        &[&audit.actor, &audit.command, &target, &before, &after],
    )?;
    Ok(())
}

/// A user wildcard (`*`, `?`) as a LIKE pattern over lowercase identities; everything else is
/// literal, as with the SQLite backend's GLOB.
fn like_pattern(filter: &str) -> String {
    let mut out = String::with_capacity(filter.len());
    for c in filter.to_lowercase().chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Rows read by [`PartnerRow::read`] and [`PolicyRow::read`].
impl<T: for<'a> postgres::types::FromSql<'a>> Column<T> for Row {
    fn column(&self, index: usize) -> Result<T, String> {
        self.try_get(index).map_err(|e| e.to_string())
    }
}

fn owner_in(c: &mut impl GenericClient, pattern: &str) -> PgResult<Option<Domain>> {
    let row = c.query_opt(
        "SELECT identity FROM partner_domains WHERE pattern = $1",
        &[&pattern],
    )?;
    Ok(row.and_then(|r| Domain::parse(r.get::<_, &str>(0)).ok()))
}

fn load_partner(
    c: &mut impl GenericClient,
    path: &str,
    identity: &Domain,
) -> Result<Option<Versioned<XmppAllowedPartner>>, StoreError> {
    let e = db(path);
    let sql = format!(
        "SELECT {} FROM partners WHERE identity = $1",
        PartnerRow::column_list()
    );
    let Some(row) = c.query_opt(&sql, &[&identity.as_str()]).map_err(&e)? else {
        return Ok(None);
    };
    let mut partner = PartnerRow::read(path, &row)?;
    for row in c
        .query(
            "SELECT pattern FROM partner_domains WHERE identity = $1 AND position > 0 ORDER BY position",
            &[&identity.as_str()],
        )
        .map_err(&e)?
    {
        let text: &str = row.get(0);
        partner
            .value
            .additional_domains
            .push(parse_pattern(path, text)?);
    }
    Ok(Some(partner))
}

/// A partner column's value as a parameter, by its kind.
fn param(value: &Stored) -> &(dyn ToSql + Sync) {
    match value {
        Stored::Text(t) => t,
        Stored::OptionalText(t) => t,
        Stored::Bool(b) => b,
        Stored::OptionalInt(n) => n,
    }
}

/// Insert or replace a partner's row and domain rows, checking domain ownership.
fn write_partner(
    tx: &mut Transaction<'_>,
    path: &str,
    p: &XmppAllowedPartner,
    version: u64,
) -> Result<(), StoreError> {
    let e = db(path);
    let values = PartnerRow::values(p, version);
    let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(param).collect();
    static UPSERT: LazyLock<String> = LazyLock::new(|| {
        format!(
            "INSERT INTO partners ({}) VALUES ({}) ON CONFLICT (identity) DO UPDATE SET {}",
            PartnerRow::column_list(),
            PartnerRow::placeholders(|i| format!("${i}")),
            PartnerRow::columns()
                .skip(1)
                .map(|c| format!("{c} = excluded.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    tx.execute(UPSERT.as_str(), &params).map_err(&e)?;
    let identity = p.identity.as_str();
    tx.execute(
        "DELETE FROM partner_domains WHERE identity = $1",
        &[&identity],
    )
    .map_err(&e)?;
    for (position, pattern) in p.patterns().enumerate() {
        let text = pattern.to_string();
        if let Some(owner) = owner_in(tx, &text).map_err(&e)? {
            return Err(StoreError::DomainTaken {
                domain: text,
                owner,
            });
        }
        tx.execute(
            "INSERT INTO partner_domains (pattern, identity, position) VALUES ($1, $2, $3)",
            &[&text, &identity, &(position as i32)],
        )
        .map_err(&e)?;
    }
    Ok(())
}

/// The record writes ([`writes`]) over a PostgreSQL write transaction.
impl AuditTx for Transaction<'_> {
    fn audit(
        &mut self,
        path: &str,
        audit: &AuditContext,
        target: &str,
        before: Option<String>,
        after: Option<String>,
    ) -> Result<(), StoreError> {
        insert_audit(self, audit, target, before, after).map_err(db(path))
    }
}

impl SettingsTx for Transaction<'_> {
    fn settings(&mut self, path: &str) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self
            .query("SELECT name, value FROM gateway_settings", &[])
            .map_err(db(path))?;
        Ok(text_pairs(rows))
    }
    fn set_setting(&mut self, path: &str, name: &str, value: &str) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO gateway_settings (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            &[&name, &value],
        )
        .map(|_| ())
        .map_err(db(path))
    }
}

impl GrantsTx for Transaction<'_> {
    fn grant_of(&mut self, path: &str, user: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .query_opt(
                "SELECT tag FROM policy_grants WHERE user_jid = $1",
                &[&user],
            )
            .map_err(db(path))?;
        Ok(row.map(|r| r.get(0)))
    }
    fn set_grant(&mut self, path: &str, user: &str, tag: &str) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO policy_grants (user_jid, tag) VALUES ($1, $2) \
             ON CONFLICT (user_jid) DO UPDATE SET tag = excluded.tag",
            &[&user, &tag],
        )
        .map(|_| ())
        .map_err(db(path))
    }
    fn remove_grant(&mut self, path: &str, user: &str) -> Result<(), StoreError> {
        self.execute("DELETE FROM policy_grants WHERE user_jid = $1", &[&user])
            .map(|_| ())
            .map_err(db(path))
    }
    fn grants_of(
        &mut self,
        path: &str,
        scope: &PolicyScope,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self
            .query(
                "SELECT user_jid, tag FROM policy_grants WHERE 'tag:' || lower(tag) = $1 \
                 ORDER BY user_jid",
                &[&scope.key()],
            )
            .map_err(db(path))?;
        Ok(text_pairs(rows))
    }
}

impl TokensTx for Transaction<'_> {
    fn token_named(&mut self, path: &str, name: &str) -> Result<Option<TokenInfo>, StoreError> {
        load_token(self, path, TokenKey::Name, name)
    }
    fn insert_token(
        &mut self,
        path: &str,
        name: &str,
        role: TokenRole,
        hash: &str,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO api_tokens (name, role, hash) VALUES ($1, $2, $3)",
            &[&name, &role.name(), &hash],
        )
        .map(|_| ())
        .map_err(db(path))
    }
    fn delete_token(&mut self, path: &str, name: &str) -> Result<(), StoreError> {
        self.execute("DELETE FROM api_tokens WHERE name = $1", &[&name])
            .map(|_| ())
            .map_err(db(path))
    }
}

impl RecordTx<Partners> for Transaction<'_> {
    fn load(
        &mut self,
        path: &str,
        identity: &Domain,
    ) -> Result<Option<Versioned<XmppAllowedPartner>>, StoreError> {
        load_partner(self, path, identity)
    }
    fn store(
        &mut self,
        path: &str,
        p: &XmppAllowedPartner,
        version: u64,
    ) -> Result<(), StoreError> {
        write_partner(self, path, p, version)
    }
    fn remove(&mut self, path: &str, identity: &Domain) -> Result<(), StoreError> {
        // The domain rows go with the partner (ON DELETE CASCADE).
        self.execute(
            "DELETE FROM partners WHERE identity = $1",
            &[&identity.as_str()],
        )
        .map(|_| ())
        .map_err(db(path))
    }
}

impl RecordTx<Policies> for Transaction<'_> {
    fn load(
        &mut self,
        path: &str,
        scope: &PolicyScope,
    ) -> Result<Option<Versioned<ExternalAccessPolicy>>, StoreError> {
        load_policy(self, path, scope)
    }
    fn store(
        &mut self,
        path: &str,
        p: &ExternalAccessPolicy,
        version: u64,
    ) -> Result<(), StoreError> {
        write_policy(self, path, p, version)
    }
    fn remove(&mut self, path: &str, scope: &PolicyScope) -> Result<(), StoreError> {
        self.execute("DELETE FROM policies WHERE key = $1", &[&scope.key()])
            .map(|_| ())
            .map_err(db(path))
    }
}

fn load_policy(
    c: &mut impl GenericClient,
    path: &str,
    scope: &PolicyScope,
) -> Result<Option<Versioned<ExternalAccessPolicy>>, StoreError> {
    let sql = format!("SELECT {} FROM policies WHERE key = $1", PolicyRow::COLUMNS);
    match c.query_opt(&sql, &[&scope.key()]).map_err(db(path))? {
        Some(row) => Ok(Some(PolicyRow::read(path, &row)?)),
        None if *scope == PolicyScope::Global => Ok(Some(default_global_policy())),
        None => Ok(None),
    }
}

fn write_policy(
    tx: &mut Transaction<'_>,
    path: &str,
    p: &ExternalAccessPolicy,
    version: u64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO policies (key, identity, description, enable_federation_access, \
         enable_xmpp_access, enable_outside_access, enable_public_cloud_access, \
         enable_public_cloud_audio_video_access, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (key) DO UPDATE SET identity = excluded.identity, description = excluded.description, \
         enable_federation_access = excluded.enable_federation_access, \
         enable_xmpp_access = excluded.enable_xmpp_access, \
         enable_outside_access = excluded.enable_outside_access, \
         enable_public_cloud_access = excluded.enable_public_cloud_access, \
         enable_public_cloud_audio_video_access = excluded.enable_public_cloud_audio_video_access, \
         version = excluded.version",
        &[
            &p.identity.key(),
            &p.identity.to_string(),
            &p.description,
            &p.enable_federation_access,
            &p.enable_xmpp_access,
            &p.enable_outside_access,
            &p.enable_public_cloud_access,
            &p.enable_public_cloud_audio_video_access,
            &(version as i64),
        ],
    )
    .map(|_| ())
    .map_err(db(path))
}

/// The token whose name (without ASCII case) or hash equals `value`.
fn load_token(
    c: &mut impl GenericClient,
    path: &str,
    by: TokenKey,
    value: &str,
) -> Result<Option<TokenInfo>, StoreError> {
    let sql = match by {
        TokenKey::Name => {
            "SELECT name, role, created FROM api_tokens WHERE lower(name) = lower($1)"
        }
        TokenKey::Hash => "SELECT name, role, created FROM api_tokens WHERE hash = $1",
    };
    let row = c.query_opt(sql, &[&value]).map_err(db(path))?;
    row.map(|r| token_from_row(path, (r.get(0), r.get(1), r.get(2))))
        .transpose()
}

#[derive(Clone, Copy)]
enum TokenKey {
    Name,
    Hash,
}

/// Record or withdraw one authorisation inside `tx`; whether a row changed.
fn apply_authorisation(
    tx: &mut Transaction<'_>,
    path: &str,
    local: &UserJid,
    remote: &UserJid,
    authorised: bool,
) -> Result<bool, StoreError> {
    let sql = if authorised {
        "INSERT INTO authorisations (local_user, remote_user) VALUES ($1, $2) ON CONFLICT DO NOTHING"
    } else {
        "DELETE FROM authorisations WHERE local_user = $1 AND remote_user = $2"
    };
    tx.execute(sql, &[&local.to_string(), &remote.to_string()])
        .map(|n| n > 0)
        .map_err(db(path))
}

fn text_pairs(rows: Vec<Row>) -> Vec<(String, String)> {
    rows.into_iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// The partners whose lowercase Identity is LIKE `like`, by Identity, with their additional
/// domains (run it in a snapshot: two queries).
fn list_partners(
    c: &mut impl GenericClient,
    path: &str,
    like: &str,
) -> Result<Vec<Versioned<XmppAllowedPartner>>, StoreError> {
    let e = db(path);
    let sql = format!(
        "SELECT {} FROM partners WHERE identity LIKE $1 ORDER BY identity",
        PartnerRow::column_list()
    );
    let mut partners = Vec::new();
    let mut slots = std::collections::HashMap::new();
    for row in c.query(&sql, &[&like]).map_err(&e)? {
        let p = PartnerRow::read(path, &row)?;
        slots.insert(p.value.identity.as_str().to_owned(), partners.len());
        partners.push(p);
    }
    for row in c
        .query(
            "SELECT identity, pattern FROM partner_domains WHERE position > 0 \
             AND identity LIKE $1 ORDER BY identity, position",
            &[&like],
        )
        .map_err(&e)?
    {
        let identity: &str = row.get(0);
        let pattern: &str = row.get(1);
        let slot = *slots.get(identity).ok_or_else(|| {
            corrupt(
                path,
                format!("domain '{pattern}' of unknown partner '{identity}'"),
            )
        })?;
        partners[slot]
            .value
            .additional_domains
            .push(parse_pattern(path, pattern)?);
    }
    Ok(partners)
}

/// The stored policies (Global first, then by key; no default Global when none is stored).
fn stored_policies(
    c: &mut impl GenericClient,
    path: &str,
) -> Result<Vec<Versioned<ExternalAccessPolicy>>, StoreError> {
    let sql = format!(
        "SELECT {} FROM policies ORDER BY key != 'global', key",
        PolicyRow::COLUMNS
    );
    let mut out = Vec::new();
    for row in c.query(&sql, &[]).map_err(db(path))? {
        out.push(PolicyRow::read(path, &row)?);
    }
    Ok(out)
}

impl Store for PostgresStore {
    fn partners(
        &self,
        identity_glob: Option<&str>,
    ) -> Result<Vec<Versioned<XmppAllowedPartner>>, StoreError> {
        let like = identity_glob
            .map(like_pattern)
            .unwrap_or_else(|| "%".to_owned());
        self.read_snapshot(|c, path| list_partners(c, path, &like))
    }

    fn partner(
        &self,
        identity: &Domain,
    ) -> Result<Option<Versioned<XmppAllowedPartner>>, StoreError> {
        self.read_snapshot(|c, path| load_partner(c, path, identity))
    }

    fn domain_owner(&self, pattern: &str) -> Result<Option<Domain>, StoreError> {
        self.read(|c, path| owner_in(c, pattern).map_err(db(path)))
    }

    fn create_partner(
        &self,
        partner: &XmppAllowedPartner,
        audit: &AuditContext,
    ) -> Result<Versioned<XmppAllowedPartner>, StoreError> {
        self.write(RECORDS, |tx, path| {
            writes::create::<Partners>(tx, path, partner, audit)
        })
    }

    fn import_partners(
        &self,
        partners: &[XmppAllowedPartner],
        audit: &AuditContext,
    ) -> Result<(), StoreError> {
        self.write(RECORDS, |tx, path| {
            for p in partners {
                writes::create::<Partners>(tx, path, p, audit)?;
            }
            Ok(())
        })
    }

    fn update_partner(
        &self,
        partner: &XmppAllowedPartner,
        expected_version: u64,
        audit: &AuditContext,
    ) -> Result<Versioned<XmppAllowedPartner>, StoreError> {
        self.write(RECORDS, |tx, path| {
            writes::update::<Partners>(tx, path, partner, expected_version, audit)
        })
    }

    fn delete_partner(
        &self,
        identity: &Domain,
        expected_version: Option<u64>,
        audit: &AuditContext,
    ) -> Result<XmppAllowedPartner, StoreError> {
        self.write(RECORDS, |tx, path| {
            writes::delete::<Partners>(tx, path, identity, expected_version, audit)
        })
    }

    fn policies(&self) -> Result<Vec<Versioned<ExternalAccessPolicy>>, StoreError> {
        self.read(|c, path| {
            let out = stored_policies(c, path)?;
            Ok(with_default_global(out))
        })
    }

    fn policy(
        &self,
        scope: &PolicyScope,
    ) -> Result<Option<Versioned<ExternalAccessPolicy>>, StoreError> {
        self.read(|c, path| load_policy(c, path, scope))
    }

    fn create_policy(
        &self,
        policy: &ExternalAccessPolicy,
        audit: &AuditContext,
    ) -> Result<Versioned<ExternalAccessPolicy>, StoreError> {
        self.write(RECORDS, |tx, path| {
            writes::create::<Policies>(tx, path, policy, audit)
        })
    }

    fn update_policy(
        &self,
        policy: &ExternalAccessPolicy,
        expected_version: u64,
        audit: &AuditContext,
    ) -> Result<Versioned<ExternalAccessPolicy>, StoreError> {
        self.write(RECORDS, |tx, path| {
            writes::update::<Policies>(tx, path, policy, expected_version, audit)
        })
    }

    fn delete_policy(
        &self,
        scope: &PolicyScope,
        audit: &AuditContext,
    ) -> Result<ExternalAccessPolicy, StoreError> {
        self.write(RECORDS, |tx, path| {
            writes::delete_policy(tx, path, scope, audit)
        })
    }

    fn grants(&self) -> Result<Vec<(UserJid, String)>, StoreError> {
        self.read(|c, path| {
            let rows = c
                .query(
                    "SELECT user_jid, tag FROM policy_grants ORDER BY user_jid",
                    &[],
                )
                .map_err(db(path))?;
            grants_from_rows(path, text_pairs(rows))
        })
    }

    fn grant_policy(
        &self,
        user: &UserJid,
        tag: Option<&str>,
        audit: &AuditContext,
    ) -> Result<(), StoreError> {
        self.write(RECORDS, |tx, path| {
            writes::grant(tx, path, user, tag, audit)
        })
    }

    fn gateway_configuration(&self) -> Result<XmppGatewayConfiguration, StoreError> {
        self.read(|c, path| {
            let rows = c
                .query("SELECT name, value FROM gateway_settings", &[])
                .map_err(db(path))?;
            configuration_from_rows(path, text_pairs(rows))
        })
    }

    fn set_gateway_configuration(
        &self,
        config: &XmppGatewayConfiguration,
        audit: &AuditContext,
    ) -> Result<(), StoreError> {
        self.write(RECORDS, |tx, path| {
            writes::set_gateway(tx, path, config, audit)
        })
    }

    fn import_records(&self, batch: &ImportBatch, audit: &AuditContext) -> Result<(), StoreError> {
        self.write(RECORDS, |tx, path| writes::import(tx, path, batch, audit))
    }

    fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = i64::from(query.limit.unwrap_or(100));
        let after = query.after_id.unwrap_or(0) as i64;
        self.read(|c, path| {
            let rows = c
                .query(
                    "SELECT id, time, actor, command, target, before, after FROM audit_log \
                     WHERE id > $1 AND ($2::TEXT IS NULL OR lower(target) = lower($2)) \
                     ORDER BY id DESC LIMIT $3",
                    &[&after, &query.target, &limit],
                )
                .map_err(db(path))?;
            let json = |t: Option<String>| t.and_then(|t| serde_json::from_str(&t).ok());
            let mut entries: Vec<AuditEntry> = rows
                .into_iter()
                .map(|r| AuditEntry {
                    id: r.get::<_, i64>(0) as u64,
                    time: r.get(1),
                    actor: r.get(2),
                    command: r.get(3),
                    target: r.get(4),
                    before: json(r.get(5)),
                    after: json(r.get(6)),
                })
                .collect();
            entries.reverse();
            Ok(entries)
        })
    }

    fn create_token(
        &self,
        name: &str,
        role: TokenRole,
        hash: &str,
        audit: &AuditContext,
    ) -> Result<TokenInfo, StoreError> {
        self.write(RECORDS, |tx, path| {
            writes::create_token(tx, path, name, role, hash, audit)
        })
    }

    fn revoke_token(&self, name: &str, audit: &AuditContext) -> Result<TokenInfo, StoreError> {
        self.write(RECORDS, |tx, path| {
            writes::revoke_token(tx, path, name, audit)
        })
    }

    fn tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        self.read(|c, path| {
            c.query(
                "SELECT name, role, created FROM api_tokens ORDER BY name",
                &[],
            )
            .map_err(db(path))?
            .into_iter()
            .map(|r| token_from_row(path, (r.get(0), r.get(1), r.get(2))))
            .collect()
        })
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>, StoreError> {
        self.read(|c, path| load_token(c, path, TokenKey::Hash, hash))
    }

    fn set_authorisation(
        &self,
        local: &UserJid,
        remote: &UserJid,
        authorised: bool,
    ) -> Result<bool, StoreError> {
        self.write(AUTHORISATIONS, |tx, path| {
            apply_authorisation(tx, path, local, remote, authorised)
        })
    }

    fn set_authorisations(&self, changes: &[(UserJid, UserJid, bool)]) -> Result<(), StoreError> {
        self.write(AUTHORISATIONS, |tx, path| {
            for (local, remote, authorised) in changes {
                apply_authorisation(tx, path, local, remote, *authorised)?;
            }
            Ok(())
        })
    }

    fn is_authorised(&self, local: &UserJid, remote: &UserJid) -> Result<bool, StoreError> {
        let (local, remote) = (local.to_string(), remote.to_string());
        self.read(|c, path| {
            c.query_opt(
                "SELECT 1 FROM authorisations WHERE local_user = $1 AND remote_user = $2",
                &[&local, &remote],
            )
            .map(|found| found.is_some())
            .map_err(db(path))
        })
    }

    fn authorisations(&self, local: Option<&UserJid>) -> Result<Vec<Authorisation>, StoreError> {
        let local = local.map(|l| l.to_string());
        self.read(|c, path| {
            let rows = c
                .query(
                    "SELECT local_user, remote_user, since FROM authorisations \
                     WHERE $1::TEXT IS NULL OR local_user = $1 ORDER BY local_user, remote_user",
                    &[&local],
                )
                .map_err(db(path))?;
            let rows = rows
                .into_iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            authorisations_from_rows(path, rows)
        })
    }

    fn partner_health(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        self.read(|c, path| {
            let rows = c
                .query(
                    "SELECT partner, direction, data FROM partner_health ORDER BY partner, direction",
                    &[],
                )
                .map_err(db(path))?;
            Ok(rows
                .into_iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect())
        })
    }

    /// One statement (so one transaction, and safe to run again after a broken connection);
    /// neither under the write lock nor announced: health is no admin change.
    fn save_partner_health(&self, rows: &[(String, String, String)]) -> Result<(), StoreError> {
        let partners: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        let directions: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
        let data: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
        self.read(|c, path| {
            c.execute(
                "INSERT INTO partner_health (partner, direction, data) \
                 SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[]) \
                 ON CONFLICT (partner, direction) DO UPDATE SET data = excluded.data",
                &[&partners, &directions, &data],
            )
            .map(drop)
            .map_err(db(path))
        })
    }

    fn dump(&self) -> Result<StoreDump, StoreError> {
        self.read_snapshot(|c, path| {
            let e = db(path);
            let grants = text_pairs(
                c.query(
                    "SELECT user_jid, tag FROM policy_grants ORDER BY user_jid",
                    &[],
                )
                .map_err(&e)?,
            );
            let settings = text_pairs(
                c.query("SELECT name, value FROM gateway_settings", &[])
                    .map_err(&e)?,
            );
            let authorisations = c
                .query(
                    "SELECT local_user, remote_user, since FROM authorisations \
                     ORDER BY local_user, remote_user",
                    &[],
                )
                .map_err(&e)?
                .into_iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            let partner_health = c
                .query(
                    "SELECT partner, direction, data FROM partner_health ORDER BY partner, direction",
                    &[],
                )
                .map_err(&e)?
                .into_iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            let audit_log = c
                .query(
                    "SELECT time, actor, command, target, before, after FROM audit_log ORDER BY id",
                    &[],
                )
                .map_err(&e)?
                .into_iter()
                .map(|r| AuditRecord {
                    time: r.get(0),
                    actor: r.get(1),
                    command: r.get(2),
                    target: r.get(3),
                    before: r.get(4),
                    after: r.get(5),
                })
                .collect();
            let tokens = c
                .query(
                    "SELECT name, role, hash, created FROM api_tokens ORDER BY name",
                    &[],
                )
                .map_err(&e)?
                .into_iter()
                .map(|r| token_record_from_row(path, (r.get(0), r.get(1), r.get(2), r.get(3))))
                .collect::<Result<_, _>>()?;
            Ok(StoreDump {
                source: path.to_owned(),
                partners: list_partners(c, path, "%")?,
                policies: stored_policies(c, path)?,
                grants: grants_from_rows(path, grants)?,
                gateway_configuration: configuration_from_rows(path, settings)?,
                authorisations: authorisations_from_rows(path, authorisations)?,
                partner_health,
                audit_log,
                tokens,
            })
        })
    }

    /// Under the write lock like every write, announced as a change of records and of
    /// authorisations (those are replaced too).
    fn restore(
        &self,
        dump: &StoreDump,
        force: bool,
        audit: &AuditContext,
    ) -> Result<(), StoreError> {
        self.write(RECORDS, |tx, path| {
            let e = db(path);
            let row = tx.query_one(COUNT_SQL, &[]).map_err(&e)?;
            let mut columns = [0i64; 7];
            for (i, n) in columns.iter_mut().enumerate() {
                *n = row.try_get(i).map_err(&e)?;
            }
            let settings = text_pairs(
                tx.query("SELECT name, value FROM gateway_settings", &[])
                    .map_err(&e)?,
            );
            let found = counts_from(columns, is_configured(path, settings));
            refuse_unless_empty(path, found, force)?;
            for sql in CLEAR_SQL {
                tx.execute(*sql, &[]).map_err(&e)?;
            }
            for p in &dump.partners {
                write_partner(tx, path, &p.value, p.version)?;
            }
            for p in &dump.policies {
                write_policy(tx, path, &p.value, p.version)?;
            }
            // The many-row kinds each in one statement, from arrays.
            let users: Vec<String> = dump.grants.iter().map(|g| g.0.to_string()).collect();
            let tags: Vec<&str> = dump.grants.iter().map(|g| g.1.as_str()).collect();
            tx.execute(
                "INSERT INTO policy_grants (user_jid, tag) \
                 SELECT * FROM unnest($1::TEXT[], $2::TEXT[])",
                &[&users, &tags],
            )
            .map_err(&e)?;
            if dump.gateway_configuration != XmppGatewayConfiguration::default() {
                for (name, value) in settings_rows(&dump.gateway_configuration) {
                    tx.execute(
                        "INSERT INTO gateway_settings (name, value) VALUES ($1, $2)",
                        &[&name, &value],
                    )
                    .map_err(&e)?;
                }
            }
            let locals: Vec<String> = dump
                .authorisations
                .iter()
                .map(|a| a.local_user.to_string())
                .collect();
            let remotes: Vec<String> = dump
                .authorisations
                .iter()
                .map(|a| a.remote_user.to_string())
                .collect();
            let since: Vec<&str> = dump
                .authorisations
                .iter()
                .map(|a| a.since.as_str())
                .collect();
            tx.execute(
                "INSERT INTO authorisations (local_user, remote_user, since) \
                 SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[])",
                &[&locals, &remotes, &since],
            )
            .map_err(&e)?;
            let health = &dump.partner_health;
            let partners: Vec<&str> = health.iter().map(|r| r.0.as_str()).collect();
            let directions: Vec<&str> = health.iter().map(|r| r.1.as_str()).collect();
            let data: Vec<&str> = health.iter().map(|r| r.2.as_str()).collect();
            tx.execute(
                "INSERT INTO partner_health (partner, direction, data) \
                 SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[])",
                &[&partners, &directions, &data],
            )
            .map_err(&e)?;
            // In order: the new ids (after any the target handed out before) keep it.
            let log = &dump.audit_log;
            let texts = |f: fn(&AuditRecord) -> &str| -> Vec<&str> { log.iter().map(f).collect() };
            let (times, actors, commands, targets) = (
                texts(|a| &a.time),
                texts(|a| &a.actor),
                texts(|a| &a.command),
                texts(|a| &a.target),
            );
            let befores: Vec<Option<&str>> = log.iter().map(|a| a.before.as_deref()).collect();
            let afters: Vec<Option<&str>> = log.iter().map(|a| a.after.as_deref()).collect();
            tx.execute(
                "INSERT INTO audit_log (time, actor, command, target, before, after) \
                 SELECT t, a, c, g, b, f FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], \
                 $4::TEXT[], $5::TEXT[], $6::TEXT[]) WITH ORDINALITY AS u(t, a, c, g, b, f, n) \
                 ORDER BY n",
                &[&times, &actors, &commands, &targets, &befores, &afters],
            )
            .map_err(&e)?;
            for t in &dump.tokens {
                tx.execute(
                    "INSERT INTO api_tokens (name, role, hash, created) VALUES ($1, $2, $3, $4)",
                    &[&t.name, &t.role.name(), &t.hash, &t.created],
                )
                .map_err(&e)?;
            }
            let replaced = (found != RecordCounts::default()).then(|| to_json(&found));
            insert_audit(tx, audit, COPY_TARGET, replaced, Some(dump.audit_json())).map_err(&e)?;
            tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &AUTHORISATIONS])
                .map_err(&e)?;
            Ok(())
        })
    }

    fn revision(&self) -> Result<u64, StoreError> {
        self.read(|c, path| {
            c.query_one("SELECT coalesce(max(id), 0) FROM audit_log", &[])
                .map(|r| r.get::<_, i64>(0) as u64)
                .map_err(db(path))
        })
    }

    fn heartbeat(&self, beat: &NodeHeartbeat, lease_ttl: Duration) -> Result<(), StoreError> {
        self.operational(|tx, path| cluster::pg::heartbeat(tx, path, beat, lease_ttl))
    }

    fn nodes(&self, lease_ttl: Duration) -> Result<Vec<NodeStatus>, StoreError> {
        self.read_snapshot(|tx, path| cluster::pg::nodes(tx, path, lease_ttl))
    }

    fn forget_node(&self, node: &str) -> Result<bool, StoreError> {
        self.operational(|tx, path| cluster::pg::forget_node(tx, path, node))
    }

    fn acquire_stream_lease(
        &self,
        lease: &StreamLease,
        lease_ttl: Duration,
        decide: &mut dyn FnMut(ConnectionCounts) -> Result<(), Refusal>,
    ) -> Result<Result<(), Refusal>, StoreError> {
        // Serialised by the lease lock it takes, not the write lock: admin writes do not wait.
        self.operational(|tx, path| {
            cluster::pg::acquire_stream_lease(tx, path, lease, lease_ttl, &mut *decide)
        })
    }

    fn release_stream_lease(&self, node: &str, stream: u64) -> Result<bool, StoreError> {
        self.operational(|tx, path| cluster::pg::release_stream_lease(tx, path, node, stream))
    }

    fn release_node_leases(&self, node: &str) -> Result<u64, StoreError> {
        self.operational(|tx, path| cluster::pg::release_node_leases(tx, path, node))
    }

    fn watch(&self) -> Result<Option<Box<dyn ChangeWatch>>, StoreError> {
        let client = self.connect_bounded(Setup::Listen)?;
        Ok(Some(Box::new(PgWatch {
            client: Some(client),
            address: self.server.url.address(),
            shown: self.server.shown.clone(),
        })))
    }
}

/// [`Store::watch`] for PostgreSQL: a connection of its own that LISTENs on [`CHANNEL`].
struct PgWatch {
    /// Always Some until dropped.
    client: Option<Client>,
    address: String,
    shown: String,
}

impl Drop for PgWatch {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            close_elsewhere(client);
        }
    }
}

impl ChangeWatch for PgWatch {
    fn wait(&mut self, timeout: Duration) -> Result<Changes, StoreError> {
        let broken = |reason: String| StoreError::Access {
            path: self.shown.clone(),
            reason: format!(
                "the change notifications from PostgreSQL at {} stopped: {reason}",
                self.address
            ),
        };
        let Some(client) = self.client.as_mut() else {
            return Err(broken("the connection is closed".into()));
        };
        let mut changes = Changes::default();
        {
            let mut notifications = client.notifications();
            let mut note = |payload: &str| match payload {
                AUTHORISATIONS => changes.authorisations = true,
                // (records, and anything a newer fedgate may announce: re-read it all)
                _ => changes.records = true,
            };
            let first = notifications
                .timeout_iter(timeout)
                .next()
                .map_err(|e| broken(with_causes(&e)))?;
            if let Some(first) = first {
                note(first.payload());
                // Take the others already here together with the first.
                let mut pending = notifications.iter();
                while let Some(more) = pending.next().map_err(|e| broken(with_causes(&e)))? {
                    note(more.payload());
                }
            }
        }
        if !changes.any() && client.is_closed() {
            return Err(broken("the connection is closed".into()));
        }
        Ok(changes)
    }
}
