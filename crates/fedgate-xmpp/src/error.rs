//! Stream errors (RFC 6120 §4.9) and stanza errors (RFC 6120 §8.3): the condition enums with
//! their wire names, `<stream:error/>` serialization and parsing, stanza error elements and the
//! [`bounce`] builder that turns an undeliverable stanza into its error reply.

use std::fmt;

use crate::element::Element;
use crate::ns;

macro_rules! conditions {
    ($(#[$m:meta])* $vis:vis enum $name:ident { $($(#[$vm:meta])* $var:ident => $s:literal,)* } extra { $($extra:tt)* }) => {
        $(#[$m])*
        $vis enum $name {
            $($(#[$vm])* $var,)*
            $($extra)*
        }
        impl $name {
            /// Every condition without payload, in RFC order.
            pub const SIMPLE: &'static [$name] = &[$($name::$var,)*];
            fn simple_name(&self) -> Option<&'static str> {
                match self { $($name::$var => Some($s),)* #[allow(unreachable_patterns)] _ => None }
            }
            fn simple_from_name(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$var),)* _ => None }
            }
        }
    };
}

conditions! {
    /// Stream error conditions, RFC 6120 §4.9.3 (all of them).
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    pub enum StreamErrorCondition {
        /// XML that cannot be processed (§4.9.3.1).
        BadFormat => "bad-format",
        /// Unsupported or missing namespace prefix (§4.9.3.2).
        BadNamespacePrefix => "bad-namespace-prefix",
        /// A new stream replaces this one (§4.9.3.3).
        Conflict => "conflict",
        /// No traffic for too long (§4.9.3.4).
        ConnectionTimeout => "connection-timeout",
        /// The `to` domain is no longer serviced (§4.9.3.5).
        HostGone => "host-gone",
        /// The `to` domain is not serviced (§4.9.3.6).
        HostUnknown => "host-unknown",
        /// Missing `to`/`from` where required (§4.9.3.7).
        ImproperAddressing => "improper-addressing",
        /// Internal error (§4.9.3.8).
        InternalServerError => "internal-server-error",
        /// `from` does not match an authenticated address (§4.9.3.9).
        InvalidFrom => "invalid-from",
        /// Wrong stream or content namespace (§4.9.3.10).
        InvalidNamespace => "invalid-namespace",
        /// Invalid XML (schema-level) (§4.9.3.11).
        InvalidXml => "invalid-xml",
        /// Data sent before authentication, or authentication refused (§4.9.3.12).
        NotAuthorized => "not-authorized",
        /// XML that is not well-formed (§4.9.3.13).
        NotWellFormed => "not-well-formed",
        /// Local policy violated, e.g. a size limit (§4.9.3.14).
        PolicyViolation => "policy-violation",
        /// Could not connect to a remote entity needed for authentication (§4.9.3.15).
        RemoteConnectionFailed => "remote-connection-failed",
        /// Stream must be reset (§4.9.3.16).
        Reset => "reset",
        /// Not enough resources (§4.9.3.17).
        ResourceConstraint => "resource-constraint",
        /// Restricted XML: comments, PIs, DTDs, entity references (§4.9.3.18).
        RestrictedXml => "restricted-xml",
        /// System shutting down (§4.9.3.20).
        SystemShutdown => "system-shutdown",
        /// Other condition (§4.9.3.21).
        UndefinedCondition => "undefined-condition",
        /// Encoding other than UTF-8 (§4.9.3.22).
        UnsupportedEncoding => "unsupported-encoding",
        /// A mandatory-to-negotiate feature is not supported (§4.9.3.23).
        UnsupportedFeature => "unsupported-feature",
        /// Unknown first-level child (§4.9.3.24).
        UnsupportedStanzaType => "unsupported-stanza-type",
        /// Unsupported stream version (§4.9.3.25).
        UnsupportedVersion => "unsupported-version",
    }
    extra {
        /// Redirect to another host (§4.9.3.19); carries the host (`host`, `host:port`,
        /// `[v6]:port`) as the condition element's text.
        SeeOtherHost(String),
    }
}

impl StreamErrorCondition {
    /// The RFC 6120 element name, e.g. `"not-well-formed"`.
    pub fn name(&self) -> &'static str {
        match self {
            StreamErrorCondition::SeeOtherHost(_) => "see-other-host",
            other => other.simple_name().unwrap_or("undefined-condition"),
        }
    }

    /// Parse an element name (`see-other-host` gives an empty host).
    pub fn from_name(name: &str) -> Option<Self> {
        if name == "see-other-host" {
            return Some(StreamErrorCondition::SeeOtherHost(String::new()));
        }
        Self::simple_from_name(name)
    }
}

