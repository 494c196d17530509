//! JSON as `ConvertTo-Json` writes it: one object, or an array of objects, with the property names
//! as keys. Enums must be written as their names (`ConvertTo-Json -EnumsAsStrings` in PowerShell
//! 7); Windows PowerShell writes an enum's number, which this reader refuses with a message saying
//! how to export the names — a number cannot be trusted to mean the same value here.
//! Nesting is limited by serde_json's recursion limit (128).
//!
//! `ConvertTo-Json` of a live object writes its `Identity` (an `XdsIdentity`, not a string) as a
//! nested object whose members depend on the PowerShell version. A partner record also carries
//! `Domain`, which names the same domain as text, so such an `Identity` is left out there; any other
//! record with an object `Identity` is refused with the command that exports it as text.

use fedgate_model::XmppAllowedPartner;
use fedgate_model::partner::fields::{FieldKind, PartnerField};
use serde_json::{Map, Value};

use super::{FormatError, Record};
use crate::params::{ParamValue, from_json};

/// The enum fields (partner fields of the choice kind) and their allowed names.
fn enum_names(field: &str) -> Option<(&'static str, String)> {
    let field = PartnerField::named(field)?;
    match field.kind() {
        FieldKind::Choice(kind) => Some((field.name(), (kind.allowed_names)())),
        _ => None,
    }
}

/// Read the objects of a `ConvertTo-Json` file.
pub fn read(text: &str) -> Result<Vec<Record>, FormatError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        FormatError::new(
            Some(format!("line {}", e.line())),
            format!("not valid JSON: {e}."),
        )
    })?;
    let items = match value {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        _ => {
            return Err(FormatError::new(
                None,
                "the JSON file holds neither an object nor an array of objects.",
            ));
        }
    };
    let mut records = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let location = format!("item {}", index + 1);
        let Value::Object(map) = item else {
            return Err(FormatError::new(
                Some(location),
                "not an object; ConvertTo-Json of the objects is expected.",
            ));
        };
        let has_text_domain = map
            .iter()
            .any(|(key, value)| key.eq_ignore_ascii_case("Domain") && value.is_string());
        let mut fields = Vec::with_capacity(map.len());
        for (key, value) in map {
            if key.eq_ignore_ascii_case("Identity") && value.is_object() {
                if has_text_domain {
                    continue;
                }
                return Err(FormatError::new(
                    Some(location),
                    "Cannot bind parameter 'Identity'. It is an object (ConvertTo-Json wrote the XdsIdentity's properties), not its text. Allowed values: the identity as text, such as contoso.com, Global or Tag:Name. Export it as text: Select-Object @{n='Identity';e={\"$($_.Identity)\"}}, * -ExcludeProperty Identity before ConvertTo-Json.",
                ));
            }
            if let (Some((field, allowed)), Value::Number(n)) = (enum_names(key), value) {
                return Err(FormatError::new(
                    Some(location),
                    format!(
                        "Cannot bind parameter '{field}'. The value {n} is the enum's number, not its name. Allowed values: {allowed}. Export the names: ConvertTo-Json -EnumsAsStrings (PowerShell 7), or in Windows PowerShell Select-Object *, @{{n='{field}';e={{\"$($_.{field})\"}}}} -ExcludeProperty {field} before ConvertTo-Json."
                    ),
                ));
            }
            let value: ParamValue = from_json(value);
            fields.push((key.clone(), value));
        }
        records.push(Record {
            location,
            type_names: Vec::new(),
            fields,
        });
    }
    Ok(records)
}

/// A partner as `ConvertTo-Json` writes it: `Identity`, `Domain`, then every field of the model's
/// field table in order.
fn partner_object(p: &XmppAllowedPartner) -> Value {
    let identity = Value::String(p.identity.to_string());
    let mut object = Map::new();
    object.insert("Identity".into(), identity.clone());
    object.insert("Domain".into(), identity);
    for field in PartnerField::ALL {
        // Plain strings, numbers and booleans always convert.
        let value = serde_json::to_value(field.get(p)).unwrap_or_default();
        object.insert(field.name().into(), value);
    }
    Value::Object(object)
}

/// The partners as `Get-CsXmppAllowedPartner | ConvertTo-Json -EnumsAsStrings` writes them: one
/// object alone, an array otherwise (`[]` when there is none).
pub fn write_partners(partners: &[XmppAllowedPartner]) -> String {
    let objects: Vec<Value> = partners.iter().map(partner_object).collect();
    let text = match objects.as_slice() {
        [one] => serde_json::to_string_pretty(one),
        many => serde_json::to_string_pretty(many),
    };
    // Plain strings, numbers and booleans always serialize.
    let mut text = text.unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> ParamValue {
        ParamValue::Text(s.into())
    }

    #[test]
    fn reads_objects_and_arrays() {
        let one = r#"{"Identity": "contoso.com", "AdditionalDomains": ["a.contoso.com"], "ConnectionLimit": null, "EnableKeepAlive": false, "PartnerType": "Federated"}"#;
        let records = read(one).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].location, "item 1");
        assert_eq!(
            records[0].fields,
            vec![
                ("Identity".into(), t("contoso.com")),
                (
                    "AdditionalDomains".into(),
                    ParamValue::List(vec![t("a.contoso.com")])
                ),
                ("ConnectionLimit".into(), ParamValue::Null),
                ("EnableKeepAlive".into(), ParamValue::Bool(false)),
                ("PartnerType".into(), t("Federated")),
            ]
        );
        let many = r#"[{"Identity": "a.com", "ConnectionLimit": 5}, {"Identity": "b.com"}]"#;
        let records = read(many).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].location, "item 2");
        assert_eq!(records[0].fields[1].1, t("5"));
    }

    #[test]
    fn refuses_enum_numbers_with_how_to_export_names() {
        let text = r#"[{"Identity": "a.com"}, {"Identity": "b.com", "TlsNegotiation": 1}]"#;
        let e = read(text).unwrap_err();
        assert_eq!(e.location.as_deref(), Some("item 2"));
        assert!(e.message.contains("'TlsNegotiation'"), "{e}");
        assert!(
            e.message.contains("Required, Optional, NotSupported"),
            "{e}"
        );
        assert!(e.message.contains("-EnumsAsStrings"), "{e}");
        assert!(read("[1]").unwrap_err().to_string().contains("item 1"));
        assert!(read("{\"a\": ").unwrap_err().to_string().contains("line 1"));
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(read(&deep).is_err(), "serde_json's recursion limit");
    }

    #[test]
    fn an_object_identity_gives_way_to_the_domain_or_is_refused_with_how_to_export_it() {
        let live = r#"{"Identity": {"ScopeClass": 1, "InstanceId": "x"}, "Domain": "contoso.com", "PartnerType": "Federated"}"#;
        let records = read(live).unwrap();
        assert_eq!(
            records[0].fields,
            vec![
                ("Domain".into(), t("contoso.com")),
                ("PartnerType".into(), t("Federated")),
            ]
        );
        let policy = r#"[{"Identity": "Global"}, {"Identity": {"ScopeClass": 2}, "EnableFederationAccess": true}]"#;
        let e = read(policy).unwrap_err();
        assert_eq!(e.location.as_deref(), Some("item 2"));
        assert!(e.message.contains("'Identity'"), "{e}");
        assert!(e.message.contains("-ExcludeProperty Identity"), "{e}");
    }
}
