//! `Test-CsXmppAllowedPartner` and `fedgate partner test`: the partner test of the gateway
//! (`fedgate_gateway::probe`), run in this process with the gateway's configuration — its
//! certificates, trust anchors and DNS servers — and its store's partners and dialback secret,
//! so the steps are the gateway's own. The dialback round trip needs a gateway of this
//! deployment to answer the partner's callback: it is tested when the configuration's external
//! listener answers on this host, and otherwise reported as not tested (with why).
//!
//! `Test-CsXmppGatewayConfiguration` and `fedgate gateway test` likewise: the gateway test
//! (`fedgate_gateway::probe::test_gateway`) in this process with the gateway's configuration —
//! its DNS servers, its configured external listeners and trust anchors. The listener steps
//! connect to the gateway that runs on this host; when none answers on the configured external
//! listener, it says so on stderr first (those steps then fail; the DNS checks still hold), and
//! the panel or the REST API of the running gateway tests its listeners as bound.
//!
//! Both run as a command of their own (not in `fedgate shell`, scripts or pipelines: the engine
//! there works on the store only). Exit codes: 0 for Ok and Warning, 1 for Fail or an error, 2
//! for a usage error.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use fedgate_gateway::probe::{self, Callback};
use fedgate_manage::params::parse_partner_identity;
use fedgate_model::gateway_test::GatewayReport;
use fedgate_model::probe::{CertificateInfo, Report, Step, Verdict};
use fedgate_model::{Domain, InvalidValue};
use fedgate_pwsh::{Command, Statement, Value, bind};
use fedgate_store::StoreUrl;

use crate::cli::{GatewayAction, PartnerAction, TopCommand};
use crate::engine::CliError;
use crate::output::OutputFormat;
use crate::specs::{TEST_GATEWAY, TEST_PARTNER};

/// How long the check that a gateway listens here may take.
const LISTENER_CHECK: Duration = Duration::from_secs(2);

/// The partner test or the gateway test when `command` is one (`Test-CsXmppAllowedPartner …`
/// or `Test-CsXmppGatewayConfiguration …` alone, `partner test`, `gateway test`); any other
/// command is given back.
pub fn intercept(
    command: TopCommand,
    config: Option<&Path>,
    store: Option<&str>,
    format: OutputFormat,
) -> Result<ExitCode, Box<TopCommand>> {
    let is_test = |name: &str| {
        [TEST_PARTNER.name, TEST_GATEWAY.name]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n))
    };
    let cmdlet = match command {
        TopCommand::Cmdlet(ref argv) => match fedgate_pwsh::parse_argv(argv) {
            Ok(Statement::Pipeline { commands, .. })
                if commands.len() == 1 && is_test(&commands[0].name) =>
            {
                commands.into_iter().next()
            }
            _ => return Err(Box::new(command)),
        },
        TopCommand::Partner {
            action: PartnerAction::Test { .. },
        }
        | TopCommand::Gateway {
            action: GatewayAction::Test { .. },
        } => crate::cli::test_cmdlet(&command),
        other => return Err(Box::new(other)),
    };
    Ok(match cmdlet {
        Some(c) if c.name.eq_ignore_ascii_case(TEST_GATEWAY.name) => {
            run_gateway(&c, config, store, format)
        }
        Some(c) => run(&c, config, store, format),
        None => ExitCode::from(2),
    })
}

fn usage(command: &str, error: InvalidValue) -> ExitCode {
    eprintln!(
        "{}",
        CliError::Invalid {
            command: command.into(),
            error,
        }
    );
    ExitCode::from(2)
}

fn failed(command: &str, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("{command} : {message}");
    ExitCode::from(1)
}

/// `command` bound to `spec`, or the binding error printed (exit code 2).
fn bind_or_usage(
    command: &Command,
    spec: &fedgate_pwsh::CmdletSpec,
) -> Result<fedgate_pwsh::BoundArgs, ExitCode> {
    bind(command, spec).map_err(|error| {
        eprintln!(
            "{}",
            CliError::Bind {
                command: spec.name.into(),
                error,
            }
        );
        ExitCode::from(2)
    })
}

/// The gateway's configuration (`--store` applied) and a runtime to run its probe in; else
/// what was printed and the exit code.
fn prepare(
    name: &str,
    config: Option<&Path>,
    store: Option<&str>,
) -> Result<(fedgate_config::Config, tokio::runtime::Runtime), ExitCode> {
    let Some(config_path) = config else {
        eprintln!(
            "{name} : the test runs from the gateway's point of view and needs its configuration: --config <FILE> (or FEDGATE_CONFIG)."
        );
        return Err(ExitCode::from(2));
    };
    let mut config = fedgate_config::Config::load(config_path).map_err(|e| failed(name, e))?;
    if let Some(url) = store {
        config.store = StoreUrl::parse(url).map_err(|e| failed(name, e))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| failed(name, format!("cannot start the async runtime: {e}")))?;
    Ok((config, runtime))
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
    let name = TEST_PARTNER.name;
    let bound = match bind_or_usage(command, &TEST_PARTNER) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let (domain, listed_only) = match target(&bound) {
        Ok(t) => t,
        Err(e) => return usage(name, e),
    };
    let from = match text(&bound, "From") {
        Ok(f) => f,
        Err(e) => return usage(name, e),
    };
    let (config, runtime) = match prepare(name, config, store) {
        Ok(x) => x,
        Err(code) => return code,
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
        } else if let Some(addr) = not_answering(external).await {
            Callback::NotAnswered(format!(
                "no gateway answers on its external listener {addr} here to confirm the key when the partner calls back; start fedgate serve, or run the test from the panel or the REST API"
            ))
        } else {
            Callback::Answered
        };
        Ok(probe::test_partner(&shared, &domain, &from, callback).await)
    });
    let report = match report {
        Ok(r) => r,
        Err(Stop::Usage(e)) => return usage(name, e),
        Err(Stop::Failed(e)) => return failed(name, e),
    };
    print(&report, format);
    exit_code(report.verdict)
}

