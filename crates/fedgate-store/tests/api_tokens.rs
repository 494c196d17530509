//! API tokens in the store, on both backends (`sqlite::<test>`, `postgres::<test>`): create,
//! list, look up by hash, revoke; uniqueness, audit, and that neither the hash nor the token ever
//! leaves the store.

#[macro_use]
mod common;

use common::Fixture;
use fedgate_store::{AuditContext, AuditQuery, SqliteStore, Store, StoreError, TokenRole};

on_both_backends!(
    create_list_lookup_revoke,
    names_unique_without_case_and_hashes_unique,
    revoking_an_unknown_token_is_an_error,
    create_and_revoke_are_audited_without_the_hash,
);

fn audit(cmd: &str) -> AuditContext {
    AuditContext {
        actor: "cli:root".into(),
        command: cmd.into(),
    }
}

const HASH_A: &str = "aa00000000000000000000000000000000000000000000000000000000000001";
const HASH_B: &str = "bb00000000000000000000000000000000000000000000000000000000000002";

fn create_list_lookup_revoke(store: Fixture) {
    let ops = store
        .create_token("ops", TokenRole::Admin, HASH_A, &audit("token create"))
        .unwrap();
    assert_eq!((ops.name.as_str(), ops.role), ("ops", TokenRole::Admin));
    assert!(ops.created.ends_with('Z'), "{}", ops.created);
    store
        .create_token("monitor", TokenRole::Reader, HASH_B, &audit("token create"))
        .unwrap();

    let names: Vec<(String, TokenRole)> = store
        .tokens()
        .unwrap()
        .into_iter()
        .map(|t| (t.name, t.role))
        .collect();
    assert_eq!(
        names,
        vec![
            ("monitor".to_owned(), TokenRole::Reader),
            ("ops".to_owned(), TokenRole::Admin)
        ]
    );
    assert_eq!(store.token_by_hash(HASH_A).unwrap(), Some(ops.clone()));
    assert_eq!(
        store.token_by_hash(&HASH_A.replace('a', "c")).unwrap(),
        None
    );

    let revoked = store.revoke_token("OPS", &audit("token revoke")).unwrap();
    assert_eq!(revoked, ops);
    assert_eq!(store.token_by_hash(HASH_A).unwrap(), None);
    assert_eq!(store.tokens().unwrap().len(), 1);
    // The name is free again once revoked.
    store
        .create_token("ops", TokenRole::Reader, HASH_A, &audit("token create"))
        .unwrap();
}

fn names_unique_without_case_and_hashes_unique(store: Fixture) {
    store
        .create_token("ops", TokenRole::Admin, HASH_A, &audit("token create"))
        .unwrap();
    let dup = store
        .create_token("Ops", TokenRole::Reader, HASH_B, &audit("token create"))
        .unwrap_err();
    assert!(
        matches!(dup, StoreError::TokenExists(ref n) if n == "Ops"),
        "{dup}"
    );
    assert!(dup.to_string().contains("already exists"));
    assert!(
        store
            .create_token("other", TokenRole::Reader, HASH_A, &audit("token create"))
            .is_err(),
        "two tokens with one hash"
    );
    assert_eq!(store.tokens().unwrap().len(), 1);
}

fn revoking_an_unknown_token_is_an_error(store: Fixture) {
    let err = store
        .revoke_token("nobody", &audit("token revoke"))
        .unwrap_err();
    assert!(matches!(err, StoreError::TokenNotFound(_)), "{err}");
    assert!(store.audit_log(&AuditQuery::default()).unwrap().is_empty());
}

fn create_and_revoke_are_audited_without_the_hash(store: Fixture) {
    store
        .create_token("ops", TokenRole::Admin, HASH_A, &audit("token create"))
        .unwrap();
    store.revoke_token("ops", &audit("token revoke")).unwrap();
    let log = store
        .audit_log(&AuditQuery {
            target: Some("token:ops".into()),
            ..AuditQuery::default()
        })
        .unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].command, "token create");
    assert_eq!(log[0].actor, "cli:root");
    assert_eq!(log[0].after.as_ref().unwrap()["Role"], "admin");
    assert!(log[0].before.is_none() && log[1].after.is_none());
    let text = serde_json::to_string(&log).unwrap();
    assert!(
        !text.contains(HASH_A),
        "the hash is in the audit log: {text}"
    );
}

// SQLite only: a file written before tokens existed.
#[test]
fn an_existing_version_1_database_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(fedgate_store::schema::MIGRATIONS[0].sql().unwrap())
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    store
        .create_token("ops", TokenRole::Admin, HASH_A, &audit("token create"))
        .unwrap();
    assert_eq!(store.tokens().unwrap().len(), 1);
}
