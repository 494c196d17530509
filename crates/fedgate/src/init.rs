//! `fedgate init`: from nothing to a gateway that starts. It takes the answers (as flags with
//! `--non-interactive`, else asked on the terminal, flags giving the defaults), writes a
//! commented configuration in the style of `examples/fedgate.toml` (checked by the same loader
//! as `fedgate config check` before it is written; an existing file is kept unless `--force`),
//! creates the store, prints the DNS records partners need (`_xmpp-server._tcp.<domain>` SRV to
//! the public host and the external listener's port), says what DNS answers now (with the
//! gateway's own resolver; a failed lookup is a warning, not an error) and prints the next
//! commands.
//!
//! The pure parts — the configuration text ([`config_text`]), the records to publish
//! ([`dns_records`]) and the comparison of what DNS says with them ([`check_srv`],
//! [`check_addresses`]) — are plain functions, tested below; [`run`] does the I/O.

use std::io::{BufRead, IsTerminal, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use fedgate_config::HostPort;
use fedgate_gateway::resolve::SrvRecord;
use fedgate_model::Domain;
use fedgate_store::StoreUrl;
use fedgate_store::url::DEFAULT_STORE_URL;

/// The defaults, shown in brackets when asking and used when a flag is left out.
pub const DEFAULT_EXTERNAL_LISTEN: &str = "0.0.0.0:5269";
pub const DEFAULT_INTERNAL_LISTEN: &str = "127.0.0.1:5270";
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9269";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8443";
pub const DEFAULT_CONFIG_OUT: &str = "fedgate.toml";

/// `fedgate init`'s flags. Names follow the configuration keys they fill.
#[derive(Debug, Args, Default)]
pub struct InitArgs {
    /// Take every answer from the flags and ask nothing (for scripts); without it `init` asks on
    /// the terminal, the flags giving the defaults.
    #[arg(long)]
    pub non_interactive: bool,
    /// A hosted domain ([[hosted_domain]] domain); repeat for several, each with its
    /// --internal-server in the same order.
    #[arg(long = "domain", value_name = "DOMAIN", value_parser = parse_domain)]
    pub domains: Vec<String>,
    /// The internal XMPP server of the --domain at the same position (hosted_domain.internal_server),
    /// host:port or host (port 5269).
    #[arg(long = "internal-server", value_name = "HOST:PORT", value_parser = parse_internal_server)]
    pub internal_servers: Vec<String>,
    /// Where partners connect (external_listener.listen). [default: 0.0.0.0:5269]
    #[arg(long, value_name = "IP:PORT", value_parser = parse_listen)]
    pub external_listen: Option<SocketAddr>,
    /// Where your XMPP servers connect for partner domains (internal_listener.listen).
    /// [default: 127.0.0.1:5270]
    #[arg(long, value_name = "IP:PORT", value_parser = parse_listen)]
    pub internal_listen: Option<SocketAddr>,
    /// Prometheus /metrics and JSON /status, read by `fedgate status` (metrics_listen).
    /// [default: 127.0.0.1:9269]
    #[arg(long, value_name = "IP:PORT", value_parser = parse_listen)]
    pub metrics_listen: Option<SocketAddr>,
    /// The admin REST API and web panel (admin.listen). [default: 127.0.0.1:8443]
    #[arg(long, value_name = "IP:PORT", value_parser = parse_listen)]
    pub admin_listen: Option<SocketAddr>,
    /// The PEM certificate chain of the --domain at the same position (hosted_domain.certificate);
    /// one per domain, with --key.
    #[arg(
        long = "certificate",
        value_name = "FILE",
        conflicts_with = "generate_certificate"
    )]
    pub certificates: Vec<PathBuf>,
    /// The PEM private key of the --domain at the same position (hosted_domain.key).
    #[arg(
        long = "key",
        value_name = "FILE",
        conflicts_with = "generate_certificate"
    )]
    pub keys: Vec<PathBuf>,
    /// Generate a self-signed certificate per domain now (<domain>.pem and <domain>.key next to
    /// the configuration file; kept if they exist, unless --force). Partners that check
    /// certificates need one from a CA they trust later.
    #[arg(long)]
    pub generate_certificate: bool,
    /// The public host name partners connect to: the target of the _xmpp-server._tcp SRV
    /// records, whose A/AAAA must be the external listener's public address. [default: the
    /// first domain]
    #[arg(long, value_name = "NAME", value_parser = parse_public_host)]
    pub public_host: Option<String>,
    /// The configuration file to write. [default: --config (or $FEDGATE_CONFIG), else
    /// fedgate.toml]
    #[arg(long, value_name = "FILE")]
    pub config_out: Option<PathBuf>,
    /// Overwrite an existing configuration file (and generated certificate files).
    #[arg(long)]
    pub force: bool,
    /// Do not ask DNS what it says now (offline machines).
    #[arg(long)]
    pub no_dns_check: bool,
}

fn parse_domain(text: &str) -> Result<String, String> {
    Domain::parse(text)
        .map(|d| d.as_str().to_owned())
        .map_err(|e| format!("{e}; allowed values: a domain name, as corp.example"))
}

