//! The command line: global options, the idiomatic subcommands (`fedgate partner add …`), and the
//! verbatim cmdlets (`fedgate New-CsXmppAllowedPartner …`). The idiomatic subcommands build the
//! same typed requests as the cmdlets, with the same conversions, so both faces share one engine
//! and one set of errors.

use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Args, FromArgMatches, Parser, Subcommand};
use fedgate_manage::fields;
use fedgate_manage::params::{self, ParamValue, pairs, parse_partner_identity};
use fedgate_manage::partners::{PartnerSelector, SetTarget};
use fedgate_manage::policies::PolicySelector;
use fedgate_manage::{Mode, Request};
use fedgate_model::{PolicyScope, UserJid};
use fedgate_pwsh::{BindError, Command, RawArg, Value};

use crate::binder::{self, Invocation};
use crate::engine::CliError;
use crate::output::OutputFormat;

/// The fields list after the help of the partner subcommands: the rows come from
/// [`fields::PARTNER_FIELDS`].
const FIELD_HELP_HEAD: &str = "\
Partner fields (cmdlet parameter names in brackets):
  Identity / Domain            the partner's primary domain (required; IDNs stored as A-labels)
";

const FIELD_HELP_TAIL: &str = "\
A combination of TLS, SASL and dialback that leaves no way to authenticate is refused; two
combinations are accepted with a warning (SASL Required without TLS Required; TLS and SASL Required
with dialback on, where dialback is never used).";

fn field_help() -> String {
    format!(
        "{FIELD_HELP_HEAD}{}\n{FIELD_HELP_TAIL}",
        fields::fields_list(&fields::PARTNER_FIELDS)
    )
}

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
    #[command(after_help = field_help())]
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

/// `--set`'s help: the gateway settings, from [`fields::GATEWAY_FIELDS`].
fn gateway_set_help() -> String {
    let names: Vec<&str> = fields::GATEWAY_FIELDS.iter().map(|f| f.name).collect();
    format!("NAME=VALUE (repeatable): {}", names.join(", "))
}

fn parse_export_format(text: &str) -> Result<fedgate_manage::formats::Format, String> {
    fedgate_manage::formats::Format::parse(text)
        .ok_or_else(|| format!("'{text}' is not a format. Allowed values: clixml, csv, json."))
}

fn parse_dns_format(text: &str) -> Result<fedgate_model::internal_dns::InternalDnsFormat, String> {
    fedgate_model::InvalidValue::parse_choice("--format", text).map_err(|e| e.reason)
}

/// The flags of the plain subcommands for the fields of `table` that have one, in help order
/// ([`fields::in_help_order`]): `--flag <VALUE>`, help from the table. The argument's id is the
/// flag.
fn field_args(table: &'static [fields::Field]) -> Vec<Arg> {
    fields::in_help_order(table)
        .into_iter()
        .filter_map(|f| {
            let flag = f.flag?;
            Some(
                Arg::new(flag)
                    .long(flag)
                    .value_name(f.value_name)
                    .help(f.flag_help())
                    .action(ArgAction::Set)
                    .value_parser(clap::value_parser!(String)),
            )
        })
        .collect()
}

/// The fields of `table` given on the command line, in help order, each with its text.
fn given_fields(
    table: &'static [fields::Field],
    matches: &ArgMatches,
) -> Vec<(&'static fields::Field, String)> {
    fields::in_help_order(table)
        .into_iter()
        .filter_map(|f| {
            let text = matches.get_one::<String>(f.flag?)?;
            Some((f, text.clone()))
        })
        .collect()
}

