//! The XMPP allowed-partner record (README, "The partner record"): its fields, defaults and rules,
//! and the set of changes New/Set may make to it.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::choice::{PartnerType, SaslNegotiation, TlsNegotiation};
use crate::domain::{Domain, DomainPattern};
use crate::error::InvalidValue;
use crate::list_modifier::ListModifier;
use crate::negotiation::{NegotiationSettings, NegotiationWarning};

pub mod fields;

/// Longest Description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
/// The port used when a ProxyFqdn names none.
pub const DEFAULT_S2S_PORT: u16 = 5269;

/// The field names, in the fixed order every output uses: `Identity`, `Domain`, then the settable
/// fields of [`fields::PartnerField::ALL`].
pub const PARTNER_FIELDS: [&str; fields::PartnerField::ALL.len() + 2] = fields::output_names();

/// One partner on the allowed-partners list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmppAllowedPartner {
    /// The primary domain; `Domain` is the same value.
    pub identity: Domain,
    pub additional_domains: Vec<DomainPattern>,
    pub description: String,
    pub partner_type: PartnerType,
    pub tls_negotiation: TlsNegotiation,
    pub sasl_negotiation: SaslNegotiation,
    pub support_dialback_negotiation: bool,
    pub enable_keep_alive: bool,
    /// None: the gateway-wide PartnerConnectionLimit applies.
    pub connection_limit: Option<u32>,
    pub proxy_fqdn: Option<ProxyTarget>,
    /// Accepted for compatibility with Skype for Business; has no effect.
    pub bypass_dual_write: bool,
}

impl XmppAllowedPartner {
    /// A partner with every field at its default.
    pub fn new(identity: Domain) -> Self {
        XmppAllowedPartner {
            identity,
            additional_domains: Vec::new(),
            description: String::new(),
            partner_type: PartnerType::default(),
            tls_negotiation: TlsNegotiation::default(),
            sasl_negotiation: SaslNegotiation::default(),
            support_dialback_negotiation: true,
            enable_keep_alive: true,
            connection_limit: None,
            proxy_fqdn: None,
            bypass_dual_write: false,
        }
    }

    pub fn negotiation(&self) -> NegotiationSettings {
        NegotiationSettings {
            tls: self.tls_negotiation,
            sasl: self.sasl_negotiation,
            dialback: self.support_dialback_negotiation,
        }
    }

    /// Every domain pattern the partner owns: Identity first, then AdditionalDomains.
    pub fn patterns(&self) -> impl Iterator<Item = DomainPattern> + '_ {
        std::iter::once(DomainPattern::Exact(self.identity.clone()))
            .chain(self.additional_domains.iter().cloned())
    }

    /// Check the rules that involve only this record. Returns the warnings to show.
    pub fn validate(&self) -> Result<Vec<NegotiationWarning>, InvalidValue> {
        check_description(&self.description)?;
        let own = DomainPattern::Exact(self.identity.clone());
        if self.additional_domains.contains(&own) {
            return Err(InvalidValue::new(
                "AdditionalDomains",
                format!(
                    "'{}' is the partner's Identity; AdditionalDomains lists other domains only.",
                    self.identity
                ),
            ));
        }
        if self.connection_limit == Some(0) {
            return Err(connection_limit_error("0"));
        }
        self.negotiation().validate().map_err(|e| {
            InvalidValue::new(
                "SupportDialbackNegotiation",
                format!("The combination is not valid: {e}."),
            )
        })
    }
}

/// The Description rules shared by partners and policies: at most 1024 characters, no control
/// characters (they would break the `Name : Value` output).
pub(crate) fn check_description(description: &str) -> Result<(), InvalidValue> {
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(InvalidValue::new(
            "Description",
            format!("The Description is longer than {MAX_DESCRIPTION_CHARS} characters."),
        ));
    }
    if description.chars().any(char::is_control) {
        return Err(InvalidValue::new(
            "Description",
            "The Description may not contain control characters (such as line breaks).",
        ));
    }
    Ok(())
}

