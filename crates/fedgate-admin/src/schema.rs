//! The OpenAPI schemas of request and response bodies, and the document's frame ([`ApiDoc`]).
//!
//! Responses are serialized from the model's own types (`PartnerView`, `ExternalAccessPolicy`,
//! ...); the model crate knows nothing of OpenAPI, so the schemas here describe those shapes. The
//! tests check them against the model's field lists and against real responses. The settable
//! fields are not written here: `body_schema!` builds the request bodies' and `record_schema!`
//! the records' (`Partner`, `ExternalAccessPolicy`, `XmppGatewayConfiguration`) from the tables of
//! `fedgate_manage::fields` (JSON type, null, range, length, description), the tables the CLI's
//! flags and the binder read; only the shown fields that are not settable (Identity, Domain) are
//! described here. The choice types' values are the model's ([`Choice::ALL`]).

use std::borrow::Cow;

use fedgate_manage::fields::{self, Field, GATEWAY_FIELDS, PARTNER_FIELDS, POLICY_FIELDS};
use fedgate_model::{Choice, PartnerType, SaslNegotiation, TlsNegotiation};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, Object, ObjectBuilder, OneOfBuilder, Ref,
    SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, Modify, OpenApi, PartialSchema, ToSchema};

use crate::error::{ErrorBody, ErrorDetail};

/// A choice type's schema: a string, one of the model's names for it ([`Choice::ALL`]).
fn choice_schema<T: Choice>(description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .enum_values(Some(T::ALL.iter().map(|v| v.name())))
        .into()
}

/// The schema of a choice type of the model, named as the model names the type.
macro_rules! choice_schema {
    ($(#[$meta:meta])* $name:ident, $choice:ty, $description:expr) => {
        $(#[$meta])*
        #[derive(Serialize)]
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                choice_schema::<$choice>($description)
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(<$choice as Choice>::TYPE_NAME)
            }
        }
    };
}

choice_schema!(
    /// TlsNegotiation's values.
    TlsNegotiationSchema,
    TlsNegotiation,
    "How partners' streams must be protected (README, \"TLS × SASL × Dialback\")."
);
choice_schema!(
    /// SaslNegotiation's values.
    SaslNegotiationSchema,
    SaslNegotiation,
    "SASL EXTERNAL (XEP-0178) on TLS streams."
);
choice_schema!(
    /// PartnerType's values.
    PartnerTypeSchema,
    PartnerType,
    "The partner's trust level (the README's \"PartnerType: what passes\" has the detail).
Federated: everything passes both ways. PublicVerified: as Federated, but local users' status
notes are removed from the presence they send. PublicUnverified: local users' own traffic
passes; from the partner only users the local user authorised (by sending subscribe or
subscribed), answers to her own requests (iq results and errors within 120 s), what a chat
room she joined sends her (presence, groupchat, iq) until she leaves, and contact requests
(rate-limited, the excess dropped); everything else is bounced with policy-violation. Under
every type, stanzas for a hosted domain itself (server pings, disco) pass."
);

/// The schemas the records' field properties refer to: the choice types.
fn choice_schemas(out: &mut Vec<(String, RefOr<Schema>)>) {
    out.push((
        PartnerTypeSchema::name().into(),
        PartnerTypeSchema::schema(),
    ));
    out.push((
        TlsNegotiationSchema::name().into(),
        TlsNegotiationSchema::schema(),
    ));
    out.push((
        SaslNegotiationSchema::name().into(),
        SaslNegotiationSchema::schema(),
    ));
}

/// The schemas the request bodies' field properties refer to: the choice types and
/// AdditionalDomains' input.
fn field_schemas(out: &mut Vec<(String, RefOr<Schema>)>) {
    choice_schemas(out);
    out.push((
        AdditionalDomainsInput::name().into(),
        AdditionalDomainsInput::schema(),
    ));
    <AdditionalDomainsInput as ToSchema>::schemas(out);
}

/// A JSON type, or that type or `null`.
fn json_type(t: Type, null: bool) -> SchemaType {
    if null {
        SchemaType::Array(vec![t, Type::Null])
    } else {
        SchemaType::Type(t)
    }
}

