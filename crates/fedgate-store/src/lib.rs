//! fedgate's persistent store.
//!
//! [`Store`] is the small interface every caller uses (CLI, REST API, gateway); [`SqliteStore`] is
//! the embedded default, [`PostgresStore`] the one several gateway nodes share. Every write runs in one transaction together with its audit-log entry, so a
//! change and its audit record are never separated. Versions on records give optimistic
//! concurrency; [`Store::revision`] lets a running gateway notice changes made by other processes,
//! and [`Store::watch`] (PostgreSQL) tells it as soon as one is committed.
//! API tokens for the REST API are kept as hashes only ([`TokenInfo`] never carries one).
//!
//! - [`url`] — the `--store` URL (`sqlite:<path>`, `postgres://…`).
//! - [`cluster`] — node heartbeats and stream leases of a pool (cluster-wide connection limits).
//! - [`copy()`] — a whole store into another ([`Store::dump`], [`Store::restore`]).
//! - [`schema`] — versioned migrations.
//! - [`sqlite`] — the SQLite backend.
//! - [`pg`] — the PostgreSQL backend.
//! - `writes` — the record writes (versioned create/update/delete, settings, grants, tokens,
//!   import) written once over both backends' transactions; `records` — their shared rows.

#![forbid(unsafe_code)]

pub mod cluster;
pub mod copy;
pub mod pg;
mod records;
pub mod schema;
pub mod sqlite;
pub mod url;
mod writes;

use fedgate_model::enforce::{ConnectionCounts, Refusal};
use fedgate_model::{
    Domain, ExternalAccessPolicy, PolicyScope, UserJid, XmppAllowedPartner,
    XmppGatewayConfiguration,
};
use serde::Serialize;
use std::time::Duration;

pub use cluster::{NodeHeartbeat, NodeStatus, StreamLease};
pub use copy::{AuditRecord, CopySummary, RecordCounts, StoreDump, TokenRecord, copy};
pub use pg::PostgresStore;
pub use sqlite::SqliteStore;
pub use url::{PostgresUrl, StoreUrl};

/// A record with the version it was read at (for ETag / If-Match and safe read-modify-write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

/// What one import writes in one transaction (all or nothing): each partner and policy created
/// (`None`) or replaced if still at the version it was read at (`Some`), and the gateway-wide
/// settings; one audit entry per record, all with the import's [`AuditContext`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportBatch {
    pub partners: Vec<(XmppAllowedPartner, Option<u64>)>,
    pub policies: Vec<(ExternalAccessPolicy, Option<u64>)>,
    pub gateway: Option<XmppGatewayConfiguration>,
}

impl ImportBatch {
    /// Whether nothing would be written.
    pub fn is_empty(&self) -> bool {
        self.partners.is_empty() && self.policies.is_empty() && self.gateway.is_none()
    }
}

/// Who makes a change and with which command, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditContext {
    /// e.g. `cli:alice` or `token:ops-admin`.
    pub actor: String,
    /// The command as given, e.g. `Set-CsXmppAllowedPartner`.
    pub command: String,
}

/// One audit-log entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuditEntry {
    pub id: u64,
    /// UTC, RFC 3339.
    pub time: String,
    pub actor: String,
    pub command: String,
    /// The record changed: a partner's Identity, a policy's Identity, a user, or `Global`.
    pub target: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// Which audit entries to read.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only entries whose target is this (exact, case-insensitive).
    pub target: Option<String>,
    /// Only entries with an id greater than this.
    pub after_id: Option<u64>,
    /// Newest entries, at most this many (default 100).
    pub limit: Option<u32>,
}

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenRole {
    /// Read and change everything.
    Admin,
    /// Read only.
    Reader,
}

impl TokenRole {
    /// The stored and typed name: `admin` or `reader`.
    pub fn name(self) -> &'static str {
        match self {
            TokenRole::Admin => "admin",
            TokenRole::Reader => "reader",
        }
    }

    /// Parse `admin` or `reader` (case-insensitive).
    pub fn parse(text: &str) -> Option<TokenRole> {
        match text.trim().to_ascii_lowercase().as_str() {
            "admin" => Some(TokenRole::Admin),
            "reader" => Some(TokenRole::Reader),
            _ => None,
        }
    }
}

impl std::fmt::Display for TokenRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An API token as listed: never its hash, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TokenInfo {
    pub name: String,
    pub role: TokenRole,
    /// UTC, RFC 3339.
    pub created: String,
}

