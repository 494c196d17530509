//! The Store semantics, the same tests against both backends: SQLite on real database files and
//! PostgreSQL on a real server (tests/common). Names: `sqlite::<test>` and `postgres::<test>`;
//! the SQLite-only file checks and migrations at the end.

#[macro_use]
mod common;

use common::{Fixture, audit, partner};
use fedgate_model::partner::fields::{FieldKind, FieldValue, PartnerField};
use fedgate_model::{
    Domain, ExternalAccessPolicy, PartnerChanges, PartnerType, PolicyScope, UserJid,
    XmppAllowedPartner,
};
use fedgate_store::{AuditQuery, SqliteStore, Store, StoreError};

on_both_backends!(
    create_read_update_delete_with_audit,
    a_domain_belongs_to_one_partner,
    glob_filter_and_bulk_import,
    policies_and_grants,
    gateway_configuration_keeps_secret_out_of_audit,
    concurrent_writers_lose_nothing,
    authorisations_are_recorded_withdrawn_and_listed,
    authorisation_batches_apply_in_order_in_one_transaction,
    reading_the_list_while_another_process_writes_sees_whole_partners,
    partner_health_is_kept_replaced_per_partner_and_direction_and_not_audited,
    every_partner_field_round_trips_with_a_non_default_value,
);

fn create_read_update_delete_with_audit(store: Fixture) {
    let p = partner(
        "fabrikam.com",
        &["research.fabrikam2.com", "*.lab.fabrikam.com"],
    );
    let created = store
        .create_partner(&p, &audit("New-CsXmppAllowedPartner"))
        .unwrap();
    assert_eq!(created.version, 1);
    let read = store.partner(&p.identity).unwrap().unwrap();
    assert_eq!(read.value, p);

    let mut changed = read.value.clone();
    changed.partner_type = PartnerType::Federated;
    changed.connection_limit = Some(7);
    let updated = store
        .update_partner(&changed, 1, &audit("Set-CsXmppAllowedPartner"))
        .unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(store.partner(&p.identity).unwrap().unwrap().value, changed);

    // A stale version is refused and changes nothing.
    let err = store
        .update_partner(&p, 1, &audit("Set-CsXmppAllowedPartner"))
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                expected: 1,
                found: 2,
                ..
            }
        ),
        "{err}"
    );

    let deleted = store
        .delete_partner(&p.identity, None, &audit("Remove-CsXmppAllowedPartner"))
        .unwrap();
    assert_eq!(deleted, changed);
    assert!(store.partner(&p.identity).unwrap().is_none());
    assert_eq!(store.domain_owner("research.fabrikam2.com").unwrap(), None);

    let log = store.audit_log(&AuditQuery::default()).unwrap();
    let commands: Vec<&str> = log.iter().map(|e| e.command.as_str()).collect();
    assert_eq!(
        commands,
        [
            "New-CsXmppAllowedPartner",
            "Set-CsXmppAllowedPartner",
            "Remove-CsXmppAllowedPartner"
        ]
    );
    assert!(
        log.iter()
            .all(|e| e.actor == "test:alice" && e.target == "fabrikam.com")
    );
    assert!(
        log[0].before.is_none() && log[0].after.as_ref().unwrap()["Identity"] == "fabrikam.com"
    );
    assert_eq!(
        log[1].before.as_ref().unwrap()["PartnerType"],
        "PublicUnverified"
    );
    assert_eq!(log[1].after.as_ref().unwrap()["PartnerType"], "Federated");
    assert!(log[2].after.is_none());
    assert_eq!(store.revision().unwrap(), log[2].id);
}

