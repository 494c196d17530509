//! The partner record's settable fields, described once: each field's name, its store column, the
//! kind of its value, how to read it from a record ([`PartnerField::get`]) and how to apply a value
//! to [`PartnerChanges`] ([`PartnerField::change`]), and how a text as admins type it becomes a value
//! ([`PartnerField::parse`]). The store's column lists, the manage crate's parameter conversion and
//! the import/export formats walk [`PartnerField::ALL`] and treat each value by its
//! [`FieldKind`], so a new field of an existing kind is a new variant here (the compiler then asks
//! for its arm in each `match` below), its row in the manage field table and a store migration.

use serde::Serialize;

use super::{PartnerChanges, ProxyTarget, XmppAllowedPartner, parse_connection_limit};
use crate::choice::{Choice, PartnerType, SaslNegotiation, TlsNegotiation};
use crate::domain::DomainPattern;
use crate::error::InvalidValue;
use crate::list_modifier::ListModifier;

/// A settable field of [`XmppAllowedPartner`] (Identity is the key, not a field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartnerField {
    AdditionalDomains,
    Description,
    PartnerType,
    TlsNegotiation,
    SaslNegotiation,
    SupportDialbackNegotiation,
    EnableKeepAlive,
    ConnectionLimit,
    ProxyFqdn,
    BypassDualWrite,
}

/// An enum a field's value is one of, by name.
#[derive(Debug, Clone, Copy)]
pub struct ChoiceKind {
    /// The enum's type name (`TlsNegotiation`), as PowerShell and CliXML name it.
    pub type_name: &'static str,
    /// Its names, `A, B, C`, for error messages.
    pub allowed_names: fn() -> String,
}

impl ChoiceKind {
    pub const fn of<T: Choice>() -> ChoiceKind {
        ChoiceKind {
            type_name: T::TYPE_NAME,
            allowed_names: T::allowed_names,
        }
    }
}

impl PartialEq for ChoiceKind {
    fn eq(&self, other: &Self) -> bool {
        self.type_name == other.type_name
    }
}

impl Eq for ChoiceKind {}

/// What kind of value a field holds; every consumer of the table treats values by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Free text, never unset (empty instead).
    Text,
    Bool,
    /// A number from 1 up, or unset.
    OptionalU32,
    /// One of an enum's names.
    Choice(ChoiceKind),
    /// `host[:port]`, or unset.
    OptionalProxy,
    /// Domain patterns; changed by list modifiers; stored as rows of their own, not a column.
    DomainList,
}

/// A field's value, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    Text(String),
    Bool(bool),
    OptionalU32(Option<u32>),
    /// A value of the field's enum: its canonical name and its number (its position in the enum's
    /// list, as PowerShell numbers it).
    Choice {
        name: &'static str,
        number: usize,
    },
    OptionalProxy(Option<ProxyTarget>),
    DomainList(Vec<DomainPattern>),
}

impl FieldValue {
    /// The value of an enum.
    pub fn choice<T: Choice + PartialEq>(value: T) -> FieldValue {
        FieldValue::Choice {
            name: value.name(),
            number: T::ALL.iter().position(|v| *v == value).unwrap_or(0),
        }
    }
}

/// JSON as `ConvertTo-Json -EnumsAsStrings` writes it: enums and proxies by name, unset as null,
/// lists as arrays of texts.
impl Serialize for FieldValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FieldValue::Text(t) => s.serialize_str(t),
            FieldValue::Bool(b) => s.serialize_bool(*b),
            FieldValue::OptionalU32(n) => n.serialize(s),
            FieldValue::Choice { name, .. } => s.serialize_str(name),
            FieldValue::OptionalProxy(p) => p.as_ref().map(|t| t.to_string()).serialize(s),
            FieldValue::DomainList(list) => s.collect_seq(list.iter().map(|d| d.to_string())),
        }
    }
}

/// The domain patterns of a comma-separated text, with the error every face gives.
pub fn parse_domain_patterns(
    parameter: &str,
    texts: impl IntoIterator<Item = impl AsRef<str>>,
) -> Result<Vec<DomainPattern>, InvalidValue> {
    texts
        .into_iter()
        .map(|t| {
            DomainPattern::parse(t.as_ref()).map_err(|e| {
                InvalidValue::new(
                    parameter,
                    format!("{e}. Allowed values: domain names such as fabrikam.com, or *.fabrikam.com for every subdomain."),
                )
            })
        })
        .collect()
}

