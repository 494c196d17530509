//! `fedgate init` as an admin or a script runs it: the real binary writes a configuration that
//! `fedgate config check` accepts and `fedgate serve` runs. (The interactive questions through a
//! real pseudo-terminal: tests/cli/test_init_pty.py.)

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

fn cmd(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fedgate"));
    c.current_dir(dir)
        .env_remove("FEDGATE_STORE")
        .env_remove("FEDGATE_CONFIG")
        .env("USER", "tester")
        .stdin(Stdio::null());
    c
}

fn run(dir: &Path, args: &[&str]) -> Run {
    Run::from(cmd(dir).args(args).output().unwrap())
}

/// A loopback address with a port nobody listens on now (bound, then released).
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[test]
fn non_interactive_init_writes_a_checked_config_creates_the_store_and_prints_dns_and_next_commands()
{
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &[
            "init",
            "--non-interactive",
            "--domain",
            "corp.example",
            "--internal-server",
            "10.0.0.5:5269",
            "--domain",
            "b.example",
            "--internal-server",
            "xmpp.b.example",
            "--external-listen",
            "0.0.0.0:5269",
            "--internal-listen",
            "127.0.0.1:5270",
            "--generate-certificate",
            "--public-host",
            "xmpp.corp.example",
            "--config-out",
            "etc/fedgate/fedgate.toml",
        ],
    )
    .expect(0);
    let file = dir.path().join("etc/fedgate/fedgate.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("domain = \"b.example\"")
            && text.contains("internal_server = \"xmpp.b.example:5269\"")
            && text.contains("# Partners connect here"),
        "{text}"
    );
    // The same loader as `fedgate config check` accepts it.
    let check = run(dir.path(), &["config", "check", file.to_str().unwrap()]).expect(0);
    assert!(check.stdout.contains(": OK"), "{}", check.stdout);
    // The store is created next to the file, with the generated certificates (key private).
    let etc = dir.path().join("etc/fedgate");
    assert!(etc.join("fedgate.db").is_file(), "{}", out.stdout);
    for d in ["corp.example", "b.example"] {
        assert!(etc.join(format!("{d}.pem")).is_file());
        let key = etc.join(format!("{d}.key"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{d}.key is readable by others");
        }
    }
    // The store works: the next command printed, run as printed, lists no partners.
    let listed = run(
        dir.path(),
        &[
            "--config",
            "etc/fedgate/fedgate.toml",
            "--output",
            "json",
            "Get-CsXmppAllowedPartner",
        ],
    )
    .expect(0);
    assert_eq!(listed.stdout.trim(), "[]");
    // The DNS records to publish, what DNS says now (whatever it says: a lookup that fails is a
    // warning, not an error), and the next commands.
    let o = &out.stdout;
    for line in [
        "_xmpp-server._tcp.corp.example. 3600 IN SRV 0 5 5269 xmpp.corp.example.",
        "_xmpp-server._tcp.b.example. 3600 IN SRV 0 5 5269 xmpp.corp.example.",
        "xmpp.corp.example. 3600 IN A <this gateway's public IPv4 address>",
        "DNS now",
        "fedgate serve --config etc/fedgate/fedgate.toml",
        "fedgate --config etc/fedgate/fedgate.toml New-CsXmppAllowedPartner -Identity",
        "fedgate --config etc/fedgate/fedgate.toml token create --name admin --role admin",
    ] {
        assert!(o.contains(line), "missing {line:?} in:\n{o}");
    }
    let srv_finding = o
        .lines()
        .find(|l| l.contains("_xmpp-server._tcp.corp.example") && !l.contains(" IN SRV "))
        .unwrap_or_else(|| panic!("no DNS finding for the SRV record:\n{o}"));
    assert!(
        [
            "ok: ",
            "not published yet: ",
            "points elsewhere: ",
            "warning: "
        ]
        .iter()
        .any(|p| srv_finding.trim_start().starts_with(p)),
        "{srv_finding}"
    );
}

