//! The runtime: opens the store, makes sure a dialback secret exists, loads certificates, binds
//! the listeners (one accept loop each, one task per connection), refreshes the policy snapshot
//! when the store's revision changes (checked when the store announces a change, and every
//! [`REFRESH_INTERVAL`] in any case; closing streams the change no longer allows), serves
//! `/metrics` and `/status`, and shuts down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use fedgate_model::enforce::{self, LiveStream, Side};
use fedgate_model::{PartnerIndex, Secret};
use fedgate_store::{AuditContext, ChangeWatch, Changes, Store, StoreError};
use fedgate_xmpp::{StreamError, StreamErrorCondition};
use tokio::net::TcpListener;

use crate::admin::ControlPlane;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::state::{Control, Shared, Snapshot};
use crate::tls::TlsContext;

/// How often the store's revision is polled (also when the store announces changes: the safety net
/// for announcements lost while its watch reconnects).
pub const REFRESH_INTERVAL: Duration = Duration::from_millis(250);
/// How often changed partner health is saved to the store (and at shutdown).
pub const HEALTH_SAVE_INTERVAL: Duration = Duration::from_secs(30);

/// Save the partner health records when they changed (on the blocking pool); a failure is
/// logged and retried next time.
pub async fn save_health(shared: &Shared) {
    let Some(rows) = shared.health.rows_to_save() else {
        return;
    };
    let store = shared.store.clone();
    let why = match tokio::task::spawn_blocking(move || store.save_partner_health(&rows)).await {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    shared.health.mark_dirty();
    warn!(error = %why, "saving partner health failed; retrying later");
}

async fn health_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(HEALTH_SAVE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        save_health(&shared).await;
    }
}

/// A running gateway.
pub struct Gateway {
    pub shared: Arc<Shared>,
    pub internal_addr: SocketAddr,
    pub external_addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    /// The Direct TLS (XEP-0368) external listener, if configured.
    pub direct_tls_addr: Option<SocketAddr>,
    /// The admin API and web panel listener, if configured.
    pub admin_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The store's part of the snapshot: partners, policies and grants, settings, at one revision.
struct PolicyParts {
    revision: u64,
    index: PartnerIndex,
    access: fedgate_model::AccessPolicies,
    settings: fedgate_model::XmppGatewayConfiguration,
}

fn load_policy(store: &dyn Store) -> anyhow::Result<PolicyParts> {
    let revision = store.revision()?;
    let partners = store.partners(None)?;
    let index = PartnerIndex::build(partners.into_iter().map(|v| v.value))
        .map_err(|e| anyhow::anyhow!("the partner list is inconsistent: {e}"))?;
    let settings = store.gateway_configuration()?;
    let access = fedgate_model::AccessPolicies::new(
        store.policies()?.into_iter().map(|v| v.value),
        store.grants()?,
    );
    Ok(PolicyParts {
        revision,
        index,
        access,
        settings,
    })
}

/// The whole snapshot at start: the policy and every recorded authorisation (the hosted
/// domains are added from the config by [`Shared::new`]).
fn load_snapshot(store: &dyn Store) -> anyhow::Result<Snapshot> {
    let p = load_policy(store)?;
    let authorisations = fedgate_model::snapshot::Authorisations::new(
        store
            .authorisations(None)?
            .into_iter()
            .map(|a| (a.local_user, a.remote_user)),
    );
    Ok(Snapshot::new(
        p.revision,
        [],
        p.index,
        p.access,
        p.settings,
        authorisations,
    ))
}

/// Generate and store a dialback secret when none is set.
fn ensure_secret(store: &dyn Store) -> anyhow::Result<()> {
    let mut cfg = store.gateway_configuration()?;
    if cfg.dialback_passphrase.is_some() {
        return Ok(());
    }
    use rand::Rng;
    use rand::distr::Alphanumeric;
    let secret: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(48)
        .map(char::from)
        .collect();
    cfg.dialback_passphrase = Some(Secret::new(secret));
    store.set_gateway_configuration(
        &cfg,
        &AuditContext {
            actor: "gateway".into(),
            command: "fedgate serve (generated DialbackPassphrase)".into(),
        },
    )?;
    info!("generated a random DialbackPassphrase and stored it");
    Ok(())
}

/// The config's store, opened on the blocking pool.
async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let store_url = config.store.clone();
    tokio::task::spawn_blocking(move || fedgate_store::open(&store_url))
        .await?
        .map(Arc::from)
        .with_context(|| format!("opening the store {}", config.store))
}

