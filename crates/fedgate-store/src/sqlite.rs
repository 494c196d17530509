//! The SQLite backend: one database file in WAL mode, shared safely by several processes.
//!
//! Writes run in `BEGIN IMMEDIATE` transactions (one writer at a time, others wait up to the busy
//! timeout), check their preconditions inside the transaction and write the audit entry in the same
//! transaction. Domain uniqueness is also a primary key, so no interleaving can give one domain two
//! owners.

use std::path::Path;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use fedgate_model::enforce::{ConnectionCounts, Refusal};
use fedgate_model::{
    Domain, ExternalAccessPolicy, PolicyScope, UserJid, XmppAllowedPartner,
    XmppGatewayConfiguration,
};
use rusqlite::{
    Connection, ErrorCode, OptionalExtension, Row, Transaction, TransactionBehavior, params,
};

use crate::copy::{
    AuditRecord, CLEAR_SQL, COPY_TARGET, COUNT_SQL, RecordCounts, StoreDump, counts_from,
    is_configured, refuse_unless_empty,
};
use crate::records::{
    Column, PartnerRow, PolicyRow, Stored, authorisations_from_rows, configuration_from_rows,
    corrupt, default_global_policy, grant_json, grants_from_rows, parse_pattern, settings_rows,
    to_json, token_from_row, token_record_from_row, with_default_global,
};
use crate::schema::{MIGRATIONS, Migration, current_version};
use crate::writes::{self, AuditTx, GrantsTx, Partners, Policies, RecordTx, SettingsTx, TokensTx};
use crate::{
    AuditContext, AuditEntry, AuditQuery, Authorisation, ImportBatch, NodeHeartbeat, NodeStatus,
    Store, StoreError, StreamLease, TokenInfo, TokenRole, Versioned, cluster,
};

/// How long a writer waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// The embedded SQLite store.
pub struct SqliteStore {
    path: String,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Open (creating if needed, with mode 0600) and migrate the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let display = path.display().to_string();
        let existed = path.exists();
        let conn = Connection::open(path).map_err(|e| map_err(&display, e))?;
        if !existed {
            restrict_permissions(path);
        }
        let store = SqliteStore {
            path: display,
            conn: Mutex::new(conn),
        };
        store.prepare()?;
        Ok(store)
    }

    fn prepare(&self) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let path = self.path.clone();
        let e = |err| map_err(&path, err);
        conn.busy_timeout(BUSY_TIMEOUT).map_err(e)?;
        // Reading the schema version is the first real access: a file that is not a database fails here.
        let found: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(e)?;
        check_version(&path, found)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(e)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Access {
                path: path.clone(),
                reason: format!("cannot switch to WAL journal mode (got '{mode}')"),
            });
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(e)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(e)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e)?;
        // Another process may have migrated while we waited for the lock.
        let found: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(e)?;
        check_version(&path, found)?;
        for (i, step) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
            match step {
                Migration::Sql(sql) => tx.execute_batch(sql),
                Migration::Code(run) => run(&tx),
            }
            .map_err(e)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(e)?;
        }
        tx.commit().map_err(e)?;
        // Fail now, not at the first query, if the file is damaged beyond its header.
        let check: String = conn
            .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
            .map_err(e)?;
        if check != "ok" {
            return Err(StoreError::Corrupt {
                path: path.clone(),
                reason: check,
            });
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable (transactions roll back on drop).
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        f(&self.lock()).map_err(|e| map_err(&self.path, e))
    }

    /// Run `f` in an immediate (write-locked) transaction and commit.
    ///
    /// The connection runs `synchronous=NORMAL`: in WAL mode a commit is appended to the WAL
    /// without an fsync (the WAL is synced at checkpoints), so it survives the process being
    /// killed but an OS crash or power loss may lose the last commits (never corrupting the
    /// file). Admin changes are written this way; see [`write_synced`](Self::write_synced).
    fn write<T>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>, &str) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        immediate(&mut self.lock(), &self.path, f)
    }

    /// [`write`](Self::write) with its commit synced to disk: `synchronous=FULL` for this one
    /// transaction (the WAL is fsynced before the commit returns), so an OS crash or power loss
    /// after it returns Ok cannot lose the change. `synchronous` is a setting of the connection
    /// and cannot change inside a transaction: it is set before `BEGIN` and NORMAL restored after
    /// the commit, both under the connection's lock, so no other write runs with it. Used for
    /// the authorisations a stanza waits for (the gateway forwards it once this returns).
    fn write_synced<T>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>, &str) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| map_err(&self.path, e))?;
        let out = immediate(&mut conn, &self.path, f);
        // Should restoring fail, the connection stays FULL: slower writes, none less durable.
        let _ = conn.pragma_update(None, "synchronous", "NORMAL");
        out
    }
}

