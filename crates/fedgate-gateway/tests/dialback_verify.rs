//! The gateway's own answers to `db:verify`, on both listeners: what stops a stranger from
//! passing as one of our hosted domains (external listener) or, on the internal listener, as a
//! partner. The right key is `valid`; a wrong key, the right key for another stream id, a key
//! for the domains the other way round, the domains swapped and a `to` the gateway is not
//! authoritative for are `invalid`. The valid keys are XEP-0185 keys computed independently
//! (Python's `hmac.new(sha256(passphrase).hexdigest().encode(), b"<receiving> <originating>
//! <id>", sha256)`), so a gateway that answers `invalid` to everything fails too.

mod common;

use std::time::Duration;

use common::*;
use fedgate_gateway::dialback::dialback_key;
use fedgate_model::TlsNegotiation as Tls;
use fedgate_xmpp::negotiation::{self, DialbackType};
use fedgate_xmpp::ns;

const PASSPHRASE: &str = "the-gateway-passphrase-0123456789";
/// receiving `partner.example`, originating `corp.example`, id `fake-id-1`.
const KEY_FOR_PARTNER: &str = "44d24416561c1d672a63352b78d9a5363d09dfcf78efb410a9f089292c5cfe24";
/// receiving `corp.example`, originating `partner.example`, id `fake-id-1`.
const KEY_FOR_CORP: &str = "2496bb97d9e16a740c3a1fe4f4067863d4045d6e1690efef408839f83a9aacc6";

/// A gateway hosting corp.example with the dialback partner partner.example and a known
/// dialback passphrase.
async fn gateway(dir: &std::path::Path) -> fedgate_gateway::Gateway {
    let store = open_store(dir);
    let mut settings = store.gateway_configuration().unwrap();
    settings.dialback_passphrase = Some(fedgate_model::Secret::new(PASSPHRASE.to_owned()));
    store
        .set_gateway_configuration(&settings, &audit())
        .unwrap();
    drop(store);
    let (gw, _stanzas) = start_with_dialback_partner(dir, Tls::Optional, "").await;
    gw
}

/// Send one `db:verify` and read the gateway's answer: its type, after checking that it answers
/// this request (addresses reversed, same id).
async fn verify(p: &mut Peer, from: &str, to: &str, id: &str, key: &str) -> DialbackType {
    p.send_el(&negotiation::db_verify_request(from, to, id, key))
        .await;
    let r = p.element().await;
    assert!(r.is("verify", ns::DIALBACK), "{r:?}");
    assert_eq!(
        (r.attr("from"), r.attr("to"), r.attr("id")),
        (Some(to), Some(from), Some(id)),
        "{r:?}"
    );
    negotiation::dialback_type(&r).unwrap_or_else(|| panic!("no verdict: {r:?}"))
}

fn key(receiving: &str, originating: &str, id: &str) -> String {
    dialback_key(PASSPHRASE, receiving, originating, id)
}

#[tokio::test]
async fn the_external_listener_vouches_only_for_its_own_keys() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path()).await;
    let mut p = Peer::connect(gw.external_addr).await;
    p.open("partner.example", "corp.example").await;
    let (partner, corp, id) = ("partner.example", "corp.example", "fake-id-1");
    let cases: [(&str, &str, &str, String, DialbackType); 6] = [
        // The right key.
        (
            partner,
            corp,
            id,
            KEY_FOR_PARTNER.to_owned(),
            DialbackType::Valid,
        ),
        // A wrong key.
        (partner, corp, id, "0".repeat(64), DialbackType::Invalid),
        // The right key for another stream id.
        (
            partner,
            corp,
            "fake-id-2",
            KEY_FOR_PARTNER.to_owned(),
            DialbackType::Invalid,
        ),
        // A key made for the domains the other way round.
        (
            partner,
            corp,
            id,
            key(corp, partner, id),
            DialbackType::Invalid,
        ),
        // The domains swapped (partner.example is not ours to vouch for here).
        (
            corp,
            partner,
            id,
            key(corp, partner, id),
            DialbackType::Invalid,
        ),
        // A `to` the gateway does not host, with the key the gateway would compute for it.
        (
            partner,
            "other.example",
            id,
            key(partner, "other.example", id),
            DialbackType::Invalid,
        ),
    ];
    for (i, (from, to, id, key, want)) in cases.into_iter().enumerate() {
        let got = verify(&mut p, from, to, id, &key).await;
        assert_eq!(got, want, "case {i}: db:verify from={from} to={to} id={id}");
    }
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_internal_listener_vouches_only_for_partner_keys() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path()).await;
    // The internal server checks the gateway's claim to be partner.example.
    let mut p = Peer::connect(gw.internal_addr).await;
    p.open("corp.example", "partner.example").await;
    let (partner, corp, id) = ("partner.example", "corp.example", "fake-id-1");
    let cases: [(&str, &str, &str, String, DialbackType); 6] = [
        (
            corp,
            partner,
            id,
            KEY_FOR_CORP.to_owned(),
            DialbackType::Valid,
        ),
        (corp, partner, id, "f".repeat(64), DialbackType::Invalid),
        (
            corp,
            partner,
            "fake-id-2",
            KEY_FOR_CORP.to_owned(),
            DialbackType::Invalid,
        ),
        (
            corp,
            partner,
            id,
            key(partner, corp, id),
            DialbackType::Invalid,
        ),
        // The gateway never vouches for a hosted domain towards the internal server.
        (
            partner,
            corp,
            id,
            key(partner, corp, id),
            DialbackType::Invalid,
        ),
        // Nor for a domain that is no partner.
        (
            corp,
            "unlisted.example",
            id,
            key(corp, "unlisted.example", id),
            DialbackType::Invalid,
        ),
    ];
    for (i, (from, to, id, key, want)) in cases.into_iter().enumerate() {
        let got = verify(&mut p, from, to, id, &key).await;
        assert_eq!(got, want, "case {i}: db:verify from={from} to={to} id={id}");
    }
    gw.shutdown(Duration::from_secs(5)).await;
}
