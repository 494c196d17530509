"""The Debian package, built, installed, run and removed on this machine (issue 15 item 4).

Builds the .deb with scripts/build-deb.sh --profile dev (the debug binary, so the test needs no
release build; the package is otherwise the release package), then, as root:
  - checks what is in it (binary, unit, conffile, man pages, completions, maintainer scripts);
  - installs it with dpkg -i: the system user fedgate, /var/lib/fedgate owned by it;
  - checks the unit with systemd-analyze verify (works without systemd as PID 1) and its sandbox
    with systemd-analyze security --offline;
  - runs the unit's ExecStart as the packaged user against the packaged config (setpriv, in a
    network namespace of its own so the config's fixed loopback ports cannot clash with anything
    else on the machine), waits for /status on the metrics listener, stops it with SIGTERM;
  - reads the man pages with man -l and the completions with bash -n (zsh/fish: their headers);
  - upgrades to a newer version, removes (dpkg -r) and installs again: the store (a partner added
    before), the generated certificate and an edited config are kept throughout;
  - purges: /var/lib/fedgate and /etc/fedgate are gone.
Always purges the package at the end, deletes the fedgate user if the test created it, and never
leaves fedgate running. Refuses to run where a fedgate package is already installed.
"""
from __future__ import annotations

import gzip
import json
import os
import pwd
import grp
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = "fedgate.service"
CONFIG = Path("/etc/fedgate/fedgate.toml")
STATE = Path("/var/lib/fedgate")
MARK = "# edited by tests/package/test_deb.py\n"


def run(*argv, check=True, **kw):
    kw.setdefault("stdin", subprocess.DEVNULL)
    result = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{shlex.join(map(str, argv))} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def status():
    r = run("dpkg-query", "-W", "-f", "${Status}", "fedgate", check=False)
    text = r.stdout.strip() if r.returncode == 0 else ""
    return "" if text.endswith("not-installed") else text


def user_exists():
    try:
        pwd.getpwnam("fedgate")
        return True
    except KeyError:
        return False


def unit_path():
    for d in ("/usr/lib/systemd/system", "/lib/systemd/system"):
        if Path(d, UNIT).exists():
            return Path(d, UNIT)
    raise AssertionError(f"{UNIT} is not installed in /usr/lib/systemd/system or /lib/systemd/system")


def unit_directives(path):
    found = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("tests/package must run as root (dpkg -i, setpriv)")
    for tool in ("cargo", "dpkg", "dpkg-deb", "setpriv", "unshare", "nsenter", "ip", "man",
                 "systemd-analyze", "adduser", "strip"):
        assert shutil.which(tool), f"{tool} is missing: bash .ci/install-deps.sh"
    assert run("cargo", "deb", "--version", check=False).returncode == 0, \
        "cargo-deb is missing: bash .ci/install-deps.sh (cargo install cargo-deb --locked)"
    if status():
        pytest.fail(f"a fedgate package is on this machine ({status()}); the test would replace it "
                    "and purge its store. Remove it first (dpkg --purge fedgate) or run elsewhere.")
    if STATE.exists() or CONFIG.parent.exists():
        pytest.fail(f"{STATE} or {CONFIG.parent} exists without the package (a leftover?); "
                    "move it away first")
    out = tmp_path_factory.mktemp("debs")
    built = {}
    for version in ("0.0.0~test1-1", "0.0.0~test2-1"):
        started = time.monotonic()
        r = run(ROOT / "scripts/build-deb.sh", "--profile", "dev", "--deb-version", version,
                "--output", out / f"fedgate_{version}.deb", cwd=ROOT, timeout=1200)
        path = Path(r.stdout.strip().splitlines()[-1])
        assert path.is_file(), f"build-deb.sh printed {path!r}, which is not a file\n{r.stderr}"
        print(f"built {path} in {time.monotonic() - started:.0f} s")
        built[version] = path
    return built


@pytest.fixture(scope="module")
def machine(debs):
    """Leaves the machine as it found it: no fedgate package, process, state or (new) user."""
    had_user = user_exists()
    procs = []
    try:
        yield {"debs": debs, "procs": procs}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        if status():
            run("dpkg", "--purge", "fedgate", check=False)
        if not had_user and user_exists():
            run("deluser", "--system", "fedgate", check=False)
            if _group_exists("fedgate"):
                run("delgroup", "--system", "fedgate", check=False)


