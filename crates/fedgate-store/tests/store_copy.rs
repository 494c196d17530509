//! Copying a whole store into another (`fedgate_store::copy`, [`Store::dump`] and
//! [`Store::restore`]): a round trip SQLite -> PostgreSQL -> SQLite keeps every record; a target
//! that holds anything is refused unless forced, and left as it was; a copy that fails half-way
//! writes nothing. The refusal and the all-or-nothing tests run on both backends
//! (`sqlite::<test>`, `postgres::<test>`).

#[macro_use]
mod common;

use common::{Backend, Fixture, Location, audit, partner};
use fedgate_model::gateway_settings::parse_dialback_passphrase;
use fedgate_model::{ExternalAccessPolicy, PolicyScope, UserJid};
use fedgate_store::{
    AuditContext, AuditEntry, AuditQuery, RecordCounts, Store, StoreError, TokenRole, copy,
};

on_both_backends!(
    a_target_holding_any_kind_of_record_is_refused_and_left_unchanged,
    force_replaces_the_targets_records,
    a_copy_failing_half_way_leaves_the_target_unchanged,
    an_empty_store_copies_into_an_empty_one_and_moves_its_revision,
);

const SECRET: &str = "a very secret dialback phrase";
const HASH_OPS: &str = "aa00000000000000000000000000000000000000000000000000000000000001";
const HASH_MONITOR: &str = "bb00000000000000000000000000000000000000000000000000000000000002";
const HASH_GONE: &str = "cc00000000000000000000000000000000000000000000000000000000000003";

fn copier() -> AuditContext {
    AuditContext {
        actor: "cli:bob".into(),
        command: "fedgate store copy".into(),
    }
}

/// The store as its errors name it (a file's path, or the URL with the password masked).
fn shown(store: &Fixture) -> String {
    match &store.location {
        Location::Sqlite(path) => path.display().to_string(),
        Location::Postgres(url) => url.to_string(),
    }
}

/// The store as a copy's audit entry names its source (`sqlite:<path>` or the URL).
fn source_text(store: &Fixture) -> String {
    match &store.location {
        Location::Sqlite(path) => format!("sqlite:{}", path.display()),
        Location::Postgres(url) => url.to_string(),
    }
}

fn user(jid: &str) -> UserJid {
    UserJid::parse(jid).unwrap()
}

/// The whole audit log, oldest first.
fn whole_log(store: &dyn Store) -> Vec<AuditEntry> {
    store
        .audit_log(&AuditQuery {
            limit: Some(u32::MAX),
            ..AuditQuery::default()
        })
        .unwrap()
}

/// An entry without its id (ids are handed out anew by the target).
fn without_id(e: &AuditEntry) -> AuditEntry {
    AuditEntry { id: 0, ..e.clone() }
}

