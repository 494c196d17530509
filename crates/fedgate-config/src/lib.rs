//! # fedgate-config — the `fedgate serve` configuration file
//!
//! The configuration file (docs/config-contract.md): parsing with serde
//! (`deny_unknown_fields`), validation, and the validated [`Config`] the runtime uses.
//! Every error names the file, the key and the reason. Its own crate so that the CLI commands
//! that read the file (`fedgate status`, `partner-test`, `init`, the management commands' hosted
//! domains) need no gateway; the gateway re-exports it as `fedgate_gateway::config`.

#![forbid(unsafe_code)]

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use fedgate_model::gateway_settings::NUMERIC_SETTINGS;
use fedgate_model::{Domain, XmppGatewayConfiguration};
use fedgate_store::StoreUrl;
use serde::Deserialize;

/// A configuration error: which file, which key, why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    /// The key (`hosted_domain[0].internal_server`), or empty when the file as a whole is bad.
    pub key: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.reason)
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    store: Option<String>,
    log_level: Option<String>,
    metrics_listen: Option<String>,
    internal_listener: RawInternalListener,
    external_listener: RawExternalListener,
    #[serde(default)]
    hosted_domain: Vec<RawHostedDomain>,
    #[serde(default)]
    tls: RawTls,
    #[serde(default)]
    internal_tls: RawInternalTls,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    settings: RawSettings,
    admin: Option<RawAdmin>,
    #[serde(default)]
    dns: RawDns,
    internal_dns: Option<RawInternalDns>,
    #[serde(default)]
    node: RawNode,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInternalDns {
    file: String,
    format: String,
    address: Option<String>,
    reload_command: Option<Vec<String>>,
    reload_timeout: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDns {
    servers: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    tls: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInternalListener {
    listen: String,
    allowed_sources: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExternalListener {
    listen: String,
    direct_tls_listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHostedDomain {
    domain: String,
    internal_server: String,
    site: Option<String>,
    certificate: Option<String>,
    key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    system_roots: Option<bool>,
    #[serde(default)]
    ca_files: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInternalTls {
    ca_certificate: Option<String>,
    ca_key: Option<String>,
    system_roots: Option<bool>,
    #[serde(default)]
    ca_files: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_stanza_size: Option<u64>,
    max_depth: Option<u64>,
    connections_per_ip_before_auth: Option<u64>,
    connections_per_block_before_auth: Option<u64>,
    max_unauthenticated_streams: Option<u64>,
    write_stall_timeout: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    connection_limit: Option<u64>,
    partner_connection_limit: Option<u64>,
    keep_alive_interval: Option<u64>,
    stream_establishment_timeout: Option<u64>,
    stream_inactivity_timeout: Option<u64>,
}

/// The allowed values of the numeric gateway setting `name` (`KeepAliveInterval`), from the
/// model's [`NUMERIC_SETTINGS`]: the `[settings]` table is checked as
/// Set-CsXmppGatewayConfiguration checks them.
fn numeric_range(name: &str) -> Option<(u64, u64)> {
    NUMERIC_SETTINGS
        .iter()
        .find(|s| s.name == name)
        .map(|s| (s.min.into(), s.max.into()))
}

/// `KeepAliveInterval` → `keep_alive_interval`, the `[settings]` key of a gateway setting.
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            if !out.is_empty() {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

pub use fedgate_model::domain::HostPort;

/// One hosted domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostedDomain {
    pub domain: Domain,
    pub internal_server: HostPort,
    pub site: Option<String>,
    /// PEM chain and key; None → self-signed, generated next to the store.
    pub certificate: Option<(PathBuf, PathBuf)>,
}

/// Codec and connection limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    pub max_stanza_size: usize,
    pub max_depth: usize,
    pub connections_per_ip_before_auth: u32,
    /// Per IPv4 /24 or IPv6 /64.
    pub connections_per_block_before_auth: u32,
    /// On both listeners together.
    pub max_unauthenticated_streams: u32,
    /// A write to a peer that does not finish within this is a peer that stopped reading: the
    /// stream is closed (at most KeepAliveInterval is used).
    pub write_stall_timeout: std::time::Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_stanza_size: 262_144,
            max_depth: 32,
            connections_per_ip_before_auth: 20,
            connections_per_block_before_auth: 100,
            max_unauthenticated_streams: 1000,
            write_stall_timeout: std::time::Duration::from_secs(30),
        }
    }
}

impl LimitsConfig {
    /// The pre-authentication limits, for [`fedgate_model::enforce::pre_auth_admission`].
    pub fn pre_auth(&self) -> fedgate_model::enforce::PreAuthLimits {
        fedgate_model::enforce::PreAuthLimits {
            per_address: self.connections_per_ip_before_auth,
            per_block: self.connections_per_block_before_auth,
            total: self.max_unauthenticated_streams,
        }
    }
}

/// Who may connect to the internal listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InternalSources {
    /// `internal_listener.allowed_sources`: these networks.
    Networks(Vec<ipnet::IpNet>),
    /// The default: the addresses the hosted domains' `internal_server` hosts have (names are
    /// resolved when the gateway starts and on reload).
    InternalServers,
}

/// `10.0.0.0/8`, `2001:db8::/32`, or one address (`192.0.2.7`, `::1`).
fn parse_network(text: &str) -> Result<ipnet::IpNet, String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<ipnet::IpNet>() {
        return Ok(n.trunc());
    }
    t.parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| {
            format!("'{text}' is not a network; allowed values: an address or address/prefix, e.g. 10.0.0.0/8 or 2001:db8::/32")
        })
}

