//! Import of what a Skype for Business shell exports (`fedgate import <file>`,
//! `Import-CsXmppAllowedPartner -Path <file>`) and export of the partner list.
//!
//! [`Manager::import`] reads a file ([`crate::formats`]), decides what each record is (an allowed
//! partner, an external access policy or the gateway-wide settings: from the CliXML type names,
//! else from the fields), and runs every record through the same conversion
//! ([`crate::params`]) and the same checks as New/Set in `-WhatIf` mode (a record for an existing
//! Identity is a Set of the fields it carries, otherwise a New). It then compares the result with
//! the store: created, changed (field by field) or left alone. Nothing is written when any record
//! is invalid; otherwise every created or changed record is written in one transaction
//! ([`fedgate_store::Store::import_records`]), each with an audit entry whose command names the
//! file. Fields fedgate does not know are reported as warnings naming the field and the records.

use std::collections::HashMap;

use fedgate_model::{
    Domain, ExternalAccessPolicy, InvalidValue, PolicyScope, XmppAllowedPartner,
    XmppGatewayConfiguration,
};
use fedgate_store::{ImportBatch, StoreError};
use serde::Serialize;
use serde_json::Value;

use crate::formats::{self, Format, FormatError, Record};
use crate::params::{
    self, GATEWAY_PARAMETERS, PARTNER_PARAMETERS, POLICY_PARAMETERS, ParamValue, canonical,
};
use crate::partners::SetTarget;
use crate::{ManageError, Manager, Mode};

/// What a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RecordKind {
    Partner,
    Policy,
    GatewayConfiguration,
}

impl RecordKind {
    fn noun(self) -> &'static str {
        match self {
            RecordKind::Partner => "partner",
            RecordKind::Policy => "policy",
            RecordKind::GatewayConfiguration => "gateway configuration",
        }
    }
}

/// What the import does with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Action {
    Create,
    Change,
    Unchanged,
}

/// One field a record changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FieldChange {
    pub field: String,
    pub before: Value,
    pub after: Value,
}

/// One record of the file and what the import does with it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportItem {
    /// `object 3`, `line 5`, `item 2`.
    pub location: String,
    pub kind: RecordKind,
    pub identity: String,
    pub action: Action,
    /// For [`Action::Change`]: the fields that change.
    pub changes: Vec<FieldChange>,
}

/// What an import did (or, with `-WhatIf`, would do).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportReport {
    pub file: String,
    pub format: Format,
    /// False for `-WhatIf` (nothing written).
    pub committed: bool,
    pub created: usize,
    pub changed: usize,
    pub unchanged: usize,
    pub items: Vec<ImportItem>,
    /// Unknown fields, fields not imported, the New/Set warnings; each names its records.
    pub warnings: Vec<String>,
}

