//! `fedgate import` / `Import-CsXmppAllowedPartner -Path` and `fedgate export`: the real binary
//! against a real SQLite file.

use serde_json::Value;

mod common;
use common::Env;

const CSV: &str = "\"Identity\",\"AdditionalDomains\",\"Description\",\"PartnerType\",\"TlsNegotiation\",\"SupportDialbackNegotiation\",\"ConnectionLimit\",\"Notes\"\r\n\
\"contoso.com\",\"contoso.net;*.contoso.org\",\"Contact: \"\"Ops\"\", 24/7\",\"Federated\",\"Required\",\"False\",\"25\",\"x\"\r\n\
\"fabrikam.com\",\"\",\"\",\"PublicVerified\",\"Optional\",\"True\",\"\",\"y\"\r\n";

#[test]
fn import_what_if_then_import_then_export_import_round_trip() {
    let env = Env::new();
    env.write("partners.csv", CSV.as_bytes());
    let run = env.run(&["import", "partners.csv", "--what-if"]).ok();
    assert!(
        run.stdout
            .contains("What if: line 2: create partner 'contoso.com'"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "What if: partners.csv (CSV): 2 created, 0 changed, 0 left alone; nothing written."
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("WARNING: The field 'Notes' is not a partner field of fedgate; it was not imported (line 2, line 3)"),
        "{}",
        run.stderr
    );
    assert_eq!(
        env.partners(),
        serde_json::json!([]),
        "what-if writes nothing"
    );

    let run = env
        .run(&["--output", "json", "import", "partners.csv"])
        .ok();
    let summary = run.json();
    assert_eq!(summary["Committed"], true);
    assert_eq!(summary["Created"], 2);
    assert_eq!(summary["Items"][0]["Location"], "line 2");
    let partners = env.partners();
    assert_eq!(partners[0]["Identity"], "contoso.com");
    assert_eq!(partners[0]["ConnectionLimit"], 25);
    assert_eq!(partners[0]["Description"], "Contact: \"Ops\", 24/7");
    assert_eq!(partners[1]["TlsNegotiation"], "Optional");
    let audit: Value = env.run(&["--output", "json", "audit"]).ok().json();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["Command"] == "Import-CsXmppAllowedPartner -Path 'partners.csv'"),
        "{audit}"
    );

    // A change shows field by field.
    env.write(
        "change.json",
        br#"{"Identity": "fabrikam.com", "PartnerType": "Federated"}"#,
    );
    let run = env.run(&["import", "change.json", "--what-if"]).ok();
    assert!(
        run.stdout.contains(
            "What if: item 1: change partner 'fabrikam.com': PartnerType: \"PublicVerified\" -> \"Federated\""
        ),
        "{}",
        run.stdout
    );

    for format in ["clixml", "csv", "json"] {
        let file = format!("export.{format}");
        env.run(&["export", "--format", format, "--output-file", &file])
            .ok();
        let stdout = env.run(&["export", "--format", format]).ok().stdout;
        let written = std::fs::read_to_string(env.dir.path().join(&file)).unwrap();
        assert_eq!(stdout, written, "{format}: stdout and --output-file agree");
        let before = env.audit_len();
        let run = env.run(&["import", &file]).ok();
        assert!(
            run.stdout.contains("0 created, 0 changed, 2 left alone."),
            "{format}: {}",
            run.stdout
        );
        assert_eq!(
            env.audit_len(),
            before,
            "{format}: an import of an export changes nothing"
        );
        assert_eq!(env.partners(), partners, "{format}");
    }
    let run = env.run(&["export", "--format", "yaml"]).fails(2);
    assert!(run.stderr.contains("clixml, csv, json"), "{}", run.stderr);
}

#[test]
fn an_invalid_record_is_named_and_nothing_is_written() {
    let env = Env::new();
    let bad = CSV.replace("\"Optional\"", "\"Sometimes\"");
    env.write("bad.csv", bad.as_bytes());
    let run = env.run(&["import", "bad.csv"]).fails(1);
    assert!(
        run.stderr
            .contains("bad.csv, line 3 (fabrikam.com): Cannot bind parameter 'TlsNegotiation'")
            && run
                .stderr
                .contains("Allowed values: Required, Optional, NotSupported"),
        "{}",
        run.stderr
    );
    assert_eq!(env.partners(), serde_json::json!([]));
    assert_eq!(env.audit_len(), 0);
    let run = env.run(&["import", "missing.xml"]).fails(1);
    assert!(
        run.stderr.contains("Cannot read 'missing.xml'"),
        "{}",
        run.stderr
    );
    env.write("entity.xml", br#"<!DOCTYPE Objs [<!ENTITY e "x">]><Objs/>"#);
    let run = env.run(&["import", "entity.xml"]).fails(1);
    assert!(run.stderr.contains("DTD"), "{}", run.stderr);
}

#[test]
fn the_cmdlet_in_a_script_and_in_the_shell() {
    let env = Env::new();
    env.write("partners.csv", CSV.as_bytes());
    let run = env
        .run_stdin(
            &["shell"],
            "Import-CsXmppAllowedPartner -Path partners.csv -WhatIf\nImport-CsXmppAllowedPartner partners.csv\n",
        )
        .ok();
    assert!(
        run.stdout.contains("nothing written.") && run.stdout.contains("2 created"),
        "{}",
        run.stdout
    );
    assert_eq!(env.partners().as_array().unwrap().len(), 2);
    // UTF-16 with a byte order mark, as Windows PowerShell's Export-Clixml writes it.
    let xml = env.run(&["export", "--format", "clixml"]).ok().stdout;
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(xml.encode_utf16().flat_map(|u| u.to_le_bytes()));
    env.write("partners.xml", &utf16);
    env.write(
        "import.ps1",
        b"# runbook\nImport-CsXmppAllowedPartner -Path partners.xml\n",
    );
    let run = env.run(&["run", "import.ps1"]).ok();
    assert!(
        run.stdout
            .contains("partners.xml (CliXML): 0 created, 0 changed, 2 left alone."),
        "{}",
        run.stdout
    );
}