/// A reference to the schema `name` with `description`, or `null` or that reference.
fn reference(name: &str, description: &str, null: bool) -> RefOr<Schema> {
    let mut reference = Ref::from_schema_name(name);
    reference.description = description.to_owned();
    if null {
        OneOfBuilder::new()
            .item(Object::with_type(Type::Null))
            .item(reference)
            .into()
    } else {
        RefOr::Ref(reference)
    }
}

/// The integer format that holds numbers up to `max`.
fn integer_format(max: u32) -> SchemaFormat {
    SchemaFormat::KnownFormat(if i32::try_from(max).is_ok() {
        KnownFormat::Int32
    } else {
        KnownFormat::Int64
    })
}

/// The JSON schema of one field of a request body, from its row of the field table: its JSON
/// type from the field's type (a choice type or AdditionalDomainsInput by reference), `null`
/// allowed where it clears the field, the range, length and description of the row.
fn field_property(field: &Field) -> RefOr<Schema> {
    let description = (!field.api.is_empty()).then_some(field.api);
    let json_type = |t: Type| json_type(t, field.clearable());
    let reference = |name: &str| reference(name, field.api, field.clearable());
    match field.type_name {
        fields::BOOLEAN => ObjectBuilder::new()
            .schema_type(json_type(Type::Boolean))
            .description(description)
            .into(),
        fields::STRING => {
            let (min, max) = field.length.unwrap_or((0, u32::MAX));
            ObjectBuilder::new()
                .schema_type(json_type(Type::String))
                .description(description)
                .write_only(field.write_only.then_some(true))
                .min_length((min > 0).then_some(min as usize))
                .max_length((max < u32::MAX).then_some(max as usize))
                .into()
        }
        fields::UINT32 => {
            let (min, max) = field.range.unwrap_or((0, u32::MAX));
            ObjectBuilder::new()
                .schema_type(json_type(Type::Integer))
                .format(Some(integer_format(max)))
                .description(description)
                .maximum(Some(max))
                .minimum(Some(min))
                .into()
        }
        fields::LIST_MODIFIER => reference(&AdditionalDomainsInput::name()),
        // A choice type: its schema is named as the type.
        choice => reference(choice),
    }
}

/// The JSON schema of one field of a record as responses show it, from its row of the field table:
/// its JSON type from the field's type (a choice type by reference, AdditionalDomains as the list
/// of domains it is), `null` allowed where the row says it is shown so, the row's response
/// description. Lengths and write-only are the request's. A number gives its range where the
/// range needs int64; the others say only what every u32 is (int32, from 0), as the hand-written
/// schemas these replaced did.
fn response_property(field: &Field) -> RefOr<Schema> {
    let description = (!field.response_api.is_empty()).then_some(field.response_api);
    let json_type = |t: Type| json_type(t, field.response_null);
    match field.type_name {
        fields::BOOLEAN => ObjectBuilder::new()
            .schema_type(json_type(Type::Boolean))
            .description(description)
            .into(),
        fields::STRING => ObjectBuilder::new()
            .schema_type(json_type(Type::String))
            .description(description)
            .into(),
        fields::UINT32 => {
            let (min, max) = field.range.unwrap_or((0, u32::MAX));
            let number = ObjectBuilder::new()
                .schema_type(json_type(Type::Integer))
                .format(Some(integer_format(max)))
                .description(description);
            if i32::try_from(max).is_ok() {
                number.minimum(Some(0)).into()
            } else {
                number.maximum(Some(max)).minimum(Some(min)).into()
            }
        }
        fields::LIST_MODIFIER => ArrayBuilder::new()
            .schema_type(json_type(Type::Array))
            .items(ObjectBuilder::new().schema_type(Type::String))
            .description(description)
            .into(),
        // A choice type: its schema is named as the type.
        choice => reference(choice, field.response_api, field.response_null),
    }
}

/// A string property of a request body that is not a settable field (Identity, Domain).
fn text_property(description: Option<&str>, example: Option<&str>) -> RefOr<Schema> {
    let mut property = ObjectBuilder::new()
        .schema_type(Type::String)
        .description(description)
        .build();
    property.example = example.map(Into::into);
    property.into()
}