/// The config's certificates and trust anchors, loaded on the blocking pool.
async fn load_tls(config: &Config) -> anyhow::Result<Arc<TlsContext>> {
    let c = config.clone();
    tokio::task::spawn_blocking(move || TlsContext::load(&c)).await?
}

/// The gateway's state without listeners or background tasks, for a one-off diagnostic from
/// the CLI (`fedgate partner test`): the store's partners, settings and dialback secret, the
/// hosted domains' certificates and the trust anchors of `config`, and its resolver. No
/// dialback secret is generated (without one, dialback cannot be tested); a hosted domain
/// without a certificate gets its self-signed one generated as `fedgate serve` would.
pub async fn offline(config: Config) -> anyhow::Result<Arc<Shared>> {
    let store = open_store(&config).await?;
    let s2 = store.clone();
    let snapshot = tokio::task::spawn_blocking(move || load_snapshot(s2.as_ref())).await??;
    let tls = load_tls(&config).await?;
    let (_stop, shutdown_rx) = watch::channel(false);
    Ok(Arc::new(Shared::new(
        config,
        snapshot,
        tls,
        store,
        shutdown_rx,
    )))
}

impl Gateway {
    /// Start everything but the admin and metrics listeners' serving (their addresses are
    /// still bound): [`Gateway::start_with`] with no control plane.
    pub async fn start(config: Config) -> anyhow::Result<Gateway> {
        Gateway::start_with(config, None).await
    }