/// The fields given, as the cmdlet's parameters: a list field split at commas, any other taken
/// literally.
fn field_pairs(given: Vec<(&'static fields::Field, String)>) -> Vec<(&'static str, ParamValue)> {
    given
        .into_iter()
        .map(|(field, text)| {
            let value = if field.type_name == fields::LIST_MODIFIER {
                split_list(&text)
            } else {
                literal(&text)
            };
            (field.name, value)
        })
        .collect()
}

/// The flags of one field table as a clap `Args` (`#[command(flatten)]`): one flag per row that
/// has one, none written out here.
macro_rules! table_flags {
    ($(#[$meta:meta])* $name:ident, $table:expr) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        pub struct $name {
            given: Vec<(&'static fields::Field, String)>,
        }

        impl FromArgMatches for $name {
            fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
                Ok($name {
                    given: given_fields(&$table, matches),
                })
            }

            fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
                *self = Self::from_arg_matches(matches)?;
                Ok(())
            }
        }

        impl Args for $name {
            fn augment_args(cmd: clap::Command) -> clap::Command {
                cmd.args(field_args(&$table))
            }

            fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
                Self::augment_args(cmd)
            }
        }

        impl $name {
            /// The fields given, as the cmdlet's parameters, in help order.
            fn pairs(self) -> Vec<(&'static str, ParamValue)> {
                field_pairs(self.given)
            }
        }
    };
}

table_flags!(
    /// The partner fields given to `partner add/edit`: one flag per row of
    /// [`fields::PARTNER_FIELDS`] (`--partner-type` for PartnerType).
    PartnerFields,
    fields::PARTNER_FIELDS
);