/// A request body's schema: the `leading` properties (required when marked), then one per field
/// of `table`; no other property.
fn body_schema(
    description: &str,
    leading: Vec<(&str, RefOr<Schema>, bool)>,
    table: &[Field],
) -> RefOr<Schema> {
    let mut body = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(description))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    for (name, property, required) in leading {
        body = body.property(name, property);
        if required {
            body = body.required(name);
        }
    }
    for field in table {
        body = body.property(field.name, field_property(field));
    }
    body.into()
}

/// A request body whose settable fields are those of a `fedgate_manage::fields` table.
macro_rules! body_schema {
    ($(#[$meta:meta])* $name:ident, $build:expr) => {
        $(#[$meta])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $build
            }
        }

        impl ToSchema for $name {
            fn schemas(out: &mut Vec<(String, RefOr<Schema>)>) {
                field_schemas(out);
            }
        }
    };
}

/// A record's schema as responses show it: the `leading` properties that are not settable
/// (Identity, ...), then one per field of `table`; required are all but those shown as null.
fn record_schema(
    description: &str,
    leading: Vec<(&str, RefOr<Schema>)>,
    table: &[Field],
) -> RefOr<Schema> {
    let mut record = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(description));
    for (name, property) in leading {
        record = record.property(name, property).required(name);
    }
    for field in table {
        record = record.property(field.name, response_property(field));
        if !field.response_null {
            record = record.required(field.name);
        }
    }
    record.into()
}

/// A record whose shown settable fields are those of a `fedgate_manage::fields` table, named as
/// the model's type.
macro_rules! record_schema {
    ($(#[$meta:meta])* $name:ident, $schema_name:literal, $build:expr) => {
        $(#[$meta])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $build
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($schema_name)
            }

            fn schemas(out: &mut Vec<(String, RefOr<Schema>)>) {
                choice_schemas(out);
            }
        }
    };
}

record_schema!(
    /// An allowed partner as responses show it (`PartnerView`), from [`PARTNER_FIELDS`].
    PartnerSchema,
    "Partner",
    record_schema(
        "An allowed partner, as Get-CsXmppAllowedPartner shows it.",
        vec![
            (
                "Identity",
                text_property(
                    Some("The partner's primary domain (lowercase, IDNs as A-labels)."),
                    Some("fabrikam.com"),
                ),
            ),
            ("Domain", text_property(Some("Always equal to Identity."), None)),
        ],
        &PARTNER_FIELDS,
    )
);

/// Domains for a PSListModifier key: a list, or one domain.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum DomainsValue {
    List(Vec<String>),
    One(String),
}

/// PSListModifier for AdditionalDomains: Replace wins over Add/Remove; Remove is applied before Add.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ListModifierSchema {
    pub add: Option<DomainsValue>,
    pub remove: Option<DomainsValue>,
    pub replace: Option<DomainsValue>,
}

/// AdditionalDomains in a request: a list (or one comma-separated string) replaces, an object
/// edits.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum AdditionalDomainsInput {
    List(Vec<String>),
    Text(String),
    Modifier(ListModifierSchema),
}

body_schema!(
    /// The settable fields of a partner (PATCH), from [`PARTNER_FIELDS`].
    PartnerFieldsInput,
    body_schema(
        "The settable fields of a partner (PATCH: only those to change). Field names are
case-insensitive; JSON types are strict.",
        Vec::new(),
        &PARTNER_FIELDS,
    )
);

body_schema!(
    /// A new partner, from [`PARTNER_FIELDS`].
    PartnerCreateInput,
    body_schema(
        "A new partner: Identity or Domain (both only when they name the same domain) and any settable
field.",
        vec![
            ("Identity", text_property(None, Some("fabrikam.com")), false),
            ("Domain", text_property(None, None), false),
        ],
        &PARTNER_FIELDS,
    )
);

/// One page of partners.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct PartnerPage {
    #[schema(value_type = Vec<PartnerSchema>)]
    pub items: Vec<fedgate_model::PartnerView>,
    /// How many partners match the filter, over all pages.
    pub total: usize,
    pub offset: u32,
    pub limit: u32,
}

