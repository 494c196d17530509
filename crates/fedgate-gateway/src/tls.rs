//! TLS: the certificates fedgate presents (per hosted domain on the external side, loaded from
//! files or self-signed at first start; per partner domain on the internal side, minted from the
//! `[internal_tls]` CA or self-signed, cached), the rustls server/client configurations, and the
//! check of a peer's certificate for a domain (chain against the trust anchors, then RFC 6125
//! name: DNS SAN or XmppAddr otherName SAN).
//!
//! Peers' certificates are accepted during the handshake and judged afterwards, because an
//! untrusted certificate must not break dialback over TLS; SASL EXTERNAL is offered/used only
//! when [`TlsContext::check_peer`] says the certificate is valid for the domain.
//!
//! Trust is kept apart by side: partners are judged against the `[tls]` anchors, internal
//! servers against the internal anchors only (the `[internal_tls]` CA and `ca_files`; public
//! roots only when `[internal_tls] system_roots = true`), so a publicly trusted certificate for
//! a hosted domain never authenticates as an internal server. The caches of minted
//! certificates and client configurations are bounded (least recently used go first), and
//! certificates are minted only for domains the mint filter (the partner list) allows.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::{Context as _, anyhow};
use fedgate_model::enforce::CertCheck;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tracing::{info, warn};

use crate::config::Config;

/// id-on-xmppAddr (RFC 6120 §13.7.1.4).
const XMPP_ADDR_OID: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 8, 5];

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain and key, as DER.
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// Whether others can be expected to trust it (from files or an internal CA).
    trusted: bool,
}

impl Identity {
    fn certified(&self, p: &CryptoProvider) -> anyhow::Result<Arc<CertifiedKey>> {
        let key = p
            .key_provider
            .load_private_key(self.key.clone_key())
            .map_err(|e| anyhow!("unusable private key: {e}"))?;
        Ok(Arc::new(CertifiedKey::new(self.chain.clone(), key)))
    }
}

fn load_identity(cert: &Path, key: &Path) -> anyhow::Result<Identity> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", cert.display()))?;
    if chain.is_empty() {
        return Err(anyhow!("{} holds no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the key {}", key.display()))?;
    Ok(Identity {
        chain,
        key,
        trusted: true,
    })
}

fn cert_params(domain: &str) -> anyhow::Result<rcgen::CertificateParams> {
    let mut params = rcgen::CertificateParams::new(vec![domain.to_owned()])?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, domain);
    // A DNS-ID SAN only (RFC 6125; XEP-0178 accepts it for SASL EXTERNAL). No XmppAddr: ejabberd
    // 23.01 crashes on one (xmpp_stream_pkix:get_cert_domains badarg), and DNS-ID is enough for a
    // server. XmppAddr in peers' certificates is still accepted (`xmpp_addrs`).
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    Ok(params)
}

/// A self-signed certificate for `domain`: (cert PEM, key PEM).
pub fn self_signed(domain: &str) -> anyhow::Result<(String, String)> {
    let key = rcgen::KeyPair::generate()?;
    let cert = cert_params(domain)?.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn identity_from_pem(cert: &str, key: &str, trusted: bool) -> anyhow::Result<Identity> {
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes())?;
    Ok(Identity {
        chain,
        key,
        trusted,
    })
}

/// The hosted domain's certificate: from the configured files, else `<state>/<domain>.pem/.key`,
/// generated (self-signed) when absent.
fn hosted_identity(
    config: &Config,
    domain: &str,
    files: Option<&(PathBuf, PathBuf)>,
) -> anyhow::Result<Identity> {
    if let Some((c, k)) = files {
        return load_identity(c, k);
    }
    let dir = config.state_dir();
    let cert = dir.join(format!("{domain}.pem"));
    let key = dir.join(format!("{domain}.key"));
    if !cert.exists() || !key.exists() {
        let (c, k) = self_signed(domain)?;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(&cert, c).with_context(|| format!("writing {}", cert.display()))?;
        write_private(&key, k.as_bytes())?;
        info!(domain, path = %cert.display(), "generated a self-signed certificate");
    }
    let mut id = load_identity(&cert, &key)?;
    id.trusted = false;
    Ok(id)
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("writing {}", path.display()))?;
        f.write_all(bytes)?;
        Ok(())
    }
    #[cfg(not(unix))]
    {
        std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
    }
}