fn a_domain_belongs_to_one_partner(store: Fixture) {
    store
        .create_partner(
            &partner("a.com", &["shared.com", "*.wild.com"]),
            &audit("New"),
        )
        .unwrap();
    let before = store.revision().unwrap();

    let dup = store
        .create_partner(&partner("a.com", &[]), &audit("New"))
        .unwrap_err();
    assert!(matches!(dup, StoreError::PartnerExists(_)), "{dup}");
    // Identity that is another partner's AdditionalDomain.
    let err = store
        .create_partner(&partner("shared.com", &[]), &audit("New"))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "The domain 'shared.com' already belongs to the partner 'a.com'."
    );
    let err = store
        .create_partner(&partner("b.com", &["*.wild.com"]), &audit("New"))
        .unwrap_err();
    assert!(matches!(err, StoreError::DomainTaken { .. }), "{err}");
    // Nothing was written by the failures.
    assert!(
        store
            .partner(&Domain::parse("b.com").unwrap())
            .unwrap()
            .is_none()
    );
    assert_eq!(store.revision().unwrap(), before);
    assert_eq!(store.partners(None).unwrap().len(), 1);
}

fn glob_filter_and_bulk_import(store: Fixture) {
    let list: Vec<_> = (0..50)
        .map(|i| partner(&format!("p{i}.example"), &[&format!("x{i}.example")]))
        .collect();
    store.import_partners(&list, &audit("import")).unwrap();
    assert_eq!(store.partners(None).unwrap().len(), 50);
    let some = store.partners(Some("P1*")).unwrap();
    let ids: Vec<&str> = some.iter().map(|p| p.value.identity.as_str()).collect();
    assert_eq!(ids.len(), 11, "{ids:?}"); // p1, p10..p19
    assert!(some.iter().all(|p| p.value.additional_domains.len() == 1));
    assert_eq!(store.partners(Some("p?.example")).unwrap().len(), 10);
    assert_eq!(store.partners(Some("[x]*")).unwrap().len(), 0);
    // A failing import writes nothing.
    let bad = vec![
        partner("new1.example", &[]),
        partner("new2.example", &["x3.example"]),
    ];
    assert!(store.import_partners(&bad, &audit("import")).is_err());
    assert!(
        store
            .partner(&Domain::parse("new1.example").unwrap())
            .unwrap()
            .is_none()
    );
}

/// A value of `field` other than `p`'s, chosen by the field's kind (so a new field of a known
/// kind is covered without naming it here); `variant` picks among several.
fn other_value(field: PartnerField, p: &XmppAllowedPartner, variant: u32) -> FieldValue {
    let text = match field.kind() {
        FieldKind::Text => format!("Contact {variant}: ops@example.net, \"24/7\" ✓"),
        FieldKind::Bool => return FieldValue::Bool(field.get(p) != FieldValue::Bool(true)),
        FieldKind::OptionalU32 => (4_000_000_000 + variant).to_string(),
        FieldKind::Choice(kind) => {
            let current = field.get(p);
            let names = (kind.allowed_names)();
            names
                .split(", ")
                .find(|n| field.parse(n).ok().as_ref() != Some(&current))
                .expect("an enum of two names or more")
                .to_owned()
        }
        FieldKind::OptionalProxy => format!("[2001:db8::{variant}]:5270"),
        FieldKind::DomainList => format!("x{variant}.example.net, *.y{variant}.example.net"),
    };
    field.parse(&text).expect("a valid value")
}

fn every_partner_field_round_trips_with_a_non_default_value(store: Fixture) {
    let default = partner("fields.example", &[]);
    let with_others = |base: &XmppAllowedPartner, variant: u32| {
        let mut changes = PartnerChanges::default();
        for field in PartnerField::ALL {
            let value = other_value(field, base, variant);
            assert_ne!(value, field.get(base), "{field:?}");
            field.change(&mut changes, value).unwrap();
        }
        let mut p = base.clone();
        changes.apply(&mut p);
        p
    };
    let p = with_others(&default, 1);
    store
        .create_partner(&p, &audit("New-CsXmppAllowedPartner"))
        .unwrap();
    let read = store.partner(&p.identity).unwrap().unwrap().value;
    for field in PartnerField::ALL {
        assert_eq!(field.get(&read), field.get(&p), "{field:?} after create");
    }
    assert_eq!(read, p);
    // Every field changed again, through the update path (PostgreSQL's upsert).
    let changed = with_others(&p, 2);
    store
        .update_partner(&changed, 1, &audit("Set-CsXmppAllowedPartner"))
        .unwrap();
    let listed = store.partners(Some("fields.*")).unwrap();
    assert_eq!(listed.len(), 1);
    for field in PartnerField::ALL {
        assert_eq!(
            field.get(&listed[0].value),
            field.get(&changed),
            "{field:?} after update"
        );
    }
    assert_eq!(listed[0].version, 2);
}

