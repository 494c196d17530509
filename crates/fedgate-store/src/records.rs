//! What the SQLite and PostgreSQL backends share: the row <-> model conversions (so both store
//! and read the same texts for the same record), the audit-record shapes, the gateway settings'
//! stored names and values, the schema-version check, and the dump rows of [`crate::copy`].

use fedgate_model::gateway_settings::{NUMERIC_SETTINGS, parse_dialback_passphrase};
use fedgate_model::{
    Choice, Domain, DomainPattern, ExternalAccessPolicy, PartnerType, PolicyScope, ProxyTarget,
    SaslNegotiation, TlsNegotiation, UserJid, XmppAllowedPartner, XmppGatewayConfiguration,
};
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

/// The columns of a `partners` row, in [`PartnerRow::COLUMNS`] order.
pub(crate) struct PartnerRow {
    pub identity: String,
    pub description: String,
    pub partner_type: String,
    pub tls_negotiation: String,
    pub sasl_negotiation: String,
    pub support_dialback: bool,
    pub enable_keep_alive: bool,
    pub connection_limit: Option<i64>,
    pub proxy_fqdn: Option<String>,
    pub bypass_dual_write: bool,
    pub version: i64,
}

impl PartnerRow {
    pub const COLUMNS: &'static str = "identity, description, partner_type, tls_negotiation, \
         sasl_negotiation, support_dialback, enable_keep_alive, connection_limit, proxy_fqdn, \
         bypass_dual_write, version";

    pub fn of(p: &XmppAllowedPartner, version: u64) -> PartnerRow {
        PartnerRow {
            identity: p.identity.as_str().to_owned(),
            description: p.description.clone(),
            partner_type: p.partner_type.name().to_owned(),
            tls_negotiation: p.tls_negotiation.name().to_owned(),
            sasl_negotiation: p.sasl_negotiation.name().to_owned(),
            support_dialback: p.support_dialback_negotiation,
            enable_keep_alive: p.enable_keep_alive,
            connection_limit: p.connection_limit.map(i64::from),
            proxy_fqdn: p.proxy_fqdn.as_ref().map(|t| t.to_string()),
            bypass_dual_write: p.bypass_dual_write,
            version: version as i64,
        }
    }

    /// A partner read from a row of [`PartnerRow::COLUMNS`], without its additional domains
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
        let columns = PartnerRow {
            identity: r.at(0)?,
            description: r.at(1)?,
            partner_type: r.at(2)?,
            tls_negotiation: r.at(3)?,
            sasl_negotiation: r.at(4)?,
            support_dialback: r.at(5)?,
            enable_keep_alive: r.at(6)?,
            connection_limit: r.at(7)?,
            proxy_fqdn: r.at(8)?,
            bypass_dual_write: r.at(9)?,
            version: r.at(10)?,
        };
        columns.into_partner(path)
    }

    /// The partner, without its additional domains (they are separate rows).
    pub fn into_partner(self, path: &str) -> Result<Versioned<XmppAllowedPartner>, StoreError> {
        fn choice<T: Choice>(path: &str, text: &str) -> Result<T, StoreError> {
            T::parse_name(text)
                .ok_or_else(|| corrupt(path, format!("bad {} '{text}'", T::TYPE_NAME)))
        }
        let identity = Domain::parse(&self.identity).map_err(|e| corrupt(path, e.to_string()))?;
        let mut p = XmppAllowedPartner::new(identity);
        p.description = self.description;
        p.partner_type = choice::<PartnerType>(path, &self.partner_type)?;
        p.tls_negotiation = choice::<TlsNegotiation>(path, &self.tls_negotiation)?;
        p.sasl_negotiation = choice::<SaslNegotiation>(path, &self.sasl_negotiation)?;
        p.support_dialback_negotiation = self.support_dialback;
        p.enable_keep_alive = self.enable_keep_alive;
        p.connection_limit = self
            .connection_limit
            .map(|n| {
                u32::try_from(n).map_err(|_| corrupt(path, format!("bad connection_limit {n}")))
            })
            .transpose()?;
        p.proxy_fqdn = self
            .proxy_fqdn
            .map(|t| ProxyTarget::parse(&t).map_err(|e| corrupt(path, e.to_string())))
            .transpose()?;
        p.bypass_dual_write = self.bypass_dual_write;
        Ok(Versioned {
            value: p,
            version: self.version as u64,
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
