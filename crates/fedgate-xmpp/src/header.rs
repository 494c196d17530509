//! The stream header (`<stream:stream ...>`, RFC 6120 §4.7): the parsed value, the checks the
//! parser applies to a received header (§4.8 namespaces, §4.7.5 version), its serialization,
//! and the stream close tag.

use crate::error::{StreamError, StreamErrorCondition};
use crate::ns;
use crate::writer::write_attr;

/// `</stream:stream>`.
pub const STREAM_CLOSE: &[u8] = b"</stream:stream>";

/// Append `</stream:stream>`.
pub fn write_stream_close(out: &mut Vec<u8>) {
    out.extend_from_slice(STREAM_CLOSE);
}

/// A stream header, as received or to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHeader {
    /// `from` attribute.
    pub from: Option<String>,
    /// `to` attribute.
    pub to: Option<String>,
    /// `id` attribute (set by the receiving entity).
    pub id: Option<String>,
    /// `version` attribute as received (`None` = absent). [`write_to`](Self::write_to)
    /// always writes `1.0`.
    pub version: Option<String>,
    /// `xml:lang` attribute.
    pub lang: Option<String>,
    /// The content namespace (default namespace): [`ns::SERVER`] or [`ns::CLIENT`].
    pub content_ns: String,
    /// Whether the dialback namespace `jabber:server:dialback` is declared (any prefix;
    /// written as `xmlns:db`).
    pub dialback: bool,
}

impl StreamHeader {
    /// The header the initiating server sends: no `id`.
    pub fn initiating(from: impl Into<String>, to: impl Into<String>, dialback: bool) -> Self {
        StreamHeader {
            from: Some(from.into()),
            to: Some(to.into()),
            id: None,
            version: Some("1.0".into()),
            lang: None,
            content_ns: ns::SERVER.into(),
            dialback,
        }
    }

    /// The response header of the receiving server: always with an `id` (peers such as
    /// Prosody report a confusing error when it is missing).
    pub fn responding(
        from: impl Into<String>,
        to: Option<String>,
        id: impl Into<String>,
        dialback: bool,
    ) -> Self {
        StreamHeader {
            from: Some(from.into()),
            to,
            id: Some(id.into()),
            version: Some("1.0".into()),
            lang: None,
            content_ns: ns::SERVER.into(),
            dialback,
        }
    }

    /// Parsed (major, minor) version; `None` when absent or malformed.
    pub fn version_numbers(&self) -> Option<(u32, u32)> {
        parse_version(self.version.as_deref()?)
    }

    /// Serialize: `<?xml version='1.0'?><stream:stream xmlns=.. xmlns:stream=.. [xmlns:db=..]
    /// [from] [to] [id] version='1.0' [xml:lang]>`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"<?xml version='1.0'?><stream:stream");
        let content = if self.content_ns.is_empty() {
            ns::SERVER
        } else {
            &self.content_ns
        };
        write_attr(out, "xmlns", content);
        write_attr(out, "xmlns:stream", ns::STREAMS);
        if self.dialback {
            write_attr(out, "xmlns:db", ns::DIALBACK);
        }
        for (k, v) in [("from", &self.from), ("to", &self.to), ("id", &self.id)] {
            if let Some(v) = v {
                write_attr(out, k, v);
            }
        }
        write_attr(out, "version", "1.0");
        if let Some(l) = &self.lang {
            write_attr(out, "xml:lang", l);
        }
        out.push(b'>');
    }
}

pub(crate) fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.split_once('.')?;
    let num = |s: &str| {
        if s.is_empty() || s.len() > 9 || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse::<u32>().ok()
        }
    };
    Some((num(a)?, num(b)?))
}

/// Checks of RFC 6120 §4.7.5: major version 1 is required (minor versions above 0 are
/// accepted, per the "lower version wins" rule); a missing version is refused unless allowed.
pub(crate) fn check_version(v: Option<&str>, allow_missing: bool) -> Result<(), StreamError> {
    match v {
        None if allow_missing => Ok(()),
        None => Err(StreamError::new(
            StreamErrorCondition::UnsupportedVersion,
            "stream header without version: version 1.0 is required",
        )),
        Some(v) => match parse_version(v) {
            Some((1, _)) => Ok(()),
            _ => Err(StreamError::new(
                StreamErrorCondition::UnsupportedVersion,
                "only stream version 1.x is supported",
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responding_header_has_id_and_version() {
        let mut out = Vec::new();
        StreamHeader::responding("gw.test", Some("partner.test".into()), "abc123", true)
            .write_to(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<?xml version='1.0'?><stream:stream xmlns=\"jabber:server\" \
             xmlns:stream=\"http://etherx.jabber.org/streams\" xmlns:db=\"jabber:server:dialback\" \
             from=\"gw.test\" to=\"partner.test\" id=\"abc123\" version=\"1.0\">"
        );
    }

    #[test]
    fn initiating_header_without_dialback() {
        let mut out = Vec::new();
        StreamHeader::initiating("gw.test", "partner.test", false).write_to(&mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(!s.contains("xmlns:db") && !s.contains(" id="));
        assert!(s.contains("version=\"1.0\""));
        let mut close = Vec::new();
        write_stream_close(&mut close);
        assert_eq!(close, b"</stream:stream>");
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("1.0"), Some((1, 0)));
        assert_eq!(parse_version("1.10"), Some((1, 10)));
        assert_eq!(parse_version("1"), None);
        assert_eq!(parse_version("1.0a"), None);
        assert!(check_version(Some("1.0"), false).is_ok());
        assert!(check_version(Some("1.1"), false).is_ok());
        for bad in [Some("2.0"), Some("0.9"), Some("x"), None] {
            assert_eq!(
                check_version(bad, false).unwrap_err().condition,
                StreamErrorCondition::UnsupportedVersion
            );
        }
        assert!(check_version(None, true).is_ok());
    }
}