fn parse_public_host(text: &str) -> Result<String, String> {
    if text.trim().parse::<IpAddr>().is_ok() {
        return Err(
            "an SRV record's target must be a host name, not an IP address; allowed values: a host name, as xmpp.corp.example"
                .into(),
        );
    }
    Domain::parse(text)
        .map(|d| d.as_str().to_owned())
        .map_err(|e| format!("{e}; allowed values: a host name, as xmpp.corp.example"))
}

fn parse_internal_server(text: &str) -> Result<String, String> {
    HostPort::parse(text, 5269)
        .map(|h| h.to_string())
        .map_err(|e| {
            format!("{e}; allowed values: host:port or host (port 5269), as 10.0.0.5:5269 or xmpp.corp.example")
        })
}

fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse::<SocketAddr>().map_err(|_| {
        format!("'{text}' is not a listen address; allowed values: IP:port, as 0.0.0.0:5269, 127.0.0.1:5270 or [::]:5269")
    })
}

/// One hosted domain's answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainAnswers {
    pub domain: String,
    /// `host:port`, as [`HostPort`] displays it.
    pub internal_server: String,
    /// PEM certificate chain and key, as written in the file (absolute, or relative to it).
    pub certificate: Option<(PathBuf, PathBuf)>,
}

/// Everything the configuration is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answers {
    pub domains: Vec<DomainAnswers>,
    pub external_listen: SocketAddr,
    pub internal_listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// The store URL as written (`sqlite:fedgate.db` is relative to the file's directory).
    pub store: String,
    pub public_host: String,
}

/// A TOML basic string: quoted, with `\` `"` and control characters escaped.
fn toml_str(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn path_str(p: &Path) -> String {
    toml_str(&p.to_string_lossy())
}

/// The configuration file for `a`: the keys and comment style of `examples/fedgate.toml`.
pub fn config_text(a: &Answers, config_name: &str) -> String {
    let mut t = String::new();
    let first = a
        .domains
        .first()
        .map_or("corp.example", |d| d.domain.as_str());
    t.push_str(&format!(
        "# fedgate serve --config {config_name}\n\
         # Written by `fedgate init`. See docs/config-contract.md for every key; check changes with\n\
         # `fedgate config check {config_name}`.\n\n"
    ));
    t.push_str(&format!(
        "store = {:<28} # sqlite: paths are relative to this file's directory\n",
        toml_str(&a.store)
    ));
    t.push_str("log_level = \"info\"\n");
    t.push_str(&format!(
        "metrics_listen = {:<21} # Prometheus /metrics and JSON /status (fedgate status)\n\n",
        toml_str(&a.metrics_listen.to_string())
    ));
    t.push_str(&format!(
        "[internal_listener]\n\
         # Your XMPP servers connect here for partner domains (`fedgate internal-dns` prints the\n\
         # records that send them here).\n\
         listen = {}\n\n",
        toml_str(&a.internal_listen.to_string())
    ));
    t.push_str(&format!(
        "[external_listener]\n\
         # Partners connect here: _xmpp-server._tcp.<domain> SRV -> {}:{}.\n\
         listen = {}\n",
        a.public_host,
        a.external_listen.port(),
        toml_str(&a.external_listen.to_string())
    ));
    for d in &a.domains {
        t.push_str(&format!(
            "\n[[hosted_domain]]\n\
             domain = {}\n\
             # Your XMPP server's s2s address for {}.\n\
             internal_server = {}\n",
            toml_str(&d.domain),
            d.domain,
            toml_str(&d.internal_server)
        ));
        match &d.certificate {
            Some((cert, key)) => t.push_str(&format!(
                "# The PEM certificate chain and key presented to partners for {}.\n\
                 certificate = {}\n\
                 key = {}\n",
                d.domain,
                path_str(cert),
                path_str(key)
            )),
            None => t.push_str(&format!(
                "# No certificate files: a self-signed one is generated next to the store at first start.\n\
                 # certificate = \"certs/{0}.pem\"\n\
                 # key = \"certs/{0}.key\"\n",
                d.domain
            )),
        }
    }
    t.push_str(&format!(
        "\n[admin]\n\
         # REST API, web control panel and /metrics: https://{}/ (the certificate is {first}'s).\n\
         # Sign in with a token from: fedgate --config {config_name} token create --name me --role admin\n\
         listen = {}\n\
         tls = true\n",
        a.admin_listen,
        toml_str(&a.admin_listen.to_string())
    ));
    t.push_str(
        "\n[tls]\n\
         # Trust anchors for partners' certificates.\n\
         system_roots = true\n\
         ca_files = []\n\
         \n[limits]\n\
         max_stanza_size = 262144\n\
         max_depth = 32\n\
         connections_per_ip_before_auth = 20\n\
         # Seconds a write may stall before the peer counts as one that stopped reading (at most\n\
         # KeepAliveInterval is used).\n\
         write_stall_timeout = 30\n\
         \n# [node]\n\
         # This node's name in a pool sharing one store (default: the host name); see `fedgate status --cluster`.\n\
         # name = \"edge1\"\n\
         \n[settings]\n\
         # Initial gateway-wide settings; the store wins once an admin has set them.\n\
         connection_limit = 1000\n\
         partner_connection_limit = 20\n\
         keep_alive_interval = 300\n\
         stream_establishment_timeout = 60\n\
         stream_inactivity_timeout = 600\n\
         \n# [dns]\n\
         # Outbound DNS servers (IP or IP:port); without this section, /etc/resolv.conf.\n\
         # servers = [\"127.0.0.1:5353\"]\n",
    );
    t
}

/// One DNS record to publish, in zone file terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecord {
    /// Fully qualified, with the final dot.
    pub name: String,
    /// `SRV`, `A` or `AAAA`.
    pub kind: &'static str,
    /// The record data; for an address not known here, a description in angle brackets.
    pub data: String,
}

