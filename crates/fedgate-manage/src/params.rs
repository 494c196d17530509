//! Parameter values as both faces deliver them, and their conversion into typed changes.
//!
//! The CLI turns PowerShell values into [`ParamValue`], the REST API turns JSON into it; from here on
//! there is one conversion, so a bad value gets the same error text everywhere.

use fedgate_model::gateway_settings::{NUMERIC_SETTINGS, parse_dialback_passphrase};
use fedgate_model::partner::fields::{FieldKind, FieldValue, PartnerField, parse_domain_patterns};
use fedgate_model::{
    DomainPattern, InvalidValue, ListModifier, ListModifierKey, PartnerChanges, PolicyChanges,
    Secret,
};

use crate::fields;

/// A parameter value, before it is given a type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    Text(String),
    Bool(bool),
    Null,
    List(Vec<ParamValue>),
    Map(Vec<(String, ParamValue)>),
}

impl ParamValue {
    fn describe(&self) -> String {
        match self {
            ParamValue::Text(t) => t.clone(),
            ParamValue::Bool(true) => "$true".into(),
            ParamValue::Bool(false) => "$false".into(),
            ParamValue::Null => "$null".into(),
            ParamValue::List(items) => items
                .iter()
                .map(|i| i.describe())
                .collect::<Vec<_>>()
                .join(", "),
            ParamValue::Map(_) => "@{...}".into(),
        }
    }

    /// A single text value (a one-element list counts).
    pub fn text(&self, parameter: &str) -> Result<String, InvalidValue> {
        match self {
            ParamValue::Text(t) => Ok(t.clone()),
            ParamValue::List(items) if items.len() == 1 => items[0].text(parameter),
            other => Err(InvalidValue::new(
                parameter,
                format!(
                    "Cannot convert \"{}\" to \"System.String\": a single value is expected.",
                    other.describe()
                ),
            )),
        }
    }

    pub fn boolean(&self, parameter: &str) -> Result<bool, InvalidValue> {
        match self {
            ParamValue::Bool(b) => Ok(*b),
            ParamValue::Text(t) => InvalidValue::parse_bool(parameter, t),
            other => Err(InvalidValue::boolean(parameter, &other.describe())),
        }
    }

    fn list(&self) -> Vec<&ParamValue> {
        match self {
            ParamValue::List(items) => items.iter().flat_map(|i| i.list()).collect(),
            other => vec![other],
        }
    }

    fn texts(&self, parameter: &str) -> Result<Vec<String>, InvalidValue> {
        self.list().into_iter().map(|v| v.text(parameter)).collect()
    }
}

/// The fields New/Set-CsXmppAllowedPartner can set, with their PowerShell types, in help order
/// (from [`fields::PARTNER_FIELDS`]).
pub const PARTNER_PARAMETERS: [(&str, &str); fields::PARTNER_FIELDS.len()] =
    fields::names_and_types(&fields::PARTNER_FIELDS);

/// The fields New/Set-CsExternalAccessPolicy can set (from [`fields::POLICY_FIELDS`]).
pub const POLICY_PARAMETERS: [(&str, &str); fields::POLICY_FIELDS.len()] =
    fields::names_and_types(&fields::POLICY_FIELDS);

/// The fields Set-CsXmppGatewayConfiguration can set (from [`fields::GATEWAY_FIELDS`]).
pub const GATEWAY_PARAMETERS: [(&str, &str); fields::GATEWAY_FIELDS.len()] =
    fields::names_and_types(&fields::GATEWAY_FIELDS);

fn unknown(parameter: &str, allowed: &[(&str, &str)]) -> InvalidValue {
    let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
    InvalidValue::new(
        parameter,
        format!(
            "'{parameter}' is not a settable field. Allowed fields: {}.",
            names.join(", ")
        ),
    )
}

/// Canonical name of a field, matched without case.
pub(crate) fn canonical<'a>(name: &str, allowed: &'a [(&'a str, &'a str)]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|(n, _)| *n)
        .find(|n| n.eq_ignore_ascii_case(name))
}

fn domains(parameter: &str, texts: Vec<String>) -> Result<Vec<DomainPattern>, InvalidValue> {
    parse_domain_patterns(parameter, texts)
}