/// The DNS servers outbound resolution asks (`[dns]`); read at start only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsConfig {
    /// `[dns] servers`: these name servers (UDP, TCP on truncation), in this order; empty (the
    /// key absent) → the system's, from /etc/resolv.conf.
    pub servers: Vec<SocketAddr>,
}

/// A DNS server: `192.0.2.53` (port 53), `127.0.0.1:5353`, `2001:db8::53`, `[::1]:5353`.
fn parse_dns_server(text: &str) -> Result<SocketAddr, String> {
    let t = text.trim();
    if let Ok(sa) = t.parse::<SocketAddr>() {
        if sa.port() == 0 {
            return Err(format!("'{text}': the port must be 1 to 65535"));
        }
        return Ok(sa);
    }
    t.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| {
            format!("'{text}' is not a DNS server address; expected an IP address with an optional port, as 192.0.2.53, 127.0.0.1:5353 or [::1]:5353")
        })
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    pub store: StoreUrl,
    pub log_level: String,
    pub metrics_listen: Option<SocketAddr>,
    pub internal_listen: SocketAddr,
    pub external_listen: SocketAddr,
    pub direct_tls_listen: Option<SocketAddr>,
    pub hosted: Vec<HostedDomain>,
    pub system_roots: bool,
    pub ca_files: Vec<PathBuf>,
    /// CA certificate and key to mint internal-side certificates with.
    pub internal_ca: Option<(PathBuf, PathBuf)>,
    /// Trust anchors for internal servers' certificates (`[internal_tls] ca_files`; the
    /// internal CA's certificate is always one): never the partners' `[tls]` anchors.
    pub internal_ca_files: Vec<PathBuf>,
    /// Whether the system's public roots also authenticate internal servers (default false).
    pub internal_system_roots: bool,
    /// Who may connect to the internal listener.
    pub internal_sources: InternalSources,
    pub limits: LimitsConfig,
    /// Initial gateway-wide settings (the store wins once set).
    pub settings: XmppGatewayConfiguration,
    /// The admin API and web panel listener (`[admin]`), if enabled.
    pub admin: Option<AdminListener>,
    /// Outbound DNS (`[dns]`).
    pub dns: DnsConfig,
    /// The internal side's DNS file the gateway keeps in step with the partner list
    /// (`[internal_dns]`), if configured.
    pub internal_dns: Option<InternalDnsConfig>,
    /// This node's name in a pool sharing one store (`[node] name`, default the host name): the
    /// key of its heartbeats and stream leases.
    pub node_name: String,
}

/// The longest node name (a DNS label's length).
pub const MAX_NODE_NAME: usize = 63;

