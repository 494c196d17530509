//! The TLS × SASL × Dialback rule: which combinations can authenticate at all, which deserve a
//! warning, and which authentication methods a partner's streams may use, strongest first.
//!
//! Semantics (README, "TLS × SASL × Dialback"), as fedgate enforces them:
//! - SASL runs only inside TLS.
//! - `SaslNegotiation Required` means that on a TLS stream SASL EXTERNAL is the only accepted
//!   method; a cleartext stream (possible only when TLS is not Required) can still use dialback.
//! - Dialback over TLS is used when TLS is allowed, dialback is on and SASL is not Required;
//!   dialback over cleartext TCP only when TLS is not Required and dialback is on.
//!
//! A combination is valid iff at least one method remains, which is exactly
//! `(TLS != NotSupported and SASL != NotSupported) or Dialback`.

use std::fmt;

use crate::choice::{SaslNegotiation, TlsNegotiation};

/// The three negotiation settings of a partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NegotiationSettings {
    pub tls: TlsNegotiation,
    pub sasl: SaslNegotiation,
    pub dialback: bool,
}

/// A way a stream with a partner can be authenticated.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum AuthMethod {
    /// SASL EXTERNAL with the partner's certificate, inside TLS (XEP-0178).
    SaslExternal,
    /// Server Dialback (XEP-0220) on a TLS-encrypted stream.
    TlsDialback,
    /// Server Dialback on a cleartext TCP stream.
    TcpDialback,
}

impl AuthMethod {
    pub fn description(self) -> &'static str {
        match self {
            AuthMethod::SaslExternal => "SASL EXTERNAL over TLS (certificate)",
            AuthMethod::TlsDialback => "Dialback over TLS",
            AuthMethod::TcpDialback => "Dialback over TCP (unencrypted)",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// A combination that is accepted but probably not what the admin meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NegotiationWarning {
    /// SASL Required while TLS is not Required.
    SaslRequiresTls,
    /// TLS Required, SASL Required and dialback on: dialback can never be used.
    DialbackNeverUsed,
}

impl fmt::Display for NegotiationWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NegotiationWarning::SaslRequiresTls => {
                "SaslNegotiation is Required but TlsNegotiation is not: SASL requires TLS; optional TLS may make negotiation fail."
            }
            NegotiationWarning::DialbackNeverUsed => {
                "TlsNegotiation and SaslNegotiation are Required and SupportDialbackNegotiation is True: dialback will never be used."
            }
        })
    }
}

/// No authentication method can succeed with this combination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "TlsNegotiation {tls}, SaslNegotiation {sasl} and SupportDialbackNegotiation False leave no way to authenticate: \
     allow TLS and SASL, or set SupportDialbackNegotiation to True"
)]
pub struct InvalidNegotiation {
    pub tls: TlsNegotiation,
    pub sasl: SaslNegotiation,
}

impl NegotiationSettings {
    /// The methods a stream may use, strongest first (the weakest is tried last).
    pub fn allowed_methods(self) -> Vec<AuthMethod> {
        let tls_allowed = self.tls != TlsNegotiation::NotSupported;
        let mut methods = Vec::with_capacity(3);
        if tls_allowed && self.sasl != SaslNegotiation::NotSupported {
            methods.push(AuthMethod::SaslExternal);
        }
        if tls_allowed && self.dialback && self.sasl != SaslNegotiation::Required {
            methods.push(AuthMethod::TlsDialback);
        }
        if self.tls != TlsNegotiation::Required && self.dialback {
            methods.push(AuthMethod::TcpDialback);
        }
        methods
    }

