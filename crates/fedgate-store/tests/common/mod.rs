//! Shared by the store tests: a fresh store of either backend ([`Fixture`], and the
//! [`on_both_backends!`] macro that runs one test function against each), and a real PostgreSQL
//! server from Debian's package, started in a temp dir for this test binary and stopped when the
//! binary exits, however it exits.
//!
//! The server listens on 127.0.0.1 at a port free at start-up and asks TCP clients for a password
//! (SCRAM); role `fedgate` (password [`PG_PASSWORD`]) owns one fresh database per fixture. It
//! offers TLS with a certificate for 127.0.0.1 and localhost from a CA of its own
//! ([`PgServer::ca_file`]); the fixtures connect with sslmode=disable, the TLS tests verify it.
//! PostgreSQL missing is a test failure that says what to install, never a skip.

#![allow(dead_code)] // each test binary uses part of this

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use fedgate_model::gateway_settings::Secret;
use fedgate_model::{Domain, DomainPattern, XmppAllowedPartner};
use fedgate_store::{AuditContext, PostgresStore, PostgresUrl, SqliteStore, Store, StoreUrl};

/// The audit context of a test change (actor `test:alice`).
pub fn audit(cmd: &str) -> AuditContext {
    AuditContext {
        actor: "test:alice".into(),
        command: cmd.into(),
    }
}

/// A partner with default settings and these additional domains.
pub fn partner(identity: &str, extra: &[&str]) -> XmppAllowedPartner {
    let mut p = XmppAllowedPartner::new(Domain::parse(identity).unwrap());
    p.additional_domains = extra
        .iter()
        .map(|d| DomainPattern::parse(d).unwrap())
        .collect();
    p
}

/// The password of the `fedgate` role on the test server.
pub const PG_PASSWORD: &str = "fedgate-test-password";
const SUPERUSER_PASSWORD: &str = "superuser-test-password";

pub struct PgServer {
    /// The temp dir holding the data dir, socket, log, password file and TLS files.
    pub root: PathBuf,
    pub port: u16,
    /// The directory of initdb, pg_ctl and postgres.
    bin: PathBuf,
}

/// The PostgreSQL server of this test binary, started on first use.
pub fn pg_server() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    SERVER.get_or_init(start_server)
}

/// The newest `/usr/lib/postgresql/<version>/bin` with initdb, pg_ctl and postgres.
fn pg_bin() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            ["initdb", "pg_ctl", "postgres"]
                .iter()
                .all(|p| bin.join(p).exists())
                .then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "the PostgreSQL tests need a PostgreSQL server: none found under \
             /usr/lib/postgresql/<version>/bin. Install Debian's package 'postgresql' \
             (apt-get install postgresql, or run: bash .ci/install-deps.sh)"
        ),
    }
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A command run as the `postgres` user when we are root (initdb refuses root), else as us.
fn as_server_user(program: &Path) -> Command {
    if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn start_server() -> PgServer {
    let bin = pg_bin();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let root = std::env::temp_dir().join(format!("fedgate-pg-test-{}-{stamp}", std::process::id()));
    std::fs::create_dir(&root).expect("create the PostgreSQL temp dir");
    let data = root.join("data");
    let pwfile = root.join("superuser-password");
    std::fs::File::create(&pwfile)
        .and_then(|mut f| f.write_all(SUPERUSER_PASSWORD.as_bytes()))
        .expect("write the password file");
    write_tls_files(&root);
    if running_as_root() {
        let mut chown = Command::new("chown");
        chown.args(["-R", "postgres:"]).arg(&root);
        run(chown, "chown the PostgreSQL temp dir to postgres");
    }
    // The watchdog: once this test process is gone (passed, failed or killed), stop the server and
    // remove its files. In its own session so that a Ctrl-C to the tests does not kill it first.
    let stop = as_server_user(&bin.join("pg_ctl"));
    let stop_line: Vec<String> = std::iter::once(stop.get_program())
        .chain(stop.get_args())
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect();
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.2; done; {stop} -D {data} -m fast stop >/dev/null 2>&1; rm -rf {root}",
        pid = std::process::id(),
        stop = stop_line.join(" "),
        data = shell_quote(&data.to_string_lossy()),
        root = shell_quote(&root.to_string_lossy()),
    );
    let mut watchdog = Command::new("setsid");
    watchdog
        .args(["--fork", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    run(watchdog, "start the PostgreSQL watchdog (setsid, sh)");

    let mut initdb = as_server_user(&bin.join("initdb"));
    initdb
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-sync",
            "--no-instructions",
            "-E",
            "UTF8",
        ])
        .arg(format!("--pwfile={}", pwfile.display()));
    run(initdb, "initdb");

    let mut last_error = String::new();
    for _ in 0..3 {
        let port = free_port();
        let out = start_command(&bin, &root, port)
            .stdin(Stdio::null())
            .output()
            .expect("run pg_ctl start");
        if out.status.success() {
            let server = PgServer { root, port, bin };
            server.admin_sql(&format!(
                "CREATE ROLE fedgate LOGIN PASSWORD '{PG_PASSWORD}'"
            ));
            return server;
        }
        last_error = format!(
            "{}{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(root.join("server.log")).unwrap_or_default()
        );
    }
    panic!("PostgreSQL did not start:\n{last_error}");
}

