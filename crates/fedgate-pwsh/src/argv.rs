//! Process arguments (`fedgate New-CsXmppAllowedPartner -Identity contoso.com ...`): argv has
//! already been split and unquoted by the Unix shell, so each element is one token. Parameter
//! tokens are recognised by their leading dash; values are parsed with the PowerShell value
//! grammar only when they form a complete list, hashtable, `$true`, `$false` or `$null`, and are
//! otherwise kept verbatim (free text such as descriptions survives untouched).

use crate::ast::{Command, RawArg, Statement};
use crate::error::{SyntaxError, SyntaxErrorKind};
use crate::lexer::is_dash;
use crate::parser::Parser;
use crate::value::Value;

/// Turn process argv (already split and unquoted by the Unix shell) into one statement.
///
/// `argv[0]` is the command name. An element starting with a dash followed by a letter is a
/// parameter token (`-Identity`, `-Force:$false`; `-Name:` with nothing after the colon takes the
/// next element as its attached value). Any other element is a value: it is parsed with the value
/// grammar only when it is one complete list / hashtable / `$true` / `$false` / `$null`
/// expression (`a.com,b.com`, `@{Add="x"; Remove="y"}`, `$true`), otherwise taken verbatim as a
/// string, even if it contains spaces, quotes or `#`. A comma list with spaces next to its commas
/// counts as a list only when all its items are quoted or bracketed (`"a", "b"` is a list,
/// `Smith, John` is text). Elements that start with `@{` or `@(` but do not parse are errors.
/// A negative number like `-5` is a value.
pub fn parse_argv(argv: &[String]) -> Result<Statement, SyntaxError> {
    let Some((name, rest)) = argv.split_first() else {
        return Err(SyntaxError::at(1, 1, SyntaxErrorKind::EmptyArgv).in_argv(0));
    };
    if name.trim().is_empty() || name.starts_with(is_dash) {
        return Err(
            SyntaxError::at(1, 1, SyntaxErrorKind::InvalidCommandName(name.clone())).in_argv(0),
        );
    }
    let mut args = Vec::with_capacity(rest.len());
    let mut i = 0;
    while let Some(element) = rest.get(i) {
        let index = i + 1;
        i += 1;
        if !is_parameter_token(element) {
            args.push(RawArg::Value(argv_value(element, index)?));
            continue;
        }
        let body: String = element.chars().skip(1).collect();
        let Some((param, attached)) = body.split_once(':') else {
            args.push(RawArg::Parameter {
                name: body,
                attached: None,
            });
            continue;
        };
        let attached = if !attached.is_empty() {
            argv_value(attached, index)?
        } else if let Some(next) = rest.get(i).filter(|next| !is_parameter_token(next)) {
            i += 1;
            argv_value(next, index + 1)?
        } else {
            let column = element.chars().count();
            return Err(SyntaxError::at(
                1,
                column,
                SyntaxErrorKind::MissingAttachedArgument(param.to_string()),
            )
            .in_argv(index));
        };
        args.push(RawArg::Parameter {
            name: param.to_string(),
            attached: Some(attached),
        });
    }
    Ok(Statement::Pipeline {
        commands: vec![Command {
            name: name.clone(),
            args,
        }],
        line: 1,
    })
}

/// A dash followed by a letter.
fn is_parameter_token(element: &str) -> bool {
    let mut chars = element.chars();
    matches!((chars.next(), chars.next()), (Some(d), Some(l)) if is_dash(d) && l.is_alphabetic())
}