    /// Check the combination: the warnings that apply, or why it is invalid.
    pub fn validate(self) -> Result<Vec<NegotiationWarning>, InvalidNegotiation> {
        let valid = (self.tls != TlsNegotiation::NotSupported
            && self.sasl != SaslNegotiation::NotSupported)
            || self.dialback;
        if !valid {
            return Err(InvalidNegotiation {
                tls: self.tls,
                sasl: self.sasl,
            });
        }
        let mut warnings = Vec::new();
        if self.sasl == SaslNegotiation::Required && self.tls != TlsNegotiation::Required {
            warnings.push(NegotiationWarning::SaslRequiresTls);
        }
        if self.tls == TlsNegotiation::Required
            && self.sasl == SaslNegotiation::Required
            && self.dialback
        {
            warnings.push(NegotiationWarning::DialbackNeverUsed);
        }
        Ok(warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::choice::Choice;
    use AuthMethod::*;
    use NegotiationWarning::*;
    use SaslNegotiation as S;
    use TlsNegotiation as T;

    enum Expect {
        Valid(&'static [NegotiationWarning], &'static [AuthMethod]),
        Invalid,
    }
    use Expect::*;

    /// All 18 combinations, written out by hand from the rule in this module's header.
    const TABLE: [(T, S, bool, Expect); 18] = [
        (
            T::Required,
            S::Required,
            true,
            Valid(&[DialbackNeverUsed], &[SaslExternal]),
        ),
        (T::Required, S::Required, false, Valid(&[], &[SaslExternal])),
        (
            T::Required,
            S::Optional,
            true,
            Valid(&[], &[SaslExternal, TlsDialback]),
        ),
        (T::Required, S::Optional, false, Valid(&[], &[SaslExternal])),
        (
            T::Required,
            S::NotSupported,
            true,
            Valid(&[], &[TlsDialback]),
        ),
        (T::Required, S::NotSupported, false, Invalid),
        (
            T::Optional,
            S::Required,
            true,
            Valid(&[SaslRequiresTls], &[SaslExternal, TcpDialback]),
        ),
        (
            T::Optional,
            S::Required,
            false,
            Valid(&[SaslRequiresTls], &[SaslExternal]),
        ),
        (
            T::Optional,
            S::Optional,
            true,
            Valid(&[], &[SaslExternal, TlsDialback, TcpDialback]),
        ),
        (T::Optional, S::Optional, false, Valid(&[], &[SaslExternal])),
        (
            T::Optional,
            S::NotSupported,
            true,
            Valid(&[], &[TlsDialback, TcpDialback]),
        ),
        (T::Optional, S::NotSupported, false, Invalid),
        (
            T::NotSupported,
            S::Required,
            true,
            Valid(&[SaslRequiresTls], &[TcpDialback]),
        ),
        (T::NotSupported, S::Required, false, Invalid),
        (
            T::NotSupported,
            S::Optional,
            true,
            Valid(&[], &[TcpDialback]),
        ),
        (T::NotSupported, S::Optional, false, Invalid),
        (
            T::NotSupported,
            S::NotSupported,
            true,
            Valid(&[], &[TcpDialback]),
        ),
        (T::NotSupported, S::NotSupported, false, Invalid),
    ];

    #[test]
    fn all_eighteen_combinations() {
        let mut seen = std::collections::HashSet::new();
        for (tls, sasl, dialback, expect) in TABLE {
            assert!(seen.insert((tls, sasl, dialback)), "duplicate row");
            let s = NegotiationSettings {
                tls,
                sasl,
                dialback,
            };
            match expect {
                Valid(warnings, methods) => {
                    assert_eq!(s.validate().as_deref(), Ok(warnings), "{s:?}");
                    assert_eq!(s.allowed_methods(), methods, "{s:?}");
                }
                Invalid => {
                    let err = s.validate().expect_err("invalid");
                    assert!(s.allowed_methods().is_empty(), "{s:?}");
                    let text = err.to_string();
                    assert!(
                        text.contains(tls.name()) && text.contains(sasl.name()),
                        "{text}"
                    );
                }
            }
        }
        assert_eq!(seen.len(), 18);
    }

    #[test]
    fn valid_iff_some_method_remains() {
        for &tls in T::ALL {
            for &sasl in S::ALL {
                for dialback in [true, false] {
                    let s = NegotiationSettings {
                        tls,
                        sasl,
                        dialback,
                    };
                    assert_eq!(s.validate().is_ok(), !s.allowed_methods().is_empty());
                }
            }
        }
    }
}
