//! `bind`: name resolution (case, prefixes, ambiguity, common parameters), switches, value
//! parameters, positional binding and every `BindError` message.

use fedgate_pwsh::{
    BindError, BoundArgs, BoundValue, CmdletSpec, Command, ParamKind, ParamSpec, Statement, Value,
    bind, is_cmdlet_name, parse_argv, parse_script,
};

const NEW_PARTNER: CmdletSpec = CmdletSpec {
    name: "New-CsXmppAllowedPartner",
    params: &[
        ParamSpec::value("Identity", "System.String").at(0),
        ParamSpec::value("Domain", "System.String"),
        ParamSpec::value("AdditionalDomains", "System.String[]"),
        ParamSpec::value("Description", "System.String"),
        ParamSpec::value("PartnerType", "Microsoft.Rtc.Management.Xmpp.PartnerType"),
        ParamSpec::value(
            "TlsNegotiation",
            "Microsoft.Rtc.Management.Xmpp.Negotiation",
        ),
        ParamSpec::value(
            "SaslNegotiation",
            "Microsoft.Rtc.Management.Xmpp.Negotiation",
        ),
        ParamSpec::value("SupportDialbackNegotiation", "System.Boolean"),
        ParamSpec::value("EnableKeepAlive", "System.Boolean"),
        ParamSpec::value("ConnectionLimit", "System.UInt32"),
        ParamSpec::value("ProxyFqdn", "System.String"),
        ParamSpec::value("BypassDualWrite", "System.Boolean"),
        ParamSpec::switch("InMemory"),
        ParamSpec::switch("Force"),
        ParamSpec::switch("WhatIf"),
        ParamSpec::switch("Confirm"),
    ],
};