table_flags!(
    /// The policy fields given to `policy add/edit`: one flag per row of
    /// [`fields::POLICY_FIELDS`] (`--xmpp-access` for EnableXmppAccess).
    PolicyFields,
    fields::POLICY_FIELDS
);

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
    fn mode(&self) -> Mode {
        if self.what_if {
            Mode::WhatIf
        } else {
            Mode::Commit
        }
    }

    fn invocation(&self, request: Request) -> Invocation {
        Invocation {
            request,
            confirm: self.confirm,
            force: self.force,
            pass_thru: false,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum PartnerAction {
    /// Add a partner. [New-CsXmppAllowedPartner]
    #[command(after_help = field_help())]
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
    #[command(after_help = field_help())]
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
        #[arg(long = "set", value_name = "NAME=VALUE", required = true, help = gateway_set_help())]
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

/// `name` resolved among the settable fields `allowed` as the PowerShell binder resolves a
/// parameter name: without case, then by an unambiguous prefix.
fn resolve_field(name: &str, allowed: &[(&'static str, &str)]) -> Result<&'static str, BindError> {
    if let Some((exact, _)) = allowed.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
        return Ok(exact);
    }
    let matches: Vec<&'static str> = allowed
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| {
            n.get(..name.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(name))
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(BindError::ParameterNotFound { name: name.into() }),
        _ => Err(BindError::AmbiguousParameter {
            name: name.into(),
            candidates: matches,
        }),
    }
}

/// A value typed in a Unix shell, taken literally except for `$null`, `$true` and `$false`.
fn literal(text: &str) -> ParamValue {
    match text.to_ascii_lowercase().as_str() {
        "$null" => ParamValue::Null,
        "$true" => ParamValue::Bool(true),
        "$false" => ParamValue::Bool(false),
        _ => ParamValue::Text(text.to_owned()),
    }
}

/// A comma-separated list typed in a Unix shell (`$null` clears).
fn split_list(text: &str) -> ParamValue {
    if text.eq_ignore_ascii_case("$null") {
        return ParamValue::Null;
    }
    ParamValue::List(
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| ParamValue::Text(s.into()))
            .collect(),
    )
}

/// The cmdlet `partner test` / `gateway test` stands for (the gateway's probe runs it, not the
/// manager); None for any other command.
pub fn test_cmdlet(command: &TopCommand) -> Option<Command> {
    let (name, args) = match command {
        TopCommand::Partner {
            action: PartnerAction::Test { domain, from },
        } => (
            "Test-CsXmppAllowedPartner",
            [("Domain", Some(domain)), ("From", from.as_ref())],
        ),
        TopCommand::Gateway {
            action: GatewayAction::Test { domain },
        } => (
            "Test-CsXmppGatewayConfiguration",
            [("Domain", domain.as_ref()), ("From", None)],
        ),
        _ => return None,
    };
    let args = args
        .into_iter()
        .filter_map(|(name, value)| {
            value.map(|v| RawArg::Parameter {
                name: name.into(),
                attached: Some(Value::String(v.clone())),
            })
        })
        .collect();
    Some(Command {
        name: name.into(),
        args,
    })
}

/// The request an idiomatic subcommand stands for, built directly from its typed arguments;
/// `Err` gives back a command that is not a management request. A bad value is the same usage
/// error, naming the cmdlet parameter, as the cmdlet gives.
pub fn to_invocation(command: TopCommand) -> Result<Result<Invocation, CliError>, Box<TopCommand>> {
    Ok(match command {
        TopCommand::Partner { action } => partner_invocation(action),
        TopCommand::Policy {
            action: PolicyAction::Grants,
        } => {
            return Err(Box::new(TopCommand::Policy {
                action: PolicyAction::Grants,
            }));
        }
        TopCommand::Policy { action } => policy_invocation(action),
        TopCommand::Gateway { action } => match action {
            GatewayAction::Show => Ok(Invocation::plain(Request::GetGateway)),
            GatewayAction::Set { settings, switches } => {
                gateway_set(settings, &switches).map(|r| switches.invocation(r))
            }
            GatewayAction::Test { .. } => {
                Err(binder::runs_alone("Test-CsXmppGatewayConfiguration"))
            }
        },
        TopCommand::Import { file, what_if } => Ok(Invocation::plain(Request::Import {
            path: file.to_string_lossy().into_owned(),
            mode: if what_if { Mode::WhatIf } else { Mode::Commit },
        })),
        other => return Err(Box::new(other)),
    })
}

fn partner_invocation(action: PartnerAction) -> Result<Invocation, CliError> {
    const NEW: &str = "New-CsXmppAllowedPartner";
    const GET: &str = "Get-CsXmppAllowedPartner";
    const SET: &str = "Set-CsXmppAllowedPartner";
    const REMOVE: &str = "Remove-CsXmppAllowedPartner";
    Ok(match action {
        PartnerAction::Add {
            identity,
            fields,
            in_memory,
            switches,
        } => {
            let identity =
                parse_partner_identity("Identity", &identity).map_err(CliError::invalid(NEW))?;
            let changes =
                params::partner_changes(pairs(&fields.pairs())).map_err(CliError::invalid(NEW))?;
            let mode = if in_memory {
                Mode::InMemory
            } else {
                switches.mode()
            };
            switches.invocation(Request::NewPartner {
                identity,
                changes,
                mode,
            })
        }
        PartnerAction::Show { identity } => Invocation::plain(Request::GetPartners {
            selector: PartnerSelector::Identity(
                params::partner_lookup(&identity).map_err(CliError::invalid(GET))?,
            ),
        }),
        PartnerAction::List { filter } => Invocation::plain(Request::GetPartners {
            selector: filter.map_or(PartnerSelector::All, PartnerSelector::Filter),
        }),
        PartnerAction::Edit {
            identity,
            fields,
            add_domain,
            remove_domain,
            switches,
        } => {
            let mut given = fields.pairs();
            if !add_domain.is_empty() || !remove_domain.is_empty() {
                // Replace wins, as with @{Replace=...}; say so by building the same hashtable.
                given.retain(|(name, _)| *name != "AdditionalDomains");
                let list = |v: Vec<String>| {
                    ParamValue::List(v.into_iter().map(ParamValue::Text).collect())
                };
                let mut table = vec![
                    ("Add".to_owned(), list(add_domain)),
                    ("Remove".to_owned(), list(remove_domain)),
                ];
                table.retain(|(_, v)| !matches!(v, ParamValue::List(items) if items.is_empty()));
                given.push(("AdditionalDomains", ParamValue::Map(table)));
            }
            let changes = params::partner_changes(pairs(&given)).map_err(CliError::invalid(SET))?;
            let identity =
                parse_partner_identity("Identity", &identity).map_err(CliError::invalid(SET))?;
            switches.invocation(Request::SetPartner {
                target: SetTarget::Identity(identity),
                changes,
                expected_version: None,
                mode: switches.mode(),
            })
        }
        PartnerAction::Remove { identity, switches } => {
            let identity =
                parse_partner_identity("Identity", &identity).map_err(CliError::invalid(REMOVE))?;
            switches.invocation(Request::RemovePartner {
                identity,
                expected_version: None,
                mode: switches.mode(),
            })
        }
        PartnerAction::Test { .. } => return Err(binder::runs_alone("Test-CsXmppAllowedPartner")),
    })
}

fn policy_invocation(action: PolicyAction) -> Result<Invocation, CliError> {
    const NEW: &str = "New-CsExternalAccessPolicy";
    const GET: &str = "Get-CsExternalAccessPolicy";
    const SET: &str = "Set-CsExternalAccessPolicy";
    const REMOVE: &str = "Remove-CsExternalAccessPolicy";
    const GRANT: &str = "Grant-CsExternalAccessPolicy";
    let scope = |cmd: &str, text: &str| PolicyScope::parse(text).map_err(CliError::invalid(cmd));
    Ok(match action {
        PolicyAction::Add {
            identity,
            fields,
            switches,
        } => {
            let scope = scope(NEW, &identity)?;
            let changes =
                params::policy_changes(pairs(&fields.pairs())).map_err(CliError::invalid(NEW))?;
            switches.invocation(Request::NewPolicy {
                scope,
                changes,
                mode: switches.mode(),
            })
        }
        PolicyAction::Show { identity } => Invocation::plain(Request::GetPolicies {
            selector: PolicySelector::Identity(scope(GET, &identity)?),
        }),
        PolicyAction::List { filter } => Invocation::plain(Request::GetPolicies {
            selector: filter.map_or(PolicySelector::All, PolicySelector::Filter),
        }),
        PolicyAction::Edit {
            identity,
            fields,
            switches,
        } => {
            let changes =
                params::policy_changes(pairs(&fields.pairs())).map_err(CliError::invalid(SET))?;
            switches.invocation(Request::SetPolicy {
                scope: scope(SET, &identity)?,
                instance: None,
                changes,
                expected_version: None,
                mode: switches.mode(),
            })
        }
        PolicyAction::Remove { identity, switches } => switches.invocation(Request::RemovePolicy {
            scope: scope(REMOVE, &identity)?,
            force: switches.force,
            mode: switches.mode(),
        }),
        PolicyAction::Grant {
            user,
            policy,
            none: _,
            switches,
        } => {
            let user = UserJid::parse(&user).map_err(CliError::invalid(GRANT))?;
            Invocation {
                pass_thru: true,
                ..switches.invocation(Request::GrantPolicy {
                    user,
                    policy,
                    mode: switches.mode(),
                })
            }
        }
        // A listing of the store, not a request: to_invocation hands it back.
        PolicyAction::Grants => {
            return Err(CliError::UnknownCommand("policy grants".into()));
        }
    })
}

/// `gateway set --set NAME=VALUE …`: each name resolved as the cmdlet's binder would.
fn gateway_set(settings: Vec<String>, switches: &WriteSwitches) -> Result<Request, CliError> {
    const SET: &str = "Set-CsXmppGatewayConfiguration";
    let mut given: Vec<(&'static str, ParamValue)> = Vec::new();
    for setting in &settings {
        let (name, value) = setting.split_once('=').unwrap_or((setting.as_str(), ""));
        let bind_error = |error| CliError::Bind {
            command: SET.into(),
            error,
        };
        let field = resolve_field(name, &params::GATEWAY_PARAMETERS).map_err(bind_error)?;
        if given.iter().any(|(n, _)| *n == field) {
            return Err(bind_error(BindError::DuplicateParameter {
                parameter: field,
            }));
        }
        given.push((field, literal(value)));
    }
    let changes = params::gateway_changes(pairs(&given)).map_err(CliError::invalid(SET))?;
    Ok(Request::SetGateway {
        instance: None,
        changes,
        mode: switches.mode(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subcommands_build_requests_without_the_cmdlet_text() {
        let cli = Cli::parse_from([
            "fedgate",
            "partner",
            "edit",
            "contoso.com",
            "--additional-domains",
            "a.com,b.com",
            "--add-domain",
            "c.com",
            "--what-if",
        ]);
        let Some(command) = cli.command else {
            panic!("no subcommand");
        };
        let Ok(Ok(invocation)) = to_invocation(command) else {
            panic!("not a valid request");
        };
        let Request::SetPartner { changes, mode, .. } = invocation.request else {
            panic!("not a Set: {:?}", invocation.request);
        };
        assert_eq!(mode, Mode::WhatIf);
        // --add-domain edits the list, as @{Add=…}; the replacing list is dropped.
        assert!(matches!(
            changes.additional_domains,
            Some(fedgate_model::ListModifier::Modify { ref add, .. }) if add.len() == 1
        ));
    }

    #[test]
    fn every_partner_flag_gives_its_cmdlet_parameter() {
        let command = PartnerFields::augment_args(clap::Command::new("add"));
        for field in &fields::PARTNER_FIELDS {
            let Some(flag) = field.flag else { continue };
            let matches = command
                .clone()
                .try_get_matches_from(["add", &format!("--{flag}"), "a.com,$null"])
                .unwrap_or_else(|e| panic!("--{flag}: {e}"));
            let pairs = PartnerFields::from_arg_matches(&matches)
                .expect("the fields are read back")
                .pairs();
            let expected = if field.type_name == fields::LIST_MODIFIER {
                split_list("a.com,$null")
            } else {
                ParamValue::Text("a.com,$null".into())
            };
            assert_eq!(pairs, vec![(field.name, expected)], "--{flag}");
        }
        let none = command
            .try_get_matches_from(["add"])
            .expect("no flag is required");
        assert!(
            PartnerFields::from_arg_matches(&none)
                .expect("read back")
                .pairs()
                .is_empty()
        );
        // Policies: the switches fedgate acts on come first, as the pairs do.
        let matches = PolicyFields::augment_args(clap::Command::new("edit"))
            .try_get_matches_from([
                "edit",
                "--outside-access",
                "$true",
                "--xmpp-access",
                "false",
            ])
            .expect("policy flags");
        let pairs = PolicyFields::from_arg_matches(&matches)
            .expect("read back")
            .pairs();
        assert_eq!(
            pairs,
            vec![
                ("EnableXmppAccess", ParamValue::Text("false".into())),
                ("EnableOutsideAccess", ParamValue::Bool(true)),
            ]
        );
    }

    #[test]
    fn every_field_with_a_flag_has_it_on_add_and_edit() {
        use clap::CommandFactory;
        let cli = Cli::command();
        for (group, table) in [
            ("partner", &fields::PARTNER_FIELDS[..]),
            ("policy", &fields::POLICY_FIELDS[..]),
        ] {
            for action in ["add", "edit"] {
                let sub = cli
                    .find_subcommand(group)
                    .and_then(|g| g.find_subcommand(action))
                    .unwrap_or_else(|| panic!("no {group} {action}"));
                for flag in table.iter().filter_map(|f| f.flag) {
                    assert!(
                        sub.get_arguments().any(|a| a.get_long() == Some(flag)),
                        "{group} {action} has no --{flag}"
                    );
                }
            }
        }
    }

    #[test]
    fn bad_values_are_the_cmdlets_usage_errors() {
        let run = |args: &[&str]| {
            let cli = Cli::parse_from(std::iter::once("fedgate").chain(args.iter().copied()));
            match cli.command.map(to_invocation) {
                Some(Ok(Err(e))) => e,
                other => panic!("{args:?}: expected an error, got {other:?}"),
            }
        };
        let e = run(&["partner", "add", "a.com", "--partner-type", "Trusted"]);
        assert!(
            e.to_string().starts_with("New-CsXmppAllowedPartner : ")
                && e.to_string()
                    .contains("Federated, PublicVerified, PublicUnverified"),
            "{e}"
        );
        assert_eq!(e.exit_code(), 2);
        let e = run(&["partner", "show", "*.com"]);
        assert!(e.to_string().contains("use -Filter for wildcards"), "{e}");
        let e = run(&["gateway", "set", "--set", "Colour=red"]);
        assert!(e.to_string().contains("parameter name 'Colour'"), "{e}");
        let e = run(&["gateway", "set", "--set", "Stream=5"]);
        assert!(e.to_string().contains("is ambiguous"), "{e}");
        let e = run(&[
            "gateway",
            "set",
            "--set",
            "keepalive=60",
            "--set",
            "KeepAliveInterval=70",
        ]);
        assert!(e.to_string().contains("more than once"), "{e}");
        let e = run(&["policy", "grant", "not a user", "Sales"]);
        assert_eq!(e.exit_code(), 2, "{e}");
    }
}