/// A local user's authorisation of a remote user (PublicUnverified partners).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Authorisation {
    pub local_user: UserJid,
    pub remote_user: UserJid,
    /// UTC, RFC 3339: when the local user first authorised the remote user.
    pub since: String,
}

/// What can go wrong in the store. Texts are for admins and name the record and the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("A partner with Identity '{0}' already exists.")]
    PartnerExists(Domain),
    #[error("Cannot find a partner with Identity '{0}'.")]
    PartnerNotFound(Domain),
    #[error("The domain '{domain}' already belongs to the partner '{owner}'.")]
    DomainTaken { domain: String, owner: Domain },
    #[error("A policy with Identity '{0}' already exists.")]
    PolicyExists(PolicyScope),
    #[error("Cannot find a policy with Identity '{0}'.")]
    PolicyNotFound(PolicyScope),
    #[error(
        "The record '{target}' was changed by someone else (version {expected} expected, {found} found); read it again and retry."
    )]
    Conflict {
        target: String,
        expected: u64,
        found: u64,
    },
    #[error("An API token named '{0}' already exists.")]
    TokenExists(String),
    #[error("Cannot find an API token named '{0}'.")]
    TokenNotFound(String),
    #[error("{0}")]
    Url(String),
    #[error("The store '{path}' is not a fedgate database or is damaged: {reason}")]
    Corrupt { path: String, reason: String },
    #[error(
        "The store '{path}' has schema version {found}, newer than this fedgate supports ({supported}); upgrade fedgate."
    )]
    NewerSchema {
        path: String,
        found: i64,
        supported: i64,
    },
    #[error("The store '{path}' cannot be opened or written: {reason}")]
    Access { path: String, reason: String },
    #[error("The store '{path}' failed: {reason}")]
    Database { path: String, reason: String },
    #[error(
        "The node '{0}' has no heartbeat within the lease time, so its stream leases would not count: it cannot take one (is its heartbeat running?)."
    )]
    NodeNotAlive(String),
    #[error(
        "The store '{path}' is not empty: it holds {contents}. Nothing was written; use --force to replace its contents."
    )]
    NotEmpty { path: String, contents: String },
}

/// What committed changes a [`ChangeWatch`] was told of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    /// Partners, policies, grants, settings or tokens (anything audited: the revision moved).
    pub records: bool,
    /// PublicUnverified authorisations (they do not move the revision).
    pub authorisations: bool,
}

impl Changes {
    pub fn any(self) -> bool {
        self.records || self.authorisations
    }
}

/// A wait for changes committed by any process or node, from [`Store::watch`].
pub trait ChangeWatch: Send {
    /// Block until a change is committed or `timeout` passes; what was announced (nothing on
    /// timeout; announcements that arrived meanwhile are taken together). An error means this
    /// watch is broken (its connection dropped): open a new one. Announcements made while no
    /// watch listens are lost, which is why callers keep checking [`Store::revision`] now and
    /// then as well.
    fn wait(&mut self, timeout: Duration) -> Result<Changes, StoreError>;
}

/// The store interface. Implementations are safe to share between threads and processes.
pub trait Store: Send + Sync {
    /// All partners, ordered by Identity; with `identity_glob`, only those whose Identity matches
    /// the wildcard (`*` any run, `?` one character; case-insensitive).
    fn partners(
        &self,
        identity_glob: Option<&str>,
    ) -> Result<Vec<Versioned<XmppAllowedPartner>>, StoreError>;
    fn partner(
        &self,
        identity: &Domain,
    ) -> Result<Option<Versioned<XmppAllowedPartner>>, StoreError>;
    /// Which partner holds this exact domain or `*.domain` pattern text, if any.
    fn domain_owner(&self, pattern: &str) -> Result<Option<Domain>, StoreError>;
    fn create_partner(
        &self,
        partner: &XmppAllowedPartner,
        audit: &AuditContext,
    ) -> Result<Versioned<XmppAllowedPartner>, StoreError>;
    /// Create many partners in one transaction (all or nothing).
    fn import_partners(
        &self,
        partners: &[XmppAllowedPartner],
        audit: &AuditContext,
    ) -> Result<(), StoreError>;
    /// Write an import's records in one transaction (all or nothing), one audit entry each.
    fn import_records(&self, batch: &ImportBatch, audit: &AuditContext) -> Result<(), StoreError>;
    /// Replace a partner's record if it is still at `expected_version`.
    fn update_partner(
        &self,
        partner: &XmppAllowedPartner,
        expected_version: u64,
        audit: &AuditContext,
    ) -> Result<Versioned<XmppAllowedPartner>, StoreError>;
    /// Delete a partner (if still at `expected_version`, when given); returns what was deleted.
    fn delete_partner(
        &self,
        identity: &Domain,
        expected_version: Option<u64>,
        audit: &AuditContext,
    ) -> Result<XmppAllowedPartner, StoreError>;

