//! What the SQLite and PostgreSQL backends share: the row <-> model conversions (so both store
//! and read the same texts for the same record), the audit-record shapes, the gateway settings'
//! stored names and values, the schema-version check, and the dump rows of [`crate::copy`].

use fedgate_model::gateway_settings::{NUMERIC_SETTINGS, parse_dialback_passphrase};
use fedgate_model::partner::fields::{FieldKind, FieldValue, PartnerField};
use fedgate_model::{
    Domain, DomainPattern, ExternalAccessPolicy, PartnerChanges, PolicyScope, UserJid,
    XmppAllowedPartner, XmppGatewayConfiguration,
};
use std::sync::LazyLock;

use serde::Serialize;

use crate::{Authorisation, StoreError, TokenInfo, TokenRecord, TokenRole, Versioned};

pub(crate) fn corrupt(path: &str, what: String) -> StoreError {
    StoreError::Corrupt {
        path: path.to_owned(),
        reason: what,
    }
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> String {
    // Serializing our own plain records cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

/// Refuse a store whose schema `found` is newer than this build writes (`supported`).
pub(crate) fn check_version(path: &str, found: i64, supported: i64) -> Result<(), StoreError> {
    if found > supported {
        return Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found,
            supported,
        });
    }
    Ok(())
}

/// Optimistic concurrency: a write based on a read of version `expected` goes ahead only if the
/// record is still at it (`found`); else the Conflict error ("read it again and retry").
pub(crate) fn still_at(
    target: &dyn std::fmt::Display,
    expected: u64,
    found: u64,
) -> Result<(), StoreError> {
    if expected != found {
        return Err(StoreError::Conflict {
            target: target.to_string(),
            expected,
            found,
        });
    }
    Ok(())
}

/// A per-user grant as the audit log shows it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct GrantRecord<'a> {
    pub identity: &'a str,
    pub policy_name: &'a str,
}

/// The audit `before`/`after` text of a grant (none when the user has no grant).
pub(crate) fn grant_json(user: &str, tag: Option<&str>) -> Option<String> {
    tag.map(|name| {
        to_json(&GrantRecord {
            identity: user,
            policy_name: name,
        })
    })
}

/// The audit target of a token's entries.
pub(crate) fn token_target(name: &str) -> String {
    format!("token:{name}")
}

pub(crate) fn token_from_row(
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

/// An API token's row with its hash, for a dump.
pub(crate) fn token_record_from_row(
    path: &str,
    (name, role, hash, created): (String, String, String, String),
) -> Result<TokenRecord, StoreError> {
    let info = token_from_row(path, (name, role, created))?;
    Ok(TokenRecord {
        name: info.name,
        role: info.role,
        hash,
        created: info.created,
    })
}

pub(crate) fn parse_pattern(path: &str, text: &str) -> Result<DomainPattern, StoreError> {
    DomainPattern::parse(text).map_err(|e| corrupt(path, e.to_string()))
}

pub(crate) fn parse_user(path: &str, text: &str) -> Result<UserJid, StoreError> {
    UserJid::parse(text).map_err(|e| corrupt(path, e.to_string()))
}

/// Grants from their (user, tag) rows.
pub(crate) fn grants_from_rows(
    path: &str,
    rows: Vec<(String, String)>,
) -> Result<Vec<(UserJid, String)>, StoreError> {
    rows.into_iter()
        .map(|(user, tag)| Ok((parse_user(path, &user)?, tag)))
        .collect()
}

/// Authorisations from their (local, remote, since) rows.
pub(crate) fn authorisations_from_rows(
    path: &str,
    rows: Vec<(String, String, String)>,
) -> Result<Vec<Authorisation>, StoreError> {
    rows.into_iter()
        .map(|(local, remote, since)| {
            Ok(Authorisation {
                local_user: parse_user(path, &local)?,
                remote_user: parse_user(path, &remote)?,
                since,
            })
        })
        .collect()
}

/// A result row of either backend, read by column index as a `T` (each backend implements it
/// for its own row type and the column types it can convert).
pub(crate) trait Column<T> {
    /// The value of column `index`, or why it cannot be read as a `T`.
    fn column(&self, index: usize) -> Result<T, String>;
}

/// A row with every column type of the record rows below.
pub(crate) trait Columns:
    Column<String> + Column<Option<String>> + Column<bool> + Column<i64> + Column<Option<i64>>
{
}

impl<R> Columns for R where
    R: Column<String> + Column<Option<String>> + Column<bool> + Column<i64> + Column<Option<i64>>
{
}

/// Reads the columns of one row of `table`; a column that cannot be read makes the store corrupt.
struct RowReader<'a, R> {
    path: &'a str,
    table: &'a str,
    row: &'a R,
}

