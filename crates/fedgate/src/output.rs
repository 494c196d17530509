//! How results are shown: PowerShell's `Name : Value` lists, or JSON for scripts.

use std::fmt::Write as _;
use std::io::Write;

use serde_json::Value;

use crate::engine::{Object, Reply};

/// `--output list|json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum OutputFormat {
    /// `Name : Value` lines, as PowerShell prints objects.
    #[default]
    List,
    /// New/Set print one JSON object; Get prints a JSON array.
    Json,
}

/// One object as `Name : Value` lines, names padded to the longest.
pub fn format_list(object: &Value) -> String {
    let Some(map) = object.as_object() else {
        return format!("{}\n", scalar(object));
    };
    let width = map.keys().map(|k| k.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in map {
        let _ = writeln!(out, "{key:<width$} : {}", scalar(value));
    }
    out
}

fn scalar(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(scalar).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(_) => value.to_string(),
    }
}

/// Print a reply: warnings and notes first (stderr for warnings; notes on stdout for lists and on
/// stderr for JSON, so that stdout stays parseable), then the objects.
pub fn print_reply(reply: &Reply, format: OutputFormat) {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for w in &reply.warnings {
        eprintln!("WARNING: {w}");
    }
    for n in &reply.notes {
        match format {
            OutputFormat::List => {
                let _ = writeln!(out, "{n}");
            }
            OutputFormat::Json => eprintln!("{n}"),
        }
    }
    if reply.assigned {
        return;
    }
    let _ = out.write_all(render_objects(&reply.objects, reply.is_listing, format).as_bytes());
    let _ = out.flush();
}

/// The text for a set of objects.
pub fn render_objects(objects: &[Object], is_listing: bool, format: OutputFormat) -> String {
    // An import's report is its notes in a list; only scripts (JSON) get the object.
    let values: Vec<Value> = objects
        .iter()
        .filter(|o| format == OutputFormat::Json || !matches!(o, Object::Import(_)))
        .map(Object::to_json)
        .collect();
    match format {
        OutputFormat::Json => {
            let text = if is_listing || values.len() != 1 {
                serde_json::to_string_pretty(&values)
            } else {
                serde_json::to_string_pretty(&values[0])
            };
            if is_listing || !values.is_empty() {
                format!("{}\n", text.unwrap_or_default())
            } else {
                String::new()
            }
        }
        OutputFormat::List => {
            let mut out = String::new();
            for v in &values {
                out.push('\n');
                out.push_str(&format_list(v));
            }
            if !values.is_empty() {
                out.push('\n');
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_format_pads_and_renders_values() {
        let text = format_list(
            &json!({"Identity": "a.com", "AdditionalDomains": ["b.com", "c.com"], "EnableKeepAlive": true, "ConnectionLimit": null}),
        );
        assert_eq!(
            text,
            "Identity          : a.com\nAdditionalDomains : {b.com, c.com}\nEnableKeepAlive   : True\nConnectionLimit   : \n"
        );
    }
}