def _group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def contents(deb):
    listing = run("dpkg-deb", "-c", deb).stdout
    return {line.split()[-1].lstrip(".") for line in listing.splitlines()}


def test_package_contents(machine):
    deb = machine["debs"]["0.0.0~test1-1"]
    files = contents(deb)
    unit = {"/lib/systemd/system/fedgate.service", "/usr/lib/systemd/system/fedgate.service"} & files
    assert unit, f"no fedgate.service in the package: {sorted(files)}"
    for f in ("/usr/bin/fedgate", "/etc/fedgate/fedgate.toml",
              "/usr/share/man/man1/fedgate.1.gz", "/usr/share/man/man1/fedgate-serve.1.gz",
              "/usr/share/man/man1/fedgate-partner-add.1.gz",
              "/usr/share/bash-completion/completions/fedgate",
              "/usr/share/zsh/vendor-completions/_fedgate",
              "/usr/share/fish/vendor_completions.d/fedgate.fish",
              "/usr/share/doc/fedgate/copyright"):
        assert f in files, f"{f} is not in the package: {sorted(files)}"
    # The hidden generators stay out of the man pages.
    assert not [f for f in files if "generate" in f], sorted(files)
    fields = {k: run("dpkg-deb", "-f", deb, k).stdout.strip()
              for k in ("Package", "Version", "Depends", "Section")}
    assert fields["Package"] == "fedgate"
    assert fields["Version"] == "0.0.0~test1-1"
    assert "adduser" in fields["Depends"] and "libc6" in fields["Depends"], fields
    control = run("dpkg-deb", "-I", deb).stdout
    for script in ("postinst", "prerm", "postrm"):
        assert f" {script}" in control, f"no {script} maintainer script:\n{control}"
    work = Path(run("mktemp", "-d").stdout.strip())
    try:
        run("dpkg-deb", "-e", deb, work)
        assert (work / "conffiles").read_text().split() == ["/etc/fedgate/fedgate.toml"]
        postinst = (work / "postinst").read_text()
        assert "adduser --system --group --home /var/lib/fedgate" in postinst
        # Not enabled nor started on install: the config needs editing first (README).
        assert "deb-systemd-helper enable" not in postinst.split("was-enabled")[0]
        assert "deb-systemd-invoke start" not in postinst
    finally:
        shutil.rmtree(work)


def test_install(machine):
    r = run("dpkg", "-i", machine["debs"]["0.0.0~test1-1"])
    assert status() == "install ok installed", r.stdout + r.stderr
    user = pwd.getpwnam("fedgate")
    assert user.pw_uid < 1000 and user.pw_dir == str(STATE), user
    assert user.pw_shell in ("/usr/sbin/nologin", "/bin/false"), user
    assert grp.getgrgid(user.pw_gid).gr_name == "fedgate"
    st = STATE.stat()
    assert (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid)
    assert oct(st.st_mode & 0o777) == "0o750"
    assert os.access("/usr/bin/fedgate", os.X_OK)
    text = CONFIG.read_text()
    assert 'store = "sqlite:/var/lib/fedgate/fedgate.db"' in text
    run("/usr/bin/fedgate", "config", "check", CONFIG)
    # A system without systemd as PID 1 (this one, CI's) cannot start it; with systemd the
    # package must not start it either.
    assert not run("pgrep", "-x", "fedgate", "-u", "fedgate", check=False).stdout