impl std::fmt::Display for DnsRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} 3600 IN {} {}", self.name, self.kind, self.data)
    }
}

/// The SRV record name partners ask for a domain.
pub fn srv_name(domain: &str) -> String {
    format!("_xmpp-server._tcp.{}", domain.trim_end_matches('.'))
}

/// The records partners need: an SRV per hosted domain to `public_host` at the external
/// listener's port, and the public host's address (the listener's own when it listens on one
/// address that is not loopback, else a placeholder to fill in).
pub fn dns_records(domains: &[&str], public_host: &str, external: SocketAddr) -> Vec<DnsRecord> {
    let host = format!("{}.", public_host.trim_end_matches('.'));
    let mut records: Vec<DnsRecord> = domains
        .iter()
        .map(|d| DnsRecord {
            name: format!("{}.", srv_name(d)),
            kind: "SRV",
            data: format!("0 5 {} {host}", external.port()),
        })
        .collect();
    let (kind, data) = match expected_address(external) {
        Some(IpAddr::V4(ip)) => ("A", ip.to_string()),
        Some(IpAddr::V6(ip)) => ("AAAA", ip.to_string()),
        None => ("A", "<this gateway's public IPv4 address>".to_owned()),
    };
    records.push(DnsRecord {
        name: host,
        kind,
        data,
    });
    records
}

/// The address the public host must have, when the external listener tells it: a listener on
/// one address that is neither unspecified (0.0.0.0, ::) nor loopback.
pub fn expected_address(external: SocketAddr) -> Option<IpAddr> {
    let ip = external.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

/// What DNS says about one record, compared with what it should say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// As expected.
    Ok(String),
    /// Nothing published yet.
    NotPublished(String),
    /// Published, but not as expected.
    PointsElsewhere(String),
    /// DNS could not be asked (a warning: DNS may be fine, this machine may not reach it).
    LookupFailed(String),
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Ok(t) => write!(f, "ok: {t}"),
            Finding::NotPublished(t) => write!(f, "not published yet: {t}"),
            Finding::PointsElsewhere(t) => write!(f, "points elsewhere: {t}"),
            Finding::LookupFailed(t) => write!(f, "warning: {t}"),
        }
    }
}

fn same_host(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// Compare a domain's `_xmpp-server._tcp` SRV answer with the expected target and port.
pub fn check_srv(
    domain: &str,
    public_host: &str,
    port: u16,
    observed: &Result<Vec<SrvRecord>, String>,
) -> Finding {
    let name = srv_name(domain);
    let records = match observed {
        Err(e) => return Finding::LookupFailed(format!("cannot look up {name} SRV: {e}")),
        Ok(r) => r,
    };
    if records.is_empty() {
        return Finding::NotPublished(format!("{name} has no SRV record"));
    }
    let shown: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}",
                r.priority,
                r.weight,
                r.port,
                r.target.trim_end_matches('.')
            )
        })
        .collect();
    if records
        .iter()
        .any(|r| r.port == port && same_host(&r.target, public_host))
    {
        return Finding::Ok(format!("{name} SRV {}", shown.join(", ")));
    }
    if records
        .iter()
        .all(|r| r.target == "." || r.target.is_empty())
    {
        return Finding::PointsElsewhere(format!(
            "{name} SRV says the service is not offered (target \".\"); expected {public_host}:{port}"
        ));
    }
    Finding::PointsElsewhere(format!(
        "{name} SRV {}; expected {public_host}:{port}",
        shown.join(", ")
    ))
}

/// Compare the public host's A/AAAA answer with the expected address (when known).
pub fn check_addresses(
    public_host: &str,
    expected: Option<IpAddr>,
    observed: &Result<Vec<IpAddr>, String>,
) -> Finding {
    let ips = match observed {
        Err(e) => {
            return Finding::LookupFailed(format!("cannot look up {public_host} A/AAAA: {e}"));
        }
        Ok(ips) => ips,
    };
    if ips.is_empty() {
        return Finding::NotPublished(format!("{public_host} has no A/AAAA record"));
    }
    let shown: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
    let shown = shown.join(", ");
    match expected {
        Some(ip) if ips.contains(&ip) => Finding::Ok(format!("{public_host} A/AAAA {shown}")),
        Some(ip) => {
            Finding::PointsElsewhere(format!("{public_host} A/AAAA {shown}; expected {ip}"))
        }
        None => Finding::Ok(format!(
            "{public_host} A/AAAA {shown} (check that this is the gateway's public address)"
        )),
    }
}

