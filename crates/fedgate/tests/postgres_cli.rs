//! The CLI on a PostgreSQL store, as an admin runs it: the real `fedgate` binary, the password
//! from each source it is read from, and a refused login that names the server and not the
//! password. The server is the store tests' (crates/fedgate-store/tests/common).

#[path = "../../fedgate-store/tests/common/mod.rs"]
mod common;

use std::process::Command;

use common::{PG_PASSWORD, pg_password, pg_server};
use fedgate_store::{PostgresStore, Store};

/// `fedgate` with no store or password settings inherited from the environment.
fn fedgate(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fedgate"));
    c.current_dir(dir)
        .env("USER", "tester")
        .env_remove("FEDGATE_STORE")
        .env_remove("FEDGATE_CONFIG")
        .env_remove("FEDGATE_STORE_PASSWORD")
        .env_remove("FEDGATE_STORE_PASSWORD_FILE")
        .env_remove("PGPASSWORD");
    c
}

fn run(mut c: Command) -> (bool, String, String) {
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_manages_partners_in_postgresql_with_the_password_from_each_source() {
    let dir = tempfile::tempdir().unwrap();
    let server = pg_server();
    let url = server.fresh_database();
    let store = url.to_string();
    let file = dir.path().join("store-password");
    std::fs::write(&file, format!("{PG_PASSWORD}\n")).unwrap();

    // From a file, with the URL on the command line.
    let mut c = fedgate(dir.path());
    c.env("FEDGATE_STORE_PASSWORD_FILE", &file).args([
        "--store",
        &store,
        "New-CsXmppAllowedPartner",
        "-Identity",
        "contoso.com",
        "-PartnerType",
        "PublicVerified",
    ]);
    let (ok, out, err) = run(c);
    assert!(ok, "{out}\n{err}");
    // From FEDGATE_STORE_PASSWORD, with the URL in FEDGATE_STORE.
    let mut c = fedgate(dir.path());
    c.env("FEDGATE_STORE", &store)
        .env("FEDGATE_STORE_PASSWORD", PG_PASSWORD)
        .args(["New-CsXmppAllowedPartner", "-Identity", "fabrikam.com"]);
    let (ok, out, err) = run(c);
    assert!(ok, "{out}\n{err}");
    // From PGPASSWORD, as libpq reads it.
    let mut c = fedgate(dir.path());
    c.env("PGPASSWORD", PG_PASSWORD).args([
        "--store",
        &store,
        "--output",
        "json",
        "Get-CsXmppAllowedPartner",
    ]);
    let (ok, out, err) = run(c);
    assert!(ok, "{out}\n{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["Identity"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["contoso.com", "fabrikam.com"]);
    // Another node (here: the library) sees the same records, audited with the CLI's actor.
    let node = PostgresStore::connect(&url, pg_password()).unwrap();
    assert_eq!(node.partners(None).unwrap().len(), 2);
    let log = node
        .audit_log(&fedgate_store::AuditQuery::default())
        .unwrap();
    assert_eq!(log.len(), 2);
    assert!(log[0].actor.contains("tester"), "{:?}", log[0]);

    // A wrong password: exit 1, the server named, the password nowhere.
    let mut c = fedgate(dir.path());
    c.env("FEDGATE_STORE_PASSWORD", "wrong-secret-1234").args([
        "--store",
        &store,
        "Get-CsXmppAllowedPartner",
    ]);
    let (ok, out, err) = run(c);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "PostgreSQL at 127.0.0.1:{} refused the password of user 'fedgate'",
            server.port
        )),
        "{err}"
    );
    assert!(!format!("{out}{err}").contains("wrong-secret-1234"));
}

#[test]
fn init_with_a_postgresql_store_writes_it_into_the_config_and_creates_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let server = pg_server();
    let url = server.fresh_database().to_string();
    let mut c = fedgate(dir.path());
    c.env("FEDGATE_STORE_PASSWORD", PG_PASSWORD).args([
        "init",
        "--non-interactive",
        "--store",
        &url,
        "--domain",
        "corp.example",
        "--internal-server",
        "10.0.0.5:5269",
        "--no-dns-check",
    ]);
    let (ok, out, err) = run(c);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("Store ready"), "{out}");
    let text = std::fs::read_to_string(dir.path().join("fedgate.toml")).unwrap();
    assert!(text.contains(&format!("store = \"{url}\"")), "{text}");
    assert!(!dir.path().join("fedgate.db").exists());
    // The config's store is the database, with its schema: the CLI lists its (no) partners.
    let mut c = fedgate(dir.path());
    c.env("FEDGATE_STORE_PASSWORD", PG_PASSWORD).args([
        "--config",
        "fedgate.toml",
        "--output",
        "json",
        "Get-CsXmppAllowedPartner",
    ]);
    let (ok, out, err) = run(c);
    assert!(ok, "{out}\n{err}");
    assert_eq!(out.trim(), "[]");
}