/// Run `f` in an immediate (write-locked) transaction on `conn` and commit.
fn immediate<T>(
    conn: &mut Connection,
    path: &str,
    f: impl FnOnce(&mut Transaction<'_>, &str) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| map_err(path, e))?;
    let out = f(&mut tx, path)?;
    tx.commit().map_err(|e| map_err(path, e))?;
    Ok(out)
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    // Best effort: the database holds the dialback secret.
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
fn restrict_permissions(_path: &Path) {}

fn check_version(path: &str, found: i64) -> Result<(), StoreError> {
    crate::records::check_version(path, found, current_version())
}

pub(crate) fn map_err(path: &str, err: rusqlite::Error) -> StoreError {
    let reason = err.to_string();
    let path = path.to_owned();
    match err.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            StoreError::Corrupt { path, reason }
        }
        Some(
            ErrorCode::CannotOpen
            | ErrorCode::ReadOnly
            | ErrorCode::PermissionDenied
            | ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure,
        ) => StoreError::Access { path, reason },
        _ => StoreError::Database { path, reason },
    }
}

fn insert_audit(
    tx: &Transaction<'_>,
    audit: &AuditContext,
    target: &str,
    before: Option<String>,
    after: Option<String>,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO audit_log (actor, command, target, before, after) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![audit.actor, audit.command, target, before, after])?;
    Ok(())
}

/// Turn a user wildcard (`*`, `?`) into an SQLite GLOB pattern matching lowercase identities.
fn glob_pattern(filter: &str) -> String {
    let mut out = String::with_capacity(filter.len());
    for c in filter.to_lowercase().chars() {
        match c {
            '[' => out.push_str("[[]"),
            ']' => out.push_str("[]]"),
            c => out.push(c),
        }
    }
    out
}

/// Rows read by [`PartnerRow::read`] and [`PolicyRow::read`].
impl<T: rusqlite::types::FromSql> Column<T> for Row<'_> {
    fn column(&self, index: usize) -> Result<T, String> {
        self.get(index).map_err(|e| e.to_string())
    }
}

/// A partner column's value, bound by its kind.
impl rusqlite::ToSql for Stored {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Stored::Text(t) => t.to_sql(),
            Stored::OptionalText(t) => t.to_sql(),
            Stored::Bool(b) => b.to_sql(),
            Stored::OptionalInt(n) => n.to_sql(),
        }
    }
}

/// Insert or replace a partner's row and domain rows, checking domain ownership.
fn write_partner(
    tx: &Transaction<'_>,
    path: &str,
    p: &XmppAllowedPartner,
    version: u64,
) -> Result<(), StoreError> {
    let e = |err| map_err(path, err);
    static INSERT: LazyLock<String> = LazyLock::new(|| {
        format!(
            "INSERT OR REPLACE INTO partners ({}) VALUES ({})",
            PartnerRow::column_list(),
            PartnerRow::placeholders(|i| format!("?{i}"))
        )
    });
    tx.prepare_cached(&INSERT)
        .map_err(e)?
        .execute(rusqlite::params_from_iter(PartnerRow::values(p, version)))
        .map_err(e)?;
    tx.prepare_cached("DELETE FROM partner_domains WHERE identity = ?1")
        .map_err(e)?
        .execute([p.identity.as_str()])
        .map_err(e)?;
    for (position, pattern) in p.patterns().enumerate() {
        let text = pattern.to_string();
        if let Some(owner) = owner_in(tx, &text).map_err(e)? {
            return Err(StoreError::DomainTaken {
                domain: text,
                owner,
            });
        }
        tx.prepare_cached(
            "INSERT INTO partner_domains (pattern, identity, position) VALUES (?1, ?2, ?3)",
        )
        .map_err(e)?
        .execute(params![text, p.identity.as_str(), position as i64])
        .map_err(e)?;
    }
    Ok(())
}

fn owner_in(conn: &Connection, pattern: &str) -> rusqlite::Result<Option<Domain>> {
    let owner: Option<String> = conn
        .prepare_cached("SELECT identity FROM partner_domains WHERE pattern = ?1")?
        .query_row([pattern], |r| r.get(0))
        .optional()?;
    Ok(owner.and_then(|o| Domain::parse(&o).ok()))
}

fn load_partner(
    conn: &Connection,
    path: &str,
    identity: &Domain,
) -> Result<Option<Versioned<XmppAllowedPartner>>, StoreError> {
    let e = |err| map_err(path, err);
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {} FROM partners WHERE identity = ?1",
            PartnerRow::column_list()
        ))
        .map_err(e)?;
    let mut rows = stmt.query([identity.as_str()]).map_err(e)?;
    let Some(row) = rows.next().map_err(e)? else {
        return Ok(None);
    };
    let mut partner = PartnerRow::read(path, row)?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT pattern FROM partner_domains WHERE identity = ?1 AND position > 0 ORDER BY position",
        )
        .map_err(e)?;
    let patterns = stmt
        .query_map([identity.as_str()], |r| r.get::<_, String>(0))
        .map_err(e)?;
    for pattern in patterns {
        let text = pattern.map_err(e)?;
        partner
            .value
            .additional_domains
            .push(parse_pattern(path, &text)?);
    }
    Ok(Some(partner))
}

fn load_policy(
    conn: &Connection,
    path: &str,
    scope: &PolicyScope,
) -> Result<Option<Versioned<ExternalAccessPolicy>>, StoreError> {
    let e = |err| map_err(path, err);
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {} FROM policies WHERE key = ?1",
            PolicyRow::COLUMNS
        ))
        .map_err(e)?;
    let mut rows = stmt.query([scope.key()]).map_err(e)?;
    match rows.next().map_err(e)? {
        Some(row) => Ok(Some(PolicyRow::read(path, row)?)),
        None if *scope == PolicyScope::Global => Ok(Some(default_global_policy())),
        None => Ok(None),
    }
}

