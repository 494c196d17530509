//! The semantics of fedgate's management commands, shared by the CLI and the REST API.
//!
//! A [`Manager`] runs one command against a [`Store`]: it validates with the model's rules, checks
//! what the store alone cannot (hosted domains, predicted conflicts for `-WhatIf`), writes with an
//! audit entry, and returns what happened. It never prints: the faces decide how to show results.
//!
//! - [`fields`] — the settable fields' table (name, type, flag, default, range, help).
//! - [`params`] — untyped parameter values → typed changes, with one set of error texts.
//! - [`partners`] — New/Get/Set/Remove-CsXmppAllowedPartner.
//! - [`policies`] — New/Get/Set/Remove/Grant-CsExternalAccessPolicy.
//! - [`gateway`] — Get/Set-CsXmppGatewayConfiguration.
//! - [`request`] — one typed [`Request`] per command and [`Manager::execute`], which runs it.
//! - [`formats`] — the files an SfB shell exports (CliXML, CSV, JSON): read into records, written
//!   from partners.
//! - [`tokens`] — API tokens: making, hashing, revoking, and checking a request's token and role.
//! - [`live`] — what a running gateway offers the admin side (streams, metrics, tests).
//! - [`status`] — the `fedgate status` client: `/status` of a running gateway's metrics listener
//!   fetched and shown as tables, and the pool's nodes as the store lists them.
//! - [`import`] — `fedgate import` / Import-CsXmppAllowedPartner (all or nothing, what-if, audited
//!   with the file name) and `fedgate export`.

#![forbid(unsafe_code)]

pub mod fields;
pub mod formats;
pub mod gateway;
pub mod import;
pub mod live;
pub mod params;
pub mod partners;
pub mod policies;
pub mod request;
pub mod status;
pub mod tokens;

use fedgate_model::{Domain, InvalidValue};
use fedgate_store::{AuditContext, Store, StoreError};

pub use params::ParamValue;
pub use request::{Request, RequestError, Response};

/// Whether a command writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Write the change.
    Commit,
    /// `-WhatIf`: check everything, say what would happen, write nothing.
    WhatIf,
    /// `-InMemory` (New only): build and return the object, write nothing.
    InMemory,
}

/// What a write command did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome<T> {
    /// The record after the command (for Remove: the record removed).
    pub value: T,
    /// Its stored version after the command (0 when nothing was written).
    pub version: u64,
    /// Non-fatal warnings (e.g. the TLS × SASL × Dialback warnings).
    pub warnings: Vec<String>,
    /// For `-WhatIf`: the sentence describing what would have happened.
    pub what_if: Option<String>,
}

/// Why a command failed. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// A parameter value is not acceptable (names the parameter and the allowed values).
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Refused(String),
}

impl ManageError {
    /// The parameter at fault, if the error is about one value.
    pub fn parameter(&self) -> Option<&str> {
        match self {
            ManageError::Invalid(e) => Some(&e.parameter),
            _ => None,
        }
    }
}

/// Runs management commands for one actor against one store.
pub struct Manager<'a> {
    store: &'a dyn Store,
    actor: String,
    hosted_domains: Vec<Domain>,
}

impl<'a> Manager<'a> {
    /// `actor` is recorded in the audit log (`cli:alice`, `token:ops`).
    pub fn new(store: &'a dyn Store, actor: impl Into<String>) -> Self {
        Manager {
            store,
            actor: actor.into(),
            hosted_domains: Vec::new(),
        }
    }

    /// The gateway's own hosted domains: no partner may claim them.
    pub fn with_hosted_domains(mut self, domains: Vec<Domain>) -> Self {
        self.hosted_domains = domains;
        self
    }

    pub fn store(&self) -> &dyn Store {
        self.store
    }

    fn audit(&self, command: &str) -> AuditContext {
        AuditContext {
            actor: self.actor.clone(),
            command: command.to_owned(),
        }
    }
}

/// How many times a read-modify-write is retried when another writer changed the record between
/// the read and the write (optimistic concurrency; the store refuses stale writes).
pub const MAX_WRITE_ATTEMPTS: u32 = 64;

/// Wait a little before retry `attempt` (1-based): grows to ~20 ms, with jitter so that competing
/// writers fall out of step.
pub fn retry_backoff(attempt: u32) {
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % 5_000_000)
        .unwrap_or(0);
    let base = 1_000_000 * attempt.min(15);
    std::thread::sleep(std::time::Duration::from_nanos(u64::from(base + jitter)));
}

/// The `-WhatIf` sentence, as PowerShell words it.
pub fn what_if_text(command: &str, target: &str) -> String {
    format!("What if: Performing the operation \"{command}\" on target \"{target}\".")
}