impl ImportReport {
    /// The report as lines for people: one per record, then the summary.
    pub fn lines(&self) -> Vec<String> {
        let prefix = if self.committed { "" } else { "What if: " };
        let mut out = Vec::with_capacity(self.items.len() + 1);
        for item in &self.items {
            let what = format!("{} '{}'", item.kind.noun(), item.identity);
            out.push(match item.action {
                Action::Create => format!("{prefix}{}: create {what}", item.location),
                Action::Unchanged => {
                    format!("{prefix}{}: leave {what} alone (no change)", item.location)
                }
                Action::Change => format!(
                    "{prefix}{}: change {what}: {}",
                    item.location,
                    item.changes
                        .iter()
                        .map(|c| format!(
                            "{}: {} -> {}",
                            c.field,
                            shown(&c.before),
                            shown(&c.after)
                        ))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            });
        }
        out.push(format!(
            "{prefix}{} ({}): {} created, {} changed, {} left alone{}",
            self.file,
            self.format,
            self.created,
            self.changed,
            self.unchanged,
            if self.committed {
                "."
            } else {
                "; nothing written."
            }
        ));
        out
    }
}

/// A value as the report shows it: PowerShell-like.
fn shown(value: &Value) -> String {
    match value {
        Value::Null => "$null".into(),
        Value::Bool(true) => "$true".into(),
        Value::Bool(false) => "$false".into(),
        Value::String(s) => format!("\"{s}\""),
        Value::Array(items) => format!(
            "{{{}}}",
            items
                .iter()
                .map(|i| match i {
                    Value::String(s) => s.clone(),
                    other => shown(other),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// Why an import wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file cannot be read as records at all.
    #[error("{file}: {error}")]
    Format { file: String, error: FormatError },
    /// A record is invalid: names the file's record and (for a bad value) the parameter.
    #[error("{file}, {location}{}: {error}", identity.as_ref().map(|i| format!(" ({i})")).unwrap_or_default())]
    Record {
        file: String,
        location: String,
        identity: Option<String>,
        error: Box<ManageError>,
    },
    /// The store refused the write (e.g. a record changed meanwhile); nothing was written.
    #[error("{file}: nothing was imported: {error}")]
    Store {
        file: String,
        error: Box<ManageError>,
    },
}

impl ImportError {
    /// The parameter at fault, if the error is about one value.
    pub fn parameter(&self) -> Option<&str> {
        match self {
            ImportError::Record { error, .. } => error.parameter(),
            _ => None,
        }
    }

    /// Whether the file (rather than the store) is at fault.
    pub fn is_invalid_input(&self) -> bool {
        !matches!(self, ImportError::Store { .. })
    }
}

/// Repeated messages collected with the records they concern.
#[derive(Default)]
struct Notes(Vec<(String, Vec<String>)>);

impl Notes {
    fn add(&mut self, message: String, location: &str) {
        match self.0.iter_mut().find(|(m, _)| *m == message) {
            Some((_, locations)) => locations.push(location.to_owned()),
            None => self.0.push((message, vec![location.to_owned()])),
        }
    }

    fn into_lines(self) -> Vec<String> {
        const SHOWN: usize = 5;
        self.0
            .into_iter()
            .map(|(message, locations)| {
                let mut list = locations
                    .iter()
                    .take(SHOWN)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                if locations.len() > SHOWN {
                    list.push_str(&format!(" and {} more", locations.len() - SHOWN));
                }
                format!("{message} ({list})")
            })
            .collect()
    }
}

/// Which kind of record: the CliXML type names first, else the fields it has.
pub fn kind_of(record: &Record) -> RecordKind {
    for name in &record.type_names {
        let name = name.split('#').next().unwrap_or(name);
        match name.rsplit('.').next().unwrap_or(name) {
            "XmppAllowedPartner" => return RecordKind::Partner,
            "ExternalAccessPolicy" => return RecordKind::Policy,
            "XmppGatewayConfiguration" | "XmppGatewaySettings" => {
                return RecordKind::GatewayConfiguration;
            }
            _ => {}
        }
    }
    let has = |names: &[&str]| {
        record
            .fields
            .iter()
            .any(|(k, _)| names.iter().any(|n| n.eq_ignore_ascii_case(k)))
    };
    if has(&[
        "PartnerConnectionLimit",
        "KeepAliveInterval",
        "StreamEstablishmentTimeout",
        "StreamInactivityTimeout",
        "SubscriptionRefreshInterval",
        "DialbackPassphrase",
        "EnableLoggingAllMessageBodies",
    ]) {
        RecordKind::GatewayConfiguration
    } else if has(&[
        "EnableFederationAccess",
        "EnableXmppAccess",
        "EnableOutsideAccess",
        "EnablePublicCloudAccess",
        "EnablePublicCloudAudioVideoAccess",
    ]) {
        RecordKind::Policy
    } else {
        RecordKind::Partner
    }
}

/// The field-by-field differences of two records' JSON forms (keys of `after`, in order).
fn diff(before: &Value, after: &Value) -> Vec<FieldChange> {
    let (Value::Object(b), Value::Object(a)) = (before, after) else {
        return Vec::new();
    };
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, v)| FieldChange {
            field: k.clone(),
            before: b.get(k).cloned().unwrap_or(Value::Null),
            after: v.clone(),
        })
        .collect()
}

fn json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The import in progress.
struct Run<'m, 'a> {
    manager: &'m Manager<'a>,
    file: String,
    batch: ImportBatch,
    items: Vec<ImportItem>,
    warnings: Notes,
    /// Partner identities and policy keys already in the file, with their record.
    seen: HashMap<String, String>,
    /// Domain patterns claimed in the file: pattern → (partner, record).
    claimed: HashMap<String, (Domain, String)>,
    gateway_seen: Option<String>,
}

impl Run<'_, '_> {
    fn record_error(
        &self,
        record: &Record,
        identity: Option<String>,
        error: impl Into<ManageError>,
    ) -> ImportError {
        ImportError::Record {
            file: self.file.clone(),
            location: record.location.clone(),
            identity,
            error: Box::new(error.into()),
        }
    }

    fn unknown(&mut self, kind: RecordKind, field: &str, record: &Record) {
        self.warnings.add(
            format!(
                "The field '{field}' is not a {} field of fedgate; it was not imported",
                kind.noun()
            ),
            &record.location,
        );
    }

    fn once(&mut self, key: String, record: &Record, what: &str) -> Result<(), ImportError> {
        if let Some(first) = self.seen.insert(key, record.location.clone()) {
            return Err(self.record_error(
                record,
                Some(what.to_owned()),
                ManageError::Refused(format!(
                    "'{what}' is already in this file at {first}; each record may appear once."
                )),
            ));
        }
        Ok(())
    }

    fn partner(&mut self, record: &Record) -> Result<(), ImportError> {
        let mut identity_text: Option<(&str, String)> = None;
        let mut fields: Vec<(&'static str, &ParamValue)> = Vec::new();
        for (name, value) in &record.fields {
            if name.eq_ignore_ascii_case("Identity") || name.eq_ignore_ascii_case("Domain") {
                let parameter = if name.eq_ignore_ascii_case("Identity") {
                    "Identity"
                } else {
                    "Domain"
                };
                let text = value
                    .text(parameter)
                    .map_err(|e| self.record_error(record, None, e))?;
                let domain = params::parse_partner_identity(parameter, &text)
                    .map_err(|e| self.record_error(record, None, e))?;
                match &identity_text {
                    Some((first, other)) if *other != domain.to_string() => {
                        return Err(self.record_error(
                            record,
                            None,
                            InvalidValue::new(
                                parameter,
                                format!("'{text}' differs from the record's {first} '{other}'; Identity and Domain name the same domain."),
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => identity_text = Some((parameter, domain.to_string())),
                }
                continue;
            }
            match canonical(name, &PARTNER_PARAMETERS) {
                Some(field) => fields.push((field, value)),
                None => self.unknown(RecordKind::Partner, name, record),
            }
        }
        let Some((_, identity)) = identity_text else {
            return Err(self.record_error(
                record,
                None,
                InvalidValue::new(
                    "Identity",
                    "The record has no Identity (or Domain). Allowed values: a domain name such as contoso.com.",
                ),
            ));
        };
        let identity = params::parse_partner_identity("Identity", &identity)
            .map_err(|e| self.record_error(record, None, e))?;
        let name = identity.to_string();
        self.once(format!("partner:{name}"), record, &name)?;
        let changes = params::partner_changes(fields.iter().map(|(n, v)| (*n, *v)))
            .map_err(|e| self.record_error(record, Some(name.clone()), e))?;
        let manager = self.manager;
        let current = manager
            .store
            .partner(&identity)
            .map_err(|e| self.record_error(record, Some(name.clone()), e))?;
        let outcome = match &current {
            Some(_) => manager.set_partner(
                &SetTarget::Identity(identity.clone()),
                &changes,
                None,
                Mode::WhatIf,
            ),
            None => manager.new_partner(identity.clone(), &changes, Mode::WhatIf),
        }
        .map_err(|e| self.record_error(record, Some(name.clone()), e))?;
        let after = outcome.value;
        for pattern in after.patterns() {
            let text = pattern.to_string();
            if let Some((owner, at)) = self
                .claimed
                .insert(text.clone(), (identity.clone(), record.location.clone()))
            {
                if owner != identity {
                    return Err(self.record_error(
                        record,
                        Some(name.clone()),
                        ManageError::Refused(format!(
                            "The domain '{text}' is also claimed by the partner '{owner}' at {at} of this file; a domain belongs to one partner."
                        )),
                    ));
                }
            }
        }
        let before = current.as_ref().map(|c| c.value.clone());
        let action = self.item(
            record,
            RecordKind::Partner,
            name,
            before.as_ref().map(json),
            json(&after),
            before.as_ref() == Some(&after),
            outcome.warnings,
        );
        if action != Action::Unchanged {
            self.batch
                .partners
                .push((after, current.map(|c| c.version)));
        }
        Ok(())
    }

    fn policy(&mut self, record: &Record) -> Result<(), ImportError> {
        let mut identity = None;
        let mut fields: Vec<(&'static str, &ParamValue)> = Vec::new();
        for (name, value) in &record.fields {
            if name.eq_ignore_ascii_case("Identity") {
                identity = Some(
                    value
                        .text("Identity")
                        .map_err(|e| self.record_error(record, None, e))?,
                );
                continue;
            }
            match canonical(name, &POLICY_PARAMETERS) {
                Some(field) => fields.push((field, value)),
                None => self.unknown(RecordKind::Policy, name, record),
            }
        }
        let identity = identity.ok_or_else(|| {
            self.record_error(
                record,
                None,
                InvalidValue::new(
                    "Identity",
                    "The policy record has no Identity. Allowed values: Global, site:<name>, tag:<name>.",
                ),
            )
        })?;
        let scope =
            PolicyScope::parse(&identity).map_err(|e| self.record_error(record, None, e))?;
        let name = scope.to_string();
        self.once(format!("policy:{}", scope.key()), record, &name)?;
        let changes = params::policy_changes(fields.iter().map(|(n, v)| (*n, *v)))
            .map_err(|e| self.record_error(record, Some(name.clone()), e))?;
        let manager = self.manager;
        let current = manager
            .store
            .policy(&scope)
            .map_err(|e| self.record_error(record, Some(name.clone()), e))?;
        let outcome = match &current {
            Some(_) => manager.set_policy(&scope, None, &changes, None, Mode::WhatIf),
            None => manager.new_policy(scope.clone(), &changes, Mode::WhatIf),
        }
        .map_err(|e| self.record_error(record, Some(name.clone()), e))?;
        let after: ExternalAccessPolicy = outcome.value;
        let before = current.as_ref().map(|c| c.value.clone());
        let action = self.item(
            record,
            RecordKind::Policy,
            name,
            before.as_ref().map(json),
            json(&after),
            before.as_ref() == Some(&after),
            outcome.warnings,
        );
        if action != Action::Unchanged {
            self.batch
                .policies
                .push((after, current.map(|c| c.version)));
        }
        Ok(())
    }

    fn gateway(&mut self, record: &Record) -> Result<(), ImportError> {
        if let Some(first) = &self.gateway_seen {
            return Err(self.record_error(
                record,
                Some("Global".into()),
                ManageError::Refused(format!(
                    "The gateway configuration is already in this file at {first}; there is one."
                )),
            ));
        }
        self.gateway_seen = Some(record.location.clone());
        let mut fields: Vec<(&'static str, &ParamValue)> = Vec::new();
        for (name, value) in &record.fields {
            if name.eq_ignore_ascii_case("Identity") {
                let text = value
                    .text("Identity")
                    .map_err(|e| self.record_error(record, None, e))?;
                if !text.trim().eq_ignore_ascii_case("global") {
                    return Err(self.record_error(
                        record,
                        None,
                        InvalidValue::new(
                            "Identity",
                            format!(
                                "'{text}' is not a gateway configuration. Allowed values: Global."
                            ),
                        ),
                    ));
                }
                continue;
            }
            match canonical(name, &GATEWAY_PARAMETERS) {
                // Exports never carry the secret (Get shows it masked): keep the stored one.
                Some("DialbackPassphrase")
                    if matches!(value, ParamValue::Null)
                        || value
                            .text("DialbackPassphrase")
                            .is_ok_and(|t| t.is_empty() || t.chars().all(|c| c == '*')) =>
                {
                    self.warnings.add(
                        "DialbackPassphrase is masked or empty in the file; the stored secret is kept".into(),
                        &record.location,
                    );
                }
                Some(field) => fields.push((field, value)),
                None => self.unknown(RecordKind::GatewayConfiguration, name, record),
            }
        }
        let changes = params::gateway_changes(fields.iter().map(|(n, v)| (*n, *v)))
            .map_err(|e| self.record_error(record, Some("Global".into()), e))?;
        let manager = self.manager;
        let before: XmppGatewayConfiguration = manager
            .store
            .gateway_configuration()
            .map_err(|e| self.record_error(record, Some("Global".into()), e))?;
        let outcome = manager
            .set_gateway_configuration(None, &changes, Mode::WhatIf)
            .map_err(|e| self.record_error(record, Some("Global".into()), e))?;
        let after = outcome.value;
        let unchanged = before == after;
        let mut before_json = json(&before);
        // The secret is masked in both forms: show that it changes.
        if before.dialback_passphrase != after.dialback_passphrase {
            if let Value::Object(map) = &mut before_json {
                map.insert(
                    "DialbackPassphrase".into(),
                    Value::String("(another)".into()),
                );
            }
        }
        let action = self.item(
            record,
            RecordKind::GatewayConfiguration,
            "Global".into(),
            Some(before_json),
            json(&after),
            unchanged,
            outcome.warnings,
        );
        if action != Action::Unchanged {
            self.batch.gateway = Some(after);
        }
        Ok(())
    }

    /// Record what happens to one record; warnings only for records that change.
    #[allow(clippy::too_many_arguments)]
    fn item(
        &mut self,
        record: &Record,
        kind: RecordKind,
        identity: String,
        before: Option<Value>,
        after: Value,
        unchanged: bool,
        warnings: Vec<String>,
    ) -> Action {
        let (action, changes) = match before {
            None => (Action::Create, Vec::new()),
            Some(_) if unchanged => (Action::Unchanged, Vec::new()),
            Some(b) => (Action::Change, diff(&b, &after)),
        };
        if action != Action::Unchanged {
            for w in warnings {
                self.warnings.add(w, &record.location);
            }
        }
        self.items.push(ImportItem {
            location: record.location.clone(),
            kind,
            identity,
            action,
            changes,
        });
        action
    }
}

/// How many records between two progress calls.
pub const PROGRESS_STEP: usize = 500;

/// The command the audit log records for an import of `file`.
pub fn audit_command(file: &str) -> String {
    format!("Import-CsXmppAllowedPartner -Path '{file}'")
}

impl Manager<'_> {
    /// Import the file `file` (its name as given, for messages and the audit log) holding
    /// `bytes`. With [`Mode::WhatIf`] nothing is written; with [`Mode::Commit`] every created or
    /// changed record is written in one transaction, or none when any record is invalid.
    pub fn import(
        &self,
        file: &str,
        bytes: &[u8],
        mode: Mode,
    ) -> Result<ImportReport, ImportError> {
        self.import_with_progress(file, bytes, mode, &mut |_, _| {})
    }

    /// [`import`](Self::import), calling `progress(done, total)` as records are checked (every
    /// [`PROGRESS_STEP`] records and at the end) — for a progress bar on large files.
    pub fn import_with_progress(
        &self,
        file: &str,
        bytes: &[u8],
        mode: Mode,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<ImportReport, ImportError> {
        let (format, records) = formats::read(bytes).map_err(|error| ImportError::Format {
            file: file.to_owned(),
            error,
        })?;
        let mut run = Run {
            manager: self,
            file: file.to_owned(),
            batch: ImportBatch::default(),
            items: Vec::with_capacity(records.len()),
            warnings: Notes::default(),
            seen: HashMap::new(),
            claimed: HashMap::new(),
            gateway_seen: None,
        };
        let total = records.len();
        for (done, record) in records.iter().enumerate() {
            if done % PROGRESS_STEP == 0 {
                progress(done, total);
            }
            match kind_of(record) {
                RecordKind::Partner => run.partner(record)?,
                RecordKind::Policy => run.policy(record)?,
                RecordKind::GatewayConfiguration => run.gateway(record)?,
            }
        }
        progress(total, total);
        let committed = mode == Mode::Commit;
        if committed && !run.batch.is_empty() {
            self.store
                .import_records(&run.batch, &self.audit(&audit_command(file)))
                .map_err(|e: StoreError| ImportError::Store {
                    file: file.to_owned(),
                    error: Box::new(e.into()),
                })?;
        }
        let count = |a: Action| run.items.iter().filter(|i| i.action == a).count();
        Ok(ImportReport {
            file: file.to_owned(),
            format,
            committed,
            created: count(Action::Create),
            changed: count(Action::Change),
            unchanged: count(Action::Unchanged),
            warnings: run.warnings.into_lines(),
            items: run.items,
        })
    }

    /// The partner list as the SfB shell would have exported it in `format`.
    pub fn export_partners(&self, format: Format) -> Result<String, ManageError> {
        let partners: Vec<XmppAllowedPartner> = self
            .store
            .partners(None)?
            .into_iter()
            .map(|p| p.value)
            .collect();
        Ok(formats::write_partners(format, &partners))
    }
}
