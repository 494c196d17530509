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
//! JSON: both by the kind the model's field table gives the field); which fields are known is
//! [`crate::import`]'s business. The writers walk that table (`partner::fields::PartnerField`)
//! and write each value by its kind.

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
    use fedgate_model::partner::fields::{FieldKind, FieldValue, PartnerField};
    use fedgate_model::{Domain, PartnerChanges};

    /// A value of `field` other than `p`'s, chosen by the field's kind (a new field of a known
    /// kind is covered without naming it here).
    fn other_value(field: PartnerField, p: &XmppAllowedPartner) -> FieldValue {
        let text = match field.kind() {
            FieldKind::Text => "Tom & \"Jerry\" <ops>; _x0041_, 24/7 \u{263A}".to_owned(),
            FieldKind::Bool => return FieldValue::Bool(field.get(p) != FieldValue::Bool(true)),
            FieldKind::OptionalU32 => "4000000001".to_owned(),
            FieldKind::Choice(kind) => (kind.allowed_names)()
                .split(", ")
                .find(|n| field.parse(n).ok() != Some(field.get(p)))
                .expect("an enum of two names or more")
                .to_owned(),
            FieldKind::OptionalProxy => "[2001:db8::2]:5270".to_owned(),
            FieldKind::DomainList => "x.example.net, *.y.example.net".to_owned(),
        };
        field.parse(&text).expect("a valid value")
    }

    /// Every field of the model's table, set to a value other than its default, is written by
    /// each format and read back (through the same conversion New/Set use) unchanged.
    #[test]
    fn every_partner_field_survives_write_then_read_in_every_format() {
        let default = XmppAllowedPartner::new(Domain::parse("fields.example").expect("a domain"));
        let mut changes = PartnerChanges::default();
        for field in PartnerField::ALL {
            field
                .change(&mut changes, other_value(field, &default))
                .expect("a value of the field's kind");
        }
        let mut partner = default.clone();
        changes.apply(&mut partner);
        for format in [Format::CliXml, Format::Csv, Format::Json] {
            let text = write_partners(format, &[partner.clone(), default.clone()]);
            let (read_format, records) = read(text.as_bytes()).expect("its own output reads");
            assert_eq!(read_format, format);
            assert_eq!(records.len(), 2, "{format}");
            for (record, expected) in records.iter().zip([&partner, &default]) {
                let fields = record
                    .fields
                    .iter()
                    .filter(|(n, _)| n != "Identity" && n != "Domain")
                    .map(|(n, v)| (n.as_str(), v));
                let changes = crate::params::partner_changes(fields)
                    .unwrap_or_else(|e| panic!("{format}: {e}\n{text}"));
                let mut back = XmppAllowedPartner::new(expected.identity.clone());
                changes.apply(&mut back);
                for field in PartnerField::ALL {
                    assert_eq!(field.get(&back), field.get(expected), "{format}: {field:?}");
                }
            }
        }
    }

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