/// `pg_ctl start` of the server in `root` on `port`, waiting until it accepts connections.
fn start_command(bin: &Path, root: &Path, port: u16) -> Command {
    let mut start = as_server_user(&bin.join("pg_ctl"));
    start
        .arg("-D")
        .arg(root.join("data"))
        .arg("-l")
        .arg(root.join("server.log"))
        .arg("-o")
        .arg(format!(
            "-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=16MB \
             -c ssl=on -c ssl_cert_file={root}/server.crt -c ssl_key_file={root}/server.key",
            root = root.display()
        ))
        .args(["-w", "-t", "60", "start"]);
    start
}

/// A CA (`ca.pem`) and the server's certificate for 127.0.0.1 and localhost signed by it
/// (`server.crt`, `server.key`, mode 0600 as PostgreSQL demands).
fn write_tls_files(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "fedgate test PostgreSQL CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("server key");
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("server params");
    let cert = params.signed_by(&key, &issuer).expect("server certificate");
    std::fs::write(root.join("ca.pem"), ca_cert.pem()).expect("write ca.pem");
    std::fs::write(root.join("server.crt"), cert.pem()).expect("write server.crt");
    let key_file = root.join("server.key");
    std::fs::write(&key_file, key.serialize_pem()).expect("write server.key");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))
        .expect("chmod server.key");
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

impl PgServer {
    /// Stop the server (fast: every session is ended), start it again on the same port, and
    /// return once it accepts connections. For tests that own their binary's server.
    pub fn restart(&self) {
        self.stop();
        self.start();
    }

    /// Stop the server (fast: every session is ended). For tests that own their binary's server.
    pub fn stop(&self) {
        let mut stop = as_server_user(&self.bin.join("pg_ctl"));
        stop.arg("-D")
            .arg(self.root.join("data"))
            .args(["-m", "fast", "-w", "-t", "60", "stop"]);
        run(stop, "pg_ctl stop");
    }

    /// Start the stopped server again on its port; returns once it accepts connections.
    pub fn start(&self) {
        run(
            start_command(&self.bin, &self.root, self.port),
            "pg_ctl start",
        );
    }

    /// The PEM file of the CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.root.join("ca.pem")
    }

    /// Run SQL as the superuser (database `postgres`).
    pub fn admin_sql(&self, sql: &str) {
        self.admin_client()
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// A plain connection as `fedgate` to one of its databases (to change what the store wrote).
    pub fn client_as_fedgate(&self, database: &str) -> postgres::Client {
        postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user("fedgate")
            .password(PG_PASSWORD)
            .dbname(database)
            .connect(postgres::NoTls)
            .expect("connect to the test PostgreSQL as fedgate")
    }

    pub fn admin_client(&self) -> postgres::Client {
        postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .password(SUPERUSER_PASSWORD)
            .dbname("postgres")
            .connect(postgres::NoTls)
            .expect("connect to the test PostgreSQL as its superuser")
    }

    /// A new empty database owned by `fedgate`; its URL (no password in it).
    pub fn fresh_database(&self) -> PostgresUrl {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let name = format!("fedgate_test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.admin_sql(&format!("CREATE DATABASE {name} OWNER fedgate"));
        self.url(&name)
    }

    pub fn url(&self, database: &str) -> PostgresUrl {
        postgres_url(&format!(
            "postgres://fedgate@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        ))
    }
}

/// A `postgres://` URL the test knows to be valid.
pub fn postgres_url(text: &str) -> PostgresUrl {
    match StoreUrl::parse(text) {
        Ok(StoreUrl::Postgres(url)) => url,
        other => panic!("test URL {text}: {other:?}"),
    }
}

pub fn pg_password() -> Option<Secret> {
    Some(Secret::new(PG_PASSWORD.to_owned()))
}

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where a fixture's store lives, to open more handles to it (as other processes or nodes would).
#[derive(Clone)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(PostgresUrl),
}

impl Location {
    pub fn open(&self) -> Box<dyn Store> {
        match self {
            Location::Sqlite(path) => Box::new(SqliteStore::open(path).expect("open SQLite store")),
            Location::Postgres(url) => {
                Box::new(PostgresStore::connect(url, pg_password()).expect("open PostgreSQL store"))
            }
        }
    }
}

/// A fresh, empty store of one backend, and how to open it again.
pub struct Fixture {
    pub backend: Backend,
    pub location: Location,
    pub store: Box<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    pub fn new(backend: Backend) -> Fixture {
        let (location, dir) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                (Location::Sqlite(dir.path().join("fedgate.db")), Some(dir))
            }
            Backend::Postgres => (Location::Postgres(pg_server().fresh_database()), None),
        };
        Fixture {
            backend,
            store: location.open(),
            location,
            _dir: dir,
        }
    }

    /// Another handle to the same store.
    pub fn open_again(&self) -> Box<dyn Store> {
        self.location.open()
    }
}

impl std::ops::Deref for Fixture {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        &*self.store
    }
}

/// For each named `fn name(store: Fixture)` in the enclosing module, a test `sqlite::name` and a
/// test `postgres::name`. (`#[macro_use] mod common;` first.)
#[allow(unused_macros)]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name(crate::common::Fixture::new(crate::common::Backend::Sqlite))
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    super::$name(crate::common::Fixture::new(crate::common::Backend::Postgres))
                }
            )*
        }
    };
}