/// Whether `name` is a valid node name: 1 to [`MAX_NODE_NAME`] letters, digits, `-`, `_`, `.`.
pub fn valid_node_name(name: &str) -> bool {
    (1..=MAX_NODE_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The machine's host name (the default node name), if the system tells it.
pub fn host_name() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|f| std::fs::read_to_string(f).ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// `[node] name`, or the host name when absent; validated.
fn node_name(configured: Option<&str>) -> Result<String, String> {
    let allowed = format!("allowed values: 1 to {MAX_NODE_NAME} letters, digits, '-', '_' or '.'");
    match configured {
        Some(n) if valid_node_name(n) => Ok(n.to_owned()),
        Some(n) => Err(format!("'{n}' is not a valid node name; {allowed}")),
        None => match host_name() {
            Some(h) if valid_node_name(&h) => Ok(h),
            Some(h) => Err(format!(
                "the host name '{h}' is not a valid node name ({allowed}): set [node] name"
            )),
            None => Err("the host name cannot be read: set [node] name".into()),
        },
    }
}

/// `[internal_dns]`: the file `fedgate internal-dns` would print, rewritten by the gateway
/// whenever the partner list changes, and the command that makes the resolver reload it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalDnsConfig {
    /// Where to write (replaced atomically: a temporary file in the same directory, renamed).
    pub file: PathBuf,
    pub format: fedgate_model::internal_dns::InternalDnsFormat,
    /// The address internal servers connect to (`address`, else `internal_listener.listen`).
    pub target: SocketAddr,
    /// Program and arguments run after each rewrite (no shell); empty: none.
    pub reload_command: Vec<String>,
    /// How long the reload command may run before it is killed and counted as failed.
    pub reload_timeout: std::time::Duration,
}

/// The admin API and web panel listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminListener {
    /// Default 127.0.0.1:8443.
    pub listen: SocketAddr,
    /// HTTPS with the gateway's certificate (default); plain HTTP only on a loopback address.
    pub tls: bool,
}