impl<R> RowReader<'_, R> {
    fn at<T>(&self, index: usize) -> Result<T, StoreError>
    where
        R: Column<T>,
    {
        self.row
            .column(index)
            .map_err(|e| corrupt(self.path, format!("{} row: {e}", self.table)))
    }
}

/// A partner column's value as both backends bind and read it, by the field's kind
/// ([`FieldKind`]): choices as their names, proxies as `host[:port]`, numbers as 64-bit integers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stored {
    Text(String),
    OptionalText(Option<String>),
    Bool(bool),
    OptionalInt(Option<i64>),
}

impl Stored {
    /// The stored form of a field's value; `None` for a domain list (rows of `partner_domains`).
    fn of(value: FieldValue) -> Option<Stored> {
        Some(match value {
            FieldValue::Text(t) => Stored::Text(t),
            FieldValue::Bool(b) => Stored::Bool(b),
            FieldValue::OptionalU32(n) => Stored::OptionalInt(n.map(i64::from)),
            FieldValue::Choice { name, .. } => Stored::Text(name.to_owned()),
            FieldValue::OptionalProxy(p) => Stored::OptionalText(p.map(|t| t.to_string())),
            FieldValue::DomainList(_) => return None,
        })
    }
}

/// The table fields with a column of `partners`, in column order.
fn partner_columns() -> impl Iterator<Item = (PartnerField, &'static str)> {
    PartnerField::ALL
        .into_iter()
        .filter_map(|f| f.column().map(|c| (f, c)))
}

/// The `partners` row: `identity`, a column per field of the model's field table
/// ([`PartnerField`]) that has one, `version`. The column lists and values of both backends'
/// reads and writes come from here.
pub(crate) struct PartnerRow;

impl PartnerRow {
    /// The column names, in row order.
    pub fn columns() -> impl Iterator<Item = &'static str> {
        std::iter::once("identity")
            .chain(partner_columns().map(|(_, c)| c))
            .chain(std::iter::once("version"))
    }

    /// `identity, description, …, version` (built once).
    pub fn column_list() -> &'static str {
        static LIST: LazyLock<String> =
            LazyLock::new(|| PartnerRow::columns().collect::<Vec<_>>().join(", "));
        &LIST
    }

    /// The placeholders of an INSERT of the row, numbered from 1, each formatted by
    /// `placeholder` (`?1` in SQLite, `$1` in PostgreSQL).
    pub fn placeholders(placeholder: impl Fn(usize) -> String) -> String {
        (1..=Self::columns().count())
            .map(placeholder)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The values of a row, in [`PartnerRow::columns`] order.
    pub fn values(p: &XmppAllowedPartner, version: u64) -> Vec<Stored> {
        std::iter::once(Stored::Text(p.identity.as_str().to_owned()))
            .chain(partner_columns().filter_map(|(f, _)| Stored::of(f.get(p))))
            .chain(std::iter::once(Stored::OptionalInt(Some(version as i64))))
            .collect()
    }

    /// A partner read from a row of [`PartnerRow::columns`], without its additional domains
    /// (they are separate rows).
    pub fn read(
        path: &str,
        row: &impl Columns,
    ) -> Result<Versioned<XmppAllowedPartner>, StoreError> {
        let r = RowReader {
            path,
            table: "partners",
            row,
        };
        let identity: String = r.at(0)?;
        let identity = Domain::parse(&identity).map_err(|e| corrupt(path, e.to_string()))?;
        let mut changes = PartnerChanges::default();
        let mut index = 1;
        for (field, column) in partner_columns() {
            let bad =
                |why: String| corrupt(path, format!("partners row {identity}: {column}: {why}"));
            let value = match field.kind() {
                FieldKind::Text => FieldValue::Text(r.at(index)?),
                FieldKind::Bool => FieldValue::Bool(r.at(index)?),
                FieldKind::OptionalU32 => FieldValue::OptionalU32(
                    r.at::<Option<i64>>(index)?
                        .map(|n| u32::try_from(n).map_err(|_| bad(format!("bad number {n}"))))
                        .transpose()?,
                ),
                FieldKind::Choice(_) | FieldKind::OptionalProxy => {
                    let text: Option<String> = r.at(index)?;
                    field
                        .parse(text.as_deref().unwrap_or_default())
                        .map_err(|e| bad(e.reason))?
                }
                FieldKind::DomainList => continue,
            };
            field
                .change(&mut changes, value)
                .map_err(|e| bad(e.reason))?;
            index += 1;
        }
        let version: i64 = r.at(index)?;
        let mut p = XmppAllowedPartner::new(identity);
        changes.apply(&mut p);
        Ok(Versioned {
            value: p,
            version: version as u64,
        })
    }
}

