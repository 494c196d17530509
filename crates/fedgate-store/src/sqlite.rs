//! The SQLite backend: one database file in WAL mode, shared safely by several processes.
//!
//! Writes run in `BEGIN IMMEDIATE` transactions (one writer at a time, others wait up to the busy
//! timeout), check their preconditions inside the transaction and write the audit entry in the same
//! transaction. Domain uniqueness is also a primary key, so no interleaving can give one domain two
//! owners.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use fedgate_model::gateway_settings::{NUMERIC_SETTINGS, parse_dialback_passphrase};
use fedgate_model::{
    Choice, Domain, DomainPattern, ExternalAccessPolicy, PartnerType, PolicyScope, ProxyTarget,
    SaslNegotiation, TlsNegotiation, UserJid, XmppAllowedPartner, XmppGatewayConfiguration,
};
use rusqlite::{
    Connection, ErrorCode, OptionalExtension, Row, Transaction, TransactionBehavior, params,
};
use serde::Serialize;

use crate::schema::{MIGRATIONS, Migration, current_version};
use crate::{
    AuditContext, AuditEntry, AuditQuery, Authorisation, Store, StoreError, TokenInfo, TokenRole,
    Versioned,
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
    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>, &str) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| map_err(&self.path, e))?;
        let out = f(&tx, &self.path)?;
        tx.commit().map_err(|e| map_err(&self.path, e))?;
        Ok(out)
    }
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
    if found > current_version() {
        return Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found,
            supported: current_version(),
        });
    }
    Ok(())
}

fn map_err(path: &str, err: rusqlite::Error) -> StoreError {
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

fn corrupt(path: &str, what: String) -> StoreError {
    StoreError::Corrupt {
        path: path.to_owned(),
        reason: what,
    }
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Serializing our own plain records cannot fail.
    serde_json::to_string(value).unwrap_or_default()
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

const PARTNER_COLUMNS: &str = "identity, description, partner_type, tls_negotiation, sasl_negotiation, \
     support_dialback, enable_keep_alive, connection_limit, proxy_fqdn, bypass_dual_write, version";

/// A partner row before its additional domains are attached.
fn partner_from_row(
    path: &str,
    row: &Row<'_>,
) -> Result<Versioned<XmppAllowedPartner>, StoreError> {
    let get = |e: rusqlite::Error| corrupt(path, format!("partners row: {e}"));
    let identity: String = row.get(0).map_err(get)?;
    let identity = Domain::parse(&identity).map_err(|e| corrupt(path, e.to_string()))?;
    fn choice<T: Choice>(path: &str, text: String) -> Result<T, StoreError> {
        T::parse_name(&text).ok_or_else(|| corrupt(path, format!("bad {} '{text}'", T::TYPE_NAME)))
    }
    let mut p = XmppAllowedPartner::new(identity);
    p.description = row.get(1).map_err(get)?;
    p.partner_type = choice::<PartnerType>(path, row.get(2).map_err(get)?)?;
    p.tls_negotiation = choice::<TlsNegotiation>(path, row.get(3).map_err(get)?)?;
    p.sasl_negotiation = choice::<SaslNegotiation>(path, row.get(4).map_err(get)?)?;
    p.support_dialback_negotiation = row.get(5).map_err(get)?;
    p.enable_keep_alive = row.get(6).map_err(get)?;
    p.connection_limit = row.get(7).map_err(get)?;
    let proxy: Option<String> = row.get(8).map_err(get)?;
    p.proxy_fqdn = proxy
        .map(|t| ProxyTarget::parse(&t).map_err(|e| corrupt(path, e.to_string())))
        .transpose()?;
    p.bypass_dual_write = row.get(9).map_err(get)?;
    let version: i64 = row.get(10).map_err(get)?;
    Ok(Versioned {
        value: p,
        version: version as u64,
    })
}

/// Insert or replace a partner's row and domain rows, checking domain ownership.
fn write_partner(
    tx: &Transaction<'_>,
    path: &str,
    p: &XmppAllowedPartner,
    version: u64,
) -> Result<(), StoreError> {
    let e = |err| map_err(path, err);
    tx.prepare_cached(
        "INSERT OR REPLACE INTO partners (identity, description, partner_type, tls_negotiation, \
         sasl_negotiation, support_dialback, enable_keep_alive, connection_limit, proxy_fqdn, \
         bypass_dual_write, version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .map_err(e)?
    .execute(params![
        p.identity.as_str(),
        p.description,
        p.partner_type.name(),
        p.tls_negotiation.name(),
        p.sasl_negotiation.name(),
        p.support_dialback_negotiation,
        p.enable_keep_alive,
        p.connection_limit,
        p.proxy_fqdn.as_ref().map(|t| t.to_string()),
        p.bypass_dual_write,
        version as i64,
    ])
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
            "SELECT {PARTNER_COLUMNS} FROM partners WHERE identity = ?1"
        ))
        .map_err(e)?;
    let mut rows = stmt.query([identity.as_str()]).map_err(e)?;
    let Some(row) = rows.next().map_err(e)? else {
        return Ok(None);
    };
    let mut partner = partner_from_row(path, row)?;
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
            .push(DomainPattern::parse(&text).map_err(|err| corrupt(path, err.to_string()))?);
    }
    Ok(Some(partner))
}