record_schema!(
    /// An external access policy as responses show it, from [`POLICY_FIELDS`].
    PolicySchema,
    "ExternalAccessPolicy",
    record_schema(
        "An external access policy (only EnableXmppAccess matters to fedgate).",
        vec![(
            "Identity",
            text_property(
                Some("`Global`, `site:<name>` or `tag:<name>`."),
                Some("tag:Sales"),
            ),
        )],
        &POLICY_FIELDS,
    )
);

body_schema!(
    /// The settable fields of a policy (PATCH), from [`POLICY_FIELDS`].
    PolicyFieldsInput,
    body_schema("The settable fields of a policy.", Vec::new(), &POLICY_FIELDS)
);

body_schema!(
    /// A new policy, from [`POLICY_FIELDS`].
    PolicyCreateInput,
    body_schema(
        "A new policy: Identity and any settable field.",
        vec![(
            "Identity",
            text_property(
                Some("`Global`, `site:<name>` or `tag:<name>` (a bare name is a tag)."),
                Some("tag:Sales"),
            ),
            true,
        )],
        &POLICY_FIELDS,
    )
);

/// A per-user grant of a tag policy.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = Grant)]
pub struct GrantSchema {
    #[schema(example = "alice@corp.example")]
    pub identity: String,
    pub external_access_policy: String,
}

/// Grant a tag policy to a user, or with null take the grant away.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct GrantInput {
    /// The tag policy's name (`Sales` or `tag:Sales`), or null.
    #[schema(required = true, example = "Sales")]
    pub policy_name: Option<String>,
}

record_schema!(
    /// The gateway-wide settings as responses show them, from [`GATEWAY_FIELDS`].
    GatewaySchema,
    "XmppGatewayConfiguration",
    record_schema(
        "The gateway-wide settings. DialbackPassphrase is write-only: shown as `********` when set.",
        vec![("Identity", text_property(None, Some("Global")))],
        &GATEWAY_FIELDS,
    )
);

body_schema!(
    /// The settable gateway-wide settings, from [`GATEWAY_FIELDS`].
    GatewayInput,
    body_schema(
        "The settable gateway-wide settings (ranges as `fedgate_model::gateway_settings::NUMERIC_SETTINGS`).",
        vec![(
            "Identity",
            text_property(Some("Only `Global`."), Some("Global")),
            false,
        )],
        &GATEWAY_FIELDS,
    )
);

/// One audit-log entry.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = AuditEntry)]
pub struct AuditSchema {
    pub id: u64,
    /// UTC, RFC 3339.
    pub time: String,
    /// `cli:<user>` or `token:<name>`.
    pub actor: String,
    pub command: String,
    pub target: String,
    /// The record before the change (null for a creation).
    pub before: Option<serde_json::Value>,
    /// The record after the change (null for a removal).
    pub after: Option<serde_json::Value>,
}

/// A node of the pool sharing the store (`GET /cluster/nodes`), from its heartbeats.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = ClusterNode)]
pub struct NodeSchema {
    /// The node's name (`[node] name` in its configuration).
    pub node: String,
    /// UTC, RFC 3339 (the database's clock): when the node started.
    pub started_at: String,
    /// UTC, RFC 3339 (the database's clock).
    pub last_heartbeat: String,
    /// How long ago the last heartbeat was, by the database's clock.
    pub seconds_since_heartbeat: f64,
    /// Whether the last heartbeat is within the lease time (10 s); a dead node's streams do not
    /// count against the connection limits.
    pub alive: bool,
    /// The fedgate version the node runs.
    pub version: String,
    /// The node's external listener.
    pub address: Option<String>,
    /// Its authenticated inbound partner streams at the last heartbeat.
    pub inbound_streams: u32,
    /// Its authenticated outbound partner streams at the last heartbeat.
    pub outbound_streams: u32,
    /// The stream leases it holds (counted while it is alive).
    pub leases: u32,
}

/// `GET /health`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// `ok`, or `unavailable` when the store cannot be read.
    pub status: String,
    /// The store's change counter.
    pub revision: Option<u64>,
    /// Why the store cannot be read.
    pub error: Option<String>,
}

// Query parameters, for the document (the handlers read them with `request::Params`, whose
// errors name the parameter).