impl Config {
    /// Read and validate a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            key: String::new(),
            reason: format!("cannot read the file: {e}"),
        })?;
        Config::parse(&text, path)
    }

    /// Parse and validate configuration text; `path` names it in errors and anchors relative
    /// paths (to its directory).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let err = |key: &str, reason: String| ConfigError {
            file: path.to_owned(),
            key: key.to_owned(),
            reason,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let position = e
                .span()
                .map(|s| {
                    let before = &text[..s.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    format!("line {line}, column {col}: ")
                })
                .unwrap_or_default();
            err("", format!("{position}{}", e.message().trim()))
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        let resolve = |p: &str| {
            let p = PathBuf::from(p);
            if p.is_absolute() { p } else { base.join(p) }
        };
        let existing = |key: &str, p: &str| -> Result<PathBuf, ConfigError> {
            let full = resolve(p);
            if !full.is_file() {
                return Err(err(
                    key,
                    format!(
                        "the file '{}' does not exist or is not a file",
                        full.display()
                    ),
                ));
            }
            Ok(full)
        };
        let addr = |key: &str, t: &str| -> Result<SocketAddr, ConfigError> {
            t.trim().parse::<SocketAddr>().map_err(|_| {
                err(
                    key,
                    format!("'{t}' is not a listen address; expected IP:port, as 127.0.0.1:5269 or [::]:5269"),
                )
            })
        };

        let store_text = raw.store.as_deref().unwrap_or("sqlite:fedgate.db");
        let store = match StoreUrl::parse(store_text).map_err(|e| err("store", e.to_string()))? {
            StoreUrl::Sqlite(p) if p.is_relative() => StoreUrl::Sqlite(base.join(p)),
            other => other,
        };
        let log_level = raw.log_level.unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            return Err(err(
                "log_level",
                format!(
                    "'{log_level}' is not a valid filter (e.g. info, debug, fedgate_gateway=debug)"
                ),
            ));
        }
        let metrics_listen = raw
            .metrics_listen
            .as_deref()
            .map(|t| addr("metrics_listen", t))
            .transpose()?;
        let internal_listen = addr("internal_listener.listen", &raw.internal_listener.listen)?;
        let external_listen = addr("external_listener.listen", &raw.external_listener.listen)?;
        let direct_tls_listen = raw
            .external_listener
            .direct_tls_listen
            .as_deref()
            .map(|t| addr("external_listener.direct_tls_listen", t))
            .transpose()?;
        let admin = match &raw.admin {
            None => None,
            Some(a) => {
                let listen = addr(
                    "admin.listen",
                    a.listen.as_deref().unwrap_or("127.0.0.1:8443"),
                )?;
                let tls = a.tls.unwrap_or(true);
                if !tls && !listen.ip().is_loopback() {
                    return Err(err(
                        "admin.tls",
                        format!(
                            "plain HTTP is allowed only on a loopback address, not {listen}: set tls = true or listen on 127.0.0.1"
                        ),
                    ));
                }
                Some(AdminListener { listen, tls })
            }
        };
        let mut seen = vec![("internal_listener.listen", internal_listen)];
        for (k, a) in [
            ("external_listener.listen", Some(external_listen)),
            ("external_listener.direct_tls_listen", direct_tls_listen),
            ("metrics_listen", metrics_listen),
            ("admin.listen", admin.map(|a| a.listen)),
        ] {
            if let Some(a) = a {
                if let Some((other, _)) = seen.iter().find(|(_, b)| *b == a && a.port() != 0) {
                    return Err(err(k, format!("{a} is already used by {other}")));
                }
                seen.push((k, a));
            }
        }

        if raw.hosted_domain.is_empty() {
            return Err(err(
                "hosted_domain",
                "at least one [[hosted_domain]] is required".into(),
            ));
        }
        let mut hosted: Vec<HostedDomain> = Vec::new();
        for (i, h) in raw.hosted_domain.iter().enumerate() {
            let k = |f: &str| format!("hosted_domain[{i}].{f}");
            let domain = Domain::parse(&h.domain).map_err(|e| err(&k("domain"), e.to_string()))?;
            if hosted.iter().any(|o| o.domain == domain) {
                return Err(err(&k("domain"), format!("'{domain}' is listed twice")));
            }
            let internal_server = HostPort::parse(&h.internal_server, 5269)
                .map_err(|e| err(&k("internal_server"), e))?;
            let certificate = match (&h.certificate, &h.key) {
                (None, None) => None,
                (Some(c), Some(key)) => {
                    Some((existing(&k("certificate"), c)?, existing(&k("key"), key)?))
                }
                (Some(_), None) => {
                    return Err(err(&k("key"), "certificate is set but key is not".into()));
                }
                (None, Some(_)) => {
                    return Err(err(
                        &k("certificate"),
                        "key is set but certificate is not".into(),
                    ));
                }
            };
            if let Some(site) = &h.site
                && (site.trim().is_empty() || site.len() > 256)
            {
                return Err(err(
                    &k("site"),
                    "the site name must be 1 to 256 characters".into(),
                ));
            }
            hosted.push(HostedDomain {
                domain,
                internal_server,
                site: h.site.clone(),
                certificate,
            });
        }

        let ca_files = raw
            .tls
            .ca_files
            .iter()
            .enumerate()
            .map(|(i, f)| existing(&format!("tls.ca_files[{i}]"), f))
            .collect::<Result<Vec<_>, _>>()?;
        let internal_ca = match (&raw.internal_tls.ca_certificate, &raw.internal_tls.ca_key) {
            (None, None) => None,
            (Some(c), Some(k)) => Some((
                existing("internal_tls.ca_certificate", c)?,
                existing("internal_tls.ca_key", k)?,
            )),
            (Some(_), None) => {
                return Err(err(
                    "internal_tls.ca_key",
                    "ca_certificate is set but ca_key is not".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(err(
                    "internal_tls.ca_certificate",
                    "ca_key is set but ca_certificate is not".into(),
                ));
            }
        };

        let internal_ca_files = raw
            .internal_tls
            .ca_files
            .iter()
            .enumerate()
            .map(|(i, f)| existing(&format!("internal_tls.ca_files[{i}]"), f))
            .collect::<Result<Vec<_>, _>>()?;
        let internal_sources = match &raw.internal_listener.allowed_sources {
            None => InternalSources::InternalServers,
            Some(list) => InternalSources::Networks(
                list.iter()
                    .enumerate()
                    .map(|(i, n)| {
                        parse_network(n)
                            .map_err(|e| err(&format!("internal_listener.allowed_sources[{i}]"), e))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };

        let range = |key: &str, v: Option<u64>, min: u64, max: u64, default: u64| {
            let v = v.unwrap_or(default);
            if (min..=max).contains(&v) {
                Ok(v)
            } else {
                Err(err(
                    key,
                    format!("{v} is out of range; allowed values: {min} to {max}"),
                ))
            }
        };
        let limits = LimitsConfig {
            max_stanza_size: range(
                "limits.max_stanza_size",
                raw.limits.max_stanza_size,
                4096,
                64 * 1024 * 1024,
                262_144,
            )? as usize,
            max_depth: range("limits.max_depth", raw.limits.max_depth, 4, 256, 32)? as usize,
            connections_per_ip_before_auth: range(
                "limits.connections_per_ip_before_auth",
                raw.limits.connections_per_ip_before_auth,
                1,
                100_000,
                20,
            )? as u32,
            connections_per_block_before_auth: range(
                "limits.connections_per_block_before_auth",
                raw.limits.connections_per_block_before_auth,
                1,
                1_000_000,
                100,
            )? as u32,
            max_unauthenticated_streams: range(
                "limits.max_unauthenticated_streams",
                raw.limits.max_unauthenticated_streams,
                1,
                10_000_000,
                1000,
            )? as u32,
            write_stall_timeout: std::time::Duration::from_secs(range(
                "limits.write_stall_timeout",
                raw.limits.write_stall_timeout,
                1,
                3600,
                30,
            )?),
        };
        if limits.connections_per_block_before_auth < limits.connections_per_ip_before_auth {
            return Err(err(
                "limits.connections_per_block_before_auth",
                format!(
                    "{} is below limits.connections_per_ip_before_auth ({}); allowed values: {} to 1000000",
                    limits.connections_per_block_before_auth,
                    limits.connections_per_ip_before_auth,
                    limits.connections_per_ip_before_auth
                ),
            ));
        }
        let dns = match &raw.dns.servers {
            None => DnsConfig::default(),
            Some(list) if list.is_empty() => {
                return Err(err(
                    "dns.servers",
                    "the list is empty; name at least one server, or remove the key to use /etc/resolv.conf".into(),
                ));
            }
            Some(list) => DnsConfig {
                servers: list
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        parse_dns_server(t).map_err(|e| err(&format!("dns.servers[{i}]"), e))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            },
        };

        let internal_dns = match raw.internal_dns {
            None => None,
            Some(r) => {
                if r.file.trim().is_empty() {
                    return Err(err("internal_dns.file", "the path is empty".into()));
                }
                let format =
                    fedgate_model::InvalidValue::parse_choice("internal_dns.format", &r.format)
                        .map_err(|e| err("internal_dns.format", e.reason))?;
                let target =
                    fedgate_model::internal_dns::target(internal_listen, r.address.as_deref())
                        .map_err(|e| {
                            err(
                                "internal_dns.address",
                                e.reason.replace("--address", "internal_dns.address"),
                            )
                        })?;
                let reload_command = r.reload_command.unwrap_or_default();
                if reload_command.first().is_some_and(|p| p.trim().is_empty()) {
                    return Err(err(
                        "internal_dns.reload_command",
                        "the program (the first element) is empty; give e.g. [\"systemctl\", \"restart\", \"dnsmasq\"] or remove the key".into(),
                    ));
                }
                Some(InternalDnsConfig {
                    file: resolve(&r.file),
                    format,
                    target,
                    reload_command,
                    reload_timeout: std::time::Duration::from_secs(range(
                        "internal_dns.reload_timeout",
                        r.reload_timeout,
                        1,
                        3_600,
                        10,
                    )?),
                })
            }
        };

        let node_name = node_name(raw.node.name.as_deref()).map_err(|e| err("node.name", e))?;

        let d = XmppGatewayConfiguration::default();
        let s = &raw.settings;
        // The ranges are the model's, as Set-CsXmppGatewayConfiguration checks them.
        let setting = |name: &str, v: Option<u64>, default: u32| {
            let key = format!("settings.{}", snake_case(name));
            let (min, max) = numeric_range(name)
                .ok_or_else(|| err(&key, format!("{name} is not a numeric gateway setting")))?;
            range(&key, v, min, max, default.into()).map(|v| v as u32)
        };
        let settings = XmppGatewayConfiguration {
            connection_limit: setting("ConnectionLimit", s.connection_limit, d.connection_limit)?,
            partner_connection_limit: setting(
                "PartnerConnectionLimit",
                s.partner_connection_limit,
                d.partner_connection_limit,
            )?,
            keep_alive_interval: setting(
                "KeepAliveInterval",
                s.keep_alive_interval,
                d.keep_alive_interval,
            )?,
            stream_establishment_timeout: setting(
                "StreamEstablishmentTimeout",
                s.stream_establishment_timeout,
                d.stream_establishment_timeout,
            )?,
            stream_inactivity_timeout: setting(
                "StreamInactivityTimeout",
                s.stream_inactivity_timeout,
                d.stream_inactivity_timeout,
            )?,
            ..d
        };

        Ok(Config {
            file: path.to_owned(),
            store,
            log_level,
            metrics_listen,
            internal_listen,
            external_listen,
            direct_tls_listen,
            hosted,
            system_roots: raw.tls.system_roots.unwrap_or(true),
            ca_files,
            internal_ca,
            internal_ca_files,
            internal_system_roots: raw.internal_tls.system_roots.unwrap_or(false),
            internal_sources,
            limits,
            settings,
            admin,
            dns,
            internal_dns,
            node_name,
        })
    }

    /// The directory generated certificates are kept in: next to an SQLite store; with a
    /// PostgreSQL store (no local file), next to the configuration file.
    pub fn state_dir(&self) -> PathBuf {
        let beside = match &self.store {
            StoreUrl::Sqlite(p) => p.as_path(),
            StoreUrl::Postgres(_) => self.file.as_path(),
        };
        beside
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[internal_listener]
listen = "127.0.0.1:5270"
[external_listener]
listen = "127.0.0.1:5269"
[[hosted_domain]]
domain = "Corp.Example."
internal_server = "127.0.0.1:15269"
"#;

    #[test]
    fn settings_ranges_are_the_models() {
        for setting in NUMERIC_SETTINGS
            .iter()
            .filter(|s| s.name != "SubscriptionRefreshInterval")
        {
            let key = snake_case(setting.name);
            for bad in [u64::from(setting.min) - 1, u64::from(setting.max) + 1] {
                let e = parse(&format!("{MINIMAL}\n[settings]\n{key} = {bad}\n")).unwrap_err();
                assert!(
                    e.to_string().contains(&format!(
                        "settings.{key}: {bad} is out of range; allowed values: {} to {}",
                        setting.min, setting.max
                    )),
                    "{e}"
                );
            }
            let max = setting.max;
            assert!(parse(&format!("{MINIMAL}\n[settings]\n{key} = {max}\n")).is_ok());
        }
        assert_eq!(snake_case("KeepAliveInterval"), "keep_alive_interval");
    }

    fn parse(t: &str) -> Result<Config, ConfigError> {
        Config::parse(t, Path::new("/etc/fedgate/fedgate.toml"))
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.hosted[0].domain.as_str(), "corp.example");
        assert_eq!(c.hosted[0].internal_server.to_string(), "127.0.0.1:15269");
        assert_eq!(c.store, StoreUrl::Sqlite("/etc/fedgate/fedgate.db".into()));
        assert_eq!(c.limits, LimitsConfig::default());
        assert_eq!(c.settings, XmppGatewayConfiguration::default());
        assert!(c.system_roots);
        assert_eq!(c.state_dir(), PathBuf::from("/etc/fedgate"));
    }

    #[test]
    fn a_postgres_store_is_accepted_and_its_password_never_shows() {
        let c = parse(&format!(
            "store = \"postgres://fedgate:pg-secret@db.example:5433/pool?sslmode=verify-full\"\n{MINIMAL}"
        ))
        .unwrap();
        let StoreUrl::Postgres(url) = &c.store else {
            panic!("{:?}", c.store);
        };
        assert_eq!(
            (url.address().as_str(), url.database.as_str()),
            ("db.example:5433", "pool")
        );
        // No file of its own: generated certificates go next to the configuration file.
        assert_eq!(c.state_dir(), PathBuf::from("/etc/fedgate"));
        let shown = format!("{c:?} {}", c.store);
        assert!(!shown.contains("pg-secret"), "{shown}");
        let e = parse(&format!(
            "store = \"postgres://fedgate:pg-secret@db.example:0/pool\"\n{MINIMAL}"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("store") && e.contains("port '0'"), "{e}");
        assert!(!e.contains("pg-secret"), "{e}");
    }

    #[test]
    fn the_write_stall_limit_is_read_in_seconds() {
        let c = parse(&format!("{MINIMAL}\n[limits]\nwrite_stall_timeout = 7\n")).unwrap();
        assert_eq!(
            c.limits.write_stall_timeout,
            std::time::Duration::from_secs(7)
        );
        assert_eq!(
            LimitsConfig::default().write_stall_timeout,
            std::time::Duration::from_secs(30)
        );
    }

    #[test]
    fn the_node_name_defaults_to_the_host_name_and_is_validated() {
        let c = parse(MINIMAL).unwrap();
        if let Some(h) = host_name().filter(|h| valid_node_name(h)) {
            assert_eq!(c.node_name, h);
        }
        let c = parse(&format!("{MINIMAL}\n[node]\nname = \"edge-1_a.b\"\n")).unwrap();
        assert_eq!(c.node_name, "edge-1_a.b");
        let long = "n".repeat(MAX_NODE_NAME);
        assert!(parse(&format!("{MINIMAL}\n[node]\nname = \"{long}\"\n")).is_ok());
        for bad in ["", "edge 1", "edge/1", "é", &format!("{long}x")] {
            let e = parse(&format!("{MINIMAL}\n[node]\nname = \"{bad}\"\n")).unwrap_err();
            assert_eq!(e.key, "node.name", "{bad}: {e}");
            assert!(e.reason.contains("allowed values"), "{e}");
        }
        let e = parse(&format!("{MINIMAL}\n[node]\nnom = \"x\"\n")).unwrap_err();
        assert!(e.to_string().contains("unknown field `nom`"), "{e}");
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let e = parse(&format!("{MINIMAL}\n[limits]\nmax_stanza = 5\n")).unwrap_err();
        assert!(e.to_string().contains("unknown field `max_stanza`"), "{e}");
        assert!(e.to_string().contains("fedgate.toml"), "{e}");
        assert!(e.to_string().contains("line 11"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            (
                MINIMAL.replace("127.0.0.1:5270", "localhost"),
                "internal_listener.listen",
            ),
            (
                MINIMAL.replace("Corp.Example.", "bad domain"),
                "hosted_domain[0].domain",
            ),
            (
                MINIMAL.replace("127.0.0.1:15269", "x.example:0"),
                "hosted_domain[0].internal_server",
            ),
            (
                MINIMAL.replace("127.0.0.1:5270", "127.0.0.1:5269"),
                "external_listener.listen",
            ),
            (
                format!("{MINIMAL}\n[settings]\nkeep_alive_interval = 1\n"),
                "settings.keep_alive_interval",
            ),
            (
                format!("{MINIMAL}\n[tls]\nca_files = [\"/nonexistent/ca.pem\"]\n"),
                "tls.ca_files[0]",
            ),
            (
                format!(
                    "{MINIMAL}certificate = \"/nonexistent.pem\"\nkey = \"/nonexistent.key\"\n"
                ),
                "hosted_domain[0].certificate",
            ),
            (
                format!("{MINIMAL}key = \"/nonexistent.key\"\n"),
                "hosted_domain[0].certificate",
            ),
            (format!("store = \"mysql:x\"\n{MINIMAL}"), "store"),
            (format!("log_level = \"[[[\"\n{MINIMAL}"), "log_level"),
            (
                format!("{MINIMAL}\n[limits]\nwrite_stall_timeout = 0\n"),
                "limits.write_stall_timeout",
            ),
            (format!("{MINIMAL}\n[dns]\nservers = []\n"), "dns.servers"),
            (
                format!("{MINIMAL}\n[dns]\nservers = [\"127.0.0.1\", \"dns.example\"]\n"),
                "dns.servers[1]",
            ),
            (
                format!("{MINIMAL}\n[dns]\nservers = [\"127.0.0.1:0\"]\n"),
                "dns.servers[0]",
            ),
            (
                format!(
                    "{MINIMAL}\n[[hosted_domain]]\ndomain = \"corp.example\"\ninternal_server = \"a.example\"\n"
                ),
                "hosted_domain[1].domain",
            ),
        ];
        for (text, key) in cases {
            let e = parse(&text).unwrap_err();
            assert_eq!(e.key, key, "{e}");
        }
        let e = parse("[internal_listener]\nlisten = \"127.0.0.1:1\"\n[external_listener]\nlisten = \"127.0.0.1:2\"\n").unwrap_err();
        assert_eq!(e.key, "hosted_domain");
    }

    #[test]
    fn dns_servers_default_to_the_system_and_take_optional_ports() {
        assert!(parse(MINIMAL).unwrap().dns.servers.is_empty());
        let c = parse(&format!(
            "{MINIMAL}\n[dns]\nservers = [\"127.0.0.1:5353\", \"192.0.2.53\", \"[::1]:5353\", \"2001:db8::53\"]\n"
        ))
        .unwrap();
        let got: Vec<String> = c.dns.servers.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            got,
            [
                "127.0.0.1:5353",
                "192.0.2.53:53",
                "[::1]:5353",
                "[2001:db8::53]:53"
            ]
        );
        let e = parse(&format!("{MINIMAL}\n[dns]\nserver = [\"127.0.0.1\"]\n")).unwrap_err();
        assert!(e.to_string().contains("unknown field `server`"), "{e}");
    }

    #[test]
    fn internal_dns_is_optional_and_its_bad_values_name_the_key() {
        use fedgate_model::internal_dns::InternalDnsFormat;
        assert_eq!(parse(MINIMAL).unwrap().internal_dns, None);
        let c = parse(&format!(
            "{MINIMAL}\n[internal_dns]\nfile = \"partners.conf\"\nformat = \"DNSmasq\"\nreload_command = [\"systemctl\", \"restart\", \"dnsmasq\"]\n"
        ))
        .unwrap();
        let d = c.internal_dns.unwrap();
        assert_eq!(d.file, Path::new("/etc/fedgate/partners.conf"));
        assert_eq!(d.format, InternalDnsFormat::Dnsmasq);
        assert_eq!(d.target.to_string(), "127.0.0.1:5270");
        assert_eq!(d.reload_command, ["systemctl", "restart", "dnsmasq"]);
        assert_eq!(d.reload_timeout, std::time::Duration::from_secs(10));
        let d = parse(&format!(
            "{MINIMAL}\n[internal_dns]\nfile = \"/x/p\"\nformat = \"hosts\"\naddress = \"10.0.0.5\"\nreload_timeout = 3\n"
        ))
        .unwrap()
        .internal_dns
        .unwrap();
        assert_eq!(d.target.to_string(), "10.0.0.5:5270");
        assert!(d.reload_command.is_empty());
        for (extra, key, words) in [
            (
                "format = \"djbdns\"",
                "internal_dns.format",
                "dnsmasq, unbound, bind, hosts, prosody",
            ),
            (
                "format = \"hosts\"\naddress = \"gw\"",
                "internal_dns.address",
                "not an IP address",
            ),
            (
                "format = \"hosts\"\nreload_timeout = 0",
                "internal_dns.reload_timeout",
                "1 to 3600",
            ),
            (
                "format = \"hosts\"\nreload_command = [\"\"]",
                "internal_dns.reload_command",
                "empty",
            ),
        ] {
            let e = parse(&format!(
                "{MINIMAL}\n[internal_dns]\nfile = \"p\"\n{extra}\n"
            ))
            .unwrap_err();
            assert_eq!(e.key, key, "{e}");
            assert!(e.to_string().contains(words), "{e}");
        }
        // A listener on every address: the file needs the address servers must use.
        let any = MINIMAL.replace("127.0.0.1:5270", "0.0.0.0:5270");
        let e = parse(&format!(
            "{any}\n[internal_dns]\nfile = \"p\"\nformat = \"hosts\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "internal_dns.address", "{e}");
        assert!(
            e.to_string().contains("internal_dns.address 192.0.2.10"),
            "{e}"
        );
    }

    #[test]
    fn example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fedgate.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.hosted.len(), 1);
        assert!(c.hosted[0].certificate.is_none());
    }
}
