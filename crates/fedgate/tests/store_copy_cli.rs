//! `fedgate store copy <FROM> <TO> [--force]` against the real binary: SQLite into SQLite, a
//! refusal naming --force that leaves the target as it was, --force, the JSON summary, bad
//! arguments; and SQLite into a real PostgreSQL (the store tests' server, tests/common) without
//! ever printing the password, the dialback secret or a token hash.

#[path = "../../fedgate-store/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Output};

use fedgate_model::gateway_settings::parse_dialback_passphrase;
use fedgate_store::{
    AuditContext, AuditQuery, PostgresStore, SqliteStore, Store, StoreDump, TokenRole,
};

const SECRET: &str = "a very secret dialback phrase";
const HASH: &str = "aa00000000000000000000000000000000000000000000000000000000000001";

/// `fedgate` run in `dir` with no store, config or password settings from the environment.
fn fedgate(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .current_dir(dir)
        .args(args)
        .env("USER", "bob")
        .env_remove("SUDO_USER")
        .env_remove("FEDGATE_STORE")
        .env_remove("FEDGATE_CONFIG")
        .env_remove("FEDGATE_STORE_PASSWORD")
        .env_remove("FEDGATE_STORE_PASSWORD_FILE")
        .env_remove("PGPASSWORD")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A source store with a partner, a token, a dialback secret and an authorisation.
fn fill(store: &dyn Store) {
    let audit = AuditContext {
        actor: "cli:alice".into(),
        command: "setup".into(),
    };
    let partner = fedgate_model::XmppAllowedPartner::new(
        fedgate_model::Domain::parse("contoso.com").unwrap(),
    );
    store.create_partner(&partner, &audit).unwrap();
    store
        .create_token("ops", TokenRole::Admin, HASH, &audit)
        .unwrap();
    let mut config = store.gateway_configuration().unwrap();
    config.dialback_passphrase = Some(parse_dialback_passphrase(SECRET).unwrap());
    store.set_gateway_configuration(&config, &audit).unwrap();
    let user = |j: &str| fedgate_model::UserJid::parse(j).unwrap();
    store
        .set_authorisation(&user("alice@corp.example"), &user("x@contoso.com"), true)
        .unwrap();
}

/// A dump without its source name, to compare two stores' records.
fn records(store: &dyn Store) -> StoreDump {
    StoreDump {
        source: String::new(),
        ..store.dump().unwrap()
    }
}

fn assert_no_secret(out: &Output) {
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!all.contains("very secret") && !all.contains(HASH), "{all}");
}

