//! Enumerated settings (PartnerType, TlsNegotiation, SaslNegotiation) and how admins spell them.
//!
//! Every enum here parses case-insensitively from its PowerShell name and knows the list of allowed
//! names, so an invalid value can always be answered with the values that would have worked.

use std::fmt;

/// An enum whose values admins type by name.
pub trait Choice: Sized + Copy + 'static {
    /// All values, in the order help and errors list them.
    const ALL: &'static [Self];
    /// The type name PowerShell would show in a binding error.
    const TYPE_NAME: &'static str;
    /// The canonical name of a value.
    fn name(self) -> &'static str;

    /// Parse a name, ignoring case and surrounding whitespace.
    fn parse_name(text: &str) -> Option<Self> {
        let text = text.trim();
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.name().eq_ignore_ascii_case(text))
    }

    /// "A, B, C" for error messages.
    fn allowed_names() -> String {
        Self::ALL
            .iter()
            .map(|v| v.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

macro_rules! choice_enum {
    ($(#[$meta:meta])* $name:ident, $type_name:literal, default $default:ident, { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl Choice for $name {
            const ALL: &'static [Self] = &[$($name::$variant),+];
            const TYPE_NAME: &'static str = $type_name;
            fn name(self) -> &'static str {
                match self { $($name::$variant => stringify!($variant)),+ }
            }
        }

        impl Default for $name {
            fn default() -> Self { $name::$default }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.name()) }
        }
    };
}

choice_enum!(
    /// How far fedgate trusts a partner (README, "PartnerType: what passes").
    PartnerType, "PartnerType", default PublicUnverified, {
        /// Everything flows.
        Federated,
        /// As Federated, but local users' presence status notes are not sent.
        PublicVerified,
        /// A remote user reaches a local user only after that local user subscribed to them.
        PublicUnverified,
    }
);

choice_enum!(
    /// Whether streams with the partner use TLS.
    TlsNegotiation, "TlsNegotiation", default Required, {
        Required,
        Optional,
        NotSupported,
    }
);

choice_enum!(
    /// Whether streams with the partner authenticate with SASL EXTERNAL (XEP-0178).
    SaslNegotiation, "SaslNegotiation", default Required, {
        Required,
        Optional,
        NotSupported,
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_is_case_insensitive_and_lists_allowed_values() {
        assert_eq!(
            PartnerType::parse_name("publicverified"),
            Some(PartnerType::PublicVerified)
        );
        assert_eq!(
            TlsNegotiation::parse_name("NOTSUPPORTED"),
            Some(TlsNegotiation::NotSupported)
        );
        assert_eq!(SaslNegotiation::parse_name("maybe"), None);
        assert_eq!(
            TlsNegotiation::allowed_names(),
            "Required, Optional, NotSupported"
        );
        assert_eq!(PartnerType::default(), PartnerType::PublicUnverified);
        assert_eq!(TlsNegotiation::default(), TlsNegotiation::Required);
        assert_eq!(SaslNegotiation::default(), SaslNegotiation::Required);
    }
}
