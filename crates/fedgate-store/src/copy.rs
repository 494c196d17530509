//! Copying a whole store into another (`fedgate store copy <FROM> <TO>`), e.g. a single node's
//! SQLite file into the PostgreSQL database of a pool, or back.
//!
//! [`Store::dump`] reads every record of a store in one snapshot into a [`StoreDump`] (plain rows,
//! backend-neutral); [`Store::restore`] writes one into a store in one transaction, all or
//! nothing, after checking that the target holds nothing an admin wrote (else
//! [`StoreError::NotEmpty`], unless `force`: then the target's records are replaced). [`copy`] is
//! the two together.
//!
//! What is copied as stored: partners and policies with their versions, grants, the gateway
//! configuration (the dialback secret included), PublicUnverified authorisations with their
//! `since`, partner health, API tokens by their hashes (never needing the tokens) with their
//! creation times, and the audit log with each entry's original time, actor, command, target and
//! before/after texts, in its order (ids are handed out anew by the target). The restore adds one
//! audit entry of its own (target [`COPY_TARGET`]), so the target's revision moves past anything
//! it had before and running gateways reload (PostgreSQL also announces the change).

use std::fmt;

use fedgate_model::{ExternalAccessPolicy, UserJid, XmppAllowedPartner, XmppGatewayConfiguration};
use serde::Serialize;

use crate::{AuditContext, Authorisation, Store, StoreError, TokenRole, Versioned};

/// The audit-log target of the entry a restore writes.
pub const COPY_TARGET: &str = "store";

/// Every record of a store, as [`Store::dump`] read it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreDump {
    /// Where it was read from, as errors and the audit log show it (passwords masked).
    pub source: String,
    /// By Identity, with their versions.
    pub partners: Vec<Versioned<XmppAllowedPartner>>,
    /// The stored policies only (a Global policy never written is not one), with their versions.
    pub policies: Vec<Versioned<ExternalAccessPolicy>>,
    /// (user, tag policy name), by user.
    pub grants: Vec<(UserJid, String)>,
    pub gateway_configuration: XmppGatewayConfiguration,
    /// By local then remote user.
    pub authorisations: Vec<Authorisation>,
    /// `(partner, direction, JSON)` as [`Store::partner_health`].
    pub partner_health: Vec<(String, String, String)>,
    /// Oldest first.
    pub audit_log: Vec<AuditRecord>,
    /// By name.
    pub tokens: Vec<TokenRecord>,
}

/// An audit-log entry as stored (its `before`/`after` texts unparsed), without its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// UTC, RFC 3339.
    pub time: String,
    pub actor: String,
    pub command: String,
    pub target: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// An API token as stored: its hash, never the token. `Debug` does not show the hash.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub name: String,
    pub role: TokenRole,
    /// Hex SHA-256 of the token's text.
    pub hash: String,
    /// UTC, RFC 3339.
    pub created: String,
}

impl fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRecord")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("hash", &"********")
            .field("created", &self.created)
            .finish()
    }
}

/// How many records of each kind: what a copy wrote, or what a target already holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RecordCounts {
    pub partners: u64,
    pub policies: u64,
    pub grants: u64,
    /// 1 for a gateway configuration other than the defaults, else 0.
    pub gateway_configurations: u64,
    pub authorisations: u64,
    pub partner_health: u64,
    pub audit_entries: u64,
    pub tokens: u64,
}

/// What [`copy`] wrote.
pub type CopySummary = RecordCounts;

impl RecordCounts {
    /// Whether there is nothing an admin or a user wrote (partner health, which a gateway
    /// records by itself, does not count).
    pub fn is_empty(&self) -> bool {
        RecordCounts {
            partner_health: 0,
            ..*self
        } == RecordCounts::default()
    }

    /// Each kind with its count, in the order they are shown.
    fn kinds(&self) -> [(u64, &'static str, &'static str); 8] {
        [
            (self.partners, "partner", "partners"),
            (self.policies, "policy", "policies"),
            (self.grants, "grant", "grants"),
            (
                self.gateway_configurations,
                "gateway configuration",
                "gateway configurations",
            ),
            (self.authorisations, "authorisation", "authorisations"),
            (
                self.partner_health,
                "partner health record",
                "partner health records",
            ),
            (self.audit_entries, "audit entry", "audit entries"),
            (self.tokens, "token", "tokens"),
        ]
    }