fn write_policy(
    tx: &Transaction<'_>,
    path: &str,
    p: &ExternalAccessPolicy,
    version: u64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO policies (key, identity, description, enable_federation_access, \
         enable_xmpp_access, enable_outside_access, enable_public_cloud_access, \
         enable_public_cloud_audio_video_access, version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![
            p.identity.key(),
            p.identity.to_string(),
            p.description,
            p.enable_federation_access,
            p.enable_xmpp_access,
            p.enable_outside_access,
            p.enable_public_cloud_access,
            p.enable_public_cloud_audio_video_access,
            version as i64
        ])
    })
    .map(|_| ())
    .map_err(|e| map_err(path, e))
}

/// The record writes ([`writes`]) over a SQLite write transaction.
impl AuditTx for Transaction<'_> {
    fn audit(
        &mut self,
        path: &str,
        audit: &AuditContext,
        target: &str,
        before: Option<String>,
        after: Option<String>,
    ) -> Result<(), StoreError> {
        insert_audit(self, audit, target, before, after).map_err(|e| map_err(path, e))
    }
}

impl SettingsTx for Transaction<'_> {
    fn settings(&mut self, path: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.prepare_cached("SELECT name, value FROM gateway_settings")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()
            })
            .map_err(|e| map_err(path, e))
    }
    fn set_setting(&mut self, path: &str, name: &str, value: &str) -> Result<(), StoreError> {
        self.execute(
            "INSERT OR REPLACE INTO gateway_settings (name, value) VALUES (?1, ?2)",
            params![name, value],
        )
        .map(|_| ())
        .map_err(|e| map_err(path, e))
    }
}

impl GrantsTx for Transaction<'_> {
    fn grant_of(&mut self, path: &str, user: &str) -> Result<Option<String>, StoreError> {
        self.query_row(
            "SELECT tag FROM policy_grants WHERE user_jid = ?1",
            [user],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| map_err(path, e))
    }
    fn set_grant(&mut self, path: &str, user: &str, tag: &str) -> Result<(), StoreError> {
        self.execute(
            "INSERT OR REPLACE INTO policy_grants (user_jid, tag) VALUES (?1, ?2)",
            params![user, tag],
        )
        .map(|_| ())
        .map_err(|e| map_err(path, e))
    }
    fn remove_grant(&mut self, path: &str, user: &str) -> Result<(), StoreError> {
        self.execute("DELETE FROM policy_grants WHERE user_jid = ?1", [user])
            .map(|_| ())
            .map_err(|e| map_err(path, e))
    }
    fn grants_of(
        &mut self,
        path: &str,
        scope: &PolicyScope,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.prepare("SELECT user_jid, tag FROM policy_grants WHERE 'tag:' || lower(tag) = ?1")
            .and_then(|mut s| {
                s.query_map([scope.key()], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(|e| map_err(path, e))
    }
}

impl TokensTx for Transaction<'_> {
    fn token_named(&mut self, path: &str, name: &str) -> Result<Option<TokenInfo>, StoreError> {
        load_token(self, path, "name", name)
    }
    fn insert_token(
        &mut self,
        path: &str,
        name: &str,
        role: TokenRole,
        hash: &str,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO api_tokens (name, role, hash) VALUES (?1, ?2, ?3)",
            params![name, role.name(), hash],
        )
        .map(|_| ())
        .map_err(|e| map_err(path, e))
    }
    fn delete_token(&mut self, path: &str, name: &str) -> Result<(), StoreError> {
        self.execute("DELETE FROM api_tokens WHERE name = ?1", [name])
            .map(|_| ())
            .map_err(|e| map_err(path, e))
    }
}

impl RecordTx<Partners> for Transaction<'_> {
    fn load(
        &mut self,
        path: &str,
        identity: &Domain,
    ) -> Result<Option<Versioned<XmppAllowedPartner>>, StoreError> {
        load_partner(self, path, identity)
    }
    fn store(
        &mut self,
        path: &str,
        p: &XmppAllowedPartner,
        version: u64,
    ) -> Result<(), StoreError> {
        write_partner(self, path, p, version)
    }
    fn remove(&mut self, path: &str, identity: &Domain) -> Result<(), StoreError> {
        let e = |err| map_err(path, err);
        self.execute(
            "DELETE FROM partner_domains WHERE identity = ?1",
            [identity.as_str()],
        )
        .map_err(e)?;
        self.execute(
            "DELETE FROM partners WHERE identity = ?1",
            [identity.as_str()],
        )
        .map_err(e)?;
        Ok(())
    }
}

impl RecordTx<Policies> for Transaction<'_> {
    fn load(
        &mut self,
        path: &str,
        scope: &PolicyScope,
    ) -> Result<Option<Versioned<ExternalAccessPolicy>>, StoreError> {
        load_policy(self, path, scope)
    }
    fn store(
        &mut self,
        path: &str,
        p: &ExternalAccessPolicy,
        version: u64,
    ) -> Result<(), StoreError> {
        write_policy(self, path, p, version)
    }
    fn remove(&mut self, path: &str, scope: &PolicyScope) -> Result<(), StoreError> {
        self.execute("DELETE FROM policies WHERE key = ?1", [scope.key()])
            .map(|_| ())
            .map_err(|e| map_err(path, e))
    }
}