/// Parses one command line and binds it.
fn bind_line(line: &str, spec: &CmdletSpec) -> Result<BoundArgs, BindError> {
    let stmts = parse_script(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    match stmts.as_slice() {
        [Statement::Pipeline { commands, .. }] => bind(&commands[0], spec),
        other => panic!("{line:?}: {other:?}"),
    }
}

fn ok(line: &str) -> BoundArgs {
    bind_line(line, &NEW_PARTNER).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

fn fail(line: &str) -> BindError {
    match bind_line(line, &NEW_PARTNER) {
        Ok(b) => panic!("{line:?} bound: {b:?}"),
        Err(e) => e,
    }
}

fn s(x: &str) -> Value {
    Value::from(x)
}

fn names(b: &BoundArgs) -> Vec<&'static str> {
    b.iter().map(|(n, _)| n).collect()
}

#[test]
fn microsoft_examples_bind() {
    let b = ok(r#"New-CsXmppAllowedPartner -Identity "contoso.com" -PartnerType "PublicVerified""#);
    assert_eq!(b.value("Identity"), Some(&s("contoso.com")));
    assert_eq!(b.value("PartnerType"), Some(&s("PublicVerified")));
    assert_eq!(b.len(), 2);

    let b = ok(
        r#"New-CsXmppAllowedPartner -Identity "fabrikam.com" -AdditionalDomains "research.fabrikam2.com""#,
    );
    assert_eq!(b.value("Identity"), Some(&s("fabrikam.com")));
    assert_eq!(
        b.value("AdditionalDomains"),
        Some(&s("research.fabrikam2.com"))
    );
}

#[test]
fn values_of_every_kind() {
    let b = ok(
        r#"New-CsXmppAllowedPartner contoso.com -AdditionalDomains @{Add="a.com","b.com"; Remove="c.com"} -EnableKeepAlive $false -ProxyFqdn $null"#,
    );
    assert_eq!(b.value("Identity"), Some(&s("contoso.com")));
    assert_eq!(
        b.value("AdditionalDomains"),
        Some(&Value::Hashtable(vec![
            ("Add".into(), Value::List(vec![s("a.com"), s("b.com")])),
            ("Remove".into(), s("c.com")),
        ]))
    );
    assert_eq!(b.value("EnableKeepAlive"), Some(&Value::Bool(false)));
    assert_eq!(b.value("ProxyFqdn"), Some(&Value::Null));
    assert_eq!(
        ok("X a.com -AdditionalDomains $null").value("AdditionalDomains"),
        Some(&Value::Null)
    );
    // Attached values on value parameters.
    assert_eq!(
        ok("X -Identity:a.com -ConnectionLimit:10").value("ConnectionLimit"),
        Some(&s("10"))
    );
}

#[test]
fn switches() {
    let b = ok("X a.com -Force -WhatIf:$false -Confirm:$true -InMemory:0 -Verbose:1");
    assert!(b.switch("Force"));
    assert!(!b.switch("WhatIf"));
    assert!(b.contains("WhatIf"));
    assert!(b.switch("Confirm"));
    assert!(!b.switch("InMemory"));
    assert!(b.switch("Verbose"));
    assert!(!b.switch("Debug"));
    assert!(!b.contains("Debug"));
    assert_eq!(b.get("WhatIf"), Some(&BoundValue::Switch(false)));
    for (text, expected) in [
        ("true", true),
        ("false", false),
        ("TRUE", true),
        ("$null", false),
        ("'1'", true),
        ("\"0\"", false),
    ] {
        assert_eq!(
            ok(&format!("X -Force:{text}")).switch("Force"),
            expected,
            "{text}"
        );
    }
}

#[test]
fn force_false_is_bound_false() {
    let b = ok("Remove-CsXmppAllowedPartner -Identity contoso.com -Force:$false");
    assert_eq!(b.get("Force"), Some(&BoundValue::Switch(false)));
    assert!(!b.switch("Force"));
}

#[test]
fn names_are_case_insensitive_and_prefixes_resolve() {
    let b = ok("X -identity a.com -partnert Federated -TLSNEG Optional -desc hi -Dom b.com -f");
    assert_eq!(
        names(&b),
        vec![
            "Identity",
            "PartnerType",
            "TlsNegotiation",
            "Description",
            "Domain",
            "Force"
        ]
    );
    assert_eq!(b.value("partnertype"), Some(&s("Federated")));
    // Common parameters and their aliases.
    let b = ok("X a.com -ea Stop -ErrorVar errs -WarningAction:SilentlyContinue -vb -OutB 5");
    assert_eq!(
        names(&b),
        vec![
            "Identity",
            "ErrorAction",
            "ErrorVariable",
            "WarningAction",
            "Verbose",
            "OutBuffer"
        ]
    );
    assert_eq!(b.value("ErrorAction"), Some(&s("Stop")));
}

#[test]
fn exact_match_wins_over_prefix() {
    const SPEC: CmdletSpec = CmdletSpec {
        name: "Test-Thing",
        params: &[
            ParamSpec::value("Domain", "System.String"),
            ParamSpec::value("DomainController", "System.String"),
        ],
    };
    let b = bind_line("Test-Thing -domain a -DomainC b", &SPEC).unwrap();
    assert_eq!(b.value("Domain"), Some(&s("a")));
    assert_eq!(b.value("DomainController"), Some(&s("b")));
    // A spec may redefine a common parameter; its own definition is used, once.
    const OWN_VERBOSE: CmdletSpec = CmdletSpec {
        name: "Test-Thing",
        params: &[ParamSpec::value("Verbose", "System.String")],
    };
    let b = bind_line("Test-Thing -Verbose loud", &OWN_VERBOSE).unwrap();
    assert_eq!(b.value("Verbose"), Some(&s("loud")));
}

#[test]
fn ambiguous_prefixes_list_all_candidates() {
    assert_eq!(
        fail("X -D a").to_string(),
        "Parameter cannot be processed because the parameter name 'D' is ambiguous. Possible matches include: -Domain -Description -Debug."
    );
    assert_eq!(
        fail("X -P a").to_string(),
        "Parameter cannot be processed because the parameter name 'P' is ambiguous. Possible matches include: -PartnerType -ProxyFqdn -PipelineVariable."
    );
    // One more letter is enough.
    assert_eq!(
        ok("X -Pr gw.example:5269").value("ProxyFqdn"),
        Some(&s("gw.example:5269"))
    );
    let e = fail("X -e a");
    assert_eq!(e.parameter(), Some("e"));
    assert_eq!(
        e,
        BindError::AmbiguousParameter {
            name: "e".into(),
            candidates: vec!["EnableKeepAlive", "ErrorAction", "ErrorVariable"]
        }
    );
}

#[test]
fn positional_binding() {
    let b = ok("X contoso.com -PartnerType Federated");
    assert_eq!(names(&b), vec!["Identity", "PartnerType"]);
    // Named binding happens first, so a later -Identity takes the slot and the bare value has none.
    assert_eq!(
        fail("X contoso.com -Identity fabrikam.com").to_string(),
        "A positional parameter cannot be found that accepts argument 'contoso.com'."
    );
    assert_eq!(
        fail("X a.com b.com").to_string(),
        "A positional parameter cannot be found that accepts argument 'b.com'."
    );
    // A switch does not consume the next value: it becomes positional.
    assert_eq!(
        fail("X a.com -Force $false").to_string(),
        "A positional parameter cannot be found that accepts argument '$false'."
    );
    assert_eq!(fail("X a.com -Force $false").parameter(), None);
    // Positions are honoured in order, whatever the spec order.
    const TWO: CmdletSpec = CmdletSpec {
        name: "Grant-Thing",
        params: &[
            ParamSpec::value("PolicyName", "System.String").at(1),
            ParamSpec::value("Identity", "System.String").at(0),
            ParamSpec::switch("Force"),
        ],
    };
    let b = bind_line("Grant-Thing user@x tag:p", &TWO).unwrap();
    assert_eq!(b.value("Identity"), Some(&s("user@x")));
    assert_eq!(b.value("PolicyName"), Some(&s("tag:p")));
    let b = bind_line("Grant-Thing -Identity user@x tag:p", &TWO).unwrap();
    assert_eq!(b.value("PolicyName"), Some(&s("tag:p")));
}

#[test]
fn bound_args_keep_command_line_order() {
    let b = ok("X -Force a.com -Description d");
    assert_eq!(names(&b), vec!["Force", "Identity", "Description"]);
    let all: Vec<(&str, &BoundValue)> = b.iter().collect();
    assert_eq!(all[0], ("Force", &BoundValue::Switch(true)));
    assert!(!b.is_empty());
    assert!(BoundArgs::default().is_empty());
}

#[test]
fn error_messages() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        (
            "X -Foo 1",
            "A parameter cannot be found that matches parameter name 'Foo'.",
            Some("Foo"),
        ),
        (
            "X -Identity",
            "Missing an argument for parameter 'Identity'. Specify a parameter of type 'System.String' and try again.",
            Some("Identity"),
        ),
        (
            "X -Identity -Force",
            "Missing an argument for parameter 'Identity'. Specify a parameter of type 'System.String' and try again.",
            Some("Identity"),
        ),
        (
            "X -ConnectionLimit",
            "Missing an argument for parameter 'ConnectionLimit'. Specify a parameter of type 'System.UInt32' and try again.",
            Some("ConnectionLimit"),
        ),
        (
            "X -Identity a -ident b",
            "Cannot bind parameter because parameter 'Identity' is specified more than once.",
            Some("Identity"),
        ),
        (
            "X a -Force -force:$false",
            "Cannot bind parameter because parameter 'Force' is specified more than once.",
            Some("Force"),
        ),
        (
            "X a b",
            "A positional parameter cannot be found that accepts argument 'b'.",
            None,
        ),
        (
            "X a c,d",
            "A positional parameter cannot be found that accepts argument '\"c\", \"d\"'.",
            None,
        ),
        (
            "X -Force:yes",
            "Cannot process argument transformation on parameter 'Force'. Cannot convert value \"yes\" to type \"System.Management.Automation.SwitchParameter\". Boolean parameters accept only Boolean values and numbers, such as $True, $False, 1 or 0.",
            Some("Force"),
        ),
        (
            "X -WhatIf:a,b",
            "Cannot process argument transformation on parameter 'WhatIf'. Cannot convert value \"\"a\", \"b\"\" to type \"System.Management.Automation.SwitchParameter\". Boolean parameters accept only Boolean values and numbers, such as $True, $False, 1 or 0.",
            Some("WhatIf"),
        ),
    ];
    for (line, message, param) in cases {
        let e = fail(line);
        assert_eq!(e.to_string(), *message, "{line:?}");
        assert_eq!(e.parameter(), *param, "{line:?}");
    }
}