/// The columns of a `policies` row, in [`PolicyRow::COLUMNS`] order (the key is derived).
pub(crate) struct PolicyRow {
    pub identity: String,
    pub description: String,
    pub enable_federation_access: bool,
    pub enable_xmpp_access: bool,
    pub enable_outside_access: bool,
    pub enable_public_cloud_access: bool,
    pub enable_public_cloud_audio_video_access: bool,
    pub version: i64,
}

impl PolicyRow {
    pub const COLUMNS: &'static str = "identity, description, enable_federation_access, \
         enable_xmpp_access, enable_outside_access, enable_public_cloud_access, \
         enable_public_cloud_audio_video_access, version";

    /// A policy read from a row of [`PolicyRow::COLUMNS`].
    pub fn read(
        path: &str,
        row: &impl Columns,
    ) -> Result<Versioned<ExternalAccessPolicy>, StoreError> {
        let r = RowReader {
            path,
            table: "policies",
            row,
        };
        let columns = PolicyRow {
            identity: r.at(0)?,
            description: r.at(1)?,
            enable_federation_access: r.at(2)?,
            enable_xmpp_access: r.at(3)?,
            enable_outside_access: r.at(4)?,
            enable_public_cloud_access: r.at(5)?,
            enable_public_cloud_audio_video_access: r.at(6)?,
            version: r.at(7)?,
        };
        columns.into_policy(path)
    }

    pub fn into_policy(self, path: &str) -> Result<Versioned<ExternalAccessPolicy>, StoreError> {
        let scope = PolicyScope::parse(&self.identity).map_err(|e| corrupt(path, e.to_string()))?;
        let mut p = ExternalAccessPolicy::new(scope);
        p.description = self.description;
        p.enable_federation_access = self.enable_federation_access;
        p.enable_xmpp_access = self.enable_xmpp_access;
        p.enable_outside_access = self.enable_outside_access;
        p.enable_public_cloud_access = self.enable_public_cloud_access;
        p.enable_public_cloud_audio_video_access = self.enable_public_cloud_audio_video_access;
        Ok(Versioned {
            value: p,
            version: self.version as u64,
        })
    }
}

/// The Global policy as read when none was ever written.
pub(crate) fn default_global_policy() -> Versioned<ExternalAccessPolicy> {
    Versioned {
        value: ExternalAccessPolicy::new(PolicyScope::Global),
        version: 0,
    }
}

/// The stored policies (Global first when stored) with the default Global in front when none is.
pub(crate) fn with_default_global(
    mut stored: Vec<Versioned<ExternalAccessPolicy>>,
) -> Vec<Versioned<ExternalAccessPolicy>> {
    if stored
        .first()
        .is_none_or(|p| p.value.identity != PolicyScope::Global)
    {
        stored.insert(0, default_global_policy());
    }
    stored
}

/// The `gateway_settings` rows (name, value) that store `config`.
pub(crate) fn settings_rows(config: &XmppGatewayConfiguration) -> Vec<(&'static str, String)> {
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
    values
}

/// The gateway configuration from its stored (name, value) rows; unset ones keep their defaults.
pub(crate) fn configuration_from_rows(
    path: &str,
    rows: Vec<(String, String)>,
) -> Result<XmppGatewayConfiguration, StoreError> {
    let mut config = XmppGatewayConfiguration::default();
    for (name, value) in rows {
        let bad = |why: String| corrupt(path, format!("gateway setting {name}: {why}"));
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