fn current_version_of(
    tx: &Transaction<'_>,
    path: &str,
    identity: &Domain,
) -> Result<Option<u64>, StoreError> {
    tx.prepare_cached("SELECT version FROM partners WHERE identity = ?1")
        .and_then(|mut s| {
            s.query_row([identity.as_str()], |r| r.get::<_, i64>(0))
                .optional()
        })
        .map(|v| v.map(|v| v as u64))
        .map_err(|e| map_err(path, e))
}

const POLICY_COLUMNS: &str = "identity, description, enable_federation_access, enable_xmpp_access, \
     enable_outside_access, enable_public_cloud_access, enable_public_cloud_audio_video_access, version";

fn policy_from_row(
    path: &str,
    row: &Row<'_>,
) -> Result<Versioned<ExternalAccessPolicy>, StoreError> {
    let get = |e: rusqlite::Error| corrupt(path, format!("policies row: {e}"));
    let identity: String = row.get(0).map_err(get)?;
    let scope = PolicyScope::parse(&identity).map_err(|e| corrupt(path, e.to_string()))?;
    let mut p = ExternalAccessPolicy::new(scope);
    p.description = row.get(1).map_err(get)?;
    p.enable_federation_access = row.get(2).map_err(get)?;
    p.enable_xmpp_access = row.get(3).map_err(get)?;
    p.enable_outside_access = row.get(4).map_err(get)?;
    p.enable_public_cloud_access = row.get(5).map_err(get)?;
    p.enable_public_cloud_audio_video_access = row.get(6).map_err(get)?;
    let version: i64 = row.get(7).map_err(get)?;
    Ok(Versioned {
        value: p,
        version: version as u64,
    })
}

