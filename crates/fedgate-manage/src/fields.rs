//! The settable fields of partners, policies and the gateway settings: one table per kind of
//! record (name, PowerShell type, plain-subcommand flag, default, range, help, the REST and panel
//! texts). The cmdlet binder's parameter specs, the plain subcommands' flags and help, the name
//! checks of the conversions in [`crate::params`], the admin API's request-body and response
//! schemas and the panel's partner form all read these tables.

use fedgate_model::gateway_settings::{MIN_DIALBACK_PASSPHRASE_CHARS, NUMERIC_SETTINGS};
use fedgate_model::partner::MAX_DESCRIPTION_CHARS;
use fedgate_model::partner::fields::PartnerField;

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
    /// The accepted length in characters, for the text fields that have one.
    pub length: Option<(u32, u32)>,
    /// Never shown back (the REST API's `writeOnly`).
    pub write_only: bool,
    /// The REST request body's description of the field (what JSON `null` does, for one).
    pub api: &'static str,
    /// The REST response's description of the value as shown; empty for none.
    pub response_api: &'static str,
    /// Shown as JSON `null` when unset: the response schema allows null and does not require it.
    pub response_null: bool,
    /// The panel form's label.
    pub label: &'static str,
    /// The panel form's hint; `{default}` is filled in (`on`/`off` for a boolean).
    pub hint: &'static str,
    /// Kept only for compatibility with Skype for Business: fedgate stores and shows it and does
    /// nothing with it. Flags and forms list these after the others ([`in_help_order`]).
    pub compat_only: bool,
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
        length: None,
        write_only: false,
        api: "",
        response_api: "",
        response_null: false,
        label: "",
        hint: "",
        compat_only: false,
    }
}