/// The CA that mints internal-side certificates.
struct Minter {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// How many minted internal-side certificates and client configurations are kept (each cache).
pub const CACHE_ENTRIES: usize = 4096;

/// A peer chain longer than this, or larger in all, is not even looked at (untrusted): real
/// chains are 2 to 4 certificates of 1 to 2 KiB each, and path building over a long hostile
/// chain costs CPU.
pub const MAX_PEER_CHAIN: usize = 8;
/// See [`MAX_PEER_CHAIN`].
pub const MAX_PEER_CHAIN_BYTES: usize = 64 * 1024;

/// Which domains may get a minted internal-side certificate.
pub type MintFilter = Arc<dyn Fn(&str) -> bool + Send + Sync>;

fn lru<K: std::hash::Hash + Eq, V>() -> Mutex<lru::LruCache<K, V>> {
    Mutex::new(lru::LruCache::new(
        NonZeroUsize::new(CACHE_ENTRIES).unwrap_or(NonZeroUsize::MIN),
    ))
}

fn add_pem_anchors(roots: &mut RootCertStore, f: &Path) -> anyhow::Result<()> {
    for c in CertificateDer::pem_file_iter(f).with_context(|| format!("reading {}", f.display()))? {
        let c = c.with_context(|| format!("parsing {}", f.display()))?;
        roots
            .add(c)
            .with_context(|| format!("trust anchor in {}", f.display()))?;
    }
    Ok(())
}

fn add_system_anchors(roots: &mut RootCertStore) {
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        warn!(error = %e, "reading system trust anchors");
    }
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, "system trust anchors");
}

/// Certificates and trust anchors, reloadable on SIGHUP.
pub struct TlsContext {
    provider: Arc<CryptoProvider>,
    /// Anchors for partners' certificates (`[tls]`).
    roots: Arc<RootCertStore>,
    /// The same anchors by where they come from (`system roots`, `[tls] ca_files <file>`), to
    /// say which one a chain validates against.
    anchor_sources: Vec<(String, RootCertStore)>,
    /// Anchors for internal servers' certificates (`[internal_tls]`).
    internal_roots: Arc<RootCertStore>,
    mint_filter: RwLock<Option<MintFilter>>,
    hosted: RwLock<HashMap<String, (Arc<CertifiedKey>, bool)>>,
    default_hosted: RwLock<Option<Arc<CertifiedKey>>>,
    minter: Option<Minter>,
    /// Partner-domain certificates for the internal side.
    minted: Mutex<lru::LruCache<String, Arc<CertifiedKey>>>,
    client_configs: Mutex<lru::LruCache<String, Arc<ClientConfig>>>,
    external_server: RwLock<Option<Arc<ServerConfig>>>,
    internal_server: RwLock<Option<Arc<ServerConfig>>>,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsContext")
    }
}

impl TlsContext {
    /// Load (or generate) every certificate and the trust anchors.
    pub fn load(config: &Config) -> anyhow::Result<Arc<TlsContext>> {
        let provider = provider();
        let mut roots = RootCertStore::empty();
        let mut anchor_sources = Vec::new();
        if config.system_roots {
            let mut system = RootCertStore::empty();
            add_system_anchors(&mut system);
            roots.roots.extend(system.roots.iter().cloned());
            anchor_sources.push(("system roots".to_owned(), system));
        }
        for f in &config.ca_files {
            let mut file = RootCertStore::empty();
            add_pem_anchors(&mut file, f)?;
            roots.roots.extend(file.roots.iter().cloned());
            anchor_sources.push((format!("[tls] ca_files {}", f.display()), file));
        }
        let mut internal_roots = RootCertStore::empty();
        if config.internal_system_roots {
            add_system_anchors(&mut internal_roots);
        }
        if let Some((ca, _)) = &config.internal_ca {
            add_pem_anchors(&mut internal_roots, ca)?;
        }
        for f in &config.internal_ca_files {
            add_pem_anchors(&mut internal_roots, f)?;
        }
        let minter = match &config.internal_ca {
            Some((c, k)) => {
                let cert_pem = std::fs::read_to_string(c)
                    .with_context(|| format!("reading {}", c.display()))?;
                let key_pem = std::fs::read_to_string(k)
                    .with_context(|| format!("reading {}", k.display()))?;
                let key = rcgen::KeyPair::from_pem(&key_pem)
                    .with_context(|| format!("parsing {}", k.display()))?;
                let issuer = rcgen::Issuer::from_ca_cert_pem(&cert_pem, key)
                    .with_context(|| format!("parsing the CA {}", c.display()))?;
                Some(Minter { issuer })
            }
            None => None,
        };
        let ctx = Arc::new(TlsContext {
            provider,
            roots: Arc::new(roots),
            anchor_sources,
            internal_roots: Arc::new(internal_roots),
            mint_filter: RwLock::new(None),
            hosted: RwLock::new(HashMap::new()),
            default_hosted: RwLock::new(None),
            minter,
            minted: lru(),
            client_configs: lru(),
            external_server: RwLock::new(None),
            internal_server: RwLock::new(None),
        });
        ctx.reload(config)?;
        Ok(ctx)
    }