/// Query of `GET /partners`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `*` and `?` wildcards on Identity, case-insensitive (Get-CsXmppAllowedPartner -Filter).
    #[param(example = "*.com")]
    pub filter: Option<String>,
    /// Partners to skip (default 0).
    #[param(minimum = 0, maximum = 2147483647)]
    pub offset: Option<u32>,
    /// Partners per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// `?whatIf=true`: check everything, say what would happen, write nothing (-WhatIf).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WhatIfQuery {
    #[serde(rename = "whatIf")]
    pub what_if: Option<bool>,
}

/// Query of `POST /partners/{identity}/test`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PartnerTestQuery {
    /// The hosted domain the test speaks as (-From); default: the first hosted domain.
    #[param(example = "corp.example")]
    pub from: Option<String>,
}

/// One step of a partner test.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = PartnerTestStep)]
pub struct PartnerTestStepSchema {
    /// Resolve, Connect, Stream, STARTTLS or Direct TLS, Certificate, Stream (TLS), SASL EXTERNAL, Dialback.
    pub step: String,
    /// Whether the step succeeded; null: not run (the detail says why).
    pub ok: Option<bool>,
    /// What the step saw (records, addresses, features, TLS version and cipher suite, errors).
    pub detail: String,
    /// How long the step took, in milliseconds.
    pub ms: u64,
}

/// The partner's certificate as the test saw it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = PartnerTestCertificate)]
pub struct PartnerTestCertificateSchema {
    pub subject: String,
    pub dns_names: Vec<String>,
    pub xmpp_addrs: Vec<String>,
    pub issuer: String,
    /// RFC 3339, UTC.
    pub not_before: String,
    /// RFC 3339, UTC.
    pub not_after: String,
    /// The chain validates against the gateway's trust anchors for partners.
    pub trusted: bool,
    /// A DNS or XmppAddr name matches the partner's domain.
    pub valid_for_domain: bool,
    /// serverAuth, clientAuth, …
    pub extended_key_usage: Vec<String>,
}

/// An authentication method.
#[derive(Serialize, ToSchema)]
#[schema(as = AuthMethod)]
pub enum AuthMethodSchema {
    SaslExternal,
    TlsDialback,
    TcpDialback,
}

/// The methods the test expects.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = PartnerTestMethods)]
pub struct PartnerTestMethodsSchema {
    /// What the gateway's streams to the partner will use; null: none can be set up.
    pub outbound: Option<AuthMethodSchema>,
    /// What the partner's streams may use, as far as can be told from here.
    pub inbound: Vec<AuthMethodSchema>,
}

/// The verdict: Ok and Warning mean streams can be set up; Fail that they cannot.
#[derive(Serialize, ToSchema)]
#[schema(as = PartnerTestVerdict)]
pub enum PartnerTestVerdictSchema {
    Ok,
    Warning,
    Fail,
}

/// The result of a partner test (Test-CsXmppAllowedPartner).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = PartnerTest)]
pub struct PartnerTestSchema {
    pub identity: String,
    /// The domain is on the allowed-partners list (else tested with the default settings).
    pub listed: bool,
    /// The hosted domain the test spoke as.
    pub from: String,
    pub steps: Vec<PartnerTestStepSchema>,
    /// Null when no TLS stream was set up.
    pub certificate: Option<PartnerTestCertificateSchema>,
    pub methods: PartnerTestMethodsSchema,
    pub verdict: PartnerTestVerdictSchema,
    /// Failures first, then warnings, as sentences.
    pub problems: Vec<String>,
}

/// Query of `POST /gateway-configuration/test`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GatewayTestQuery {
    /// The hosted domain to test (-Domain); default: every hosted domain.
    #[param(example = "corp.example")]
    pub domain: Option<String>,
}

/// The gateway test of one hosted domain.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = GatewayTestDomain)]
pub struct GatewayTestDomainSchema {
    pub domain: String,
    /// Resolve, Points here, then per listener Connect, Direct TLS, Stream, STARTTLS, Certificate, Stream (TLS).
    pub steps: Vec<PartnerTestStepSchema>,
    /// The certificate the gateway presents for the domain; null when no TLS stream was set up.
    pub certificate: Option<PartnerTestCertificateSchema>,
    /// Which trust anchors the certificate chains to: `system roots` or `[tls] ca_files <file>`; null: none.
    pub trust_anchor: Option<String>,
    pub verdict: PartnerTestVerdictSchema,
    /// Failures first, then warnings, as sentences.
    pub problems: Vec<String>,
}