/// Every kind of record, some changed more than once (versions above 1, a revoked token).
fn fill(store: &dyn Store) {
    let mut fabrikam = partner(
        "fabrikam.com",
        &["research.fabrikam2.com", "*.lab.fabrikam.com"],
    );
    store.create_partner(&fabrikam, &audit("New")).unwrap();
    fabrikam.connection_limit = Some(7);
    fabrikam.description = "changed once".into();
    store.update_partner(&fabrikam, 1, &audit("Set")).unwrap();
    store
        .import_partners(
            &[
                partner("contoso.com", &[]),
                partner("litware.com", &["*.litware.net"]),
            ],
            &audit("import"),
        )
        .unwrap();

    let mut global = ExternalAccessPolicy::new(PolicyScope::Global);
    global.enable_xmpp_access = true;
    store
        .update_policy(&global, 0, &audit("Set-Policy"))
        .unwrap();
    let mut sales = ExternalAccessPolicy::new(PolicyScope::parse("tag:Sales").unwrap());
    store.create_policy(&sales, &audit("New-Policy")).unwrap();
    sales.description = "sales people".into();
    store
        .update_policy(&sales, 1, &audit("Set-Policy"))
        .unwrap();
    let site = ExternalAccessPolicy::new(PolicyScope::parse("site:Berlin").unwrap());
    store.create_policy(&site, &audit("New-Policy")).unwrap();
    for u in ["alice@corp.example", "carol@corp.example"] {
        store
            .grant_policy(&user(u), Some("sales"), &audit("Grant"))
            .unwrap();
    }

    let mut config = store.gateway_configuration().unwrap();
    config.keep_alive_interval = 120;
    config.dialback_passphrase = Some(parse_dialback_passphrase(SECRET).unwrap());
    store
        .set_gateway_configuration(&config, &audit("Set-Gateway"))
        .unwrap();

    store
        .set_authorisations(&[
            (user("alice@corp.example"), user("x@contoso.com"), true),
            (user("bob@corp.example"), user("y@litware.com"), true),
        ])
        .unwrap();
    let row = |p: &str, d: &str, data: &str| (p.to_owned(), d.to_owned(), data.to_owned());
    store
        .save_partner_health(&[
            row("contoso.com", "outbound", "{\"ok\":true}"),
            row("fabrikam.com", "inbound", "{\"ok\":false}"),
        ])
        .unwrap();

    store
        .create_token("ops", TokenRole::Admin, HASH_OPS, &audit("token create"))
        .unwrap();
    store
        .create_token(
            "monitor",
            TokenRole::Reader,
            HASH_MONITOR,
            &audit("token create"),
        )
        .unwrap();
    store
        .create_token("gone", TokenRole::Admin, HASH_GONE, &audit("token create"))
        .unwrap();
    store.revoke_token("gone", &audit("token revoke")).unwrap();
}

/// Every record of `copy` is the same as in `original`, and its audit log is the original's
/// followed by one entry per copy made since (by [`copier`]).
fn assert_same_records(original: &dyn Store, copy: &dyn Store, copies: usize) {
    assert_eq!(
        copy.partners(None).unwrap(),
        original.partners(None).unwrap()
    );
    assert_eq!(copy.policies().unwrap(), original.policies().unwrap());
    assert_eq!(copy.grants().unwrap(), original.grants().unwrap());
    let config = copy.gateway_configuration().unwrap();
    assert_eq!(config, original.gateway_configuration().unwrap());
    assert_eq!(
        config.dialback_passphrase.as_ref().map(|s| s.expose()),
        Some(SECRET)
    );
    assert_eq!(
        copy.authorisations(None).unwrap(),
        original.authorisations(None).unwrap()
    );
    assert_eq!(
        copy.partner_health().unwrap(),
        original.partner_health().unwrap()
    );
    assert_eq!(copy.tokens().unwrap(), original.tokens().unwrap());
    for (hash, name, role) in [
        (HASH_OPS, "ops", TokenRole::Admin),
        (HASH_MONITOR, "monitor", TokenRole::Reader),
    ] {
        let found = copy.token_by_hash(hash).unwrap().expect("copied token");
        assert_eq!((found.name.as_str(), found.role), (name, role));
    }
    assert_eq!(copy.token_by_hash(HASH_GONE).unwrap(), None);

    let before = whole_log(original);
    let after = whole_log(copy);
    assert_eq!(after.len(), before.len() + copies, "{after:#?}");
    let (copied, own) = after.split_at(before.len());
    assert_eq!(
        copied.iter().map(without_id).collect::<Vec<_>>(),
        before.iter().map(without_id).collect::<Vec<_>>()
    );
    assert!(copied.windows(2).all(|w| w[0].id < w[1].id));
    for entry in own {
        assert_eq!(
            (
                entry.actor.as_str(),
                entry.command.as_str(),
                entry.target.as_str()
            ),
            ("cli:bob", "fedgate store copy", "store")
        );
    }
    assert_eq!(copy.revision().unwrap(), after.last().unwrap().id);
}