impl fmt::Display for StreamErrorCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A stream-level error: fatal for the stream. The parser returns these; the runtime sends
/// [`to_xml`](Self::to_xml) followed by `</stream:stream>` and closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{condition}: {text}")]
pub struct StreamError {
    /// The RFC 6120 condition.
    pub condition: StreamErrorCondition,
    /// Human-readable description (sent in `<text/>` when not empty; never contains large
    /// amounts of peer data).
    pub text: String,
}

impl StreamError {
    /// A new stream error.
    pub fn new(condition: StreamErrorCondition, text: impl Into<String>) -> Self {
        StreamError {
            condition,
            text: text.into(),
        }
    }

    /// The `<stream:error>` element.
    pub fn to_element(&self) -> Element {
        let mut cond = Element::new(self.condition.name(), ns::STREAM_ERRORS);
        if let StreamErrorCondition::SeeOtherHost(host) = &self.condition {
            cond.push_text(host);
        }
        let mut e = Element::new("error", ns::STREAMS).with_child(cond);
        if !self.text.is_empty() {
            e.push_child(Element::new("text", ns::STREAM_ERRORS).with_text(&self.text));
        }
        e
    }

    /// `<stream:error><condition xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text ...>..</text></stream:error>`
    /// as bytes, for a stream whose header bound the `stream:` prefix.
    pub fn to_xml(&self) -> Vec<u8> {
        self.to_element().to_bytes()
    }

    /// Read a received `<stream:error/>` element. Unknown conditions map to
    /// `undefined-condition`; returns `None` when the element is not a stream error.
    pub fn from_element(e: &Element) -> Option<StreamError> {
        if !e.is("error", ns::STREAMS) {
            return None;
        }
        let mut condition = StreamErrorCondition::UndefinedCondition;
        let mut text = String::new();
        for c in e.children() {
            if c.namespace != ns::STREAM_ERRORS {
                continue;
            }
            if c.name == "text" {
                text = c.text();
            } else if let Some(mut cond) = StreamErrorCondition::from_name(&c.name) {
                if let StreamErrorCondition::SeeOtherHost(h) = &mut cond {
                    *h = c.text();
                }
                condition = cond;
            }
        }
        Some(StreamError { condition, text })
    }
}

/// Stanza error types, RFC 6120 §8.3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// Retry after providing credentials.
    Auth,
    /// Do not retry (unrecoverable).
    Cancel,
    /// Proceed (the condition was only a warning).
    Continue,
    /// Retry after changing the data sent.
    Modify,
    /// Retry after waiting (temporary).
    Wait,
}

impl ErrorType {
    /// All types.
    pub const ALL: [ErrorType; 5] = [
        ErrorType::Auth,
        ErrorType::Cancel,
        ErrorType::Continue,
        ErrorType::Modify,
        ErrorType::Wait,
    ];

    /// Wire name (`"cancel"`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }

    /// Parse a wire name.
    pub fn from_name(s: &str) -> Option<Self> {
        ErrorType::ALL.into_iter().find(|t| t.name() == s)
    }
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

conditions! {
    /// Stanza error conditions, RFC 6120 §8.3.3 (all of them).
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    pub enum StanzaErrorCondition {
        /// §8.3.3.1
        BadRequest => "bad-request",
        /// §8.3.3.2
        Conflict => "conflict",
        /// §8.3.3.3
        FeatureNotImplemented => "feature-not-implemented",
        /// §8.3.3.4
        Forbidden => "forbidden",
        /// §8.3.3.6
        InternalServerError => "internal-server-error",
        /// §8.3.3.7
        ItemNotFound => "item-not-found",
        /// §8.3.3.8
        JidMalformed => "jid-malformed",
        /// §8.3.3.9
        NotAcceptable => "not-acceptable",
        /// §8.3.3.10
        NotAllowed => "not-allowed",
        /// §8.3.3.11
        NotAuthorized => "not-authorized",
        /// §8.3.3.12
        PolicyViolation => "policy-violation",
        /// §8.3.3.13
        RecipientUnavailable => "recipient-unavailable",
        /// §8.3.3.15
        RegistrationRequired => "registration-required",
        /// §8.3.3.16
        RemoteServerNotFound => "remote-server-not-found",
        /// §8.3.3.17
        RemoteServerTimeout => "remote-server-timeout",
        /// §8.3.3.18
        ResourceConstraint => "resource-constraint",
        /// §8.3.3.19
        ServiceUnavailable => "service-unavailable",
        /// §8.3.3.20
        SubscriptionRequired => "subscription-required",
        /// §8.3.3.21
        UndefinedCondition => "undefined-condition",
        /// §8.3.3.22
        UnexpectedRequest => "unexpected-request",
    }
    extra {
        /// §8.3.3.5: the recipient is gone; optional new address (XMPP URI) as element text.
        Gone(Option<String>),
        /// §8.3.3.14: redirect; optional alternate address (XMPP URI) as element text.
        Redirect(Option<String>),
    }
}

impl StanzaErrorCondition {
    /// The RFC 6120 element name.
    pub fn name(&self) -> &'static str {
        match self {
            StanzaErrorCondition::Gone(_) => "gone",
            StanzaErrorCondition::Redirect(_) => "redirect",
            other => other.simple_name().unwrap_or("undefined-condition"),
        }
    }