/// The result of the gateway test (Test-CsXmppGatewayConfiguration).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = GatewayTest)]
pub struct GatewayTestSchema {
    /// The worst verdict of the domains.
    pub verdict: PartnerTestVerdictSchema,
    /// The external listeners compared and connected to, `address:port (STARTTLS|Direct TLS)`.
    pub listeners: Vec<String>,
    pub domains: Vec<GatewayTestDomainSchema>,
}

/// Which way a partner's streams went: from it (inbound) or to it (outbound).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = HealthDirection)]
pub enum HealthDirectionSchema {
    Inbound,
    Outbound,
}

/// The last stream with the partner that came up.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = HealthSuccess)]
pub struct HealthSuccessSchema {
    /// Seconds since 1970.
    pub at: u64,
    pub method: AuthMethodSchema,
    /// e.g. `TLSv1.3`; null on a cleartext stream.
    pub tls_version: Option<String>,
}

/// The last stream with the partner that failed.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = HealthFailure)]
pub struct HealthFailureSchema {
    /// Seconds since 1970.
    pub at: u64,
    /// Where it failed, e.g. `outbound setup`, `dialback`.
    pub step: String,
    pub reason: String,
}

/// A partner's traffic per minute over the last hour (kept in memory by the gateway: a restart
/// starts it over). Every list has 60 values, oldest first, the current minute last; minutes
/// without traffic are 0.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = PartnerTraffic)]
pub struct PartnerTrafficSchema {
    /// The start of each minute, seconds since 1970.
    #[schema(min_items = 60, max_items = 60)]
    pub minutes: Vec<u64>,
    /// Stanzas forwarded from the partner, per minute.
    #[schema(min_items = 60, max_items = 60)]
    pub inbound: Vec<u32>,
    /// Stanzas forwarded to the partner, per minute (forwarded by the policy; a stanza the
    /// partner's server could not be reached for is bounced afterwards).
    #[schema(min_items = 60, max_items = 60)]
    pub outbound: Vec<u32>,
    /// Refusals per minute by reason (the labels of `fedgate_refusals_total`, e.g.
    /// `not_authorised`, `user_not_enabled`; `other` past 32 reasons), both directions; only
    /// the reasons with a refusal in the last hour.
    pub refusals: std::collections::BTreeMap<String, Vec<u32>>,
}

/// Partner health in one direction, as the gateway recorded it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = PartnerHealth)]
pub struct PartnerHealthSchema {
    /// The partner's Identity.
    pub partner: String,
    pub direction: HealthDirectionSchema,
    /// Null: no stream came up yet.
    pub last_success: Option<HealthSuccessSchema>,
    /// Null: none failed yet.
    pub last_failure: Option<HealthFailureSchema>,
    pub streams_last_hour: u64,
    pub streams_last_day: u64,
    pub failures_last_hour: u64,
    pub failures_last_day: u64,
    /// Stanzas or streams refused by policy, from the partner or to it.
    pub refusals_last_hour: u64,
    pub refusals_last_day: u64,
    /// The not-after of the partner's certificate last seen in this direction, seconds since
    /// 1970; null: no certificate seen.
    pub certificate_not_after: Option<i64>,
    /// The partner's traffic (the same on both of its rows).
    pub traffic: PartnerTrafficSchema,
}

/// Query of `GET /policies`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PolicyListQuery {
    /// `*` and `?` wildcards on Identity (`tag:*`), case-insensitive.
    pub filter: Option<String>,
}

/// Query of `DELETE /policies/{identity}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemovePolicyQuery {
    /// Also remove the grants of a tag policy still granted to users (-Force).
    pub force: Option<bool>,
    #[serde(rename = "whatIf")]
    pub what_if: Option<bool>,
}

