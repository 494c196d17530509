//! XML namespace names used by XMPP server-to-server streams (RFC 6120, XEP-0220, XEP-0288 feature).

/// The stream namespace (`stream:` prefix), RFC 6120 §4.8.1.
pub const STREAMS: &str = "http://etherx.jabber.org/streams";
/// Content namespace of server-to-server streams.
pub const SERVER: &str = "jabber:server";
/// Content namespace of client-to-server streams.
pub const CLIENT: &str = "jabber:client";
/// Server dialback (XEP-0220), usually bound to the `db:` prefix.
pub const DIALBACK: &str = "jabber:server:dialback";
/// Dialback stream feature (XEP-0220 §2.4).
pub const DIALBACK_FEATURE: &str = "urn:xmpp:features:dialback";
/// Stream error conditions, RFC 6120 §4.9.3.
pub const STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// Stanza error conditions, RFC 6120 §8.3.3.
pub const STANZA_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// STARTTLS, RFC 6120 §5.
pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// SASL, RFC 6120 §6.
pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// The namespace bound to the reserved `xml` prefix.
pub const XML: &str = "http://www.w3.org/XML/1998/namespace";
/// The namespace bound to the reserved `xmlns` prefix.
pub const XMLNS: &str = "http://www.w3.org/2000/xmlns/";