pub(crate) fn connection_limit_error(value: &str) -> InvalidValue {
    InvalidValue::new(
        "ConnectionLimit",
        format!(
            "Cannot convert value \"{value}\" to type \"System.UInt32\" limit. Allowed values: 1 to 4294967295, or $null for the gateway's PartnerConnectionLimit."
        ),
    )
}

/// Parse a ConnectionLimit as typed: a number from 1 to 4294967295, or `$null`/empty for unset.
pub fn parse_connection_limit(text: &str) -> Result<Option<u32>, InvalidValue> {
    let t = text.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("$null") {
        return Ok(None);
    }
    match t.parse::<u32>() {
        Ok(0) | Err(_) => Err(connection_limit_error(text)),
        Ok(n) => Ok(Some(n)),
    }
}

/// Where outbound connections to a partner go instead of its SRV target: `host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProxyTarget {
    pub host: ProxyHost,
    /// None: look up SRV on the host first, then connect to port 5269.
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProxyHost {
    Name(Domain),
    Ip(IpAddr),
}

impl ProxyTarget {
    /// Parse `host`, `host:port`, `1.2.3.4:5269`, `[::1]:5269`.
    pub fn parse(text: &str) -> Result<ProxyTarget, InvalidValue> {
        let bad = |why: &str| {
            InvalidValue::new(
                "ProxyFqdn",
                format!(
                    "'{text}' is not a valid proxy: {why}. Allowed values: a host name or IP address with an optional port, as proxy.example.com, proxy.example.com:5269, 192.0.2.1:5269 or [2001:db8::1]:5269."
                ),
            )
        };
        let t = text.trim();
        let (host_text, port_text) = if let Some(rest) = t.strip_prefix('[') {
            let (inside, after) = rest.split_once(']').ok_or_else(|| bad("missing ']'"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("expected ':' after ']'"))?,
                ),
            };
            let ip: Ipv6Addr = inside.parse().map_err(|_| bad("not an IPv6 address"))?;
            return Ok(ProxyTarget {
                host: ProxyHost::Ip(IpAddr::V6(ip)),
                port: port
                    .map(|p| parse_port(p).ok_or_else(|| bad("the port must be 1 to 65535")))
                    .transpose()?,
            });
        } else {
            match t.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (t, None),
            }
        };
        let port = port_text
            .map(|p| parse_port(p).ok_or_else(|| bad("the port must be 1 to 65535")))
            .transpose()?;
        let host = match host_text.parse::<IpAddr>() {
            Ok(ip) => ProxyHost::Ip(ip),
            Err(_) => ProxyHost::Name(Domain::parse(host_text).map_err(|e| bad(&e.to_string()))?),
        };
        Ok(ProxyTarget { host, port })
    }
}

fn parse_port(text: &str) -> Option<u16> {
    match text.parse::<u16>() {
        Ok(0) | Err(_) => None,
        Ok(p) => Some(p),
    }
}

impl fmt::Display for ProxyTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.host, self.port) {
            (ProxyHost::Name(d), None) => write!(f, "{d}"),
            (ProxyHost::Name(d), Some(p)) => write!(f, "{d}:{p}"),
            (ProxyHost::Ip(IpAddr::V6(ip)), None) => write!(f, "[{ip}]"),
            (ProxyHost::Ip(IpAddr::V6(ip)), Some(p)) => write!(f, "[{ip}]:{p}"),
            (ProxyHost::Ip(ip), None) => write!(f, "{ip}"),
            (ProxyHost::Ip(ip), Some(p)) => write!(f, "{ip}:{p}"),
        }
    }
}