#[test]
fn argv_binds_like_a_script_line() {
    let argv: Vec<String> = [
        "New-CsXmppAllowedPartner",
        "-Identity",
        "contoso.com",
        "-Description",
        "Contact: Bob, x#1",
        "-AdditionalDomains",
        "a.com,b.com",
        "-Force:false",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let Statement::Pipeline { commands, .. } = parse_argv(&argv).unwrap() else {
        panic!("not a pipeline");
    };
    let b = bind(&commands[0], &NEW_PARTNER).unwrap();
    assert_eq!(b.value("Description"), Some(&s("Contact: Bob, x#1")));
    assert_eq!(
        b.value("AdditionalDomains"),
        Some(&Value::List(vec![s("a.com"), s("b.com")]))
    );
    assert!(b.contains("Force") && !b.switch("Force"));
}

#[test]
fn hand_built_commands_bind() {
    let c = Command {
        name: "X".into(),
        args: vec![],
    };
    assert!(bind(&c, &NEW_PARTNER).unwrap().is_empty());
    assert_eq!(ParamSpec::switch("Force").kind, ParamKind::Switch);
    assert_eq!(
        ParamSpec::value("Identity", "System.String").at(0).position,
        Some(0)
    );
}

#[test]
fn cmdlet_names() {
    for good in [
        "New-CsXmppAllowedPartner",
        "get-csxmppallowedpartner",
        "Grant-CsExternalAccessPolicy",
        "Set-X2",
    ] {
        assert!(is_cmdlet_name(good), "{good}");
    }
    for bad in [
        "",
        "New",
        "-New",
        "New-",
        "New-Cs-Xmpp",
        "New-2x",
        "fedgate",
        "New Cs",
        "Ne1-Cs",
    ] {
        assert!(!is_cmdlet_name(bad), "{bad}");
    }
}