fn policies_and_grants(store: Fixture) {
    let policies = store.policies().unwrap();
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0].value.identity, PolicyScope::Global);
    assert!(!policies[0].value.enable_xmpp_access);

    let mut global = policies[0].value.clone();
    global.enable_xmpp_access = true;
    store
        .update_policy(&global, 0, &audit("Set-CsExternalAccessPolicy"))
        .unwrap();
    assert!(
        store
            .policy(&PolicyScope::Global)
            .unwrap()
            .unwrap()
            .value
            .enable_xmpp_access
    );

    let tag = ExternalAccessPolicy::new(PolicyScope::parse("tag:NoXmpp").unwrap());
    store
        .create_policy(&tag, &audit("New-CsExternalAccessPolicy"))
        .unwrap();
    assert!(matches!(
        store.create_policy(&tag, &audit("New")),
        Err(StoreError::PolicyExists(_))
    ));
    let user = UserJid::parse("carol@corp.example").unwrap();
    store
        .grant_policy(
            &user,
            Some("noxmpp"),
            &audit("Grant-CsExternalAccessPolicy"),
        )
        .unwrap();
    assert_eq!(
        store.grants().unwrap(),
        vec![(user.clone(), "NoXmpp".to_owned())]
    );
    let missing = store
        .grant_policy(&user, Some("nope"), &audit("Grant"))
        .unwrap_err();
    assert!(matches!(missing, StoreError::PolicyNotFound(_)));

    // Removing a tag policy removes its grants; removing Global resets it.
    store
        .delete_policy(&tag.identity, &audit("Remove-CsExternalAccessPolicy"))
        .unwrap();
    assert!(store.grants().unwrap().is_empty());
    store
        .delete_policy(
            &PolicyScope::Global,
            &audit("Remove-CsExternalAccessPolicy"),
        )
        .unwrap();
    assert!(
        !store
            .policy(&PolicyScope::Global)
            .unwrap()
            .unwrap()
            .value
            .enable_xmpp_access
    );
    let targets: Vec<String> = store
        .audit_log(&AuditQuery::default())
        .unwrap()
        .into_iter()
        .map(|e| e.target)
        .collect();
    assert!(targets.contains(&"carol@corp.example".to_owned()));
}

fn gateway_configuration_keeps_secret_out_of_audit(store: Fixture) {
    let mut config = store.gateway_configuration().unwrap();
    assert_eq!(config.connection_limit, 1000);
    config.connection_limit = 5;
    config.dialback_passphrase = Some(
        fedgate_model::gateway_settings::parse_dialback_passphrase("a very secret dialback phrase")
            .unwrap(),
    );
    store
        .set_gateway_configuration(&config, &audit("Set-CsXmppGatewayConfiguration"))
        .unwrap();
    let read = store.gateway_configuration().unwrap();
    assert_eq!(read, config);
    assert_eq!(
        read.dialback_passphrase.unwrap().expose(),
        "a very secret dialback phrase"
    );
    let log = serde_json::to_string(&store.audit_log(&AuditQuery::default()).unwrap()).unwrap();
    assert!(!log.contains("very secret"), "{log}");
}