/// Migration 4: before fedgate normalised localparts with nodeprep ([`fedgate_model::jid`]) it
/// only lowercased them, so stored grants and authorisations may be keyed on a spelling
/// (`ａｌｉｃｅ@corp.example`, `al\u{AD}ice@…`) that now names another row's user. Each key is
/// re-parsed and rewritten in its normalised form:
/// - grants: a row already in normal form keeps its user; otherwise the first variant in key
///   order takes the normalised key and later ones are removed; a key that cannot be normalised
///   any more (the gateway refuses such addresses, so it matched no traffic) is removed. Every
///   change is in the audit log (actor `fedgate`), as the admin's own grant changes are.
/// - authorisations (users' own actions, never audited): rows that now coincide are merged,
///   keeping the earliest `since`; rows with an address that cannot be normalised are removed.
pub(crate) fn normalise_stored_user_jids(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let audit = AuditContext {
        actor: "fedgate".into(),
        command: "schema migration 4: user JIDs normalised (nodeprep)".into(),
    };
    let normal = |key: &str| UserJid::parse(key).ok().map(|u| u.to_string());
    let grants: Vec<(String, String)> = tx
        .prepare("SELECT user_jid, tag FROM policy_grants ORDER BY user_jid")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut taken: std::collections::HashSet<String> = grants
        .iter()
        .filter(|(key, _)| normal(key).as_deref() == Some(key.as_str()))
        .map(|(key, _)| key.clone())
        .collect();
    let record = |user: &str, tag: &str| grant_json(user, Some(tag));
    for (key, tag) in &grants {
        let new = normal(key);
        if new.as_deref() == Some(key.as_str()) {
            continue;
        }
        tx.execute("DELETE FROM policy_grants WHERE user_jid = ?1", [key])?;
        insert_audit(tx, &audit, key, record(key, tag), None)?;
        if let Some(new) = new.filter(|n| taken.insert(n.clone())) {
            tx.execute(
                "INSERT INTO policy_grants (user_jid, tag) VALUES (?1, ?2)",
                params![new, tag],
            )?;
            insert_audit(tx, &audit, &new, None, record(&new, tag))?;
        }
    }
    let authorisations: Vec<(String, String, String)> = tx
        .prepare("SELECT local_user, remote_user, since FROM authorisations")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (local, remote, since) in &authorisations {
        let (new_local, new_remote) = (normal(local), normal(remote));
        if new_local.as_deref() == Some(local.as_str())
            && new_remote.as_deref() == Some(remote.as_str())
        {
            continue;
        }
        tx.execute(
            "DELETE FROM authorisations WHERE local_user = ?1 AND remote_user = ?2",
            [local, remote],
        )?;
        if let (Some(l), Some(r)) = (new_local, new_remote) {
            tx.execute(
                "INSERT INTO authorisations (local_user, remote_user, since) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (local_user, remote_user) DO UPDATE SET since = min(since, excluded.since)",
                params![l, r, since],
            )?;
        }
    }
    Ok(())
}

/// The partners whose lowercase Identity matches the GLOB pattern `glob`, by Identity, with their
/// additional domains (run it in a transaction: two queries).
fn list_partners(
    conn: &Connection,
    path: &str,
    glob: &str,
) -> Result<Vec<Versioned<XmppAllowedPartner>>, StoreError> {
    let e = |err| map_err(path, err);
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {} FROM partners WHERE identity GLOB ?1 ORDER BY identity",
            PartnerRow::column_list()
        ))
        .map_err(e)?;
    let mut rows = stmt.query([glob]).map_err(e)?;
    let mut partners = Vec::new();
    let mut slots = std::collections::HashMap::new();
    while let Some(row) = rows.next().map_err(e)? {
        let p = PartnerRow::read(path, row)?;
        slots.insert(p.value.identity.as_str().to_owned(), partners.len());
        partners.push(p);
    }
    let mut stmt = conn
        .prepare_cached(
            "SELECT identity, pattern FROM partner_domains WHERE position > 0 AND identity GLOB ?1 \
             ORDER BY identity, position",
        )
        .map_err(e)?;
    let mut rows = stmt.query([glob]).map_err(e)?;
    while let Some(row) = rows.next().map_err(e)? {
        let identity: String = row.get(0).map_err(e)?;
        let pattern: String = row.get(1).map_err(e)?;
        let slot = *slots.get(&identity).ok_or_else(|| {
            corrupt(
                path,
                format!("domain '{pattern}' of unknown partner '{identity}'"),
            )
        })?;
        partners[slot]
            .value
            .additional_domains
            .push(parse_pattern(path, &pattern)?);
    }
    Ok(partners)
}

/// The stored policies (Global first, then by key; no default Global when none is stored).
fn stored_policies(
    conn: &Connection,
    path: &str,
) -> Result<Vec<Versioned<ExternalAccessPolicy>>, StoreError> {
    let e = |err| map_err(path, err);
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {} FROM policies ORDER BY key != 'global', key",
            PolicyRow::COLUMNS
        ))
        .map_err(e)?;
    let mut rows = stmt.query([]).map_err(e)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(e)? {
        out.push(PolicyRow::read(path, row)?);
    }
    Ok(out)
}

