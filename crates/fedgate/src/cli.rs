//! The command line: global options, the idiomatic subcommands (`fedgate partner add …`), and the
//! verbatim cmdlets (`fedgate New-CsXmppAllowedPartner …`). The idiomatic subcommands are
//! translated into the same cmdlet calls, so both faces share one engine and one set of errors.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use fedgate_pwsh::{Command, RawArg, Value};

use crate::output::OutputFormat;

const FIELD_HELP: &str = "\
Partner fields (cmdlet parameter names in brackets):
  Identity / Domain            the partner's primary domain (required; IDNs stored as A-labels)
  --additional-domains         [AdditionalDomains] more domains of the partner; *.example.com matches
                               every subdomain of example.com (default: none)
  --description                [Description] free text, up to 1024 characters (default: empty)
  --partner-type               [PartnerType] Federated | PublicVerified | PublicUnverified
                               (default: PublicUnverified)
  --tls-negotiation            [TlsNegotiation] Required | Optional | NotSupported (default: Required)
  --sasl-negotiation           [SaslNegotiation] SASL EXTERNAL: Required | Optional | NotSupported
                               (default: Required). Required = on a TLS stream only SASL is accepted.
  --dialback                   [SupportDialbackNegotiation] Server Dialback, true | false (default: true)
  --keep-alive                 [EnableKeepAlive] whitespace keepalives, true | false (default: true)
  --connection-limit           [ConnectionLimit] 1..4294967295, or $null for the gateway's
                               PartnerConnectionLimit (default: unset)
  --proxy-fqdn                 [ProxyFqdn] host[:port] to connect to instead of the partner's SRV target
                               (default: none)
  --bypass-dual-write          [BypassDualWrite] accepted for compatibility; has no effect (default: false)

A combination of TLS, SASL and dialback that leaves no way to authenticate is refused; two
combinations are accepted with a warning (SASL Required without TLS Required; TLS and SASL Required
with dialback on, where dialback is never used).";

#[derive(Debug, Parser)]
#[command(
    name = "fedgate",
    version,
    about = "XMPP federation edge gateway with a Skype for Business-compatible management plane",
    long_about = "XMPP federation edge gateway with a Skype for Business-compatible management plane.\n\n\
Manage the allowed-partners list with the Skype for Business cmdlets, verbatim:\n  \
fedgate New-CsXmppAllowedPartner -Identity \"contoso.com\" -PartnerType \"PublicVerified\"\n  \
fedgate Get-CsXmppAllowedPartner -Filter \"*.com\"\n\
or with the idiomatic subcommands below. Cmdlets: New-/Get-/Set-/Remove-/Test-CsXmppAllowedPartner,\n\
New-/Get-/Set-/Remove-/Grant-CsExternalAccessPolicy, Get-/Set-/Test-CsXmppGatewayConfiguration,
Import-CsXmppAllowedPartner -Path <FILE> (what an SfB shell exported; also `fedgate import`).",
    after_help = "Exit codes: 0 ok, 1 error (nothing written), 2 usage error.",
    allow_external_subcommands = true
)]
pub struct Cli {
    /// The store: sqlite:<path> or postgres://user@host[:port]/database[?sslmode=…] (password
    /// from $FEDGATE_STORE_PASSWORD_FILE, $FEDGATE_STORE_PASSWORD, the URL or $PGPASSWORD).
    /// Default: $FEDGATE_STORE, else sqlite:fedgate.db in the working directory.
    #[arg(
        long,
        global = true,
        env = "FEDGATE_STORE",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub store: Option<String>,

    /// How to print results.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::List)]
    pub output: OutputFormat,

