//! SIGHUP's work: `Gateway::reload` re-reads the config file and the certificate files it names;
//! new TLS connections get the new certificate, new (and removed) hosted domains, their internal
//! servers and limits apply at once, and an invalid file or certificate changes nothing.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use common::NoVerify;
use fedgate_gateway::Config;

/// A self-signed certificate for corp.example with a distinguishing common name.
fn write_certificate(dir: &Path, label: &str) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["corp.example".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, label);
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("corp.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("corp.key"), key.serialize_pem()).unwrap();
}

/// The common name of the certificate a TLS client sees at `addr`.
async fn presented_common_name(addr: SocketAddr) -> String {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify))
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("corp.example").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    let der = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    cert.subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn reload_picks_up_new_certificates_and_ignores_an_invalid_file() {
    let dir = tempfile::tempdir().unwrap();
    write_certificate(dir.path(), "first certificate");
    let config_text = "store = \"sqlite:fedgate.db\"\n[internal_listener]\nlisten = \"127.0.0.1:0\"\n[external_listener]\nlisten = \"127.0.0.1:0\"\n\
         [[hosted_domain]]\ndomain = \"corp.example\"\ninternal_server = \"127.0.0.1:9\"\ncertificate = \"corp.pem\"\nkey = \"corp.key\"\n\
         [tls]\nsystem_roots = false\n[admin]\nlisten = \"127.0.0.1:0\"\n";
    let path = dir.path().join("fedgate.toml");
    std::fs::write(&path, config_text).unwrap();
    let gw = common::start_gateway(Config::load(&path).unwrap())
        .await
        .unwrap();
    let addr = gw.admin_addr.unwrap();
    assert_eq!(presented_common_name(addr).await, "first certificate");

    write_certificate(dir.path(), "second certificate");
    assert!(!gw.shared.is_hosted("other.example"));
    let with_more = config_text
        .replace(
            "[tls]",
            "[[hosted_domain]]\ndomain = \"Other.Example\"\ninternal_server = \"127.0.0.1:11\"\n[limits]\nmax_stanza_size = 4096\n[tls]",
        )
        .replace(
            "internal_server = \"127.0.0.1:9\"",
            "internal_server = \"127.0.0.1:10\"",
        );
    std::fs::write(&path, &with_more).unwrap();
    gw.reload();
    assert_eq!(presented_common_name(addr).await, "second certificate");
    // The re-read file applies: a new hosted domain and a new stanza size limit.
    assert!(gw.shared.is_hosted("other.example"));
    assert_eq!(gw.shared.limits().codec.max_stanza_size, 4096);
    // The snapshot's hosted domains were rebuilt: each found by its normal form, with its
    // internal server as the file now says.
    let internal_server = |domain: &str| {
        gw.shared
            .snapshot()
            .hosted(domain)
            .map(|h| h.internal_server.to_string())
    };
    assert_eq!(
        internal_server("OTHER.example."),
        Some("127.0.0.1:11".into())
    );
    assert_eq!(internal_server("corp.example"), Some("127.0.0.1:10".into()));

    // A broken config file: nothing is reloaded, the gateway keeps serving the last good certificate.
    write_certificate(dir.path(), "third certificate");
    std::fs::write(&path, format!("{config_text}\nnot valid toml [[[")).unwrap();
    gw.reload();
    assert_eq!(presented_common_name(addr).await, "second certificate");
    assert!(
        gw.shared.is_hosted("other.example"),
        "an invalid file changes nothing"
    );
    // A certificate file that is not PEM: the old one stays.
    std::fs::write(&path, config_text).unwrap();
    std::fs::write(dir.path().join("corp.pem"), "garbage").unwrap();
    gw.reload();
    assert_eq!(presented_common_name(addr).await, "second certificate");
    assert!(
        gw.shared.is_hosted("other.example"),
        "a broken certificate keeps the old configuration"
    );
    assert_eq!(internal_server("corp.example"), Some("127.0.0.1:10".into()));
    // A good file again, without other.example: no longer hosted; corp.example's server is back.
    write_certificate(dir.path(), "fourth certificate");
    gw.reload();
    assert_eq!(presented_common_name(addr).await, "fourth certificate");
    assert!(!gw.shared.is_hosted("other.example"));
    assert_eq!(internal_server("corp.example"), Some("127.0.0.1:9".into()));
    gw.shutdown(std::time::Duration::from_secs(5)).await;
}