    /// Start everything; returns once the listeners are bound. `control` serves the admin and
    /// metrics listeners (without one they are bound, announced in the log, and not served).
    pub async fn start_with(
        config: Config,
        control: Option<Arc<dyn ControlPlane>>,
    ) -> anyhow::Result<Gateway> {
        let store = open_store(&config).await?;
        let initial = config.settings.clone();
        let s2 = store.clone();
        let snapshot = tokio::task::spawn_blocking(move || -> anyhow::Result<Snapshot> {
            // The config's [settings] are initial values: applied only while the store still
            // holds the defaults and no admin has changed them.
            let current = s2.gateway_configuration()?;
            let defaults = fedgate_model::XmppGatewayConfiguration {
                dialback_passphrase: current.dialback_passphrase.clone(),
                enable_logging_all_message_bodies: current.enable_logging_all_message_bodies,
                ..Default::default()
            };
            if current == defaults && initial != fedgate_model::XmppGatewayConfiguration::default()
            {
                let mut c = initial;
                c.dialback_passphrase = current.dialback_passphrase.clone();
                c.enable_logging_all_message_bodies = current.enable_logging_all_message_bodies;
                s2.set_gateway_configuration(
                    &c,
                    &AuditContext {
                        actor: "gateway".into(),
                        command: "fedgate serve (initial settings from the config file)".into(),
                    },
                )?;
            }
            ensure_secret(s2.as_ref())?;
            load_snapshot(s2.as_ref())
        })
        .await??;
        let tls = load_tls(&config).await?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let internal = TcpListener::bind(config.internal_listen)
            .await
            .with_context(|| format!("binding the internal listener {}", config.internal_listen))?;
        let external = TcpListener::bind(config.external_listen)
            .await
            .with_context(|| format!("binding the external listener {}", config.external_listen))?;
        let metrics = match config.metrics_listen {
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .with_context(|| format!("binding the metrics listener {a}"))?,
            ),
            None => None,
        };
        let direct = match config.direct_tls_listen {
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .with_context(|| format!("binding the Direct TLS listener {a}"))?,
            ),
            None => None,
        };
        let admin = match config.admin {
            Some(a) => Some((
                TcpListener::bind(a.listen)
                    .await
                    .with_context(|| format!("binding the admin listener {}", a.listen))?,
                a.tls,
            )),
            None => None,
        };
        let admin_addr = admin.as_ref().map(|(l, _)| l.local_addr()).transpose()?;
        let direct_tls_addr = direct.as_ref().map(|d| d.local_addr()).transpose()?;
        let internal_addr = internal.local_addr()?;
        let external_addr = external.local_addr()?;
        let metrics_addr = metrics.as_ref().map(|m| m.local_addr()).transpose()?;
        let shared = Arc::new(Shared::new(
            config,
            snapshot,
            tls,
            store.clone(),
            shutdown_rx,
        ));
        {
            let s2 = store.clone();
            match tokio::task::spawn_blocking(move || s2.partner_health()).await? {
                Ok(rows) => shared.health.load(rows),
                Err(e) => {
                    warn!(error = %e, "cannot read the stored partner health; starting empty")
                }
            }
        }
        // Internal-side certificates are minted only for listed partner domains.
        let weak = Arc::downgrade(&shared);
        shared.tls.set_mint_filter(Arc::new(move |domain: &str| {
            weak.upgrade()
                .is_some_and(|s| s.snapshot().partner(domain).is_some())
        }));
        shared.set_internal_sources(internal_sources(&shared.config()).await);
        // In the pool before accepting: a previous life's leases gone, a first heartbeat.
        let address = Some(external_addr.to_string());
        crate::cluster::join(&shared, address.clone()).await;
        let mut tasks = vec![
            tokio::spawn(crate::cluster::heartbeat_loop(shared.clone(), address)),
            tokio::spawn(accept_loop(shared.clone(), Side::Internal, internal, false)),
            tokio::spawn(accept_loop(shared.clone(), Side::External, external, false)),
            tokio::spawn(refresh_loop(shared.clone(), store)),
            tokio::spawn(expire_sessions(shared.clone())),
            tokio::spawn(health_loop(shared.clone())),
            tokio::spawn(crate::internal_dns::keep_in_step(shared.clone())),
        ];
        if let Some(d) = direct {
            tasks.push(tokio::spawn(accept_loop(
                shared.clone(),
                Side::External,
                d,
                true,
            )));
        }
        if (metrics.is_some() || admin.is_some()) && control.is_none() {
            warn!(
                "no control plane in this process: the admin and metrics listeners are bound but not served"
            );
        }
        if let (Some(m), Some(control)) = (metrics, &control) {
            let site = crate::admin::metrics_site(&shared, m);
            tasks.push(tokio::spawn(control.serve_metrics(site)));
        }
        if let Some((listener, tls)) = admin {
            let tls_config = if tls {
                let c = crate::admin::tls_config(&shared);
                anyhow::ensure!(
                    c.is_some(),
                    "the admin listener needs a certificate for a hosted domain"
                );
                c
            } else {
                None
            };
            if let Some(addr) = admin_addr {
                let scheme = if tls { "https" } else { "http" };
                info!(%addr, "admin API and web panel at {scheme}://{addr}/");
            }
            if let Some(control) = &control {
                let site = crate::admin::admin_site(
                    &shared,
                    listener,
                    tls_config,
                    crate::probe::listeners(external_addr, direct_tls_addr),
                );
                tasks.push(tokio::spawn(control.serve_admin(site)));
            }
        }
        info!(internal = %internal_addr, external = %external_addr, metrics = ?metrics_addr, "fedgate is serving");
        Ok(Gateway {
            shared,
            internal_addr,
            external_addr,
            metrics_addr,
            direct_tls_addr,
            admin_addr,
            shutdown: shutdown_tx,
            tasks,
        })
    }

    /// SIGHUP: re-read the configuration file. Certificates, hosted domains (their internal
    /// servers, sites and certificates), limits and `[internal_dns]` apply to new streams and
    /// stanzas (and the next internal DNS round) at once; a
    /// change of listener addresses, the store, the admin listener or `[dns]` applies at the next start
    /// (logged). An invalid file, or a certificate that does not load, changes nothing.
    pub fn reload(&self) {
        let current = self.shared.config();
        let config = match Config::load(&current.file) {
            Ok(c) => c,
            Err(e) => {
                error!(error = %e, "SIGHUP: the configuration file is invalid; nothing reloaded");
                return;
            }
        };
        if let Err(e) = self.shared.tls.reload(&config) {
            error!(error = %format!("{e:#}"), "SIGHUP: certificate reload failed; keeping the old configuration");
            return;
        }
        let at_next_start: Vec<&str> = [
            (
                "internal_listener",
                current.internal_listen != config.internal_listen,
            ),
            (
                "external_listener",
                current.external_listen != config.external_listen,
            ),
            (
                "direct_tls_listen",
                current.direct_tls_listen != config.direct_tls_listen,
            ),
            (
                "metrics_listen",
                current.metrics_listen != config.metrics_listen,
            ),
            ("admin", current.admin != config.admin),
            ("store", current.store != config.store),
            ("dns", current.dns != config.dns),
            ("node.name", current.node_name != config.node_name),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect();
        if !at_next_start.is_empty() {
            warn!(keys = ?at_next_start, "SIGHUP: these settings changed and apply at the next start");
        }
        self.shared.replace_config(config);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let nets = internal_sources(&shared.config()).await;
            shared.set_internal_sources(nets);
        });
        info!("SIGHUP: configuration and certificates reloaded");
    }

    /// Graceful shutdown: stop accepting, close every stream with `<system-shutdown/>`, wait for
    /// the writes (at most `grace`).
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        for t in &self.tasks {
            t.abort();
        }
        if tokio::time::timeout(grace, self.shared.tracker.wait_idle())
            .await
            .is_err()
        {
            warn!("some streams did not close in time");
        }
        save_health(&self.shared).await;
        crate::cluster::leave(&self.shared).await;
        info!("fedgate stopped");
    }
}