def test_unit_file(machine):
    path = unit_path()
    d = unit_directives(path)
    want = {
        "User": ["fedgate"], "Group": ["fedgate"],
        "ExecStart": ["/usr/bin/fedgate serve --config /etc/fedgate/fedgate.toml"],
        "ExecReload": ["/bin/kill -HUP $MAINPID"],
        "Restart": ["on-failure"], "StateDirectory": ["fedgate"],
        "ConfigurationDirectory": ["fedgate"], "ProtectSystem": ["strict"],
        "ProtectHome": ["yes"], "PrivateTmp": ["yes"], "NoNewPrivileges": ["yes"],
        "CapabilityBoundingSet": [""], "StandardError": ["journal"],
    }
    for key, value in want.items():
        assert d.get(key) == value, f"{path}: {key}={d.get(key)}, want {value}"
    # Every listener of the packaged config is on a port >= 1024: no capability is needed.
    assert "AmbientCapabilities" not in d
    import tomllib
    config = tomllib.loads(CONFIG.read_text())
    listens = [config["metrics_listen"], config["internal_listener"]["listen"],
               config["external_listener"]["listen"], config["admin"]["listen"]]
    assert all(int(a.rsplit(":", 1)[1]) >= 1024 for a in listens), listens
    r = run("systemd-analyze", "verify", path, check=False)
    problems = [l for l in (r.stdout + r.stderr).splitlines() if UNIT in l or "fedgate" in l]
    assert r.returncode == 0 and not problems, f"systemd-analyze verify:\n{r.stdout}{r.stderr}"
    r = run("systemd-analyze", "security", "--offline=yes", "--no-pager", path, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    last = [l for l in r.stdout.splitlines() if "Overall exposure level" in l]
    assert last, r.stdout
    score = float(last[-1].split("exposure level for")[1].split(":")[1].split()[0])
    print(last[-1])
    assert score <= 2.5, f"the sandbox is weaker than expected:\n{r.stdout}"


def test_man_pages_and_completions(machine):
    env = {k: v for k, v in os.environ.items() if k != "MAN_KEEP_FORMATTING"}
    env.update(MANWIDTH="100", LC_ALL="C.UTF-8")
    for page in ("fedgate", "fedgate-serve", "fedgate-partner-add"):
        path = Path(f"/usr/share/man/man1/{page}.1.gz")
        r = run("man", "--warnings", "-l", path, env=env)
        assert "NAME" in r.stdout and "SYNOPSIS" in r.stdout, r.stdout
        assert r.stderr.strip() == "", f"man --warnings {path}:\n{r.stderr}"
        assert page.replace("-", " ") in r.stdout or page in r.stdout
    r = run("man", "-w", "fedgate", env=env)
    assert r.stdout.strip() == "/usr/share/man/man1/fedgate.1.gz"
    assert "serve" in run("man", "-l", "/usr/share/man/man1/fedgate.1.gz", env=env).stdout
    bash_completion = "/usr/share/bash-completion/completions/fedgate"
    run("bash", "-n", bash_completion)
    r = run("bash", "-c", f"source {bash_completion} && complete -p fedgate")
    assert "fedgate" in r.stdout, r.stdout
    # The completion offers the subcommands (COMP_* as bash sets them for `fedgate par<TAB>`).
    r = run("bash", "-c", f"source {bash_completion}; COMP_WORDS=(fedgate par); COMP_CWORD=1; "
            "COMP_LINE='fedgate par'; COMP_POINT=11; _fedgate fedgate par fedgate; "
            "printf '%s\\n' \"${COMPREPLY[@]}\"")
    assert "partner" in r.stdout.split(), r.stdout
    assert Path("/usr/share/zsh/vendor-completions/_fedgate").read_text().startswith("#compdef fedgate")
    assert "complete -c fedgate" in Path("/usr/share/fish/vendor_completions.d/fedgate.fish").read_text()


def serve_as_packaged_user(machine):
    """The unit's ExecStart, run as its User= in the unit's WorkingDirectory=, in a network
    namespace of its own (lo up). Returns the process (its pid is fedgate's: unshare, sh and
    setpriv exec)."""
    d = unit_directives(unit_path())
    exec_start = shlex.split(d["ExecStart"][0])
    inner = shlex.join(["setpriv", "--reuid", d["User"][0], "--regid", d["Group"][0],
                        "--init-groups", *exec_start])
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    log = tempfile.NamedTemporaryFile("w", prefix="fedgate-serve-", suffix=".log", delete=False)
    proc = subprocess.Popen(["unshare", "--net", "--", "sh", "-c", f"ip link set lo up && exec {inner}"],
                            cwd=d["WorkingDirectory"][0], env=env, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT)
    proc.log_path = Path(log.name)
    log.close()
    machine["procs"].append(proc)
    return proc


def get_status(pid):
    code = ("import urllib.request,sys;"
            "sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:9269/status', timeout=2)"
            ".read().decode())")
    return run("nsenter", f"--net=/proc/{pid}/ns/net", "python3", "-c", code, check=False)


def wait_serving(proc, seconds=60):
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"fedgate exited {proc.returncode}:\n{proc.log_path.read_text()}")
        last = get_status(proc.pid)
        if last.returncode == 0:
            return json.loads(last.stdout)
        time.sleep(0.5)
    raise AssertionError(f"no /status within {seconds} s: {last.stderr if last else ''}\n"
                         f"{proc.log_path.read_text()}")