/// AdditionalDomains as a PSListModifier: a list replaces, a map edits, `$null` clears.
pub fn list_modifier(
    parameter: &str,
    value: &ParamValue,
) -> Result<ListModifier<DomainPattern>, InvalidValue> {
    match value {
        ParamValue::Null => Ok(ListModifier::Clear),
        ParamValue::Map(entries) => {
            let mut parsed = Vec::with_capacity(entries.len());
            for (key, v) in entries {
                let key = ListModifierKey::parse(key)
                    .map_err(|e| InvalidValue::new(parameter, format!("{e}.")))?;
                let items = match v {
                    ParamValue::Null => Vec::new(),
                    v => domains(parameter, v.texts(parameter)?)?,
                };
                parsed.push((key, items));
            }
            ListModifier::from_entries(parsed)
                .map_err(|e| InvalidValue::new(parameter, format!("{e}.")))
        }
        v => {
            // A single text may hold a comma-separated list (as typed in a Unix shell).
            let texts: Vec<String> = v
                .texts(parameter)?
                .iter()
                .flat_map(|t| {
                    t.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                })
                .collect();
            Ok(ListModifier::Set(domains(parameter, texts)?))
        }
    }
}

fn optional_text(value: &ParamValue, parameter: &str) -> Result<Option<String>, InvalidValue> {
    match value {
        ParamValue::Null => Ok(None),
        v => v.text(parameter).map(|t| Some(t).filter(|t| !t.is_empty())),
    }
}

/// Owned `(name, value)` pairs as the conversions below take them.
pub fn pairs<'a>(
    fields: &'a [(&'static str, ParamValue)],
) -> impl Iterator<Item = (&'a str, &'a ParamValue)> {
    fields.iter().map(|(n, v)| (*n, v))
}

/// Build partner changes from named values (names case-insensitive, as the field names): each
/// value is read by its field's kind ([`FieldKind`]) and parsed by the model's field table
/// ([`PartnerField::parse`]), so a new field of a known kind needs nothing here.
pub fn partner_changes<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a ParamValue)>,
) -> Result<PartnerChanges, InvalidValue> {
    let mut c = PartnerChanges::default();
    for (name, value) in params {
        let field = canonical(name, &PARTNER_PARAMETERS)
            .and_then(PartnerField::named)
            .ok_or_else(|| unknown(name, &PARTNER_PARAMETERS))?;
        let parameter = field.name();
        match field.kind() {
            FieldKind::DomainList => field.change_list(&mut c, list_modifier(parameter, value)?)?,
            FieldKind::Bool => field.change(&mut c, FieldValue::Bool(value.boolean(parameter)?))?,
            // A choice must be named: `$null` is not one.
            FieldKind::Choice(_) => field.change(&mut c, field.parse(&value.text(parameter)?)?)?,
            // `$null` or empty: the empty text, or unset where the field may be.
            FieldKind::Text | FieldKind::OptionalU32 | FieldKind::OptionalProxy => {
                let text = optional_text(value, parameter)?.unwrap_or_default();
                field.change(&mut c, field.parse(&text)?)?
            }
        }
    }
    Ok(c)
}

/// Build policy changes from named values.
pub fn policy_changes<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a ParamValue)>,
) -> Result<PolicyChanges, InvalidValue> {
    let mut c = PolicyChanges::default();
    for (name, value) in params {
        let field =
            canonical(name, &POLICY_PARAMETERS).ok_or_else(|| unknown(name, &POLICY_PARAMETERS))?;
        let slot = match field {
            "Description" => {
                c.description = Some(optional_text(value, field)?.unwrap_or_default());
                continue;
            }
            "EnableFederationAccess" => &mut c.enable_federation_access,
            "EnableXmppAccess" => &mut c.enable_xmpp_access,
            "EnableOutsideAccess" => &mut c.enable_outside_access,
            "EnablePublicCloudAccess" => &mut c.enable_public_cloud_access,
            _ => &mut c.enable_public_cloud_audio_video_access,
        };
        *slot = Some(value.boolean(field)?);
    }
    Ok(c)
}

/// Changes to the gateway-wide settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayChanges {
    /// (setting name, new value) for the numeric settings.
    pub numeric: Vec<(&'static str, u32)>,
    pub dialback_passphrase: Option<Secret>,
    pub enable_logging_all_message_bodies: Option<bool>,
}