#[test]
fn copy_sqlite_into_sqlite_refuse_a_non_empty_target_and_force() {
    let dir = tempfile::tempdir().unwrap();
    fill(&SqliteStore::open(&dir.path().join("a.db")).unwrap());

    let out = fedgate(dir.path(), &["store", "copy", "sqlite:a.db", "sqlite:b.db"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "copied 1 partner, 0 policies, 0 grants, 1 gateway configuration, 1 authorisation, \
         0 partner health records, 3 audit entries, 1 token from sqlite:a.db to sqlite:b.db\n"
    );
    assert_no_secret(&out);
    let source = SqliteStore::open(&dir.path().join("a.db")).unwrap();
    let target = SqliteStore::open(&dir.path().join("b.db")).unwrap();
    let copied = records(&target);
    let mut expected = records(&source);
    assert_eq!(copied.audit_log.len(), expected.audit_log.len() + 1);
    expected.audit_log.push(copied.audit_log[3].clone());
    assert_eq!(copied, expected);
    assert_eq!(
        (
            copied.audit_log[3].actor.as_str(),
            copied.audit_log[3].command.as_str()
        ),
        ("cli:bob", "fedgate store copy")
    );
    let token = target.token_by_hash(HASH).unwrap().unwrap();
    assert_eq!((token.name.as_str(), token.role), ("ops", TokenRole::Admin));
    assert_eq!(
        target
            .gateway_configuration()
            .unwrap()
            .dialback_passphrase
            .unwrap()
            .expose(),
        SECRET
    );

    // Again: the target is not empty now. Refused, saying what it holds and --force, unchanged.
    let before = records(&target);
    let out = fedgate(dir.path(), &["store", "copy", "sqlite:a.db", "sqlite:b.db"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("The store 'b.db' is not empty: it holds 1 partner,")
            && err.contains("4 audit entries")
            && err.contains("use --force"),
        "{err}"
    );
    assert_eq!(text(&out.stdout), "");
    assert_eq!(records(&target), before);

    // --force replaces it; --output json gives the counts.
    let out = fedgate(
        dir.path(),
        &[
            "--output",
            "json",
            "store",
            "copy",
            "sqlite:a.db",
            "sqlite:b.db",
            "--force",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(summary["Partners"], 1);
    assert_eq!(summary["Tokens"], 1);
    assert_eq!(summary["AuditEntries"], 3);
    assert_eq!(summary["From"], "sqlite:a.db");
    assert_eq!(summary["To"], "sqlite:b.db");
    let log = target
        .audit_log(&AuditQuery {
            limit: Some(1000),
            ..AuditQuery::default()
        })
        .unwrap();
    // The source's three, then this copy's own entry (the first copy's was replaced).
    assert_eq!(log.len(), 4);
    assert_eq!(log[3].target, "store");
    assert_eq!(log[3].before.as_ref().unwrap()["AuditEntries"], 4);
}

#[test]
fn bad_arguments_are_refused_without_creating_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = fedgate(
        dir.path(),
        &["store", "copy", "sqlite:missing.db", "sqlite:b.db"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("sqlite:missing.db, does not exist"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.path().join("missing.db").exists());
    assert!(!dir.path().join("b.db").exists());

    SqliteStore::open(&dir.path().join("a.db")).unwrap();
    let out = fedgate(
        dir.path(),
        &["store", "copy", "sqlite:a.db", "sqlite:./a.db"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("the same store"),
        "{}",
        text(&out.stderr)
    );

    let out = fedgate(dir.path(), &["store", "copy", "mysql://x/y", "sqlite:b.db"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("'<FROM>'"),
        "{}",
        text(&out.stderr)
    );

    let out = fedgate(dir.path(), &["store", "copy", "sqlite:a.db"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn copy_sqlite_into_postgresql_never_prints_the_password() {
    let dir = tempfile::tempdir().unwrap();
    fill(&SqliteStore::open(&dir.path().join("a.db")).unwrap());
    let server = common::pg_server();
    let url = server.fresh_database();
    let with_password = format!(
        "postgres://fedgate:{}@127.0.0.1:{}/{}?sslmode=disable",
        common::PG_PASSWORD,
        server.port,
        url.database
    );

    let out = fedgate(
        dir.path(),
        &["store", "copy", "sqlite:a.db", &with_password],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("copied 1 partner,"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "to postgres://fedgate:********@127.0.0.1:{}/",
            server.port
        )),
        "{stdout}"
    );
    assert!(!stdout.contains(common::PG_PASSWORD), "{stdout}");
    assert_no_secret(&out);

    let pool = PostgresStore::connect(&url, common::pg_password()).unwrap();
    let source = SqliteStore::open(&dir.path().join("a.db")).unwrap();
    assert_eq!(pool.partners(None).unwrap(), source.partners(None).unwrap());
    assert_eq!(
        pool.token_by_hash(HASH).unwrap().map(|t| t.role),
        Some(TokenRole::Admin)
    );

    // The refusal of the non-empty pool names it without the password.
    let out = fedgate(
        dir.path(),
        &["store", "copy", "sqlite:a.db", &with_password],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("--force") && err.contains("********"), "{err}");
    assert!(!err.contains(common::PG_PASSWORD), "{err}");

    // And back into a new SQLite file.
    let out = fedgate(
        dir.path(),
        &["store", "copy", &with_password, "sqlite:c.db"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let back = SqliteStore::open(&dir.path().join("c.db")).unwrap();
    assert_eq!(back.partners(None).unwrap(), source.partners(None).unwrap());
    assert_eq!(
        back.authorisations(None).unwrap(),
        source.authorisations(None).unwrap()
    );
}
