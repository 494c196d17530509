//! The management commands over a store: the cmdlets (verbatim or idiomatic), the shell and
//! scripts, export, tokens, the audit log, authorisations, the pool's nodes and internal DNS.

use std::process::ExitCode;

use fedgate_manage::Manager;
use fedgate_manage::policies::Grant;
use fedgate_pwsh::parse_argv;
use fedgate_store::url::DEFAULT_STORE_URL;
use fedgate_store::{AuditQuery, Store, StoreUrl};

use crate::cli::{self, NodeAction, PolicyAction, TopCommand};
use crate::engine::{Object, Reply, Session};
use crate::output::{OutputFormat, print_reply};
use crate::shell::{Runner, StdinPrompt};
use crate::{actor, export_cmd, partner_test, token_cmd};

/// The management commands over the store (`--store`, else the config's): cmdlets, the shell,
/// scripts, the idiomatic subcommands, tokens, audit, authorisations, nodes, internal DNS.
pub fn run(
    command: TopCommand,
    mut store_text: Option<String>,
    mut config_path: Option<std::path::PathBuf>,
    mut format: OutputFormat,
) -> ExitCode {
    // Verbatim cmdlets: the global options may also follow the cmdlet (`--` never starts a
    // PowerShell parameter), so take them out before parsing the cmdlet's own arguments.
    let command = match command {
        TopCommand::Cmdlet(argv) => {
            match take_global_options(argv, &mut store_text, &mut config_path, &mut format) {
                Ok(argv) => TopCommand::Cmdlet(argv),
                Err(message) => {
                    eprintln!("{message}");
                    return ExitCode::from(2);
                }
            }
        }
        other => other,
    };
    // The partner test runs the gateway's probe with the gateway's config, not the store engine.
    let command = match partner_test::intercept(
        command,
        config_path.as_deref(),
        store_text.as_deref(),
        format,
    ) {
        Ok(code) => return code,
        Err(other) => *other,
    };
    // With the gateway's config: its store (unless --store says otherwise) and its hosted domains,
    // which no partner may claim.
    let config = match config_path
        .as_deref()
        .map(fedgate_config::Config::load)
        .transpose()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    if store_text.is_none() {
        store_text = config.as_ref().map(|c| c.store.to_string());
    }
    let internal_listen = config.as_ref().map(|c| c.internal_listen);
    let hosted = config
        .map(|c| c.hosted.into_iter().map(|h| h.domain).collect())
        .unwrap_or_default();
    let store = match open_store(store_text.as_deref()) {
        Ok(s) => s,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(1);
        }
    };
    let manager = Manager::new(store.as_ref(), actor()).with_hosted_domains(hosted);
    if let TopCommand::Export {
        format: export_format,
        output_file,
    } = &command
    {
        return export_cmd::run(&manager, *export_format, output_file.as_deref());
    }
    let mut prompt = StdinPrompt;
    let mut runner = Runner::new(Session::new(manager, &mut prompt), format);
    match command {
        TopCommand::Cmdlet(argv) => match parse_argv(&argv) {
            Ok(statement) => {
                runner.run(&statement, None);
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
        TopCommand::Shell => runner.interactive(),
        TopCommand::Run { script } => runner.run_file(&script),
        TopCommand::Token { action } => return token_cmd::run(store.as_ref(), action, format),
        TopCommand::Audit { target, limit } => {
            let query = AuditQuery {
                target,
                limit: Some(limit),
                ..AuditQuery::default()
            };
            return show(
                store
                    .as_ref()
                    .audit_log(&query)
                    .map(|e| e.into_iter().map(Object::Audit).collect()),
                format,
            );
        }
        TopCommand::Authorisations { user } => {
            let user = match user
                .as_deref()
                .map(fedgate_model::UserJid::parse)
                .transpose()
            {
                Ok(u) => u,
                Err(e) => {
                    eprintln!("error: invalid value for '--user': {}", e.reason);
                    return ExitCode::from(2);
                }
            };
            return show(
                store
                    .authorisations(user.as_ref())
                    .map(|a| a.into_iter().map(Object::Authorisation).collect()),
                format,
            );
        }
        TopCommand::Status { cluster: true } => return cluster_status(store.as_ref(), format),
        TopCommand::Node {
            action: NodeAction::Forget { name },
        } => return forget_node(store.as_ref(), &name),
        TopCommand::InternalDns { format, address } => {
            return internal_dns(store.as_ref(), internal_listen, format, address.as_deref());
        }
        TopCommand::Policy {
            action: PolicyAction::Grants,
        } => {
            let grants = store.grants().map(|g| {
                g.into_iter()
                    .map(|(identity, external_access_policy)| {
                        Object::Grant(Grant {
                            identity,
                            external_access_policy,
                        })
                    })
                    .collect()
            });
            return show(grants, format);
        }
        idiomatic => match cli::to_invocation(idiomatic) {
            Ok(Ok(invocation)) => runner.run_invocation(invocation),
            Ok(Err(error)) => runner.report(&error, None),
            Err(other) => {
                eprintln!("unsupported command: {other:?}");
                return ExitCode::from(2);
            }
        },
    }
    ExitCode::from(runner.exit_code() as u8)
}

/// `fedgate internal-dns`: the records for every partner domain, printed to stdout.
fn internal_dns(
    store: &dyn Store,
    listen: Option<std::net::SocketAddr>,
    format: fedgate_model::internal_dns::InternalDnsFormat,
    address: Option<&str>,
) -> ExitCode {
    use fedgate_model::internal_dns;
    let Some(listen) = listen else {
        eprintln!(
            "fedgate internal-dns needs --config <FILE>: the internal listener's address comes from its internal_listener.listen."
        );
        return ExitCode::from(2);
    };
    let target = match internal_dns::target(listen, address) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: invalid value for '{}': {}", e.parameter, e.reason);
            return ExitCode::from(2);
        }
    };
    match store.partners(None) {
        Ok(partners) => {
            let patterns: Vec<_> = partners.iter().flat_map(|p| p.value.patterns()).collect();
            print!("{}", internal_dns::render(format, &patterns, target));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

/// `fedgate status --cluster`: the nodes of the pool, as the store lists them.
fn cluster_status(store: &dyn Store, format: OutputFormat) -> ExitCode {
    match store.nodes(fedgate_store::cluster::LEASE_TTL) {
        Ok(nodes) => {
            match format {
                OutputFormat::Json => match serde_json::to_string_pretty(&nodes) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("cannot show the nodes as JSON: {e}");
                        return ExitCode::from(1);
                    }
                },
                OutputFormat::List => print!("{}", fedgate_manage::status::render_cluster(&nodes)),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

/// `fedgate node forget <NAME>`: remove a node that is gone for good, unless it is alive.
fn forget_node(store: &dyn Store, name: &str) -> ExitCode {
    let ttl = fedgate_store::cluster::LEASE_TTL;
    let nodes = match store.nodes(ttl) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    match nodes.iter().find(|n| n.node == name) {
        None => {
            let known: Vec<&str> = nodes.iter().map(|n| n.node.as_str()).collect();
            eprintln!(
                "error: no node named '{name}' in the store (nodes: {}).",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            );
            ExitCode::from(1)
        }
        Some(n) if n.alive => {
            eprintln!(
                "error: the node '{name}' is alive (last heartbeat {:.1} s ago); stop it first, \
                 then forget it once its heartbeat is older than {} s.",
                n.seconds_since_heartbeat,
                ttl.as_secs()
            );
            ExitCode::from(1)
        }
        Some(_) => match store.forget_node(name) {
            Ok(_) => {
                println!("forgot node '{name}' and its stream leases");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
    }
}

fn show(objects: Result<Vec<Object>, fedgate_store::StoreError>, format: OutputFormat) -> ExitCode {
    match objects {
        Ok(objects) => {
            print_reply(
                &Reply {
                    objects,
                    is_listing: true,
                    ..Reply::default()
                },
                format,
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn take_global_options(
    argv: Vec<String>,
    store: &mut Option<String>,
    config: &mut Option<std::path::PathBuf>,
    format: &mut OutputFormat,
) -> Result<Vec<String>, String> {
    let mut rest = Vec::with_capacity(argv.len());
    let mut iter = argv.into_iter();
    while let Some(arg) = iter.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        match name.as_str() {
            "--store" | "--output" | "--config" => {
                let value = inline
                    .or_else(|| iter.next())
                    .ok_or_else(|| format!("error: {name} needs a value"))?;
                if name == "--store" {
                    *store = Some(value);
                } else if name == "--config" {
                    *config = Some(value.into());
                } else {
                    *format = <OutputFormat as clap::ValueEnum>::from_str(&value, true)
                        .map_err(|_| format!("error: invalid value '{value}' for '--output': allowed values: list, json"))?;
                }
            }
            _ => rest.push(arg),
        }
    }
    Ok(rest)
}

fn open_store(text: Option<&str>) -> Result<Box<dyn Store>, String> {
    let url = StoreUrl::parse(text.unwrap_or(DEFAULT_STORE_URL)).map_err(|e| e.to_string())?;
    fedgate_store::open(&url).map_err(|e| e.to_string())
}
