//! The `fedgate` binary: parses the command line and [`run`] composes the parts: the commands
//! that need neither store nor config (init, man pages, completions), the gateway's
//! ([`gateway_cmd`]: serve with fedgate-admin as its [`control`] plane, config check, status),
//! `store copy`, and the management commands over the store ([`managed`]). Kept thin: everything
//! it calls lives in a module or crate of its own.

#![forbid(unsafe_code)]
// The CLI's doc comments are its `--help` text (clap), written for a terminal: `<path>`,
// `[[hosted_domain]]` and `host:port` there are literal text, not HTML or links.
#![allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]

mod binder;
mod cli;
mod control;
mod engine;
mod export_cmd;
mod gateway_cmd;
mod gen_docs;
mod init;
mod managed;
mod output;
mod partner_test;
mod shell;
mod specs;
mod store_cmd;
mod token_cmd;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, TopCommand};

fn main() -> ExitCode {
    run(Cli::parse())
}

/// Run one command line: the commands that need neither store nor config, the gateway's, `store
/// copy`, and then the management commands over the store.
fn run(cli: Cli) -> ExitCode {
    let Some(command) = cli.command else {
        use clap::CommandFactory;
        let _ = Cli::command().print_help();
        return ExitCode::from(2);
    };
    // `init` writes the config and creates the store it names; the man pages and completions
    // come from the CLI definition alone: no store, no config.
    let command = match command {
        TopCommand::Init(args) => {
            return init::run(args, cli.store.as_deref(), cli.config.as_deref());
        }
        TopCommand::GenerateMan { dir } => return gen_docs::man(&dir),
        TopCommand::GenerateCompletions { shell } => return gen_docs::completions(shell),
        other => other,
    };
    // The gateway runtime's subcommands need no store of their own (serve opens the config's).
    let command = match gateway_cmd::intercept(
        command,
        cli.store.as_deref(),
        cli.config.as_deref(),
        cli.output,
    ) {
        Ok(code) => return code,
        Err(other) => *other,
    };
    // `store copy` opens the two stores it names, not --store.
    let command = match command {
        TopCommand::Store { action } => return store_cmd::run(action, cli.output),
        other => other,
    };
    managed::run(command, cli.store, cli.config, cli.output)
}

/// Who is running the CLI, for the audit log.
pub(crate) fn actor() -> String {
    let user = ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .or_else(user_from_uid)
        .unwrap_or_else(|| "unknown".into());
    format!("cli:{user}")
}

/// The login name of this process's user, from /etc/passwd (for when $USER is not set).
#[cfg(unix)]
fn user_from_uid() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_owned())
    })
}

#[cfg(not(unix))]
fn user_from_uid() -> Option<String> {
    None
}