/// Up to [`MAX_DESCRIPTION_CHARS`] characters.
const DESCRIPTION_LENGTH: Option<(u32, u32)> = Some((0, MAX_DESCRIPTION_CHARS as u32));
const DESCRIPTION_API: &str = "Up to 1024 characters; null clears.";

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
/// One row per [`PartnerField`] (a field missing here is a compile error: the length is theirs).
pub const PARTNER_FIELDS: [Field; PartnerField::ALL.len()] = [
    Field {
        api: "A list replaces, null clears, {\"Add\":[..],\"Remove\":[..],\"Replace\":[..]} edits.",
        response_api: "More domains of the partner; `*.example.com` matches every subdomain of example.com.",
        label: "Additional domains",
        hint: "One per line. *.example.com matches every subdomain of example.com.",
        ..flagged(
            "AdditionalDomains",
            LIST_MODIFIER,
            "additional-domains",
            "DOMAINS",
            "none",
            "Additional domains, comma-separated (replaces the list).",
            "more domains of the partner; *.example.com matches\nevery subdomain of example.com (default: {default})",
        )
    },
    Field {
        length: DESCRIPTION_LENGTH,
        api: DESCRIPTION_API,
        response_api: "Free text, up to 1024 characters.",
        label: "Description",
        hint: "Free text, e.g. contact details; at most 1024 characters.",
        ..flagged(
            "Description",
            STRING,
            "description",
            "DESCRIPTION",
            "empty",
            "Free text, e.g. contact details.",
            "free text, up to 1024 characters (default: {default})",
        )
    },
    Field {
        label: "Partner type",
        hint: "Federated: everything passes both ways. PublicVerified: as Federated, but local users' status notes are removed from the presence they send. PublicUnverified: local users' own traffic passes; from the partner only what they asked for reaches them: contacts they authorised (by subscribing or approving), answers to their own requests (within 120 s), chat rooms they joined (presence, groupchat, iq, until they leave) and contact requests (rate-limited); everything else is bounced with policy-violation. Under every type, server pings and disco to the hosted domains pass.",
        ..flagged(
            "PartnerType",
            "PartnerType",
            "partner-type",
            "TYPE",
            "PublicUnverified",
            "Federated | PublicVerified | PublicUnverified.",
            "Federated | PublicVerified | PublicUnverified\n(default: {default})",
        )
    },
    Field {
        label: "TLS",
        hint: "Default: {default}.",
        ..flagged(
            "TlsNegotiation",
            "TlsNegotiation",
            "tls-negotiation",
            "SETTING",
            "Required",
            "Required | Optional | NotSupported.",
            "Required | Optional | NotSupported (default: {default})",
        )
    },
    Field {
        label: "SASL EXTERNAL",
        hint: "Certificate authentication inside TLS. Default: {default}.",
        ..flagged(
            "SaslNegotiation",
            "SaslNegotiation",
            "sasl-negotiation",
            "SETTING",
            "Required",
            "Required | Optional | NotSupported.",
            "SASL EXTERNAL: Required | Optional | NotSupported\n(default: {default}). Required = on a TLS stream only SASL is accepted.",
        )
    },
    Field {
        label: "Server Dialback",
        hint: "Default: {default}.",
        ..flagged(
            "SupportDialbackNegotiation",
            BOOLEAN,
            "dialback",
            "BOOL",
            "true",
            "true | false.",
            "Server Dialback, true | false (default: {default})",
        )
    },
    Field {
        label: "Keepalive",
        hint: "Whitespace pings on the partner's streams. Default: {default}.",
        ..flagged(
            "EnableKeepAlive",
            BOOLEAN,
            "keep-alive",
            "BOOL",
            "true",
            "true | false.",
            "whitespace keepalives, true | false (default: {default})",
        )
    },
    Field {
        range: Some((1, u32::MAX)),
        api: "null clears (the gateway's PartnerConnectionLimit applies).",
        response_api: "Unset (null): the gateway's PartnerConnectionLimit.",
        response_null: true,
        label: "Connection limit",
        hint: "Empty: the gateway's PartnerConnectionLimit.",
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
    Field {
        api: "host[:port]; null or \"\" clears.",
        response_api: "host[:port] to connect to instead of the partner's SRV target.",
        response_null: true,
        label: "Proxy",
        hint: "host[:port] to connect to instead of the partner's DNS SRV target. Empty: none.",
        ..flagged(
            "ProxyFqdn",
            STRING,
            "proxy-fqdn",
            "HOST[:PORT]",
            "none",
            "host[:port] for outbound connections; '' clears.",
            "host[:port] to connect to instead of the partner's SRV target\n(default: {default})",
        )
    },
    Field {
        compat_only: true,
        response_api: "Accepted for compatibility; no effect.",
        label: "BypassDualWrite",
        hint: "Accepted for compatibility with Skype for Business; no effect.",
        ..flagged(
            "BypassDualWrite",
            BOOLEAN,
            "bypass-dual-write",
            "BOOL",
            "false",
            "true | false; no effect.",
            "accepted for compatibility; has no effect (default: {default})",
        )
    },
];

const fn policy_switch(
    name: &'static str,
    flag: &'static str,
    label: &'static str,
    summary: &'static str,
) -> Field {
    Field {
        label,
        ..flagged(name, BOOLEAN, flag, "BOOL", "false", summary, "")
    }
}

/// A policy switch fedgate only stores (Skype for Business's other kinds of external access).
const fn stored_switch(name: &'static str, flag: &'static str, label: &'static str) -> Field {
    Field {
        compat_only: true,
        ..policy_switch(name, flag, label, "true | false; stored only.")
    }
}

/// The fields New/Set-CsExternalAccessPolicy can set.
pub const POLICY_FIELDS: [Field; 6] = [
    Field {
        length: DESCRIPTION_LENGTH,
        api: DESCRIPTION_API,
        label: "Description",
        ..flagged(
            "Description",
            STRING,
            "description",
            "DESCRIPTION",
            "empty",
            "Free text.",
            "",
        )
    },
    stored_switch(
        "EnableFederationAccess",
        "federation-access",
        "Federation access",
    ),
    policy_switch(
        "EnableXmppAccess",
        "xmpp-access",
        "XMPP federation",
        "true | false: may users federate over XMPP? (default {default})",
    ),
    stored_switch("EnableOutsideAccess", "outside-access", "Outside access"),
    stored_switch(
        "EnablePublicCloudAccess",
        "public-cloud-access",
        "Public cloud access",
    ),
    stored_switch(
        "EnablePublicCloudAudioVideoAccess",
        "public-cloud-audio-video-access",
        "Public cloud audio/video",
    ),
];

/// A numeric gateway setting, its range the model's.
const fn numeric(index: usize, api: &'static str) -> Field {
    let setting = &NUMERIC_SETTINGS[index];
    Field {
        range: Some((setting.min, setting.max)),
        api,
        ..field(setting.name, UINT32)
    }
}

/// The fields Set-CsXmppGatewayConfiguration can set.
pub const GATEWAY_FIELDS: [Field; 8] = [
    numeric(0, ""),
    numeric(1, ""),
    numeric(2, "Seconds."),
    numeric(3, "Seconds."),
    numeric(4, "Seconds."),
    numeric(5, "Seconds."),
    Field {
        length: Some((MIN_DIALBACK_PASSPHRASE_CHARS as u32, u32::MAX)),
        write_only: true,
        api: "Write-only; at least 16 printable characters. Never returned.",
        response_api: "`********` when set, null before it is generated; never the secret.",
        response_null: true,
        ..field("DialbackPassphrase", STRING)
    },
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

/// The allowed values of a field whose type is one of the model's choice types (`PartnerType`),
/// in the order help lists them; `None` for any other type.
pub fn choices(type_name: &str) -> Option<Vec<&'static str>> {
    use fedgate_model::{Choice, PartnerType, SaslNegotiation, TlsNegotiation};
    fn names<T: Choice>() -> Vec<&'static str> {
        T::ALL.iter().map(|v| v.name()).collect()
    }
    match type_name {
        PartnerType::TYPE_NAME => Some(names::<PartnerType>()),
        TlsNegotiation::TYPE_NAME => Some(names::<TlsNegotiation>()),
        SaslNegotiation::TYPE_NAME => Some(names::<SaslNegotiation>()),
        _ => None,
    }
}

