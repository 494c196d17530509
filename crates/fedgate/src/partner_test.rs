//! `Test-CsXmppAllowedPartner` and `fedgate partner test`: the partner test of the gateway
//! (`fedgate_gateway::probe`), run in this process with the gateway's configuration — its
//! certificates, trust anchors and DNS servers — and its store's partners and dialback secret,
//! so the steps are the gateway's own. The dialback round trip needs a gateway of this
//! deployment to answer the partner's callback: it is tested when the configuration's external
//! listener answers on this host, and otherwise reported as not tested (with why).
//!
//! Runs as a command of its own (not in `fedgate shell`, scripts or pipelines: the engine there
//! works on the store only). Exit codes: 0 for Ok and Warning, 1 for Fail or an error, 2 for a
//! usage error.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use fedgate_gateway::probe::{self, Callback};
use fedgate_manage::params::parse_partner_identity;
use fedgate_model::probe::{Report, Verdict};
use fedgate_model::{Domain, InvalidValue};
use fedgate_pwsh::{Command, Statement, Value, bind};
use fedgate_store::StoreUrl;

use crate::cli::{PartnerAction, TopCommand};
use crate::engine::CliError;
use crate::output::OutputFormat;
use crate::specs::TEST_PARTNER;

/// How long the check that a gateway listens here may take.
const LISTENER_CHECK: Duration = Duration::from_secs(2);

/// The partner test when `command` is one (`Test-CsXmppAllowedPartner …` alone, or `partner
/// test`); any other command is given back.
pub fn intercept(
    command: TopCommand,
    config: Option<&Path>,
    store: Option<&str>,
    format: OutputFormat,
) -> Result<ExitCode, Box<TopCommand>> {
    let cmdlet = match command {
        TopCommand::Cmdlet(ref argv) => match fedgate_pwsh::parse_argv(argv) {
            Ok(Statement::Pipeline { commands, .. })
                if commands.len() == 1
                    && commands[0].name.eq_ignore_ascii_case(TEST_PARTNER.name) =>
            {
                commands.into_iter().next()
            }
            _ => return Err(Box::new(command)),
        },
        TopCommand::Partner {
            action: PartnerAction::Test { .. },
        } => crate::cli::to_cmdlet(command).ok(),
        other => return Err(Box::new(other)),
    };
    Ok(match cmdlet {
        Some(c) => run(&c, config, store, format),
        None => ExitCode::from(2),
    })
}

fn usage(error: InvalidValue) -> ExitCode {
    eprintln!(
        "{}",
        CliError::Invalid {
            command: TEST_PARTNER.name.into(),
            error,
        }
    );
    ExitCode::from(2)
}

fn failed(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("{} : {message}", TEST_PARTNER.name);
    ExitCode::from(1)
}

/// A bound parameter's text (a single string), or the usage error naming it.
fn text(bound: &fedgate_pwsh::BoundArgs, parameter: &str) -> Result<Option<String>, InvalidValue> {
    match bound.value(parameter) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(InvalidValue::new(
            parameter,
            "Give one domain name (a string), not a list, hashtable or variable.",
        )),
    }
}

/// What is to be tested: `(domain, listed partners only)`.
fn target(bound: &fedgate_pwsh::BoundArgs) -> Result<(Domain, bool), InvalidValue> {
    match (text(bound, "Identity")?, text(bound, "Domain")?) {
        (Some(_), Some(_)) => Err(InvalidValue::new(
            "Domain",
            "Specify either -Identity (a listed partner) or -Domain (any domain), not both.",
        )),
        (Some(i), None) => Ok((parse_partner_identity("Identity", &i)?, true)),
        (None, Some(d)) => Ok((parse_partner_identity("Domain", &d)?, false)),
        (None, None) => Err(InvalidValue::new(
            "Identity",
            "The parameter is required. Specify a listed partner with -Identity, or a domain not yet listed with -Domain.",
        )),
    }
}

/// Why the test did not run.
enum Stop {
    Usage(InvalidValue),
    Failed(String),
}

