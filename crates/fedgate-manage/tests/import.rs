//! `Manager::import` and `Manager::export_partners` against a real SQLite store: the three
//! formats, partners, policies and gateway settings, invalid records (record and parameter named,
//! nothing written), what-if output, unknown fields, and export → import = identity.

use fedgate_manage::formats::Format;
use fedgate_manage::import::{Action, ImportError, RecordKind};
use fedgate_manage::{Manager, Mode};
use fedgate_model::{Domain, PartnerType, PolicyScope, TlsNegotiation};
use fedgate_store::{AuditQuery, SqliteStore, Store};

struct Env {
    _dir: tempfile::TempDir,
    store: SqliteStore,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("fedgate.db")).unwrap();
    Env { _dir: dir, store }
}

impl Env {
    fn manager(&self) -> Manager<'_> {
        Manager::new(&self.store, "test:alice")
    }
    fn audit_len(&self) -> usize {
        self.store
            .audit_log(&AuditQuery {
                limit: Some(100_000),
                ..AuditQuery::default()
            })
            .unwrap()
            .len()
    }
    fn partner(&self, d: &str) -> Option<fedgate_model::XmppAllowedPartner> {
        self.store
            .partner(&Domain::parse(d).unwrap())
            .unwrap()
            .map(|p| p.value)
    }
}

