//! Hard limits applied by the [`StreamParser`](crate::StreamParser) to everything a peer sends.
//!
//! Every wire limit is checked *before* the bytes in question are copied into a parsed value,
//! and what parsing allocates for one stanza is accounted against
//! [`Limits::stanza_alloc_budget`], so the memory the parser keeps is bounded by these numbers
//! (plus whatever the caller feeds in one [`feed`](crate::StreamParser::feed) call and has not
//! yet let the parser consume).

/// Limits for one stream. All sizes are bytes on the wire, except the allocation budget.
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
    /// Memory budget of one first-level element: what parsing may allocate for it (nodes,
    /// names, attributes, text, namespace declarations; see
    /// [`StreamParser::stanza_alloc`](crate::StreamParser::stanza_alloc)). Exceeding it is
    /// `policy-violation`, like an oversized stanza. `None` (the default) means
    /// 8 × `max_stanza_size` + 16 KiB (2064 KiB with the default size; the constant keeps
    /// small size limits usable, where the fixed cost of a few nodes dominates). Text costs
    /// about its wire size; node-dense payloads cost more (measured: a 1 KiB message 1.7×,
    /// disco#items 4.2×, Atom entries with XHTML content 6.5× their wire size), so a
    /// full-size stanza of any of them passes, while one of empty elements (`<a/>`, 4 wire
    /// bytes, ~100 B of node each) is refused at ~1/12 of the size limit.
    /// See [`stanza_alloc_budget`](Self::stanza_alloc_budget).
    pub max_stanza_alloc: Option<usize>,
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
            max_stanza_alloc: None,
            allow_missing_version: false,
        }
    }
}

impl Limits {
    /// The allocation budget of one first-level element in bytes: `max_stanza_alloc`, or
    /// 8 × `max_stanza_size` + 16 KiB when unset.
    pub fn stanza_alloc_budget(&self) -> usize {
        self.max_stanza_alloc.unwrap_or(
            self.max_stanza_size
                .saturating_mul(8)
                .saturating_add(16 * 1024),
        )
    }
}
