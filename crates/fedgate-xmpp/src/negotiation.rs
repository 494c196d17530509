//! Builders (and a few readers) for the s2s negotiation elements: stream features, STARTTLS
//! (RFC 6120 §5), SASL EXTERNAL (RFC 6120 §6, XEP-0178) and server dialback (XEP-0220).
//! Plain functions returning [`Element`]; the runtime serializes them with
//! [`Element::write_to`].

use crate::element::Element;
use crate::error::StanzaError;
use crate::ns;

/// STARTTLS offer in the stream features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsOffer {
    /// Not offered.
    None,
    /// `<starttls/>`.
    Optional,
    /// `<starttls><required/></starttls>`.
    Required,
}

/// What the receiving entity offers in `<stream:features/>` (or what a peer offered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Features {
    /// STARTTLS.
    pub starttls: TlsOffer,
    /// SASL mechanisms (`EXTERNAL` for s2s); empty = no `<mechanisms/>`.
    pub sasl_mechanisms: Vec<String>,
    /// Dialback feature `<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>`.
    pub dialback: bool,
}

impl Features {
    /// The `<stream:features/>` element.
    pub fn to_element(&self) -> Element {
        let mut f = Element::new("features", ns::STREAMS);
        match self.starttls {
            TlsOffer::None => {}
            TlsOffer::Optional => f.push_child(starttls()),
            TlsOffer::Required => {
                f.push_child(starttls().with_child(Element::new("required", ns::TLS)))
            }
        }
        if !self.sasl_mechanisms.is_empty() {
            let mut m = Element::new("mechanisms", ns::SASL);
            for mech in &self.sasl_mechanisms {
                m.push_child(Element::new("mechanism", ns::SASL).with_text(mech));
            }
            f.push_child(m);
        }
        if self.dialback {
            f.push_child(
                Element::new("dialback", ns::DIALBACK_FEATURE)
                    .with_child(Element::new("errors", ns::DIALBACK_FEATURE)),
            );
        }
        f
    }