    /// The gateway's configuration file. `serve` runs it; management commands then use its store
    /// (unless --store is given) and refuse partner domains that are its own hosted domains.
    /// Default: $FEDGATE_CONFIG.
    #[arg(long, global = true, env = "FEDGATE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<TopCommand>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Validate a configuration file: exit 0 if valid, else 1 with the file, key and reason.
    Check {
        /// The TOML configuration file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum TopCommand {
    /// Manage allowed partners (the idiomatic form of *-CsXmppAllowedPartner).
    #[command(after_help = FIELD_HELP)]
    Partner {
        #[command(subcommand)]
        action: PartnerAction,
    },
    /// Manage external access policies and per-user grants (*-CsExternalAccessPolicy).
    Policy {
        #[command(subcommand)]
        action: PolicyAction,
    },
    /// Show or change the gateway-wide settings (*-CsXmppGatewayConfiguration).
    Gateway {
        #[command(subcommand)]
        action: GatewayAction,
    },
    /// Manage REST API tokens: a token is shown once at creation and stored only as a hash.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Work on whole stores: copy one into another.
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Show the audit log: who changed what, when, before and after.
    Audit {
        /// Only changes to this record (a partner's Identity, a policy, a user, or Global).
        #[arg(long)]
        target: Option<String>,
        /// At most this many of the newest entries.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show the recorded authorisations for PublicUnverified partners: a local user's outbound
    /// subscribe/subscribed to a remote user authorises them (the gateway records it;
    /// unsubscribe/unsubscribed removes it). Until then that remote user's stanzas are bounced.
    #[command(visible_alias = "authorizations")]
    Authorisations {
        /// Only this local user's authorisations (e.g. alice@corp.example).
        #[arg(long)]
        user: Option<String>,
    },
    /// Type cmdlets line by line (history, `exit` to leave); reads a script from stdin when it is not a terminal.
    Shell,
    /// Run a script of cmdlets (e.g. an old runbook) line by line.
    Run {
        /// The script file (.ps1).
        script: PathBuf,
    },
    /// Run the gateway with a configuration file (docs/config-contract.md); SIGTERM/SIGINT stop
    /// it gracefully, SIGHUP reloads certificates.
    /// (Needs --config <FILE>.)
    Serve,
    /// Check configuration files.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Show the live streams of a running gateway (read from its metrics listener's /status;
    /// with --config its metrics_listen, else fedgate.toml in the working directory if present,
    /// else 127.0.0.1:9269). With --cluster: every node of the pool sharing the store (read from
    /// the store, no gateway needed).
    Status {
        /// Show the nodes that write heartbeats to the store (alive or dead, last heartbeat,
        /// start, version, address, streams, stream leases) instead of this gateway's streams.
        #[arg(long)]
        cluster: bool,
    },
    /// The nodes of a pool sharing the store (see `status --cluster`).
    Node {
        #[command(subcommand)]
        action: NodeAction,
    },
    /// Print the DNS records that send the internal XMPP servers' s2s traffic for every partner
    /// domain to the gateway's internal listener (README: "Putting fedgate in front of your
    /// server"). Needs --config: the address is internal_listener.listen unless --address is given.
    InternalDns {
        /// dnsmasq | unbound | bind | hosts | prosody.
        #[arg(long, value_parser = parse_dns_format)]
        format: fedgate_model::internal_dns::InternalDnsFormat,
        /// The address internal servers must connect to, ip or ip:port (default port: the
        /// listener's); needed when internal_listener.listen is 0.0.0.0 or ::, or when the
        /// servers reach the gateway through another address.
        #[arg(long, value_name = "IP[:PORT]")]
        address: Option<String>,
    },
    /// Import what a Skype for Business shell exported: partners, external access policies and
    /// the gateway settings, from Export-Clixml, Export-Csv -NoTypeInformation or ConvertTo-Json
    /// (the format is detected from the content). Every record is checked as New/Set check it;
    /// the import is all or nothing, audited with the file name. Same as
    /// Import-CsXmppAllowedPartner -Path <FILE>.
    Import {
        /// The exported file.
        file: PathBuf,
        /// Say what would be created, changed (field by field) or left alone; write nothing.
        #[arg(long)]
        what_if: bool,
    },
    /// Write the partner list as the Skype for Business shell would have exported it
    /// (Get-CsXmppAllowedPartner | Export-Clixml / Export-Csv -NoTypeInformation /
    /// ConvertTo-Json -EnumsAsStrings); `fedgate import` reads it back unchanged.
    Export {
        /// clixml | csv | json.
        #[arg(long, value_parser = parse_export_format)]
        format: fedgate_manage::formats::Format,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        output_file: Option<PathBuf>,
    },
    /// Set up a gateway: write a checked configuration, create the store, show the DNS records.
    ///
    /// Asks (or takes as flags, with --non-interactive) the hosted domains, their internal
    /// servers, the listeners and the certificates (or generates one); writes a commented
    /// configuration checked as `config check` checks it (an existing file only with --force);
    /// creates the store; prints the DNS records to publish and what DNS says now; prints the
    /// next commands.
    Init(crate::init::InitArgs),
    /// Write the man pages (fedgate.1 and one per subcommand) into DIR; used to build the package.
    #[command(hide = true)]
    GenerateMan {
        /// The directory to write the pages into (created if missing).
        dir: PathBuf,
    },
    /// Print the completion script for SHELL; used to build the package.
    #[command(hide = true)]
    GenerateCompletions {
        /// bash | zsh | fish | elvish | powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// A verbatim cmdlet, e.g. New-CsXmppAllowedPartner -Identity contoso.com.
    #[command(external_subcommand)]
    Cmdlet(Vec<String>),
}

fn parse_export_format(text: &str) -> Result<fedgate_manage::formats::Format, String> {
    fedgate_manage::formats::Format::parse(text)
        .ok_or_else(|| format!("'{text}' is not a format. Allowed values: clixml, csv, json."))
}

fn parse_dns_format(text: &str) -> Result<fedgate_model::internal_dns::InternalDnsFormat, String> {
    fedgate_model::InvalidValue::parse_choice("--format", text).map_err(|e| e.reason)
}

#[derive(Debug, Args, Default)]
pub struct PartnerFields {
    /// Additional domains, comma-separated (replaces the list). [AdditionalDomains]
    #[arg(long, value_name = "DOMAINS")]
    additional_domains: Option<String>,
    /// Free text, e.g. contact details. [Description]
    #[arg(long)]
    description: Option<String>,
    /// Federated | PublicVerified | PublicUnverified. [PartnerType]
    #[arg(long, value_name = "TYPE")]
    partner_type: Option<String>,
    /// Required | Optional | NotSupported. [TlsNegotiation]
    #[arg(long, value_name = "SETTING")]
    tls_negotiation: Option<String>,
    /// Required | Optional | NotSupported. [SaslNegotiation]
    #[arg(long, value_name = "SETTING")]
    sasl_negotiation: Option<String>,
    /// true | false. [SupportDialbackNegotiation]
    #[arg(long, value_name = "BOOL")]
    dialback: Option<String>,
    /// true | false. [EnableKeepAlive]
    #[arg(long, value_name = "BOOL")]
    keep_alive: Option<String>,
    /// 1..4294967295, or '$null' for the gateway default. [ConnectionLimit]
    #[arg(long, value_name = "N")]
    connection_limit: Option<String>,
    /// host[:port] for outbound connections; '' clears. [ProxyFqdn]
    #[arg(long, value_name = "HOST[:PORT]")]
    proxy_fqdn: Option<String>,
    /// true | false; no effect. [BypassDualWrite]
    #[arg(long, value_name = "BOOL")]
    bypass_dual_write: Option<String>,
}

impl PartnerFields {
    fn push_args(self, args: &mut Vec<RawArg>) {
        if let Some(list) = self.additional_domains {
            push(args, "AdditionalDomains", split_list(&list));
        }
        push_texts(
            args,
            [
                ("Description", self.description),
                ("PartnerType", self.partner_type),
                ("TlsNegotiation", self.tls_negotiation),
                ("SaslNegotiation", self.sasl_negotiation),
                ("SupportDialbackNegotiation", self.dialback),
                ("EnableKeepAlive", self.keep_alive),
                ("ConnectionLimit", self.connection_limit),
                ("ProxyFqdn", self.proxy_fqdn),
                ("BypassDualWrite", self.bypass_dual_write),
            ],
        );
    }
}

#[derive(Debug, Args, Default)]
pub struct WriteSwitches {
    /// Say what would happen; write nothing. [-WhatIf]
    #[arg(long)]
    what_if: bool,
    /// Ask before writing. [-Confirm]
    #[arg(long)]
    confirm: bool,
    /// Do not show warnings. [-Force]
    #[arg(long)]
    force: bool,
}

impl WriteSwitches {
    fn push_args(&self, args: &mut Vec<RawArg>) {
        for (on, name) in [
            (self.what_if, "WhatIf"),
            (self.confirm, "Confirm"),
            (self.force, "Force"),
        ] {
            if on {
                args.push(RawArg::Parameter {
                    name: name.into(),
                    attached: None,
                });
            }
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum PartnerAction {
    /// Add a partner. [New-CsXmppAllowedPartner]
    #[command(after_help = FIELD_HELP)]
    Add {
        /// The partner's primary domain.
        identity: String,
        #[command(flatten)]
        fields: PartnerFields,
        /// Print the partner that would be created; write nothing. [-InMemory]
        #[arg(long)]
        in_memory: bool,
        #[command(flatten)]
        switches: WriteSwitches,
    },
    /// Show one partner. [Get-CsXmppAllowedPartner -Identity]
    Show { identity: String },
    /// List partners, optionally those whose Identity matches a wildcard. [Get-CsXmppAllowedPartner -Filter]
    List {
        /// `*` and `?` wildcards on Identity.
        #[arg(long)]
        filter: Option<String>,
    },
    /// Change a partner's fields. [Set-CsXmppAllowedPartner]
    #[command(after_help = FIELD_HELP)]
    Edit {
        identity: String,
        #[command(flatten)]
        fields: PartnerFields,
        /// Add an additional domain (repeatable). [AdditionalDomains @{Add=…}]
        #[arg(long = "add-domain", value_name = "DOMAIN")]
        add_domain: Vec<String>,
        /// Remove an additional domain (repeatable). [AdditionalDomains @{Remove=…}]
        #[arg(long = "remove-domain", value_name = "DOMAIN")]
        remove_domain: Vec<String>,
        #[command(flatten)]
        switches: WriteSwitches,
    },
    /// Remove a partner. [Remove-CsXmppAllowedPartner]
    Remove {
        identity: String,
        #[command(flatten)]
        switches: WriteSwitches,
    },
    /// Test a partner (or any domain) from the gateway's point of view: resolution, connection,
    /// TLS, certificate, SASL EXTERNAL, dialback, and the verdict; needs --config. Exit code 0
    /// for Ok or Warning, 1 for Fail. [Test-CsXmppAllowedPartner -Domain]
    Test {
        /// The domain: a listed partner is tested with its settings, another with the defaults.
        domain: String,
        /// The hosted domain to speak as (default: the first). [-From]
        #[arg(long, value_name = "DOMAIN")]
        from: Option<String>,
    },
}

#[derive(Debug, Args, Default)]
pub struct PolicyFields {
    /// Free text. [Description]
    #[arg(long)]
    description: Option<String>,
    /// true | false: may users federate over XMPP? (default false) [EnableXmppAccess]
    #[arg(long, value_name = "BOOL")]
    xmpp_access: Option<String>,
    /// true | false; stored only. [EnableFederationAccess]
    #[arg(long, value_name = "BOOL")]
    federation_access: Option<String>,
    /// true | false; stored only. [EnableOutsideAccess]
    #[arg(long, value_name = "BOOL")]
    outside_access: Option<String>,
    /// true | false; stored only. [EnablePublicCloudAccess]
    #[arg(long, value_name = "BOOL")]
    public_cloud_access: Option<String>,
    /// true | false; stored only. [EnablePublicCloudAudioVideoAccess]
    #[arg(long, value_name = "BOOL")]
    public_cloud_audio_video_access: Option<String>,
}

impl PolicyFields {
    fn push_args(self, args: &mut Vec<RawArg>) {
        push_texts(
            args,
            [
                ("Description", self.description),
                ("EnableXmppAccess", self.xmpp_access),
                ("EnableFederationAccess", self.federation_access),
                ("EnableOutsideAccess", self.outside_access),
                ("EnablePublicCloudAccess", self.public_cloud_access),
                (
                    "EnablePublicCloudAudioVideoAccess",
                    self.public_cloud_audio_video_access,
                ),
            ],
        );
    }
}

#[derive(Debug, Subcommand)]
pub enum PolicyAction {
    /// Create a policy: Identity is Global, site:<name> or tag:<name>. [New-CsExternalAccessPolicy]
    Add {
        identity: String,
        #[command(flatten)]
        fields: PolicyFields,
        #[command(flatten)]
        switches: WriteSwitches,
    },
    /// Show one policy. [Get-CsExternalAccessPolicy -Identity]
    Show { identity: String },
    /// List policies. [Get-CsExternalAccessPolicy]
    List {
        #[arg(long)]
        filter: Option<String>,
    },
    /// Change a policy. [Set-CsExternalAccessPolicy]
    Edit {
        identity: String,
        #[command(flatten)]
        fields: PolicyFields,
        #[command(flatten)]
        switches: WriteSwitches,
    },
    /// Remove a policy (Global is reset to defaults). [Remove-CsExternalAccessPolicy]
    Remove {
        identity: String,
        #[command(flatten)]
        switches: WriteSwitches,
    },
    /// Grant a tag policy to a user (user > site > Global); --none removes the grant. [Grant-CsExternalAccessPolicy]
    Grant {
        /// The user's bare JID, e.g. alice@corp.example.
        user: String,
        /// The tag policy's name.
        #[arg(required_unless_present = "none")]
        policy: Option<String>,
        /// Remove the user's grant.
        #[arg(long, conflicts_with = "policy")]
        none: bool,
        #[command(flatten)]
        switches: WriteSwitches,
    },
    /// List per-user grants.
    Grants,
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Make an API token and print it once (keep it: it cannot be shown again).
    Create {
        /// A name for the token, shown in the audit log as token:<name> (A-Z a-z 0-9 . _ -).
        #[arg(long)]
        name: String,
        /// admin: read and change everything; reader: read only.
        #[arg(long, value_parser = ["admin", "reader"], ignore_case = true)]
        role: String,
    },
    /// List API tokens (names, roles, creation times; never the tokens).
    List,
    /// Revoke an API token: requests with it fail from then on.
    Revoke {
        /// The token's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeAction {
    /// Remove a node that is gone for good (decommissioned) from the store: its row in
    /// `status --cluster` and its stream leases. Refused while the node is alive (its heartbeat
    /// within the lease time): a running node would come back with its next heartbeat.
    Forget {
        /// The node's name (`[node] name`), as `status --cluster` shows it.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreAction {
    /// Copy every record of one store into another, e.g. a node's SQLite file into the pool's
    /// PostgreSQL database: partners, policies, grants, the gateway configuration, authorisations,
    /// partner health, the audit log and API tokens (as hashes). One transaction: all or nothing.
    /// Refused when the target holds anything, unless --force.
    #[command(
        after_help = "Example: fedgate store copy sqlite:fedgate.db postgres://fedgate@db.example/fedgate\n\
PostgreSQL passwords come from the same places as for --store (for both URLs)."
    )]
    Copy {
        /// The store to copy from: sqlite:<path> (must exist) or postgres://…
        #[arg(value_name = "FROM")]
        from: String,
        /// The store to copy into: sqlite:<path> (created if missing) or postgres://…
        #[arg(value_name = "TO")]
        to: String,
        /// Replace whatever the target holds.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GatewayAction {
    /// Show the gateway-wide settings. [Get-CsXmppGatewayConfiguration]
    Show,
    /// Change gateway-wide settings, e.g. --set KeepAliveInterval=120. [Set-CsXmppGatewayConfiguration]
    Set {
        /// NAME=VALUE (repeatable): ConnectionLimit, PartnerConnectionLimit, KeepAliveInterval,
        /// StreamEstablishmentTimeout, StreamInactivityTimeout, SubscriptionRefreshInterval,
        /// DialbackPassphrase, EnableLoggingAllMessageBodies.
        #[arg(long = "set", value_name = "NAME=VALUE", required = true)]
        settings: Vec<String>,
        #[command(flatten)]
        switches: WriteSwitches,
    },
    /// Test each hosted domain (or the one given) as partners see it: its SRV and A/AAAA records
    /// against the external listeners, a stream to each listener, TLS and the certificate
    /// presented for it, and a verdict; needs --config and a gateway running here for the
    /// listener steps. Exit code 0 for Ok or Warning, 1 for Fail. [Test-CsXmppGatewayConfiguration]
    Test {
        /// A hosted domain (default: every one). [-Domain]
        domain: Option<String>,
    },
}

/// Push `-Name value` for every field the admin gave, each taken literally.
fn push_texts<const N: usize>(args: &mut Vec<RawArg>, fields: [(&str, Option<String>); N]) {
    for (name, value) in fields {
        if let Some(v) = value {
            push(args, name, literal(&v));
        }
    }
}

fn push(args: &mut Vec<RawArg>, name: &str, value: Value) {
    args.push(RawArg::Parameter {
        name: name.into(),
        attached: Some(value),
    });
}

/// A value typed in a Unix shell, taken literally except for `$null`, `$true` and `$false`.
fn literal(text: &str) -> Value {
    match text.to_ascii_lowercase().as_str() {
        "$null" => Value::Null,
        "$true" => Value::Bool(true),
        "$false" => Value::Bool(false),
        _ => Value::String(text.to_owned()),
    }
}

fn split_list(text: &str) -> Value {
    if text.eq_ignore_ascii_case("$null") {
        return Value::Null;
    }
    Value::List(
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Value::String(s.into()))
            .collect(),
    )
}

fn cmdlet(name: &str, identity: Option<String>, mut rest: Vec<RawArg>) -> Command {
    let mut args = Vec::new();
    if let Some(id) = identity {
        push(&mut args, "Identity", Value::String(id));
    }
    args.append(&mut rest);
    Command {
        name: name.into(),
        args,
    }
}

fn named(args: &mut Vec<RawArg>, name: &str, value: Option<String>) {
    if let Some(v) = value {
        push(args, name, Value::String(v));
    }
}

/// The cmdlet an idiomatic subcommand stands for. None for commands that are not cmdlets.
pub fn to_cmdlet(command: TopCommand) -> Result<Command, Box<TopCommand>> {
    Ok(match command {
        TopCommand::Partner { action } => match action {
            PartnerAction::Add {
                identity,
                fields,
                in_memory,
                switches,
            } => {
                let mut args = Vec::new();
                fields.push_args(&mut args);
                if in_memory {
                    args.push(RawArg::Parameter {
                        name: "InMemory".into(),
                        attached: None,
                    });
                }
                switches.push_args(&mut args);
                cmdlet("New-CsXmppAllowedPartner", Some(identity), args)
            }
            PartnerAction::Test { domain, from } => {
                let mut args = Vec::new();
                named(&mut args, "Domain", Some(domain));
                named(&mut args, "From", from);
                cmdlet("Test-CsXmppAllowedPartner", None, args)
            }
            PartnerAction::Show { identity } => {
                cmdlet("Get-CsXmppAllowedPartner", Some(identity), vec![])
            }
            PartnerAction::List { filter } => {
                let mut args = Vec::new();
                named(&mut args, "Filter", filter);
                cmdlet("Get-CsXmppAllowedPartner", None, args)
            }
            PartnerAction::Edit {
                identity,
                fields,
                add_domain,
                remove_domain,
                switches,
            } => {
                let mut args = Vec::new();
                let has_list = fields.additional_domains.is_some();
                fields.push_args(&mut args);
                if !add_domain.is_empty() || !remove_domain.is_empty() {
                    if has_list {
                        // Replace wins, as with @{Replace=...}; say so by building the same hashtable.
                        args.retain(|a| !matches!(a, RawArg::Parameter { name, .. } if name == "AdditionalDomains"));
                    }
                    let list =
                        |v: Vec<String>| Value::List(v.into_iter().map(Value::String).collect());
                    let mut table = vec![
                        ("Add".to_owned(), list(add_domain)),
                        ("Remove".to_owned(), list(remove_domain)),
                    ];
                    table.retain(|(_, v)| !matches!(v, Value::List(items) if items.is_empty()));
                    push(&mut args, "AdditionalDomains", Value::Hashtable(table));
                }
                switches.push_args(&mut args);
                cmdlet("Set-CsXmppAllowedPartner", Some(identity), args)
            }
            PartnerAction::Remove { identity, switches } => {
                let mut args = Vec::new();
                switches.push_args(&mut args);
                cmdlet("Remove-CsXmppAllowedPartner", Some(identity), args)
            }
        },
        TopCommand::Policy { action } => match action {
            PolicyAction::Add {
                identity,
                fields,
                switches,
            } => {
                let mut args = Vec::new();
                fields.push_args(&mut args);
                switches.push_args(&mut args);
                cmdlet("New-CsExternalAccessPolicy", Some(identity), args)
            }
            PolicyAction::Show { identity } => {
                cmdlet("Get-CsExternalAccessPolicy", Some(identity), vec![])
            }
            PolicyAction::List { filter } => {
                let mut args = Vec::new();
                named(&mut args, "Filter", filter);
                cmdlet("Get-CsExternalAccessPolicy", None, args)
            }
            PolicyAction::Edit {
                identity,
                fields,
                switches,
            } => {
                let mut args = Vec::new();
                fields.push_args(&mut args);
                switches.push_args(&mut args);
                cmdlet("Set-CsExternalAccessPolicy", Some(identity), args)
            }
            PolicyAction::Remove { identity, switches } => {
                let mut args = Vec::new();
                switches.push_args(&mut args);
                cmdlet("Remove-CsExternalAccessPolicy", Some(identity), args)
            }
            PolicyAction::Grant {
                user,
                policy,
                none: _,
                switches,
            } => {
                let mut args = Vec::new();
                push(
                    &mut args,
                    "PolicyName",
                    policy.map(Value::String).unwrap_or(Value::Null),
                );
                args.push(RawArg::Parameter {
                    name: "PassThru".into(),
                    attached: None,
                });
                switches.push_args(&mut args);
                cmdlet("Grant-CsExternalAccessPolicy", Some(user), args)
            }
            other @ PolicyAction::Grants => {
                return Err(Box::new(TopCommand::Policy { action: other }));
            }
        },
        TopCommand::Gateway { action } => match action {
            GatewayAction::Show => cmdlet("Get-CsXmppGatewayConfiguration", None, vec![]),
            GatewayAction::Set { settings, switches } => {
                let mut args = Vec::new();
                for setting in settings {
                    let (name, value) = setting.split_once('=').unwrap_or((setting.as_str(), ""));
                    push(&mut args, name, literal(value));
                }
                switches.push_args(&mut args);
                cmdlet("Set-CsXmppGatewayConfiguration", None, args)
            }
            GatewayAction::Test { domain } => {
                let mut args = Vec::new();
                named(&mut args, "Domain", domain);
                cmdlet("Test-CsXmppGatewayConfiguration", None, args)
            }
        },
        TopCommand::Import { file, what_if } => {
            let mut args = Vec::new();
            push(
                &mut args,
                "Path",
                Value::String(file.to_string_lossy().into_owned()),
            );
            if what_if {
                args.push(RawArg::Parameter {
                    name: "WhatIf".into(),
                    attached: None,
                });
            }
            cmdlet("Import-CsXmppAllowedPartner", None, args)
        }
        other => return Err(Box::new(other)),
    })
}
