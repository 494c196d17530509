//! The settable fields of partners, policies and the gateway settings: one table per kind of
//! record (name, PowerShell type, plain-subcommand flag, default, range, help). The cmdlet
//! binder's parameter specs, the plain subcommands' help, and the name checks of the conversions
//! in [`crate::params`] all read these tables.

use fedgate_model::gateway_settings::NUMERIC_SETTINGS;

/// One settable field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The cmdlet parameter and JSON property name (`PartnerType`).
    pub name: &'static str,
    /// The PowerShell type binding errors and the REST type check name.
    pub type_name: &'static str,
    /// The plain subcommands' flag, without the dashes (`partner-type`); `None` where they have
    /// none (the gateway settings are given as `--set NAME=VALUE`).
    pub flag: Option<&'static str>,
    /// The flag's value placeholder in help (`TYPE` for `--partner-type <TYPE>`); `None` where
    /// there is no flag.
    pub value_name: Option<&'static str>,
    /// The value a new record has, as help shows it.
    pub default: &'static str,
    /// The accepted numbers, for the numeric fields.
    pub range: Option<(u32, u32)>,
    /// The flag's help, before ` [Name]`; `{default}` and `{range}` are filled in.
    pub summary: &'static str,
    /// The longer text of the fields list, with its line breaks; `{default}` and `{range}` are
    /// filled in.
    pub help: &'static str,
}

pub const STRING: &str = "System.String";
pub const BOOLEAN: &str = "System.Boolean";
pub const UINT32: &str = "System.UInt32";
pub const LIST_MODIFIER: &str = "System.Management.Automation.PSListModifier";

const fn field(name: &'static str, type_name: &'static str) -> Field {
    Field {
        name,
        type_name,
        flag: None,
        value_name: None,
        default: "",
        range: None,
        summary: "",
        help: "",
    }
}

const fn flagged(
    name: &'static str,
    type_name: &'static str,
    flag: &'static str,
    value_name: &'static str,
    default: &'static str,
    summary: &'static str,
    help: &'static str,
) -> Field {
    Field {
        flag: Some(flag),
        value_name: Some(value_name),
        default,
        summary,
        help,
        ..field(name, type_name)
    }
}

/// The fields New/Set-CsXmppAllowedPartner can set, in help order.
pub const PARTNER_FIELDS: [Field; 10] = [
    flagged(
        "AdditionalDomains",
        LIST_MODIFIER,
        "additional-domains",
        "DOMAINS",
        "none",
        "Additional domains, comma-separated (replaces the list).",
        "more domains of the partner; *.example.com matches\nevery subdomain of example.com (default: {default})",
    ),
    flagged(
        "Description",
        STRING,
        "description",
        "DESCRIPTION",
        "empty",
        "Free text, e.g. contact details.",
        "free text, up to 1024 characters (default: {default})",
    ),
    flagged(
        "PartnerType",
        "PartnerType",
        "partner-type",
        "TYPE",
        "PublicUnverified",
        "Federated | PublicVerified | PublicUnverified.",
        "Federated | PublicVerified | PublicUnverified\n(default: {default})",
    ),
    flagged(
        "TlsNegotiation",
        "TlsNegotiation",
        "tls-negotiation",
        "SETTING",
        "Required",
        "Required | Optional | NotSupported.",
        "Required | Optional | NotSupported (default: {default})",
    ),
    flagged(
        "SaslNegotiation",
        "SaslNegotiation",
        "sasl-negotiation",
        "SETTING",
        "Required",
        "Required | Optional | NotSupported.",
        "SASL EXTERNAL: Required | Optional | NotSupported\n(default: {default}). Required = on a TLS stream only SASL is accepted.",
    ),
    flagged(
        "SupportDialbackNegotiation",
        BOOLEAN,
        "dialback",
        "BOOL",
        "true",
        "true | false.",
        "Server Dialback, true | false (default: {default})",
    ),
    flagged(
        "EnableKeepAlive",
        BOOLEAN,
        "keep-alive",
        "BOOL",
        "true",
        "true | false.",
        "whitespace keepalives, true | false (default: {default})",
    ),
    Field {
        range: Some((1, u32::MAX)),
        ..flagged(
            "ConnectionLimit",
            UINT32,
            "connection-limit",
            "N",
            "unset",
            "{range}, or '$null' for the gateway default.",
            "{range}, or $null for the gateway's\nPartnerConnectionLimit (default: {default})",
        )
    },
    flagged(
        "ProxyFqdn",
        STRING,
        "proxy-fqdn",
        "HOST[:PORT]",
        "none",
        "host[:port] for outbound connections; '' clears.",
        "host[:port] to connect to instead of the partner's SRV target\n(default: {default})",
    ),
    flagged(
        "BypassDualWrite",
        BOOLEAN,
        "bypass-dual-write",
        "BOOL",
        "false",
        "true | false; no effect.",
        "accepted for compatibility; has no effect (default: {default})",
    ),
];

const fn policy_switch(name: &'static str, flag: &'static str, summary: &'static str) -> Field {
    flagged(name, BOOLEAN, flag, "BOOL", "false", summary, "")
}