fn concurrent_writers_lose_nothing(fixture: Fixture) {
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let location = fixture.location.clone();
            std::thread::spawn(move || {
                // Each thread has its own connection, as another process (or node) would.
                let store = location.open();
                for i in 0..25 {
                    store
                        .create_partner(&partner(&format!("t{t}-{i}.example"), &[]), &audit("New"))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let store = fixture.open_again();
    assert_eq!(store.partners(None).unwrap().len(), 100);
    assert_eq!(
        store
            .audit_log(&AuditQuery {
                limit: Some(1000),
                ..Default::default()
            })
            .unwrap()
            .len(),
        100
    );
}

fn reading_the_list_while_another_process_writes_sees_whole_partners(fixture: Fixture) {
    // The list is read in two queries (partners, then their domains); another process's (node's)
    // commit between them must not show a domain without its partner, nor a partner without its
    // domains.
    let writer = fixture.location.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_writer = stop.clone();
    let writing = std::thread::spawn(move || {
        let node_a = writer.open();
        let mut i = 0u32;
        while !stop_writer.load(std::sync::atomic::Ordering::Relaxed) {
            let p = partner(&format!("w{i}.example"), &[&format!("x{i}.example")]);
            node_a.create_partner(&p, &audit("New")).unwrap();
            if i % 2 == 0 {
                node_a
                    .delete_partner(&p.identity, None, &audit("Remove"))
                    .unwrap();
            }
            i += 1;
        }
        i
    });
    let node_b = fixture.open_again();
    let started = std::time::Instant::now();
    let mut reads = 0;
    while started.elapsed() < std::time::Duration::from_secs(3) {
        let list = node_b
            .partners(None)
            .unwrap_or_else(|e| panic!("read {reads}: {e}"));
        assert!(
            list.iter().all(|p| p.value.additional_domains.len() == 1),
            "read {reads}: a partner without its domain"
        );
        reads += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = writing.join().unwrap();
    assert!(writes > 10 && reads > 10, "{writes} writes, {reads} reads");
}

// ---- SQLite only: the file itself, and migrations of files written by older builds. ----

#[test]
fn sqlite_has_no_change_watch_its_callers_poll_the_revision() {
    let store = Fixture::new(common::Backend::Sqlite);
    assert!(store.watch().unwrap().is_none());
}

#[test]
fn corrupt_newer_and_unwritable_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.db");
    std::fs::write(
        &garbage,
        b"this is not an sqlite database, just some text that is long enough..........",
    )
    .unwrap();
    let err = SqliteStore::open(&garbage).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string().contains("garbage.db")
            && err.to_string().contains("not a fedgate database"),
        "{err}"
    );
    // The file is left as it was.
    assert!(std::fs::read(&garbage).unwrap().starts_with(b"this is not"));

    let newer = dir.path().join("newer.db");
    {
        let c = rusqlite::Connection::open(&newer).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
    }
    let err = SqliteStore::open(&newer).unwrap_err();
    assert!(
        matches!(err, StoreError::NewerSchema { found: 99, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("upgrade fedgate"));

    let missing_dir = dir.path().join("no/such/dir/x.db");
    let err = SqliteStore::open(&missing_dir).unwrap_err();
    assert!(matches!(err, StoreError::Access { .. }), "{err:?}");
}

fn authorisations_are_recorded_withdrawn_and_listed(store: Fixture) {
    let alice = UserJid::parse("Alice@corp.example").unwrap();
    let bob = UserJid::parse("bob@partner.example").unwrap();
    let carol = UserJid::parse("carol@partner.example").unwrap();
    assert!(!store.is_authorised(&alice, &bob).unwrap());
    assert!(store.set_authorisation(&alice, &bob, true).unwrap());
    assert!(
        !store.set_authorisation(&alice, &bob, true).unwrap(),
        "a second subscribe changes nothing"
    );
    store.set_authorisation(&alice, &carol, true).unwrap();
    assert!(store.is_authorised(&alice, &bob).unwrap());
    assert!(
        !store
            .is_authorised(&UserJid::parse("dave@corp.example").unwrap(), &bob)
            .unwrap()
    );
    let list = store.authorisations(Some(&alice)).unwrap();
    let remotes: Vec<String> = list.iter().map(|a| a.remote_user.to_string()).collect();
    assert_eq!(remotes, ["bob@partner.example", "carol@partner.example"]);
    assert!(list[0].since.ends_with('Z'));
    assert!(store.set_authorisation(&alice, &bob, false).unwrap());
    assert!(!store.is_authorised(&alice, &bob).unwrap());
    assert!(
        !store.set_authorisation(&alice, &bob, false).unwrap(),
        "withdrawing twice changes nothing"
    );
    assert_eq!(store.authorisations(None).unwrap().len(), 1);
    // Users' own subscription actions are not admin changes: the audit log stays empty.
    assert!(store.audit_log(&AuditQuery::default()).unwrap().is_empty());
}

fn authorisation_batches_apply_in_order_in_one_transaction(store: Fixture) {
    let u = |s: &str| UserJid::parse(s).unwrap();
    let (alice, bob, carol) = (
        u("alice@corp.example"),
        u("bob@partner.example"),
        u("carol@partner.example"),
    );
    store
        .set_authorisations(&[
            (alice.clone(), bob.clone(), true),
            (alice.clone(), carol.clone(), true),
            (alice.clone(), bob.clone(), false),
            (alice.clone(), bob.clone(), true),
            (alice.clone(), carol.clone(), false),
        ])
        .unwrap();
    let pairs: Vec<String> = store
        .authorisations(None)
        .unwrap()
        .iter()
        .map(|a| format!("{} {}", a.local_user, a.remote_user))
        .collect();
    assert_eq!(pairs, ["alice@corp.example bob@partner.example"]);
    // Seen by another connection to the same store (committed, not only cached).
    let again = store.open_again();
    assert!(again.is_authorised(&alice, &bob).unwrap());
    assert!(!again.is_authorised(&alice, &carol).unwrap());
}

/// A database written before localparts went through nodeprep: keys were only lowercased, so
/// `ａｌｉｃｅ` (fullwidth) and `al\u{AD}ice` were stored as other users than alice.
#[test]
fn user_jids_stored_before_nodeprep_are_re_keyed_by_migration_4() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        for step in &fedgate_store::schema::MIGRATIONS[..3] {
            conn.execute_batch(step.sql().unwrap()).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        for (user, tag) in [
            ("alice@corp.example", "NoXmpp"),
            ("ａｌｉｃｅ@corp.example", "Xmpp"), // collides with the normal form: dropped
            ("ｃａｒｏｌ@corp.example", "NoXmpp"), // re-keyed to carol
            ("\u{fb01}ona@corp.example", "NoXmpp"), // re-keyed to fiona
            ("b\u{fffd}d@corp.example", "NoXmpp"), // nodeprep refuses U+FFFD: dropped
        ] {
            conn.execute(
                "INSERT INTO policy_grants (user_jid, tag) VALUES (?1, ?2)",
                [user, tag],
            )
            .unwrap();
        }
        for (local, remote, since) in [
            (
                "alice@corp.example",
                "bob@partner.example",
                "2024-03-01T00:00:00.000Z",
            ),
            (
                "ａｌｉｃｅ@corp.example",
                "ｂｏｂ@partner.example",
                "2024-01-02T00:00:00.000Z",
            ),
            (
                "al\u{ad}ice@corp.example",
                "eve@partner.example",
                "2024-02-01T00:00:00.000Z",
            ),
            (
                "alice@corp.example",
                "e\u{fffd}@partner.example",
                "2024-02-01T00:00:00.000Z",
            ),
        ] {
            conn.execute(
                "INSERT INTO authorisations (local_user, remote_user, since) VALUES (?1, ?2, ?3)",
                [local, remote, since],
            )
            .unwrap();
        }
    }
    let store = SqliteStore::open(&path).unwrap();
    let grants: Vec<(String, String)> = store
        .grants()
        .unwrap()
        .into_iter()
        .map(|(u, t)| (u.to_string(), t))
        .collect();
    assert_eq!(
        grants,
        [
            ("alice@corp.example".to_owned(), "NoXmpp".to_owned()),
            ("carol@corp.example".to_owned(), "NoXmpp".to_owned()),
            ("fiona@corp.example".to_owned(), "NoXmpp".to_owned()),
        ]
    );
    let auths: Vec<(String, String, String)> = store
        .authorisations(None)
        .unwrap()
        .into_iter()
        .map(|a| (a.local_user.to_string(), a.remote_user.to_string(), a.since))
        .collect();
    assert_eq!(
        auths,
        [
            (
                "alice@corp.example".to_owned(),
                "bob@partner.example".to_owned(),
                "2024-01-02T00:00:00.000Z".to_owned()
            ),
            (
                "alice@corp.example".to_owned(),
                "eve@partner.example".to_owned(),
                "2024-02-01T00:00:00.000Z".to_owned()
            ),
        ]
    );
    let alice = UserJid::parse("ＡＬＩＣＥ@corp.example").unwrap();
    let bob = UserJid::parse("bob@partner.example").unwrap();
    assert!(store.is_authorised(&alice, &bob).unwrap());
    // Every grant change is audited, by fedgate.
    let log = store.audit_log(&AuditQuery::default()).unwrap();
    let mut changes: Vec<(String, bool, bool)> = log
        .iter()
        .map(|e| {
            assert_eq!(e.actor, "fedgate", "{e:?}");
            (e.target.clone(), e.before.is_some(), e.after.is_some())
        })
        .collect();
    changes.sort();
    let mut expected = vec![
        ("ａｌｉｃｅ@corp.example".to_owned(), true, false),
        ("ｃａｒｏｌ@corp.example".to_owned(), true, false),
        ("carol@corp.example".to_owned(), false, true),
        ("\u{fb01}ona@corp.example".to_owned(), true, false),
        ("fiona@corp.example".to_owned(), false, true),
        ("b\u{fffd}d@corp.example".to_owned(), true, false),
    ];
    expected.sort();
    assert_eq!(changes, expected);
    // Done once: opening again changes nothing.
    drop(store);
    let again = SqliteStore::open(&path).unwrap();
    assert_eq!(
        again.audit_log(&AuditQuery::default()).unwrap().len(),
        expected.len()
    );
}

fn partner_health_is_kept_replaced_per_partner_and_direction_and_not_audited(store: Fixture) {
    let revision = store.revision().unwrap();
    assert!(store.partner_health().unwrap().is_empty());
    let row = |p: &str, d: &str, data: &str| (p.to_owned(), d.to_owned(), data.to_owned());
    store
        .save_partner_health(&[
            row("b.example", "outbound", "{\"x\":1}"),
            row("a.example", "inbound", "{\"x\":2}"),
        ])
        .unwrap();
    store
        .save_partner_health(&[row("b.example", "outbound", "{\"x\":3}")])
        .unwrap();
    let expected = vec![
        row("a.example", "inbound", "{\"x\":2}"),
        row("b.example", "outbound", "{\"x\":3}"),
    ];
    assert_eq!(store.partner_health().unwrap(), expected);
    // Not an admin change: no audit entry, no new revision (the gateway does not reload).
    assert_eq!(store.revision().unwrap(), revision);
    // Kept across a reopen.
    let again = store.open_again();
    assert_eq!(again.partner_health().unwrap(), expected);
    // A direction that is neither is refused by the schema.
    assert!(
        again
            .save_partner_health(&[row("c.example", "sideways", "{}")])
            .is_err()
    );
}