fn load_policy(
    conn: &Connection,
    path: &str,
    scope: &PolicyScope,
) -> Result<Option<Versioned<ExternalAccessPolicy>>, StoreError> {
    let e = |err| map_err(path, err);
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {POLICY_COLUMNS} FROM policies WHERE key = ?1"
        ))
        .map_err(e)?;
    let mut rows = stmt.query([scope.key()]).map_err(e)?;
    match rows.next().map_err(e)? {
        Some(row) => Ok(Some(policy_from_row(path, row)?)),
        None if *scope == PolicyScope::Global => Ok(Some(Versioned {
            value: ExternalAccessPolicy::new(PolicyScope::Global),
            version: 0,
        })),
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

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GrantRecord<'a> {
    identity: &'a str,
    policy_name: &'a str,
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
    let record = |user: &str, tag: &str| {
        to_json(&GrantRecord {
            identity: user,
            policy_name: tag,
        })
    };
    for (key, tag) in &grants {
        let new = normal(key);
        if new.as_deref() == Some(key.as_str()) {
            continue;
        }
        tx.execute("DELETE FROM policy_grants WHERE user_jid = ?1", [key])?;
        insert_audit(tx, &audit, key, Some(record(key, tag)), None)?;
        if let Some(new) = new.filter(|n| taken.insert(n.clone())) {
            tx.execute(
                "INSERT INTO policy_grants (user_jid, tag) VALUES (?1, ?2)",
                params![new, tag],
            )?;
            insert_audit(tx, &audit, &new, None, Some(record(&new, tag)))?;
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

impl Store for SqliteStore {
    fn partners(
        &self,
        identity_glob: Option<&str>,
    ) -> Result<Vec<Versioned<XmppAllowedPartner>>, StoreError> {
        let conn = self.lock();
        let path = self.path.as_str();
        let e = |err| map_err(path, err);
        let glob = identity_glob
            .map(glob_pattern)
            .unwrap_or_else(|| "*".to_owned());
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {PARTNER_COLUMNS} FROM partners WHERE identity GLOB ?1 ORDER BY identity"
            ))
            .map_err(e)?;
        let mut rows = stmt.query([&glob]).map_err(e)?;
        let mut partners = Vec::new();
        let mut slots = std::collections::HashMap::new();
        while let Some(row) = rows.next().map_err(e)? {
            let p = partner_from_row(path, row)?;
            slots.insert(p.value.identity.as_str().to_owned(), partners.len());
            partners.push(p);
        }
        let mut stmt = conn
            .prepare_cached(
                "SELECT identity, pattern FROM partner_domains WHERE position > 0 AND identity GLOB ?1 \
                 ORDER BY identity, position",
            )
            .map_err(e)?;
        let mut rows = stmt.query([&glob]).map_err(e)?;
        while let Some(row) = rows.next().map_err(e)? {
            let identity: String = row.get(0).map_err(e)?;
            let pattern: String = row.get(1).map_err(e)?;
            let slot = *slots.get(&identity).ok_or_else(|| {
                corrupt(
                    path,
                    format!("domain '{pattern}' of unknown partner '{identity}'"),
                )
            })?;
            let pattern =
                DomainPattern::parse(&pattern).map_err(|err| corrupt(path, err.to_string()))?;
            partners[slot].value.additional_domains.push(pattern);
        }
        Ok(partners)
    }

    fn partner(
        &self,
        identity: &Domain,
    ) -> Result<Option<Versioned<XmppAllowedPartner>>, StoreError> {
        load_partner(&self.lock(), &self.path, identity)
    }

    fn domain_owner(&self, pattern: &str) -> Result<Option<Domain>, StoreError> {
        self.read(|c| owner_in(c, pattern))
    }

    fn create_partner(
        &self,
        partner: &XmppAllowedPartner,
        audit: &AuditContext,
    ) -> Result<Versioned<XmppAllowedPartner>, StoreError> {
        self.write(|tx, path| {
            create_in(tx, path, partner, audit)?;
            Ok(Versioned {
                value: partner.clone(),
                version: 1,
            })
        })
    }

    fn import_partners(
        &self,
        partners: &[XmppAllowedPartner],
        audit: &AuditContext,
    ) -> Result<(), StoreError> {
        self.write(|tx, path| {
            for p in partners {
                create_in(tx, path, p, audit)?;
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
            let before = load_partner(tx, path, &partner.identity)?
                .ok_or_else(|| StoreError::PartnerNotFound(partner.identity.clone()))?;
            if before.version != expected_version {
                return Err(StoreError::Conflict {
                    target: partner.identity.to_string(),
                    expected: expected_version,
                    found: before.version,
                });
            }
            let version = before.version + 1;
            write_partner(tx, path, partner, version)?;
            insert_audit(
                tx,
                audit,
                partner.identity.as_str(),
                Some(to_json(&before.value)),
                Some(to_json(partner)),
            )
            .map_err(|e| map_err(path, e))?;
            Ok(Versioned {
                value: partner.clone(),
                version,
            })
        })
    }

    fn delete_partner(
        &self,
        identity: &Domain,
        expected_version: Option<u64>,
        audit: &AuditContext,
    ) -> Result<XmppAllowedPartner, StoreError> {
        self.write(|tx, path| {
            let before = load_partner(tx, path, identity)?
                .ok_or_else(|| StoreError::PartnerNotFound(identity.clone()))?;
            if let Some(expected) = expected_version.filter(|v| *v != before.version) {
                return Err(StoreError::Conflict {
                    target: identity.to_string(),
                    expected,
                    found: before.version,
                });
            }
            let e = |err| map_err(path, err);
            tx.execute(
                "DELETE FROM partner_domains WHERE identity = ?1",
                [identity.as_str()],
            )
            .map_err(e)?;
            tx.execute(
                "DELETE FROM partners WHERE identity = ?1",
                [identity.as_str()],
            )
            .map_err(e)?;
            insert_audit(
                tx,
                audit,
                identity.as_str(),
                Some(to_json(&before.value)),
                None,
            )
            .map_err(e)?;
            Ok(before.value)
        })
    }

    fn policies(&self) -> Result<Vec<Versioned<ExternalAccessPolicy>>, StoreError> {
        let conn = self.lock();
        let path = self.path.as_str();
        let e = |err| map_err(path, err);
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {POLICY_COLUMNS} FROM policies ORDER BY key != 'global', key"
            ))
            .map_err(e)?;
        let mut rows = stmt.query([]).map_err(e)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(e)? {
            out.push(policy_from_row(path, row)?);
        }
        if out
            .first()
            .is_none_or(|p| p.value.identity != PolicyScope::Global)
        {
            out.insert(
                0,
                Versioned {
                    value: ExternalAccessPolicy::new(PolicyScope::Global),
                    version: 0,
                },
            );
        }
        Ok(out)
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
        self.write(|tx, path| {
            if load_policy(tx, path, &policy.identity)?.is_some() {
                return Err(StoreError::PolicyExists(policy.identity.clone()));
            }
            write_policy(tx, path, policy, 1)?;
            insert_audit(
                tx,
                audit,
                &policy.identity.to_string(),
                None,
                Some(to_json(policy)),
            )
            .map_err(|e| map_err(path, e))?;
            Ok(Versioned {
                value: policy.clone(),
                version: 1,
            })
        })
    }

    fn update_policy(
        &self,
        policy: &ExternalAccessPolicy,
        expected_version: u64,
        audit: &AuditContext,
    ) -> Result<Versioned<ExternalAccessPolicy>, StoreError> {
        self.write(|tx, path| {
            let before = load_policy(tx, path, &policy.identity)?
                .ok_or_else(|| StoreError::PolicyNotFound(policy.identity.clone()))?;
            if before.version != expected_version {
                return Err(StoreError::Conflict {
                    target: policy.identity.to_string(),
                    expected: expected_version,
                    found: before.version,
                });
            }
            let version = before.version + 1;
            write_policy(tx, path, policy, version)?;
            insert_audit(
                tx,
                audit,
                &policy.identity.to_string(),
                Some(to_json(&before.value)),
                Some(to_json(policy)),
            )
            .map_err(|e| map_err(path, e))?;
            Ok(Versioned {
                value: policy.clone(),
                version,
            })
        })
    }

    fn delete_policy(
        &self,
        scope: &PolicyScope,
        audit: &AuditContext,
    ) -> Result<ExternalAccessPolicy, StoreError> {
        self.write(|tx, path| {
            let e = |err| map_err(path, err);
            let before = load_policy(tx, path, scope)?
                .ok_or_else(|| StoreError::PolicyNotFound(scope.clone()))?;
            tx.execute("DELETE FROM policies WHERE key = ?1", [scope.key()])
                .map_err(e)?;
            let after = match scope {
                PolicyScope::Global => {
                    Some(to_json(&ExternalAccessPolicy::new(PolicyScope::Global)))
                }
                _ => None,
            };
            insert_audit(
                tx,
                audit,
                &scope.to_string(),
                Some(to_json(&before.value)),
                after,
            )
            .map_err(e)?;
            if let PolicyScope::Tag(_) = scope {
                let users: Vec<(String, String)> = tx
                    .prepare(
                        "SELECT user_jid, tag FROM policy_grants WHERE 'tag:' || lower(tag) = ?1",
                    )
                    .and_then(|mut s| {
                        s.query_map([scope.key()], |r| Ok((r.get(0)?, r.get(1)?)))?
                            .collect()
                    })
                    .map_err(e)?;
                for (user, tag) in users {
                    tx.execute("DELETE FROM policy_grants WHERE user_jid = ?1", [&user])
                        .map_err(e)?;
                    let before = to_json(&GrantRecord {
                        identity: &user,
                        policy_name: &tag,
                    });
                    insert_audit(tx, audit, &user, Some(before), None).map_err(e)?;
                }
            }
            Ok(before.value)
        })
    }

    fn grants(&self) -> Result<Vec<(UserJid, String)>, StoreError> {
        let rows: Vec<(String, String)> = self.read(|c| {
            c.prepare_cached("SELECT user_jid, tag FROM policy_grants ORDER BY user_jid")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })?;
        rows.into_iter()
            .map(|(user, tag)| {
                UserJid::parse(&user)
                    .map(|u| (u, tag))
                    .map_err(|e| corrupt(&self.path, e.to_string()))
            })
            .collect()
    }

    fn grant_policy(
        &self,
        user: &UserJid,
        tag: Option<&str>,
        audit: &AuditContext,
    ) -> Result<(), StoreError> {
        self.write(|tx, path| {
            let e = |err| map_err(path, err);
            let user_text = user.to_string();
            let before: Option<String> = tx
                .query_row(
                    "SELECT tag FROM policy_grants WHERE user_jid = ?1",
                    [&user_text],
                    |r| r.get(0),
                )
                .optional()
                .map_err(e)?;
            let after = match tag {
                Some(tag) => {
                    let scope = PolicyScope::Tag(tag.to_owned());
                    let stored =
                        load_policy(tx, path, &scope)?.ok_or(StoreError::PolicyNotFound(scope))?;
                    let PolicyScope::Tag(name) = stored.value.identity else {
                        return Err(corrupt(path, format!("policy '{tag}' is not a tag policy")));
                    };
                    tx.execute(
                        "INSERT OR REPLACE INTO policy_grants (user_jid, tag) VALUES (?1, ?2)",
                        params![user_text, name],
                    )
                    .map_err(e)?;
                    Some(name)
                }
                None => {
                    tx.execute(
                        "DELETE FROM policy_grants WHERE user_jid = ?1",
                        [&user_text],
                    )
                    .map_err(e)?;
                    None
                }
            };
            let record = |t: &Option<String>| {
                t.as_deref().map(|name| {
                    to_json(&GrantRecord {
                        identity: &user_text,
                        policy_name: name,
                    })
                })
            };
            insert_audit(tx, audit, &user_text, record(&before), record(&after)).map_err(e)?;
            Ok(())
        })
    }

    fn gateway_configuration(&self) -> Result<XmppGatewayConfiguration, StoreError> {
        let rows: Vec<(String, String)> = self.read(|c| {
            c.prepare_cached("SELECT name, value FROM gateway_settings")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })?;
        let mut config = XmppGatewayConfiguration::default();
        for (name, value) in rows {
            let bad = |why: String| corrupt(&self.path, format!("gateway setting {name}: {why}"));
            match name.as_str() {
                "DialbackPassphrase" => {
                    config.dialback_passphrase =
                        Some(parse_dialback_passphrase(&value).map_err(|e| bad(e.reason))?)
                }
                "EnableLoggingAllMessageBodies" => {
                    config.enable_logging_all_message_bodies = value == "true"
                }
                other => {
                    let setting = NUMERIC_SETTINGS
                        .iter()
                        .find(|s| s.name == other)
                        .ok_or_else(|| bad("unknown setting".into()))?;
                    let parsed = setting.parse(&value).map_err(|e| bad(e.reason))?;
                    if let Some(field) = config.numeric_mut(other) {
                        *field = parsed;
                    }
                }
            }
        }
        Ok(config)
    }

    fn set_gateway_configuration(
        &self,
        config: &XmppGatewayConfiguration,
        audit: &AuditContext,
    ) -> Result<(), StoreError> {
        let before = self.gateway_configuration()?;
        self.write(|tx, path| {
            let e = |err| map_err(path, err);
            let mut values: Vec<(&str, String)> = vec![
                ("ConnectionLimit", config.connection_limit.to_string()),
                (
                    "PartnerConnectionLimit",
                    config.partner_connection_limit.to_string(),
                ),
                ("KeepAliveInterval", config.keep_alive_interval.to_string()),
                (
                    "StreamEstablishmentTimeout",
                    config.stream_establishment_timeout.to_string(),
                ),
                (
                    "StreamInactivityTimeout",
                    config.stream_inactivity_timeout.to_string(),
                ),
                (
                    "SubscriptionRefreshInterval",
                    config.subscription_refresh_interval.to_string(),
                ),
                (
                    "EnableLoggingAllMessageBodies",
                    config.enable_logging_all_message_bodies.to_string(),
                ),
            ];
            if let Some(secret) = &config.dialback_passphrase {
                values.push(("DialbackPassphrase", secret.expose().to_owned()));
            }
            for (name, value) in values {
                tx.execute(
                    "INSERT OR REPLACE INTO gateway_settings (name, value) VALUES (?1, ?2)",
                    params![name, value],
                )
                .map_err(e)?;
            }
            insert_audit(
                tx,
                audit,
                "Global",
                Some(to_json(&before)),
                Some(to_json(config)),
            )
            .map_err(e)?;
            Ok(())
        })
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
        self.write(|tx, path| {
            let e = |err| map_err(path, err);
            if load_token(tx, path, "name", name)?.is_some() {
                return Err(StoreError::TokenExists(name.to_owned()));
            }
            tx.execute(
                "INSERT INTO api_tokens (name, role, hash) VALUES (?1, ?2, ?3)",
                params![name, role.name(), hash],
            )
            .map_err(e)?;
            let info = load_token(tx, path, "name", name)?
                .ok_or_else(|| corrupt(path, format!("api token '{name}' vanished")))?;
            insert_audit(tx, audit, &token_target(name), None, Some(to_json(&info))).map_err(e)?;
            Ok(info)
        })
    }

    fn revoke_token(&self, name: &str, audit: &AuditContext) -> Result<TokenInfo, StoreError> {
        self.write(|tx, path| {
            let e = |err| map_err(path, err);
            let info = load_token(tx, path, "name", name)?
                .ok_or_else(|| StoreError::TokenNotFound(name.to_owned()))?;
            tx.execute("DELETE FROM api_tokens WHERE name = ?1", [&info.name])
                .map_err(e)?;
            insert_audit(
                tx,
                audit,
                &token_target(&info.name),
                Some(to_json(&info)),
                None,
            )
            .map_err(e)?;
            Ok(info)
        })
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
        self.write(|tx, path| apply_authorisation(tx, path, local, remote, authorised))
    }

    fn set_authorisations(&self, changes: &[(UserJid, UserJid, bool)]) -> Result<(), StoreError> {
        self.write(|tx, path| {
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
        rows.into_iter()
            .map(|(l, r, since)| {
                let parse =
                    |t: &str| UserJid::parse(t).map_err(|e| corrupt(&self.path, e.to_string()));
                Ok(Authorisation {
                    local_user: parse(&l)?,
                    remote_user: parse(&r)?,
                    since,
                })
            })
            .collect()
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

    fn revision(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            c.query_row("SELECT coalesce(max(id), 0) FROM audit_log", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .map(|v| v as u64)
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

fn create_in(
    tx: &Transaction<'_>,
    path: &str,
    partner: &XmppAllowedPartner,
    audit: &AuditContext,
) -> Result<(), StoreError> {
    if current_version_of(tx, path, &partner.identity)?.is_some() {
        return Err(StoreError::PartnerExists(partner.identity.clone()));
    }
    write_partner(tx, path, partner, 1)?;
    insert_audit(
        tx,
        audit,
        partner.identity.as_str(),
        None,
        Some(to_json(partner)),
    )
    .map_err(|e| map_err(path, e))
}

/// The audit target of a token's entries.
fn token_target(name: &str) -> String {
    format!("token:{name}")
}

fn token_from_row(
    path: &str,
    (name, role, created): (String, String, String),
) -> Result<TokenInfo, StoreError> {
    let role = TokenRole::parse(&role)
        .ok_or_else(|| corrupt(path, format!("api token '{name}' has role '{role}'")))?;
    Ok(TokenInfo {
        name,
        role,
        created,
    })
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