/// Where the `init` lines go, and where answers come from (the terminal, or nowhere).
trait Asker {
    /// Ask `question` with `default` in brackets; the answer, the default on an empty line.
    fn ask(&mut self, question: &str, default: &str) -> Result<String, String>;
}

struct Terminal;

impl Asker for Terminal {
    fn ask(&mut self, question: &str, default: &str) -> Result<String, String> {
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "{question} [{default}]: ");
        let _ = out.flush();
        let mut line = String::new();
        let n = std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the answer: {e}"))?;
        if n == 0 {
            return Err("no answer (end of input); nothing was written".into());
        }
        let answer = line.trim();
        Ok(if answer.is_empty() {
            default.to_owned()
        } else {
            answer.to_owned()
        })
    }
}

/// Ask until `parse` accepts the answer, showing its error each time.
fn ask_valid<T>(
    asker: &mut dyn Asker,
    question: &str,
    default: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, String> {
    loop {
        let answer = asker.ask(question, default)?;
        match parse(&answer) {
            Ok(v) => return Ok(v),
            Err(e) => println!("  {e}"),
        }
    }
}

/// A usage error naming the flag (exit 2), or a failure (exit 1).
enum Failure {
    Usage(String),
    Failed(String),
}

/// The answers from the flags alone.
fn answers_from_flags(args: &InitArgs, store: Option<&str>) -> Result<Answers, Failure> {
    if args.domains.is_empty() {
        return Err(Failure::Usage(
            "error: fedgate init --non-interactive needs --domain <DOMAIN> (one per hosted domain) and --internal-server <HOST:PORT> for each".into(),
        ));
    }
    if args.internal_servers.len() != args.domains.len() {
        return Err(Failure::Usage(format!(
            "error: {} --domain but {} --internal-server: give one --internal-server per --domain, in the same order",
            args.domains.len(),
            args.internal_servers.len()
        )));
    }
    let certificates = certificate_pairs(args)?;
    let domains = args
        .domains
        .iter()
        .zip(&args.internal_servers)
        .enumerate()
        .map(|(i, (d, s))| DomainAnswers {
            domain: d.clone(),
            internal_server: s.clone(),
            certificate: certificates.get(i).cloned().flatten(),
        })
        .collect();
    Ok(Answers {
        domains,
        external_listen: listen_or(args.external_listen, DEFAULT_EXTERNAL_LISTEN),
        internal_listen: listen_or(args.internal_listen, DEFAULT_INTERNAL_LISTEN),
        metrics_listen: listen_or(args.metrics_listen, DEFAULT_METRICS_LISTEN),
        admin_listen: listen_or(args.admin_listen, DEFAULT_ADMIN_LISTEN),
        store: store_text(store)?,
        public_host: args
            .public_host
            .clone()
            .unwrap_or_else(|| args.domains[0].clone()),
    })
}

fn listen_or(given: Option<SocketAddr>, default: &str) -> SocketAddr {
    given.unwrap_or_else(|| {
        default
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
    })
}

/// The --certificate/--key pairs, one per domain in order (none: no files).
fn certificate_pairs(args: &InitArgs) -> Result<Vec<Option<(PathBuf, PathBuf)>>, Failure> {
    if args.certificates.is_empty() && args.keys.is_empty() {
        return Ok(vec![None; args.domains.len()]);
    }
    if args.certificates.len() != args.domains.len() || args.keys.len() != args.domains.len() {
        return Err(Failure::Usage(format!(
            "error: {} --domain, {} --certificate and {} --key: give one --certificate and one --key per --domain, in the same order (or --generate-certificate)",
            args.domains.len(),
            args.certificates.len(),
            args.keys.len()
        )));
    }
    Ok(args
        .certificates
        .iter()
        .zip(&args.keys)
        .map(|(c, k)| Some((absolute(c), absolute(k))))
        .collect())
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

/// The store URL to write: the one given, else the default (relative to the config file).
fn store_text(store: Option<&str>) -> Result<String, Failure> {
    let text = store.unwrap_or(DEFAULT_STORE_URL);
    match StoreUrl::parse(text) {
        Ok(StoreUrl::Sqlite(p)) if p.is_relative() && store.is_some() => {
            // Given on the command line: relative to the working directory, as everywhere else;
            // the file's store is relative to its directory, so write it absolute.
            Ok(format!("sqlite:{}", absolute(&p).display()))
        }
        Ok(_) => Ok(text.to_owned()),
        Err(e) => Err(Failure::Usage(format!(
            "error: invalid value for '--store': {e}"
        ))),
    }
}

/// The answers asked on the terminal, the flags giving the defaults.
fn answers_asked(
    args: &InitArgs,
    store: Option<&str>,
    asker: &mut dyn Asker,
) -> Result<(Answers, PathBuf, bool), String> {
    println!("fedgate init: a few questions; press Enter to take the default in brackets.");
    let mut domains: Vec<DomainAnswers> = Vec::new();
    // --generate-certificate answers every domain's certificate question.
    let generate = args.generate_certificate;
    loop {
        let i = domains.len();
        let (question, default) = if i == 0 {
            (
                "Hosted domain (your users' XMPP domain)",
                args.domains
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "corp.example".into()),
            )
        } else {
            (
                "Another hosted domain (empty to finish)",
                args.domains.get(i).cloned().unwrap_or_default(),
            )
        };
        let domain = ask_valid(asker, question, &default, |t| {
            if i > 0 && t.is_empty() {
                return Ok(None);
            }
            let d = parse_domain(t)?;
            if domains.iter().any(|o| o.domain == d) {
                return Err(format!("'{d}' is already a hosted domain"));
            }
            Ok(Some(d))
        })?;
        let Some(domain) = domain else { break };
        let internal_server = ask_valid(
            asker,
            &format!("Internal XMPP server for {domain} (host:port)"),
            args.internal_servers
                .get(i)
                .map_or("127.0.0.1:5269", String::as_str),
            parse_internal_server,
        )?;
        let cert_default = args
            .certificates
            .get(i)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let certificate = if generate {
            None
        } else {
            let cert = ask_valid(
                asker,
                &format!(
                    "Certificate for {domain}: PEM chain file, or empty to generate a self-signed one"
                ),
                &cert_default,
                |t| existing_file(t, true),
            )?;
            match cert {
                None => None,
                Some(cert) => {
                    let key_default = args
                        .keys
                        .get(i)
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
                    let key = ask_valid(
                        asker,
                        &format!("Private key file for {domain}"),
                        &key_default,
                        |t| existing_file(t, false),
                    )?;
                    key.map(|k| (cert, k))
                }
            }
        };
        domains.push(DomainAnswers {
            domain,
            internal_server,
            certificate,
        });
    }
    let external_listen = ask_valid(
        asker,
        "External listener: where partners connect (IP:port)",
        &args
            .external_listen
            .map_or(DEFAULT_EXTERNAL_LISTEN.into(), |a| a.to_string()),
        parse_listen,
    )?;
    let internal_listen = ask_valid(
        asker,
        "Internal listener: where your XMPP servers connect for partner domains (IP:port)",
        &args
            .internal_listen
            .map_or(DEFAULT_INTERNAL_LISTEN.into(), |a| a.to_string()),
        parse_listen,
    )?;
    let first = domains
        .first()
        .map_or("corp.example", |d| d.domain.as_str());
    let public_host = ask_valid(
        asker,
        "Public host name partners connect to (the SRV target)",
        args.public_host.as_deref().unwrap_or(first),
        parse_public_host,
    )?;
    let config_out = ask_valid(
        asker,
        "Configuration file to write",
        &args
            .config_out
            .as_ref()
            .map_or(DEFAULT_CONFIG_OUT.into(), |p| p.display().to_string()),
        |t| Ok(PathBuf::from(t)),
    )?;
    let store = ask_valid(
        asker,
        "Store (sqlite:<path>, relative to the configuration file, or postgres://…)",
        store.unwrap_or(DEFAULT_STORE_URL),
        |t| {
            StoreUrl::parse(t)
                .map(|_| t.to_owned())
                .map_err(|e| e.to_string())
        },
    )?;
    let mut force = args.force;
    if config_out.exists() && !force {
        force = ask_valid(
            asker,
            &format!("{} exists. Overwrite it? (y/n)", config_out.display()),
            "n",
            |t| match t.to_ascii_lowercase().as_str() {
                "y" | "yes" => Ok(true),
                "n" | "no" => Ok(false),
                _ => Err("allowed values: y, n".into()),
            },
        )?;
    }
    let answers = Answers {
        domains,
        external_listen,
        internal_listen,
        metrics_listen: listen_or(args.metrics_listen, DEFAULT_METRICS_LISTEN),
        admin_listen: listen_or(args.admin_listen, DEFAULT_ADMIN_LISTEN),
        store,
        public_host,
    };
    Ok((answers, config_out, force))
}

/// An answer naming an existing file: `None` for an empty answer.
fn existing_file(text: &str, may_be_empty: bool) -> Result<Option<PathBuf>, String> {
    if text.is_empty() {
        return if may_be_empty {
            Ok(None)
        } else {
            Err("a file is needed".into())
        };
    }
    let p = absolute(Path::new(text));
    if p.is_file() {
        Ok(Some(p))
    } else {
        Err(format!("'{}' does not exist or is not a file", p.display()))
    }
}

/// `fedgate init`. `store` is the global --store (or $FEDGATE_STORE); `config`, the global
/// --config (or $FEDGATE_CONFIG), is where to write when --config-out is not given.
pub fn run(mut args: InitArgs, store: Option<&str>, config: Option<&Path>) -> ExitCode {
    if args.config_out.is_none() {
        args.config_out = config.map(Path::to_path_buf);
    }
    match run_inner(args, store) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("{m}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(m)) => {
            eprintln!("{m}");
            ExitCode::from(1)
        }
    }
}