/// The changes a New or Set makes: `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartnerChanges {
    pub additional_domains: Option<ListModifier<DomainPattern>>,
    pub description: Option<String>,
    pub partner_type: Option<PartnerType>,
    pub tls_negotiation: Option<TlsNegotiation>,
    pub sasl_negotiation: Option<SaslNegotiation>,
    pub support_dialback_negotiation: Option<bool>,
    pub enable_keep_alive: Option<bool>,
    pub connection_limit: Option<Option<u32>>,
    pub proxy_fqdn: Option<Option<ProxyTarget>>,
    pub bypass_dual_write: Option<bool>,
}

impl PartnerChanges {
    pub fn is_empty(&self) -> bool {
        *self == PartnerChanges::default()
    }

    /// Apply to a record (validation is separate: see [`XmppAllowedPartner::validate`]).
    pub fn apply(&self, p: &mut XmppAllowedPartner) {
        if let Some(m) = &self.additional_domains {
            p.additional_domains = m.apply(&p.additional_domains);
        }
        if let Some(v) = &self.description {
            p.description.clone_from(v);
        }
        if let Some(v) = self.partner_type {
            p.partner_type = v;
        }
        if let Some(v) = self.tls_negotiation {
            p.tls_negotiation = v;
        }
        if let Some(v) = self.sasl_negotiation {
            p.sasl_negotiation = v;
        }
        if let Some(v) = self.support_dialback_negotiation {
            p.support_dialback_negotiation = v;
        }
        if let Some(v) = self.enable_keep_alive {
            p.enable_keep_alive = v;
        }
        if let Some(v) = self.connection_limit {
            p.connection_limit = v;
        }
        if let Some(v) = &self.proxy_fqdn {
            p.proxy_fqdn.clone_from(v);
        }
        if let Some(v) = self.bypass_dual_write {
            p.bypass_dual_write = v;
        }
    }
}

/// The record as scripts and the REST API see it: the cmdlets' field names (PascalCase, as in
/// README "The partner record"), in that order, enums by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PartnerView {
    pub identity: String,
    pub domain: String,
    pub additional_domains: Vec<String>,
    pub description: String,
    pub partner_type: PartnerType,
    pub tls_negotiation: TlsNegotiation,
    pub sasl_negotiation: SaslNegotiation,
    pub support_dialback_negotiation: bool,
    pub enable_keep_alive: bool,
    pub connection_limit: Option<u32>,
    pub proxy_fqdn: Option<String>,
    pub bypass_dual_write: bool,
}

impl From<&XmppAllowedPartner> for PartnerView {
    fn from(p: &XmppAllowedPartner) -> Self {
        PartnerView {
            identity: p.identity.to_string(),
            domain: p.identity.to_string(),
            additional_domains: p.additional_domains.iter().map(|d| d.to_string()).collect(),
            description: p.description.clone(),
            partner_type: p.partner_type,
            tls_negotiation: p.tls_negotiation,
            sasl_negotiation: p.sasl_negotiation,
            support_dialback_negotiation: p.support_dialback_negotiation,
            enable_keep_alive: p.enable_keep_alive,
            connection_limit: p.connection_limit,
            proxy_fqdn: p.proxy_fqdn.as_ref().map(|t| t.to_string()),
            bypass_dual_write: p.bypass_dual_write,
        }
    }
}

impl Serialize for XmppAllowedPartner {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        PartnerView::from(self).serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Domain {
        Domain::parse(s).unwrap()
    }

    #[test]
    fn defaults_match_design() {
        let p = XmppAllowedPartner::new(d("contoso.com"));
        assert_eq!(p.partner_type, PartnerType::PublicUnverified);
        assert_eq!(p.tls_negotiation, TlsNegotiation::Required);
        assert_eq!(p.sasl_negotiation, SaslNegotiation::Required);
        assert!(p.support_dialback_negotiation);
        assert!(p.enable_keep_alive);
        assert_eq!(p.connection_limit, None);
        assert_eq!(p.proxy_fqdn, None);
        assert!(!p.bypass_dual_write);
        assert!(p.additional_domains.is_empty() && p.description.is_empty());
        // Default negotiation is valid, with the "dialback never used" warning.
        assert_eq!(
            p.validate(),
            Ok(vec![NegotiationWarning::DialbackNeverUsed])
        );
    }

