//! `[internal_dns]`: the gateway rewrites the internal side's DNS file when the partner list
//! changes and runs the reload command; a failing reload is reported in /status and /metrics.

mod common;

use common::*;
use fedgate_model::{Domain, SaslNegotiation, TlsNegotiation};

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test]
async fn the_file_follows_the_partner_list_and_each_rewrite_is_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("partners.hosts");
    let reloads = dir.path().join("reloads");
    // The reload command records the file as it was when it ran.
    let extra = format!(
        "[internal_dns]\nfile = \"partners.hosts\"\nformat = \"hosts\"\naddress = \"192.0.2.10:5269\"\n\
         reload_command = [\"sh\", \"-c\", \"cat '{}' >> '{}'; echo --- >> '{}'\"]\n",
        file.display(),
        reloads.display(),
        reloads.display()
    );
    let (gw, _stanzas) = start(dir.path(), &extra).await;
    let store = open_store(dir.path());
    wait_until("the first file is written and reloaded", || {
        read(&reloads).contains("---")
    })
    .await;
    assert!(!read(&file).contains("192.0.2.10 "), "no partner yet");

    add_partner(
        store.as_ref(),
        "contoso.example",
        TlsNegotiation::Required,
        SaslNegotiation::Required,
        true,
        None,
    );
    wait_until(
        "the new partner is in the file and the resolver reloaded",
        || {
            read(&file).contains("192.0.2.10 contoso.example\n")
                && read(&reloads).contains("192.0.2.10 contoso.example\n")
        },
    )
    .await;

    store
        .delete_partner(&Domain::parse("contoso.example").unwrap(), None, &audit())
        .unwrap();
    wait_until("the removed partner is gone from the file", || {
        !read(&file).contains("contoso.example")
    })
    .await;
    wait_until("the rewrite is counted", || {
        gw.shared.internal_dns().is_some_and(|s| s.rewrites >= 3)
    })
    .await;
    let (_, status) = http_get_plain(gw.metrics_addr.unwrap(), "/status").await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["internal_dns"]["ok"], true, "{status}");
    assert_eq!(status["internal_dns"]["failures"], 0, "{status}");
}

#[tokio::test]
async fn a_failing_reload_command_is_reported_and_the_gateway_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "[internal_dns]\nfile = \"partners.conf\"\nformat = \"dnsmasq\"\naddress = \"192.0.2.10:5269\"\nreload_command = [\"false\"]\n";
    let (gw, _stanzas) = start(dir.path(), extra).await;
    wait_until("the failed reload is recorded", || {
        gw.shared.internal_dns().is_some_and(|s| s.failures >= 1)
    })
    .await;
    // The file was written all the same; only the reload failed.
    assert!(
        read(&dir.path().join("partners.conf")).contains("fedgate internal-dns --format dnsmasq")
    );
    let metrics = scrape(&gw).await;
    assert_eq!(
        sample(&metrics, "fedgate_internal_dns_ok", &[]),
        Some(0),
        "{metrics}"
    );
    assert!(
        sample(&metrics, "fedgate_internal_dns_failures_total", &[]).unwrap_or(0) >= 1,
        "{metrics}"
    );
    let (_, status) = http_get_plain(gw.metrics_addr.unwrap(), "/status").await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let error = status["internal_dns"]["last_error"].as_str().unwrap_or("");
    assert!(error.contains("'false' exited with"), "{status}");
    let table = fedgate_manage::status::render_table(&status);
    assert!(
        table.contains("FAILED: the reload command 'false' exited with"),
        "{table}"
    );
    // The gateway still serves.
    let (code, _) = http_get_plain(gw.metrics_addr.unwrap(), "/metrics").await;
    assert!(code.contains(" 200 "), "{code}");
}

#[tokio::test]
async fn a_reload_adds_changes_and_removes_internal_dns() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, _stanzas) = start(dir.path(), "").await;
    let store = open_store(dir.path());
    add_partner(
        store.as_ref(),
        "contoso.example",
        TlsNegotiation::Required,
        SaslNegotiation::Required,
        true,
        None,
    );
    assert!(gw.shared.internal_dns().is_none(), "not configured yet");
    let config_path = dir.path().join("fedgate.toml");
    let without = std::fs::read_to_string(&config_path).unwrap();

    // Added by a SIGHUP: the file is written without a restart.
    let hosts = dir.path().join("partners.hosts");
    std::fs::write(
        &config_path,
        format!("{without}\n[internal_dns]\nfile = \"partners.hosts\"\nformat = \"hosts\"\naddress = \"192.0.2.10:5269\"\n"),
    )
    .unwrap();
    gw.reload();
    wait_until("the added section writes its file", || {
        read(&hosts).contains("192.0.2.10 contoso.example\n")
    })
    .await;

    // Changed: the new file, in the new format, at once (the list itself did not change).
    let dnsmasq = dir.path().join("partners.conf");
    std::fs::write(
        &config_path,
        format!("{without}\n[internal_dns]\nfile = \"partners.conf\"\nformat = \"dnsmasq\"\naddress = \"192.0.2.11:5269\"\n"),
    )
    .unwrap();
    gw.reload();
    wait_until("the changed section writes the new file", || {
        read(&dnsmasq).contains("192.0.2.11")
    })
    .await;
    wait_until("the status names the new file and its success", || {
        gw.shared
            .internal_dns()
            .is_some_and(|s| s.file.ends_with("partners.conf") && s.ok && s.rewrites == 1)
    })
    .await;

    // Removed: no longer kept in step, and nothing is shown for it.
    std::fs::write(&config_path, &without).unwrap();
    gw.reload();
    wait_until("the removed section is no longer shown", || {
        gw.shared.internal_dns().is_none()
    })
    .await;
    let before = read(&dnsmasq);
    add_partner(
        store.as_ref(),
        "fabrikam.example",
        TlsNegotiation::Required,
        SaslNegotiation::Required,
        true,
        None,
    );
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    assert_eq!(read(&dnsmasq), before, "a removed section writes nothing");
    gw.shutdown(std::time::Duration::from_secs(5)).await;
}
