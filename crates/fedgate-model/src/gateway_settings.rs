//! Gateway-wide settings (`Get-/Set-CsXmppGatewayConfiguration`; README "Configuration reference"
//! lists them with their defaults): limits, timeouts, the dialback secret and message-body logging.
//! One global instance, kept in the store.

use std::fmt;

use serde::Serialize;

use crate::error::InvalidValue;

/// Shortest DialbackPassphrase accepted.
pub const MIN_DIALBACK_PASSPHRASE_CHARS: usize = 16;

/// The field names, in output order.
pub const GATEWAY_FIELDS: [&str; 9] = [
    "Identity",
    "ConnectionLimit",
    "PartnerConnectionLimit",
    "KeepAliveInterval",
    "StreamEstablishmentTimeout",
    "StreamInactivityTimeout",
    "SubscriptionRefreshInterval",
    "DialbackPassphrase",
    "EnableLoggingAllMessageBodies",
];

/// A secret that never prints: `Debug`, `Display` and `Serialize` all show `********`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    /// The secret itself, for the one place that needs it (dialback key derivation, the store).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("********")
    }
}

/// The gateway-wide settings; their defaults are those of its [`Default`] impl below.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct XmppGatewayConfiguration {
    /// Always `Global`.
    pub identity: &'static str,
    /// Simultaneous s2s connections, all partners together.
    pub connection_limit: u32,
    /// Per partner, when the partner's own ConnectionLimit is unset.
    pub partner_connection_limit: u32,
    /// Seconds: a partner stream silent this long is closed; with EnableKeepAlive fedgate pings
    /// well within it.
    pub keep_alive_interval: u32,
    /// Seconds a new stream may take to authenticate.
    pub stream_establishment_timeout: u32,
    /// Seconds without stanzas after which a stream is closed.
    pub stream_inactivity_timeout: u32,
    /// Seconds; stored and shown for compatibility. fedgate keeps no subscription state that needs
    /// refreshing.
    pub subscription_refresh_interval: u32,
    /// The dialback secret; None until set or generated at first start. Never printed.
    pub dialback_passphrase: Option<Secret>,
    pub enable_logging_all_message_bodies: bool,
}

impl Default for XmppGatewayConfiguration {
    fn default() -> Self {
        XmppGatewayConfiguration {
            identity: "Global",
            connection_limit: 1000,
            partner_connection_limit: 20,
            keep_alive_interval: 300,
            stream_establishment_timeout: 60,
            stream_inactivity_timeout: 600,
            subscription_refresh_interval: 28800,
            dialback_passphrase: None,
            enable_logging_all_message_bodies: false,
        }
    }
}

/// A numeric setting: its name and allowed range.
pub struct NumericSetting {
    pub name: &'static str,
    pub min: u32,
    pub max: u32,
    pub unit: &'static str,
}

/// The numeric settings and their ranges, in output order.
pub const NUMERIC_SETTINGS: [NumericSetting; 6] = [
    NumericSetting {
        name: "ConnectionLimit",
        min: 1,
        max: u32::MAX,
        unit: "connections",
    },
    NumericSetting {
        name: "PartnerConnectionLimit",
        min: 1,
        max: u32::MAX,
        unit: "connections",
    },
    NumericSetting {
        name: "KeepAliveInterval",
        min: 10,
        max: 86_400,
        unit: "seconds",
    },
    NumericSetting {
        name: "StreamEstablishmentTimeout",
        min: 1,
        max: 3_600,
        unit: "seconds",
    },
    NumericSetting {
        name: "StreamInactivityTimeout",
        min: 10,
        max: 604_800,
        unit: "seconds",
    },
    NumericSetting {
        name: "SubscriptionRefreshInterval",
        min: 60,
        max: 2_592_000,
        unit: "seconds",
    },
];

impl NumericSetting {
    /// Parse a value of this setting.
    pub fn parse(&self, text: &str) -> Result<u32, InvalidValue> {
        match text.trim().parse::<u32>() {
            Ok(v) if (self.min..=self.max).contains(&v) => Ok(v),
            _ => Err(InvalidValue::new(
                self.name,
                format!(
                    "Cannot convert value \"{text}\" to a valid {}. Allowed values: {} to {} ({}).",
                    self.name, self.min, self.max, self.unit
                ),
            )),
        }
    }
}

impl XmppGatewayConfiguration {
    /// The numeric field named like a [`NumericSetting`].
    pub fn numeric_mut(&mut self, name: &str) -> Option<&mut u32> {
        Some(match name {
            "ConnectionLimit" => &mut self.connection_limit,
            "PartnerConnectionLimit" => &mut self.partner_connection_limit,
            "KeepAliveInterval" => &mut self.keep_alive_interval,
            "StreamEstablishmentTimeout" => &mut self.stream_establishment_timeout,
            "StreamInactivityTimeout" => &mut self.stream_inactivity_timeout,
            "SubscriptionRefreshInterval" => &mut self.subscription_refresh_interval,
            _ => return None,
        })
    }
}

/// Check a new DialbackPassphrase.
pub fn parse_dialback_passphrase(text: &str) -> Result<Secret, InvalidValue> {
    if text.chars().count() < MIN_DIALBACK_PASSPHRASE_CHARS || text.chars().any(char::is_control) {
        return Err(InvalidValue::new(
            "DialbackPassphrase",
            format!(
                "The passphrase is too short or contains control characters. Allowed values: at least {MIN_DIALBACK_PASSPHRASE_CHARS} printable characters."
            ),
        ));
    }
    Ok(Secret::new(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_design() {
        let c = XmppGatewayConfiguration::default();
        assert_eq!(
            (
                c.connection_limit,
                c.partner_connection_limit,
                c.keep_alive_interval
            ),
            (1000, 20, 300)
        );
        assert_eq!(
            (
                c.stream_establishment_timeout,
                c.stream_inactivity_timeout,
                c.subscription_refresh_interval
            ),
            (60, 600, 28800)
        );
        assert!(!c.enable_logging_all_message_bodies && c.dialback_passphrase.is_none());
    }

    #[test]
    fn secrets_never_print() {
        let c = XmppGatewayConfiguration {
            dialback_passphrase: Some(
                parse_dialback_passphrase("correct horse battery staple").unwrap(),
            ),
            ..Default::default()
        };
        let shown = format!("{c:?} {}", serde_json::to_string(&c).unwrap());
        assert!(!shown.contains("horse"), "{shown}");
        assert!(shown.contains("********"));
        assert!(parse_dialback_passphrase("short").is_err());
    }

    #[test]
    fn numeric_ranges() {
        let keepalive = &NUMERIC_SETTINGS[2];
        assert_eq!(keepalive.parse("300"), Ok(300));
        let e = keepalive.parse("5").unwrap_err();
        assert_eq!(e.parameter, "KeepAliveInterval");
        assert!(e.reason.contains("10 to 86400"), "{e}");
        let mut c = XmppGatewayConfiguration::default();
        for s in &NUMERIC_SETTINGS {
            assert!(c.numeric_mut(s.name).is_some(), "{}", s.name);
            assert!(s.parse("x").is_err());
        }
    }
}