    #[test]
    fn view_has_design_field_names_in_order() {
        let p = XmppAllowedPartner::new(d("contoso.com"));
        let json = serde_json::to_value(&p).unwrap();
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        let mut expected: Vec<&str> = PARTNER_FIELDS.to_vec();
        expected.sort();
        let mut got: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
        got.sort();
        assert_eq!(got, expected);
        assert_eq!(json["Domain"], "contoso.com");
        assert_eq!(json["PartnerType"], "PublicUnverified");
        assert_eq!(json["EnableKeepAlive"], true);
        assert_eq!(json["ConnectionLimit"], serde_json::Value::Null);
    }

    #[test]
    fn description_rules() {
        let mut p = XmppAllowedPartner::new(d("contoso.com"));
        p.description = "x".repeat(1024);
        assert!(p.validate().is_ok());
        p.description = "é".repeat(1025);
        assert_eq!(p.validate().unwrap_err().parameter, "Description");
        p.description = "line\nbreak".into();
        assert_eq!(p.validate().unwrap_err().parameter, "Description");
    }

    #[test]
    fn identity_in_additional_domains_is_rejected() {
        let mut p = XmppAllowedPartner::new(d("contoso.com"));
        p.additional_domains = vec![DomainPattern::parse("contoso.com").unwrap()];
        assert_eq!(p.validate().unwrap_err().parameter, "AdditionalDomains");
        p.additional_domains = vec![DomainPattern::parse("*.contoso.com").unwrap()];
        assert!(p.validate().is_ok());
    }

    #[test]
    fn connection_limit_parsing() {
        assert_eq!(parse_connection_limit("10"), Ok(Some(10)));
        assert_eq!(parse_connection_limit("4294967295"), Ok(Some(u32::MAX)));
        assert_eq!(parse_connection_limit("$null"), Ok(None));
        for bad in ["0", "-1", "4294967296", "ten", "1.5"] {
            let e = parse_connection_limit(bad).unwrap_err();
            assert_eq!(e.parameter, "ConnectionLimit");
            assert!(e.reason.contains("1 to 4294967295"), "{e}");
        }
    }

    #[test]
    fn proxy_targets() {
        let ok = |s: &str| ProxyTarget::parse(s).unwrap().to_string();
        assert_eq!(ok("Proxy.Example.com"), "proxy.example.com");
        assert_eq!(ok("proxy.example.com:5270"), "proxy.example.com:5270");
        assert_eq!(ok("127.0.0.1:5270"), "127.0.0.1:5270");
        assert_eq!(ok("[::1]:5270"), "[::1]:5270");
        assert_eq!(ok("[2001:db8::1]"), "[2001:db8::1]");
        for bad in [
            "",
            "proxy.example.com:0",
            "proxy.example.com:99999",
            "http://x",
            "[::1",
            "a b",
            "[zz]:1",
        ] {
            let e = ProxyTarget::parse(bad).unwrap_err();
            assert_eq!(e.parameter, "ProxyFqdn", "{bad}");
            assert!(e.reason.contains("Allowed values"), "{bad}: {e}");
        }
    }

    #[test]
    fn changes_apply_only_what_is_given() {
        let mut p = XmppAllowedPartner::new(d("contoso.com"));
        let changes = PartnerChanges {
            partner_type: Some(PartnerType::Federated),
            connection_limit: Some(Some(5)),
            additional_domains: Some(ListModifier::Set(vec![
                DomainPattern::parse("a.com").unwrap(),
            ])),
            ..Default::default()
        };
        changes.apply(&mut p);
        assert_eq!(p.partner_type, PartnerType::Federated);
        assert_eq!(p.connection_limit, Some(5));
        assert_eq!(p.additional_domains.len(), 1);
        assert_eq!(p.tls_negotiation, TlsNegotiation::Required);
        assert!(PartnerChanges::default().is_empty());
    }
}