impl Store for SqliteStore {
    fn partners(
        &self,
        identity_glob: Option<&str>,
    ) -> Result<Vec<Versioned<XmppAllowedPartner>>, StoreError> {
        let guard = self.lock();
        // One read transaction: both queries see the same snapshot, whatever other processes
        // commit in between (dropped unfinished: a read-only transaction has nothing to undo).
        let conn = guard
            .unchecked_transaction()
            .map_err(|e| map_err(&self.path, e))?;
        let glob = identity_glob
            .map(glob_pattern)
            .unwrap_or_else(|| "*".to_owned());
        list_partners(&conn, &self.path, &glob)
    }

    fn partner(
        &self,
        identity: &Domain,
    ) -> Result<Option<Versioned<XmppAllowedPartner>>, StoreError> {
        let guard = self.lock();
        // Its row and its domains from one snapshot.
        let tx = guard
            .unchecked_transaction()
            .map_err(|e| map_err(&self.path, e))?;
        load_partner(&tx, &self.path, identity)
    }

    fn domain_owner(&self, pattern: &str) -> Result<Option<Domain>, StoreError> {
        self.read(|c| owner_in(c, pattern))
    }

    fn create_partner(
        &self,
        partner: &XmppAllowedPartner,
        audit: &AuditContext,
    ) -> Result<Versioned<XmppAllowedPartner>, StoreError> {
        self.write(|tx, path| writes::create::<Partners>(tx, path, partner, audit))
    }

    fn import_partners(
        &self,
        partners: &[XmppAllowedPartner],
        audit: &AuditContext,
    ) -> Result<(), StoreError> {
        self.write(|tx, path| {
            for p in partners {
                writes::create::<Partners>(tx, path, p, audit)?;
            }
            Ok(())
        })
    }

    fn update_partner(
        &self,
        partner: &XmppAllowedPartner,
        expected_version: u64,
        audit: &AuditContext,
    ) -> Result<Versioned<XmppAllowedPartner>, StoreError> {
        self.write(|tx, path| {
            writes::update::<Partners>(tx, path, partner, expected_version, audit)
        })
    }

    fn delete_partner(
        &self,
        identity: &Domain,
        expected_version: Option<u64>,
        audit: &AuditContext,
    ) -> Result<XmppAllowedPartner, StoreError> {
        self.write(|tx, path| {
            writes::delete::<Partners>(tx, path, identity, expected_version, audit)
        })
    }

    fn policies(&self) -> Result<Vec<Versioned<ExternalAccessPolicy>>, StoreError> {
        let out = stored_policies(&self.lock(), &self.path)?;
        Ok(with_default_global(out))
    }

    fn policy(
        &self,
        scope: &PolicyScope,
    ) -> Result<Option<Versioned<ExternalAccessPolicy>>, StoreError> {
        load_policy(&self.lock(), &self.path, scope)
    }

    fn create_policy(
        &self,
        policy: &ExternalAccessPolicy,
        audit: &AuditContext,
    ) -> Result<Versioned<ExternalAccessPolicy>, StoreError> {
        self.write(|tx, path| writes::create::<Policies>(tx, path, policy, audit))
    }

    fn update_policy(
        &self,
        policy: &ExternalAccessPolicy,
        expected_version: u64,
        audit: &AuditContext,
    ) -> Result<Versioned<ExternalAccessPolicy>, StoreError> {
        self.write(|tx, path| writes::update::<Policies>(tx, path, policy, expected_version, audit))
    }

    fn delete_policy(
        &self,
        scope: &PolicyScope,
        audit: &AuditContext,
    ) -> Result<ExternalAccessPolicy, StoreError> {
        self.write(|tx, path| writes::delete_policy(tx, path, scope, audit))
    }

    fn grants(&self) -> Result<Vec<(UserJid, String)>, StoreError> {
        let rows: Vec<(String, String)> = self.read(|c| {
            c.prepare_cached("SELECT user_jid, tag FROM policy_grants ORDER BY user_jid")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })?;
        grants_from_rows(&self.path, rows)
    }

    fn grant_policy(
        &self,
        user: &UserJid,
        tag: Option<&str>,
        audit: &AuditContext,
    ) -> Result<(), StoreError> {
        self.write(|tx, path| writes::grant(tx, path, user, tag, audit))
    }

    fn gateway_configuration(&self) -> Result<XmppGatewayConfiguration, StoreError> {
        let rows: Vec<(String, String)> = self.read(|c| {
            c.prepare_cached("SELECT name, value FROM gateway_settings")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })?;
        configuration_from_rows(&self.path, rows)
    }

    fn set_gateway_configuration(
        &self,
        config: &XmppGatewayConfiguration,
        audit: &AuditContext,
    ) -> Result<(), StoreError> {
        self.write(|tx, path| writes::set_gateway(tx, path, config, audit))
    }

    fn import_records(&self, batch: &ImportBatch, audit: &AuditContext) -> Result<(), StoreError> {
        self.write(|tx, path| writes::import(tx, path, batch, audit))
    }

    fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = query.limit.unwrap_or(100) as i64;
        let after = query.after_id.unwrap_or(0) as i64;
        let mut entries: Vec<AuditEntry> = self.read(|c| {
            c.prepare_cached(
                "SELECT id, time, actor, command, target, before, after FROM audit_log \
                 WHERE id > ?1 AND (?2 IS NULL OR target = ?2 COLLATE NOCASE) ORDER BY id DESC LIMIT ?3",
            )?
            .query_map(params![after, query.target, limit], |r| {
                let json = |t: Option<String>| t.and_then(|t| serde_json::from_str(&t).ok());
                Ok(AuditEntry {
                    id: r.get::<_, i64>(0)? as u64,
                    time: r.get(1)?,
                    actor: r.get(2)?,
                    command: r.get(3)?,
                    target: r.get(4)?,
                    before: json(r.get(5)?),
                    after: json(r.get(6)?),
                })
            })?
            .collect()
        })?;
        entries.reverse();
        Ok(entries)
    }

    fn create_token(
        &self,
        name: &str,
        role: TokenRole,
        hash: &str,
        audit: &AuditContext,
    ) -> Result<TokenInfo, StoreError> {
        self.write(|tx, path| writes::create_token(tx, path, name, role, hash, audit))
    }

    fn revoke_token(&self, name: &str, audit: &AuditContext) -> Result<TokenInfo, StoreError> {
        self.write(|tx, path| writes::revoke_token(tx, path, name, audit))
    }

    fn tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let rows: Vec<(String, String, String)> = self.read(|c| {
            c.prepare_cached("SELECT name, role, created FROM api_tokens ORDER BY name")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })?;
        rows.into_iter()
            .map(|row| token_from_row(&self.path, row))
            .collect()
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>, StoreError> {
        load_token(&self.lock(), &self.path, "hash", hash)
    }

    fn set_authorisation(
        &self,
        local: &UserJid,
        remote: &UserJid,
        authorised: bool,
    ) -> Result<bool, StoreError> {
        self.write_synced(|tx, path| apply_authorisation(tx, path, local, remote, authorised))
    }

    fn set_authorisations(&self, changes: &[(UserJid, UserJid, bool)]) -> Result<(), StoreError> {
        self.write_synced(|tx, path| {
            for (local, remote, authorised) in changes {
                apply_authorisation(tx, path, local, remote, *authorised)?;
            }
            Ok(())
        })
    }

    fn is_authorised(&self, local: &UserJid, remote: &UserJid) -> Result<bool, StoreError> {
        let (local, remote) = (local.to_string(), remote.to_string());
        self.read(|c| {
            c.prepare_cached(
                "SELECT 1 FROM authorisations WHERE local_user = ?1 AND remote_user = ?2",
            )?
            .query_row(params![local, remote], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
        })
    }

    fn authorisations(&self, local: Option<&UserJid>) -> Result<Vec<Authorisation>, StoreError> {
        let local = local.map(|l| l.to_string());
        let rows: Vec<(String, String, String)> = self.read(|c| {
            c.prepare_cached(
                "SELECT local_user, remote_user, since FROM authorisations \
                 WHERE ?1 IS NULL OR local_user = ?1 ORDER BY local_user, remote_user",
            )?
            .query_map(params![local], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect()
        })?;
        authorisations_from_rows(&self.path, rows)
    }

    fn partner_health(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT partner, direction, data FROM partner_health ORDER BY partner, direction",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect()
        })
    }

    fn save_partner_health(&self, rows: &[(String, String, String)]) -> Result<(), StoreError> {
        self.write(|tx, path| {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO partner_health (partner, direction, data) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (partner, direction) DO UPDATE SET data = excluded.data",
                )
                .map_err(|e| map_err(path, e))?;
            for (partner, direction, data) in rows {
                stmt.execute(params![partner, direction, data])
                    .map_err(|e| map_err(path, e))?;
            }
            Ok(())
        })
    }

    fn dump(&self) -> Result<StoreDump, StoreError> {
        let guard = self.lock();
        let path = self.path.as_str();
        let e = |err| map_err(path, err);
        // One read transaction: every table from the same snapshot (dropped unfinished).
        let tx = guard.unchecked_transaction().map_err(e)?;
        let grants = all_rows(
            &tx,
            "SELECT user_jid, tag FROM policy_grants ORDER BY user_jid",
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(e)?;
        let settings = all_rows(&tx, "SELECT name, value FROM gateway_settings", |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(e)?;
        let authorisations = all_rows(
            &tx,
            "SELECT local_user, remote_user, since FROM authorisations \
             ORDER BY local_user, remote_user",
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(e)?;
        let tokens = all_rows(
            &tx,
            "SELECT name, role, hash, created FROM api_tokens ORDER BY name",
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .map_err(e)?;
        Ok(StoreDump {
            source: format!("sqlite:{path}"),
            partners: list_partners(&tx, path, "*")?,
            policies: stored_policies(&tx, path)?,
            grants: grants_from_rows(path, grants)?,
            gateway_configuration: configuration_from_rows(path, settings)?,
            authorisations: authorisations_from_rows(path, authorisations)?,
            partner_health: all_rows(
                &tx,
                "SELECT partner, direction, data FROM partner_health ORDER BY partner, direction",
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(e)?,
            audit_log: all_rows(
                &tx,
                "SELECT time, actor, command, target, before, after FROM audit_log ORDER BY id",
                |r| {
                    Ok(AuditRecord {
                        time: r.get(0)?,
                        actor: r.get(1)?,
                        command: r.get(2)?,
                        target: r.get(3)?,
                        before: r.get(4)?,
                        after: r.get(5)?,
                    })
                },
            )
            .map_err(e)?,
            tokens: tokens
                .into_iter()
                .map(|row| token_record_from_row(path, row))
                .collect::<Result<_, _>>()?,
        })
    }

    fn restore(
        &self,
        dump: &StoreDump,
        force: bool,
        audit: &AuditContext,
    ) -> Result<(), StoreError> {
        self.write(|tx, path| {
            let e = |err| map_err(path, err);
            let columns = tx
                .query_row(COUNT_SQL, [], |r| {
                    Ok([
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ])
                })
                .map_err(e)?;
            let settings = all_rows(tx, "SELECT name, value FROM gateway_settings", |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(e)?;
            let found = counts_from(columns, is_configured(path, settings));
            refuse_unless_empty(path, found, force)?;
            for sql in CLEAR_SQL {
                tx.execute(sql, []).map_err(e)?;
            }
            for p in &dump.partners {
                write_partner(tx, path, &p.value, p.version)?;
            }
            for p in &dump.policies {
                write_policy(tx, path, &p.value, p.version)?;
            }
            let mut stmt = tx
                .prepare_cached("INSERT INTO policy_grants (user_jid, tag) VALUES (?1, ?2)")
                .map_err(e)?;
            for (user, tag) in &dump.grants {
                stmt.execute(params![user.to_string(), tag]).map_err(e)?;
            }
            if dump.gateway_configuration != XmppGatewayConfiguration::default() {
                let mut stmt = tx
                    .prepare_cached("INSERT INTO gateway_settings (name, value) VALUES (?1, ?2)")
                    .map_err(e)?;
                for (name, value) in settings_rows(&dump.gateway_configuration) {
                    stmt.execute(params![name, value]).map_err(e)?;
                }
            }
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO authorisations (local_user, remote_user, since) VALUES (?1, ?2, ?3)",
                )
                .map_err(e)?;
            for a in &dump.authorisations {
                stmt.execute(params![
                    a.local_user.to_string(),
                    a.remote_user.to_string(),
                    a.since
                ])
                .map_err(e)?;
            }
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO partner_health (partner, direction, data) VALUES (?1, ?2, ?3)",
                )
                .map_err(e)?;
            for (partner, direction, data) in &dump.partner_health {
                stmt.execute(params![partner, direction, data])
                    .map_err(e)?;
            }
            // In order: the new ids (after any the target handed out before) keep it.
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO audit_log (time, actor, command, target, before, after) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(e)?;
            for a in &dump.audit_log {
                stmt.execute(params![
                    a.time, a.actor, a.command, a.target, a.before, a.after
                ])
                .map_err(e)?;
            }
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO api_tokens (name, role, hash, created) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(e)?;
            for t in &dump.tokens {
                stmt.execute(params![t.name, t.role.name(), t.hash, t.created])
                    .map_err(e)?;
            }
            let replaced = (found != RecordCounts::default()).then(|| to_json(&found));
            insert_audit(tx, audit, COPY_TARGET, replaced, Some(dump.audit_json())).map_err(e)?;
            Ok(())
        })
    }

    fn revision(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            c.query_row("SELECT coalesce(max(id), 0) FROM audit_log", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .map(|v| v as u64)
    }

    fn heartbeat(&self, beat: &NodeHeartbeat, lease_ttl: Duration) -> Result<(), StoreError> {
        self.write(|tx, path| cluster::sqlite::heartbeat(tx, path, beat, lease_ttl))
    }

    fn nodes(&self, lease_ttl: Duration) -> Result<Vec<NodeStatus>, StoreError> {
        cluster::sqlite::nodes(&self.lock(), &self.path, lease_ttl)
    }

    fn forget_node(&self, node: &str) -> Result<bool, StoreError> {
        self.write(|tx, path| cluster::sqlite::forget_node(tx, path, node))
    }

    fn acquire_stream_lease(
        &self,
        lease: &StreamLease,
        lease_ttl: Duration,
        decide: &mut dyn FnMut(ConnectionCounts) -> Result<(), Refusal>,
    ) -> Result<Result<(), Refusal>, StoreError> {
        // The immediate transaction is the pool-wide serialisation: one admission at a time.
        self.write(|tx, path| {
            cluster::sqlite::acquire_stream_lease(tx, path, lease, lease_ttl, decide)
        })
    }

    fn release_stream_lease(&self, node: &str, stream: u64) -> Result<bool, StoreError> {
        self.write(|tx, path| cluster::sqlite::release_stream_lease(tx, path, node, stream))
    }

    fn release_node_leases(&self, node: &str) -> Result<u64, StoreError> {
        self.write(|tx, path| cluster::sqlite::release_node_leases(tx, path, node))
    }
}

/// Record or withdraw one authorisation inside `tx`; whether a row changed.
fn apply_authorisation(
    tx: &Transaction<'_>,
    path: &str,
    local: &UserJid,
    remote: &UserJid,
    authorised: bool,
) -> Result<bool, StoreError> {
    let sql = if authorised {
        "INSERT OR IGNORE INTO authorisations (local_user, remote_user) VALUES (?1, ?2)"
    } else {
        "DELETE FROM authorisations WHERE local_user = ?1 AND remote_user = ?2"
    };
    tx.prepare_cached(sql)
        .and_then(|mut s| s.execute(params![local.to_string(), remote.to_string()]))
        .map(|n| n > 0)
        .map_err(|e| map_err(path, e))
}

/// The token whose `column` (`name` or `hash`, never user text) equals `value`.
fn load_token(
    conn: &Connection,
    path: &str,
    column: &'static str,
    value: &str,
) -> Result<Option<TokenInfo>, StoreError> {
    let row: Option<(String, String, String)> = conn
        .prepare_cached(&format!(
            "SELECT name, role, created FROM api_tokens WHERE {column} = ?1"
        ))
        .and_then(|mut s| {
            s.query_row([value], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
        })
        .map_err(|e| map_err(path, e))?;
    row.map(|row| token_from_row(path, row)).transpose()
}

/// Every row of a query without parameters.
fn all_rows<T>(
    conn: &Connection,
    sql: &str,
    f: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    conn.prepare(sql)?.query_map([], f)?.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synchronous(tx: &Transaction<'_>) -> i64 {
        tx.query_row("PRAGMA synchronous", [], |r| r.get(0))
            .expect("read synchronous")
    }

    fn jid(s: &str) -> UserJid {
        UserJid::parse(s).expect("a valid JID")
    }

    /// The partner row the model's field table gives is the `partners` table the migrations
    /// make: the same columns, none missing, none unknown (as a set: a column a later migration
    /// adds comes after `version` in the table, and every statement names its columns).
    #[test]
    fn partner_columns_are_those_of_the_schema() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("fedgate.db")).expect("open");
        let mut columns = store
            .write(|tx, _| {
                let mut stmt = tx
                    .prepare("SELECT name FROM pragma_table_info('partners')")
                    .expect("prepare");
                let names = stmt
                    .query_map([], |r| r.get::<_, String>(0))
                    .expect("query")
                    .collect::<Result<Vec<_>, _>>()
                    .expect("rows");
                Ok(names)
            })
            .expect("read the schema");
        columns.sort();
        let mut row: Vec<&str> = PartnerRow::columns().collect();
        row.sort();
        assert_eq!(columns, row);
    }

    /// Authorisations commit with `synchronous=FULL` (2); every other write, before and after,
    /// runs with the connection's NORMAL (1).
    #[test]
    fn authorisation_commits_are_synced_and_other_writes_are_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("fedgate.db")).expect("open");
        assert_eq!(store.write(|tx, _| Ok(synchronous(tx))).expect("write"), 1);
        assert_eq!(
            store
                .write_synced(|tx, _| Ok(synchronous(tx)))
                .expect("write"),
            2
        );
        let (alice, bob) = (jid("alice@corp.example"), jid("bob@partner.example"));
        store
            .set_authorisations(&[(alice.clone(), bob.clone(), true)])
            .expect("set");
        assert!(store.is_authorised(&alice, &bob).expect("read"));
        assert_eq!(store.write(|tx, _| Ok(synchronous(tx))).expect("write"), 1);
        // A failed synced write restores NORMAL too.
        let failed: Result<(), StoreError> = store.write_synced(|_, path| {
            Err(StoreError::Database {
                path: path.into(),
                reason: "refused by the test".into(),
            })
        });
        assert!(failed.is_err());
        assert_eq!(store.write(|tx, _| Ok(synchronous(tx))).expect("write"), 1);
    }

    /// The cost of syncing authorisation commits: batches as `set_authorisations` writes them,
    /// committed with NORMAL (`write`) and with FULL (`write_synced`), on a file in the system's
    /// temporary directory (use a real disk: on tmpfs an fsync costs nothing). Prints numbers,
    /// asserts none. Run: `cargo test -p fedgate-store --lib authorisation_batches -- --ignored
    /// --nocapture` (TMPDIR chooses the disk).
    #[test]
    #[ignore]
    fn authorisation_batches_normal_vs_full() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("fedgate.db")).expect("open");
        let rounds = 200;
        let mut n = 0usize;
        for size in [1usize, 16, 256] {
            for full in [false, true] {
                let mut times = Vec::with_capacity(rounds);
                for _ in 0..rounds {
                    let rows: Vec<(UserJid, UserJid, bool)> = (0..size)
                        .map(|_| {
                            n += 1;
                            (
                                jid(&format!("u{n}@corp.example")),
                                jid("bob@partner.example"),
                                true,
                            )
                        })
                        .collect();
                    let apply = |tx: &mut Transaction<'_>, path: &str| {
                        for (l, r, a) in &rows {
                            apply_authorisation(tx, path, l, r, *a)?;
                        }
                        Ok(())
                    };
                    let start = std::time::Instant::now();
                    if full {
                        store.write_synced(apply).expect("write");
                    } else {
                        store.write(apply).expect("write");
                    }
                    times.push(start.elapsed());
                }
                times.sort();
                let mean = times.iter().sum::<Duration>() / rounds as u32;
                println!(
                    "batch of {size:>3}, synchronous={:<6}: mean {:>8.3} ms, p50 {:>8.3} ms, p99 {:>8.3} ms ({rounds} commits)",
                    if full { "FULL" } else { "NORMAL" },
                    mean.as_secs_f64() * 1e3,
                    times[rounds / 2].as_secs_f64() * 1e3,
                    times[rounds * 99 / 100].as_secs_f64() * 1e3,
                );
            }
        }
    }
}
