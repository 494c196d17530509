//! The files a Skype for Business management shell writes, read into untyped records and written
//! back: CliXML (`Export-Clixml`, [`clixml`]), CSV (`Export-Csv -NoTypeInformation`, [`csv`]) and
//! JSON (`ConvertTo-Json`, [`json`]).
//!
//! This module owns the bytes → text step (byte order marks: Windows PowerShell writes
//! `Export-Clixml` and `Out-File` as UTF-16), format detection from the content, and the
//! [`Record`] every reader produces: where the record is in the file (so an error can name it),
//! the type names the file gives it (CliXML only) and its fields as [`ParamValue`]s — the same
//! values New/Set get, so [`crate::import`] validates them with the same conversion and texts.
//! It never looks at field names beyond what a format needs (list columns in CSV, enum numbers in
//! JSON); which fields are known is [`crate::import`]'s business.

pub mod clixml;
pub mod csv;
pub mod json;

use std::fmt;

use fedgate_model::XmppAllowedPartner;

use crate::params::ParamValue;

/// Largest file accepted, in bytes (100,000 partners exported as UTF-16 CliXML stay well below).
pub const MAX_FILE_BYTES: usize = 512 * 1024 * 1024;

/// A file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Format {
    #[serde(rename = "CliXML")]
    CliXml,
    #[serde(rename = "CSV")]
    Csv,
    #[serde(rename = "JSON")]
    Json,
}

impl Format {
    /// Parse `clixml`, `csv` or `json` (case-insensitive).
    pub fn parse(text: &str) -> Option<Format> {
        match text.trim().to_ascii_lowercase().as_str() {
            "clixml" | "xml" => Some(Format::CliXml),
            "csv" => Some(Format::Csv),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::CliXml => "CliXML",
            Format::Csv => "CSV",
            Format::Json => "JSON",
        })
    }
}

/// One record of a file, before it is given a type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Where the record is: `object 3` (CliXML), `line 5` (CSV), `item 2` (JSON); 1-based.
    pub location: String,
    /// The .NET type names the file gives the record, most specific first (CliXML only).
    pub type_names: Vec<String>,
    /// Its properties, in file order, with the names as written.
    pub fields: Vec<(String, ParamValue)>,
}

/// A file that cannot be read as any record at all. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", location.as_ref().map(|l| format!("{l}: ")).unwrap_or_default())]
pub struct FormatError {
    /// Where in the file (`line 3`, `object 2`, `byte 120`), when known.
    pub location: Option<String>,
    pub message: String,
}

impl FormatError {
    pub fn new(location: Option<String>, message: impl Into<String>) -> Self {
        FormatError {
            location,
            message: message.into(),
        }
    }
}

/// The file's text: UTF-8 (with or without a byte order mark) or UTF-16 LE/BE with a byte order
/// mark, as Windows PowerShell writes them.
pub fn decode(bytes: &[u8]) -> Result<String, FormatError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(FormatError::new(
            None,
            format!(
                "the file is larger than {} MiB; split it (e.g. Get-CsXmppAllowedPartner -Filter \"a*\" | Export-Clixml …).",
                MAX_FILE_BYTES / (1024 * 1024)
            ),
        ));
    }
    let utf16 = |rest: &[u8], le: bool| -> Result<String, FormatError> {
        if rest.len() % 2 != 0 {
            return Err(FormatError::new(
                None,
                "the file starts with a UTF-16 byte order mark but has an odd number of bytes.",
            ));
        }
        let units = rest.chunks_exact(2).map(|c| {
            if le {
                u16::from_le_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], c[1]])
            }
        });
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map_err(|e| FormatError::new(None, format!("the file is not valid UTF-16: {e}.")))
    };
    match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => utf8(rest),
        [0xFF, 0xFE, rest @ ..] => utf16(rest, true),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, false),
        _ => utf8(bytes),
    }
}

fn utf8(bytes: &[u8]) -> Result<String, FormatError> {
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        FormatError::new(
            Some(format!("byte {}", e.utf8_error().valid_up_to())),
            "the file is neither UTF-8 nor UTF-16 with a byte order mark; export it again with -Encoding UTF8 (or Unicode).",
        )
    })
}

/// The format of a file's text: `<` first is CliXML, `[` or `{` JSON, anything else CSV.
pub fn detect(text: &str) -> Format {
    match text.trim_start().chars().next() {
        Some('<') => Format::CliXml,
        Some('[' | '{') => Format::Json,
        _ => Format::Csv,
    }
}

/// Read a file's bytes: decode, detect the format, read the records.
pub fn read(bytes: &[u8]) -> Result<(Format, Vec<Record>), FormatError> {
    let text = decode(bytes)?;
    let format = detect(&text);
    let records = match format {
        Format::CliXml => clixml::read(&text)?,
        Format::Csv => csv::read(&text)?,
        Format::Json => json::read(&text)?,
    };
    Ok((format, records))
}

/// The partners as the SfB shell would have exported them in `format`.
pub fn write_partners(format: Format, partners: &[XmppAllowedPartner]) -> String {
    match format {
        Format::CliXml => clixml::write_partners(partners),
        Format::Csv => csv::write_partners(partners),
        Format::Json => json::write_partners(partners),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_order_marks_and_detection() {
        let text = "<Objs/>";
        let mut le = vec![0xFF, 0xFE];
        le.extend(text.encode_utf16().flat_map(|u| u.to_le_bytes()));
        assert_eq!(decode(&le).unwrap(), text);
        let mut be = vec![0xFE, 0xFF];
        be.extend(text.encode_utf16().flat_map(|u| u.to_be_bytes()));
        assert_eq!(decode(&be).unwrap(), text);
        assert_eq!(decode(b"\xEF\xBB\xBF[1]").unwrap(), "[1]");
        let e = decode(b"Identity\n\"caf\xE9\"").unwrap_err();
        assert!(e.to_string().contains("-Encoding UTF8"), "{e}");
        assert!(decode(&[0xFF, 0xFE, 0x41]).is_err());
        assert_eq!(detect("  \r\n<Objs>"), Format::CliXml);
        assert_eq!(detect("[{}]"), Format::Json);
        assert_eq!(detect("{}"), Format::Json);
        assert_eq!(detect("#TYPE x\n\"Identity\""), Format::Csv);
        assert_eq!(detect("\"Identity\""), Format::Csv);
    }
}
