//! The record writes of the store, written once for both backends: create a record at version 1,
//! replace or remove one that is still at the version its writer read ([`create`], [`update`],
//! [`delete`]); replace the unversioned gateway-wide settings ([`set_gateway`]); an import batch
//! of all three ([`import`]); grant a tag policy to a user or withdraw it ([`grant`]), and remove
//! a policy with its grants ([`delete_policy`]); make and revoke API tokens ([`create_token`],
//! [`revoke_token`]); each with its audit entry, in the caller's transaction.
//!
//! They are generic over the record kind ([`RecordKind`]: partners, policies) and over the
//! backend's write transaction ([`RecordTx`], [`SettingsTx`], [`GrantsTx`], [`TokensTx`]: SQLite's or PostgreSQL's, each
//! reading and writing the rows its own way; [`AuditTx`]: its audit entries). The backends run
//! them inside their `write`, so the write lock, the commit and PostgreSQL's change notification
//! stay theirs.

use fedgate_model::{
    Domain, ExternalAccessPolicy, PolicyScope, UserJid, XmppAllowedPartner,
    XmppGatewayConfiguration,
};
use serde::Serialize;

use crate::records::{
    configuration_from_rows, corrupt, grant_json, settings_rows, still_at, to_json, token_target,
};
use crate::{AuditContext, ImportBatch, StoreError, TokenInfo, TokenRole, Versioned};

/// A kind of versioned record: what identifies it, how its absence or presence is reported and
/// what the audit shows once it is removed.
pub(crate) trait RecordKind {
    /// The model record.
    type Value: Serialize + Clone;
    /// Its Identity (the audit target, and what a version conflict names).
    type Key: std::fmt::Display + Clone;

    /// The Identity of `value`.
    fn key(value: &Self::Value) -> &Self::Key;
    /// The error for creating a record that exists.
    fn exists(key: &Self::Key) -> StoreError;
    /// The error for changing or removing a record that does not exist.
    fn not_found(key: &Self::Key) -> StoreError;
    /// The audit's "after" of a removal: none, unless a default takes the record's place.
    fn after_removal(_key: &Self::Key) -> Option<String> {
        None
    }
}

/// Allowed partners (`partners` and their `partner_domains`).
pub(crate) struct Partners;

impl RecordKind for Partners {
    type Value = XmppAllowedPartner;
    type Key = Domain;

    fn key(value: &XmppAllowedPartner) -> &Domain {
        &value.identity
    }
    fn exists(key: &Domain) -> StoreError {
        StoreError::PartnerExists(key.clone())
    }
    fn not_found(key: &Domain) -> StoreError {
        StoreError::PartnerNotFound(key.clone())
    }
}

/// External access policies (`policies`).
pub(crate) struct Policies;

impl RecordKind for Policies {
    type Value = ExternalAccessPolicy;
    type Key = PolicyScope;

    fn key(value: &ExternalAccessPolicy) -> &PolicyScope {
        &value.identity
    }
    fn exists(key: &PolicyScope) -> StoreError {
        StoreError::PolicyExists(key.clone())
    }
    fn not_found(key: &PolicyScope) -> StoreError {
        StoreError::PolicyNotFound(key.clone())
    }
    /// The Global policy is never gone: its defaults take its place.
    fn after_removal(key: &PolicyScope) -> Option<String> {
        match key {
            PolicyScope::Global => Some(to_json(&ExternalAccessPolicy::new(PolicyScope::Global))),
            _ => None,
        }
    }
}

/// A backend's write transaction: where audit entries go.
pub(crate) trait AuditTx {
    /// Append an audit entry (`path` names the store in errors).
    fn audit(
        &mut self,
        path: &str,
        audit: &AuditContext,
        target: &str,
        before: Option<String>,
        after: Option<String>,
    ) -> Result<(), StoreError>;
}

/// A backend's write transaction, as the versioned write uses it for records of kind `R`.
pub(crate) trait RecordTx<R: RecordKind>: AuditTx {
    /// The stored record `key`, if any (`path` names the store in errors).
    fn load(&mut self, path: &str, key: &R::Key)
    -> Result<Option<Versioned<R::Value>>, StoreError>;
    /// Insert or replace the record's rows at `version`.
    fn store(&mut self, path: &str, value: &R::Value, version: u64) -> Result<(), StoreError>;
    /// Delete the record's rows.
    fn remove(&mut self, path: &str, key: &R::Key) -> Result<(), StoreError>;
}