pub fn gateway_changes<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a ParamValue)>,
) -> Result<GatewayChanges, InvalidValue> {
    let mut c = GatewayChanges::default();
    for (name, value) in params {
        let field = canonical(name, &GATEWAY_PARAMETERS)
            .ok_or_else(|| unknown(name, &GATEWAY_PARAMETERS))?;
        match field {
            "DialbackPassphrase" => {
                // Never echo a secret in an error, not even a mistyped one.
                let text = value.text(field).map_err(|_| {
                    InvalidValue::new(
                        field,
                        "A single text value is expected (the value is not shown).",
                    )
                })?;
                c.dialback_passphrase = Some(parse_dialback_passphrase(&text)?);
            }
            "EnableLoggingAllMessageBodies" => {
                c.enable_logging_all_message_bodies = Some(value.boolean(field)?)
            }
            _ => {
                let setting = NUMERIC_SETTINGS
                    .iter()
                    .find(|s| s.name == field)
                    .ok_or_else(|| unknown(name, &GATEWAY_PARAMETERS))?;
                c.numeric
                    .push((setting.name, setting.parse(&value.text(field)?)?));
            }
        }
    }
    Ok(c)
}

/// Convert a JSON value (REST bodies, `-Instance` objects) into a [`ParamValue`].
pub fn from_json(value: &serde_json::Value) -> ParamValue {
    use serde_json::Value as J;
    match value {
        J::Null => ParamValue::Null,
        J::Bool(b) => ParamValue::Bool(*b),
        J::Number(n) => ParamValue::Text(n.to_string()),
        J::String(s) => ParamValue::Text(s.clone()),
        J::Array(items) => ParamValue::List(items.iter().map(from_json).collect()),
        J::Object(map) => {
            ParamValue::Map(map.iter().map(|(k, v)| (k.clone(), from_json(v))).collect())
        }
    }
}

/// An object as `-Instance` or a REST body gives it: a JSON object with the cmdlets' field names
/// (`Identity` or `Domain`, then any settable field). Unknown keys are returned for a warning.
pub fn partner_from_json(
    value: &serde_json::Value,
) -> Result<(fedgate_model::XmppAllowedPartner, Vec<String>), InvalidValue> {
    let map = value.as_object().ok_or_else(|| {
        InvalidValue::new(
            "Instance",
            "A partner object is expected: a JSON object with Identity and the partner's fields.",
        )
    })?;
    let identity = ["Identity", "Domain"]
        .iter()
        .find_map(|k| map.iter().find(|(key, _)| key.eq_ignore_ascii_case(k)))
        .and_then(|(_, v)| v.as_str())
        .ok_or_else(|| InvalidValue::new("Instance", "The object has no Identity."))?;
    let identity = parse_partner_identity("Identity", identity)?;
    let mut fields = Vec::new();
    let mut ignored = Vec::new();
    for (key, v) in map {
        if key.eq_ignore_ascii_case("Identity") || key.eq_ignore_ascii_case("Domain") {
            continue;
        }
        match canonical(key, &PARTNER_PARAMETERS) {
            Some(name) => fields.push((name, from_json(v))),
            None => ignored.push(key.clone()),
        }
    }
    let changes = partner_changes(fields.iter().map(|(n, v)| (*n, v)))?;
    let mut partner = fedgate_model::XmppAllowedPartner::new(identity);
    changes.apply(&mut partner);
    Ok((partner, ignored))
}

/// A policy object (`-Instance`, REST): `Identity` plus any policy field.
pub fn policy_from_json(
    value: &serde_json::Value,
) -> Result<(fedgate_model::ExternalAccessPolicy, Vec<String>), InvalidValue> {
    let map = value.as_object().ok_or_else(|| {
        InvalidValue::new(
            "Instance",
            "A policy object is expected: a JSON object with Identity and the policy's fields.",
        )
    })?;
    let identity = map
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Identity"))
        .and_then(|(_, v)| v.as_str())
        .ok_or_else(|| InvalidValue::new("Instance", "The object has no Identity."))?;
    let scope = fedgate_model::PolicyScope::parse(identity)?;
    let mut fields = Vec::new();
    let mut ignored = Vec::new();
    for (key, v) in map {
        if key.eq_ignore_ascii_case("Identity") {
            continue;
        }
        match canonical(key, &POLICY_PARAMETERS) {
            Some(name) => fields.push((name, from_json(v))),
            None => ignored.push(key.clone()),
        }
    }
    let changes = policy_changes(fields.iter().map(|(n, v)| (*n, v)))?;
    let mut policy = fedgate_model::ExternalAccessPolicy::new(scope);
    changes.apply(&mut policy);
    Ok((policy, ignored))
}