    /// All external access policies (Global first, then by Identity). Global is always present.
    fn policies(&self) -> Result<Vec<Versioned<ExternalAccessPolicy>>, StoreError>;
    fn policy(
        &self,
        scope: &PolicyScope,
    ) -> Result<Option<Versioned<ExternalAccessPolicy>>, StoreError>;
    fn create_policy(
        &self,
        policy: &ExternalAccessPolicy,
        audit: &AuditContext,
    ) -> Result<Versioned<ExternalAccessPolicy>, StoreError>;
    /// Replace a policy (Global is created on first write) if still at `expected_version`.
    fn update_policy(
        &self,
        policy: &ExternalAccessPolicy,
        expected_version: u64,
        audit: &AuditContext,
    ) -> Result<Versioned<ExternalAccessPolicy>, StoreError>;
    /// Delete a Site/Tag policy and the grants that name it; for Global, reset it to defaults.
    fn delete_policy(
        &self,
        scope: &PolicyScope,
        audit: &AuditContext,
    ) -> Result<ExternalAccessPolicy, StoreError>;
    /// Every per-user grant: (user, tag policy name).
    fn grants(&self) -> Result<Vec<(UserJid, String)>, StoreError>;
    /// Grant a tag policy to a user, or with `None` remove the user's grant.
    fn grant_policy(
        &self,
        user: &UserJid,
        tag: Option<&str>,
        audit: &AuditContext,
    ) -> Result<(), StoreError>;

    fn gateway_configuration(&self) -> Result<XmppGatewayConfiguration, StoreError>;
    fn set_gateway_configuration(
        &self,
        config: &XmppGatewayConfiguration,
        audit: &AuditContext,
    ) -> Result<(), StoreError>;

    fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;

    /// Store a new API token by the hex SHA-256 `hash` of its text (the text itself is never
    /// stored). Names are unique, compared without case. Audited with target `token:<name>`.
    fn create_token(
        &self,
        name: &str,
        role: TokenRole,
        hash: &str,
        audit: &AuditContext,
    ) -> Result<TokenInfo, StoreError>;
    /// Delete an API token; requests with it fail from then on. Audited.
    fn revoke_token(&self, name: &str, audit: &AuditContext) -> Result<TokenInfo, StoreError>;
    /// Every API token, by name (no hashes).
    fn tokens(&self) -> Result<Vec<TokenInfo>, StoreError>;
    /// The token whose text hashes to `hash`, if it exists (not revoked). Reads are not audited.
    fn token_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>, StoreError>;

    /// Record (`true`) or withdraw (`false`) that `local` authorised `remote` (PublicUnverified
    /// partners: the local user sent subscribe/subscribed, or unsubscribe/unsubscribed). Returns
    /// whether anything changed. These are users' own actions on live traffic, not admin changes:
    /// they are not written to the audit log.
    fn set_authorisation(
        &self,
        local: &UserJid,
        remote: &UserJid,
        authorised: bool,
    ) -> Result<bool, StoreError>;
    /// [`set_authorisation`](Store::set_authorisation) for each (local, remote, authorised) in
    /// order, in one transaction: all are durable when this returns Ok, none when it fails.
    /// Durable across an OS crash or power loss, not only the process's death: SQLite commits
    /// these (and [`set_authorisation`](Store::set_authorisation)) with `synchronous=FULL`, the
    /// WAL fsynced before the commit returns (other writes keep `NORMAL`); PostgreSQL commits
    /// them as every write, with the server's `synchronous_commit` (`on` by default: the WAL is
    /// flushed before the commit returns; fedgate does not change it).
    fn set_authorisations(&self, changes: &[(UserJid, UserJid, bool)]) -> Result<(), StoreError>;
    /// Whether `local` has authorised `remote`.
    fn is_authorised(&self, local: &UserJid, remote: &UserJid) -> Result<bool, StoreError>;
    /// The recorded authorisations, of one local user or of all, ordered by local then remote user.
    fn authorisations(&self, local: Option<&UserJid>) -> Result<Vec<Authorisation>, StoreError>;

