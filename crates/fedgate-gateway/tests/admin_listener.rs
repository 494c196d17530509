//! The admin listener of `fedgate serve`: the REST API over TLS with the gateway's certificate,
//! plain HTTP only on loopback, and the gateway's live streams in `/api/v1/streams`.

mod common;

use common::*;
use fedgate_gateway::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 request over an established byte stream; returns the whole response text.
async fn http_get<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut io: S,
    path: &str,
) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: corp.example\r\nConnection: close\r\n\r\n");
    io.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = io.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn admin_api_over_tls_with_the_gateway_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, _stanzas) = start(dir.path(), "[admin]\nlisten = \"127.0.0.1:0\"\n").await;
    let addr = gw.admin_addr.expect("the admin listener is bound");
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(NoVerify))
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("corp.example").unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    // The gateway's certificate for its hosted domain.
    let certs = tls.get_ref().1.peer_certificates().unwrap().to_vec();
    let (_, cert) = x509_parser::parse_x509_certificate(&certs[0]).unwrap();
    let names: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .map(|n| n.to_string())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        names.iter().any(|n| n.contains("corp.example")),
        "{names:?}"
    );
    let response = http_get(tls, "/api/v1/health").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    // Plain HTTP to the TLS listener gets nothing useful.
    let plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    let response = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        http_get(plain, "/api/v1/health"),
    )
    .await
    .unwrap();
    // The listener speaks TLS only: what comes back is no HTTP reply at all (a TLS alert, or
    // nothing), and the listener still answers TLS clients afterwards.
    assert!(
        !response.contains("HTTP/"),
        "plain HTTP got an HTTP reply from the TLS listener: {response:?}"
    );
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(NoVerify))
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("corp.example").unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(name, tcp)
        .await
        .expect("the admin listener still accepts TLS after a plain-HTTP client");
    let response = http_get(tls, "/api/v1/health").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    gw.shutdown(std::time::Duration::from_secs(5)).await;
}

#[tokio::test]
async fn plain_admin_http_on_loopback_shows_live_streams() {
    let dir = tempfile::tempdir().unwrap();
    let auth = authoritative_server(PARTNER_SECRET).await;
    let store = open_store(dir.path());
    add_partner(
        store.as_ref(),
        "partner.example",
        fedgate_model::TlsNegotiation::NotSupported,
        fedgate_model::SaslNegotiation::NotSupported,
        true,
        Some(auth),
    );
    let (gw, _stanzas) = start(
        dir.path(),
        "[admin]\nlisten = \"127.0.0.1:0\"\ntls = false\n",
    )
    .await;
    let addr = gw.admin_addr.unwrap();
    let token = fedgate_admin::tokens::create(
        store.as_ref(),
        "t",
        fedgate_store::TokenRole::Reader,
        "test",
    )
    .unwrap()
    .1;
    // An authenticated partner stream, to see in the list.
    let _peer = dialback_peer(&gw).await;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /api/v1/streams HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
    assert!(body.contains("partner.example"), "{body}");
    // The admin listener's /metrics has the gateway's metrics and the API's.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut metrics = String::new();
    tcp.read_to_string(&mut metrics).await.unwrap();
    assert!(
        metrics.contains("fedgate_streams{") && metrics.contains("fedgate_admin_requests_total"),
        "{metrics}"
    );
    gw.shutdown(std::time::Duration::from_secs(5)).await;
}

#[test]
fn plain_admin_http_is_refused_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fedgate.toml");
    std::fs::write(
        &path,
        "[internal_listener]\nlisten = \"127.0.0.1:0\"\n[external_listener]\nlisten = \"127.0.0.1:0\"\n\
         [[hosted_domain]]\ndomain = \"corp.example\"\ninternal_server = \"127.0.0.1:5269\"\n\
         [admin]\nlisten = \"0.0.0.0:8443\"\ntls = false\n",
    )
    .unwrap();
    let e = Config::load(&path).unwrap_err().to_string();
    assert!(e.contains("admin.tls") && e.contains("loopback"), "{e}");
    std::fs::write(
        &path,
        "[internal_listener]\nlisten = \"127.0.0.1:0\"\n[external_listener]\nlisten = \"127.0.0.1:0\"\n\
         [[hosted_domain]]\ndomain = \"corp.example\"\ninternal_server = \"127.0.0.1:5269\"\n[admin]\n",
    )
    .unwrap();
    let c = Config::load(&path).unwrap();
    let admin = c.admin.unwrap();
    assert_eq!(admin.listen.to_string(), "127.0.0.1:8443");
    assert!(admin.tls);
}