/// The gateway settings as `-Instance` gives them: a JSON object with setting names (`Identity` and
/// the masked passphrase of an exported object are skipped; unknown names are refused).
pub fn gateway_from_json(
    value: &serde_json::Value,
) -> Result<fedgate_model::XmppGatewayConfiguration, InvalidValue> {
    let map = value
        .as_object()
        .ok_or_else(|| InvalidValue::new("Instance", "A JSON object is expected."))?;
    let fields: Vec<(&str, ParamValue)> = map
        .iter()
        .filter(|(k, v)| {
            let masked =
                k.eq_ignore_ascii_case("DialbackPassphrase") && v.as_str() == Some("********");
            !k.eq_ignore_ascii_case("Identity") && !masked
        })
        .map(|(k, v)| (k.as_str(), from_json(v)))
        .collect();
    let changes = gateway_changes(fields.iter().map(|(k, v)| (*k, v)))?;
    let mut config = fedgate_model::XmppGatewayConfiguration::default();
    for (name, value) in &changes.numeric {
        if let Some(f) = config.numeric_mut(name) {
            *f = *value;
        }
    }
    config.dialback_passphrase = changes.dialback_passphrase;
    if let Some(v) = changes.enable_logging_all_message_bodies {
        config.enable_logging_all_message_bodies = v;
    }
    Ok(config)
}

/// A Get's `-Identity`: one partner's domain; wildcards belong to `-Filter`.
pub fn partner_lookup(text: &str) -> Result<fedgate_model::Domain, InvalidValue> {
    if text.contains('*') || text.contains('?') {
        return Err(InvalidValue::new(
            "Identity",
            "Identity does not accept wildcards. Allowed values: a domain name; use -Filter for wildcards.",
        ));
    }
    parse_partner_identity("Identity", text)
}

