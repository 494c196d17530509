//! The management CLI as an admin uses it: the real `fedgate` binary against a real SQLite file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

mod common;
use common::{Env, Run};

#[test]
fn microsoft_example_1_public_verified() {
    let env = Env::new();
    let out = env
        .run(&[
            "New-CsXmppAllowedPartner",
            "-Identity",
            "contoso.com",
            "-PartnerType",
            "PublicVerified",
        ])
        .ok();
    assert!(
        out.stdout
            .contains("Identity                   : contoso.com"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("PartnerType                : PublicVerified")
    );
    let p = env.partner("contoso.com");
    assert_eq!(p["PartnerType"], "PublicVerified");
    assert_eq!(p["Domain"], "contoso.com");
    assert!(
        env.db().exists(),
        "the default store is fedgate.db in the working directory"
    );
}

#[test]
fn microsoft_example_2_additional_domain() {
    let env = Env::new();
    env.run(&[
        "New-CsXmppAllowedPartner",
        "-Identity",
        "fabrikam.com",
        "-AdditionalDomains",
        "research.fabrikam2.com",
    ])
    .ok();
    let p = env.partner("fabrikam.com");
    assert_eq!(
        p["AdditionalDomains"],
        serde_json::json!(["research.fabrikam2.com"])
    );
    assert_eq!(p["PartnerType"], "PublicUnverified");
}

#[test]
fn examples_verbatim_in_a_script_and_shell() {
    let env = Env::new();
    let script = env.dir.path().join("runbook.ps1");
    std::fs::write(
        &script,
        "# Runbook from the old Lync server\nNew-CsXmppAllowedPartner -Identity \"contoso.com\" -PartnerType \"PublicVerified\"\n\
         New-CsXmppAllowedPartner -Identity \"fabrikam.com\" -AdditionalDomains \"research.fabrikam2.com\"\n\
         Set-CsXmppAllowedPartner -Identity 'fabrikam.com' -AdditionalDomains @{Add=\"fabrikam3.com\"; Remove=\"research.fabrikam2.com\"} `\n    -EnableKeepAlive $false\n",
    )
    .unwrap();
    env.run(&["run", script.to_str().unwrap()]).ok();
    let p = env.partner("fabrikam.com");
    assert_eq!(p["AdditionalDomains"], serde_json::json!(["fabrikam3.com"]));
    assert_eq!(p["EnableKeepAlive"], false);

    let out = env
        .run_stdin(
            &["--output", "json", "shell"],
            "Get-CsXmppAllowedPartner -Filter 'contoso*'\n",
        )
        .ok();
    assert_eq!(out.json()[0]["Identity"], "contoso.com");
}

#[test]
fn every_parameter_with_valid_values() {
    let env = Env::new();
    env.run(&[
        "New-CsXmppAllowedPartner",
        "-Domain",
        "Partner.Example.",
        "-AdditionalDomains",
        "a.example,*.b.example",
        "-Description",
        "Contact: Bob, +1 555 0100 #ops",
        "-PartnerType",
        "federated",
        "-TlsNegotiation",
        "Optional",
        "-SaslNegotiation",
        "Optional",
        "-SupportDialbackNegotiation",
        "$true",
        "-EnableKeepAlive",
        "false",
        "-ConnectionLimit",
        "42",
        "-ProxyFqdn",
        "proxy.example:5270",
        "-BypassDualWrite",
        "1",
        "-Force",
        "-Confirm:$false",
    ])
    .ok();
    let p = env.partner("partner.example");
    assert_eq!(p["Identity"], "partner.example");
    assert_eq!(
        p["AdditionalDomains"],
        serde_json::json!(["a.example", "*.b.example"])
    );
    assert_eq!(p["Description"], "Contact: Bob, +1 555 0100 #ops");
    assert_eq!(p["PartnerType"], "Federated");
    assert_eq!(p["TlsNegotiation"], "Optional");
    assert_eq!(p["SaslNegotiation"], "Optional");
    assert_eq!(p["SupportDialbackNegotiation"], true);
    assert_eq!(p["EnableKeepAlive"], false);
    assert_eq!(p["ConnectionLimit"], 42);
    assert_eq!(p["ProxyFqdn"], "proxy.example:5270");
    assert_eq!(p["BypassDualWrite"], true);

    // Set every field again, with prefixes and other spellings.
    env.run(&[
        "set-csxmppallowedpartner",
        "partner.example",
        "-additionald",
        "$null",
        "-desc",
        "",
        "-partnert",
        "PUBLICUNVERIFIED",
        "-tls",
        "Required",
        "-sasl",
        "Required",
        "-Support",
        "0",
        "-EnableK:$true",
        "-Conn",
        "$null",
        "-Proxy",
        "$null",
        "-Bypass",
        "$false",
    ])
    .ok();
    let p = env.partner("partner.example");
    assert_eq!(p["AdditionalDomains"], serde_json::json!([]));
    assert_eq!(p["Description"], "");
    assert_eq!(p["PartnerType"], "PublicUnverified");
    assert_eq!(p["SupportDialbackNegotiation"], false);
    assert_eq!(p["EnableKeepAlive"], true);
    assert_eq!(p["ConnectionLimit"], Value::Null);
    assert_eq!(p["ProxyFqdn"], Value::Null);
}

#[test]
fn every_parameter_with_invalid_values_names_it_and_writes_nothing() {
    let env = Env::new();
    env.run(&["New-CsXmppAllowedPartner", "-Identity", "base.example"])
        .ok();
    let audit_before = env.audit_len();
    let cases: &[(&str, &str, &str)] = &[
        ("Identity", "not a domain", "spaces"),
        ("Identity", "https://x.example", "URL"),
        ("Identity", "user@x.example", "'@'"),
        ("Identity", "*.x.example", "wildcard"),
        ("AdditionalDomains", "bad..example", "empty label"),
        (
            "AdditionalDomains",
            "@{Append=\"a.example\"}",
            "Add, Remove, Replace",
        ),
        ("Description", &"x".repeat(1025), "1024"),
        (
            "PartnerType",
            "Trusted",
            "Federated, PublicVerified, PublicUnverified",
        ),
        (
            "TlsNegotiation",
            "Always",
            "Required, Optional, NotSupported",
        ),
        (
            "SaslNegotiation",
            "Sometimes",
            "Required, Optional, NotSupported",
        ),
        ("SupportDialbackNegotiation", "maybe", "$true, $false"),
        ("EnableKeepAlive", "yes", "$true, $false"),
        ("ConnectionLimit", "0", "1 to 4294967295"),
        ("ConnectionLimit", "4294967296", "1 to 4294967295"),
        ("ConnectionLimit", "ten", "1 to 4294967295"),
        ("ProxyFqdn", "proxy.example:99999", "port"),
        ("BypassDualWrite", "2", "$true, $false"),
    ];
    for (param, value, needle) in cases {
        for cmdlet in ["New-CsXmppAllowedPartner", "Set-CsXmppAllowedPartner"] {
            let identity = if cmdlet.starts_with("New") {
                "new.example"
            } else {
                "base.example"
            };
            let args: Vec<&str> = if *param == "Identity" {
                vec![cmdlet, "-Identity", value]
            } else {
                vec![
                    cmdlet,
                    "-Identity",
                    identity,
                    &format!("-{param}")[..],
                    value,
                ]
                .into_iter()
                .map(|s| Box::leak(s.to_owned().into_boxed_str()) as &str)
                .collect()
            };
            let out = env.run(&args).fails(2);
            assert!(
                out.stderr.contains(&format!("'{param}'")),
                "{cmdlet} -{param} {value}: {}",
                out.stderr
            );
            assert!(
                out.stderr.contains(needle),
                "{cmdlet} -{param} {value}: missing '{needle}' in {}",
                out.stderr
            );
        }
    }
    assert_eq!(env.audit_len(), audit_before, "nothing was written");
    assert_eq!(env.partners().as_array().unwrap().len(), 1);
}

#[test]
fn binding_errors_are_usage_errors() {
    let env = Env::new();
    let out = env
        .run(&[
            "New-CsXmppAllowedPartner",
            "-Identity",
            "a.example",
            "-Colour",
            "red",
        ])
        .fails(2);
    assert!(
        out.stderr
            .contains("A parameter cannot be found that matches parameter name 'Colour'."),
        "{}",
        out.stderr
    );
    let out = env.run(&["New-CsXmppAllowedPartner", "-Identity"]).fails(2);
    assert!(
        out.stderr
            .contains("Missing an argument for parameter 'Identity'"),
        "{}",
        out.stderr
    );
    let out = env
        .run(&[
            "New-CsXmppAllowedPartner",
            "-Identity",
            "a.example",
            "-P",
            "x",
        ])
        .fails(2);
    assert!(
        out.stderr.contains("ambiguous") && out.stderr.contains("-PartnerType -ProxyFqdn"),
        "{}",
        out.stderr
    );
    let out = env.run(&["Frobnicate-CsXmppAllowedPartner"]).fails(2);
    assert!(out.stderr.contains("not recognized"), "{}", out.stderr);
    let out = env
        .run(&[
            "Set-CsXmppAllowedPartner",
            "-Identity",
            "a.example",
            "-Domain",
            "b.example",
        ])
        .fails(2);
    assert!(
        out.stderr.contains("'Domain'"),
        "Set has no -Domain: {}",
        out.stderr
    );
    let out = env
        .run(&[
            "Set-CsXmppAllowedPartner",
            "-Identity",
            "a.example",
            "-InMemory",
        ])
        .fails(2);
    assert!(
        out.stderr.contains("'InMemory'"),
        "Set has no -InMemory: {}",
        out.stderr
    );
    assert!(!env.db().exists() || env.audit_len() == 0);
}

#[test]
fn identity_and_domain_are_exclusive() {
    let env = Env::new();
    let out = env
        .run(&[
            "New-CsXmppAllowedPartner",
            "-Identity",
            "a.example",
            "-Domain",
            "a.example",
        ])
        .fails(2);
    assert!(
        out.stderr.contains("either -Identity or -Domain"),
        "{}",
        out.stderr
    );
    let out = env
        .run(&["New-CsXmppAllowedPartner", "-PartnerType", "Federated"])
        .fails(2);
    assert!(
        out.stderr.contains("'Identity'") && out.stderr.contains("required"),
        "{}",
        out.stderr
    );
    env.run(&["New-CsXmppAllowedPartner", "-Domain", "d.example"])
        .ok();
    env.run(&["New-CsXmppAllowedPartner", "positional.example"])
        .ok();
    assert_eq!(env.partners().as_array().unwrap().len(), 2);
}

#[test]
fn all_eighteen_negotiation_combinations() {
    let env = Env::new();
    let mut n = 0;
    for tls in ["Required", "Optional", "NotSupported"] {
        for sasl in ["Required", "Optional", "NotSupported"] {
            for dialback in ["$true", "$false"] {
                n += 1;
                let id = format!("c{n}.example");
                let out = env.run(&[
                    "New-CsXmppAllowedPartner",
                    "-Identity",
                    &id,
                    "-TlsNegotiation",
                    tls,
                    "-SaslNegotiation",
                    sasl,
                    "-SupportDialbackNegotiation",
                    dialback,
                ]);
                let valid =
                    (tls != "NotSupported" && sasl != "NotSupported") || dialback == "$true";
                let sasl_warning = sasl == "Required" && tls != "Required";
                let dialback_warning =
                    tls == "Required" && sasl == "Required" && dialback == "$true";
                if !valid {
                    let out = out.fails(2);
                    assert!(
                        out.stderr.contains("leave no way to authenticate"),
                        "{id}: {}",
                        out.stderr
                    );
                    continue;
                }
                let out = out.ok();
                assert_eq!(
                    out.stderr.contains("SASL requires TLS"),
                    sasl_warning,
                    "{tls}/{sasl}/{dialback}: {}",
                    out.stderr
                );
                assert_eq!(
                    out.stderr.contains("dialback will never be used"),
                    dialback_warning,
                    "{tls}/{sasl}/{dialback}"
                );
            }
        }
    }
    assert_eq!(n, 18);
    assert_eq!(
        env.partners().as_array().unwrap().len(),
        13,
        "18 combinations, 5 invalid"
    );
    // Set can also make a stored partner invalid: refused, nothing changes.
    let out = env
        .run(&[
            "Set-CsXmppAllowedPartner",
            "c1.example",
            "-TlsNegotiation",
            "NotSupported",
            "-SupportDialbackNegotiation",
            "$false",
        ])
        .fails(2);
    assert!(out.stderr.contains("leave no way to authenticate"));
    assert_eq!(env.partner("c1.example")["TlsNegotiation"], "Required");
    // -Force hides the warnings.
    let out = env
        .run(&[
            "New-CsXmppAllowedPartner",
            "quiet.example",
            "-TlsNegotiation",
            "Optional",
            "-Force",
        ])
        .ok();
    assert!(!out.stderr.contains("WARNING"), "{}", out.stderr);
}

#[test]
fn list_modifier_forms() {
    let env = Env::new();
    env.run(&[
        "New-CsXmppAllowedPartner",
        "p.example",
        "-AdditionalDomains",
        "\"a.example\",\"b.example\"",
    ])
    .ok();
    let domains = |env: &Env| env.partner("p.example")["AdditionalDomains"].clone();
    assert_eq!(domains(&env), serde_json::json!(["a.example", "b.example"]));
    env.run(&[
        "Set-CsXmppAllowedPartner",
        "p.example",
        "-AdditionalDomains",
        "@{Add=\"c.example\",\"A.EXAMPLE\"}",
    ])
    .ok();
    assert_eq!(
        domains(&env),
        serde_json::json!(["a.example", "b.example", "c.example"])
    );
    env.run(&[
        "Set-CsXmppAllowedPartner",
        "p.example",
        "-AdditionalDomains",
        "@{Remove=\"a.example\",\"absent.example\"}",
    ])
    .ok();
    assert_eq!(domains(&env), serde_json::json!(["b.example", "c.example"]));
    // Remove before Add: present at the end.
    env.run(&[
        "Set-CsXmppAllowedPartner",
        "p.example",
        "-AdditionalDomains",
        "@{add='z.example'; REMOVE='z.example'}",
    ])
    .ok();
    assert_eq!(
        domains(&env),
        serde_json::json!(["b.example", "c.example", "z.example"])
    );
    // Replace wins over Add and Remove.
    env.run(&[
        "Set-CsXmppAllowedPartner",
        "p.example",
        "-AdditionalDomains",
        "@{Add='q.example'; Replace='r.example'; Remove='r.example'}",
    ])
    .ok();
    assert_eq!(domains(&env), serde_json::json!(["r.example"]));
    // A plain list replaces.
    env.run(&[
        "Set-CsXmppAllowedPartner",
        "p.example",
        "-AdditionalDomains",
        "s.example",
    ])
    .ok();
    assert_eq!(domains(&env), serde_json::json!(["s.example"]));
    // $null clears.
    env.run(&[
        "Set-CsXmppAllowedPartner",
        "p.example",
        "-AdditionalDomains",
        "$null",
    ])
    .ok();
    assert_eq!(domains(&env), serde_json::json!([]));
    // Conflicting or unknown keys are errors, nothing written.
    let out = env
        .run(&[
            "Set-CsXmppAllowedPartner",
            "p.example",
            "-AdditionalDomains",
            "@{Add='a.example'; add='b.example'}",
        ])
        .fails(2);
    assert!(
        out.stderr.to_lowercase().contains("duplicate") || out.stderr.contains("more than once"),
        "{}",
        out.stderr
    );
    let out = env
        .run(&[
            "Set-CsXmppAllowedPartner",
            "p.example",
            "-AdditionalDomains",
            "@{Insert='a.example'}",
        ])
        .fails(2);
    assert!(
        out.stderr.contains("Add, Remove, Replace"),
        "{}",
        out.stderr
    );
    assert_eq!(domains(&env), serde_json::json!([]));
    // Idiomatic form: --add-domain / --remove-domain.
    env.run(&[
        "partner",
        "edit",
        "p.example",
        "--add-domain",
        "x.example",
        "--add-domain",
        "*.y.example",
    ])
    .ok();
    env.run(&[
        "partner",
        "edit",
        "p.example",
        "--remove-domain",
        "x.example",
    ])
    .ok();
    assert_eq!(domains(&env), serde_json::json!(["*.y.example"]));
}

#[test]
fn duplicates_are_refused() {
    let env = Env::new();
    env.run(&[
        "New-CsXmppAllowedPartner",
        "fabrikam.com",
        "-AdditionalDomains",
        "research.fabrikam2.com,*.lab.fabrikam.com",
    ])
    .ok();
    let before = env.audit_len();
    let out = env
        .run(&["New-CsXmppAllowedPartner", "FABRIKAM.COM."])
        .fails(1);
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
    // A domain that is another partner's AdditionalDomain, as Identity or as AdditionalDomain.
    let out = env
        .run(&["New-CsXmppAllowedPartner", "research.fabrikam2.com"])
        .fails(1);
    assert!(
        out.stderr
            .contains("already belongs to the partner 'fabrikam.com'"),
        "{}",
        out.stderr
    );
    let out = env
        .run(&[
            "New-CsXmppAllowedPartner",
            "other.com",
            "-AdditionalDomains",
            "research.fabrikam2.com",
        ])
        .fails(1);
    assert!(out.stderr.contains("already belongs"), "{}", out.stderr);
    let out = env
        .run(&[
            "New-CsXmppAllowedPartner",
            "other.com",
            "-AdditionalDomains",
            "*.lab.fabrikam.com",
        ])
        .fails(1);
    assert!(out.stderr.contains("already belongs"), "{}", out.stderr);
    env.run(&["New-CsXmppAllowedPartner", "other.com"]).ok();
    let out = env
        .run(&[
            "Set-CsXmppAllowedPartner",
            "other.com",
            "-AdditionalDomains",
            "fabrikam.com",
        ])
        .fails(1);
    assert!(out.stderr.contains("already belongs"), "{}", out.stderr);
    // Its own Identity in AdditionalDomains.
    let out = env
        .run(&[
            "Set-CsXmppAllowedPartner",
            "other.com",
            "-AdditionalDomains",
            "other.com",
        ])
        .fails(2);
    assert!(out.stderr.contains("'AdditionalDomains'"), "{}", out.stderr);
    assert_eq!(env.audit_len(), before + 1);
}

#[test]
fn what_if_and_in_memory_write_nothing() {
    let env = Env::new();
    env.run(&["New-CsXmppAllowedPartner", "kept.example"]).ok();
    let before = std::fs::read(env.db()).unwrap();
    let audit = env.audit_len();
    let out = env
        .run(&["New-CsXmppAllowedPartner", "new.example", "-WhatIf"])
        .ok();
    assert!(out.stdout.contains("What if: Performing the operation \"New-CsXmppAllowedPartner\" on target \"new.example\""), "{}", out.stdout);
    let out = env
        .run(&[
            "New-CsXmppAllowedPartner",
            "mem.example",
            "-InMemory",
            "-PartnerType",
            "Federated",
        ])
        .ok();
    assert!(out.stdout.contains("mem.example") && out.stdout.contains("Federated"));
    env.run(&[
        "Set-CsXmppAllowedPartner",
        "kept.example",
        "-PartnerType",
        "Federated",
        "-WhatIf",
    ])
    .ok();
    env.run(&["Remove-CsXmppAllowedPartner", "kept.example", "-WhatIf"])
        .ok();
    // WhatIf still reports what would fail.
    env.run(&["New-CsXmppAllowedPartner", "kept.example", "-WhatIf"])
        .fails(1);
    assert_eq!(env.audit_len(), audit);
    let ids: Vec<String> = env
        .partners()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["Identity"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["kept.example"]);
    assert_eq!(
        env.partner("kept.example")["PartnerType"],
        "PublicUnverified"
    );
    assert!(
        std::fs::read(env.db()).unwrap() == before,
        "-WhatIf and -InMemory changed the database file"
    );
}

#[test]
fn in_memory_object_committed_with_set_instance() {
    let env = Env::new();
    let out = env
        .run_stdin(
            &["shell"],
            "$p = New-CsXmppAllowedPartner -Identity \"contoso.com\" -InMemory\n\
             $p.Description = \"Contact: ops@contoso.com\"\n\
             $p.PartnerType = 'Federated'\n\
             Set-CsXmppAllowedPartner -Instance $p\n",
        )
        .ok();
    assert!(
        out.stdout.contains("Contact: ops@contoso.com"),
        "{}",
        out.stdout
    );
    let p = env.partner("contoso.com");
    assert_eq!(p["Description"], "Contact: ops@contoso.com");
    assert_eq!(p["PartnerType"], "Federated");
    // An exported JSON object works as -Instance too.
    let file = env.dir.path().join("exported.json");
    std::fs::write(&file, serde_json::json!({"Identity": "exported.example", "TlsNegotiation": "Optional", "Element": "ignored"}).to_string()).unwrap();
    let out = env
        .run(&[
            "Set-CsXmppAllowedPartner",
            "-Instance",
            file.to_str().unwrap(),
        ])
        .ok();
    assert!(
        out.stderr
            .contains("ignored properties of the object: Element"),
        "{}",
        out.stderr
    );
    assert_eq!(
        env.partner("exported.example")["TlsNegotiation"],
        "Optional"
    );
}

#[test]
fn get_identity_filter_and_pipelines() {
    let env = Env::new();
    for d in ["a.test", "b.test", "c.example"] {
        env.run(&["New-CsXmppAllowedPartner", d]).ok();
    }
    let out = env
        .run(&["Get-CsXmppAllowedPartner", "-Identity", "missing.test"])
        .fails(1);
    assert!(
        out.stderr
            .contains("Cannot find a partner with Identity 'missing.test'"),
        "{}",
        out.stderr
    );
    let out = env
        .run(&[
            "--output",
            "json",
            "Get-CsXmppAllowedPartner",
            "-Filter",
            "*.nothing",
        ])
        .ok();
    assert_eq!(out.json(), serde_json::json!([]));
    let out = env
        .run(&[
            "Get-CsXmppAllowedPartner",
            "-Filter",
            "?.TEST",
            "--output",
            "json",
            "-LocalStore",
        ])
        .ok();
    assert_eq!(out.json().as_array().unwrap().len(), 2);
    env.run_stdin(&["shell"], "Get-CsXmppAllowedPartner -Filter *.test | Set-CsXmppAllowedPartner -PartnerType Federated\n").ok();
    assert_eq!(env.partner("a.test")["PartnerType"], "Federated");
    assert_eq!(env.partner("c.example")["PartnerType"], "PublicUnverified");
    env.run_stdin(
        &["shell"],
        "Get-CsXmppAllowedPartner -Filter *.test | Remove-CsXmppAllowedPartner\n",
    )
    .ok();
    assert_eq!(env.partners().as_array().unwrap().len(), 1);
}

#[test]
fn json_output_shapes_and_keys() {
    let env = Env::new();
    let out = env
        .run(&[
            "--output",
            "json",
            "New-CsXmppAllowedPartner",
            "contoso.com",
        ])
        .ok();
    let obj = out.json();
    let keys: Vec<&str> = obj
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "Identity",
            "Domain",
            "AdditionalDomains",
            "Description",
            "PartnerType",
            "TlsNegotiation",
            "SaslNegotiation",
            "SupportDialbackNegotiation",
            "EnableKeepAlive",
            "ConnectionLimit",
            "ProxyFqdn",
            "BypassDualWrite"
        ]
    );
    assert!(obj["EnableKeepAlive"].is_boolean());
    let out = env
        .run(&[
            "Set-CsXmppAllowedPartner",
            "contoso.com",
            "-Description",
            "x",
            "--output",
            "json",
        ])
        .ok();
    assert!(out.json().is_object());
    assert!(
        env.run(&[
            "--output",
            "json",
            "Get-CsXmppAllowedPartner",
            "contoso.com"
        ])
        .ok()
        .json()
        .is_array()
    );
    let out = env
        .run(&[
            "--output",
            "json",
            "Remove-CsXmppAllowedPartner",
            "contoso.com",
        ])
        .ok();
    assert_eq!(out.stdout, "");
}