fn run_inner(args: InitArgs, store: Option<&str>) -> Result<(), Failure> {
    let (mut answers, config_out, force) = if args.non_interactive {
        let out = args
            .config_out
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_OUT));
        let a = answers_from_flags(&args, store)?;
        (a, out, args.force)
    } else {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::Usage(
                "error: fedgate init asks its questions on a terminal, and standard input is not one; \
                 for scripts pass --non-interactive with the answers as flags, e.g.\n  \
                 fedgate init --non-interactive --domain corp.example --internal-server 10.0.0.5:5269 \
                 --external-listen 0.0.0.0:5269 --generate-certificate --config-out /etc/fedgate/fedgate.toml"
                    .into(),
            ));
        }
        answers_asked(&args, store, &mut Terminal).map_err(Failure::Failed)?
    };
    if config_out.exists() && !force {
        return Err(Failure::Failed(format!(
            "error: {} exists; nothing was written. Pass --force to overwrite it.",
            config_out.display()
        )));
    }
    let dir = config_out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    std::fs::create_dir_all(&dir).map_err(|e| {
        Failure::Failed(format!(
            "error: cannot create the directory {}: {e}",
            dir.display()
        ))
    })?;
    // Certificates to generate: next to the configuration file, named as the gateway names them.
    let generate = args.generate_certificate
        || (!args.non_interactive && answers.domains.iter().any(|d| d.certificate.is_none()));
    if generate {
        for d in answers
            .domains
            .iter_mut()
            .filter(|d| d.certificate.is_none())
        {
            let cert = dir.join(format!("{}.pem", d.domain));
            let key = dir.join(format!("{}.key", d.domain));
            if cert.exists() && key.exists() && !args.force {
                println!(
                    "Keeping the existing certificate {} and key {} (--force replaces them).",
                    cert.display(),
                    key.display()
                );
            } else {
                write_self_signed(&d.domain, &cert, &key).map_err(Failure::Failed)?;
                println!(
                    "Generated a self-signed certificate for {}: {} and {}",
                    d.domain,
                    cert.display(),
                    key.display()
                );
            }
            d.certificate = Some((
                PathBuf::from(format!("{}.pem", d.domain)),
                PathBuf::from(format!("{}.key", d.domain)),
            ));
        }
    }
    let name = config_out.display().to_string();
    let text = config_text(&answers, &name);
    let config = fedgate_config::Config::parse(&text, &config_out).map_err(|e| {
        Failure::Failed(format!(
            "error: the configuration would not load, so it was not written: {e}"
        ))
    })?;
    std::fs::write(&config_out, &text).map_err(|e| {
        Failure::Failed(format!("error: cannot write {}: {e}", config_out.display()))
    })?;
    println!(
        "Wrote {} (checked as `fedgate config check` checks it).",
        name
    );
    match fedgate_store::open(&config.store) {
        Ok(_) => println!("Store ready: {}", shown_store(&config.store)),
        Err(e) => {
            return Err(Failure::Failed(format!(
                "error: the configuration is written but the store cannot be created: {e}"
            )));
        }
    }
    if config.external_listen.ip().is_loopback() {
        println!(
            "Note: the external listener {} is on loopback; partners cannot reach it from outside.",
            config.external_listen
        );
    }
    let domains: Vec<&str> = answers.domains.iter().map(|d| d.domain.as_str()).collect();
    println!("\nDNS records to publish (partners find the gateway with them):");
    for r in dns_records(&domains, &answers.public_host, answers.external_listen) {
        println!("  {r}");
    }
    if args.no_dns_check {
        println!("\nDNS now: not checked (--no-dns-check).");
    } else {
        println!("\nDNS now (asked with the gateway's resolver):");
        for f in dns_findings(&config, &domains, &answers.public_host) {
            println!("  {f}");
        }
    }
    let cfg = shell_word(&name);
    println!(
        "\nNext:\n  \
         Start the gateway:      fedgate serve --config {cfg}\n  \
         Add a partner:          fedgate --config {cfg} New-CsXmppAllowedPartner -Identity \"contoso.com\" -PartnerType \"PublicVerified\"\n  \
         Create an admin token:  fedgate --config {cfg} token create --name admin --role admin\n  \
         Test what partners see: fedgate --config {cfg} Test-CsXmppGatewayConfiguration"
    );
    Ok(())
}