/// The fields New/Set-CsExternalAccessPolicy can set.
pub const POLICY_FIELDS: [Field; 6] = [
    flagged(
        "Description",
        STRING,
        "description",
        "DESCRIPTION",
        "empty",
        "Free text.",
        "",
    ),
    policy_switch(
        "EnableFederationAccess",
        "federation-access",
        "true | false; stored only.",
    ),
    policy_switch(
        "EnableXmppAccess",
        "xmpp-access",
        "true | false: may users federate over XMPP? (default {default})",
    ),
    policy_switch(
        "EnableOutsideAccess",
        "outside-access",
        "true | false; stored only.",
    ),
    policy_switch(
        "EnablePublicCloudAccess",
        "public-cloud-access",
        "true | false; stored only.",
    ),
    policy_switch(
        "EnablePublicCloudAudioVideoAccess",
        "public-cloud-audio-video-access",
        "true | false; stored only.",
    ),
];

/// A numeric gateway setting, its range the model's.
const fn numeric(index: usize) -> Field {
    let setting = &NUMERIC_SETTINGS[index];
    Field {
        range: Some((setting.min, setting.max)),
        ..field(setting.name, UINT32)
    }
}

/// The fields Set-CsXmppGatewayConfiguration can set.
pub const GATEWAY_FIELDS: [Field; 8] = [
    numeric(0),
    numeric(1),
    numeric(2),
    numeric(3),
    numeric(4),
    numeric(5),
    field("DialbackPassphrase", STRING),
    field("EnableLoggingAllMessageBodies", BOOLEAN),
];

/// `(name, PowerShell type)` of each field, for the name and type checks.
pub const fn names_and_types<const N: usize>(
    fields: &[Field; N],
) -> [(&'static str, &'static str); N] {
    let mut out = [("", ""); N];
    let mut i = 0;
    while i < N {
        out[i] = (fields[i].name, fields[i].type_name);
        i += 1;
    }
    out
}

/// The field named `name` (without case).
pub fn find<'t>(fields: &'t [Field], name: &str) -> Option<&'t Field> {
    fields.iter().find(|f| f.name.eq_ignore_ascii_case(name))
}

impl Field {
    fn fill(&self, text: &str) -> String {
        let range = self
            .range
            .map(|(min, max)| format!("{min}..{max}"))
            .unwrap_or_default();
        text.replace("{default}", self.default)
            .replace("{range}", &range)
    }

    /// The flag's help: the summary and the cmdlet parameter in brackets.
    pub fn flag_help(&self) -> String {
        format!("{} [{}]", self.fill(self.summary), self.name)
    }
}

/// The flag help of `name` in `fields` (empty for a name not in the table, which a test rules out).
pub fn flag_help(fields: &[Field], name: &str) -> String {
    find(fields, name).map(Field::flag_help).unwrap_or_default()
}

/// The fields list of help: one row per flagged field, `--flag`, `[Name]` and the help text,
/// continuation lines aligned under the text.
pub fn fields_list(fields: &[Field]) -> String {
    const COLUMN: usize = 31;
    let mut out = String::new();
    for f in fields {
        let Some(flag) = f.flag else { continue };
        let text = format!("[{}] {}", f.name, f.fill(f.help));
        for (i, line) in text.lines().enumerate() {
            if i == 0 {
                out.push_str(&format!(
                    "  {:<width$}",
                    format!("--{flag}"),
                    width = COLUMN - 2
                ));
            } else {
                out.push('\n');
                out.push_str(&" ".repeat(COLUMN));
            }
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_ranges_come_from_the_model() {
        for table in [&PARTNER_FIELDS[..], &POLICY_FIELDS, &GATEWAY_FIELDS] {
            for (i, f) in table.iter().enumerate() {
                assert!(
                    table[..i]
                        .iter()
                        .all(|g| !g.name.eq_ignore_ascii_case(f.name)),
                    "{} twice",
                    f.name
                );
            }
        }
        let keepalive = find(&GATEWAY_FIELDS, "keepaliveinterval").expect("a gateway setting");
        assert_eq!(keepalive.range, Some((10, 86_400)));
        assert_eq!(
            names_and_types(&POLICY_FIELDS)[1],
            ("EnableFederationAccess", BOOLEAN)
        );
    }

    #[test]
    fn help_fills_in_defaults_and_ranges() {
        assert_eq!(
            flag_help(&PARTNER_FIELDS, "ConnectionLimit"),
            "1..4294967295, or '$null' for the gateway default. [ConnectionLimit]"
        );
        assert_eq!(
            flag_help(&POLICY_FIELDS, "EnableXmppAccess"),
            "true | false: may users federate over XMPP? (default false) [EnableXmppAccess]"
        );
        let list = fields_list(&PARTNER_FIELDS);
        assert!(list.starts_with(
            "  --additional-domains         [AdditionalDomains] more domains of the partner; *.example.com matches\n                               every subdomain"
        ), "{list}");
        // Ten fields, five of them on two lines.
        assert_eq!(list.lines().count(), 15);
    }

    #[test]
    fn defaults_are_those_of_a_new_partner() {
        let partner = fedgate_model::XmppAllowedPartner::new(
            fedgate_model::Domain::parse("contoso.com").expect("a valid domain"),
        );
        let json = serde_json::to_value(&partner).expect("a partner serializes");
        for f in &PARTNER_FIELDS {
            let value = &json[f.name];
            let shown = match value {
                serde_json::Value::Null => "unset or none".to_owned(),
                serde_json::Value::Array(a) if a.is_empty() => "none".to_owned(),
                serde_json::Value::String(s) if s.is_empty() => "empty".to_owned(),
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            assert!(
                shown.contains(f.default),
                "{}: {shown} vs {}",
                f.name,
                f.default
            );
        }
    }
}