    /// The kinds with a count other than 0, e.g. `2 partners, 1 token` (for the refusal).
    pub fn present(&self) -> String {
        let parts: Vec<String> = self
            .kinds()
            .into_iter()
            .filter(|(n, ..)| *n > 0)
            .map(|(n, one, many)| format!("{n} {}", if n == 1 { one } else { many }))
            .collect();
        parts.join(", ")
    }
}

/// Every kind, e.g. `12 partners, 3 policies, …, 2 tokens` (for the summary).
impl fmt::Display for RecordCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .kinds()
            .into_iter()
            .map(|(n, one, many)| format!("{n} {}", if n == 1 { one } else { many }))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

impl StoreDump {
    /// How many records of each kind it holds (the gateway configuration counts when it is not
    /// the defaults: only then does the restore write it).
    pub fn counts(&self) -> RecordCounts {
        let n = |len: usize| len as u64;
        RecordCounts {
            partners: n(self.partners.len()),
            policies: n(self.policies.len()),
            grants: n(self.grants.len()),
            gateway_configurations: u64::from(
                self.gateway_configuration != XmppGatewayConfiguration::default(),
            ),
            authorisations: n(self.authorisations.len()),
            partner_health: n(self.partner_health.len()),
            audit_entries: n(self.audit_log.len()),
            tokens: n(self.tokens.len()),
        }
    }

    /// The `after` text of the audit entry the restore writes: where from and how many of each.
    pub(crate) fn audit_json(&self) -> String {
        let mut value = serde_json::to_value(self.counts()).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.insert("From".into(), self.source.clone().into());
        }
        value.to_string()
    }
}

/// The target's contents that a restore may replace only with `force`.
pub(crate) fn refuse_unless_empty(
    path: &str,
    found: RecordCounts,
    force: bool,
) -> Result<(), StoreError> {
    if force || found.is_empty() {
        return Ok(());
    }
    Err(StoreError::NotEmpty {
        path: path.to_owned(),
        contents: found.present(),
    })
}

/// What a target holds, counted in one query (the same SQL on both backends); the gateway
/// configuration is judged separately (its rows against the defaults).
pub(crate) const COUNT_SQL: &str = "SELECT (SELECT count(*) FROM partners), \
     (SELECT count(*) FROM policies), (SELECT count(*) FROM policy_grants), \
     (SELECT count(*) FROM authorisations), (SELECT count(*) FROM partner_health), \
     (SELECT count(*) FROM audit_log), (SELECT count(*) FROM api_tokens)";

/// [`COUNT_SQL`]'s columns and whether the configuration is not the defaults, as counts.
pub(crate) fn counts_from(columns: [i64; 7], configured: bool) -> RecordCounts {
    let [
        partners,
        policies,
        grants,
        authorisations,
        health,
        audit,
        tokens,
    ] = columns.map(|n| n.max(0) as u64);
    RecordCounts {
        partners,
        policies,
        grants,
        gateway_configurations: u64::from(configured),
        authorisations,
        partner_health: health,
        audit_entries: audit,
        tokens,
    }
}

/// Whether a target's `gateway_settings` rows make a configuration other than the defaults
/// (settings that cannot be read are not the defaults either).
pub(crate) fn is_configured(path: &str, settings: Vec<(String, String)>) -> bool {
    crate::records::configuration_from_rows(path, settings)
        .map_or(true, |c| c != XmppGatewayConfiguration::default())
}

/// Empty a target before a restore (the domains before the partners they belong to).
pub(crate) const CLEAR_SQL: &[&str] = &[
    "DELETE FROM partner_domains",
    "DELETE FROM partners",
    "DELETE FROM policies",
    "DELETE FROM policy_grants",
    "DELETE FROM gateway_settings",
    "DELETE FROM authorisations",
    "DELETE FROM partner_health",
    "DELETE FROM audit_log",
    "DELETE FROM api_tokens",
];

/// Copy every record of `from` into `to` in one transaction of `to`; refused if `to` is not
/// empty unless `force` (then its records are replaced). `audit` is who copies, for the entry
/// the copy adds to `to`'s audit log. Returns how many records of each kind were copied.
pub fn copy(
    from: &dyn Store,
    to: &dyn Store,
    force: bool,
    audit: &AuditContext,
) -> Result<CopySummary, StoreError> {
    let dump = from.dump()?;
    to.restore(&dump, force, audit)?;
    Ok(dump.counts())
}