/// A backend's write transaction, as [`set_gateway`] uses it for the `gateway_settings` rows.
pub(crate) trait SettingsTx: AuditTx {
    /// Every stored (name, value) row.
    fn settings(&mut self, path: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// Insert or replace the row of `name`.
    fn set_setting(&mut self, path: &str, name: &str, value: &str) -> Result<(), StoreError>;
}

/// A backend's write transaction, as [`grant`] and [`delete_policy`] use it for the
/// `policy_grants` rows (users by their JID's text).
pub(crate) trait GrantsTx: RecordTx<Policies> {
    /// The tag policy granted to `user`, if any.
    fn grant_of(&mut self, path: &str, user: &str) -> Result<Option<String>, StoreError>;
    /// Grant the tag policy `tag` to `user`, replacing any grant.
    fn set_grant(&mut self, path: &str, user: &str, tag: &str) -> Result<(), StoreError>;
    /// Withdraw `user`'s grant, if any.
    fn remove_grant(&mut self, path: &str, user: &str) -> Result<(), StoreError>;
    /// The (user, tag) grants of the tag policy `scope`.
    fn grants_of(
        &mut self,
        path: &str,
        scope: &PolicyScope,
    ) -> Result<Vec<(String, String)>, StoreError>;
}

/// A backend's write transaction, as [`create_token`] and [`revoke_token`] use it for the
/// `api_tokens` rows.
pub(crate) trait TokensTx: AuditTx {
    /// The token named `name` (as the backend compares names), if any.
    fn token_named(&mut self, path: &str, name: &str) -> Result<Option<TokenInfo>, StoreError>;
    /// Insert a token.
    fn insert_token(
        &mut self,
        path: &str,
        name: &str,
        role: TokenRole,
        hash: &str,
    ) -> Result<(), StoreError>;
    /// Delete the token named exactly `name`.
    fn delete_token(&mut self, path: &str, name: &str) -> Result<(), StoreError>;
}

/// Create `value` at version 1; refused if a record with its Identity exists.
pub(crate) fn create<R: RecordKind>(
    tx: &mut impl RecordTx<R>,
    path: &str,
    value: &R::Value,
    audit: &AuditContext,
) -> Result<Versioned<R::Value>, StoreError> {
    let key = R::key(value);
    if tx.load(path, key)?.is_some() {
        return Err(R::exists(key));
    }
    tx.store(path, value, 1)?;
    tx.audit(path, audit, &key.to_string(), None, Some(to_json(value)))?;
    Ok(Versioned {
        value: value.clone(),
        version: 1,
    })
}

/// Replace the stored record with `value` if it is still at `expected_version` (else
/// [`StoreError::Conflict`]), at the next version; the audit entry has both.
pub(crate) fn update<R: RecordKind>(
    tx: &mut impl RecordTx<R>,
    path: &str,
    value: &R::Value,
    expected_version: u64,
    audit: &AuditContext,
) -> Result<Versioned<R::Value>, StoreError> {
    let key = R::key(value);
    let before = tx.load(path, key)?.ok_or_else(|| R::not_found(key))?;
    still_at(key, expected_version, before.version)?;
    let version = before.version + 1;
    tx.store(path, value, version)?;
    tx.audit(
        path,
        audit,
        &key.to_string(),
        Some(to_json(&before.value)),
        Some(to_json(value)),
    )?;
    Ok(Versioned {
        value: value.clone(),
        version,
    })
}

/// Remove the record `key`, if `expected_version` is given only while it is still at it; the
/// record as it was.
pub(crate) fn delete<R: RecordKind>(
    tx: &mut impl RecordTx<R>,
    path: &str,
    key: &R::Key,
    expected_version: Option<u64>,
    audit: &AuditContext,
) -> Result<R::Value, StoreError> {
    let before = tx.load(path, key)?.ok_or_else(|| R::not_found(key))?;
    if let Some(expected) = expected_version {
        still_at(key, expected, before.version)?;
    }
    tx.remove(path, key)?;
    tx.audit(
        path,
        audit,
        &key.to_string(),
        Some(to_json(&before.value)),
        R::after_removal(key),
    )?;
    Ok(before.value)
}

/// Replace the gateway-wide settings with `config`; the audit's "before" is read in the same
/// transaction (under the backend's write lock).
pub(crate) fn set_gateway(
    tx: &mut impl SettingsTx,
    path: &str,
    config: &XmppGatewayConfiguration,
    audit: &AuditContext,
) -> Result<(), StoreError> {
    let before = configuration_from_rows(path, tx.settings(path)?)?;
    for (name, value) in settings_rows(config) {
        tx.set_setting(path, name, &value)?;
    }
    tx.audit(
        path,
        audit,
        "Global",
        Some(to_json(&before)),
        Some(to_json(config)),
    )
}

/// Write an import batch: each partner and policy created, or updated if it came with the
/// version it was read at, then the gateway settings.
pub(crate) fn import<T>(
    tx: &mut T,
    path: &str,
    batch: &ImportBatch,
    audit: &AuditContext,
) -> Result<(), StoreError>
where
    T: RecordTx<Partners> + RecordTx<Policies> + SettingsTx,
{
    for (partner, version) in &batch.partners {
        match version {
            Some(v) => update::<Partners>(tx, path, partner, *v, audit)?,
            None => create::<Partners>(tx, path, partner, audit)?,
        };
    }
    for (policy, version) in &batch.policies {
        match version {
            Some(v) => update::<Policies>(tx, path, policy, *v, audit)?,
            None => create::<Policies>(tx, path, policy, audit)?,
        };
    }
    if let Some(config) = &batch.gateway {
        set_gateway(tx, path, config, audit)?;
    }
    Ok(())
}

/// Grant the tag policy `tag` to `user` (it must exist; stored under the policy's own spelling),
/// or with `None` withdraw the user's grant.
pub(crate) fn grant(
    tx: &mut impl GrantsTx,
    path: &str,
    user: &UserJid,
    tag: Option<&str>,
    audit: &AuditContext,
) -> Result<(), StoreError> {
    let user = user.to_string();
    let before = tx.grant_of(path, &user)?;
    let after = match tag {
        Some(tag) => {
            let scope = PolicyScope::Tag(tag.to_owned());
            let stored = tx
                .load(path, &scope)?
                .ok_or(StoreError::PolicyNotFound(scope))?;
            let PolicyScope::Tag(name) = stored.value.identity else {
                return Err(corrupt(path, format!("policy '{tag}' is not a tag policy")));
            };
            tx.set_grant(path, &user, &name)?;
            Some(name)
        }
        None => {
            tx.remove_grant(path, &user)?;
            None
        }
    };
    tx.audit(
        path,
        audit,
        &user,
        grant_json(&user, before.as_deref()),
        grant_json(&user, after.as_deref()),
    )
}

/// Remove the policy `scope` (Global: back to its defaults); a tag policy's grants are withdrawn
/// with it, each with its audit entry after the policy's.
pub(crate) fn delete_policy(
    tx: &mut impl GrantsTx,
    path: &str,
    scope: &PolicyScope,
    audit: &AuditContext,
) -> Result<ExternalAccessPolicy, StoreError> {
    let before = delete::<Policies>(tx, path, scope, None, audit)?;
    if let PolicyScope::Tag(_) = scope {
        for (user, tag) in tx.grants_of(path, scope)? {
            tx.remove_grant(path, &user)?;
            tx.audit(path, audit, &user, grant_json(&user, Some(&tag)), None)?;
        }
    }
    Ok(before)
}

/// Store a new API token (by its hash); refused if one of that name exists.
pub(crate) fn create_token(
    tx: &mut impl TokensTx,
    path: &str,
    name: &str,
    role: TokenRole,
    hash: &str,
    audit: &AuditContext,
) -> Result<TokenInfo, StoreError> {
    if tx.token_named(path, name)?.is_some() {
        return Err(StoreError::TokenExists(name.to_owned()));
    }
    tx.insert_token(path, name, role, hash)?;
    let info = tx
        .token_named(path, name)?
        .ok_or_else(|| corrupt(path, format!("api token '{name}' vanished")))?;
    tx.audit(path, audit, &token_target(name), None, Some(to_json(&info)))?;
    Ok(info)
}

/// Remove the API token `name`; the token as it was.
pub(crate) fn revoke_token(
    tx: &mut impl TokensTx,
    path: &str,
    name: &str,
    audit: &AuditContext,
) -> Result<TokenInfo, StoreError> {
    let info = tx
        .token_named(path, name)?
        .ok_or_else(|| StoreError::TokenNotFound(name.to_owned()))?;
    tx.delete_token(path, &info.name)?;
    tx.audit(
        path,
        audit,
        &token_target(&info.name),
        Some(to_json(&info)),
        None,
    )?;
    Ok(info)
}