    /// (Re)load the hosted domains' certificates (SIGHUP).
    pub fn reload(self: &Arc<Self>, config: &Config) -> anyhow::Result<()> {
        let mut hosted = HashMap::new();
        let mut first = None;
        for h in &config.hosted {
            let id = hosted_identity(config, h.domain.as_str(), h.certificate.as_ref())
                .with_context(|| format!("certificate of {}", h.domain))?;
            let ck = id.certified(&self.provider)?;
            first.get_or_insert_with(|| ck.clone());
            hosted.insert(h.domain.as_str().to_owned(), (ck, id.trusted));
        }
        *self.hosted.write().unwrap_or_else(|e| e.into_inner()) = hosted;
        *self
            .default_hosted
            .write()
            .unwrap_or_else(|e| e.into_inner()) = first;
        self.client_configs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let ext = self.server_config(Arc::new(Resolver {
            ctx: Arc::downgrade(self),
            internal: false,
            fallback: None,
        }))?;
        let int = self.server_config(Arc::new(Resolver {
            ctx: Arc::downgrade(self),
            internal: true,
            fallback: None,
        }))?;
        *self
            .external_server
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(ext);
        *self
            .internal_server
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(int);
        Ok(())
    }

    fn server_config(&self, resolver: Arc<Resolver>) -> anyhow::Result<Arc<ServerConfig>> {
        let verifier = Arc::new(AcceptAnyCert {
            algs: self.provider.signature_verification_algorithms,
        });
        let mut cfg = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(resolver);
        // No resumption: each STARTTLS gets a config of its own (its fallback certificate is
        // the stream's), so a session cache could never serve a returning peer; rustls'
        // default one (a 256-entry table, plus the sessions of the 2 tickets sent after each
        // handshake) lived as long as the connection holding the config.
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
        Ok(Arc::new(cfg))
    }

    /// The server configuration for one STARTTLS: like [`server`](Self::server), but a
    /// ClientHello without SNI gets the certificate of `domain` (the stream's `to`); servers
    /// such as Prosody send no SNI on s2s connections.
    pub fn server_for(
        self: &Arc<Self>,
        internal: bool,
        domain: Option<&str>,
    ) -> Option<Arc<ServerConfig>> {
        self.server(internal)?;
        self.server_config(Arc::new(Resolver {
            ctx: Arc::downgrade(self),
            internal,
            fallback: domain.map(str::to_owned),
        }))
        .ok()
    }

