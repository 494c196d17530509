//! CSV as `Export-Csv -NoTypeInformation` writes it: a header row of property names, every value
//! quoted, one record per row (a `#TYPE …` first line, written without `-NoTypeInformation`, is
//! skipped). Every value is text; list fields (AdditionalDomains) hold their items joined by `;`
//! or `,`. Reading and writing go through the `csv` crate (RFC 4180 quoting, embedded commas,
//! quotes and line breaks).

use fedgate_model::XmppAllowedPartner;
use fedgate_model::partner::PARTNER_FIELDS;
use fedgate_model::partner::fields::{FieldKind, FieldValue, PartnerField};

use super::{FormatError, Record};
use crate::params::ParamValue;

/// Whether the cell of column `name` holds a list: a partner field of the list kind.
fn list_field(name: &str) -> bool {
    PartnerField::named(name).is_some_and(|f| f.kind() == FieldKind::DomainList)
}

/// Read the rows of an `Export-Csv` file.
pub fn read(text: &str) -> Result<Vec<Record>, FormatError> {
    let trimmed = text.trim_start_matches(['\r', '\n']);
    let skipped_lines = text[..text.len() - trimmed.len()]
        .bytes()
        .filter(|b| *b == b'\n')
        .count() as u64;
    let (body, offset) = if trimmed.starts_with("#TYPE") {
        match trimmed.split_once('\n') {
            Some((_, rest)) => (rest, skipped_lines + 1),
            None => ("", skipped_lines + 1),
        }
    } else {
        (trimmed, skipped_lines)
    };
    // The line a record starts on, counted from its byte offset (quoted cells may span lines);
    // rows come in order, so the count continues from the previous row (linear in the file).
    let counted = std::cell::Cell::new((0usize, 0u64));
    let line_of = |pos: Option<&csv::Position>| {
        pos.map(|p| {
            let mut end = usize::try_from(p.byte())
                .unwrap_or(usize::MAX)
                .min(body.len());
            // The reader stops before the previous line's terminator.
            while matches!(body.as_bytes().get(end), Some(b'\r' | b'\n')) {
                end += 1;
            }
            let (mut from, mut line) = counted.get();
            if end < from {
                (from, line) = (0, 0);
            }
            line += body.as_bytes()[from..end]
                .iter()
                .filter(|b| **b == b'\n')
                .count() as u64;
            counted.set((end, line));
            format!("line {}", line + 1 + offset)
        })
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(body.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| FormatError::new(line_of(e.position()), format!("not a CSV file: {e}.")))?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    if headers.iter().all(String::is_empty) {
        return Err(FormatError::new(
            Some(format!("line {}", offset + 1)),
            "the CSV file has no header row of field names (Export-Csv -NoTypeInformation writes one).",
        ));
    }
    let mut records = Vec::new();
    for row in reader.records() {
        let row = row.map_err(|e| FormatError::new(line_of(e.position()), format!("{e}.")))?;
        let location = line_of(row.position()).unwrap_or_else(|| "line ?".into());
        let mut fields = Vec::with_capacity(headers.len());
        for (name, cell) in headers.iter().zip(row.iter()) {
            let value = if list_field(name) {
                if cell.starts_with("System.") {
                    return Err(FormatError::new(
                        Some(location),
                        format!(
                            "Cannot bind parameter '{name}'. The cell holds the type name \"{cell}\", not the list: export the list joined, e.g. Select-Object Identity, @{{n='{name}';e={{$_.{name} -join ';'}}}}, … | Export-Csv -NoTypeInformation."
                        ),
                    ));
                }
                ParamValue::List(
                    cell.split([';', ','])
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| ParamValue::Text(s.to_owned()))
                        .collect(),
                )
            } else {
                ParamValue::Text(cell.to_owned())
            };
            fields.push((name.clone(), value));
        }
        records.push(Record {
            location,
            type_names: Vec::new(),
            fields,
        });
    }
    Ok(records)
}

/// PowerShell's text of a boolean.
fn bool_text(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// A field's cell: PowerShell's texts of booleans and enums, unset as empty, a list joined by `;`.
fn cell(value: FieldValue) -> String {
    match value {
        FieldValue::Text(t) => t,
        FieldValue::Bool(b) => bool_text(b).to_owned(),
        FieldValue::OptionalU32(n) => n.map(|n| n.to_string()).unwrap_or_default(),
        FieldValue::Choice { name, .. } => name.to_owned(),
        FieldValue::OptionalProxy(t) => t.map(|t| t.to_string()).unwrap_or_default(),
        FieldValue::DomainList(list) => list
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(";"),
    }
}

/// The partners as `Get-CsXmppAllowedPartner | Select-Object …, @{n='AdditionalDomains';e={…
/// -join ';'}}, … | Export-Csv -NoTypeInformation` writes them: every field of the model's field
/// table, quoted, CRLF.
pub fn write_partners(partners: &[XmppAllowedPartner]) -> String {
    let mut writer = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Always)
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    // Writing into memory cannot fail.
    let _ = writer.write_record(PARTNER_FIELDS);
    for p in partners {
        let identity = p.identity.to_string();
        let cells = [identity.clone(), identity]
            .into_iter()
            .chain(PartnerField::ALL.iter().map(|f| cell(f.get(p))));
        let _ = writer.write_record(cells);
    }
    let bytes = writer.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> ParamValue {
        ParamValue::Text(s.into())
    }

    #[test]
    fn reads_quotes_commas_semicolons_and_type_line() {
        let text = "#TYPE Selected.Microsoft.Rtc.Management.WritableConfig.Settings.XmppFederation.XmppAllowedPartner\r\n\
\"Identity\",\"AdditionalDomains\",\"Description\",\"PartnerType\"\r\n\
\"contoso.com\",\"a.contoso.com;b.contoso.com\",\"Contact: \"\"Bob\"\", ops, 24/7\",\"Federated\"\r\n\
\"fabrikam.com\",\"x.fabrikam.com, y.fabrikam.com\",\"\",\"PublicVerified\"\r\n";
        let records = read(text).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].location, "line 3");
        assert_eq!(records[1].location, "line 4");
        assert_eq!(
            records[0].fields,
            vec![
                ("Identity".into(), t("contoso.com")),
                (
                    "AdditionalDomains".into(),
                    ParamValue::List(vec![t("a.contoso.com"), t("b.contoso.com")])
                ),
                ("Description".into(), t("Contact: \"Bob\", ops, 24/7")),
                ("PartnerType".into(), t("Federated")),
            ]
        );
        assert_eq!(
            records[1].fields[1].1,
            ParamValue::List(vec![t("x.fabrikam.com"), t("y.fabrikam.com")])
        );
    }

    #[test]
    fn refuses_list_type_names_and_ragged_rows() {
        let text = "\"Identity\",\"AdditionalDomains\"\n\"contoso.com\",\"System.Collections.Generic.List`1[System.String]\"\n";
        let e = read(text).unwrap_err();
        assert_eq!(e.location.as_deref(), Some("line 2"));
        assert!(e.message.contains("-join ';'"), "{e}");
        let e = read("\"Identity\",\"Description\"\n\"a.com\"\n").unwrap_err();
        assert!(e.location.as_deref() == Some("line 2"), "{e:?}");
    }
}