impl PartnerField {
    /// Every field, in the order outputs and help list them.
    pub const ALL: [PartnerField; 10] = [
        PartnerField::AdditionalDomains,
        PartnerField::Description,
        PartnerField::PartnerType,
        PartnerField::TlsNegotiation,
        PartnerField::SaslNegotiation,
        PartnerField::SupportDialbackNegotiation,
        PartnerField::EnableKeepAlive,
        PartnerField::ConnectionLimit,
        PartnerField::ProxyFqdn,
        PartnerField::BypassDualWrite,
    ];

    /// The cmdlet parameter and property name (`PartnerType`).
    pub const fn name(self) -> &'static str {
        match self {
            PartnerField::AdditionalDomains => "AdditionalDomains",
            PartnerField::Description => "Description",
            PartnerField::PartnerType => "PartnerType",
            PartnerField::TlsNegotiation => "TlsNegotiation",
            PartnerField::SaslNegotiation => "SaslNegotiation",
            PartnerField::SupportDialbackNegotiation => "SupportDialbackNegotiation",
            PartnerField::EnableKeepAlive => "EnableKeepAlive",
            PartnerField::ConnectionLimit => "ConnectionLimit",
            PartnerField::ProxyFqdn => "ProxyFqdn",
            PartnerField::BypassDualWrite => "BypassDualWrite",
        }
    }

    /// The column of the store's `partners` table; `None` for the domain list, whose patterns are
    /// rows of `partner_domains`.
    pub const fn column(self) -> Option<&'static str> {
        match self {
            PartnerField::AdditionalDomains => None,
            PartnerField::Description => Some("description"),
            PartnerField::PartnerType => Some("partner_type"),
            PartnerField::TlsNegotiation => Some("tls_negotiation"),
            PartnerField::SaslNegotiation => Some("sasl_negotiation"),
            PartnerField::SupportDialbackNegotiation => Some("support_dialback"),
            PartnerField::EnableKeepAlive => Some("enable_keep_alive"),
            PartnerField::ConnectionLimit => Some("connection_limit"),
            PartnerField::ProxyFqdn => Some("proxy_fqdn"),
            PartnerField::BypassDualWrite => Some("bypass_dual_write"),
        }
    }

    pub const fn kind(self) -> FieldKind {
        match self {
            PartnerField::AdditionalDomains => FieldKind::DomainList,
            PartnerField::Description => FieldKind::Text,
            PartnerField::PartnerType => FieldKind::Choice(ChoiceKind::of::<PartnerType>()),
            PartnerField::TlsNegotiation => FieldKind::Choice(ChoiceKind::of::<TlsNegotiation>()),
            PartnerField::SaslNegotiation => FieldKind::Choice(ChoiceKind::of::<SaslNegotiation>()),
            PartnerField::SupportDialbackNegotiation
            | PartnerField::EnableKeepAlive
            | PartnerField::BypassDualWrite => FieldKind::Bool,
            PartnerField::ConnectionLimit => FieldKind::OptionalU32,
            PartnerField::ProxyFqdn => FieldKind::OptionalProxy,
        }
    }

    /// The field named `name`, without case.
    pub fn named(name: &str) -> Option<PartnerField> {
        PartnerField::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
    }

    /// The field's value in `p`.
    pub fn get(self, p: &XmppAllowedPartner) -> FieldValue {
        match self {
            PartnerField::AdditionalDomains => FieldValue::DomainList(p.additional_domains.clone()),
            PartnerField::Description => FieldValue::Text(p.description.clone()),
            PartnerField::PartnerType => FieldValue::choice(p.partner_type),
            PartnerField::TlsNegotiation => FieldValue::choice(p.tls_negotiation),
            PartnerField::SaslNegotiation => FieldValue::choice(p.sasl_negotiation),
            PartnerField::SupportDialbackNegotiation => {
                FieldValue::Bool(p.support_dialback_negotiation)
            }
            PartnerField::EnableKeepAlive => FieldValue::Bool(p.enable_keep_alive),
            PartnerField::ConnectionLimit => FieldValue::OptionalU32(p.connection_limit),
            PartnerField::ProxyFqdn => FieldValue::OptionalProxy(p.proxy_fqdn.clone()),
            PartnerField::BypassDualWrite => FieldValue::Bool(p.bypass_dual_write),
        }
    }

    /// The value of one text as admins type it (or as the store keeps it): a choice by name
    /// (without case), a boolean as `$true`/`true`/`1`, a number, `host[:port]`, comma-separated
    /// domains; empty or `$null` is unset where the field may be. The errors name the field and
    /// the allowed values.
    pub fn parse(self, text: &str) -> Result<FieldValue, InvalidValue> {
        let name = self.name();
        Ok(match self {
            PartnerField::AdditionalDomains => FieldValue::DomainList(parse_domain_patterns(
                name,
                text.split(',').map(str::trim).filter(|s| !s.is_empty()),
            )?),
            PartnerField::Description => FieldValue::Text(text.to_owned()),
            PartnerField::PartnerType => {
                FieldValue::choice(InvalidValue::parse_choice::<PartnerType>(name, text)?)
            }
            PartnerField::TlsNegotiation => {
                FieldValue::choice(InvalidValue::parse_choice::<TlsNegotiation>(name, text)?)
            }
            PartnerField::SaslNegotiation => {
                FieldValue::choice(InvalidValue::parse_choice::<SaslNegotiation>(name, text)?)
            }
            PartnerField::SupportDialbackNegotiation
            | PartnerField::EnableKeepAlive
            | PartnerField::BypassDualWrite => {
                FieldValue::Bool(InvalidValue::parse_bool(name, text)?)
            }
            PartnerField::ConnectionLimit => FieldValue::OptionalU32(parse_connection_limit(text)?),
            PartnerField::ProxyFqdn => FieldValue::OptionalProxy(if text.is_empty() {
                None
            } else {
                Some(ProxyTarget::parse(text)?)
            }),
        })
    }

    /// Set the field to `value` in `changes` (a domain list replaces the list). A value of
    /// another kind than the field's is refused.
    pub fn change(
        self,
        changes: &mut PartnerChanges,
        value: FieldValue,
    ) -> Result<(), InvalidValue> {
        let c = changes;
        match (self, value) {
            (PartnerField::AdditionalDomains, FieldValue::DomainList(v)) => {
                c.additional_domains = Some(ListModifier::Set(v))
            }
            (PartnerField::Description, FieldValue::Text(v)) => c.description = Some(v),
            (PartnerField::PartnerType, FieldValue::Choice { name, .. }) => {
                c.partner_type = Some(self.choice(name)?)
            }
            (PartnerField::TlsNegotiation, FieldValue::Choice { name, .. }) => {
                c.tls_negotiation = Some(self.choice(name)?)
            }
            (PartnerField::SaslNegotiation, FieldValue::Choice { name, .. }) => {
                c.sasl_negotiation = Some(self.choice(name)?)
            }
            (PartnerField::SupportDialbackNegotiation, FieldValue::Bool(v)) => {
                c.support_dialback_negotiation = Some(v)
            }
            (PartnerField::EnableKeepAlive, FieldValue::Bool(v)) => c.enable_keep_alive = Some(v),
            (PartnerField::ConnectionLimit, FieldValue::OptionalU32(v)) => {
                c.connection_limit = Some(v)
            }
            (PartnerField::ProxyFqdn, FieldValue::OptionalProxy(v)) => c.proxy_fqdn = Some(v),
            (PartnerField::BypassDualWrite, FieldValue::Bool(v)) => c.bypass_dual_write = Some(v),
            (field, value) => {
                return Err(InvalidValue::new(
                    field.name(),
                    format!("A {:?} value is expected, not {value:?}.", field.kind()),
                ));
            }
        }
        Ok(())
    }

    /// Change the field's list by `modifier`; only a domain list field takes one.
    pub fn change_list(
        self,
        changes: &mut PartnerChanges,
        modifier: ListModifier<DomainPattern>,
    ) -> Result<(), InvalidValue> {
        match self {
            PartnerField::AdditionalDomains => changes.additional_domains = Some(modifier),
            field => {
                return Err(InvalidValue::new(
                    field.name(),
                    format!("A {:?} value is expected, not a list.", field.kind()),
                ));
            }
        }
        Ok(())
    }

    fn choice<T: Choice>(self, name: &str) -> Result<T, InvalidValue> {
        InvalidValue::parse_choice::<T>(self.name(), name)
    }
}

