//! Property tests: the parsers never panic, single-quoting round-trips any string, and `Value`'s
//! `Display` parses back to the same value.

use fedgate_pwsh::{Command, RawArg, Statement, Value, parse_argv, parse_script};
use proptest::prelude::*;

/// The single value argument of `X <arg>`.
fn only_arg(text: &str) -> Result<Value, String> {
    let stmts = parse_script(text).map_err(|e| e.to_string())?;
    match stmts.as_slice() {
        [Statement::Pipeline { commands, .. }] => match commands.as_slice() {
            [Command { args, .. }] => match args.as_slice() {
                [RawArg::Value(v)] => Ok(v.clone()),
                other => Err(format!("args {other:?}")),
            },
            other => Err(format!("commands {other:?}")),
        },
        other => Err(format!("statements {other:?}")),
    }
}

/// Characters that exercise the grammar: every special character plus typographic quotes/dashes.
fn tricky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        prop::sample::select(vec![
            ' ', '\t', '\n', '\r', '\'', '"', '`', '$', '@', '{', '}', '(', ')', ',', ';', '|',
            '#', '<', '>', '=', '-', ':', '.', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}',
            '\u{2013}', '\u{a0}', 'a', 'Z', '0',
        ]),
        any::<char>(),
    ]
}

fn tricky_string() -> impl Strategy<Value = String> {
    prop::collection::vec(tricky_char(), 0..40).prop_map(|v| v.into_iter().collect())
}

fn value_strategy() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<String>().prop_map(Value::String),
        tricky_string().prop_map(Value::String),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
        "[A-Za-z_][A-Za-z0-9_]{0,8}"
            .prop_filter("$true/$false/$null are not variables", |n| {
                !matches!(n.to_ascii_lowercase().as_str(), "true" | "false" | "null")
            })
            .prop_map(Value::Variable),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
            prop::collection::btree_map("[A-Za-z][A-Za-z0-9 ]{0,6}", inner, 0..4).prop_map(|m| {
                // Keys must be unique case-insensitively.
                let mut seen = std::collections::HashSet::new();
                Value::Hashtable(
                    m.into_iter()
                        .filter(|(k, _)| seen.insert(k.to_lowercase()))
                        .collect(),
                )
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_script_never_panics(text in tricky_string()) {
        let _ = parse_script(&text);
    }

    #[test]
    fn parse_script_never_panics_on_any_unicode(text in any::<String>()) {
        let _ = parse_script(&text);
    }

    #[test]
    fn parse_argv_never_panics(argv in prop::collection::vec(tricky_string(), 0..5)) {
        let _ = parse_argv(&argv);
    }

    #[test]
    fn single_quoting_round_trips(text in prop_oneof![any::<String>(), tricky_string()]) {
        // Typographic single quotes terminate single-quoted strings too, so double them as well.
        let mut quoted = String::from("'");
        for c in text.chars() {
            if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}') {
                quoted.push(c);
            }
            quoted.push(c);
        }
        quoted.push('\'');
        // Inside quotes, \r\n and lone \r are read as \n (PowerShell does the same for scripts).
        let expected = text.replace("\r\n", "\n").replace('\r', "\n");
        prop_assert_eq!(only_arg(&format!("X {quoted}")), Ok(Value::String(expected)));
    }

    #[test]
    fn display_round_trips(value in value_strategy()) {
        let text = format!("X {value}");
        prop_assert_eq!(only_arg(&text), Ok(value), "rendered as {}", text);
    }
}

#[test]
fn plain_ascii_single_quote_round_trip() {
    assert_eq!(only_arg("X 'it''s'"), Ok(Value::from("it's")));
}
