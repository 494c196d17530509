//! What a first-level element from a peer is, decided once where it leaves the codec
//! ([`Incoming::classify`]): the stream code matches on the answer instead of testing names and
//! namespaces itself. Only what the element is; what it means on a stream (allowed now, refused,
//! answered) is the stream code's and the policy's.

use fedgate_model::access::StanzaKind;
use fedgate_xmpp::{Element, ns};

/// The class of a first-level element a peer sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// `<starttls/>` (the TLS namespace): a request to upgrade the stream.
    StartTls,
    /// `<auth/>` (the SASL namespace): a SASL attempt.
    Sasl,
    /// `<db:result/>` without a type: a dialback request (XEP-0220 §2.1.1).
    DbResult,
    /// `<db:verify/>` without a type: a verification request (XEP-0220 §2.2.1).
    DbVerify,
    /// `<stream:error/>`.
    StreamError,
    /// A message, presence or iq in `jabber:server`, with what the route decision needs of
    /// its kind.
    Stanza(StanzaKind),
    /// Anything else: features, answers (`<proceed/>`, SASL success or failure, dialback
    /// results and verifications with a type), and elements no stream expects.
    Other,
}

impl Incoming {
    /// Classify `e`.
    pub fn classify(e: &Element) -> Incoming {
        // Stanzas first: nearly every element is one. No other class is in jabber:server, so
        // the order decides nothing.
        if e.namespace == ns::SERVER {
            return crate::access::kind(e).map_or(Incoming::Other, Incoming::Stanza);
        }
        let untyped = || e.attr("type").is_none();
        if e.is("starttls", ns::TLS) {
            Incoming::StartTls
        } else if e.is("auth", ns::SASL) {
            Incoming::Sasl
        } else if e.is("result", ns::DIALBACK) && untyped() {
            Incoming::DbResult
        } else if e.is("verify", ns::DIALBACK) && untyped() {
            Incoming::DbVerify
        } else if e.is("error", ns::STREAMS) {
            Incoming::StreamError
        } else {
            Incoming::Other
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedgate_model::access::{IqType, MessageType, PresenceType};

    #[test]
    fn each_element_gets_its_class() {
        let el = |name: &'static str, namespace: &'static str| Element::new(name, namespace);
        let typed =
            |name: &'static str, t: &'static str| el(name, ns::DIALBACK).with_attr("type", t);
        let cases = [
            (el("starttls", ns::TLS), Incoming::StartTls),
            (el("proceed", ns::TLS), Incoming::Other),
            (el("auth", ns::SASL), Incoming::Sasl),
            (el("success", ns::SASL), Incoming::Other),
            (el("result", ns::DIALBACK), Incoming::DbResult),
            (typed("result", "valid"), Incoming::Other),
            (el("verify", ns::DIALBACK), Incoming::DbVerify),
            (typed("verify", "invalid"), Incoming::Other),
            // An unknown type is still a type: not a request.
            (typed("result", "bogus"), Incoming::Other),
            (el("error", ns::STREAMS), Incoming::StreamError),
            (el("features", ns::STREAMS), Incoming::Other),
            (
                el("message", ns::SERVER),
                Incoming::Stanza(StanzaKind::Message(MessageType::parse(None))),
            ),
            (
                el("iq", ns::SERVER).with_attr("type", "result"),
                Incoming::Stanza(StanzaKind::Iq(IqType::Result)),
            ),
            (
                el("presence", ns::SERVER).with_attr("type", "bogus"),
                Incoming::Stanza(StanzaKind::Presence(PresenceType::Unavailable)),
            ),
            // Stanza names outside jabber:server, and other names in it, are no stanzas.
            (el("message", ns::CLIENT), Incoming::Other),
            (el("starttls", ns::SERVER), Incoming::Other),
            (el("auth", ns::TLS), Incoming::Other),
        ];
        for (e, class) in cases {
            assert_eq!(Incoming::classify(&e), class, "{e:?}");
        }
    }
}