def stop(proc):
    os.kill(proc.pid, signal.SIGTERM)
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"fedgate did not stop on SIGTERM:\n{proc.log_path.read_text()}")
    log = proc.log_path.read_text()
    proc.log_path.unlink()
    assert code == 0, f"fedgate exited {code} on SIGTERM:\n{log}"
    return log


def as_fedgate(*args):
    return run("runuser", "-u", "fedgate", "--", "/usr/bin/fedgate", "--config", CONFIG, *args,
               cwd="/")


def test_serves_as_packaged_user(machine):
    proc = serve_as_packaged_user(machine)
    status_doc = wait_serving(proc)
    assert isinstance(status_doc, dict), status_doc
    owner = pwd.getpwnam("fedgate").pw_uid
    assert os.stat(f"/proc/{proc.pid}").st_uid == owner
    # Everything it wrote is under /var/lib/fedgate and belongs to fedgate: the store and the
    # self-signed certificate generated for the hosted domain next to it.
    for name in ("fedgate.db", "corp.example.pem", "corp.example.key"):
        path = STATE / name
        assert path.exists(), f"{path} missing: {sorted(p.name for p in STATE.iterdir())}"
        assert path.stat().st_uid == owner, path
    log = stop(proc)
    # Its log is on stderr (the journal under systemd): serving, then stopped on SIGTERM.
    assert "fedgate is serving" in log and "fedgate stopped" in log, log
    assert not run("pgrep", "-u", "fedgate", check=False).stdout


def test_upgrade_remove_reinstall_keep_store_and_config(machine):
    debs = machine["debs"]
    as_fedgate("partner", "add", "contoso.com", "--partner-type", "Federated")
    with CONFIG.open("a") as f:
        f.write(MARK)
    cert = (STATE / "corp.example.pem").read_bytes()

    def kept(when):
        assert MARK in CONFIG.read_text(), f"{when}: the edited config was replaced"
        assert (STATE / "corp.example.pem").read_bytes() == cert, f"{when}: certificate changed"
        assert (STATE / "fedgate.db").exists(), f"{when}: store gone"

    # Upgrade: a newer version over the installed one (the edited conffile is kept, no prompt).
    run("dpkg", "-i", debs["0.0.0~test2-1"])
    assert status() == "install ok installed"
    assert run("dpkg-query", "-W", "-f", "${Version}", "fedgate").stdout == "0.0.0~test2-1"
    kept("after the upgrade")
    assert "contoso.com" in as_fedgate("partner", "list").stdout

    # Remove: the binary and the unit go, the store and the config stay.
    run("dpkg", "-r", "fedgate")
    assert status() == "deinstall ok config-files"
    assert not Path("/usr/bin/fedgate").exists()
    assert not Path("/lib/systemd/system", UNIT).exists()
    assert not Path("/usr/lib/systemd/system", UNIT).exists()
    kept("after dpkg -r")
    assert user_exists()

    # Install again: the same store and config, and it serves them.
    run("dpkg", "-i", debs["0.0.0~test2-1"])
    assert status() == "install ok installed"
    kept("after installing again")
    assert "contoso.com" in as_fedgate("partner", "list").stdout
    proc = serve_as_packaged_user(machine)
    wait_serving(proc)
    stop(proc)


def test_purge_deletes_store_and_config(machine):
    run("dpkg", "--purge", "fedgate")
    assert status() == ""
    assert not STATE.exists(), sorted(p.name for p in STATE.iterdir())
    assert not CONFIG.parent.exists()