    /// The server configuration for a listener side.
    pub fn server(&self, internal: bool) -> Option<Arc<ServerConfig>> {
        let slot = if internal {
            &self.internal_server
        } else {
            &self.external_server
        };
        slot.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The certificate we present as `domain`: a hosted domain's, or (internal side) a partner
    /// domain's minted one.
    fn identity_for(&self, domain: &str, internal: bool) -> Option<Arc<CertifiedKey>> {
        let d = domain.to_ascii_lowercase();
        if !internal {
            let hosted = self.hosted.read().unwrap_or_else(|e| e.into_inner());
            return hosted.get(&d).map(|(c, _)| c.clone()).or_else(|| {
                self.default_hosted
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
            });
        }
        if let Some(c) = self
            .minted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&d)
        {
            return Some(c.clone());
        }
        let allowed = self
            .mint_filter
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|f| f(&d));
        if !allowed || fedgate_model::Domain::parse(&d).is_err() {
            return None;
        }
        let made = (|| -> anyhow::Result<Arc<CertifiedKey>> {
            let key = rcgen::KeyPair::generate()?;
            let params = cert_params(&d)?;
            let (cert_pem, trusted) = match &self.minter {
                Some(m) => (params.signed_by(&key, &m.issuer)?.pem(), true),
                None => (params.self_signed(&key)?.pem(), false),
            };
            identity_from_pem(&cert_pem, &key.serialize_pem(), trusted)?.certified(&self.provider)
        })();
        match made {
            Ok(c) => {
                self.minted
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .put(d, c.clone());
                Some(c)
            }
            Err(e) => {
                warn!(domain = %d, error = %e, "cannot mint a certificate");
                None
            }
        }
    }

    /// Whether peers can be expected to trust the certificate we present as `domain`.
    pub fn presents_trusted(&self, domain: &str, internal: bool) -> bool {
        if internal {
            self.minter.is_some()
        } else {
            self.hosted
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&domain.to_ascii_lowercase())
                .is_some_and(|(_, t)| *t)
        }
    }

    /// The client configuration for outbound streams speaking as `local` domain.
    pub fn client(&self, local: &str, internal: bool) -> anyhow::Result<Arc<ClientConfig>> {
        let key = format!("{}|{local}", if internal { "i" } else { "e" });
        if let Some(c) = self
            .client_configs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(c.clone());
        }
        let builder = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert {
                algs: self.provider.signature_verification_algorithms,
            }));
        let cfg = match self.identity_for(local, internal) {
            Some(ck) => builder.with_client_cert_resolver(Arc::new(FixedClientCert(ck))),
            None => builder.with_no_client_auth(),
        };
        let cfg = Arc::new(cfg);
        self.client_configs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(key, cfg.clone());
        Ok(cfg)
    }

    /// Set which domains may get a minted internal-side certificate (the runtime passes "is a
    /// listed partner domain"); until set, none do.
    pub fn set_mint_filter(&self, filter: MintFilter) {
        *self.mint_filter.write().unwrap_or_else(|e| e.into_inner()) = Some(filter);
    }

    /// How many minted certificates and client configurations are cached (for tests).
    pub fn cached(&self) -> (usize, usize) {
        (
            self.minted.lock().unwrap_or_else(|e| e.into_inner()).len(),
            self.client_configs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .len(),
        )
    }

    /// RFC 6125 / XEP-0178: does this chain validate against the trust anchors of the side the
    /// peer is on (`internal`: an internal server; else a partner) and name `domain`?
    /// Path building costs CPU: async callers use [`check_peer_off_thread`](Self::check_peer_off_thread).
    pub fn check_peer(
        &self,
        chain: &[CertificateDer<'static>],
        domain: &str,
        internal: bool,
    ) -> CertCheck {
        let roots = if internal {
            &self.internal_roots
        } else {
            &self.roots
        };
        check_chain(roots, chain, domain)
    }

    /// [`describe_chain`] against the partners' trust anchors, on the blocking pool.
    pub async fn describe_partner_chain(
        self: &Arc<Self>,
        chain: Vec<CertificateDer<'static>>,
        domain: &str,
    ) -> Option<fedgate_model::probe::CertificateInfo> {
        let (ctx, domain) = (self.clone(), domain.to_owned());
        tokio::task::spawn_blocking(move || describe_chain(&ctx.roots, &chain, &domain))
            .await
            .ok()
            .flatten()
    }

    /// Where the partners' trust anchor that `chain` validates against comes from (`system
    /// roots` or `[tls] ca_files <file>`, the first that does), on the blocking pool; `None`:
    /// none.
    pub async fn trust_anchor_of(
        self: &Arc<Self>,
        chain: Vec<CertificateDer<'static>>,
    ) -> Option<String> {
        let ctx = self.clone();
        tokio::task::spawn_blocking(move || {
            let window = validity(&chain);
            ctx.anchor_sources
                .iter()
                .find(|(_, roots)| chain_trusted_whenever(roots, &chain, window))
                .map(|(name, _)| name.clone())
        })
        .await
        .ok()
        .flatten()
    }

    /// The not-after (seconds since 1970) of the certificate of each hosted domain, by domain.
    pub fn hosted_not_after(&self) -> Vec<(String, i64)> {
        let hosted = self.hosted.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<(String, i64)> = hosted
            .iter()
            .filter_map(|(d, (ck, _))| Some((d.clone(), not_after(&ck.cert)?)))
            .collect();
        v.sort();
        v
    }

    /// The extended key usages of the certificate we present as hosted domain `domain` on the
    /// external side (empty: none given, or no certificate).
    pub fn presented_key_usages(&self, domain: &str) -> Vec<String> {
        self.identity_for(domain, false)
            .and_then(|ck| ck.cert.first().map(extended_key_usages))
            .unwrap_or_default()
    }

    /// [`check_peer`](Self::check_peer) on the blocking pool, off the async worker threads.
    pub async fn check_peer_off_thread(
        self: &Arc<Self>,
        chain: Vec<CertificateDer<'static>>,
        domain: &str,
        internal: bool,
    ) -> CertCheck {
        if chain.is_empty() {
            return CertCheck::Absent;
        }
        let (ctx, domain) = (self.clone(), domain.to_owned());
        tokio::task::spawn_blocking(move || ctx.check_peer(&chain, &domain, internal))
            .await
            .unwrap_or(CertCheck::Untrusted)
    }
}