/// A partner Identity as typed: a plain domain (no wildcard), with an error naming `parameter`.
pub fn parse_partner_identity(
    parameter: &str,
    text: &str,
) -> Result<fedgate_model::Domain, InvalidValue> {
    fedgate_model::Domain::parse(text).map_err(|e| {
        InvalidValue::new(
            parameter,
            format!("{e}. Allowed values: a domain name such as contoso.com."),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedgate_model::{PartnerType, SaslNegotiation, TlsNegotiation};

    fn t(s: &str) -> ParamValue {
        ParamValue::Text(s.into())
    }

    fn changes(pairs: &[(&str, ParamValue)]) -> Result<PartnerChanges, InvalidValue> {
        partner_changes(pairs.iter().map(|(n, v)| (*n, v)))
    }

    #[test]
    fn every_partner_parameter_valid_values() {
        let c = changes(&[
            (
                "additionaldomains",
                ParamValue::List(vec![t("a.com"), t("*.b.com")]),
            ),
            ("Description", t("Contact: bob@fabrikam.com")),
            ("PartnerType", t("federated")),
            ("TlsNegotiation", t("Optional")),
            ("SaslNegotiation", t("NotSupported")),
            ("SupportDialbackNegotiation", ParamValue::Bool(true)),
            ("EnableKeepAlive", t("0")),
            ("ConnectionLimit", t("25")),
            ("ProxyFqdn", t("proxy.fabrikam.com:5270")),
            ("BypassDualWrite", t("$true")),
        ])
        .unwrap();
        assert_eq!(c.partner_type, Some(PartnerType::Federated));
        assert_eq!(c.tls_negotiation, Some(TlsNegotiation::Optional));
        assert_eq!(c.sasl_negotiation, Some(SaslNegotiation::NotSupported));
        assert_eq!(c.enable_keep_alive, Some(false));
        assert_eq!(c.connection_limit, Some(Some(25)));
        assert_eq!(
            c.proxy_fqdn.unwrap().unwrap().to_string(),
            "proxy.fabrikam.com:5270"
        );
        assert_eq!(c.bypass_dual_write, Some(true));
        assert!(matches!(c.additional_domains, Some(ListModifier::Set(ref v)) if v.len() == 2));
    }

    #[test]
    fn every_partner_parameter_invalid_values_name_parameter_and_allowed() {
        let cases: &[(&str, ParamValue, &str)] = &[
            ("AdditionalDomains", t("not a domain"), "Allowed values"),
            (
                "AdditionalDomains",
                ParamValue::Map(vec![("Append".into(), t("a.com"))]),
                "Add, Remove, Replace",
            ),
            (
                "Description",
                ParamValue::List(vec![t("a"), t("b")]),
                "single value",
            ),
            (
                "PartnerType",
                t("Trusted"),
                "Federated, PublicVerified, PublicUnverified",
            ),
            (
                "TlsNegotiation",
                t("Maybe"),
                "Required, Optional, NotSupported",
            ),
            (
                "SaslNegotiation",
                t("Yes"),
                "Required, Optional, NotSupported",
            ),
            ("SupportDialbackNegotiation", t("yes"), "$true, $false"),
            ("EnableKeepAlive", t("2"), "$true, $false"),
            ("ConnectionLimit", t("-1"), "1 to 4294967295"),
            ("ProxyFqdn", t("http://proxy"), "Allowed values"),
            ("BypassDualWrite", ParamValue::Map(vec![]), "$true, $false"),
        ];
        for (name, value, allowed) in cases {
            let e = changes(&[(name, value.clone())]).unwrap_err();
            assert_eq!(e.parameter, *name);
            assert!(e.to_string().contains(allowed), "{name}: {e}");
        }
        let e = changes(&[("Colour", t("red"))]).unwrap_err();
        assert!(
            e.to_string().contains("Allowed fields: AdditionalDomains"),
            "{e}"
        );
    }

    /// The manage crate's field table (help, binder, name checks) and the model's (store,
    /// conversions, formats) list the same fields in the same order.
    #[test]
    fn the_parameter_table_is_the_models_field_table() {
        let names: Vec<&str> = PARTNER_PARAMETERS.iter().map(|(n, _)| *n).collect();
        let model: Vec<&str> = PartnerField::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(names, model);
    }

    #[test]
    fn list_modifier_forms() {
        let m = list_modifier("AdditionalDomains", &ParamValue::Null).unwrap();
        assert_eq!(m, ListModifier::Clear);
        let m = list_modifier("AdditionalDomains", &t("a.com,b.com")).unwrap();
        assert!(matches!(m, ListModifier::Set(v) if v.len() == 2));
        let m = list_modifier(
            "AdditionalDomains",
            &ParamValue::Map(vec![
                ("add".into(), ParamValue::List(vec![t("a.com"), t("b.com")])),
                ("REMOVE".into(), t("c.com")),
            ]),
        )
        .unwrap();
        assert!(
            matches!(m, ListModifier::Modify { ref add, ref remove, replace: None } if add.len() == 2 && remove.len() == 1)
        );
        let dup = list_modifier(
            "AdditionalDomains",
            &ParamValue::Map(vec![("Add".into(), t("a.com")), ("add".into(), t("b.com"))]),
        );
        assert!(dup.unwrap_err().to_string().contains("more than once"));
    }

    #[test]
    fn clearing_values() {
        let c = changes(&[
            ("ConnectionLimit", ParamValue::Null),
            ("ProxyFqdn", t("")),
            ("Description", ParamValue::Null),
        ])
        .unwrap();
        assert_eq!(c.connection_limit, Some(None));
        assert_eq!(c.proxy_fqdn, Some(None));
        assert_eq!(c.description, Some(String::new()));
    }

    #[test]
    fn gateway_and_policy_parameters() {
        let g = gateway_changes([
            ("keepaliveinterval", &t("120")),
            ("EnableLoggingAllMessageBodies", &ParamValue::Bool(true)),
        ])
        .unwrap();
        assert_eq!(g.numeric, vec![("KeepAliveInterval", 120)]);
        assert_eq!(g.enable_logging_all_message_bodies, Some(true));
        let e = gateway_changes([("StreamEstablishmentTimeout", &t("0"))]).unwrap_err();
        assert!(e.to_string().contains("1 to 3600"), "{e}");
        let e = gateway_changes([("DialbackPassphrase", &t("short"))]).unwrap_err();
        assert!(
            !e.to_string().contains("short\""),
            "the secret is not echoed: {e}"
        );
        let p = policy_changes([("EnableXmppAccess", &ParamValue::Bool(true))]).unwrap();
        assert_eq!(p.enable_xmpp_access, Some(true));
        assert!(policy_changes([("EnableXmppAccess", &t("maybe"))]).is_err());
    }
}