#[test]
fn round_trip_sqlite_to_postgresql_to_sqlite_keeps_every_record() {
    let source = Fixture::new(Backend::Sqlite);
    fill(&*source);
    let pool = Fixture::new(Backend::Postgres);
    let back = Fixture::new(Backend::Sqlite);

    // Nodes of the pool are told: records and authorisations both changed.
    let mut watch = pool
        .open_again()
        .watch()
        .unwrap()
        .expect("PostgreSQL watches");
    let summary = copy(&*source, &*pool, false, &copier()).unwrap();
    let changes = watch.wait(std::time::Duration::from_secs(10)).unwrap();
    assert!(changes.records && changes.authorisations, "{changes:?}");
    let expected = RecordCounts {
        partners: 3,
        policies: 3,
        grants: 2,
        gateway_configurations: 1,
        authorisations: 2,
        partner_health: 2,
        audit_entries: whole_log(&*source).len() as u64,
        tokens: 2,
    };
    assert_eq!(summary, expected);
    assert_eq!(expected.audit_entries, 15);
    assert_eq!(
        summary.to_string(),
        "3 partners, 3 policies, 2 grants, 1 gateway configuration, 2 authorisations, \
         2 partner health records, 15 audit entries, 2 tokens"
    );
    assert_same_records(&*source, &*pool, 1);
    // Versions come along: the partner changed once is at version 2 in the pool too.
    let fabrikam = pool
        .partner(&fedgate_model::Domain::parse("fabrikam.com").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(fabrikam.version, 2);
    // Another node's handle reads the same.
    assert_same_records(&*source, &*pool.open_again(), 1);

    let summary = copy(&*pool, &*back, false, &copier()).unwrap();
    assert_eq!(
        summary,
        RecordCounts {
            audit_entries: expected.audit_entries + 1,
            ..expected
        }
    );
    assert_same_records(&*source, &*back, 2);
    // The copy's own audit entry says where from and how many, and no secret.
    let last = whole_log(&*back).pop().unwrap();
    let after = last.after.unwrap();
    assert_eq!(after["Partners"], 3);
    assert_eq!(after["From"], source_text(&pool));
    assert!(last.before.is_none());

    // Nothing secret in a dump's Debug text.
    let dump = back.dump().unwrap();
    let shown = format!("{dump:?}");
    assert!(!shown.contains("very secret"), "{shown}");
    assert!(!shown.contains(HASH_OPS), "{shown}");
}

/// A fresh store of this backend holding one kind of record (and the audit entry, if any).
fn one_kind(backend: Backend, kind: &str) -> Fixture {
    let store = Fixture::new(backend);
    match kind {
        "partner" => {
            store
                .create_partner(&partner("old.example", &[]), &audit("New"))
                .unwrap();
        }
        "policy" => {
            let tag = ExternalAccessPolicy::new(PolicyScope::parse("tag:Old").unwrap());
            store.create_policy(&tag, &audit("New-Policy")).unwrap();
        }
        "token" => {
            store
                .create_token("old", TokenRole::Reader, HASH_GONE, &audit("token create"))
                .unwrap();
        }
        "gateway configuration" => {
            let mut config = store.gateway_configuration().unwrap();
            config.connection_limit = 5;
            store
                .set_gateway_configuration(&config, &audit("Set-Gateway"))
                .unwrap();
        }
        "authorisation" => {
            store
                .set_authorisation(&user("old@corp.example"), &user("x@old.example"), true)
                .unwrap();
        }
        other => panic!("{other}"),
    }
    store
}

fn a_target_holding_any_kind_of_record_is_refused_and_left_unchanged(source: Fixture) {
    fill(&*source);
    for kind in [
        "partner",
        "policy",
        "token",
        "gateway configuration",
        "authorisation",
    ] {
        let target = one_kind(source.backend, kind);
        let before = target.dump().unwrap();
        let revision = target.revision().unwrap();
        let err = copy(&*source, &*target, false, &copier()).unwrap_err();
        assert!(
            matches!(err, StoreError::NotEmpty { .. }),
            "{kind}: {err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!("1 {kind}")) && text.contains("--force"),
            "{kind}: {text}"
        );
        assert_eq!(target.dump().unwrap(), before, "{kind}");
        assert_eq!(target.revision().unwrap(), revision, "{kind}");
    }
    // Partner health alone (what a gateway saw) does not make a store non-empty.
    let target = Fixture::new(source.backend);
    target
        .save_partner_health(&[("p.example".into(), "inbound".into(), "{}".into())])
        .unwrap();
    copy(&*source, &*target, false, &copier()).unwrap();
    assert_eq!(
        target.partner_health().unwrap(),
        source.partner_health().unwrap()
    );
}

fn force_replaces_the_targets_records(source: Fixture) {
    fill(&*source);
    let target = Fixture::new(source.backend);
    target
        .create_partner(&partner("old.example", &["*.old.example"]), &audit("New"))
        .unwrap();
    target
        .create_token("ops", TokenRole::Reader, HASH_GONE, &audit("token create"))
        .unwrap();
    target
        .set_authorisation(&user("old@corp.example"), &user("x@old.example"), true)
        .unwrap();
    let old_revision = target.revision().unwrap();

    let err = copy(&*source, &*target, false, &copier()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "The store '{}' is not empty: it holds 1 partner, 1 authorisation, 2 audit entries, \
             1 token. Nothing was written; use --force to replace its contents.",
            shown(&target)
        )
    );

    copy(&*source, &*target, true, &copier()).unwrap();
    assert_same_records(&*source, &*target, 1);
    assert_eq!(target.domain_owner("*.old.example").unwrap(), None);
    // The ids go on from the target's own: its revision only grows, so gateways reload.
    assert!(target.revision().unwrap() > old_revision);
    assert!(whole_log(&*target)[0].id > old_revision);
    // The copy's entry says what it replaced.
    let last = whole_log(&*target).pop().unwrap();
    let replaced = last.before.unwrap();
    assert_eq!(
        (replaced["Partners"].as_u64(), replaced["Tokens"].as_u64()),
        (Some(1), Some(1))
    );
}