/// The fields of `table` in the order flags and forms list them: those fedgate acts on first,
/// then those kept only for compatibility, each group in table order.
pub fn in_help_order(table: &[Field]) -> Vec<&Field> {
    let mut fields: Vec<&Field> = table.iter().collect();
    fields.sort_by_key(|f| f.compat_only);
    fields
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

    /// Whether JSON `null` (and an empty form field) clears the field: those whose default is a
    /// word for nothing (`none`, `empty`, `unset`).
    pub fn clearable(&self) -> bool {
        matches!(self.default, "none" | "empty" | "unset")
    }

    /// The panel's hint, the default filled in (`on`/`off` for a boolean).
    pub fn panel_hint(&self) -> String {
        let default = match (self.type_name, self.default) {
            (BOOLEAN, "true") => "on",
            (BOOLEAN, _) => "off",
            (_, other) => other,
        };
        self.hint.replace("{default}", default)
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
        // One line per line of each field's help: nothing dropped, nothing wrapped twice.
        let help_lines: usize = PARTNER_FIELDS.iter().map(|f| f.help.lines().count()).sum();
        assert_eq!(list.lines().count(), help_lines);
    }

    #[test]
    fn nothing_defaults_clear_and_hints_say_on_or_off() {
        let clearable: Vec<&str> = PARTNER_FIELDS
            .iter()
            .filter(|f| f.clearable())
            .map(|f| f.name)
            .collect();
        assert_eq!(
            clearable,
            [
                "AdditionalDomains",
                "Description",
                "ConnectionLimit",
                "ProxyFqdn"
            ]
        );
        assert!(GATEWAY_FIELDS.iter().all(|f| !f.clearable()));
        let keepalive = find(&PARTNER_FIELDS, "EnableKeepAlive").expect("a partner field");
        assert_eq!(
            keepalive.panel_hint(),
            "Whitespace pings on the partner's streams. Default: on."
        );
        let tls = find(&PARTNER_FIELDS, "TlsNegotiation").expect("a partner field");
        assert_eq!(tls.panel_hint(), "Default: Required.");
        assert!(PARTNER_FIELDS.iter().all(|f| !f.label.is_empty()));
        assert_eq!(
            choices("TlsNegotiation"),
            Some(vec!["Required", "Optional", "NotSupported"])
        );
        assert_eq!(choices(BOOLEAN), None);
        let policy: Vec<&str> = in_help_order(&POLICY_FIELDS)
            .iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(
            policy[..3],
            ["Description", "EnableXmppAccess", "EnableFederationAccess"]
        );
        assert_eq!(in_help_order(&PARTNER_FIELDS).len(), PARTNER_FIELDS.len());
        let partner = in_help_order(&PARTNER_FIELDS);
        let acted_on = partner.iter().take_while(|f| !f.compat_only).count();
        assert!(partner[acted_on..].iter().all(|f| f.compat_only));
        assert_eq!(partner.last().map(|f| f.name), Some("BypassDualWrite"));
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
            // The response schema allows null exactly where the model shows an unset value so.
            assert_eq!(value.is_null(), f.response_null, "{}", f.name);
        }
    }
}