fn shown_store(url: &StoreUrl) -> String {
    match url {
        StoreUrl::Sqlite(p) => format!("sqlite:{}", p.display()),
        StoreUrl::Postgres(_) => "the PostgreSQL database".into(),
    }
}

/// `text` quoted for a POSIX shell when it needs quoting.
fn shell_word(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:@".contains(c))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

fn write_self_signed(domain: &str, cert: &Path, key: &Path) -> Result<(), String> {
    let (c, k) = fedgate_gateway::tls::self_signed(domain)
        .map_err(|e| format!("error: cannot generate a certificate for {domain}: {e}"))?;
    std::fs::write(cert, c).map_err(|e| format!("error: cannot write {}: {e}", cert.display()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(key)
        .map_err(|e| format!("error: cannot write {}: {e}", key.display()))?;
    f.write_all(k.as_bytes())
        .map_err(|e| format!("error: cannot write {}: {e}", key.display()))
}

/// Ask DNS now, with the gateway's resolver (its `[dns]` servers, else the system's).
fn dns_findings(
    config: &fedgate_config::Config,
    domains: &[&str],
    public_host: &str,
) -> Vec<Finding> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            return vec![Finding::LookupFailed(format!(
                "cannot start the DNS lookups: {e}"
            ))];
        }
    };
    let port = config.external_listen.port();
    let expected = expected_address(config.external_listen);
    runtime.block_on(async {
        let resolver = fedgate_gateway::resolve::Resolver::new(&config.dns);
        // Every question at once: a DNS server that does not answer costs its timeout once.
        let mut srv_lookups = tokio::task::JoinSet::new();
        for (i, d) in domains.iter().enumerate() {
            let (r, name) = (resolver.clone(), srv_name(d));
            srv_lookups.spawn(async move { (i, r.srv_records(&name).await) });
        }
        let ips = resolver.host_addresses(public_host).await;
        let mut answers = vec![Err("the lookup did not finish".to_owned()); domains.len()];
        while let Some(done) = srv_lookups.join_next().await {
            if let Ok((i, answer)) = done {
                answers[i] = answer;
            }
        }
        let mut findings: Vec<Finding> = domains
            .iter()
            .zip(&answers)
            .map(|(d, srv)| check_srv(d, public_host, port, srv))
            .collect();
        findings.push(check_addresses(public_host, expected, &ips));
        findings
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(dir: &Path) -> Answers {
        let cert = dir.join("b.example.pem");
        let key = dir.join("b.example.key");
        std::fs::write(&cert, "x").unwrap();
        std::fs::write(&key, "x").unwrap();
        Answers {
            domains: vec![
                DomainAnswers {
                    domain: "corp.example".into(),
                    internal_server: "10.0.0.5:5269".into(),
                    certificate: None,
                },
                DomainAnswers {
                    domain: "b.example".into(),
                    internal_server: "xmpp.b.example:5270".into(),
                    certificate: Some((cert, key)),
                },
            ],
            external_listen: "0.0.0.0:5269".parse().unwrap(),
            internal_listen: "127.0.0.1:5270".parse().unwrap(),
            metrics_listen: "127.0.0.1:9269".parse().unwrap(),
            admin_listen: "127.0.0.1:8443".parse().unwrap(),
            store: "sqlite:fedgate.db".into(),
            public_host: "xmpp.corp.example".into(),
        }
    }

    #[test]
    fn the_config_text_loads_with_the_real_loader_and_keeps_every_answer() {
        let dir = tempfile::tempdir().unwrap();
        let a = answers(dir.path());
        let file = dir.path().join("fedgate.toml");
        let text = config_text(&a, "fedgate.toml");
        let c = fedgate_config::Config::parse(&text, &file).unwrap();
        assert_eq!(c.external_listen, a.external_listen);
        assert_eq!(c.internal_listen, a.internal_listen);
        assert_eq!(c.metrics_listen, Some(a.metrics_listen));
        assert_eq!(c.admin.map(|x| x.listen), Some(a.admin_listen));
        assert_eq!(c.store, StoreUrl::Sqlite(dir.path().join("fedgate.db")));
        assert_eq!(c.hosted.len(), 2);
        for (h, d) in c.hosted.iter().zip(&a.domains) {
            assert_eq!(h.domain.as_str(), d.domain);
            assert_eq!(h.internal_server.to_string(), d.internal_server);
            assert_eq!(h.certificate, d.certificate);
        }
        // Commented as the example is, with the same keys.
        assert!(text.contains(
            "# Partners connect here: _xmpp-server._tcp.<domain> SRV -> xmpp.corp.example:5269."
        ));
        assert!(text.contains("# certificate = \"certs/corp.example.pem\""));
        assert!(text.contains("[settings]\n# Initial gateway-wide settings"));
        // The keys and sections of examples/fedgate.toml (certificate/key: docs/config-contract.md).
        let example = include_str!("../../../examples/fedgate.toml");
        let keys = |t: &str| -> Vec<String> {
            t.lines()
                .map(|l| l.trim_start_matches("# "))
                .filter(|l| l.starts_with('[') || l.contains(" = "))
                .map(|l| l.split(" = ").next().unwrap_or(l).trim().to_owned())
                .collect()
        };
        let known = keys(example);
        for k in keys(&text) {
            assert!(
                known.contains(&k) || k == "certificate" || k == "key",
                "{k} is not a key of examples/fedgate.toml"
            );
        }
    }

    #[test]
    fn the_config_text_escapes_paths_and_urls() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("we\"ird\\dir");
        std::fs::create_dir(&odd).unwrap();
        let mut a = answers(&odd);
        a.store = format!("sqlite:{}", odd.join("my store.db").display());
        let text = config_text(&a, "x.toml");
        let c = fedgate_config::Config::parse(&text, &dir.path().join("x.toml")).unwrap();
        assert_eq!(c.store, StoreUrl::Sqlite(odd.join("my store.db")));
        assert_eq!(c.hosted[1].certificate, a.domains[1].certificate);
    }

    #[test]
    fn the_dns_records_are_an_srv_per_domain_and_the_public_hosts_address() {
        let records = dns_records(
            &["corp.example", "b.example"],
            "xmpp.corp.example",
            "203.0.113.5:5269".parse().unwrap(),
        );
        let lines: Vec<String> = records.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "_xmpp-server._tcp.corp.example. 3600 IN SRV 0 5 5269 xmpp.corp.example.",
                "_xmpp-server._tcp.b.example. 3600 IN SRV 0 5 5269 xmpp.corp.example.",
                "xmpp.corp.example. 3600 IN A 203.0.113.5",
            ]
        );
        let v6 = dns_records(
            &["corp.example"],
            "corp.example.",
            "[2001:db8::5]:5299".parse().unwrap(),
        );
        assert_eq!(v6[0].data, "0 5 5299 corp.example.");
        assert_eq!((v6[1].kind, v6[1].data.as_str()), ("AAAA", "2001:db8::5"));
        // Listening on every address: the address is the admin's to fill in.
        let any = dns_records(
            &["corp.example"],
            "corp.example",
            "0.0.0.0:5269".parse().unwrap(),
        );
        assert_eq!(any[1].data, "<this gateway's public IPv4 address>");
        assert_eq!(expected_address("127.0.0.1:5269".parse().unwrap()), None);
    }

    fn srv(port: u16, target: &str) -> SrvRecord {
        SrvRecord {
            priority: 0,
            weight: 5,
            port,
            target: target.into(),
        }
    }

    #[test]
    fn srv_answers_compared_with_the_expected_target() {
        let check = |o: Result<Vec<SrvRecord>, String>| {
            check_srv("corp.example", "xmpp.corp.example", 5269, &o)
        };
        assert!(matches!(
            check(Ok(vec![srv(5269, "XMPP.corp.example.")])),
            Finding::Ok(_)
        ));
        // One of several matching is enough (the others may be other gateways of a pool).
        assert!(matches!(
            check(Ok(vec![
                srv(5269, "edge2.corp.example."),
                srv(5269, "xmpp.corp.example.")
            ])),
            Finding::Ok(_)
        ));
        assert_eq!(
            check(Ok(vec![])),
            Finding::NotPublished("_xmpp-server._tcp.corp.example has no SRV record".into())
        );
        let Finding::PointsElsewhere(t) = check(Ok(vec![srv(5269, "old.corp.example.")])) else {
            panic!()
        };
        assert!(
            t.contains("old.corp.example") && t.contains("expected xmpp.corp.example:5269"),
            "{t}"
        );
        let Finding::PointsElsewhere(t) = check(Ok(vec![srv(5270, "xmpp.corp.example.")])) else {
            panic!()
        };
        assert!(t.contains("0 5 5270 xmpp.corp.example"), "{t}");
        let Finding::PointsElsewhere(t) = check(Ok(vec![srv(0, ".")])) else {
            panic!()
        };
        assert!(t.contains("not offered"), "{t}");
        let f = check(Err("request timed out".into()));
        assert!(matches!(&f, Finding::LookupFailed(t) if t.contains("timed out")));
        assert!(f.to_string().starts_with("warning: "));
    }

    #[test]
    fn address_answers_compared_with_the_expected_address() {
        let ip: IpAddr = "203.0.113.5".parse().unwrap();
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        assert!(matches!(
            check_addresses("h", Some(ip), &Ok(vec![other, ip])),
            Finding::Ok(_)
        ));
        let f = check_addresses("h", Some(ip), &Ok(vec![other]));
        assert_eq!(
            f,
            Finding::PointsElsewhere("h A/AAAA 198.51.100.1; expected 203.0.113.5".into())
        );
        assert!(f.to_string().starts_with("points elsewhere: "));
        assert!(matches!(
            check_addresses("h", Some(ip), &Ok(vec![])),
            Finding::NotPublished(_)
        ));
        assert!(
            check_addresses("h", None, &Ok(vec![]))
                .to_string()
                .starts_with("not published yet: ")
        );
        let Finding::Ok(t) = check_addresses("h", None, &Ok(vec![other])) else {
            panic!()
        };
        assert!(
            t.contains("198.51.100.1") && t.contains("public address"),
            "{t}"
        );
        assert!(matches!(
            check_addresses("h", None, &Err("no server".into())),
            Finding::LookupFailed(_)
        ));
    }

    #[test]
    fn flag_values_name_what_is_allowed() {
        assert!(parse_listen("nope").unwrap_err().contains("IP:port"));
        assert!(
            parse_public_host("192.0.2.1")
                .unwrap_err()
                .contains("host name")
        );
        assert!(
            parse_internal_server("a b:1")
                .unwrap_err()
                .contains("host:port")
        );
        assert_eq!(parse_internal_server("10.0.0.5").unwrap(), "10.0.0.5:5269");
        assert!(
            parse_domain("not a domain")
                .unwrap_err()
                .contains("allowed values")
        );
        assert_eq!(
            shell_word("/etc/fedgate/fedgate.toml"),
            "/etc/fedgate/fedgate.toml"
        );
        assert_eq!(shell_word("my dir/f.toml"), "'my dir/f.toml'");
    }
}