    /// Read received `<stream:features/>`; `None` if the element is not stream features.
    pub fn from_element(e: &Element) -> Option<Features> {
        if !e.is("features", ns::STREAMS) {
            return None;
        }
        let starttls = match e.child("starttls", ns::TLS) {
            None => TlsOffer::None,
            Some(s) if s.child("required", ns::TLS).is_some() => TlsOffer::Required,
            Some(_) => TlsOffer::Optional,
        };
        let sasl_mechanisms = e
            .child("mechanisms", ns::SASL)
            .map(|m| {
                m.children()
                    .filter(|c| c.is("mechanism", ns::SASL))
                    .map(|c| c.text().trim().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        Some(Features {
            starttls,
            sasl_mechanisms,
            dialback: e.child("dialback", ns::DIALBACK_FEATURE).is_some(),
        })
    }
}

/// `<stream:features/>` with the given offers (SASL EXTERNAL only when `sasl_external`).
pub fn stream_features(starttls: TlsOffer, sasl_external: bool, dialback: bool) -> Element {
    Features {
        starttls,
        sasl_mechanisms: if sasl_external {
            vec!["EXTERNAL".into()]
        } else {
            Vec::new()
        },
        dialback,
    }
    .to_element()
}

/// `<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>` (the initiating entity's request).
pub fn starttls() -> Element {
    Element::new("starttls", ns::TLS)
}

/// `<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`.
pub fn proceed() -> Element {
    Element::new("proceed", ns::TLS)
}

/// `<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>` (STARTTLS failure).
pub fn tls_failure() -> Element {
    Element::new("failure", ns::TLS)
}

/// SASL failure conditions, RFC 6120 §6.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaslCondition {
    /// §6.5.1
    Aborted,
    /// §6.5.2
    AccountDisabled,
    /// §6.5.3
    CredentialsExpired,
    /// §6.5.4
    EncryptionRequired,
    /// §6.5.5
    IncorrectEncoding,
    /// §6.5.6
    InvalidAuthzid,
    /// §6.5.7
    InvalidMechanism,
    /// §6.5.8
    MalformedRequest,
    /// §6.5.9
    MechanismTooWeak,
    /// §6.5.10
    NotAuthorized,
    /// §6.5.11
    TemporaryAuthFailure,
}

impl SaslCondition {
    /// All conditions.
    pub const ALL: [SaslCondition; 11] = [
        SaslCondition::Aborted,
        SaslCondition::AccountDisabled,
        SaslCondition::CredentialsExpired,
        SaslCondition::EncryptionRequired,
        SaslCondition::IncorrectEncoding,
        SaslCondition::InvalidAuthzid,
        SaslCondition::InvalidMechanism,
        SaslCondition::MalformedRequest,
        SaslCondition::MechanismTooWeak,
        SaslCondition::NotAuthorized,
        SaslCondition::TemporaryAuthFailure,
    ];

    /// Wire name.
    pub fn name(self) -> &'static str {
        match self {
            SaslCondition::Aborted => "aborted",
            SaslCondition::AccountDisabled => "account-disabled",
            SaslCondition::CredentialsExpired => "credentials-expired",
            SaslCondition::EncryptionRequired => "encryption-required",
            SaslCondition::IncorrectEncoding => "incorrect-encoding",
            SaslCondition::InvalidAuthzid => "invalid-authzid",
            SaslCondition::InvalidMechanism => "invalid-mechanism",
            SaslCondition::MalformedRequest => "malformed-request",
            SaslCondition::MechanismTooWeak => "mechanism-too-weak",
            SaslCondition::NotAuthorized => "not-authorized",
            SaslCondition::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }

    /// Parse a wire name.
    pub fn from_name(s: &str) -> Option<Self> {
        SaslCondition::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>` with the base64
/// authorization identity (XEP-0178: the initiating domain), or `=` for an empty one.
pub fn sasl_auth_external(authzid: Option<&str>) -> Element {
    let payload = match authzid {
        Some(a) if !a.is_empty() => base64_encode(a.as_bytes()),
        _ => "=".to_owned(),
    };
    Element::new("auth", ns::SASL)
        .with_attr("mechanism", "EXTERNAL")
        .with_text(payload)
}

/// Read a received SASL `<auth/>`: `(mechanism, authzid)`. The authzid is `None` for `=` or
/// an empty payload; `Err(IncorrectEncoding)` when the payload is not valid base64/UTF-8.
pub fn parse_sasl_auth(e: &Element) -> Option<Result<(String, Option<String>), SaslCondition>> {
    if !e.is("auth", ns::SASL) {
        return None;
    }
    let mech = e.attr("mechanism").unwrap_or("").to_owned();
    let text = e.text();
    let text = text.trim();
    if text.is_empty() || text == "=" {
        return Some(Ok((mech, None)));
    }
    Some(
        base64_decode(text)
            .and_then(|b| String::from_utf8(b).ok())
            .map(|s| (mech, Some(s)))
            .ok_or(SaslCondition::IncorrectEncoding),
    )
}

/// `<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>`.
pub fn sasl_success() -> Element {
    Element::new("success", ns::SASL)
}

/// `<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><condition/>[<text>..</text>]</failure>`.
pub fn sasl_failure(condition: SaslCondition, text: Option<&str>) -> Element {
    let mut f =
        Element::new("failure", ns::SASL).with_child(Element::new(condition.name(), ns::SASL));
    if let Some(t) = text {
        f.push_child(Element::new("text", ns::SASL).with_text(t));
    }
    f
}

/// Longest `<text/>` of a received SASL failure kept (for the log), in characters.
pub const SASL_FAILURE_TEXT_MAX: usize = 200;

/// Read a received SASL `<failure/>`: its condition (`None` when it names none of RFC 6120
/// §6.5) and its `<text/>` (trimmed, at most [`SASL_FAILURE_TEXT_MAX`] characters, `None` when
/// empty). `None` if the element is not a SASL failure.
pub fn parse_sasl_failure(e: &Element) -> Option<(Option<SaslCondition>, Option<String>)> {
    if !e.is("failure", ns::SASL) {
        return None;
    }
    let condition = e
        .children()
        .filter(|c| c.namespace.as_str() == ns::SASL)
        .find_map(|c| SaslCondition::from_name(&c.name));
    let text = e
        .child("text", ns::SASL)
        .map(|t| {
            t.text()
                .trim()
                .chars()
                .take(SASL_FAILURE_TEXT_MAX)
                .collect::<String>()
        })
        .filter(|t| !t.is_empty());
    Some((condition, text))
}

/// The `type` of a dialback verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialbackType {
    /// `type='valid'`.
    Valid,
    /// `type='invalid'`.
    Invalid,
    /// `type='error'` with a stanza error child (XEP-0220 §2.4, e.g. `item-not-found`,
    /// `remote-server-not-found`, `remote-connection-failed`).
    Error(StanzaError),
}

impl DialbackType {
    fn apply(&self, mut e: Element) -> Element {
        match self {
            DialbackType::Valid => e.set_attr("type", "valid"),
            DialbackType::Invalid => e.set_attr("type", "invalid"),
            DialbackType::Error(err) => {
                e.set_attr("type", "error");
                e.push_child(err.to_element(ns::SERVER));
            }
        }
        e
    }
}

/// `<db:result from=.. to=..>key</db:result>` (the originating server's request).
pub fn db_result_request(from: &str, to: &str, key: &str) -> Element {
    Element::new("result", ns::DIALBACK)
        .with_attr("from", from)
        .with_attr("to", to)
        .with_text(key)
}

/// `<db:result from=.. to=.. type=../>` (the receiving server's verdict).
pub fn db_result_response(from: &str, to: &str, verdict: &DialbackType) -> Element {
    verdict.apply(
        Element::new("result", ns::DIALBACK)
            .with_attr("from", from)
            .with_attr("to", to),
    )
}

/// `<db:verify from=.. to=.. id=..>key</db:verify>` (receiving server → authoritative server).
pub fn db_verify_request(from: &str, to: &str, id: &str, key: &str) -> Element {
    Element::new("verify", ns::DIALBACK)
        .with_attr("from", from)
        .with_attr("to", to)
        .with_attr("id", id)
        .with_text(key)
}

/// `<db:verify from=.. to=.. id=.. type=../>` (authoritative server's answer).
pub fn db_verify_response(from: &str, to: &str, id: &str, verdict: &DialbackType) -> Element {
    verdict.apply(
        Element::new("verify", ns::DIALBACK)
            .with_attr("from", from)
            .with_attr("to", to)
            .with_attr("id", id),
    )
}

/// Read the `type` of a received `db:result`/`db:verify`: `None` when absent (a request) or
/// unknown.
pub fn dialback_type(e: &Element) -> Option<DialbackType> {
    match e.attr("type")? {
        "valid" => Some(DialbackType::Valid),
        "invalid" => Some(DialbackType::Invalid),
        "error" => Some(DialbackType::Error(
            e.children()
                .find(|c| c.name == "error")
                .map(StanzaError::from_element)
                .unwrap_or_else(|| {
                    StanzaError::new(crate::StanzaErrorCondition::UndefinedCondition)
                }),
        )),
        _ => None,
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Strict standard base64 decoding (padding required, no whitespace); `None` if invalid.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.len() % 4 != 0 {
        return None;
    }
    let val = |c: u8| B64.iter().position(|x| *x == c).map(|p| p as u32);
    let mut out = Vec::with_capacity(b.len() / 4 * 3);
    for (i, q) in b.chunks(4).enumerate() {
        let last = i == b.len() / 4 - 1;
        let pad = q.iter().rev().take_while(|c| **c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &q[..4 - pad] {
            n = (n << 6) | val(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StanzaErrorCondition;

    fn s(e: &Element) -> String {
        String::from_utf8(e.to_bytes()).unwrap()
    }

    #[test]
    fn features() {
        let f = stream_features(TlsOffer::Required, false, true);
        assert_eq!(
            s(&f),
            "<stream:features><starttls xmlns=\"urn:ietf:params:xml:ns:xmpp-tls\"><required/></starttls>\
             <dialback xmlns=\"urn:xmpp:features:dialback\"><errors/></dialback></stream:features>"
        );
        let f2 = stream_features(TlsOffer::None, true, false);
        assert_eq!(
            s(&f2),
            "<stream:features><mechanisms xmlns=\"urn:ietf:params:xml:ns:xmpp-sasl\">\
             <mechanism>EXTERNAL</mechanism></mechanisms></stream:features>"
        );
        for (tls, sasl, db) in [
            (TlsOffer::Optional, true, true),
            (TlsOffer::None, false, false),
        ] {
            let f = stream_features(tls, sasl, db);
            let p = Features::from_element(&f).unwrap();
            assert_eq!(p.starttls, tls);
            assert_eq!(p.sasl_mechanisms.len(), usize::from(sasl));
            assert_eq!(p.dialback, db);
        }
        assert!(Features::from_element(&proceed()).is_none());
    }

    #[test]
    fn tls_elements() {
        assert_eq!(
            s(&starttls()),
            "<starttls xmlns=\"urn:ietf:params:xml:ns:xmpp-tls\"/>"
        );
        assert_eq!(
            s(&proceed()),
            "<proceed xmlns=\"urn:ietf:params:xml:ns:xmpp-tls\"/>"
        );
        assert_eq!(
            s(&tls_failure()),
            "<failure xmlns=\"urn:ietf:params:xml:ns:xmpp-tls\"/>"
        );
    }

    #[test]
    fn sasl() {
        let a = sasl_auth_external(Some("example.org"));
        assert_eq!(
            s(&a),
            "<auth xmlns=\"urn:ietf:params:xml:ns:xmpp-sasl\" mechanism=\"EXTERNAL\">ZXhhbXBsZS5vcmc=</auth>"
        );
        assert_eq!(
            parse_sasl_auth(&a),
            Some(Ok(("EXTERNAL".into(), Some("example.org".into()))))
        );
        let e = sasl_auth_external(None);
        assert_eq!(e.text(), "=");
        assert_eq!(parse_sasl_auth(&e), Some(Ok(("EXTERNAL".into(), None))));
        let bad = Element::new("auth", ns::SASL)
            .with_attr("mechanism", "EXTERNAL")
            .with_text("!!");
        assert_eq!(
            parse_sasl_auth(&bad),
            Some(Err(SaslCondition::IncorrectEncoding))
        );
        assert_eq!(
            s(&sasl_success()),
            "<success xmlns=\"urn:ietf:params:xml:ns:xmpp-sasl\"/>"
        );
        assert_eq!(
            s(&sasl_failure(
                SaslCondition::NotAuthorized,
                Some("bad cert")
            )),
            "<failure xmlns=\"urn:ietf:params:xml:ns:xmpp-sasl\"><not-authorized/><text>bad cert</text></failure>"
        );
        for c in SaslCondition::ALL {
            assert_eq!(SaslCondition::from_name(c.name()), Some(c));
        }
    }

    #[test]
    fn received_sasl_failures() {
        // As ejabberd 23.01 refuses a serverAuth-only certificate.
        let f = sasl_failure(
            SaslCondition::NotAuthorized,
            Some("  unsupported certificate purpose "),
        );
        assert_eq!(
            parse_sasl_failure(&f),
            Some((
                Some(SaslCondition::NotAuthorized),
                Some("unsupported certificate purpose".to_owned())
            ))
        );
        assert_eq!(
            parse_sasl_failure(&Element::new("failure", ns::SASL)),
            Some((None, None))
        );
        // An unknown condition and an empty text are no condition and no text; a long text
        // is cut.
        let odd = Element::new("failure", ns::SASL)
            .with_child(Element::new("bad-cert", ns::SASL))
            .with_child(Element::new("text", ns::SASL).with_text(" "));
        assert_eq!(parse_sasl_failure(&odd), Some((None, None)));
        let long = sasl_failure(SaslCondition::Aborted, Some(&"é".repeat(1000)));
        let (_, text) = parse_sasl_failure(&long).unwrap();
        assert_eq!(text.unwrap().chars().count(), SASL_FAILURE_TEXT_MAX);
        // Not a SASL failure (a STARTTLS one, a success).
        assert_eq!(parse_sasl_failure(&tls_failure()), None);
        assert_eq!(parse_sasl_failure(&sasl_success()), None);
    }

    #[test]
    fn dialback() {
        assert_eq!(
            s(&db_result_request(
                "example.org",
                "xmpp.example.com",
                "b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3"
            )),
            "<db:result from=\"example.org\" to=\"xmpp.example.com\">b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3</db:result>"
        );
        assert_eq!(
            s(&db_result_response(
                "xmpp.example.com",
                "example.org",
                &DialbackType::Valid
            )),
            "<db:result from=\"xmpp.example.com\" to=\"example.org\" type=\"valid\"/>"
        );
        assert_eq!(
            s(&db_verify_request(
                "xmpp.example.com",
                "example.org",
                "417GAF25",
                "k"
            )),
            "<db:verify from=\"xmpp.example.com\" id=\"417GAF25\" to=\"example.org\">k</db:verify>"
        );
        let inv = db_verify_response(
            "example.org",
            "xmpp.example.com",
            "417GAF25",
            &DialbackType::Invalid,
        );
        assert_eq!(dialback_type(&inv), Some(DialbackType::Invalid));
        let err = DialbackType::Error(StanzaError::new(StanzaErrorCondition::ItemNotFound));
        let e = db_result_response("a", "b", &err);
        assert_eq!(
            s(&e),
            "<db:result from=\"a\" to=\"b\" type=\"error\"><error type=\"cancel\">\
             <item-not-found xmlns=\"urn:ietf:params:xml:ns:xmpp-stanzas\"/></error></db:result>"
        );
        assert_eq!(dialback_type(&e), Some(err));
        assert_eq!(dialback_type(&db_result_request("a", "b", "k")), None);
    }

    #[test]
    fn base64() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), enc);
            assert_eq!(base64_decode(enc).unwrap(), plain.as_bytes());
        }
        assert!(base64_decode("Zg=").is_none());
        assert!(base64_decode("Zg==Zg==").is_none());
        assert!(base64_decode("Z===").is_none());
        assert!(base64_decode("Zm9v YQ==").is_none());
    }
}
