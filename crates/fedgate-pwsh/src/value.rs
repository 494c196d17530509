//! Argument values: the [`Value`] tree produced by the parser (strings, `$true`/`$false`/`$null`,
//! variables, lists, hashtables) and its PowerShell-like rendering for messages.
//!
//! The `Display` rendering is chosen so that it parses back to the same value:
//! strings are double-quoted with backtick escapes, lists are `"a", "b"` (nested or single-element
//! lists as `@(...)`), hashtables are `@{Key="v"; Other="w"}`.

use std::fmt;

/// One argument value, as written on the command line (no type conversion has happened yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A bare word, a `'single'` or a `"double"` quoted string (quotes removed, escapes applied).
    String(String),
    /// `$true` / `$false` (unquoted).
    Bool(bool),
    /// `$null` (unquoted).
    Null,
    /// `$name` (unquoted), other than `$true`, `$false` and `$null`. The name has no `$`.
    Variable(String),
    /// `a,b`, `"a","b"`, `@("a","b")`, `@()`.
    List(Vec<Value>),
    /// `@{Add="x","y"; Remove="z"}`, keys in the order written (duplicates are rejected by the parser,
    /// case-insensitively).
    Hashtable(Vec<(String, Value)>),
}

impl Value {
    /// The text of a [`Value::String`], `None` for every other kind.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The items of a [`Value::List`], `None` for every other kind.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }

    /// The entries of a [`Value::Hashtable`], `None` for every other kind.
    pub fn as_hashtable(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Hashtable(entries) => Some(entries),
            _ => None,
        }
    }

    /// Looks a hashtable key up case-insensitively (PowerShell hashtables are case-insensitive).
    pub fn hashtable_get(&self, key: &str) -> Option<&Value> {
        self.as_hashtable()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    }

    /// Short PowerShell type name of the value, for messages ("System.String", "System.Object[]", ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "System.String",
            Value::Bool(_) => "System.Boolean",
            Value::Null => "null",
            Value::Variable(_) => "System.Object",
            Value::List(_) => "System.Object[]",
            Value::Hashtable(_) => "System.Collections.Hashtable",
        }
    }

    /// The value as an admin would recognise it in an error message: strings without quotes,
    /// everything else as [`Display`](fmt::Display) renders it.
    pub fn to_message_text(&self) -> String {
        match self {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

/// Writes `s` as a double-quoted PowerShell string that our parser reads back unchanged.
pub(crate) fn write_double_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '`' => f.write_str("``")?,
            '\n' => f.write_str("`n")?,
            '\r' => f.write_str("`r")?,
            '\t' => f.write_str("`t")?,
            '\0' => f.write_str("`0")?,
            c if crate::lexer::is_double_quote(c) => write!(f, "`{c}")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

/// A hashtable key can be written bare when it is a simple identifier.
fn is_bare_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Writes one list item; nested lists need `@(...)` to stay nested.
fn write_item(f: &mut fmt::Formatter<'_>, v: &Value) -> fmt::Result {
    match v {
        Value::List(items) => write_wrapped_list(f, items),
        other => write!(f, "{other}"),
    }
}

/// Writes `@(a, b)`; a one-item list whose item is itself a list is written `@(,@(...))`,
/// because `@()` flattens a list inside it (as in PowerShell).
fn write_wrapped_list(f: &mut fmt::Formatter<'_>, items: &[Value]) -> fmt::Result {
    f.write_str("@(")?;
    if let [Value::List(_)] = items {
        f.write_str(",")?;
    }
    write_items(f, items)?;
    f.write_str(")")
}

fn write_items(f: &mut fmt::Formatter<'_>, items: &[Value]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write_item(f, item)?;
    }
    Ok(())
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::String(s) => write_double_quoted(f, s),
            Value::Bool(true) => f.write_str("$true"),
            Value::Bool(false) => f.write_str("$false"),
            Value::Null => f.write_str("$null"),
            Value::Variable(name) => {
                if name.chars().all(|c| c.is_alphanumeric() || c == '_') && !name.is_empty() {
                    write!(f, "${name}")
                } else {
                    write!(f, "${{{name}}}")
                }
            }
            Value::List(items) if items.len() >= 2 => write_items(f, items),
            Value::List(items) => write_wrapped_list(f, items),
            Value::Hashtable(entries) => {
                f.write_str("@{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    if is_bare_key(k) {
                        f.write_str(k)?;
                    } else {
                        write_double_quoted(f, k)?;
                    }
                    f.write_str("=")?;
                    match v {
                        // A one-element or nested list must keep its @() inside a hashtable too.
                        Value::List(items) if items.len() >= 2 => write_items(f, items)?,
                        other => write!(f, "{other}")?,
                    }
                }
                f.write_str("}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::from(x)
    }

    #[test]
    fn display_scalars() {
        assert_eq!(s("contoso.com").to_string(), "\"contoso.com\"");
        assert_eq!(s("a\"b`c\nd").to_string(), "\"a`\"b``c`nd\"");
        assert_eq!(Value::Bool(true).to_string(), "$true");
        assert_eq!(Value::Bool(false).to_string(), "$false");
        assert_eq!(Value::Null.to_string(), "$null");
        assert_eq!(Value::Variable("p".into()).to_string(), "$p");
        assert_eq!(Value::Variable("env:X".into()).to_string(), "${env:X}");
    }

    #[test]
    fn display_lists() {
        assert_eq!(
            Value::List(vec![s("a"), s("b")]).to_string(),
            "\"a\", \"b\""
        );
        assert_eq!(Value::List(vec![]).to_string(), "@()");
        assert_eq!(Value::List(vec![s("a")]).to_string(), "@(\"a\")");
        assert_eq!(
            Value::List(vec![s("a"), Value::List(vec![s("b"), s("c")])]).to_string(),
            "\"a\", @(\"b\", \"c\")"
        );
        assert_eq!(
            Value::List(vec![Value::List(vec![s("b"), s("c")])]).to_string(),
            "@(,@(\"b\", \"c\"))"
        );
    }

    #[test]
    fn display_hashtable() {
        let h = Value::Hashtable(vec![
            ("Add".into(), Value::List(vec![s("x"), s("y")])),
            ("Remove".into(), s("z")),
            ("odd key".into(), Value::List(vec![s("w")])),
        ]);
        assert_eq!(
            h.to_string(),
            "@{Add=\"x\", \"y\"; Remove=\"z\"; \"odd key\"=@(\"w\")}"
        );
        assert_eq!(Value::Hashtable(vec![]).to_string(), "@{}");
    }

    #[test]
    fn accessors() {
        let h = Value::Hashtable(vec![("Add".into(), s("x"))]);
        assert_eq!(h.hashtable_get("add"), Some(&s("x")));
        assert_eq!(h.hashtable_get("Remove"), None);
        assert_eq!(s("x").as_str(), Some("x"));
        assert_eq!(Value::Null.as_str(), None);
        assert_eq!(
            Value::List(vec![s("a")]).as_list().map(|l| l.len()),
            Some(1)
        );
        assert_eq!(s("x").to_message_text(), "x");
        assert_eq!(Value::Null.to_message_text(), "$null");
        assert_eq!(Value::List(vec![]).type_name(), "System.Object[]");
    }
}