/// One value element: a parsed list/hashtable/bool/null, or the text verbatim.
fn argv_value(element: &str, index: usize) -> Result<Value, SyntaxError> {
    let verbatim = || Value::String(element.to_string());
    let bracketed = {
        let t = element.trim_start();
        t.starts_with("@{") || t.starts_with("@(")
    };
    let parsed = match Parser::new(element).argv_value() {
        Ok(parsed) => parsed,
        Err(e) if bracketed => return Err(e.in_argv(index)),
        Err(_) => return Ok(verbatim()),
    };
    Ok(match parsed {
        Some((value @ (Value::Bool(_) | Value::Null | Value::Hashtable(_)), _)) => value,
        Some((value @ Value::List(_), shape)) if !(shape.spaced && shape.has_bare_item) => value,
        _ => verbatim(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn args_of(items: &[&str]) -> Vec<RawArg> {
        match parse_argv(&argv(items)).unwrap() {
            Statement::Pipeline { mut commands, line } => {
                assert_eq!(line, 1);
                assert_eq!(commands.len(), 1);
                commands.remove(0).args
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn s(x: &str) -> Value {
        Value::from(x)
    }

    fn param(name: &str, attached: Option<Value>) -> RawArg {
        RawArg::Parameter {
            name: name.into(),
            attached,
        }
    }

    #[test]
    fn description_is_kept_verbatim() {
        let args = args_of(&[
            "New-CsXmppAllowedPartner",
            "-Identity",
            "contoso.com",
            "-Description",
            "Contact: Bob, x#1",
        ]);
        assert_eq!(
            args,
            vec![
                param("Identity", None),
                RawArg::Value(s("contoso.com")),
                param("Description", None),
                RawArg::Value(s("Contact: Bob, x#1")),
            ]
        );
    }

    #[test]
    fn command_name_is_kept() {
        let st = parse_argv(&argv(&["New-CsXmppAllowedPartner"])).unwrap();
        assert_eq!(
            st,
            Statement::Pipeline {
                commands: vec![Command {
                    name: "New-CsXmppAllowedPartner".into(),
                    args: vec![]
                }],
                line: 1
            }
        );
    }

    #[test]
    fn comma_list_is_a_list() {
        let args = args_of(&["X", "-AdditionalDomains", "a.com,b.com"]);
        assert_eq!(
            args[1],
            RawArg::Value(Value::List(vec![s("a.com"), s("b.com")]))
        );
        let args = args_of(&["X", r#""a.com", "b.com""#]);
        assert_eq!(
            args[0],
            RawArg::Value(Value::List(vec![s("a.com"), s("b.com")]))
        );
    }

    #[test]
    fn free_text_with_comma_and_space_is_not_a_list() {
        assert_eq!(
            args_of(&["X", "Smith, John"])[0],
            RawArg::Value(s("Smith, John"))
        );
        assert_eq!(
            args_of(&["X", "a.com, b.com"])[0],
            RawArg::Value(s("a.com, b.com"))
        );
    }

    #[test]
    fn hashtable_bool_null_are_parsed() {
        let args = args_of(&["X", r#"@{Add="x"; Remove="y"}"#, "$true", "$FALSE", "$null"]);
        assert_eq!(
            args,
            vec![
                RawArg::Value(Value::Hashtable(vec![
                    ("Add".into(), s("x")),
                    ("Remove".into(), s("y"))
                ])),
                RawArg::Value(Value::Bool(true)),
                RawArg::Value(Value::Bool(false)),
                RawArg::Value(Value::Null),
            ]
        );
    }

    #[test]
    fn other_values_are_verbatim() {
        let args = args_of(&[
            "X",
            "\"quoted\"",
            "$var",
            "it's",
            "a b",
            "",
            "#x",
            "true",
            "-5",
            "-",
        ]);
        let expected: Vec<RawArg> = [
            "\"quoted\"",
            "$var",
            "it's",
            "a b",
            "",
            "#x",
            "true",
            "-5",
            "-",
        ]
        .iter()
        .map(|v| RawArg::Value(s(v)))
        .collect();
        assert_eq!(args, expected);
    }

    #[test]
    fn parameters_and_attached_values() {
        let args = args_of(&[
            "X",
            "-Force:$false",
            "-Force:false",
            "-AdditionalDomains:a,b",
            "-Description:Contact: Bob",
            "-Identity:",
            "contoso.com",
            "\u{2013}WhatIf",
        ]);
        assert_eq!(
            args,
            vec![
                param("Force", Some(Value::Bool(false))),
                param("Force", Some(s("false"))),
                param("AdditionalDomains", Some(Value::List(vec![s("a"), s("b")]))),
                param("Description", Some(s("Contact: Bob"))),
                param("Identity", Some(s("contoso.com"))),
                param("WhatIf", None),
            ]
        );
    }

    #[test]
    fn errors() {
        let e = parse_argv(&[]).unwrap_err();
        assert_eq!(e.kind, SyntaxErrorKind::EmptyArgv);
        let e = parse_argv(&argv(&["-Identity"])).unwrap_err();
        assert_eq!(
            e.kind,
            SyntaxErrorKind::InvalidCommandName("-Identity".into())
        );
        let e = parse_argv(&argv(&["X", "-Identity:"])).unwrap_err();
        assert_eq!(e.parameter(), Some("Identity"));
        assert_eq!(
            e.to_string(),
            "At argument 1 char:10: Missing an argument for parameter 'Identity'."
        );
        let e = parse_argv(&argv(&["X", "-Identity:", "-Force"])).unwrap_err();
        assert_eq!(e.parameter(), Some("Identity"));
        let e = parse_argv(&argv(&["X", "-A", r#"@{Add="x""#])).unwrap_err();
        assert_eq!(e.kind, SyntaxErrorKind::MissingClosingBrace);
        assert_eq!(
            e.location,
            crate::Location::Argv {
                index: 2,
                column: 1
            }
        );
        let e = parse_argv(&argv(&["X", r#"@("a"#])).unwrap_err();
        assert_eq!(e.kind, SyntaxErrorKind::MissingStringTerminator('"'));
        assert_eq!(e.column(), 3);
    }
}