/// Query of `GET /audit`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only changes to this record: a partner's Identity, a policy, a user, `Global`, `token:<name>`.
    pub target: Option<String>,
    /// Only entries with an Id greater than this (to follow the log).
    #[param(minimum = 0, maximum = 9223372036854775807_u64)]
    pub after: Option<u64>,
    /// At most this many of the newest entries, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

macro_rules! write_result {
    ($(#[$meta:meta])* $name:ident, $runtime:ty, $doc:ty) => {
        $(#[$meta])*
        #[derive(Serialize, ToSchema)]
        #[serde(rename_all = "PascalCase")]
        pub struct $name {
            /// The record after the change (or, for a removal, the record removed; for a dry
            /// run, the record as it would be).
            #[schema(value_type = $doc)]
            pub value: $runtime,
            /// The record's version after the change (its ETag); 0 when nothing was written.
            pub version: u64,
            /// Non-fatal warnings, e.g. the TLS × SASL × Dialback warnings.
            pub warnings: Vec<String>,
            /// For `?whatIf=true`: what would have happened; nothing was written.
            pub what_if: Option<String>,
        }
    };
}

write_result!(
    /// What a partner change did.
    PartnerWrite,
    fedgate_model::PartnerView,
    PartnerSchema
);
write_result!(
    /// What a policy change did.
    PolicyWrite,
    serde_json::Value,
    PolicySchema
);
write_result!(
    /// What a change of the gateway-wide settings did.
    GatewayWrite,
    serde_json::Value,
    GatewaySchema
);
write_result!(
    /// What a grant did: the user's grant after it (null when removed).
    GrantWrite,
    Option<serde_json::Value>,
    Option<GrantSchema>
);

/// Adds the bearer-token security scheme and makes it the default.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The request-body schemas whose fields are those of a `fedgate_manage::fields` table.
#[cfg(test)]
const FIELD_SCHEMAS: [(&str, &[Field]); 5] = [
    ("PartnerFieldsInput", &PARTNER_FIELDS),
    ("PartnerCreateInput", &PARTNER_FIELDS),
    ("PolicyFieldsInput", &POLICY_FIELDS),
    ("PolicyCreateInput", &POLICY_FIELDS),
    ("GatewayInput", &GATEWAY_FIELDS),
];

/// The frame of the document: info, security, shared schemas. Paths come from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "fedgate admin API",
        description = "Manage fedgate's XMPP allowed partners, external access policies, grants and gateway-wide settings with Skype for Business semantics. Authenticate with 'Authorization: Bearer <token>' (fedgate token create). Errors: {\"error\": {\"code\", \"parameter\", \"message\"}} with the CLI's texts."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(ErrorBody, ErrorDetail, PartnerSchema, PolicySchema, GrantSchema))
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    /// The body schemas list exactly the table's fields (and the Identity fields of their
    /// request), and every ranged field got its range.
    #[test]
    fn body_schemas_are_the_field_tables() {
        let doc = serde_json::to_value(crate::openapi()).expect("the document serializes");
        let schemas = &doc["components"]["schemas"];
        for (name, fields) in FIELD_SCHEMAS {
            let properties = schemas[name]["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("{name} has properties"));
            let mut listed: Vec<&str> = properties
                .keys()
                .map(String::as_str)
                .filter(|k| !matches!(*k, "Identity" | "Domain"))
                .collect();
            let mut table: Vec<&str> = fields.iter().map(|f| f.name).collect();
            listed.sort_unstable();
            table.sort_unstable();
            assert_eq!(listed, table, "{name}");
            for field in fields {
                if let Some((min, max)) = field.range {
                    let property = &properties[field.name];
                    assert_eq!(property["minimum"], min, "{name}.{}", field.name);
                    assert_eq!(property["maximum"], max, "{name}.{}", field.name);
                }
            }
        }
        // Property by property, from the table: JSON type, null where it clears, references.
        let partner = &schemas["PartnerFieldsInput"]["properties"];
        assert_eq!(partner["SupportDialbackNegotiation"]["type"], "boolean");
        assert_eq!(
            partner["ConnectionLimit"]["type"],
            serde_json::json!(["integer", "null"])
        );
        assert_eq!(partner["ConnectionLimit"]["format"], "int64");
        assert_eq!(partner["Description"]["maxLength"], 1024);
        assert_eq!(
            partner["PartnerType"]["$ref"],
            "#/components/schemas/PartnerType"
        );
        assert_eq!(
            partner["AdditionalDomains"]["oneOf"][1]["$ref"],
            "#/components/schemas/AdditionalDomainsInput"
        );
        let gateway = &schemas["GatewayInput"]["properties"];
        assert_eq!(gateway["KeepAliveInterval"]["format"], "int32");
        assert_eq!(gateway["DialbackPassphrase"]["writeOnly"], true);
        assert_eq!(gateway["DialbackPassphrase"]["minLength"], 16);
        assert_eq!(schemas["PolicyCreateInput"]["required"][0], "Identity");
    }

    /// The records' schemas list the model's output fields in its order, require all but those
    /// the table shows as null, and take each field's shape from its row.
    #[test]
    fn record_schemas_are_the_model_outputs_from_the_tables() {
        let doc = serde_json::to_value(crate::openapi()).expect("the document serializes");
        let schemas = &doc["components"]["schemas"];
        let records: [(&str, &[&str], &[Field]); 3] = [
            (
                "Partner",
                &fedgate_model::partner::PARTNER_FIELDS,
                &PARTNER_FIELDS,
            ),
            (
                "ExternalAccessPolicy",
                &fedgate_model::policy::POLICY_FIELDS,
                &POLICY_FIELDS,
            ),
            (
                "XmppGatewayConfiguration",
                &fedgate_model::gateway_settings::GATEWAY_FIELDS,
                &GATEWAY_FIELDS,
            ),
        ];
        for (name, output, table) in records {
            let properties: Vec<&str> = schemas[name]["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("{name} has properties"))
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(properties, output, "{name}");
            let required: Vec<&str> = schemas[name]["required"]
                .as_array()
                .unwrap_or_else(|| panic!("{name} has required"))
                .iter()
                .filter_map(serde_json::Value::as_str)
                .collect();
            let shown: Vec<&str> = output
                .iter()
                .copied()
                .filter(|n| fields::find(table, n).is_none_or(|f| !f.response_null))
                .collect();
            assert_eq!(required, shown, "{name}");
        }
        let partner = &schemas["Partner"]["properties"];
        assert_eq!(
            partner["ConnectionLimit"]["type"],
            serde_json::json!(["integer", "null"])
        );
        assert_eq!(partner["ConnectionLimit"]["maximum"], u32::MAX);
        assert_eq!(partner["Description"]["type"], "string");
        assert_eq!(partner["AdditionalDomains"]["items"]["type"], "string");
        assert_eq!(
            partner["TlsNegotiation"]["$ref"],
            "#/components/schemas/TlsNegotiation"
        );
        assert_eq!(
            partner["BypassDualWrite"]["description"],
            "Accepted for compatibility; no effect."
        );
        let gateway = &schemas["XmppGatewayConfiguration"]["properties"];
        assert_eq!(
            gateway["DialbackPassphrase"]["type"],
            serde_json::json!(["string", "null"])
        );
        assert!(gateway["DialbackPassphrase"]["writeOnly"].is_null());
        assert_eq!(gateway["KeepAliveInterval"]["format"], "int32");
    }

    /// The choice types' values are the model's, and every reference of a body resolves.
    #[test]
    fn choices_are_the_models_and_references_resolve() {
        let doc = serde_json::to_value(crate::openapi()).expect("the document serializes");
        let schemas = &doc["components"]["schemas"];
        let names = |all: Vec<&str>| serde_json::json!(all);
        assert_eq!(
            schemas["PartnerType"]["enum"],
            names(PartnerType::ALL.iter().map(|v| v.name()).collect())
        );
        assert_eq!(
            schemas["TlsNegotiation"]["enum"],
            names(TlsNegotiation::ALL.iter().map(|v| v.name()).collect())
        );
        assert_eq!(
            schemas["SaslNegotiation"]["enum"],
            names(SaslNegotiation::ALL.iter().map(|v| v.name()).collect())
        );
        let text = doc.to_string();
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().unwrap_or_default();
            assert!(
                schemas[name].is_object(),
                "{name} is referenced but missing"
            );
        }
    }
}
