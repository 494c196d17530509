//! Hard limits applied by the [`StreamParser`](crate::StreamParser) to everything a peer sends.
//!
//! Every limit is checked *before* the bytes in question are copied into a parsed value, so the
//! memory the parser keeps is bounded by these numbers (plus whatever the caller feeds in one
//! [`feed`](crate::StreamParser::feed) call and has not yet let the parser consume).

/// Limits for one stream. All sizes are bytes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum size of one first-level element (stanza, features, ...), from its `<` to the `>`
    /// of its end tag. Element names, attribute values and text are bounded by it too.
    /// Exceeding it is `policy-violation`. Default 262 144 (256 KiB).
    pub max_stanza_size: usize,
    /// Maximum element nesting depth below the stream element (a stanza is depth 1).
    /// Exceeding it is `policy-violation`. Default 32.
    pub max_depth: usize,
    /// Maximum number of attributes (namespace declarations included) on one element.
    /// Exceeding it is `policy-violation`. Default 64.
    pub max_attributes: usize,
    /// Maximum size of everything before and including the stream header's `>` (byte order
    /// mark, XML declaration, whitespace, the `<stream:stream ...>` tag). Default 8192.
    pub max_header_size: usize,
    /// Accept a stream header without a `version` attribute (a pre-RFC 3920 peer, RFC 6120
    /// §4.7.5 treats it as version "0.0"). Default `false`: such a header is refused with
    /// `unsupported-version`, since fedgate needs stream features (TLS, SASL, dialback feature).
    pub allow_missing_version: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_size: 262_144,
            max_depth: 32,
            max_attributes: 64,
            max_header_size: 8192,
            allow_missing_version: false,
        }
    }
}