#[test]
fn an_existing_config_is_kept_unless_force() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fedgate.toml");
    std::fs::write(&file, "# mine\n").unwrap();
    let args = [
        "init",
        "--non-interactive",
        "--domain",
        "corp.example",
        "--internal-server",
        "10.0.0.5:5269",
        "--no-dns-check",
    ];
    let out = run(dir.path(), &args).expect(1);
    assert!(
        out.stderr.contains("fedgate.toml exists") && out.stderr.contains("--force"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "# mine\n");
    assert!(
        !dir.path().join("fedgate.db").exists(),
        "nothing is created when refused"
    );
    let mut forced = args.to_vec();
    forced.push("--force");
    run(dir.path(), &forced).expect(0);
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("[[hosted_domain]]")
    );
    run(dir.path(), &["config", "check", "fedgate.toml"]).expect(0);
    // The global --config names the file when --config-out does not.
    let mut elsewhere = vec!["--config", "other/gw.toml"];
    elsewhere.extend(args);
    run(dir.path(), &elsewhere).expect(0);
    run(dir.path(), &["config", "check", "other/gw.toml"]).expect(0);
}

#[test]
fn bad_values_name_the_flag_and_the_allowed_values_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let base = [
        "init",
        "--non-interactive",
        "--domain",
        "corp.example",
        "--internal-server",
        "10.0.0.5:5269",
        "--no-dns-check",
    ];
    for (flag, value, allowed) in [
        ("--external-listen", "nope", "IP:port"),
        ("--internal-listen", "127.0.0.1", "IP:port"),
        ("--domain", "not a domain", "a domain name"),
        ("--internal-server", "10.0.0.5:99999", "host:port"),
        ("--public-host", "192.0.2.1", "a host name"),
    ] {
        let mut args = base.to_vec();
        args.extend([flag, value]);
        let out = run(dir.path(), &args).expect(2);
        assert!(
            out.stderr.contains(flag)
                && out.stderr.contains("allowed values")
                && out.stderr.contains(allowed),
            "{flag} {value}: {}",
            out.stderr
        );
    }
    // Two domains, one internal server.
    let mut args = base.to_vec();
    args.extend(["--domain", "b.example"]);
    let out = run(dir.path(), &args).expect(2);
    assert!(
        out.stderr.contains("--domain") && out.stderr.contains("--internal-server"),
        "{}",
        out.stderr
    );
    // A bad store URL names --store and what is allowed.
    let mut args = base.to_vec();
    args.extend(["--store", "mysql://x"]);
    let out = run(dir.path(), &args).expect(2);
    assert!(
        out.stderr.contains("--store") && out.stderr.contains("sqlite:"),
        "{}",
        out.stderr
    );
    // Certificate files that do not exist: the key named.
    let mut args = base.to_vec();
    args.extend(["--certificate", "no.pem", "--key", "no.key"]);
    let out = run(dir.path(), &args).expect(1);
    assert!(
        out.stderr.contains("hosted_domain[0].certificate") && out.stderr.contains("no.pem"),
        "{}",
        out.stderr
    );
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(names.is_empty(), "a refused init wrote {names:?}");
}

#[test]
fn without_a_terminal_init_asks_for_non_interactive() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["init"]).expect(2);
    assert!(
        out.stderr.contains("not one") && out.stderr.contains("--non-interactive"),
        "{}",
        out.stderr
    );
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

#[test]
fn the_written_config_serves() {
    let dir = tempfile::tempdir().unwrap();
    let (internal, external, metrics, admin, server) = (
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
    );
    run(
        dir.path(),
        &[
            "init",
            "--non-interactive",
            "--domain",
            "corp.example",
            "--internal-server",
            &server,
            "--external-listen",
            &external,
            "--internal-listen",
            &internal,
            "--metrics-listen",
            &metrics,
            "--admin-listen",
            &admin,
            "--generate-certificate",
            "--config-out",
            "gw/fedgate.toml",
            "--no-dns-check",
        ],
    )
    .expect(0);
    let mut gateway = cmd(dir.path())
        .args(["serve", "--config", "gw/fedgate.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Serving: `fedgate status` reads the metrics listener the file names.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = run(dir.path(), &["status", "--config", "gw/fedgate.toml"]);
        if status.code == 0 {
            assert!(
                status.stdout.contains("no live streams"),
                "{}",
                status.stdout
            );
            break;
        }
        if let Ok(Some(exit)) = gateway.try_wait() {
            let out = gateway.wait_with_output().unwrap();
            panic!(
                "fedgate serve exited ({exit}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not serve: {}",
            status.stderr
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The external listener accepts partners' connections.
    std::net::TcpStream::connect(&external).expect("the external listener accepts");
    let pid = gateway.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = gateway.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "SIGTERM stops the gateway cleanly: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
