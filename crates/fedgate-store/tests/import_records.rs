//! `Store::import_records`: an import's partners, policies and gateway settings in one
//! transaction with one audit entry per record — on both backends (tests/common).

#[macro_use]
mod common;

use common::{Fixture, audit, partner};
use fedgate_model::{ExternalAccessPolicy, PartnerType, PolicyScope, XmppGatewayConfiguration};
use fedgate_store::{AuditQuery, ImportBatch, StoreError};

on_both_backends!(
    creates_and_replaces_every_kind_with_one_audit_entry_each,
    a_failing_record_writes_nothing,
);

const IMPORT: &str = "Import-CsXmppAllowedPartner -Path 'partners.xml'";

fn creates_and_replaces_every_kind_with_one_audit_entry_each(store: Fixture) {
    let a = partner("contoso.com", &["contoso.net"]);
    store
        .create_partner(&a, &audit("New-CsXmppAllowedPartner"))
        .unwrap();
    let global = store.policy(&PolicyScope::Global).unwrap().unwrap();
    let mut changed = a.clone();
    changed.partner_type = PartnerType::Federated;
    let b = partner("fabrikam.com", &["*.fabrikam.net"]);
    let mut global_policy = global.value.clone();
    global_policy.enable_xmpp_access = true;
    let tag = ExternalAccessPolicy::new(PolicyScope::parse("tag:Sales").unwrap());
    let config = XmppGatewayConfiguration {
        keep_alive_interval: 120,
        ..store.gateway_configuration().unwrap()
    };
    let batch = ImportBatch {
        partners: vec![(changed.clone(), Some(1)), (b.clone(), None)],
        policies: vec![
            (global_policy.clone(), Some(global.version)),
            (tag.clone(), None),
        ],
        gateway: Some(config.clone()),
    };
    let before = store.revision().unwrap();
    store.import_records(&batch, &audit(IMPORT)).unwrap();
    assert!(store.revision().unwrap() > before);
    let read_a = store.partner(&a.identity).unwrap().unwrap();
    assert_eq!((read_a.value, read_a.version), (changed, 2));
    let read_b = store.partner(&b.identity).unwrap().unwrap();
    assert_eq!((read_b.value, read_b.version), (b, 1));
    assert_eq!(
        store
            .domain_owner("*.fabrikam.net")
            .unwrap()
            .unwrap()
            .as_str(),
        "fabrikam.com"
    );
    assert!(
        store
            .policy(&PolicyScope::Global)
            .unwrap()
            .unwrap()
            .value
            .enable_xmpp_access
    );
    assert_eq!(store.policy(&tag.identity).unwrap().unwrap().value, tag);
    assert_eq!(
        store.gateway_configuration().unwrap().keep_alive_interval,
        120
    );
    let log = store.audit_log(&AuditQuery::default()).unwrap();
    let imported: Vec<&str> = log
        .iter()
        .filter(|e| e.command == IMPORT)
        .map(|e| e.target.as_str())
        .collect();
    assert_eq!(
        imported,
        [
            "contoso.com",
            "fabrikam.com",
            "Global",
            "Tag:Sales",
            "Global"
        ]
    );
    let a_entry = log.iter().find(|e| e.command == IMPORT).unwrap();
    assert!(a_entry.before.is_some() && a_entry.after.is_some());
}

fn a_failing_record_writes_nothing(store: Fixture) {
    let a = partner("contoso.com", &["contoso.net"]);
    store
        .create_partner(&a, &audit("New-CsXmppAllowedPartner"))
        .unwrap();
    let entries = store.audit_log(&AuditQuery::default()).unwrap().len();
    let new = partner("fabrikam.com", &[]);
    // A stale version on the second record: the first is not written either.
    let stale = ImportBatch {
        partners: vec![(new.clone(), None), (a.clone(), Some(7))],
        gateway: Some(XmppGatewayConfiguration {
            keep_alive_interval: 99,
            ..XmppGatewayConfiguration::default()
        }),
        ..ImportBatch::default()
    };
    let e = store.import_records(&stale, &audit(IMPORT)).unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
    // A domain another partner holds.
    let taken = ImportBatch {
        partners: vec![
            (new.clone(), None),
            (partner("northwind.com", &["contoso.net"]), None),
        ],
        ..ImportBatch::default()
    };
    let e = store.import_records(&taken, &audit(IMPORT)).unwrap_err();
    assert!(matches!(e, StoreError::DomainTaken { .. }), "{e}");
    assert!(store.partner(&new.identity).unwrap().is_none());
    assert_eq!(
        store.gateway_configuration().unwrap().keep_alive_interval,
        XmppGatewayConfiguration::default().keep_alive_interval
    );
    assert_eq!(
        store.audit_log(&AuditQuery::default()).unwrap().len(),
        entries
    );
}