#[test]
fn confirm_asks_and_respects_the_answer() {
    let env = Env::new();
    let out = env
        .run_stdin(
            &["New-CsXmppAllowedPartner", "no.example", "-Confirm"],
            "n\n",
        )
        .ok();
    assert!(
        out.stderr
            .contains("Are you sure you want to perform this action?"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("Not confirmed"));
    env.run_stdin(
        &["New-CsXmppAllowedPartner", "yes.example", "-Confirm"],
        "y\n",
    )
    .ok();
    let ids: Vec<String> = env
        .partners()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["Identity"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["yes.example"]);
}

#[test]
fn idiomatic_subcommands_share_the_engine() {
    let env = Env::new();
    let out = env.run(&["partner", "add", "--help"]).ok();
    assert!(
        out.stdout.contains("PublicUnverified") && out.stdout.contains("default"),
        "{}",
        out.stdout
    );
    env.run(&[
        "partner",
        "add",
        "contoso.com",
        "--partner-type",
        "PublicVerified",
        "--additional-domains",
        "a.contoso.com,b.contoso.com",
    ])
    .ok();
    let out = env
        .run(&[
            "partner",
            "add",
            "x.example",
            "--tls-negotiation",
            "Sometimes",
        ])
        .fails(2);
    assert!(
        out.stderr
            .contains("Allowed values: Required, Optional, NotSupported"),
        "{}",
        out.stderr
    );
    env.run(&[
        "partner",
        "edit",
        "contoso.com",
        "--connection-limit",
        "5",
        "--dialback",
        "false",
    ])
    .ok();
    let out = env
        .run(&["--output", "json", "partner", "show", "contoso.com"])
        .ok();
    assert_eq!(out.json()[0]["ConnectionLimit"], 5);
    assert_eq!(out.json()[0]["SupportDialbackNegotiation"], false);
    assert_eq!(
        env.run(&["--output", "json", "partner", "list", "--filter", "*.com"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    env.run(&["partner", "remove", "contoso.com", "--what-if"])
        .ok();
    env.run(&["partner", "remove", "contoso.com"]).ok();
    env.run(&["partner", "show", "contoso.com"]).fails(1);
    let out = env.run(&["audit"]).ok();
    assert!(
        out.stdout.contains("Actor   : cli:tester")
            && out.stdout.contains("Remove-CsXmppAllowedPartner"),
        "{}",
        out.stdout
    );
}

#[test]
fn external_access_policies_and_grants() {
    let env = Env::new();
    let out = env
        .run(&["--output", "json", "Get-CsExternalAccessPolicy"])
        .ok();
    assert_eq!(out.json()[0]["Identity"], "Global");
    assert_eq!(out.json()[0]["EnableXmppAccess"], false);
    env.run(&[
        "Set-CsExternalAccessPolicy",
        "-Identity",
        "Global",
        "-EnableXmppAccess",
        "$true",
    ])
    .ok();
    env.run(&[
        "New-CsExternalAccessPolicy",
        "-Identity",
        "site:Redmond",
        "-EnableXmppAccess",
        "$false",
    ])
    .ok();
    env.run(&[
        "New-CsExternalAccessPolicy",
        "RedmondAccessPolicy",
        "-EnableXmppAccess",
        "$true",
        "-EnableFederationAccess",
        "$true",
    ])
    .ok();
    let out = env
        .run(&["New-CsExternalAccessPolicy", "-Identity", "user:x"])
        .fails(2);
    assert!(
        out.stderr
            .contains("Allowed values: Global, site:<name>, tag:<name>"),
        "{}",
        out.stderr
    );
    env.run(&["New-CsExternalAccessPolicy", "tag:redmondaccesspolicy"])
        .fails(1);
    env.run(&[
        "Grant-CsExternalAccessPolicy",
        "-Identity",
        "alice@corp.example",
        "-PolicyName",
        "RedmondAccessPolicy",
    ])
    .ok();
    let out = env
        .run(&[
            "Grant-CsExternalAccessPolicy",
            "bob@corp.example",
            "NoSuchPolicy",
        ])
        .fails(1);
    assert!(
        out.stderr.contains("Cannot find a policy"),
        "{}",
        out.stderr
    );
    let out = env
        .run(&[
            "Grant-CsExternalAccessPolicy",
            "not-a-jid",
            "RedmondAccessPolicy",
        ])
        .fails(2);
    assert!(out.stderr.contains("'Identity'"), "{}", out.stderr);
    let out = env.run(&["--output", "json", "policy", "grants"]).ok();
    assert_eq!(
        out.json(),
        serde_json::json!([{"Identity": "alice@corp.example", "ExternalAccessPolicy": "RedmondAccessPolicy"}])
    );
    // A granted policy is removed only with -Force, together with its grants.
    let out = env
        .run(&["Remove-CsExternalAccessPolicy", "tag:RedmondAccessPolicy"])
        .fails(1);
    assert!(out.stderr.contains("-Force"), "{}", out.stderr);
    env.run(&[
        "Remove-CsExternalAccessPolicy",
        "tag:RedmondAccessPolicy",
        "-Force",
    ])
    .ok();
    assert_eq!(
        env.run(&["--output", "json", "policy", "grants"])
            .ok()
            .json(),
        serde_json::json!([])
    );
    let out = env
        .run(&[
            "--output",
            "json",
            "Get-CsExternalAccessPolicy",
            "-Filter",
            "site:*",
        ])
        .ok();
    assert_eq!(out.json()[0]["Identity"], "Site:Redmond");
    // Removing Global resets it.
    env.run(&["Remove-CsExternalAccessPolicy", "Global"]).ok();
    assert_eq!(
        env.run(&["--output", "json", "Get-CsExternalAccessPolicy", "Global"])
            .ok()
            .json()[0]["EnableXmppAccess"],
        false
    );
}

#[test]
fn gateway_configuration_settings() {
    let env = Env::new();
    let out = env
        .run(&["--output", "json", "Get-CsXmppGatewayConfiguration"])
        .ok();
    assert_eq!(out.json()[0]["ConnectionLimit"], 1000);
    assert_eq!(out.json()[0]["KeepAliveInterval"], 300);
    env.run(&[
        "Set-CsXmppGatewayConfiguration",
        "-KeepAliveInterval",
        "120",
        "-DialbackPassphrase",
        "sixteen-plus-characters-secret",
    ])
    .ok();
    let out = env
        .run(&["Get-CsXmppGatewayConfiguration", "-Identity", "global"])
        .ok();
    assert!(
        out.stdout.contains("KeepAliveInterval             : 120"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("sixteen-plus"),
        "the passphrase is never printed"
    );
    let audit = env.run(&["--output", "json", "audit"]).ok().stdout;
    assert!(
        !audit.contains("sixteen-plus"),
        "nor written to the audit log"
    );
    let out = env
        .run(&["Set-CsXmppGatewayConfiguration", "-KeepAliveInterval", "5"])
        .fails(2);
    assert!(
        out.stderr.contains("'KeepAliveInterval'") && out.stderr.contains("10 to 86400"),
        "{}",
        out.stderr
    );
    let out = env
        .run(&[
            "Set-CsXmppGatewayConfiguration",
            "-Identity",
            "site:x",
            "-KeepAliveInterval",
            "60",
        ])
        .fails(2);
    assert!(
        out.stderr.contains("Allowed values: Global"),
        "{}",
        out.stderr
    );
    env.run(&["gateway", "set", "--set", "StreamInactivityTimeout=900"])
        .ok();
    assert_eq!(
        env.run(&["--output", "json", "gateway", "show"])
            .ok()
            .json()[0]["StreamInactivityTimeout"],
        900
    );
}

#[test]
fn scripts_report_lines_and_stop_on_request() {
    let env = Env::new();
    let script = env.dir.path().join("s.ps1");
    std::fs::write(&script, "New-CsXmppAllowedPartner a.example\nNew-CsXmppAllowedPartner a.example\nNew-CsXmppAllowedPartner b.example\n").unwrap();
    let out = env.run(&["run", script.to_str().unwrap()]).fails(1);
    assert!(out.stderr.contains("s.ps1:2"), "{}", out.stderr);
    assert_eq!(
        env.partners().as_array().unwrap().len(),
        2,
        "a failed statement does not stop the script"
    );
    std::fs::write(&script, "New-CsXmppAllowedPartner b.example -ErrorAction Stop\nNew-CsXmppAllowedPartner c.example\n").unwrap();
    env.run(&["run", script.to_str().unwrap()]).fails(1);
    assert_eq!(
        env.partners().as_array().unwrap().len(),
        2,
        "-ErrorAction Stop ends the script"
    );
    // A syntax error anywhere: nothing runs.
    std::fs::write(
        &script,
        "New-CsXmppAllowedPartner d.example\nNew-CsXmppAllowedPartner \"e.example\n",
    )
    .unwrap();
    let out = env.run(&["run", script.to_str().unwrap()]).fails(2);
    assert!(out.stderr.contains("terminator"), "{}", out.stderr);
    assert_eq!(env.partners().as_array().unwrap().len(), 2);
}

#[test]
fn store_location_option_env_and_bad_urls() {
    let env = Env::new();
    let other = env.dir.path().join("other.db");
    let url = format!("sqlite:{}", other.display());
    env.run(&["--store", &url, "New-CsXmppAllowedPartner", "a.example"])
        .ok();
    assert!(other.exists());
    let out = Run::from(
        env.cmd()
            .env("FEDGATE_STORE", &url)
            .args(["--output", "json", "Get-CsXmppAllowedPartner"])
            .output()
            .unwrap(),
    )
    .ok();
    assert_eq!(out.json().as_array().unwrap().len(), 1);
    let out = env
        .run(&["--store", "mysql://x", "Get-CsXmppAllowedPartner"])
        .fails(1);
    assert!(
        out.stderr.contains("Allowed values: sqlite:<path>"),
        "{}",
        out.stderr
    );
    // A PostgreSQL server that is not there: the error names it, never the password.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pg = format!("postgres://fedgate:cli-secret@127.0.0.1:{port}/fedgate?connect_timeout=5");
    let out = env
        .run(&["--store", &pg, "Get-CsXmppAllowedPartner"])
        .fails(1);
    assert!(
        out.stderr.contains(&format!("127.0.0.1:{port}"))
            && out.stderr.contains("postgres://fedgate:********@"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("cli-secret"), "{}", out.stderr);
    // Nor does --help show the value of FEDGATE_STORE.
    let out = Run::from(
        env.cmd()
            .env("FEDGATE_STORE", &pg)
            .arg("--help")
            .output()
            .unwrap(),
    )
    .ok();
    assert!(out.stdout.contains("FEDGATE_STORE"), "{}", out.stdout);
    assert!(!out.stdout.contains("cli-secret"), "{}", out.stdout);
}

#[test]
fn corrupt_and_newer_databases_give_clear_errors_and_stay_untouched() {
    let env = Env::new();
    std::fs::write(env.db(), vec![0x5a; 8192]).unwrap();
    let out = env.run(&["Get-CsXmppAllowedPartner"]).fails(1);
    assert!(
        out.stderr
            .contains("is not a fedgate database or is damaged"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read(env.db()).unwrap(), vec![0x5a; 8192]);
    // A database written by a newer fedgate.
    let newer = env.dir.path().join("newer.db");
    let url = format!("sqlite:{}", newer.display());
    env.run(&["--store", &url, "Get-CsXmppAllowedPartner"]).ok();
    let c = rusqlite_version_bump(&newer);
    assert!(c);
    let out = env
        .run(&["--store", &url, "Get-CsXmppAllowedPartner"])
        .fails(1);
    assert!(
        out.stderr.contains("newer than this fedgate supports"),
        "{}",
        out.stderr
    );
}

/// Raise the schema version with the sqlite3 file format directly: user_version is the 4-byte
/// big-endian integer at offset 60 of the header.
fn rusqlite_version_bump(path: &Path) -> bool {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[60..64].copy_from_slice(&999u32.to_be_bytes());
    std::fs::write(path, bytes).is_ok()
}

#[test]
fn two_concurrent_writer_processes_lose_nothing() {
    let env = Env::new();
    env.run(&["Get-CsXmppAllowedPartner"]).ok();
    let scripts: Vec<PathBuf> = (0..2)
        .map(|w| {
            let path = env.dir.path().join(format!("w{w}.ps1"));
            let body: String = (0..40)
                .map(|i| {
                    format!("New-CsXmppAllowedPartner w{w}-{i}.example -PartnerType Federated\n")
                })
                .collect();
            std::fs::write(&path, body).unwrap();
            path
        })
        .collect();
    let children: Vec<_> = scripts
        .iter()
        .map(|s| {
            env.cmd()
                .args(["run", s.to_str().unwrap()])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    // And a third process editing one shared record while they run.
    env.run(&["New-CsXmppAllowedPartner", "shared.example"])
        .ok();
    let editors: Vec<_> = (0..2)
        .map(|w| {
            let path = env.dir.path().join(format!("e{w}.ps1"));
            let body: String = (0..20).map(|i| format!("Set-CsXmppAllowedPartner shared.example -AdditionalDomains @{{Add='e{w}-{i}.example'}}\n")).collect();
            std::fs::write(&path, body).unwrap();
            env.cmd().args(["run", path.to_str().unwrap()]).stdout(Stdio::null()).spawn().unwrap()
        })
        .collect();
    for mut c in children.into_iter().chain(editors) {
        assert!(c.wait().unwrap().success());
    }
    assert_eq!(env.partners().as_array().unwrap().len(), 81);
    let shared = env.partner("shared.example");
    assert_eq!(
        shared["AdditionalDomains"].as_array().unwrap().len(),
        40,
        "no Add was lost: {shared}"
    );
}

#[test]
fn unreadable_database_gives_a_clear_error() {
    let env = Env::new();
    env.run(&["New-CsXmppAllowedPartner", "a.example"]).ok();
    let db = env.db();
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    use std::os::unix::fs::PermissionsExt;
    let out = if is_root {
        // Root ignores file modes: run the CLI as nobody against root's 0600 database instead.
        std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let setpriv = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                env!("CARGO_BIN_EXE_fedgate"),
            ])
            .args([
                "--store",
                &format!("sqlite:{}", db.display()),
                "Get-CsXmppAllowedPartner",
            ])
            .output()
            .expect("setpriv (util-linux) is needed for this test: apt-get install util-linux");
        Run::from(setpriv)
    } else {
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o000)).unwrap();
        env.run(&["Get-CsXmppAllowedPartner"])
    };
    let out = out.fails(1);
    assert!(
        out.stderr.contains("cannot be opened or written"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("fedgate.db"), "{}", out.stderr);
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        env.partners().as_array().unwrap().len(),
        1,
        "the database is intact"
    );
}

#[test]
fn policy_and_gateway_parameters_reject_bad_values() {
    let env = Env::new();
    env.run(&["New-CsExternalAccessPolicy", "tag:p"]).ok();
    for param in [
        "EnableFederationAccess",
        "EnableXmppAccess",
        "EnableOutsideAccess",
        "EnablePublicCloudAccess",
        "EnablePublicCloudAudioVideoAccess",
    ] {
        env.run(&[
            "Set-CsExternalAccessPolicy",
            "tag:p",
            &format!("-{param}"),
            "$true",
        ])
        .ok();
        let out = env
            .run(&[
                "Set-CsExternalAccessPolicy",
                "tag:p",
                &format!("-{param}"),
                "perhaps",
            ])
            .fails(2);
        assert!(
            out.stderr.contains(&format!("'{param}'")) && out.stderr.contains("$true, $false"),
            "{param}: {}",
            out.stderr
        );
    }
    for (param, good, bad, allowed) in [
        ("ConnectionLimit", "500", "0", "1 to 4294967295"),
        ("PartnerConnectionLimit", "10", "-3", "1 to 4294967295"),
        ("KeepAliveInterval", "60", "86401", "10 to 86400"),
        ("StreamEstablishmentTimeout", "30", "3601", "1 to 3600"),
        ("StreamInactivityTimeout", "1200", "9", "10 to 604800"),
        ("SubscriptionRefreshInterval", "3600", "59", "60 to 2592000"),
        (
            "DialbackPassphrase",
            "a-long-enough-dialback-secret",
            "short",
            "at least 16",
        ),
        (
            "EnableLoggingAllMessageBodies",
            "$false",
            "sometimes",
            "$true, $false",
        ),
    ] {
        env.run(&["Set-CsXmppGatewayConfiguration", &format!("-{param}"), good])
            .ok();
        let out = env
            .run(&["Set-CsXmppGatewayConfiguration", &format!("-{param}"), bad])
            .fails(2);
        assert!(
            out.stderr.contains(&format!("'{param}'")) && out.stderr.contains(allowed),
            "{param}: {}",
            out.stderr
        );
    }
}

#[test]
fn with_the_gateway_config_the_cli_uses_its_store_and_hosted_domains() {
    let env = Env::new();
    let config = env.dir.path().join("fedgate.toml");
    std::fs::write(
        &config,
        "store = \"sqlite:gw.db\"\n[internal_listener]\nlisten = \"127.0.0.1:15270\"\n[external_listener]\nlisten = \"127.0.0.1:15269\"\n\
         [[hosted_domain]]\ndomain = \"corp.example\"\ninternal_server = \"127.0.0.1:5269\"\n",
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let out = env
        .run(&["--config", cfg, "New-CsXmppAllowedPartner", "corp.example"])
        .fails(2);
    assert!(
        out.stderr
            .contains("one of this gateway's own hosted domains"),
        "{}",
        out.stderr
    );
    let out = env
        .run(&[
            "New-CsXmppAllowedPartner",
            "p.example",
            "-AdditionalDomains",
            "*.example",
            "--config",
            cfg,
        ])
        .fails(2);
    assert!(
        out.stderr.contains("'AdditionalDomains'") && out.stderr.contains("corp.example"),
        "{}",
        out.stderr
    );
    env.run(&[
        "New-CsXmppAllowedPartner",
        "partner.example",
        "--config",
        cfg,
    ])
    .ok();
    assert!(
        env.dir.path().join("gw.db").exists(),
        "the config's store, relative to the config file"
    );
    assert!(!env.db().exists(), "not the default store");
    let out = Run::from(
        env.cmd()
            .env("FEDGATE_CONFIG", cfg)
            .args(["--output", "json", "partner", "list"])
            .output()
            .unwrap(),
    )
    .ok();
    assert_eq!(out.json()[0]["Identity"], "partner.example");
    let out = env
        .run(&["--config", "/nonexistent/fedgate.toml", "partner", "list"])
        .fails(1);
    assert!(
        out.stderr.contains("/nonexistent/fedgate.toml"),
        "{}",
        out.stderr
    );
    let out = env.run(&["serve"]).fails(2);
    assert!(out.stderr.contains("--config"), "{}", out.stderr);
}

#[test]
fn internal_dns_prints_the_partner_domains_records_for_the_internal_listener() {
    let env = Env::new();
    let config = env.dir.path().join("fedgate.toml");
    let write_config = |listen: &str| {
        std::fs::write(
            &config,
            format!(
                "store = \"sqlite:gw.db\"\n[internal_listener]\nlisten = \"{listen}\"\n[external_listener]\nlisten = \"127.0.0.1:15269\"\n\
                 [[hosted_domain]]\ndomain = \"corp.example\"\ninternal_server = \"127.0.0.1:5269\"\n"
            ),
        )
        .unwrap()
    };
    write_config("192.0.2.10:5269");
    let cfg = config.to_str().unwrap();
    env.run(&[
        "--config",
        cfg,
        "partner",
        "add",
        "contoso.com",
        "--additional-domains",
        "*.fabrikam.com,research.contoso2.com",
    ])
    .ok();
    let out = env
        .run(&["--config", cfg, "internal-dns", "--format", "hosts"])
        .ok();
    let lines: Vec<&str> = out.stdout.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        ["192.0.2.10 contoso.com", "192.0.2.10 research.contoso2.com"]
    );
    assert!(
        out.stdout
            .contains("# *.fabrikam.com: a hosts file cannot say")
    );
    let out = env
        .run(&["--config", cfg, "internal-dns", "--format", "unbound"])
        .ok();
    assert!(
        out.stdout
            .contains("local-data: \"_xmpp-server._tcp.contoso.com. SRV 0 0 5269 contoso.com.\"")
            && out
                .stdout
                .contains("local-zone: \"fabrikam.com.\" redirect"),
        "{}",
        out.stdout
    );
    // --address overrides the address, keeping the listener's port unless it names one.
    let out = env
        .run(&[
            "--config",
            cfg,
            "internal-dns",
            "--format",
            "dnsmasq",
            "--address",
            "10.1.2.3",
        ])
        .ok();
    assert!(
        out.stdout.contains("address=/contoso.com/10.1.2.3\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("srv-host=_xmpp-server._tcp.contoso.com,contoso.com,5269\n"),
        "{}",
        out.stdout
    );
    // A listener on every address needs --address; bad values name the option and what is allowed.
    write_config("0.0.0.0:5269");
    let out = env
        .run(&["--config", cfg, "internal-dns", "--format", "bind"])
        .fails(2);
    assert!(
        out.stderr.contains("'--address'") && out.stderr.contains("0.0.0.0:5269"),
        "{}",
        out.stderr
    );
    let out = env
        .run(&["--config", cfg, "internal-dns", "--format", "djbdns"])
        .fails(2);
    assert!(
        out.stderr.contains("--format")
            && out
                .stderr
                .contains("dnsmasq, unbound, bind, hosts, prosody"),
        "{}",
        out.stderr
    );
    let out = env.run(&["internal-dns", "--format", "hosts"]).fails(2);
    assert!(out.stderr.contains("--config"), "{}", out.stderr);
}

#[test]
fn authorisations_recorded_by_the_gateway_are_listed() {
    use fedgate_model::UserJid;
    let env = Env::new();
    // Nothing recorded: an empty listing.
    let out = env.run(&["--output", "json", "authorisations"]).ok().json();
    assert_eq!(out, serde_json::json!([]));
    // What the gateway records on a local user's outbound subscribe/subscribed.
    {
        let store =
            fedgate_store::open(&fedgate_store::StoreUrl::Sqlite(env.db())).expect("open store");
        let jid = |s: &str| UserJid::parse(s).unwrap();
        for (local, remote) in [
            ("alice@corp.example", "bob@partner.example"),
            ("alice@corp.example", "dave@partner2.example"),
            ("carol@corp.example", "bob@partner.example"),
        ] {
            assert!(
                store
                    .set_authorisation(&jid(local), &jid(remote), true)
                    .unwrap()
            );
        }
    }
    let all = env.run(&["--output", "json", "authorisations"]).ok().json();
    let pairs: Vec<(String, String)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert!(a["Since"].as_str().is_some_and(|s| s.ends_with('Z')), "{a}");
            (
                a["LocalUser"].as_str().unwrap().to_owned(),
                a["RemoteUser"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            ("alice@corp.example", "bob@partner.example"),
            ("alice@corp.example", "dave@partner2.example"),
            ("carol@corp.example", "bob@partner.example"),
        ]
        .map(|(l, r)| (l.to_owned(), r.to_owned()))
    );
    // One user's, with the US spelling as an alias, in the list format.
    let carol = env
        .run(&["authorizations", "--user", "Carol@corp.example"])
        .ok();
    assert!(
        carol.stdout.contains("LocalUser  : carol@corp.example")
            && carol.stdout.contains("RemoteUser : bob@partner.example")
            && !carol.stdout.contains("alice"),
        "{}",
        carol.stdout
    );
    // A bad user is a usage error naming the option.
    let bad = env.run(&["authorisations", "--user", "not a jid"]).fails(2);
    assert!(bad.stderr.contains("--user"), "{}", bad.stderr);
}

#[test]
fn node_forget_refuses_an_alive_node_and_removes_a_dead_one() {
    let env = Env::new();
    {
        let store =
            fedgate_store::open(&fedgate_store::StoreUrl::Sqlite(env.db())).expect("open store");
        for node in ["edge1", "edge2"] {
            store
                .heartbeat(
                    &fedgate_store::NodeHeartbeat {
                        node: node.into(),
                        starting: true,
                        version: "9.9.9".into(),
                        address: None,
                        inbound_streams: 0,
                        outbound_streams: 0,
                    },
                    fedgate_store::cluster::LEASE_TTL,
                )
                .unwrap();
        }
    }
    let alive = env.run(&["node", "forget", "edge1"]).fails(1);
    assert!(
        alive.stderr.contains("'edge1' is alive") && alive.stderr.contains("stop it first"),
        "{}",
        alive.stderr
    );
    let unknown = env.run(&["node", "forget", "edge9"]).fails(1);
    assert!(
        unknown.stderr.contains("no node named 'edge9'") && unknown.stderr.contains("edge1, edge2"),
        "{}",
        unknown.stderr
    );
    // edge1 died an hour ago (its last heartbeat aged in the file with the sqlite3 tool).
    let aged = std::process::Command::new("sqlite3")
        .arg(env.db())
        .arg("UPDATE nodes SET last_heartbeat = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 hour') WHERE name = 'edge1'")
        .status()
        .expect("sqlite3 runs (installed by .ci/install-deps.sh)");
    assert!(aged.success());
    let forgot = env.run(&["node", "forget", "edge1"]).ok();
    assert!(
        forgot.stdout.contains("forgot node 'edge1'"),
        "{}",
        forgot.stdout
    );
    let nodes = env
        .run(&["status", "--cluster", "--output", "json"])
        .ok()
        .json();
    let names: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["Node"].as_str())
        .collect();
    assert_eq!(names, ["edge2"], "{nodes}");
}

#[test]
fn status_cluster_lists_the_nodes_from_the_store_without_a_gateway() {
    let env = Env::new();
    let table = env.run(&["status", "--cluster"]).ok();
    assert!(
        table.stdout.starts_with("NODE") && table.stdout.contains("(no node has written"),
        "{}",
        table.stdout
    );
    assert_eq!(
        env.run(&["status", "--cluster", "--output", "json"])
            .ok()
            .json(),
        serde_json::json!([])
    );
    {
        let store =
            fedgate_store::open(&fedgate_store::StoreUrl::Sqlite(env.db())).expect("open store");
        for (node, inbound) in [("edge2", 1), ("edge1", 4)] {
            store
                .heartbeat(
                    &fedgate_store::NodeHeartbeat {
                        node: node.into(),
                        starting: true,
                        version: "9.9.9".into(),
                        address: Some("192.0.2.7:5269".into()),
                        inbound_streams: inbound,
                        outbound_streams: 2,
                    },
                    fedgate_store::cluster::LEASE_TTL,
                )
                .unwrap();
        }
    }
    let nodes = env
        .run(&["status", "--cluster", "--output", "json"])
        .ok()
        .json();
    let rows = nodes.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{nodes}");
    assert_eq!(rows[0]["Node"], "edge1");
    assert_eq!(rows[0]["Alive"], true);
    assert_eq!(rows[0]["InboundStreams"], 4);
    assert_eq!(rows[0]["OutboundStreams"], 2);
    assert_eq!(rows[0]["Leases"], 0);
    assert_eq!(rows[0]["Version"], "9.9.9");
    assert!(rows[0]["SecondsSinceHeartbeat"].is_number());
    assert!(rows[0]["StartedAt"].as_str().unwrap().ends_with('Z'));
    // The table: one row per node, alive, with its streams and leases.
    let table = env.run(&["status", "--cluster"]).ok().stdout;
    let words = |n: &str| -> Vec<String> {
        table
            .lines()
            .find(|l| l.starts_with(n))
            .unwrap_or_else(|| panic!("no {n} row:\n{table}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let edge1 = words("edge1");
    assert_eq!(edge1[1], "alive", "{table}");
    assert_eq!(
        edge1[edge1.len() - 5..],
        ["9.9.9", "192.0.2.7:5269", "4", "2", "0"]
    );
    assert_eq!(words("edge2")[1], "alive", "{table}");
    // --store names another store; a bad one is an error.
    let other = env.dir.path().join("other.db");
    let empty = env
        .run(&[
            "--store",
            &format!("sqlite:{}", other.display()),
            "status",
            "--cluster",
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(empty, serde_json::json!([]));
    env.run(&["--store", "mysql:x", "status", "--cluster"])
        .fails(1);
}

#[test]
fn status_of_a_running_gateway_as_table_and_json() {
    let env = Env::new();
    let port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (internal, external, metrics) = (port(), port(), port());
    let config = env.dir.path().join("fedgate.toml");
    std::fs::write(
        &config,
        format!(
            "store = \"sqlite:fedgate.db\"\nmetrics_listen = \"127.0.0.1:{metrics}\"\n[internal_listener]\nlisten = \"127.0.0.1:{internal}\"\n\
             [external_listener]\nlisten = \"127.0.0.1:{external}\"\n[[hosted_domain]]\ndomain = \"corp.example\"\ninternal_server = \"127.0.0.1:9\"\n\
             [node]\nname = \"cli-node\"\n"
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let mut gateway = env
        .cmd()
        .args(["serve", "--config", cfg])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut table = None;
    for _ in 0..100 {
        let out = env.run(&["status", "--config", cfg]);
        if out.code == 0 {
            table = Some(out.stdout);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let table = table.expect("fedgate status answers once the gateway runs");
    assert!(
        table.contains("PARTNER") && table.contains("no live streams"),
        "{table}"
    );
    let out = env
        .run(&["status", "--config", cfg, "--output", "json"])
        .ok();
    assert!(out.json()["streams"].is_array(), "{}", out.stdout);
    assert_eq!(out.json()["node"], "cli-node", "{}", out.stdout);
    // The pool, from the config's store: the running gateway is an alive node.
    let cluster = env
        .run(&["status", "--cluster", "--config", cfg, "--output", "json"])
        .ok()
        .json();
    assert_eq!(cluster[0]["Node"], "cli-node", "{cluster}");
    assert_eq!(cluster[0]["Alive"], true, "{cluster}");
    assert_eq!(
        cluster[0]["Address"],
        format!("127.0.0.1:{external}"),
        "{cluster}"
    );
    let pid = gateway.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = gateway.wait().unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM stops the gateway cleanly");
    let out = env.run(&["status", "--config", cfg]).fails(1);
    assert!(!out.stderr.is_empty());
}

/// `text` without terminal escape sequences (CSI `ESC [ ... final`, OSC `ESC ] ... BEL`, and
/// two-byte `ESC x`).
fn without_escapes(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                for c in chars.by_ref() {
                    if c == '\u{7}' {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn interactive_shell_on_a_terminal_continues_lines_and_keeps_history() {
    let env = Env::new();
    // `script` (util-linux) gives the shell a real pseudo-terminal, so line editing is on.
    let command = format!("{} shell", env!("CARGO_BIN_EXE_fedgate"));
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(env.dir.path())
        .env("HOME", env.dir.path())
        .env_remove("FEDGATE_STORE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux) is needed for this test: apt-get install util-linux");
    let mut stdin = child.stdin.take().unwrap();
    // What the terminal shows, read as it comes: each line is typed once the shell shows the
    // prompt it expects (the screen, escape sequences aside, ends with it), not after a pause.
    let screen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let reader = {
        let screen = screen.clone();
        let mut stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut stdout, &mut chunk) {
                if n == 0 {
                    break;
                }
                screen.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        })
    };
    let mut seen = 0;
    for (prompt, line) in [
        (
            "fedgate>",
            "New-CsXmppAllowedPartner -Identity \"contoso.com\" `",
        ),
        (">>", "  -PartnerType \"PublicVerified\""),
        ("fedgate>", "Get-CsXmppAllowedPartner -Nope"),
        ("fedgate>", "exit"),
    ] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let shown = screen.lock().unwrap().clone();
            let fresh = without_escapes(&String::from_utf8_lossy(&shown[seen..]));
            if fresh.trim_end().ends_with(prompt) {
                seen = shown.len();
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the shell did not show {prompt:?} before {line:?}: {}",
                String::from_utf8_lossy(&shown)
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        stdin.write_all(format!("{line}\r").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    reader.join().unwrap();
    let out = Output {
        stdout: screen.lock().unwrap().clone(),
        ..out
    };
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        screen.contains("fedgate>") && screen.contains(">>"),
        "a continuation prompt: {screen}"
    );
    assert!(
        screen.contains("A parameter cannot be found that matches parameter name 'Nope'"),
        "{screen}"
    );
    assert_eq!(
        env.partner("contoso.com")["PartnerType"],
        "PublicVerified",
        "the continued line ran as one command"
    );
    let history = std::fs::read_to_string(env.dir.path().join(".fedgate_history")).unwrap();
    assert!(
        history.contains("-PartnerType \"PublicVerified\""),
        "{history}"
    );
}

#[test]
fn config_check_validates_without_starting_and_names_file_key_and_reason() {
    let env = Env::new();
    // The example config runs as is, so it checks.
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fedgate.toml");
    let out = env
        .run(&["config", "check", example.to_str().unwrap()])
        .ok();
    assert!(out.stdout.contains("fedgate.toml: OK"), "{}", out.stdout);
    let good = "store = \"sqlite:checked.db\"\n[internal_listener]\nlisten = \"127.0.0.1:15270\"\n[external_listener]\nlisten = \"127.0.0.1:15269\"\n\
         [[hosted_domain]]\ndomain = \"corp.example\"\ninternal_server = \"127.0.0.1:5269\"\n";
    let file = env.dir.path().join("gw.toml");
    std::fs::write(&file, good).unwrap();
    let path = file.to_str().unwrap();
    let out = env.run(&["config", "check", path]).ok();
    assert_eq!(out.stdout.trim(), format!("{path}: OK"));
    // Checking starts nothing and writes nothing: no store, no generated certificate.
    let names: Vec<String> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["gw.toml"], "config check wrote files");
    // A value out of range: exit 1, the file, the key and the allowed range.
    std::fs::write(
        &file,
        format!("{good}[settings]\nkeep_alive_interval = 1\n"),
    )
    .unwrap();
    let out = env.run(&["config", "check", path]).fails(1);
    assert!(
        out.stderr.contains(path)
            && out.stderr.contains("settings.keep_alive_interval")
            && out.stderr.contains("10"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    // A hosted domain that is not a domain.
    std::fs::write(
        &file,
        good.replace("domain = \"corp.example\"", "domain = \"not a domain\""),
    )
    .unwrap();
    let out = env.run(&["config", "check", path]).fails(1);
    assert!(
        out.stderr.contains(path)
            && out.stderr.contains("hosted_domain")
            && out.stderr.contains("not a domain"),
        "{}",
        out.stderr
    );
    // Broken TOML, and a file that does not exist.
    std::fs::write(&file, format!("{good}\n[[[")).unwrap();
    let out = env.run(&["config", "check", path]).fails(1);
    assert!(out.stderr.contains(path), "{}", out.stderr);
    let missing = env.dir.path().join("missing.toml");
    let out = env
        .run(&["config", "check", missing.to_str().unwrap()])
        .fails(1);
    assert!(out.stderr.contains("missing.toml"), "{}", out.stderr);
}

/// A gateway configuration in the test's directory (loopback listeners nobody serves).
fn write_gateway_config(env: &Env) {
    let closed = |_: ()| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let text = format!(
        "store = \"sqlite:fedgate.db\"\n[internal_listener]\nlisten = \"{}\"\n[external_listener]\nlisten = \"{}\"\n\
         [[hosted_domain]]\ndomain = \"corp.example\"\ninternal_server = \"{}\"\n[tls]\nsystem_roots = false\n",
        closed(()),
        closed(()),
        closed(())
    );
    std::fs::write(env.dir.path().join("fedgate.toml"), text).unwrap();
}

/// A partner server that opens a stream offering dialback only (no TLS), for every connection.
fn dialback_only_server() -> std::net::SocketAddr {
    use std::io::Read;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut tcp in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !String::from_utf8_lossy(&seen).contains("<stream:stream") {
                    match tcp.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tcp.write_all(
                    b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
                      xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
                      from='partner.example' to='corp.example' id='s1' version='1.0'>\
                      <stream:features><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>",
                );
                while matches!(tcp.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

#[test]
fn test_partner_json_shape_and_exit_codes() {
    let env = Env::new();
    write_gateway_config(&env);
    let server = dialback_only_server();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = ["--config", "fedgate.toml"];
    let with =
        |args: &[&str]| -> Vec<String> { cfg.iter().chain(args).map(|s| s.to_string()).collect() };
    let run = |args: &[&str]| {
        let argv = with(args);
        env.run(&argv.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let proxy = server.to_string();
    run(&[
        "partner",
        "add",
        "partner.example",
        "--tls-negotiation",
        "NotSupported",
        "--sasl-negotiation",
        "NotSupported",
        "--proxy-fqdn",
        &proxy,
    ])
    .ok();
    // Reachable, dialback only, no gateway running here to answer the callback: Warning, 0.
    let r = run(&[
        "--output",
        "json",
        "Test-CsXmppAllowedPartner",
        "-Identity",
        "partner.example",
    ])
    .ok();
    let v = r.json();
    for key in [
        "Identity",
        "Steps",
        "Certificate",
        "Methods",
        "Verdict",
        "Problems",
    ] {
        assert!(v.get(key).is_some(), "{key} missing: {v:#}");
    }
    assert_eq!(v["Identity"], "partner.example");
    assert_eq!(v["Verdict"], "Warning", "{v:#}");
    assert_eq!(v["Methods"]["Outbound"], "TcpDialback", "{v:#}");
    let steps = v["Steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["Step"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "Resolve",
            "Connect",
            "Stream",
            "STARTTLS",
            "SASL EXTERNAL",
            "Dialback"
        ]
    );
    for s in steps {
        assert!(s["Ms"].is_u64() && s["Detail"].is_string(), "{s}");
    }
    let dialback = &steps[5];
    assert!(dialback["Ok"].is_null(), "{dialback}");
    assert!(
        dialback["Detail"]
            .as_str()
            .unwrap()
            .starts_with("not tested: "),
        "{dialback}"
    );
    assert!(
        v["Problems"][0]
            .as_str()
            .unwrap()
            .contains("the dialback round trip was not tested"),
        "{v:#}"
    );
    // The plain form and the list output; -From picks the hosted domain.
    let r = run(&[
        "partner",
        "test",
        "partner.example",
        "--from",
        "corp.example",
    ])
    .ok();
    assert!(r.stdout.contains("Verdict  : Warning"), "{}", r.stdout);
    assert!(r.stdout.contains("Outbound : TcpDialback"), "{}", r.stdout);
    // Unreachable: Fail, exit 1, the connect step with its error.
    let unreachable = closed.to_string();
    run(&[
        "Set-CsXmppAllowedPartner",
        "partner.example",
        "-ProxyFqdn",
        &unreachable,
    ])
    .ok();
    let r = run(&["--output", "json", "partner", "test", "partner.example"]).fails(1);
    let v = r.json();
    assert_eq!(v["Verdict"], "Fail");
    assert_eq!(v["Steps"][1]["Step"], "Connect");
    assert_eq!(v["Steps"][1]["Ok"], false);
    assert!(
        v["Steps"][1]["Detail"]
            .as_str()
            .unwrap()
            .starts_with(&unreachable),
        "{v:#}"
    );
    // Usage errors name the parameter: exit 2; an unlisted Identity: exit 1.
    let r = run(&[
        "Test-CsXmppAllowedPartner",
        "partner.example",
        "-From",
        "nope.example",
    ])
    .fails(2);
    assert!(
        r.stderr
            .contains("Cannot bind parameter 'From'. \"nope.example\" is not a hosted domain of this gateway. Allowed values: corp.example."),
        "{}",
        r.stderr
    );
    let r = run(&[
        "Test-CsXmppAllowedPartner",
        "-Identity",
        "a.example",
        "-Domain",
        "b.example",
    ])
    .fails(2);
    assert!(r.stderr.contains("'Domain'"), "{}", r.stderr);
    let r = run(&["Test-CsXmppAllowedPartner", "-Identity", "other.example"]).fails(1);
    assert!(
        r.stderr
            .contains("Cannot find a partner with Identity 'other.example'"),
        "{}",
        r.stderr
    );
    // Without the gateway's configuration: a usage error that says what is needed.
    let r = env
        .run(&["Test-CsXmppAllowedPartner", "partner.example"])
        .fails(2);
    assert!(r.stderr.contains("--config"), "{}", r.stderr);
}

#[test]
fn test_gateway_without_a_running_gateway_says_so_json_shape_and_exit_codes() {
    let env = Env::new();
    write_gateway_config(&env);
    // DNS to a closed port: quick failures, no records (nothing leaves the host).
    let path = env.dir.path().join("fedgate.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("[dns]\nservers = [\"127.0.0.1:9\"]\n");
    std::fs::write(&path, text).unwrap();
    let cfg = ["--config", "fedgate.toml"];
    let run = |args: &[&str]| {
        let argv: Vec<&str> = cfg.iter().chain(args).copied().collect();
        env.run(&argv)
    };
    // No gateway listens here: said on stderr; the listener step fails; Fail, exit 1.
    let r = run(&["--output", "json", "Test-CsXmppGatewayConfiguration"]).fails(1);
    assert!(
        r.stderr
            .contains("no gateway answers on its external listener")
            && r.stderr.contains("start fedgate serve"),
        "{}",
        r.stderr
    );
    let v = r.json();
    for key in ["Verdict", "Listeners", "Domains"] {
        assert!(v.get(key).is_some(), "{key} missing: {v:#}");
    }
    assert_eq!(v["Verdict"], "Fail", "{v:#}");
    let d = &v["Domains"][0];
    for key in [
        "Domain",
        "Steps",
        "Certificate",
        "TrustAnchor",
        "Verdict",
        "Problems",
    ] {
        assert!(d.get(key).is_some(), "{key} missing: {d:#}");
    }
    assert_eq!(d["Domain"], "corp.example");
    let names: Vec<&str> = d["Steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Step"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Resolve", "Points here", "Connect"], "{d:#}");
    assert_eq!(d["Steps"][2]["Ok"], false);
    let problems: Vec<&str> = d["Problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        problems[0].starts_with("Partners cannot find this gateway for 'corp.example'")
            || problems[0].starts_with("DNS did not answer in time for 'corp.example'"),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("A partner cannot open a stream to 'corp.example'")),
        "{problems:?}"
    );
    // The plain form with a domain, list output.
    let r = run(&["gateway", "test", "CORP.example"]).fails(1);
    assert!(r.stdout.contains("Domain"), "{}", r.stdout);
    assert!(r.stdout.contains("corp.example"), "{}", r.stdout);
    assert!(r.stdout.contains("Verdict   : Fail"), "{}", r.stdout);
    // Not a hosted domain: a usage error naming the parameter, exit 2.
    let r = run(&["Test-CsXmppGatewayConfiguration", "-Domain", "nope.example"]).fails(2);
    assert!(
        r.stderr.contains(
            "Cannot bind parameter 'Domain'. \"nope.example\" is not a hosted domain of this gateway. Allowed values: corp.example."
        ),
        "{}",
        r.stderr
    );
    // Without the gateway's configuration: a usage error that says what is needed.
    let r = env.run(&["gateway", "test"]).fails(2);
    assert!(r.stderr.contains("--config"), "{}", r.stderr);
}