/// Run the gateway test for a bound `Test-CsXmppGatewayConfiguration` command and print the
/// report.
pub fn run_gateway(
    command: &Command,
    config: Option<&Path>,
    store: Option<&str>,
    format: OutputFormat,
) -> ExitCode {
    let name = TEST_GATEWAY.name;
    let bound = match bind_or_usage(command, &TEST_GATEWAY) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let domain = match text(&bound, "Domain") {
        Ok(d) => d,
        Err(e) => return usage(name, e),
    };
    let (config, runtime) = match prepare(name, config, store) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let report = runtime.block_on(async {
        let listeners = probe::listeners(config.external_listen, config.direct_tls_listen);
        let shared = fedgate_gateway::runtime::offline(config)
            .await
            .map_err(|e| Stop::Failed(format!("{e:#}")))?;
        if let Some(addr) = not_answering(listeners[0].addr).await {
            eprintln!(
                "{name} : no gateway answers on its external listener {addr} here, so the listener steps fail; start fedgate serve, or run the test from the panel or the REST API (POST /api/v1/gateway-configuration/test) of the running gateway."
            );
        }
        probe::test_gateway(&shared, &listeners, domain.as_deref())
            .await
            .map_err(Stop::Usage)
    });
    let report = match report {
        Ok(r) => r,
        Err(Stop::Usage(e)) => return usage(name, e),
        Err(Stop::Failed(e)) => return failed(name, e),
    };
    print_gateway(&report, format);
    exit_code(report.verdict)
}

fn exit_code(verdict: Verdict) -> ExitCode {
    match verdict {
        Verdict::Ok | Verdict::Warning => ExitCode::SUCCESS,
        Verdict::Fail => ExitCode::from(1),
    }
}

/// `None` when a gateway answers on external listener `listen` here (an unspecified address is
/// asked on loopback); else the address asked.
async fn not_answering(listen: std::net::SocketAddr) -> Option<std::net::SocketAddr> {
    let addr = probe::reachable(listen);
    match tokio::time::timeout(LISTENER_CHECK, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => None,
        _ => Some(addr),
    }
}

/// The report as JSON (one object) or as PowerShell-style lines: the summary, then each step.
fn print(report: &Report, format: OutputFormat) {
    if format == OutputFormat::Json {
        print_json(TEST_PARTNER.name, report);
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
    put_certificate(&mut put, report.certificate.as_ref());
    put("Problems", report.problems.clone().into());
    print_list(summary, &report.steps);
}

/// The gateway report as JSON (one object: Verdict, Listeners, Domains) or, per domain, its
/// summary and steps, then the overall verdict.
fn print_gateway(report: &GatewayReport, format: OutputFormat) {
    if format == OutputFormat::Json {
        print_json(TEST_GATEWAY.name, report);
        return;
    }
    for d in &report.domains {
        let mut summary = serde_json::Map::new();
        let mut put = |k: &str, v: serde_json::Value| {
            summary.insert(k.to_owned(), v);
        };
        put("Domain", d.domain.clone().into());
        put("Verdict", format!("{:?}", d.verdict).into());
        put_certificate(&mut put, d.certificate.as_ref());
        put(
            "TrustAnchor",
            d.trust_anchor
                .clone()
                .unwrap_or_else(|| "none".into())
                .into(),
        );
        put("Problems", d.problems.clone().into());
        print_list(summary, &d.steps);
        println!();
    }
    println!("Listeners : {}", report.listeners.join(", "));
    println!("Verdict   : {:?}", report.verdict);
}

fn print_json(name: &str, report: &impl serde::Serialize) {
    match serde_json::to_string_pretty(report) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("{name} : {e}"),
    }
}

/// The certificate's fields into a summary.
fn put_certificate(put: &mut impl FnMut(&str, serde_json::Value), c: Option<&CertificateInfo>) {
    if let Some(c) = c {
        put("Subject", c.subject.clone().into());
        put("DnsNames", c.dns_names.clone().into());
        put("XmppAddrs", c.xmpp_addrs.clone().into());
        put("Issuer", c.issuer.clone().into());
        put("NotAfter", c.not_after.clone().into());
        put("Trusted", c.trusted.into());
        put("ValidForDomain", c.valid_for_domain.into());
        put("ExtendedKeyUsage", c.extended_key_usage.clone().into());
    }
}

/// A summary as a PowerShell-style list, then one line per step.
fn print_list(summary: serde_json::Map<String, serde_json::Value>, steps: &[Step]) {
    print!(
        "{}",
        crate::output::format_list(&serde_json::Value::Object(summary))
    );
    println!();
    for s in steps {
        let mark = match s.ok {
            Some(true) => "ok  ",
            Some(false) => "FAIL",
            None => "--  ",
        };
        println!("{mark} {:<14} {:>6} ms  {}", s.step, s.ms, s.detail);
    }
}