/// Run the test for a bound `Test-CsXmppAllowedPartner` command and print the report.
pub fn run(
    command: &Command,
    config: Option<&Path>,
    store: Option<&str>,
    format: OutputFormat,
) -> ExitCode {
    let bound = match bind(command, &TEST_PARTNER) {
        Ok(b) => b,
        Err(error) => {
            eprintln!(
                "{}",
                CliError::Bind {
                    command: TEST_PARTNER.name.into(),
                    error,
                }
            );
            return ExitCode::from(2);
        }
    };
    let (domain, listed_only) = match target(&bound) {
        Ok(t) => t,
        Err(e) => return usage(e),
    };
    let from = match text(&bound, "From") {
        Ok(f) => f,
        Err(e) => return usage(e),
    };
    let Some(config_path) = config else {
        eprintln!(
            "{} : the test runs from the gateway's point of view and needs its configuration: --config <FILE> (or FEDGATE_CONFIG).",
            TEST_PARTNER.name
        );
        return ExitCode::from(2);
    };
    let mut config = match fedgate_gateway::Config::load(config_path) {
        Ok(c) => c,
        Err(e) => return failed(e),
    };
    if let Some(url) = store {
        match StoreUrl::parse(url) {
            Ok(u) => config.store = u,
            Err(e) => return failed(e),
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return failed(format!("cannot start the async runtime: {e}")),
    };
    let report = runtime.block_on(async {
        use Stop::{Failed, Usage};
        let external = config.external_listen;
        let shared = fedgate_gateway::runtime::offline(config)
            .await
            .map_err(|e| Failed(format!("{e:#}")))?;
        if listed_only
            && shared
                .snapshot()
                .partner(domain.as_str())
                .is_none_or(|p| p.identity != domain)
        {
            return Err(Failed(format!(
                "Cannot find a partner with Identity '{domain}'. Use -Domain to test a domain that is not listed."
            )));
        }
        let from = probe::choose_from(&shared, from.as_deref()).map_err(Usage)?;
        let callback = if shared.snapshot().secret().is_empty() {
            Callback::NotAnswered(
                "no dialback secret is stored yet (fedgate serve has not run with this store)"
                    .into(),
            )
        } else {
            gateway_answers(external).await
        };
        Ok(probe::test_partner(&shared, &domain, &from, callback).await)
    });
    let report = match report {
        Ok(r) => r,
        Err(Stop::Usage(e)) => return usage(e),
        Err(Stop::Failed(e)) => return failed(e),
    };
    print(&report, format);
    match report.verdict {
        Verdict::Ok | Verdict::Warning => ExitCode::SUCCESS,
        Verdict::Fail => ExitCode::from(1),
    }
}

/// Whether a gateway answers on the configuration's external listener here (an unspecified
/// address is asked on loopback).
async fn gateway_answers(listen: std::net::SocketAddr) -> Callback {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    match tokio::time::timeout(LISTENER_CHECK, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Callback::Answered,
        _ => Callback::NotAnswered(format!(
            "no gateway answers on its external listener {addr} here to confirm the key when the partner calls back; start fedgate serve, or run the test from the panel or the REST API"
        )),
    }
}

/// The report as JSON (one object) or as PowerShell-style lines: the summary, then each step.
fn print(report: &Report, format: OutputFormat) {
    if format == OutputFormat::Json {
        match serde_json::to_string_pretty(report) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("{} : {e}", TEST_PARTNER.name),
        }
        return;
    }
    let methods = |m: &[fedgate_model::AuthMethod]| -> String {
        m.iter()
            .map(|m| format!("{m:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut summary = serde_json::Map::new();
    let mut put = |k: &str, v: serde_json::Value| {
        summary.insert(k.to_owned(), v);
    };
    put("Identity", report.identity.clone().into());
    put("Listed", report.listed.into());
    put("From", report.from.clone().into());
    put("Verdict", format!("{:?}", report.verdict).into());
    put(
        "Outbound",
        report
            .methods
            .outbound
            .map_or_else(|| "none".to_owned(), |m| format!("{m:?}"))
            .into(),
    );
    put("Inbound", methods(&report.methods.inbound).into());
    if let Some(c) = &report.certificate {
        put("Subject", c.subject.clone().into());
        put("DnsNames", c.dns_names.clone().into());
        put("XmppAddrs", c.xmpp_addrs.clone().into());
        put("Issuer", c.issuer.clone().into());
        put("NotAfter", c.not_after.clone().into());
        put("Trusted", c.trusted.into());
        put("ValidForDomain", c.valid_for_domain.into());
        put("ExtendedKeyUsage", c.extended_key_usage.clone().into());
    }
    put("Problems", report.problems.clone().into());
    print!(
        "{}",
        crate::output::format_list(&serde_json::Value::Object(summary))
    );
    println!();
    for s in &report.steps {
        let mark = match s.ok {
            Some(true) => "ok  ",
            Some(false) => "FAIL",
            None => "--  ",
        };
        println!("{mark} {:<14} {:>6} ms  {}", s.step, s.ms, s.detail);
    }
}
