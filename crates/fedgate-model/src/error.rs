//! The one error type for a bad parameter value, shared by the CLI, the REST API and the panel.
//!
//! Its text reads like PowerShell's parameter-binding errors and always names the parameter and, where
//! there is a closed set, the allowed values.

use crate::choice::Choice;

/// A value that a parameter does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Cannot bind parameter '{parameter}'. {reason}")]
pub struct InvalidValue {
    /// The parameter (field) name, as the cmdlets spell it: `TlsNegotiation`, `AdditionalDomains`, ...
    pub parameter: String,
    /// Why, including the allowed values.
    pub reason: String,
}

impl InvalidValue {
    pub fn new(parameter: impl Into<String>, reason: impl Into<String>) -> Self {
        InvalidValue {
            parameter: parameter.into(),
            reason: reason.into(),
        }
    }

    /// A value that is not one of an enum's names.
    pub fn choice<T: Choice>(parameter: &str, value: &str) -> Self {
        Self::new(
            parameter,
            format!(
                "Cannot convert value \"{value}\" to type \"{}\". Allowed values: {}.",
                T::TYPE_NAME,
                T::allowed_names()
            ),
        )
    }

    /// A value that is not a boolean.
    pub fn boolean(parameter: &str, value: &str) -> Self {
        Self::new(
            parameter,
            format!(
                "Cannot convert value \"{value}\" to type \"System.Boolean\". Allowed values: $true, $false (also true, false, 1, 0)."
            ),
        )
    }

    /// Parse a choice or explain which names are allowed.
    pub fn parse_choice<T: Choice>(parameter: &str, value: &str) -> Result<T, Self> {
        T::parse_name(value).ok_or_else(|| Self::choice::<T>(parameter, value))
    }

    /// Parse a boolean as admins type it: `$true`/`$false`, `true`/`false`, `1`/`0`.
    pub fn parse_bool(parameter: &str, value: &str) -> Result<bool, Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "$true" | "true" | "1" => Ok(true),
            "$false" | "false" | "0" => Ok(false),
            _ => Err(Self::boolean(parameter, value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::choice::TlsNegotiation;

    #[test]
    fn messages_name_parameter_and_allowed_values() {
        let e =
            InvalidValue::parse_choice::<TlsNegotiation>("TlsNegotiation", "Maybe").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Cannot bind parameter 'TlsNegotiation'. Cannot convert value \"Maybe\" to type \"TlsNegotiation\". Allowed values: Required, Optional, NotSupported."
        );
        assert_eq!(
            InvalidValue::parse_bool("EnableKeepAlive", "$TRUE"),
            Ok(true)
        );
        assert_eq!(InvalidValue::parse_bool("EnableKeepAlive", "0"), Ok(false));
        let e = InvalidValue::parse_bool("EnableKeepAlive", "yes").unwrap_err();
        assert!(
            e.to_string().contains("'EnableKeepAlive'") && e.to_string().contains("$true, $false")
        );
    }
}
