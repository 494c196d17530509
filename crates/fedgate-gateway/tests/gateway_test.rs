//! The gateway test (`Test-CsXmppGatewayConfiguration`) of a running gateway, its hosted domain
//! corp.example published by a fake DNS server: SRV pointing at the gateway and a certificate
//! for corp.example from the configured CA is Ok (and names that CA); a certificate for another
//! name fails naming its names; an SRV record pointing elsewhere fails with the sentence that
//! says where it points and where the gateway listens; a serverAuth-only certificate warns.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use common::dns::{FakeDns, a, found, no_data, nxdomain, srv};
use common::*;
use fedgate_gateway::probe;
use fedgate_gateway::{Config, Gateway};
use fedgate_model::gateway_test::{DomainReport, GatewayReport};
use fedgate_model::probe::Verdict;
use hickory_resolver::proto::rr::RecordType;

/// A gateway for corp.example presenting `cert` (from `ca`, which it trusts), resolving through
/// a fake DNS server whose SRV record for corp.example points at `srv_ip` and the gateway's
/// external port.
async fn gateway(
    dir: &std::path::Path,
    ca: &Ca,
    cert: (String, String),
    srv_ip: [u8; 4],
) -> (Gateway, FakeDns) {
    let port = Arc::new(AtomicU16::new(0));
    let zone_port = port.clone();
    let dns = FakeDns::start(
        move |n, t| match (n, t) {
            ("_xmpp-server._tcp.corp.example", RecordType::SRV) => found(vec![srv(
                n,
                0,
                5,
                zone_port.load(Ordering::SeqCst),
                "xmpp.corp.example",
            )]),
            ("xmpp.corp.example", RecordType::A) => found(vec![a(n, srv_ip)]),
            (n, _) if n.ends_with("corp.example") => no_data(),
            _ => nxdomain(),
        },
        |_| true,
    )
    .await;
    std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
    std::fs::write(dir.join("corp.pem"), cert.0).unwrap();
    std::fs::write(dir.join("corp.key"), cert.1).unwrap();
    let (internal, gw_tx, _stanzas) = internal_server().await;
    let text = format!(
        "store = \"sqlite:fedgate.db\"\n[internal_listener]\nlisten = \"127.0.0.1:0\"\n\
         [external_listener]\nlisten = \"127.0.0.1:0\"\n[[hosted_domain]]\ndomain = \"corp.example\"\n\
         internal_server = \"{internal}\"\ncertificate = \"corp.pem\"\nkey = \"corp.key\"\n\
         [tls]\nsystem_roots = false\nca_files = [\"ca.pem\"]\n{}",
        dns.config()
    );
    let path = dir.join("fedgate.toml");
    std::fs::write(&path, text).unwrap();
    let gw = common::start_gateway(Config::load(&path).unwrap())
        .await
        .unwrap();
    gw_tx.send(gw.internal_addr).unwrap();
    port.store(gw.external_addr.port(), Ordering::SeqCst);
    (gw, dns)
}

async fn test(gw: &Gateway) -> GatewayReport {
    let listeners = probe::listeners(gw.external_addr, gw.direct_tls_addr);
    tokio::time::timeout(
        Duration::from_secs(30),
        probe::test_gateway(&gw.shared, &listeners, None),
    )
    .await
    .expect("the test finished")
    .expect("no parameter error")
}

/// The report of a gateway as [`gateway`] starts it, with the certificate `cert` makes from the
/// test CA; the gateway is shut down after.
async fn report_with(
    cert: impl FnOnce(&Ca) -> (String, String),
    srv_ip: [u8; 4],
) -> (GatewayReport, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("Test CA");
    let (gw, _dns) = gateway(dir.path(), &ca, cert(&ca), srv_ip).await;
    let r = test(&gw).await;
    let external = gw.external_addr;
    gw.shutdown(Duration::from_secs(5)).await;
    (r, external)
}

fn only(r: &GatewayReport) -> &DomainReport {
    assert_eq!(r.domains.len(), 1, "{r:#?}");
    &r.domains[0]
}

fn step_names(d: &DomainReport) -> Vec<&str> {
    d.steps.iter().map(|s| s.step.as_str()).collect()
}