/// The record's fields in output order: `Identity` and `Domain` (both the primary domain), then
/// [`PartnerField::ALL`].
pub const fn output_names<const N: usize>() -> [&'static str; N] {
    let mut out = [""; N];
    out[0] = "Identity";
    out[1] = "Domain";
    let mut i = 0;
    while i < PartnerField::ALL.len() {
        out[i + 2] = PartnerField::ALL[i].name();
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Domain;

    fn partner() -> XmppAllowedPartner {
        XmppAllowedPartner::new(Domain::parse("contoso.com").unwrap())
    }

    /// A text of a value of `field` other than the default, chosen by the field's kind (a new
    /// field of a known kind is covered without naming it here).
    fn other_text(field: PartnerField) -> String {
        let default = field.get(&partner());
        match field.kind() {
            FieldKind::DomainList => "a.contoso.net, *.contoso.org".into(),
            FieldKind::Text => "Contact: ops".into(),
            FieldKind::Choice(kind) => (kind.allowed_names)()
                .split(", ")
                .find(|n| field.parse(n).ok() != Some(default.clone()))
                .expect("an enum of two names or more")
                .to_lowercase(),
            FieldKind::Bool if default == FieldValue::Bool(true) => "$false".into(),
            FieldKind::Bool => "1".into(),
            FieldKind::OptionalU32 => "25".into(),
            FieldKind::OptionalProxy => "proxy.contoso.com:5270".into(),
        }
    }

    #[test]
    fn every_field_parses_changes_and_reads_back() {
        let mut changes = PartnerChanges::default();
        for field in PartnerField::ALL {
            let value = field.parse(&other_text(field)).unwrap();
            assert_ne!(value, field.get(&partner()), "{field:?} is not its default");
            field.change(&mut changes, value).unwrap();
        }
        let mut p = partner();
        changes.apply(&mut p);
        for field in PartnerField::ALL {
            assert_eq!(
                field.get(&p),
                field.parse(&other_text(field)).unwrap(),
                "{field:?}"
            );
        }
        assert_eq!(p.partner_type, PartnerType::Federated);
        assert_eq!(p.connection_limit, Some(25));
        assert_eq!(p.additional_domains.len(), 2);
    }

    #[test]
    fn names_kinds_and_columns() {
        let names = super::super::PARTNER_FIELDS;
        assert_eq!(names[..3], ["Identity", "Domain", "AdditionalDomains"]);
        assert!(
            names[2..]
                .iter()
                .zip(PartnerField::ALL)
                .all(|(n, f)| *n == f.name())
        );
        assert_eq!(names.len(), PartnerField::ALL.len() + 2);
        assert_eq!(
            PartnerField::named("partnertype"),
            Some(PartnerField::PartnerType)
        );
        assert_eq!(PartnerField::named("Colour"), None);
        let columns: Vec<&str> = PartnerField::ALL
            .iter()
            .filter_map(|f| f.column())
            .collect();
        let lists = PartnerField::ALL
            .iter()
            .filter(|f| f.kind() == FieldKind::DomainList)
            .count();
        assert_eq!(
            columns.len() + lists,
            PartnerField::ALL.len(),
            "every field but a domain list has a column"
        );
        assert!(columns.contains(&"partner_type") && !columns.contains(&"additional_domains"));
        assert_eq!(
            FieldValue::choice(SaslNegotiation::NotSupported),
            FieldValue::Choice {
                name: "NotSupported",
                number: 2
            }
        );
        let FieldKind::Choice(kind) = PartnerField::TlsNegotiation.kind() else {
            panic!("TlsNegotiation is a choice");
        };
        assert_eq!(kind.type_name, "TlsNegotiation");
        assert_eq!((kind.allowed_names)(), "Required, Optional, NotSupported");
    }

    #[test]
    fn bad_texts_and_wrong_kinds_name_the_field() {
        for (field, bad, allowed) in [
            (
                PartnerField::PartnerType,
                "Trusted",
                "Federated, PublicVerified",
            ),
            (PartnerField::EnableKeepAlive, "2", "$true, $false"),
            (PartnerField::ConnectionLimit, "0", "1 to 4294967295"),
            (PartnerField::ProxyFqdn, "http://x", "Allowed values"),
            (PartnerField::AdditionalDomains, "a b", "Allowed values"),
        ] {
            let e = field.parse(bad).unwrap_err();
            assert_eq!(e.parameter, field.name());
            assert!(e.reason.contains(allowed), "{field:?}: {e}");
        }
        assert_eq!(
            PartnerField::ConnectionLimit.parse("$null"),
            Ok(FieldValue::OptionalU32(None))
        );
        let mut c = PartnerChanges::default();
        let e = PartnerField::EnableKeepAlive
            .change(&mut c, FieldValue::Text("x".into()))
            .unwrap_err();
        assert_eq!(e.parameter, "EnableKeepAlive");
        assert!(
            PartnerField::Description
                .change_list(&mut c, ListModifier::Clear)
                .is_err()
        );
        assert!(c.is_empty());
    }

    #[test]
    fn values_serialize_as_convert_to_json_writes_them() {
        let mut p = partner();
        p.additional_domains = vec![DomainPattern::parse("*.contoso.org").unwrap()];
        p.proxy_fqdn = Some(ProxyTarget::parse("[::1]:5270").unwrap());
        let json = |f: PartnerField| serde_json::to_string(&f.get(&p)).unwrap();
        assert_eq!(
            json(PartnerField::AdditionalDomains),
            r#"["*.contoso.org"]"#
        );
        assert_eq!(json(PartnerField::PartnerType), r#""PublicUnverified""#);
        assert_eq!(json(PartnerField::ConnectionLimit), "null");
        assert_eq!(json(PartnerField::ProxyFqdn), r#""[::1]:5270""#);
        assert_eq!(json(PartnerField::EnableKeepAlive), "true");
    }
}