/// The networks the internal listener accepts: `internal_listener.allowed_sources`, or by
/// default the addresses of the hosted domains' internal servers (names resolved now).
pub async fn internal_sources(config: &Config) -> Vec<ipnet::IpNet> {
    let nets = match &config.internal_sources {
        crate::config::InternalSources::Networks(n) => n.clone(),
        crate::config::InternalSources::InternalServers => {
            let mut nets = Vec::new();
            for h in &config.hosted {
                let server = &h.internal_server;
                match tokio::net::lookup_host((server.host.as_str(), server.port)).await {
                    Ok(addrs) => nets.extend(addrs.map(|a| ipnet::IpNet::from(a.ip()))),
                    Err(e) => {
                        warn!(server = %server, error = %e, "cannot resolve an internal server; it cannot connect to the internal listener until it resolves (reload) or internal_listener.allowed_sources names it")
                    }
                }
            }
            nets.sort();
            nets.dedup();
            nets
        }
    };
    info!(allowed = ?nets.iter().map(|n| n.to_string()).collect::<Vec<_>>(), "internal listener sources");
    nets
}

async fn accept_loop(shared: Arc<Shared>, side: Side, listener: TcpListener, direct_tls: bool) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, peer)) => {
                    shared.metrics.streams_accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let guard = shared.task();
                    let s = shared.clone();
                    tokio::spawn(async move {
                        let _guard = guard;
                        crate::inbound::handle(s, side, tcp, peer, direct_tls).await;
                    });
                }
                Err(e) => {
                    warn!(%side, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Free the session state that expired (requests past their timeout, closed and idle paths,
/// refilled contact-request budgets), every [`SESSION_SWEEP`].
async fn expire_sessions(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(SESSION_SWEEP);
    loop {
        tick.tick().await;
        shared.sessions().expire(std::time::Instant::now());
    }
}

/// How often [`expire_sessions`] runs.
const SESSION_SWEEP: Duration = Duration::from_secs(30);

/// What the store announced and the refresh loop has not handled yet.
#[derive(Default)]
struct Announced {
    wake: tokio::sync::Notify,
    /// Authorisations changed (they do not move the revision: reload them).
    authorisations: std::sync::atomic::AtomicBool,
}

impl Announced {
    fn tell(&self, changes: Changes) {
        if changes.authorisations {
            self.authorisations
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        if changes.any() {
            self.wake.notify_one();
        }
    }
}

/// Tell `announced` whatever the store announces ([`Store::watch`]: PostgreSQL's LISTEN/NOTIFY),
/// on a thread of its own since a watch blocks; a broken watch is opened again (1 s, doubling to
/// 30 s) and then tells of everything, as changes may have been missed meanwhile. Ends at once
/// for a store without announcements (SQLite), and within a second once `announced` is dropped.
fn spawn_store_watch(
    open: impl Fn() -> Result<Option<Box<dyn ChangeWatch>>, StoreError> + Send + 'static,
    announced: std::sync::Weak<Announced>,
) -> Option<std::thread::JoinHandle<()>> {
    let everything = Changes {
        records: true,
        authorisations: true,
    };
    let run = move || {
        let mut retry = Duration::from_secs(1);
        while announced.strong_count() > 0 {
            let mut watch = match open() {
                Ok(Some(w)) => w,
                Ok(None) => return,
                Err(e) => {
                    warn!(error = %e, retry_in = ?retry, "cannot watch the store for changes; polling its revision meanwhile");
                    std::thread::sleep(retry);
                    retry = (retry * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            retry = Duration::from_secs(1);
            if let Some(a) = announced.upgrade() {
                a.tell(everything);
            }
            loop {
                match watch.wait(Duration::from_secs(1)) {
                    Ok(changes) => match announced.upgrade() {
                        Some(a) => a.tell(changes),
                        None => return,
                    },
                    Err(e) => {
                        warn!(error = %e, "the store's change watch broke; opening it again");
                        break;
                    }
                }
            }
        }
    };
    std::thread::Builder::new()
        .name("store-watch".into())
        .spawn(run)
        .map_err(|e| warn!(error = %e, "cannot start the store watch; polling the store's revision only"))
        .ok()
}

/// Check the store's revision when the store announces a change and every [`REFRESH_INTERVAL`];
/// on change, swap the policy and re-check live streams.
async fn refresh_loop(shared: Arc<Shared>, store: Arc<dyn Store>) {
    let announced = Arc::new(Announced::default());
    let watched = store.clone();
    spawn_store_watch(move || watched.watch(), Arc::downgrade(&announced));
    let mut tick = tokio::time::interval(REFRESH_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = announced.wake.notified() => {}
        }
        if announced
            .authorisations
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            match crate::authorisations::Writer::reload(&shared).await {
                Ok(count) => info!(authorisations = count, "authorisations reloaded"),
                Err(e) => {
                    // Tried again every tick; while the store is known to be down, said once.
                    if shared.metrics.store_error().is_none() {
                        warn!(error = %e, "reading the authorisations failed; keeping the current ones until the next try");
                    } else {
                        debug!(error = %e, "reading the authorisations failed again");
                    }
                    announced
                        .authorisations
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }
        let s = store.clone();
        let current = shared.snapshot().revision;
        let loaded = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<PolicyParts>> {
            if s.revision()? == current {
                return Ok(None);
            }
            load_policy(s.as_ref()).map(Some)
        })
        .await;
        if let Ok(Ok(_)) = &loaded {
            if shared.metrics.store_read(None) {
                info!("the store can be read again");
            }
        }
        match loaded {
            Ok(Ok(Some(p))) => {
                info!(
                    revision = p.revision,
                    partners = p.index.len(),
                    "policy refreshed"
                );
                shared
                    .update_snapshot(|s| s.with_policy(p.revision, p.index, p.access, p.settings));
                recheck_streams(&shared);
                // A removed partner's traffic series goes with it.
                let policy = shared.snapshot();
                shared.health.retain_traffic(|p| {
                    policy.partner(p).is_some_and(|x| x.identity.as_str() == p)
                });
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                // Said once when the store goes away (and once when it is back), not every tick.
                let error = format!("{e:#}");
                if shared.metrics.store_read(Some(error.clone())) {
                    warn!(error = %error, "reading the store failed; relaying on with the current policy until it can be read");
                } else {
                    debug!(error = %error, "the store still cannot be read");
                }
            }
            Err(e) => warn!(error = %e, "refresh task failed"),
        }
    }
}

/// Close the streams a policy change no longer allows: partner removed, settings that
/// no longer allow the stream's method, a lowered connection limit (the newest streams go). A
/// lowered limit is applied to this node's own streams (each node of a pool closes its excess);
/// admission ([`crate::cluster::take_lease`]) is what counts the whole pool.
pub fn recheck_streams(shared: &Shared) {
    let policy = shared.snapshot();
    let mut by_partner: std::collections::HashMap<fedgate_model::Domain, Vec<u64>> =
        std::collections::HashMap::new();
    shared.registry.for_each(|id, e| {
        if e.side == Side::External && e.authenticated {
            if let Some(p) = &e.partner {
                by_partner.entry(p.clone()).or_default().push(id);
            }
        }
    });
    let mut close_ids = std::collections::HashMap::new();
    for (identity, mut ids) in by_partner {
        let Some(p) = policy.partner(identity.as_str()) else {
            continue;
        };
        if let Some((n, r)) =
            enforce::excess_connections(p, policy.settings.partner_connection_limit, ids.len())
        {
            ids.sort_unstable();
            for id in ids.iter().rev().take(n) {
                close_ids.insert(*id, r.clone());
            }
        }
    }
    shared.registry.for_each(|id, e| {
        if let Some(r) = close_ids.get(&id) {
            info!(partner = ?e.partner, reason = r.reason, "closing a stream after a policy change: {}", r.text);
            let _ = e.control.send(Control::Close(
                StreamError::new(StreamErrorCondition::PolicyViolation, r.text.clone()),
                r.reason,
            ));
        }
    });
    shared.registry.for_each(|id, e| {
        if close_ids.contains_key(&id) {
            return;
        }
        // The internal side's outbound streams speak as a partner domain (to a hosted domain's
        // internal server): a removed partner's go too, set up or not. (Without a partner,
        // `still_allowed` refuses before it looks at the method.)
        if e.side == Side::Internal && e.direction == crate::state::Direction::Outbound {
            if let Some(d) = e.local_domain.as_deref()
                && policy.partner(d).is_none()
                && let Err(r) = enforce::still_allowed(d, None, LiveStream {
                    method: e.method.unwrap_or(fedgate_model::AuthMethod::TcpDialback),
                    tls_active: e.tls_version.is_some(),
                })
            {
                info!(domain = %d, reason = r.reason, "closing an internal outbound stream after a policy change: {}", r.text);
                let _ = e.control.send(Control::Close(StreamError::new(StreamErrorCondition::PolicyViolation, r.text), r.reason));
            }
            return;
        }
        if e.side != Side::External || !e.authenticated {
            return;
        }
        let Some(method) = e.method else { return };
        let live = LiveStream { method, tls_active: e.tls_version.is_some() };
        for d in &e.domains {
            if let Err(r) = enforce::still_allowed(d, policy.partner(d).map(|p| &**p), live) {
                info!(domain = %d, reason = r.reason, "closing a stream after a policy change: {}", r.text);
                let _ = e.control.send(Control::Close(StreamError::new(StreamErrorCondition::PolicyViolation, r.text), r.reason));
                return;
            }
        }
    });
}

/// Run the gateway until SIGTERM/SIGINT (SIGHUP reloads certificates), without a control
/// plane ([`serve_with`]).
pub async fn serve(config: Config) -> anyhow::Result<()> {
    serve_with(config, None).await
}

/// Run the gateway until SIGTERM/SIGINT (SIGHUP reloads certificates), `control` serving its
/// admin and metrics listeners.
pub async fn serve_with(
    config: Config,
    control: Option<Arc<dyn ControlPlane>>,
) -> anyhow::Result<()> {
    let gw = Gateway::start_with(config, control).await?;
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        loop {
            tokio::select! {
                _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
                _ = int.recv() => { info!("SIGINT: shutting down"); break; }
                _ = hup.recv() => gw.reload(),
            }
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    gw.shutdown(Duration::from_secs(10)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::mpsc;

    /// A watch that answers what the test sends it: `Ok(changes)` an announcement, `Err(())` a
    /// broken connection; nothing sent within the timeout is no change.
    struct FakeWatch(mpsc::Receiver<Result<Changes, ()>>);

    impl ChangeWatch for FakeWatch {
        fn wait(&mut self, timeout: Duration) -> Result<Changes, StoreError> {
            match self.0.recv_timeout(timeout) {
                Ok(Ok(changes)) => Ok(changes),
                Ok(Err(())) => Err(StoreError::Access {
                    path: "postgres://test@db:5432/fg".into(),
                    reason: "connection closed".into(),
                }),
                Err(_) => Ok(Changes::default()),
            }
        }
    }

    async fn woken(announced: &Announced, within: Duration) -> bool {
        tokio::time::timeout(within, announced.wake.notified())
            .await
            .is_ok()
    }

    const RECORDS: Changes = Changes {
        records: true,
        authorisations: false,
    };
    const AUTHORISATIONS: Changes = Changes {
        records: false,
        authorisations: true,
    };

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn store_announcements_wake_the_refresh_and_a_broken_watch_is_reopened() {
        let (opened_tx, opened) = mpsc::channel::<mpsc::Sender<Result<Changes, ()>>>();
        let opened_tx = std::sync::Mutex::new(opened_tx);
        let announced = Arc::new(Announced::default());
        let thread = spawn_store_watch(
            move || {
                let (tx, rx) = mpsc::channel();
                let _ = opened_tx.lock().unwrap().send(tx);
                Ok(Some(Box::new(FakeWatch(rx)) as Box<dyn ChangeWatch>))
            },
            Arc::downgrade(&announced),
        )
        .unwrap();
        let first = opened.recv_timeout(Duration::from_secs(2)).unwrap();
        // Opening tells of everything (changes may have come before it listened)...
        assert!(woken(&announced, Duration::from_secs(1)).await);
        assert!(announced.authorisations.swap(false, Ordering::SeqCst));
        // ...then only announcements wake the refresh.
        assert!(!woken(&announced, Duration::from_millis(300)).await);
        first.send(Ok(RECORDS)).unwrap();
        assert!(woken(&announced, Duration::from_secs(1)).await);
        assert!(!announced.authorisations.load(Ordering::SeqCst));
        first.send(Ok(AUTHORISATIONS)).unwrap();
        assert!(woken(&announced, Duration::from_secs(1)).await);
        assert!(announced.authorisations.swap(false, Ordering::SeqCst));
        // A broken watch is opened again at once, and that tells of everything again.
        first.send(Err(())).unwrap();
        let second = opened.recv_timeout(Duration::from_secs(2)).unwrap();
        assert!(woken(&announced, Duration::from_secs(1)).await);
        assert!(announced.authorisations.swap(false, Ordering::SeqCst));
        second.send(Ok(RECORDS)).unwrap();
        assert!(woken(&announced, Duration::from_secs(1)).await);
        // The refresh loop gone, the thread ends (within its 1 s wait).
        drop(announced);
        let started = std::time::Instant::now();
        while !thread.is_finished() {
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "the watch thread lingers"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[test]
    fn a_store_without_announcements_ends_the_watch_thread_at_once() {
        let announced = Arc::new(Announced::default());
        let thread = spawn_store_watch(|| Ok(None), Arc::downgrade(&announced)).unwrap();
        thread.join().unwrap();
    }
}
