//! fedgate's model and policy: plain data and pure decisions, no I/O.
//!
//! - [`domain`] — domain names and `*.domain` patterns, normalised (case, trailing dot, IDNA).
//! - [`jid`] — addresses normalised as the internal XMPP servers do (nodeprep, resourceprep).
//! - [`access`] — user-level access on live traffic: user policy × partner type × authorisation.
//! - [`session`] — what a local user's own traffic opens through a PublicUnverified partner
//!   (answers to her requests, directed-presence paths, contact-request budgets); bounded, in
//!   memory.
//! - [`choice`] — the enumerated settings and how admins spell them.
//! - [`partner`] — the allowed-partner record, its defaults and rules, and changes to it.
//! - [`negotiation`] — the TLS × SASL × Dialback rule and the authentication methods it allows.
//! - [`list_modifier`] — PSListModifier (`@{Add=…; Remove=…; Replace=…}`) semantics.
//! - [`policy`] — external access policies and effective-policy resolution.
//! - [`gateway_settings`] — the gateway-wide settings.
//! - [`health`] — partner health per direction: last success and failure, counts per hour and day.
//! - [`traffic`] — partner traffic: stanzas each way and refusals by reason per minute, last hour.
//! - [`probe`] — partner diagnostics: the test report and its verdict, from what the probe found.
//! - [`gateway_test`] — the gateway test: each hosted domain as partners see it (DNS, listeners,
//!   certificate), and its verdict.
//! - [`index`] — the matching index the data plane asks "which partner owns this domain?".
//! - [`internal_dns`] — the internal side's DNS records for the partner domains, in resolver formats.
//! - [`error`] — the one error for a bad parameter value.

#![forbid(unsafe_code)]

pub mod access;
pub mod choice;
pub mod domain;
pub mod enforce;
pub mod error;
pub mod gateway_settings;
pub mod gateway_test;
pub mod health;
pub mod index;
pub mod internal_dns;
pub mod jid;
pub mod list_modifier;
pub mod negotiation;
pub mod partner;
pub mod policy;
pub mod probe;
pub mod route;
pub mod session;
pub mod short;
pub mod snapshot;
pub mod traffic;

pub use choice::{Choice, PartnerType, SaslNegotiation, TlsNegotiation};
pub use domain::{Domain, DomainError, DomainPattern, HostPort};
pub use error::InvalidValue;
pub use gateway_settings::{Secret, XmppGatewayConfiguration};
pub use index::{IndexConflict, PartnerIndex};
pub use list_modifier::{ListModifier, ListModifierError, ListModifierKey};
pub use negotiation::{AuthMethod, InvalidNegotiation, NegotiationSettings, NegotiationWarning};
pub use partner::{PartnerChanges, PartnerView, ProxyHost, ProxyTarget, XmppAllowedPartner};
pub use policy::{AccessPolicies, ExternalAccessPolicy, PolicyChanges, PolicyScope, UserJid};
