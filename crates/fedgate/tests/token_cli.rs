//! `fedgate token create|list|revoke` against the real binary and a real store: the token is
//! printed once, works against the API's lookup, is never listed, and revoking ends it.

use std::process::{Command, Output};

use fedgate_store::{SqliteStore, Store};

fn fedgate(db: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .arg("--store")
        .arg(format!("sqlite:{}", db.display()))
        .args(args)
        .env("USER", "alice")
        .env_remove("SUDO_USER")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn create_list_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fedgate.db");
    let out = fedgate(
        &db,
        &[
            "--output", "json", "token", "create", "--name", "ops", "--role", "admin",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let created: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let token = created["Token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("fgt_"), "{token}");
    assert_eq!(created["Role"], "admin");
    assert!(stderr(&out).contains("cannot be shown again"));

    // The store knows the token by its hash only.
    {
        let store = SqliteStore::open(&db).unwrap();
        let info = store
            .token_by_hash(&fedgate_admin::tokens::hash(&token))
            .unwrap()
            .unwrap();
        assert_eq!(info.name, "ops");
    }
    let raw = std::fs::read(&db).unwrap();
    assert!(
        !raw.windows(token.len()).any(|w| w == token.as_bytes()),
        "the token is in the database file"
    );

    let out = fedgate(
        &db,
        &["token", "create", "--name", "monitor", "--role", "reader"],
    );
    assert!(out.status.success());
    assert!(stdout(&out).contains("Token   : fgt_"), "{}", stdout(&out));

    let out = fedgate(&db, &["token", "list"]);
    let text = stdout(&out);
    assert!(
        text.contains("Name    : monitor") && text.contains("Role    : admin"),
        "{text}"
    );
    assert!(!text.contains("fgt_"), "a token was listed: {text}");

    let out = fedgate(&db, &["token", "revoke", "ops"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let store = SqliteStore::open(&db).unwrap();
    assert!(
        store
            .token_by_hash(&fedgate_admin::tokens::hash(&token))
            .unwrap()
            .is_none()
    );
    let out = fedgate(&db, &["audit", "--target", "token:ops", "--output", "json"]);
    let log = stdout(&out);
    assert!(
        log.contains("token create") && log.contains("token revoke"),
        "{log}"
    );
    assert!(log.contains("cli:alice"), "{log}");
}

#[test]
fn errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fedgate.db");
    assert!(
        fedgate(
            &db,
            &["token", "create", "--name", "ops", "--role", "admin"]
        )
        .status
        .success()
    );
    let dup = fedgate(
        &db,
        &["token", "create", "--name", "OPS", "--role", "reader"],
    );
    assert_eq!(dup.status.code(), Some(1));
    assert!(stderr(&dup).contains("already exists"), "{}", stderr(&dup));
    let bad = fedgate(
        &db,
        &["token", "create", "--name", "a b", "--role", "reader"],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("Allowed values"), "{}", stderr(&bad));
    let role = fedgate(&db, &["token", "create", "--name", "x", "--role", "root"]);
    assert_eq!(role.status.code(), Some(2));
    assert!(stderr(&role).contains("admin, reader"), "{}", stderr(&role));
    let missing = fedgate(&db, &["token", "revoke", "nobody"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("Cannot find an API token named 'nobody'"));
}