/// Chain against `roots`, then DNS SAN (via webpki) or XmppAddr SAN (parsed here).
pub fn check_chain(
    roots: &RootCertStore,
    chain: &[CertificateDer<'static>],
    domain: &str,
) -> CertCheck {
    if chain.is_empty() {
        return CertCheck::Absent;
    }
    if !chain_trusted(roots, chain) {
        return CertCheck::Untrusted;
    }
    if names_domain(&chain[0], domain) {
        CertCheck::Valid
    } else {
        CertCheck::NameMismatch
    }
}

/// Whether `chain` (end entity first) validates against `roots` now, for the serverAuth or the
/// clientAuth purpose; a chain longer than [`MAX_PEER_CHAIN`] or larger than
/// [`MAX_PEER_CHAIN_BYTES`] is not even looked at.
fn chain_trusted(roots: &RootCertStore, chain: &[CertificateDer<'static>]) -> bool {
    chain_trusted_at(roots, chain, UnixTime::now())
}

/// Whether `chain` chains to `roots` whatever the date, for describing a certificate: checked
/// now, or, for an end entity outside its validity `window` (not-before, not-after in seconds
/// since 1970, as [`validity`] reads it), at the nearest second inside it — so an expired (or
/// not yet valid) certificate from a trusted CA is described as expired, not as untrusted.
/// Never used to accept a peer ([`chain_trusted`] is).
fn chain_trusted_whenever(
    roots: &RootCertStore,
    chain: &[CertificateDer<'static>],
    window: Option<(i64, i64)>,
) -> bool {
    let now = UnixTime::now().as_secs();
    let at = window.map_or(now, |(from, until)| {
        let from = u64::try_from(from).unwrap_or(0);
        let until = u64::try_from(until).unwrap_or(0);
        now.clamp(from, until.max(from))
    });
    chain_trusted_at(
        roots,
        chain,
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(at)),
    )
}

/// The not-before and not-after (seconds since 1970) of a chain's end-entity certificate, if it
/// parses.
fn validity(chain: &[CertificateDer<'_>]) -> Option<(i64, i64)> {
    let (_, parsed) = x509_parser::parse_x509_certificate(chain.first()?.as_ref()).ok()?;
    let v = parsed.validity();
    Some((v.not_before.timestamp(), v.not_after.timestamp()))
}

fn chain_trusted_at(
    roots: &RootCertStore,
    chain: &[CertificateDer<'static>],
    now: UnixTime,
) -> bool {
    let Some(end) = chain.first() else {
        return false;
    };
    if chain.len() > MAX_PEER_CHAIN
        || chain.iter().map(|c| c.len()).sum::<usize>() > MAX_PEER_CHAIN_BYTES
    {
        return false;
    }
    let Ok(ee) = webpki::EndEntityCert::try_from(end) else {
        return false;
    };
    [
        webpki::KeyUsage::server_auth(),
        webpki::KeyUsage::client_auth(),
    ]
    .into_iter()
    .any(|usage| {
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &roots.roots,
            &chain[1..],
            now,
            usage,
            None,
            None,
        )
        .is_ok()
    })
}

/// Whether the certificate names `domain`: a DNS SAN (via webpki, wildcards included) or an
/// XmppAddr SAN.
fn names_domain(end: &CertificateDer<'static>, domain: &str) -> bool {
    let dns_ok = webpki::EndEntityCert::try_from(end).is_ok_and(|ee| {
        ServerName::try_from(domain.to_owned())
            .ok()
            .is_some_and(|n| ee.verify_is_valid_for_subject_name(&n).is_ok())
    });
    dns_ok
        || xmpp_addrs(end)
            .iter()
            .any(|a| a.eq_ignore_ascii_case(domain))
}

/// The extended key usages of a certificate by name (`serverAuth`, `clientAuth`, …; an
/// unnamed purpose as its OID); empty when it has no such extension or cannot be parsed.
pub fn extended_key_usages(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::prelude::*;
    let Ok((_, parsed)) = X509Certificate::from_der(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(eku)) = parsed.extended_key_usage() else {
        return Vec::new();
    };
    let e = eku.value;
    let mut out: Vec<String> = [
        (e.any, "any"),
        (e.server_auth, "serverAuth"),
        (e.client_auth, "clientAuth"),
        (e.code_signing, "codeSigning"),
        (e.email_protection, "emailProtection"),
        (e.time_stamping, "timeStamping"),
        (e.ocsp_signing, "OCSPSigning"),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, name)| name.to_owned())
    .collect();
    out.extend(e.other.iter().map(|oid| oid.to_id_string()));
    out
}

/// The not-after (seconds since 1970) of a chain's end-entity certificate, if it parses.
pub fn not_after(chain: &[CertificateDer<'_>]) -> Option<i64> {
    validity(chain).map(|(_, not_after)| not_after)
}

/// Text from a peer's certificate as it may be shown: control characters escaped, bounded.
fn shown(text: &str) -> String {
    crate::log_limit::Wire(text).to_string()
}

/// A peer's certificate described for the partner test: the end entity's subject, names,
/// issuer, validity and purposes, whether the chain validates against `roots` and whether it
/// names `domain` (`trusted` says whether it chains to `roots` whatever its dates: an expired
/// certificate is told apart by its not-after). `None` when the chain is empty or the end
/// entity cannot be parsed.
pub fn describe_chain(
    roots: &RootCertStore,
    chain: &[CertificateDer<'static>],
    domain: &str,
) -> Option<fedgate_model::probe::CertificateInfo> {
    use fedgate_model::probe::{CertificateInfo, format_utc};
    use x509_parser::prelude::*;
    let end = chain.first()?;
    let (_, parsed) = X509Certificate::from_der(end.as_ref()).ok()?;
    let dns_names = match parsed.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|g| match g {
                GeneralName::DNSName(n) => Some(shown(n)),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let validity = parsed.validity();
    let (not_before, not_after) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    Some(CertificateInfo {
        subject: shown(&parsed.subject().to_string()),
        dns_names,
        xmpp_addrs: xmpp_addrs(end).iter().map(|a| shown(a)).collect(),
        issuer: shown(&parsed.issuer().to_string()),
        not_before: format_utc(not_before),
        not_after: format_utc(not_after),
        not_before_unix: not_before,
        not_after_unix: not_after,
        trusted: chain_trusted_whenever(roots, chain, Some((not_before, not_after))),
        valid_for_domain: names_domain(end, domain),
        extended_key_usage: extended_key_usages(end),
    })
}

/// The XmppAddr (id-on-xmppAddr otherName) SAN values of a certificate.
pub fn xmpp_addrs(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::prelude::*;
    let Ok((_, parsed)) = X509Certificate::from_der(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    let oid = x509_parser::der_parser::oid::Oid::from(XMPP_ADDR_OID).ok();
    san.value
        .general_names
        .iter()
        .filter_map(|g| match g {
            GeneralName::OtherName(o, value) if Some(o) == oid.as_ref() => utf8_in_explicit(value),
            _ => None,
        })
        .collect()
}

/// Read `[0] EXPLICIT UTF8String` (or a bare UTF8String) from DER.
fn utf8_in_explicit(der: &[u8]) -> Option<String> {
    fn tlv(b: &[u8]) -> Option<(u8, &[u8])> {
        let tag = *b.first()?;
        let l0 = *b.get(1)?;
        let (len, hdr) = if l0 < 0x80 {
            (l0 as usize, 2)
        } else {
            let n = (l0 & 0x7f) as usize;
            if n == 0 || n > 3 {
                return None;
            }
            let mut len = 0usize;
            for i in 0..n {
                len = (len << 8) | *b.get(2 + i)? as usize;
            }
            (len, 2 + n)
        };
        Some((tag, b.get(hdr..hdr + len)?))
    }
    let (tag, body) = tlv(der)?;
    let (tag, body) = if tag == 0xA0 { tlv(body)? } else { (tag, body) };
    (tag == 0x0C)
        .then(|| String::from_utf8(body.to_vec()).ok())
        .flatten()
}

/// Accepts any peer certificate during the handshake (signatures are still verified); the chain
/// and name are judged afterwards with [`check_chain`].
#[derive(Debug)]
struct AcceptAnyCert {
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AcceptAnyCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// SNI → certificate. External side: the hosted domain's; internal side: the partner domain's.
#[derive(Debug)]
struct Resolver {
    ctx: std::sync::Weak<TlsContext>,
    internal: bool,
    /// The domain to use when the ClientHello has no SNI.
    fallback: Option<String>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let ctx = self.ctx.upgrade()?;
        match hello.server_name().or(self.fallback.as_deref()) {
            Some(name) => ctx.identity_for(name, self.internal),
            None if !self.internal => ctx.identity_for("", false),
            None => None,
        }
    }
}

#[derive(Debug)]
struct FixedClientCert(Arc<CertifiedKey>);

impl rustls::client::ResolvesClientCert for FixedClientCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> (rcgen::Certificate, rcgen::Issuer<'static, rcgen::KeyPair>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "test CA");
        let cert = p.self_signed(&key).unwrap();
        (cert, rcgen::Issuer::new(p, key))
    }

    fn leaf(
        issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
        dns: Option<&str>,
        xmpp: Option<&str>,
    ) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p =
            rcgen::CertificateParams::new(dns.map(|d| vec![d.to_owned()]).unwrap_or_default())
                .unwrap();
        if let Some(x) = xmpp {
            p.subject_alt_names.push(rcgen::SanType::OtherName((
                XMPP_ADDR_OID.to_vec(),
                rcgen::OtherNameValue::Utf8String(x.to_owned()),
            )));
        }
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        p.signed_by(&key, issuer).unwrap().der().clone()
    }

    /// A TLS context serving `corp.example` (self-signed), as `load` would make it.
    fn context() -> Arc<TlsContext> {
        let p = provider();
        let (cert, key) = self_signed("corp.example").unwrap();
        let ck = identity_from_pem(&cert, &key, false)
            .unwrap()
            .certified(&p)
            .unwrap();
        let ctx = Arc::new(TlsContext {
            provider: p,
            roots: Arc::new(RootCertStore::empty()),
            anchor_sources: Vec::new(),
            internal_roots: Arc::new(RootCertStore::empty()),
            mint_filter: RwLock::new(None),
            hosted: RwLock::new(HashMap::from([(
                "corp.example".to_owned(),
                (ck.clone(), false),
            )])),
            default_hosted: RwLock::new(Some(ck)),
            minter: None,
            minted: lru(),
            client_configs: lru(),
            external_server: RwLock::new(None),
            internal_server: RwLock::new(None),
        });
        let ext = ctx
            .server_config(Arc::new(Resolver {
                ctx: Arc::downgrade(&ctx),
                internal: false,
                fallback: None,
            }))
            .unwrap();
        *ctx.external_server.write().unwrap() = Some(ext);
        ctx
    }

    #[test]
    fn server_configs_keep_no_sessions_and_send_no_tickets() {
        let ctx = context();
        let cfg = ctx.server_for(false, Some("corp.example")).unwrap();
        assert_eq!(cfg.send_tls13_tickets, 0);
        assert!(!cfg.session_storage.can_cache());
    }

    /// The server end of a TLS stream is a `Conn` that reads from rustls' buffer: no read
    /// buffer of its own, and after a large stanza, nothing kept once idle.
    #[tokio::test]
    async fn a_tls_conn_has_no_read_buffer_and_keeps_nothing_when_idle() {
        use crate::conn::{Conn, ConnLimits, Counters};
        use fedgate_xmpp::{Element, Event, Limits, StreamHeader, ns};
        use tokio::io::AsyncWriteExt;
        let ctx = context();
        let server_cfg = ctx.server_for(false, Some("corp.example")).unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let p = provider();
        let client_cfg = ClientConfig::builder_with_provider(p.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert {
                algs: p.signature_verification_algorithms,
            }))
            .with_no_client_auth();
        let client = tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = rustls_pki_types::ServerName::try_from("corp.example").unwrap();
            let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client_cfg))
                .connect(name, tcp)
                .await
                .unwrap();
            let mut out = Vec::new();
            StreamHeader::initiating("partner.example", "corp.example", true).write_to(&mut out);
            let message = Element::new("message", ns::SERVER)
                .with_child(Element::new("body", ns::SERVER).with_text("x".repeat(60 * 1024)));
            out.extend_from_slice(&message.to_bytes());
            tls.write_all(&out).await.unwrap();
            tls.flush().await.unwrap();
            tls
        });
        let (tcp, _) = l.accept().await.unwrap();
        let mut conn = Conn::new(
            tcp,
            ConnLimits {
                codec: Limits::default(),
                write_stall: std::time::Duration::from_secs(30),
            },
            Arc::new(Counters::default()),
        );
        conn.accept_tls(server_cfg).await.unwrap();
        assert_eq!(conn.read_capacity(), 0);
        assert!(matches!(
            conn.next_event().await.unwrap(),
            Event::StreamOpen(_)
        ));
        match conn.next_event().await.unwrap() {
            Event::Element { element, .. } => assert_eq!(
                element.children().next().map(|b| b.text().len()),
                Some(60 * 1024)
            ),
            other => panic!("{other:?}"),
        }
        let _client = client.await.unwrap();
        // Only the parser's buffers (the body's text run): no read buffer on TLS.
        let held = conn.read_capacity();
        assert_eq!(held, conn.parser().held_capacity());
        assert!(held > 4 * 1024, "{held}");
        conn.release_idle();
        assert_eq!(conn.read_capacity(), 0);
    }

    #[test]
    fn chain_and_names() {
        let (ca_cert, issuer) = ca();
        let mut roots = RootCertStore::empty();
        roots.add(ca_cert.der().clone()).unwrap();
        let dns = leaf(&issuer, Some("partner.example"), None);
        assert_eq!(
            check_chain(&roots, std::slice::from_ref(&dns), "partner.example"),
            CertCheck::Valid
        );
        assert_eq!(
            check_chain(&roots, std::slice::from_ref(&dns), "other.example"),
            CertCheck::NameMismatch
        );
        let x = leaf(&issuer, None, Some("xmpp-only.example"));
        assert_eq!(xmpp_addrs(&x), vec!["xmpp-only.example".to_owned()]);
        assert_eq!(
            check_chain(&roots, &[x], "xmpp-only.example"),
            CertCheck::Valid
        );
        assert_eq!(
            check_chain(&roots, &[], "partner.example"),
            CertCheck::Absent
        );
        let (_, other_issuer) = ca();
        let foreign = leaf(&other_issuer, Some("partner.example"), None);
        assert_eq!(
            check_chain(&roots, &[foreign], "partner.example"),
            CertCheck::Untrusted
        );
        let (c, _k) = self_signed("corp.example").unwrap();
        let der = CertificateDer::from_pem_slice(c.as_bytes()).unwrap();
        assert_eq!(
            check_chain(&roots, std::slice::from_ref(&der), "corp.example"),
            CertCheck::Untrusted
        );
        assert!(
            xmpp_addrs(&der).is_empty(),
            "minted certificates carry a DNS-ID only"
        );
    }

    /// Since 2026 public CAs issue serverAuth-only certificates; a peer presenting one (as a TLS
    /// client for SASL EXTERNAL, or as a server) is accepted, as one with clientAuth only or
    /// both. A purpose that is neither is not a server's certificate.
    #[test]
    fn certificate_purposes() {
        use rcgen::ExtendedKeyUsagePurpose as P;
        let (ca_cert, issuer) = ca();
        let mut roots = RootCertStore::empty();
        roots.add(ca_cert.der().clone()).unwrap();
        let with = |purposes: Vec<P>| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut p = rcgen::CertificateParams::new(vec!["partner.example".to_owned()]).unwrap();
            p.extended_key_usages = purposes;
            p.signed_by(&key, &issuer).unwrap().der().clone()
        };
        for (purposes, expected) in [
            (vec![P::ServerAuth], CertCheck::Valid),
            (vec![P::ClientAuth], CertCheck::Valid),
            (vec![P::ServerAuth, P::ClientAuth], CertCheck::Valid),
            (vec![P::CodeSigning], CertCheck::Untrusted),
        ] {
            let cert = with(purposes.clone());
            assert_eq!(
                check_chain(&roots, &[cert], "partner.example"),
                expected,
                "{purposes:?}"
            );
        }
    }

    #[test]
    fn explicit_utf8_parsing() {
        assert_eq!(
            utf8_in_explicit(&[0xA0, 0x03, 0x0C, 0x01, b'a']).as_deref(),
            Some("a")
        );
        assert_eq!(utf8_in_explicit(&[0x0C, 0x01, b'b']).as_deref(), Some("b"));
        assert_eq!(utf8_in_explicit(&[0xA0, 0x05, 0x0C, 0x09, b'a']), None);
        assert_eq!(utf8_in_explicit(&[]), None);
    }
}