    /// A number that grows with every committed change, from any process.
    fn revision(&self) -> Result<u64, StoreError>;

    /// Announcements of committed changes (every write, authorisations included), when the
    /// backend has them: PostgreSQL (LISTEN/NOTIFY on a connection of the watch's own). `None`
    /// for SQLite, whose callers poll [`revision`](Store::revision).
    fn watch(&self) -> Result<Option<Box<dyn ChangeWatch>>, StoreError> {
        Ok(None)
    }
    /// The stored partner health records: `(partner, direction, JSON)` ordered by partner then
    /// direction. Not audited, and not counted by [`revision`](Store::revision).
    fn partner_health(&self) -> Result<Vec<(String, String, String)>, StoreError>;
    /// Store these partner health records (replacing those of the same partner and direction),
    /// in one transaction.
    fn save_partner_health(&self, rows: &[(String, String, String)]) -> Result<(), StoreError>;

    // ---- A pool of nodes (see [`cluster`]): operational state, so none of these is audited,
    // moves the revision, or is announced to watches. ----

    /// Record a node's heartbeat (insert or update its row; the time is the database's), and
    /// delete the leases of nodes silent for more than [`cluster::purge_after`]`(lease_ttl)`
    /// (at most [`cluster::PURGE_BATCH`] per call).
    fn heartbeat(&self, beat: &NodeHeartbeat, lease_ttl: Duration) -> Result<(), StoreError>;
    /// Every node that has sent a heartbeat (and was not forgotten), by name, with whether it is
    /// alive for `lease_ttl`.
    fn nodes(&self, lease_ttl: Duration) -> Result<Vec<NodeStatus>, StoreError>;
    /// Remove a node and its leases (decommissioning); whether it was known. A node that still
    /// runs comes back with its next heartbeat.
    fn forget_node(&self, node: &str) -> Result<bool, StoreError>;
    /// Admit a stream against the cluster-wide limits and record its lease, in one transaction
    /// serialised across the pool: count the leases of alive nodes (for `lease_ttl`) for the
    /// lease's partner and in total, ask `decide` (the gateway passes
    /// [`connection_admission`](fedgate_model::enforce::connection_admission)), and insert the
    /// lease only if it says yes. The inner result is `decide`'s answer. A lease this node
    /// already holds for the stream is admitted again without asking (so a retry after a lost
    /// reply is harmless); `decide` may be asked twice when the connection broke under the first
    /// attempt. Fails with [`StoreError::NodeNotAlive`] when the node's own heartbeat is not
    /// within `lease_ttl` (its leases would not count).
    fn acquire_stream_lease(
        &self,
        lease: &StreamLease,
        lease_ttl: Duration,
        decide: &mut dyn FnMut(ConnectionCounts) -> Result<(), Refusal>,
    ) -> Result<Result<(), Refusal>, StoreError>;
    /// Release one stream's lease (the stream closed); whether it was held.
    fn release_stream_lease(&self, node: &str, stream: u64) -> Result<bool, StoreError>;
    /// Release all of a node's leases (at its start and at its shutdown); how many there were.
    fn release_node_leases(&self, node: &str) -> Result<u64, StoreError>;
    /// Every record, read in one snapshot ([`copy()`]).
    fn dump(&self) -> Result<StoreDump, StoreError>;
    /// Write every record of `dump` in one transaction (all or nothing), plus an audit entry of
    /// the copy by `audit`. Refused with [`StoreError::NotEmpty`] when this store holds any
    /// partner, policy, grant, authorisation, audit entry, token or a gateway configuration other
    /// than the defaults, unless `force`: then all of those (and partner health) are replaced.
    fn restore(
        &self,
        dump: &StoreDump,
        force: bool,
        audit: &AuditContext,
    ) -> Result<(), StoreError>;
}

/// Open the store a URL names (for PostgreSQL, with the password from the environment:
/// [`PostgresUrl::resolve_password`]).
pub fn open(url: &StoreUrl) -> Result<Box<dyn Store>, StoreError> {
    match url {
        StoreUrl::Sqlite(path) => Ok(Box::new(SqliteStore::open(path)?)),
        StoreUrl::Postgres(url) => Ok(Box::new(PostgresStore::open(url)?)),
    }
}