/// What `Get-CsXmppAllowedPartner | Export-Clixml`, `Get-CsExternalAccessPolicy | Export-Clixml`
/// and `Get-CsXmppGatewayConfiguration | Export-Clixml` give, concatenated into one document:
/// TN declared once and reused by TNRef, enums with ToString and I32, lists, Nil, extra SfB
/// properties that fedgate does not know.
const SFB_CLIXML: &str = r#"<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">
  <Obj RefId="0">
    <TN RefId="0">
      <T>Microsoft.Rtc.Management.WritableConfig.Settings.XmppFederation.XmppAllowedPartner#Decorated</T>
      <T>Microsoft.Rtc.Management.WritableConfig.Settings.XmppFederation.XmppAllowedPartner</T>
      <T>System.Object</T>
    </TN>
    <ToString>contoso.com</ToString>
    <Props>
      <S N="Identity">contoso.com</S>
      <S N="Domain">contoso.com</S>
      <Obj N="AdditionalDomains" RefId="1">
        <TN RefId="1"><T>System.Collections.Generic.List`1[[System.String]]</T><T>System.Object</T></TN>
        <LST><S>contoso.net</S><S>*.contoso.org</S></LST>
      </Obj>
      <S N="Description">Contact: ops@contoso.com</S>
      <Obj N="PartnerType" RefId="2">
        <TN RefId="2"><T>Microsoft.Rtc.Management.WritableConfig.Settings.XmppFederation.PartnerType</T><T>System.Enum</T><T>System.ValueType</T><T>System.Object</T></TN>
        <ToString>Federated</ToString><I32>0</I32>
      </Obj>
      <Obj N="TlsNegotiation" RefId="3">
        <TN RefId="3"><T>Microsoft.Rtc.Management.WritableConfig.Settings.XmppFederation.TlsNegotiation</T><T>System.Enum</T><T>System.ValueType</T><T>System.Object</T></TN>
        <ToString>Required</ToString><I32>0</I32>
      </Obj>
      <B N="SupportDialbackNegotiation">false</B>
      <U32 N="ConnectionLimit">30</U32>
      <Nil N="ProxyFqdn" />
      <S N="Element">&lt;XmppAllowedPartner Domain="contoso.com"/&gt;</S>
    </Props>
  </Obj>
  <Obj RefId="4">
    <TNRef RefId="0" />
    <ToString>fabrikam.com</ToString>
    <Props>
      <S N="Identity">fabrikam.com</S>
      <Obj N="AdditionalDomains" RefId="5"><TNRef RefId="1" /><LST /></Obj>
      <Obj N="PartnerType" RefId="6"><TNRef RefId="2" /><ToString>PublicVerified</ToString><I32>1</I32></Obj>
      <Obj N="TlsNegotiation" RefId="7"><TNRef RefId="3" /><ToString>Optional</ToString><I32>1</I32></Obj>
      <Nil N="ConnectionLimit" />
      <S N="ProxyFqdn">xmpp-proxy.fabrikam.com:5270</S>
      <S N="Element">&lt;XmppAllowedPartner Domain="fabrikam.com"/&gt;</S>
    </Props>
  </Obj>
  <Obj RefId="8">
    <TN RefId="4">
      <T>Microsoft.Rtc.Management.WritableConfig.Policy.ExternalAccess.ExternalAccessPolicy</T>
      <T>System.Object</T>
    </TN>
    <ToString>Tag:AllowXmpp</ToString>
    <Props>
      <S N="Identity">Tag:AllowXmpp</S>
      <S N="Description">XMPP users</S>
      <B N="EnableFederationAccess">true</B>
      <B N="EnableXmppAccess">true</B>
      <B N="EnableAcsFederationAccess">false</B>
    </Props>
  </Obj>
  <Obj RefId="9">
    <TNRef RefId="4" />
    <ToString>Global</ToString>
    <Props>
      <S N="Identity">Global</S>
      <B N="EnableXmppAccess">false</B>
      <B N="EnableAcsFederationAccess">false</B>
    </Props>
  </Obj>
  <Obj RefId="10">
    <TN RefId="5"><T>Fedgate.XmppGatewayConfiguration</T><T>System.Object</T></TN>
    <Props>
      <S N="Identity">Global</S>
      <U32 N="KeepAliveInterval">120</U32>
      <U32 N="PartnerConnectionLimit">40</U32>
      <S N="DialbackPassphrase">********</S>
    </Props>
  </Obj>
</Objs>
"#;

#[test]
fn clixml_import_of_partners_policies_and_gateway_settings() {
    let env = env();
    let m = env.manager();
    let report = m
        .import("sfb.xml", SFB_CLIXML.as_bytes(), Mode::Commit)
        .unwrap();
    assert_eq!(report.format, Format::CliXml);
    assert!(report.committed);
    // Global exists implicitly (defaults): left alone; everything else new or changed.
    assert_eq!(
        (report.created, report.changed, report.unchanged),
        (3, 1, 1),
        "{:#?}",
        report.items
    );
    let kinds: Vec<(RecordKind, Action)> =
        report.items.iter().map(|i| (i.kind, i.action)).collect();
    assert_eq!(
        kinds,
        [
            (RecordKind::Partner, Action::Create),
            (RecordKind::Partner, Action::Create),
            (RecordKind::Policy, Action::Create),
            (RecordKind::Policy, Action::Unchanged),
            (RecordKind::GatewayConfiguration, Action::Change),
        ]
    );
    let contoso = env.partner("contoso.com").unwrap();
    assert_eq!(contoso.partner_type, PartnerType::Federated);
    assert_eq!(contoso.additional_domains.len(), 2);
    assert_eq!(contoso.connection_limit, Some(30));
    assert!(!contoso.support_dialback_negotiation);
    assert_eq!(contoso.description, "Contact: ops@contoso.com");
    let fabrikam = env.partner("fabrikam.com").unwrap();
    assert_eq!(fabrikam.tls_negotiation, TlsNegotiation::Optional);
    assert_eq!(
        fabrikam.proxy_fqdn.unwrap().to_string(),
        "xmpp-proxy.fabrikam.com:5270"
    );
    let tag = env
        .store
        .policy(&PolicyScope::parse("tag:AllowXmpp").unwrap())
        .unwrap()
        .unwrap()
        .value;
    assert!(tag.enable_xmpp_access && tag.enable_federation_access);
    let config = env.store.gateway_configuration().unwrap();
    assert_eq!(
        (config.keep_alive_interval, config.partner_connection_limit),
        (120, 40)
    );
    // Unknown fields are reported with their records, not silently dropped; so is the masked
    // secret.
    let warnings = report.warnings.join("\n");
    assert!(
        warnings.contains("'Element' is not a partner field")
            && warnings.contains("object 1, object 2"),
        "{warnings}"
    );
    assert!(
        warnings.contains("'EnableAcsFederationAccess' is not a policy field")
            && warnings.contains("object 3, object 4"),
        "{warnings}"
    );
    assert!(
        warnings.contains("DialbackPassphrase is masked"),
        "{warnings}"
    );
    // One audit entry per written record, naming the file.
    let log = env.store.audit_log(&AuditQuery::default()).unwrap();
    let imported: Vec<&str> = log
        .iter()
        .filter(|e| e.command == "Import-CsXmppAllowedPartner -Path 'sfb.xml'")
        .map(|e| e.target.as_str())
        .collect();
    assert_eq!(imported.len(), 4, "{imported:?}");
    assert!(log.iter().all(|e| e.actor == "test:alice"));
}

#[test]
fn utf16_clixml_as_windows_powershell_writes_it() {
    let env = env();
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(SFB_CLIXML.encode_utf16().flat_map(|u| u.to_le_bytes()));
    let report = env
        .manager()
        .import("sfb.xml", &bytes, Mode::Commit)
        .unwrap();
    assert_eq!(report.created, 3);
    assert!(env.partner("contoso.com").is_some());
}

#[test]
fn what_if_says_what_would_be_created_changed_or_left_alone_and_writes_nothing() {
    let env = env();
    let m = env.manager();
    let csv = "\"Identity\",\"PartnerType\",\"Description\"\r\n\"contoso.com\",\"PublicVerified\",\"old\"\r\n\"fabrikam.com\",\"Federated\",\"\"\r\n";
    m.import("first.csv", csv.as_bytes(), Mode::Commit).unwrap();
    let audit = env.audit_len();
    let next = "\"Identity\",\"PartnerType\",\"Description\",\"AdditionalDomains\"\r\n\
\"contoso.com\",\"Federated\",\"new\",\"contoso.net;contoso.org\"\r\n\
\"fabrikam.com\",\"Federated\",\"\",\"\"\r\n\
\"northwind.com\",\"PublicUnverified\",\"\",\"\"\r\n";
    let report = m.import("next.csv", next.as_bytes(), Mode::WhatIf).unwrap();
    assert!(!report.committed);
    let lines = report.lines();
    assert_eq!(
        lines[0],
        "What if: line 2: change partner 'contoso.com': AdditionalDomains: {} -> {contoso.net, contoso.org}; Description: \"old\" -> \"new\"; PartnerType: \"PublicVerified\" -> \"Federated\"",
        "{lines:#?}"
    );
    assert_eq!(
        lines[1],
        "What if: line 3: leave partner 'fabrikam.com' alone (no change)"
    );
    assert_eq!(lines[2], "What if: line 4: create partner 'northwind.com'");
    assert_eq!(
        lines[3],
        "What if: next.csv (CSV): 1 created, 1 changed, 1 left alone; nothing written."
    );
    let change = &report.items[0].changes;
    assert_eq!(
        change.iter().map(|c| c.field.as_str()).collect::<Vec<_>>(),
        ["AdditionalDomains", "Description", "PartnerType"]
    );
    assert_eq!(env.audit_len(), audit, "what-if writes nothing");
    assert!(env.partner("northwind.com").is_none());
    assert_eq!(env.partner("contoso.com").unwrap().description, "old");
}

#[test]
fn an_invalid_record_names_the_record_and_parameter_and_nothing_is_written() {
    let env = env();
    let m = env.manager();
    // CSV: line 3 has a TlsNegotiation that does not exist; line 2 alone would be fine.
    let csv = "\"Identity\",\"TlsNegotiation\"\n\"contoso.com\",\"Optional\"\n\"fabrikam.com\",\"Sometimes\"\n";
    let e = m.import("p.csv", csv.as_bytes(), Mode::Commit).unwrap_err();
    let text = e.to_string();
    assert!(text.starts_with("p.csv, line 3 (fabrikam.com): "), "{text}");
    assert_eq!(e.parameter(), Some("TlsNegotiation"));
    assert!(text.contains("Required, Optional, NotSupported"), "{text}");
    assert!(e.is_invalid_input());
    assert!(env.partner("contoso.com").is_none(), "all or nothing");
    assert_eq!(env.audit_len(), 0);

    // CliXML: object 2's combination leaves no way to authenticate.
    let xml = SFB_CLIXML.replace(
        "<S N=\"ProxyFqdn\">xmpp-proxy.fabrikam.com:5270</S>",
        "<B N=\"SupportDialbackNegotiation\">false</B><Obj N=\"SaslNegotiation\" RefId=\"99\"><TNRef RefId=\"3\" /><ToString>NotSupported</ToString><I32>2</I32></Obj><Obj N=\"TlsNegotiation\" RefId=\"98\"><TNRef RefId=\"3\" /><ToString>NotSupported</ToString><I32>2</I32></Obj>",
    );
    let xml = xml.replace(
        "<Obj N=\"TlsNegotiation\" RefId=\"7\"><TNRef RefId=\"3\" /><ToString>Optional</ToString><I32>1</I32></Obj>",
        "",
    );
    let e = m
        .import("sfb.xml", xml.as_bytes(), Mode::Commit)
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("sfb.xml, object 2 (fabrikam.com): "),
        "{text}"
    );
    assert_eq!(e.parameter(), Some("SupportDialbackNegotiation"));
    assert!(env.partner("contoso.com").is_none());

    // JSON: an enum written as a number is refused with how to export names.
    let json = r#"[{"Identity": "contoso.com"}, {"Identity": "fabrikam.com", "PartnerType": 2}]"#;
    let e = m
        .import("p.json", json.as_bytes(), Mode::Commit)
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ImportError::Format { .. }));
    assert!(
        text.contains("item 2")
            && text.contains("'PartnerType'")
            && text.contains("-EnumsAsStrings"),
        "{text}"
    );
    // A bad policy Identity, a bad gateway value (JSON).
    let json = r#"[{"Identity": "Global", "EnableXmppAccess": true}, {"Identity": "Global", "KeepAliveInterval": 5}]"#;
    let e = m
        .import("g.json", json.as_bytes(), Mode::Commit)
        .unwrap_err();
    assert!(e.to_string().contains("item 2"), "{e}");
    assert_eq!(e.parameter(), Some("KeepAliveInterval"));
    // Two partners claiming one domain in the same file.
    let csv = "Identity,AdditionalDomains\na.com,x.com\nb.com,x.com\n";
    let e = m
        .import("dup.csv", csv.as_bytes(), Mode::Commit)
        .unwrap_err();
    assert!(
        e.to_string().contains("line 3") && e.to_string().contains("line 2"),
        "{e}"
    );
    // The same partner twice.
    let csv = "Identity\na.com\nA.com\n";
    let e = m
        .import("dup.csv", csv.as_bytes(), Mode::Commit)
        .unwrap_err();
    assert!(
        e.to_string().contains("already in this file at line 2"),
        "{e}"
    );
    // A record without an Identity.
    let e = m
        .import("n.json", br#"{"PartnerType": "Federated"}"#, Mode::Commit)
        .unwrap_err();
    assert_eq!(e.parameter(), Some("Identity"));
    assert_eq!(env.audit_len(), 0);
    assert!(env.store.partners(None).unwrap().is_empty());
}

#[test]
fn export_then_import_is_the_identity_in_every_format() {
    let env = env();
    let m = env.manager();
    m.import("sfb.xml", SFB_CLIXML.as_bytes(), Mode::Commit)
        .unwrap();
    // A description that needs escaping in every format.
    let csv = "Identity,Description,AdditionalDomains\nnorthwind.com,\"Tom & \"\"Jerry\"\", <ops>; _x0041_ \u{263A}\",\"a.northwind.com;*.b.northwind.com\"\n";
    m.import("n.csv", csv.as_bytes(), Mode::Commit).unwrap();
    let partners = env.store.partners(None).unwrap();
    assert_eq!(partners.len(), 3);
    for format in [Format::CliXml, Format::Csv, Format::Json] {
        let exported = m.export_partners(format).unwrap();
        let audit = env.audit_len();
        let report = m
            .import("export", exported.as_bytes(), Mode::Commit)
            .unwrap_or_else(|e| panic!("{format}: {e}\n{exported}"));
        assert_eq!(report.format, format);
        assert_eq!(
            (report.created, report.changed, report.unchanged),
            (0, 0, 3),
            "{format}: {:#?}\n{exported}",
            report.items
        );
        assert_eq!(env.audit_len(), audit, "{format}: nothing written");
        assert_eq!(env.store.partners(None).unwrap(), partners);
        // Into an empty store, the export recreates the same partners.
        let other = self::env();
        other
            .manager()
            .import("export", exported.as_bytes(), Mode::Commit)
            .unwrap();
        let copied: Vec<_> = other
            .store
            .partners(None)
            .unwrap()
            .into_iter()
            .map(|p| p.value)
            .collect();
        let original: Vec<_> = partners.iter().map(|p| p.value.clone()).collect();
        assert_eq!(copied, original, "{format}");
    }
    // A single partner is one JSON object, as ConvertTo-Json writes it.
    let one = self::env();
    one.manager()
        .import("one.csv", b"Identity\nsolo.com\n", Mode::Commit)
        .unwrap();
    let json = one.manager().export_partners(Format::Json).unwrap();
    assert!(json.starts_with('{'), "{json}");
}

#[test]
fn export_formats_look_like_the_sfb_shell_output() {
    let env = env();
    let m = env.manager();
    m.import("sfb.xml", SFB_CLIXML.as_bytes(), Mode::Commit)
        .unwrap();
    let xml = m.export_partners(Format::CliXml).unwrap();
    assert!(xml.starts_with(
        "<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/powershell/2004/04\">"
    ));
    assert_eq!(xml.matches("<TN RefId=\"0\">").count(), 1);
    assert!(
        xml.contains("<TNRef RefId=\"0\" />"),
        "the second partner reuses the type names"
    );
    assert!(xml.contains("<ToString>Federated</ToString>"));
    assert!(xml.contains("<Nil N=\"ConnectionLimit\" />"));
    let csv = m.export_partners(Format::Csv).unwrap();
    assert!(
        csv.starts_with(
            "\"Identity\",\"Domain\",\"AdditionalDomains\",\"Description\",\"PartnerType\""
        ),
        "{csv}"
    );
    assert!(csv.contains("\"contoso.net;*.contoso.org\""), "{csv}");
    assert!(csv.contains("\r\n"));
    let json = m.export_partners(Format::Json).unwrap();
    assert!(json.starts_with('['), "{json}");
    assert!(json.contains("\"PartnerType\": \"Federated\""), "{json}");
}

#[test]
fn progress_is_reported_while_records_are_checked() {
    let env = env();
    let mut csv = String::from("Identity\n");
    for i in 0..1200 {
        csv.push_str(&format!("p{i}.example.com\n"));
    }
    let mut calls = Vec::new();
    let report = env
        .manager()
        .import_with_progress("many.csv", csv.as_bytes(), Mode::Commit, &mut |d, t| {
            calls.push((d, t))
        })
        .unwrap();
    assert_eq!(report.created, 1200);
    assert_eq!(calls, [(0, 1200), (500, 1200), (1000, 1200), (1200, 1200)]);
    assert_eq!(env.store.partners(None).unwrap().len(), 1200);
    assert_eq!(report.items[1199].location, "line 1201");
}

#[test]
fn policies_from_csv_and_gateway_settings_from_json() {
    let env = env();
    let m = env.manager();
    let csv = "\"Identity\",\"EnableXmppAccess\",\"EnableFederationAccess\",\"Description\"\r\n\
\"Global\",\"True\",\"False\",\"\"\r\n\
\"site:Redmond\",\"False\",\"True\",\"HQ\"\r\n";
    let report = m
        .import("policies.csv", csv.as_bytes(), Mode::Commit)
        .unwrap();
    assert_eq!(
        report
            .items
            .iter()
            .map(|i| (i.kind, i.action, i.identity.as_str()))
            .collect::<Vec<_>>(),
        [
            (RecordKind::Policy, Action::Change, "Global"),
            (RecordKind::Policy, Action::Create, "Site:Redmond"),
        ]
    );
    assert!(
        env.store
            .policy(&PolicyScope::Global)
            .unwrap()
            .unwrap()
            .value
            .enable_xmpp_access
    );
    let json = br#"{"Identity": "Global", "ConnectionLimit": 500, "StreamInactivityTimeout": 900, "EnableLoggingAllMessageBodies": false, "DialbackPassphrase": null}"#;
    let report = m.import("gw.json", json, Mode::WhatIf).unwrap();
    assert_eq!(report.items[0].kind, RecordKind::GatewayConfiguration);
    assert_eq!(
        report.items[0]
            .changes
            .iter()
            .map(|c| c.field.as_str())
            .collect::<Vec<_>>(),
        ["ConnectionLimit", "StreamInactivityTimeout"]
    );
    assert_eq!(
        env.store.gateway_configuration().unwrap().connection_limit,
        1000
    );
    m.import("gw.json", json, Mode::Commit).unwrap();
    let config = env.store.gateway_configuration().unwrap();
    assert_eq!(
        (config.connection_limit, config.stream_inactivity_timeout),
        (500, 900)
    );
    // A real passphrase in the file is taken (and never shown).
    let json = br#"{"Identity": "Global", "DialbackPassphrase": "a-very-long-shared-secret"}"#;
    let report = m.import("gw.json", json, Mode::Commit).unwrap();
    let change = &report.items[0].changes;
    assert_eq!(change.len(), 1, "{change:?}");
    assert_eq!(change[0].field, "DialbackPassphrase");
    assert!(
        !serde_json::to_string(&report)
            .unwrap()
            .contains("a-very-long")
    );
    assert_eq!(
        env.store
            .gateway_configuration()
            .unwrap()
            .dialback_passphrase
            .unwrap()
            .expose(),
        "a-very-long-shared-secret"
    );
}
