//! `fedgate store copy <FROM> <TO> [--force]`: every record of one store copied into another
//! ([`fedgate_store::copy()`]), e.g. a single node's SQLite file into a pool's PostgreSQL database.
//! Prints how many records of each kind were copied; store URLs are shown with their passwords
//! masked, and no secret (dialback secret, token hashes) is ever printed.

use std::process::ExitCode;

use fedgate_store::{AuditContext, StoreUrl};
use serde_json::{Value, json};

use crate::cli::StoreAction;
use crate::output::OutputFormat;

/// The command as the target's audit log records it.
const COMMAND: &str = "fedgate store copy";

pub fn run(action: StoreAction, format: OutputFormat) -> ExitCode {
    let StoreAction::Copy { from, to, force } = action;
    let from = match parse(&from, "FROM") {
        Ok(url) => url,
        Err(code) => return code,
    };
    let to = match parse(&to, "TO") {
        Ok(url) => url,
        Err(code) => return code,
    };
    if same_store(&from, &to) {
        eprintln!("error: <FROM> and <TO> are the same store ({from}); name two different stores.");
        return ExitCode::from(2);
    }
    // Opening an SQLite path creates the file: a mistyped source would be copied as empty.
    if let StoreUrl::Sqlite(path) = &from {
        if !path.exists() {
            eprintln!("fedgate store copy: the store to copy from, {from}, does not exist.");
            return ExitCode::from(1);
        }
    }
    let source = match fedgate_store::open(&from) {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot open the store to copy from ({from}): {e}")),
    };
    let target = match fedgate_store::open(&to) {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot open the store to copy into ({to}): {e}")),
    };
    let audit = AuditContext {
        actor: crate::actor(),
        command: COMMAND.into(),
    };
    match fedgate_store::copy(source.as_ref(), target.as_ref(), force, &audit) {
        Ok(summary) => {
            match format {
                OutputFormat::Json => {
                    let mut object = json!({"From": from.to_string(), "To": to.to_string()});
                    if let (Some(map), Value::Object(counts)) =
                        (object.as_object_mut(), json!(summary))
                    {
                        map.extend(counts);
                    }
                    println!("{object}");
                }
                OutputFormat::List => {
                    println!("copied {summary} from {from} to {to}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!("copying {from} into {to} failed: {e}")),
    }
}

fn parse(text: &str, name: &str) -> Result<StoreUrl, ExitCode> {
    StoreUrl::parse(text).map_err(|e| {
        eprintln!("error: invalid value for '<{name}>': {e}");
        ExitCode::from(2)
    })
}

fn fail(message: &str) -> ExitCode {
    eprintln!("fedgate store copy: {message}");
    ExitCode::from(1)
}

/// Whether both URLs name one store: one SQLite file (however its path is spelt), or one
/// database of one PostgreSQL server.
fn same_store(a: &StoreUrl, b: &StoreUrl) -> bool {
    match (a, b) {
        (StoreUrl::Sqlite(a), StoreUrl::Sqlite(b)) => {
            a == b
                || matches!(
                    (std::fs::canonicalize(a), std::fs::canonicalize(b)),
                    (Ok(a), Ok(b)) if a == b
                )
        }
        (StoreUrl::Postgres(a), StoreUrl::Postgres(b)) => {
            a.host.eq_ignore_ascii_case(&b.host) && a.port == b.port && a.database == b.database
        }
        _ => false,
    }
}