fn a_copy_failing_half_way_leaves_the_target_unchanged(source: Fixture) {
    fill(&*source);
    let target = Fixture::new(source.backend);
    target
        .create_partner(&partner("old.example", &[]), &audit("New"))
        .unwrap();
    let before = target.dump().unwrap();
    let revision = target.revision().unwrap();

    // Two tokens with one hash: the database refuses the second, the last rows written.
    let mut dump = source.dump().unwrap();
    let mut twin = dump.tokens[0].clone();
    twin.name = "twin".into();
    dump.tokens.push(twin);
    let err = target.restore(&dump, true, &copier()).unwrap_err();
    assert!(matches!(err, StoreError::Database { .. }), "{err:?}");
    assert_eq!(target.dump().unwrap(), before);
    assert_eq!(target.revision().unwrap(), revision);
    assert_eq!(target.open_again().dump().unwrap(), before);

    // Two partners claiming one domain: refused at the second partner, early in the copy.
    let mut dump = source.dump().unwrap();
    dump.partners[2]
        .value
        .additional_domains
        .push(fedgate_model::DomainPattern::parse("research.fabrikam2.com").unwrap());
    let err = target.restore(&dump, true, &copier()).unwrap_err();
    assert!(matches!(err, StoreError::DomainTaken { .. }), "{err:?}");
    assert_eq!(target.dump().unwrap(), before);

    // The handle still works, and the sound dump goes in.
    copy(&*source, &*target, true, &copier()).unwrap();
    assert_same_records(&*source, &*target, 1);
}

fn an_empty_store_copies_into_an_empty_one_and_moves_its_revision(source: Fixture) {
    let target = Fixture::new(source.backend);
    let summary = copy(&*source, &*target, false, &copier()).unwrap();
    assert_eq!(summary, RecordCounts::default());
    assert!(target.partners(None).unwrap().is_empty());
    assert_eq!(target.policies().unwrap(), source.policies().unwrap());
    // Only the copy's own entry; a second copy into it is refused (it is no longer empty).
    assert_eq!(target.revision().unwrap(), 1);
    let err = copy(&*source, &*target, false, &copier()).unwrap_err();
    assert!(err.to_string().contains("1 audit entry"), "{err}");
}
