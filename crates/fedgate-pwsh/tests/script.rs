//! `parse_script`: every construct of the supported PowerShell subset and every syntax error.

use fedgate_pwsh::{Command, RawArg, Statement, SyntaxErrorKind, Value, parse_script};

fn s(x: &str) -> Value {
    Value::from(x)
}

fn list(items: &[&str]) -> Value {
    Value::List(items.iter().map(|i| s(i)).collect())
}

fn p(name: &str) -> RawArg {
    RawArg::Parameter {
        name: name.into(),
        attached: None,
    }
}

fn pa(name: &str, v: Value) -> RawArg {
    RawArg::Parameter {
        name: name.into(),
        attached: Some(v),
    }
}

fn v(x: Value) -> RawArg {
    RawArg::Value(x)
}

fn cmd(name: &str, args: Vec<RawArg>) -> Command {
    Command {
        name: name.into(),
        args,
    }
}

/// Parses `text`, expecting exactly one single-command pipeline; returns its command.
fn one(text: &str) -> Command {
    let mut stmts = parse_script(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    assert_eq!(stmts.len(), 1, "{text:?}: {stmts:?}");
    match stmts.remove(0) {
        Statement::Pipeline { mut commands, .. } => {
            assert_eq!(commands.len(), 1, "{text:?}");
            commands.remove(0)
        }
        other => panic!("{text:?}: unexpected {other:?}"),
    }
}

fn args(text: &str) -> Vec<RawArg> {
    one(text).args
}

fn err(text: &str) -> fedgate_pwsh::SyntaxError {
    match parse_script(text) {
        Ok(stmts) => panic!("{text:?} parsed: {stmts:?}"),
        Err(e) => e,
    }
}

#[test]
fn microsoft_example_1_verbatim() {
    let c =
        one(r#"New-CsXmppAllowedPartner -Identity "contoso.com" -PartnerType "PublicVerified""#);
    assert_eq!(
        c,
        cmd(
            "New-CsXmppAllowedPartner",
            vec![
                p("Identity"),
                v(s("contoso.com")),
                p("PartnerType"),
                v(s("PublicVerified"))
            ]
        )
    );
}

#[test]
fn microsoft_example_2_verbatim() {
    let c = one(
        r#"New-CsXmppAllowedPartner -Identity "fabrikam.com" -AdditionalDomains "research.fabrikam2.com""#,
    );
    assert_eq!(
        c,
        cmd(
            "New-CsXmppAllowedPartner",
            vec![
                p("Identity"),
                v(s("fabrikam.com")),
                p("AdditionalDomains"),
                v(s("research.fabrikam2.com"))
            ]
        )
    );
}

#[test]
fn list_modifier_hashtable() {
    assert_eq!(
        args(
            r#"Set-CsXmppAllowedPartner contoso.com -AdditionalDomains @{Add="a.com","b.com"; Remove="c.com"}"#
        ),
        vec![
            v(s("contoso.com")),
            p("AdditionalDomains"),
            v(Value::Hashtable(vec![
                ("Add".into(), list(&["a.com", "b.com"])),
                ("Remove".into(), s("c.com")),
            ])),
        ]
    );
}

#[test]
fn hashtable_forms() {
    // Newline-separated entries, quoted keys, spaces around '=', comments, empty table.
    let text = "X @{\n  'Add' = 'a.com' # first\n  \"Replace\"=b.com, c.com\n\n  Remove = @()\n}";
    assert_eq!(
        args(text),
        vec![v(Value::Hashtable(vec![
            ("Add".into(), s("a.com")),
            ("Replace".into(), list(&["b.com", "c.com"])),
            ("Remove".into(), Value::List(vec![])),
        ]))]
    );
    assert_eq!(args("X @{}"), vec![v(Value::Hashtable(vec![]))]);
    assert_eq!(args("X @{ ; }"), vec![v(Value::Hashtable(vec![]))]);
    assert_eq!(
        args("X @{A=$null;B=$true}"),
        vec![v(Value::Hashtable(vec![
            ("A".into(), Value::Null),
            ("B".into(), Value::Bool(true)),
        ]))]
    );
}

#[test]
fn bool_null_and_variables() {
    assert_eq!(
        args("Set-X -AdditionalDomains $null -EnableKeepAlive $false -S $True -V $p"),
        vec![
            p("AdditionalDomains"),
            v(Value::Null),
            p("EnableKeepAlive"),
            v(Value::Bool(false)),
            p("S"),
            v(Value::Bool(true)),
            p("V"),
            v(Value::Variable("p".into())),
        ]
    );
    // Quoted, they are plain strings; glued to other text, a literal word.
    assert_eq!(
        args(r#"X "$true" '$null' $x-y"#),
        vec![v(s("$true")), v(s("$null")), v(s("$x-y"))]
    );
    assert_eq!(
        args("X ${my var} $env:USER $"),
        vec![
            v(Value::Variable("my var".into())),
            v(Value::Variable("env:USER".into())),
            v(s("$"))
        ]
    );
}

#[test]
fn switches_with_attached_values() {
    assert_eq!(
        args("Remove-X -Identity a.com -Force:$false -WhatIf -Confirm:$true -Verbose:true"),
        vec![
            p("Identity"),
            v(s("a.com")),
            pa("Force", Value::Bool(false)),
            p("WhatIf"),
            pa("Confirm", Value::Bool(true)),
            pa("Verbose", s("true")),
        ]
    );
    // Attached with a space after the colon, and attached lists.
    assert_eq!(
        args("X -Force: $false -AdditionalDomains:a.com,b.com"),
        vec![
            pa("Force", Value::Bool(false)),
            pa("AdditionalDomains", list(&["a.com", "b.com"])),
        ]
    );
}

#[test]
fn bare_words() {
    assert_eq!(
        args("X contoso.com 10 true -5 - --x a=b x#1 C:\\dir\\f.txt"),
        vec![
            v(s("contoso.com")),
            v(s("10")),
            v(s("true")),
            v(s("-5")),
            v(s("-")),
            v(s("--x")),
            v(s("a=b")),
            v(s("x#1")),
            v(s("C:\\dir\\f.txt")),
        ]
    );
    // Quoted parts glue to a bare word; backtick escapes work in bare words.
    assert_eq!(
        args(r#"X a"b c"d 'e'f a` b"#),
        vec![v(s("ab cd")), v(s("ef")), v(s("a b"))]
    );
}

#[test]
fn quoted_strings() {
    assert_eq!(
        args(r#"X 'it''s' "say ""hi""" "a`"b" "tab`tnl`nbt``" "`$x $y" 'a # b' "c # d" '' """#),
        vec![
            v(s("it's")),
            v(s("say \"hi\"")),
            v(s("a\"b")),
            v(s("tab\tnl\nbt`")),
            v(s("$x $y")),
            v(s("a # b")),
            v(s("c # d")),
            v(s("")),
            v(s("")),
        ]
    );
    // Strings may span lines.
    assert_eq!(args("X 'a\nb'"), vec![v(s("a\nb"))]);
    // Typographic quotes and dashes, as pasted from documents.
    assert_eq!(
        args(
            "New-CsXmppAllowedPartner \u{2013}Identity \u{201C}contoso.com\u{201D} \u{2014}Description \u{2018}Bob\u{2019}\u{2019}s\u{2019}"
        ),
        vec![
            p("Identity"),
            v(s("contoso.com")),
            p("Description"),
            v(s("Bob\u{2019}s")),
        ]
    );
}

#[test]
fn lists() {
    let ab = list(&["a", "b"]);
    assert_eq!(args("X a,b"), vec![v(ab.clone())]);
    assert_eq!(args("X a , b"), vec![v(ab.clone())]);
    assert_eq!(args(r#"X "a","b""#), vec![v(ab.clone())]);
    assert_eq!(args(r#"X @("a", 'b')"#), vec![v(ab.clone())]);
    assert_eq!(args("X @(\n  a\n  b\n)"), vec![v(ab.clone())]);
    assert_eq!(args("X @(a; b)"), vec![v(ab.clone())]);
    assert_eq!(args("X (a, b)"), vec![v(ab.clone())]);
    assert_eq!(args("X (a)"), vec![v(s("a"))]);
    assert_eq!(args("X @()"), vec![v(Value::List(vec![]))]);
    assert_eq!(args("X @( )"), vec![v(Value::List(vec![]))]);
    assert_eq!(args("X @(a)"), vec![v(list(&["a"]))]);
    // A newline (and a comment) after a comma continues the list.
    assert_eq!(args("X a, # first\n  b"), vec![v(ab.clone())]);
    // Nesting.
    assert_eq!(
        args("X a,(b,c),@{K=1}"),
        vec![v(Value::List(vec![
            s("a"),
            list(&["b", "c"]),
            Value::Hashtable(vec![("K".into(), s("1"))]),
        ]))]
    );
    // Unary comma inside ( ) and @( ): a one-item list (keeps an inner list nested).
    assert_eq!(args("X (,a)"), vec![v(list(&["a"]))]);
    assert_eq!(
        args("X @(,@(a, b))"),
        vec![v(Value::List(vec![ab.clone()]))]
    );
    assert_eq!(args("X @(@(a, b))"), vec![v(ab.clone())]);
    // Two values separated by space are two arguments.
    assert_eq!(args("X a b"), vec![v(s("a")), v(s("b"))]);
}

#[test]
fn comments() {
    let stmts = parse_script(
        "# header comment\n<# block\n   comment #>\nGet-X -Identity a.com # trailing\n  # indented\n",
    )
    .unwrap();
    assert_eq!(
        stmts,
        vec![Statement::Pipeline {
            commands: vec![cmd("Get-X", vec![p("Identity"), v(s("a.com"))])],
            line: 4
        }]
    );
    assert_eq!(args("X <# inline #> a"), vec![v(s("a"))]);
    assert_eq!(parse_script("# only a comment").unwrap(), vec![]);
}

#[test]
fn separators_blank_lines_and_line_numbers() {
    let stmts = parse_script("A 1; B 2\n\n\r\n  ;;\nC\r\nD; ").unwrap();
    let summary: Vec<(String, usize)> = stmts
        .iter()
        .map(|st| match st {
            Statement::Pipeline { commands, line } => (commands[0].name.clone(), *line),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("A".to_string(), 1),
            ("B".to_string(), 1),
            ("C".to_string(), 5),
            ("D".to_string(), 6)
        ]
    );
    assert_eq!(parse_script("").unwrap(), vec![]);
    assert_eq!(parse_script("\n \n\t;\n").unwrap(), vec![]);
}

#[test]
fn line_continuation() {
    let text = "New-CsXmppAllowedPartner -Identity contoso.com `\n    -PartnerType Federated `\r\n    -Force\nGet-X";
    let stmts = parse_script(text).unwrap();
    assert_eq!(stmts.len(), 2);
    assert_eq!(
        stmts[0],
        Statement::Pipeline {
            commands: vec![cmd(
                "New-CsXmppAllowedPartner",
                vec![
                    p("Identity"),
                    v(s("contoso.com")),
                    p("PartnerType"),
                    v(s("Federated")),
                    p("Force")
                ]
            )],
            line: 1
        }
    );
    assert_eq!(stmts[1].line(), 4);
    // A continuation glued to a word ends the word; one at the very end is harmless.
    assert_eq!(args("X a`\nb"), vec![v(s("a")), v(s("b"))]);
    assert_eq!(args("X a `"), vec![v(s("a"))]);
}

#[test]
fn pipelines() {
    let stmts =
        parse_script("Get-X -Filter *.com | Remove-X -Force\nGet-X |\n  Set-X -Y z").unwrap();
    assert_eq!(
        stmts,
        vec![
            Statement::Pipeline {
                commands: vec![
                    cmd("Get-X", vec![p("Filter"), v(s("*.com"))]),
                    cmd("Remove-X", vec![p("Force")]),
                ],
                line: 1
            },
            Statement::Pipeline {
                commands: vec![cmd("Get-X", vec![]), cmd("Set-X", vec![p("Y"), v(s("z"))])],
                line: 2
            },
        ]
    );
}

#[test]
fn assignments_and_show_variable() {
    let text = "$p = Get-CsXmppAllowedPartner -Identity contoso.com\n\
                $p.Description = \"Contact: Bob\"\n\
                $p.AdditionalDomains = a.com, 'b.com'\n\
                $p.EnableKeepAlive=$false\n\
                Set-CsXmppAllowedPartner -Instance $p\n\
                $p\n\
                $all = Get-X | Select-Y";
    let stmts = parse_script(text).unwrap();
    assert_eq!(
        stmts,
        vec![
            Statement::AssignPipeline {
                variable: "p".into(),
                commands: vec![cmd(
                    "Get-CsXmppAllowedPartner",
                    vec![p("Identity"), v(s("contoso.com"))]
                )],
                line: 1
            },
            Statement::AssignProperty {
                variable: "p".into(),
                property: "Description".into(),
                value: s("Contact: Bob"),
                line: 2
            },
            Statement::AssignProperty {
                variable: "p".into(),
                property: "AdditionalDomains".into(),
                value: list(&["a.com", "b.com"]),
                line: 3
            },
            Statement::AssignProperty {
                variable: "p".into(),
                property: "EnableKeepAlive".into(),
                value: Value::Bool(false),
                line: 4
            },
            Statement::Pipeline {
                commands: vec![cmd(
                    "Set-CsXmppAllowedPartner",
                    vec![p("Instance"), v(Value::Variable("p".into()))]
                )],
                line: 5
            },
            Statement::ShowVariable {
                variable: "p".into(),
                line: 6
            },
            Statement::AssignPipeline {
                variable: "all".into(),
                commands: vec![cmd("Get-X", vec![]), cmd("Select-Y", vec![])],
                line: 7
            },
        ]
    );
    assert_eq!(
        parse_script("$p # show it; not a statement").unwrap(),
        vec![Statement::ShowVariable {
            variable: "p".into(),
            line: 1
        }]
    );
    assert_eq!(
        parse_script("$x =\n  Get-X").unwrap()[0],
        Statement::AssignPipeline {
            variable: "x".into(),
            commands: vec![cmd("Get-X", vec![])],
            line: 1
        }
    );
}

/// Message, line, column and whether more input would help.
fn check_err(text: &str, kind: SyntaxErrorKind, line: usize, column: usize, incomplete: bool) {
    let e = err(text);
    assert_eq!(e.kind, kind, "{text:?}: {e}");
    assert_eq!((e.line(), e.column()), (line, column), "{text:?}: {e}");
    assert_eq!(e.is_incomplete(), incomplete, "{text:?}: {e}");
}

#[test]
fn error_messages() {
    let cases: &[(&str, &str)] = &[
        (
            r#"X "abc"#,
            "At line:1 char:3: The string is missing the terminator: \".",
        ),
        (
            "X\nY 'abc",
            "At line:2 char:3: The string is missing the terminator: '.",
        ),
        (
            r#"X @{Add="a""#,
            "At line:1 char:3: Missing closing '}' in statement block or type definition.",
        ),
        (
            "X (a",
            "At line:1 char:3: Missing closing ')' in expression.",
        ),
        (
            "X @(a",
            "At line:1 char:3: Missing closing ')' in subexpression.",
        ),
        (
            "<# x",
            "At line:1 char:1: Missing the closing '#>' of a block comment.",
        ),
        (
            "X @{Add}",
            "At line:1 char:8: Missing '=' operator after key in hash literal.",
        ),
        (
            "X @{=1}",
            "At line:1 char:5: Missing key before '=' in hash literal.",
        ),
        (
            "X @{Add=}",
            "At line:1 char:8: Missing statement after '=' in hash literal.",
        ),
        (
            "X @{Add=1; add=2}",
            "At line:1 char:12: Duplicate keys 'add' are not allowed in hash literals.",
        ),
        ("X a,", "At line:1 char:4: Missing expression after ','."),
        (
            "X ()",
            "At line:1 char:3: An expression was expected after '('.",
        ),
        (
            "X |",
            "At line:1 char:4: An empty pipe element is not allowed.",
        ),
        (
            "| X",
            "At line:1 char:1: An empty pipe element is not allowed.",
        ),
        (
            "X | ; Y",
            "At line:1 char:5: An empty pipe element is not allowed.",
        ),
        (
            "X -Force:",
            "At line:1 char:3: Missing an argument for parameter 'Force'.",
        ),
        (
            "$x =",
            "At line:1 char:5: You must provide a value expression following the '=' operator.",
        ),
        (
            "$x = 'a'",
            "At line:1 char:6: Only the output of a command can be assigned to a variable (for example: $p = Get-CsXmppAllowedPartner -Identity contoso.com); found 'a'.",
        ),
        (
            "X -Identity $p.Identity",
            "At line:1 char:13: Property access '$p.Identity' is only supported as '$variable.Property = value'.",
        ),
        (
            "$p.Identity",
            "At line:1 char:1: Property access '$p.Identity' is only supported as '$variable.Property = value'.",
        ),
        (
            "$p.A.B = 1",
            "At line:1 char:1: Property access '$p.A.B' is only supported as '$variable.Property = value'.",
        ),
        (
            "$p | Set-X",
            "At line:1 char:4: Piping a variable into a command is not supported; pass it as an argument instead.",
        ),
        (
            "Get-X | Where-Object { $_ }",
            "At line:1 char:22: Script blocks ({ ... }) are not supported.",
        ),
        (
            "X @params",
            "At line:1 char:3: Splatting ('@params') is not supported.",
        ),
        (
            "\"New-X\" -Identity a",
            "At line:1 char:1: Expected a command name or a variable at '\"New-X\"'.",
        ),
        (
            "-Identity a",
            "At line:1 char:1: Expected a command name or a variable at '-Identity'.",
        ),
        (
            "X a)",
            "At line:1 char:4: Unexpected token ')' in expression or statement.",
        ),
        (
            "X }",
            "At line:1 char:3: Unexpected token '}' in expression or statement.",
        ),
        (
            "X (a b)",
            "At line:1 char:6: Unexpected token 'b' in expression or statement.",
        ),
        (
            "X @{A=1 2}",
            "At line:1 char:9: Unexpected token '2' in expression or statement.",
        ),
        (
            "$p.A = 1 2",
            "At line:1 char:10: Unexpected token '2' in expression or statement.",
        ),
        (
            "$p 2",
            "At line:1 char:4: Unexpected token '2' in expression or statement.",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(err(text).to_string(), *expected, "input {text:?}");
    }
}

#[test]
fn error_locations_and_incompleteness() {
    use SyntaxErrorKind as K;
    check_err("A\nB \"x\n\ny", K::MissingStringTerminator('"'), 2, 3, true);
    check_err("A @{\n Add = 'x'\n", K::MissingClosingBrace, 1, 3, true);
    check_err(
        "A @{\n Add = 'x' b }",
        K::UnexpectedToken("b".into()),
        2,
        12,
        false,
    );
    check_err("A |\n", K::EmptyPipeElement, 2, 1, true);
    check_err("A | ;", K::EmptyPipeElement, 1, 5, false);
    check_err("A a,\n", K::MissingExpressionAfterComma, 1, 4, true);
    check_err("A a, ;", K::MissingExpressionAfterComma, 1, 4, false);
    check_err("$x = ", K::MissingAssignmentValue, 1, 6, true);
    check_err(
        "A -Force:",
        K::MissingAttachedArgument("Force".into()),
        1,
        3,
        true,
    );
    check_err(
        "A -Force: -WhatIf",
        K::MissingAttachedArgument("Force".into()),
        1,
        3,
        false,
    );
    check_err("A ${x", K::MissingClosingBrace, 1, 3, true);
    check_err("A `\n (", K::MissingClosingParen, 2, 2, true);
    let e = err("A -Force:");
    assert_eq!(e.parameter(), Some("Force"));
    assert_eq!(e.message(), "Missing an argument for parameter 'Force'.");
    assert_eq!(err("A 'x").parameter(), None);
}

#[test]
fn nesting_is_limited() {
    let ok_depth = fedgate_pwsh::MAX_NESTING;
    let text = format!("X {}a{}", "(".repeat(ok_depth), ")".repeat(ok_depth));
    assert_eq!(args(&text), vec![v(s("a"))]);
    let deep = 100_000;
    for (open, close) in [("(", ")"), ("@(", ")"), ("@{a=", "}")] {
        let text = format!("X {}a{}", open.repeat(deep), close.repeat(deep));
        let e = err(&text);
        assert_eq!(
            e.kind,
            SyntaxErrorKind::NestingTooDeep(fedgate_pwsh::MAX_NESTING),
            "{open}"
        );
    }
    assert_eq!(
        err(&format!("X {}", "(".repeat(100))).to_string(),
        "At line:1 char:67: The expression is nested too deeply (more than 64 levels of brackets)."
    );
}

#[test]
fn many_hashtable_keys_are_fine() {
    let entries: Vec<String> = (0..5000).map(|i| format!("k{i}={i}")).collect();
    let text = format!("X @{{{}}}", entries.join(";"));
    match &args(&text)[0] {
        RawArg::Value(Value::Hashtable(h)) => assert_eq!(h.len(), 5000),
        other => panic!("{other:?}"),
    }
}

#[test]
fn whitespace_variants() {
    // Tabs and non-breaking spaces (pasted from web pages) separate tokens.
    assert_eq!(
        args("X\t-Identity\u{a0}contoso.com"),
        vec![p("Identity"), v(s("contoso.com"))]
    );
    assert_eq!(one("  X  ").name, "X");
}