    /// Parse an element name (`gone`/`redirect` without address).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "gone" => Some(StanzaErrorCondition::Gone(None)),
            "redirect" => Some(StanzaErrorCondition::Redirect(None)),
            other => Self::simple_from_name(other),
        }
    }

    /// The error type RFC 6120 §8.3.3 associates with the condition (its examples' type when
    /// two are allowed).
    pub fn default_type(&self) -> ErrorType {
        use StanzaErrorCondition::*;
        match self {
            BadRequest | JidMalformed | NotAcceptable | PolicyViolation | Redirect(_) => {
                ErrorType::Modify
            }
            Forbidden | NotAuthorized | RegistrationRequired | SubscriptionRequired => {
                ErrorType::Auth
            }
            RecipientUnavailable | RemoteServerTimeout | ResourceConstraint | UnexpectedRequest => {
                ErrorType::Wait
            }
            Conflict
            | FeatureNotImplemented
            | Gone(_)
            | InternalServerError
            | ItemNotFound
            | NotAllowed
            | RemoteServerNotFound
            | ServiceUnavailable
            | UndefinedCondition => ErrorType::Cancel,
        }
    }
}

impl fmt::Display for StanzaErrorCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A stanza error (`<error type='..'>` child of a stanza of type `error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaError {
    /// The error type.
    pub error_type: ErrorType,
    /// The defined condition.
    pub condition: StanzaErrorCondition,
    /// Optional human-readable text.
    pub text: Option<String>,
    /// Optional `by` attribute (the entity that generated the error, e.g. our domain).
    pub by: Option<String>,
}

impl StanzaError {
    /// An error with the condition's default type and no text.
    pub fn new(condition: StanzaErrorCondition) -> Self {
        StanzaError {
            error_type: condition.default_type(),
            condition,
            text: None,
            by: None,
        }
    }

    /// Builder: set the text.
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// Builder: set the type.
    pub fn with_type(mut self, t: ErrorType) -> Self {
        self.error_type = t;
        self
    }

    /// Builder: set `by`.
    pub fn with_by(mut self, by: impl Into<String>) -> Self {
        self.by = Some(by.into());
        self
    }

    /// The `<error/>` element in the given content namespace (`jabber:server` on s2s).
    pub fn to_element(&self, content_ns: &str) -> Element {
        let mut cond = Element::new(self.condition.name(), ns::STANZA_ERRORS);
        match &self.condition {
            StanzaErrorCondition::Gone(Some(a)) | StanzaErrorCondition::Redirect(Some(a)) => {
                cond.push_text(a)
            }
            _ => {}
        }
        let mut e = Element::new("error", content_ns)
            .with_attr("type", self.error_type.name())
            .with_child(cond);
        if let Some(by) = &self.by {
            e.set_attr("by", by.clone());
        }
        if let Some(t) = &self.text {
            e.push_child(Element::new("text", ns::STANZA_ERRORS).with_text(t));
        }
        e
    }

    /// Read the `<error/>` child of a stanza. Unknown conditions become
    /// `undefined-condition`, an unknown type `cancel`.
    pub fn from_stanza(stanza: &Element) -> Option<StanzaError> {
        stanza
            .child("error", &stanza.namespace)
            .map(StanzaError::from_element)
    }

    /// Read an `<error/>` element itself (any namespace).
    pub fn from_element(e: &Element) -> StanzaError {
        let error_type = e
            .attr("type")
            .and_then(ErrorType::from_name)
            .unwrap_or(ErrorType::Cancel);
        let mut condition = StanzaErrorCondition::UndefinedCondition;
        let mut text = None;
        for c in e.children() {
            if c.namespace != ns::STANZA_ERRORS {
                continue;
            }
            if c.name == "text" {
                text = Some(c.text());
            } else if let Some(mut cond) = StanzaErrorCondition::from_name(&c.name) {
                if let StanzaErrorCondition::Gone(a) | StanzaErrorCondition::Redirect(a) = &mut cond
                {
                    let t = c.text();
                    *a = (!t.is_empty()).then_some(t);
                }
                condition = cond;
            }
        }
        StanzaError {
            error_type,
            condition,
            text,
            by: e.attr("by").map(str::to_owned),
        }
    }
}

/// Whether a bounce keeps the original stanza's children (RFC 6120 §8.3.1: the error stanza
/// SHOULD/MAY include the original payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// Keep the original children (minus any `<error/>`).
    Keep,
    /// Send only the `<error/>` element.
    Drop,
}

/// Build the error reply to an undeliverable stanza: same element name and namespace, `from`
/// and `to` swapped, `id` and `xml:lang` kept, `type='error'`, the original children kept or
/// dropped, and the `<error/>` element appended.
///
/// Returns `None` — nothing must be sent — when the original is not a stanza
/// (`message`/`presence`/`iq` in `jabber:server` or `jabber:client`), is itself of type
/// `error` (never an error in reply to an error, RFC 6120 §8.3.1), or is an `iq` of type
/// `result` (RFC 6120 §10.5.3: results and errors are silently dropped when undeliverable).
pub fn bounce(original: &Element, error: &StanzaError, payload: Payload) -> Option<Element> {
    if original.namespace != ns::SERVER && original.namespace != ns::CLIENT {
        return None;
    }
    if !matches!(original.name.as_str(), "message" | "presence" | "iq") {
        return None;
    }
    let ty = original.attr("type");
    if ty == Some("error") || (original.name == "iq" && ty == Some("result")) {
        return None;
    }
    let mut reply = Element::new(original.name.clone(), original.namespace.clone());
    if let Some(f) = original.attr("from") {
        reply.set_attr("to", f);
    }
    if let Some(t) = original.attr("to") {
        reply.set_attr("from", t);
    }
    for k in ["id", "xml:lang"] {
        if let Some(v) = original.attr(k) {
            reply.set_attr(k, v);
        }
    }
    reply.set_attr("type", "error");
    if payload == Payload::Keep {
        for n in &original.children {
            match n {
                crate::Node::Element(e) if e.is("error", &original.namespace) => {}
                other => reply.children.push(other.clone()),
            }
        }
    }
    reply.push_child(error.to_element(&original.namespace));
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_condition_names_roundtrip() {
        assert_eq!(StreamErrorCondition::SIMPLE.len(), 24);
        for c in StreamErrorCondition::SIMPLE {
            assert_eq!(StreamErrorCondition::from_name(c.name()).as_ref(), Some(c));
        }
        assert_eq!(
            StreamErrorCondition::from_name("see-other-host"),
            Some(StreamErrorCondition::SeeOtherHost(String::new()))
        );
        assert!(StreamErrorCondition::from_name("xml-not-well-formed").is_none());
    }

    #[test]
    fn stanza_condition_names_roundtrip() {
        assert_eq!(StanzaErrorCondition::SIMPLE.len(), 20);
        for c in StanzaErrorCondition::SIMPLE {
            assert_eq!(StanzaErrorCondition::from_name(c.name()).as_ref(), Some(c));
        }
        assert_eq!(StanzaErrorCondition::Gone(None).name(), "gone");
        assert_eq!(
            StanzaErrorCondition::PolicyViolation.default_type(),
            ErrorType::Modify
        );
        assert_eq!(
            StanzaErrorCondition::RemoteServerTimeout.default_type(),
            ErrorType::Wait
        );
        for t in ErrorType::ALL {
            assert_eq!(ErrorType::from_name(t.name()), Some(t));
        }
    }

    #[test]
    fn stream_error_xml() {
        let e = StreamError::new(StreamErrorCondition::PolicyViolation, "no <partner>");
        assert_eq!(
            String::from_utf8(e.to_xml()).unwrap(),
            "<stream:error><policy-violation xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/>\
             <text xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\">no &lt;partner&gt;</text></stream:error>"
        );
        assert_eq!(StreamError::from_element(&e.to_element()), Some(e));
        let e = StreamError::new(StreamErrorCondition::SeeOtherHost("x.test:5269".into()), "");
        assert_eq!(
            String::from_utf8(e.to_xml()).unwrap(),
            "<stream:error><see-other-host xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\">x.test:5269</see-other-host></stream:error>"
        );
        assert_eq!(StreamError::from_element(&e.to_element()), Some(e));
        assert_eq!(e_display(), "not-well-formed: x");
    }

    fn e_display() -> String {
        StreamError::new(StreamErrorCondition::NotWellFormed, "x").to_string()
    }

    fn msg(ty: Option<&str>) -> Element {
        let mut m = Element::new("message", ns::SERVER)
            .with_attr("from", "romeo@montague.example/orchard")
            .with_attr("to", "juliet@capulet.example")
            .with_attr("id", "m1")
            .with_attr("xml:lang", "en")
            .with_child(Element::new("body", ns::SERVER).with_text("hi"));
        if let Some(t) = ty {
            m.set_attr("type", t);
        }
        m
    }

    #[test]
    fn bounce_swaps_and_adds_error() {
        let err = StanzaError::new(StanzaErrorCondition::PolicyViolation)
            .with_text("XMPP access disabled");
        let b = bounce(&msg(Some("chat")), &err, Payload::Keep).unwrap();
        assert_eq!(b.attr("to"), Some("romeo@montague.example/orchard"));
        assert_eq!(b.attr("from"), Some("juliet@capulet.example"));
        assert_eq!(b.attr("id"), Some("m1"));
        assert_eq!(b.attr("type"), Some("error"));
        assert_eq!(b.lang(), Some("en"));
        assert!(b.child("body", ns::SERVER).is_some());
        let e = b.child("error", ns::SERVER).unwrap();
        assert_eq!(e.attr("type"), Some("modify"));
        assert!(e.child("policy-violation", ns::STANZA_ERRORS).is_some());
        assert_eq!(
            e.child("text", ns::STANZA_ERRORS)
                .map(|t| t.text())
                .as_deref(),
            Some("XMPP access disabled")
        );
        assert_eq!(StanzaError::from_stanza(&b), Some(err.clone()));
        assert_eq!(
            String::from_utf8(b.to_bytes()).unwrap(),
            "<message from=\"juliet@capulet.example\" id=\"m1\" to=\"romeo@montague.example/orchard\" type=\"error\" xml:lang=\"en\">\
             <body>hi</body><error type=\"modify\"><policy-violation xmlns=\"urn:ietf:params:xml:ns:xmpp-stanzas\"/>\
             <text xmlns=\"urn:ietf:params:xml:ns:xmpp-stanzas\">XMPP access disabled</text></error></message>"
        );
        let d = bounce(&msg(None), &err, Payload::Drop).unwrap();
        assert_eq!(d.children().count(), 1);
    }

    #[test]
    fn never_error_in_reply_to_error() {
        let err = StanzaError::new(StanzaErrorCondition::ServiceUnavailable);
        assert!(bounce(&msg(Some("error")), &err, Payload::Keep).is_none());
        let iq = Element::new("iq", ns::SERVER).with_attr("type", "result");
        assert!(bounce(&iq, &err, Payload::Keep).is_none());
        let iq = Element::new("iq", ns::SERVER).with_attr("type", "get");
        assert!(bounce(&iq, &err, Payload::Keep).is_some());
        let other = Element::new("result", ns::DIALBACK);
        assert!(bounce(&other, &err, Payload::Keep).is_none());
    }

    #[test]
    fn bounce_of_stanza_with_error_child_drops_old_error() {
        let mut p = Element::new("presence", ns::SERVER)
            .with_attr("from", "a@b")
            .with_attr("to", "c@d");
        p.push_child(StanzaError::new(StanzaErrorCondition::Conflict).to_element(ns::SERVER));
        let err = StanzaError::new(StanzaErrorCondition::Gone(Some("xmpp:x@y".into())));
        let b = bounce(&p, &err, Payload::Keep).unwrap();
        assert_eq!(b.children().count(), 1);
        assert_eq!(StanzaError::from_stanza(&b).unwrap(), err);
    }
}