#[tokio::test]
async fn srv_pointing_here_and_a_certificate_for_the_domain_is_ok() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("Test CA");
    let (gw, _dns) = gateway(
        dir.path(),
        &ca,
        leaf_pem(&ca, "corp.example"),
        [127, 0, 0, 1],
    )
    .await;
    let r = test(&gw).await;
    let d = only(&r);
    assert_eq!((r.verdict, d.verdict), (Verdict::Ok, Verdict::Ok), "{r:#?}");
    assert!(d.problems.is_empty(), "{r:#?}");
    assert_eq!(d.domain, "corp.example");
    assert_eq!(r.listeners, [format!("{} (STARTTLS)", gw.external_addr)]);
    assert_eq!(
        step_names(d),
        [
            "Resolve",
            "Points here",
            "Connect",
            "Stream",
            "STARTTLS",
            "Certificate",
            "Stream (TLS)"
        ],
        "{r:#?}"
    );
    assert!(
        d.steps[0].detail.contains(&format!(
            "_xmpp-server._tcp.corp.example SRV 0 5 {}",
            gw.external_addr.port()
        )),
        "{}",
        d.steps[0].detail
    );
    assert_eq!(
        d.steps[1].detail,
        format!("{} (STARTTLS): this gateway's listener", gw.external_addr)
    );
    let c = d.certificate.as_ref().expect("a certificate");
    assert!(c.trusted && c.valid_for_domain, "{c:#?}");
    let anchor = d.trust_anchor.as_deref().unwrap_or_default();
    assert!(
        anchor.starts_with("[tls] ca_files ") && anchor.ends_with("ca.pem"),
        "{anchor}"
    );
    // One domain by name; an unknown one names the parameter and the hosted domains.
    let listeners = probe::listeners(gw.external_addr, None);
    let r = probe::test_gateway(&gw.shared, &listeners, Some("CORP.example."))
        .await
        .unwrap();
    assert_eq!(only(&r).domain, "corp.example");
    let e = probe::test_gateway(&gw.shared, &listeners, Some("other.example"))
        .await
        .unwrap_err();
    assert_eq!(e.parameter, "Domain");
    assert!(e.reason.contains("Allowed values: corp.example"), "{e:?}");
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_certificate_for_another_name_fails_naming_its_names() {
    let (r, _) = report_with(|ca| leaf_pem(ca, "other.example"), [127, 0, 0, 1]).await;
    assert_eq!(r.verdict, Verdict::Fail, "{r:#?}");
    assert_eq!(
        only(&r).problems,
        [
            "The certificate this gateway presents for 'corp.example' is not valid for 'corp.example': its names are other.example."
        ]
    );
}

#[tokio::test]
async fn an_srv_record_pointing_elsewhere_says_where_and_where_the_gateway_listens() {
    let (r, external) = report_with(|ca| leaf_pem(ca, "corp.example"), [127, 0, 0, 2]).await;
    let d = only(&r);
    assert_eq!(r.verdict, Verdict::Fail, "{r:#?}");
    assert_eq!(
        d.problems,
        [format!(
            "The SRV record for corp.example points at 127.0.0.2:{}, but this gateway listens on {external}.",
            external.port()
        )]
    );
    let points = &d.steps[1];
    assert_eq!(
        (points.step.as_str(), points.ok),
        ("Points here", Some(false))
    );
}

#[tokio::test]
async fn a_server_auth_only_certificate_is_a_warning() {
    let server_auth_only = |ca: &Ca| {
        leaf_pem_with(ca, "corp.example", |p| {
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        })
    };
    let (r, _) = report_with(server_auth_only, [127, 0, 0, 1]).await;
    let d = only(&r);
    assert_eq!(r.verdict, Verdict::Warning, "{r:#?}");
    assert_eq!(d.problems.len(), 1, "{r:#?}");
    assert!(
        d.problems[0].contains("has the serverAuth purpose but not clientAuth"),
        "{r:#?}"
    );
}

/// A gateway-less address: the listener step says the connection was refused.
#[tokio::test]
async fn a_listener_that_does_not_answer_fails() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("Test CA");
    let (gw, _dns) = gateway(
        dir.path(),
        &ca,
        leaf_pem(&ca, "corp.example"),
        [127, 0, 0, 1],
    )
    .await;
    let closed: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let listeners = probe::listeners(closed, None);
    let r = probe::test_gateway(&gw.shared, &listeners, None)
        .await
        .unwrap();
    let d = only(&r);
    assert_eq!(r.verdict, Verdict::Fail, "{r:#?}");
    assert!(
        d.problems.iter().any(|p| p.starts_with(&format!(
            "A partner cannot open a stream to 'corp.example' on this gateway's listener {closed} (STARTTLS): {closed}:"
        ))),
        "{r:#?}"
    );
    gw.shutdown(Duration::from_secs(5)).await;
}
