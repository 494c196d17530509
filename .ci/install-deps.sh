#!/usr/bin/env bash
# Install everything the test suite needs on a Debian machine, then check that it is all there.
# Idempotent, non-interactive; run as root:  bash .ci/install-deps.sh
# Leaves no Prosody/ejabberd/PostgreSQL/unbound/named daemon running (the tests start their own
# instances on loopback addresses), and so nothing of theirs on port 53 or in /etc/resolv.conf.
#
# The tables below are the one list of what the suites use. A program listed here that is missing
# after the install makes this script fail at once, naming the program and the package that brings
# it — so a test never meets a missing program halfway through the run, and a package that a
# developer installed by hand cannot hide a gap in this list for long.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: must run as root (apt-get install, unshare -m in the tests)" >&2
    exit 1
fi

# program (or absolute path) -> Debian package, and who uses it.
programs=(
    "prosody         prosody        tests/e2e: the Prosody servers"
    "prosodyctl      prosody        tests/e2e: certificate import, checks"
    "pkg:lua-unbound lua-unbound    tests/e2e: Prosody's resolver (libunbound)"
    "pkg:lua-sec     lua-sec        tests/e2e: Prosody's TLS"
    "ejabberdctl     ejabberd       tests/e2e: the ejabberd servers"
    "erl             erlang-base    tests/e2e: ejabberd's runtime"
    "dnsmasq         dnsmasq-base   tests/e2e: the internal side's resolver (fedgate internal-dns)"
    "unbound         unbound        tests/e2e: a real unbound loading fedgate internal-dns --format unbound"
    "unbound-checkconf unbound      tests/e2e: checks the generated unbound clause"
    "named           bind9          tests/e2e: a real named loading fedgate internal-dns --format bind (RPZ)"
    "named-checkconf bind9-utils    tests/e2e: checks the named.conf the bind output asks for"
    "named-checkzone bind9-utils    tests/e2e: checks the generated response-policy zone"
    "dig             bind9-dnsutils tests/e2e/harness/dns.py: questions to the real unbound and named"
    "ip              iproute2       tests/e2e: loopback addresses"
    "unshare         util-linux     tests/e2e: a mount namespace per server (/etc/hosts)"
    "setpriv         util-linux     crates/fedgate/tests/cli.rs: the CLI as an unprivileged user; tests/e2e/harness/postgres.py: PostgreSQL as the postgres user"
    "setsid          util-linux     tests/e2e/harness/postgres.py: the watchdog that stops PostgreSQL when the tests die"
    "mount           mount          tests/e2e: bind-mounted /etc/hosts"
    "script          bsdutils       crates/fedgate/tests/cli.rs: the shell through a real pty"
    "openssl         openssl        tests/e2e: certificates"
    "pgrep           procps         tests/e2e, this script"
    "chromium        chromium       tests/panel: the web panel in headless Chromium"
    "node            nodejs         tests/panel: node's test runner"
    "npm             npm            tests/panel: playwright-core"
    "sqlite3         sqlite3        tests/panel: a partner health record seeded in the gateway's store"
    "python3         python3        tests/e2e, tests/api"
    "/usr/lib/postgresql/*/bin/initdb postgresql crates/fedgate-store/tests, crates/fedgate/tests/postgres_cli.rs, crates/fedgate-gateway/tests/pool.rs, tests/e2e/test_pool.py: a PostgreSQL server in a temp dir (initdb, pg_ctl, postgres)"
    "/usr/lib/postgresql/*/bin/psql postgresql-client tests/e2e/harness/postgres.py: creating the role and database"
    "psql            postgresql-client-common tests/e2e/harness/postgres.py: Debian's psql wrapper (the harness runs the versioned psql beside initdb)"
    "dpkg-shlibdeps  dpkg-dev       scripts/build-deb.sh: cargo-deb's automatic Depends"
    "strip           binutils       scripts/build-deb.sh --profile dev: the debug binary stripped"
    "adduser         adduser        tests/package: the package's postinst creates the fedgate user"
    "deluser         adduser        tests/package: the fedgate user removed after the test"
    "man             man-db         tests/package: man -l on the packaged man pages"
    "systemd-analyze systemd        tests/package: systemd-analyze verify/security on fedgate.service"
    "nsenter         util-linux     tests/package: /status read in the packaged gateway's network namespace"
    "runuser         util-linux     tests/package: management commands as the fedgate user"
)
# Cargo tools (cargo install): command -> crate and version. cargo-deb is pinned: the package test
# builds from the debug profile, which this version still accepts (with a warning).
cargo_tools=(
    "cargo-deb  cargo-deb 3.8.0  scripts/build-deb.sh, tests/package: the Debian package"
)
# Python modules (from tests/*/requirements.txt) and npm packages (tests/panel/package-lock.json).
python_modules=(slixmpp pytest pytest_timeout cryptography schemathesis)
npm_packages=(playwright-core)

# A program is present when it is on PATH (or the absolute path, which may hold a glob such as a
# version directory, exists); "pkg:NAME" stands for a library with no program of its own, present
# when Debian's package NAME is installed.
present() {
    case "$1" in
        pkg:*) dpkg-query -W -f='${Status}' "${1#pkg:}" 2>/dev/null | grep -q 'install ok installed' ;;
        /*) compgen -G "$1" >/dev/null ;;
        *) command -v "$1" >/dev/null 2>&1 ;;
    esac
}

# Debian packages to install: those whose program is missing (node, npm and python3 may come from
# elsewhere, e.g. a global npm upgrade or pyenv: a working command is enough).
missing=()
for row in "${programs[@]}"; do
    read -r prog pkg _ <<<"$row"
    present "$prog" || missing+=("$pkg")
done
present /etc/ssl/certs/ca-certificates.crt || missing+=(ca-certificates)
# pip for the python3 on PATH (only when it has none, e.g. a fresh Debian).
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
if [ "${#missing[@]}" -gt 0 ]; then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
fi

# Keep package postinst scripts from starting daemons (invoke-rc.d honours policy-rc.d).
policy=/usr/sbin/policy-rc.d
created_policy=0
cleanup() {
    if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi
}
trap cleanup EXIT

if [ "${#missing[@]}" -gt 0 ]; then
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 755 "$policy"
        created_policy=1
    fi
    echo "install-deps.sh: installing ${missing[*]}"
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
else
    echo "install-deps.sh: Debian packages already installed"
fi

# Stop and disable any daemon the packages may have started anyway. (Debian's postgresql package
# also creates a cluster "main" on port 5432; the store tests start their own server on a free
# port, so that cluster is stopped only to keep the machine quiet, and never used.)
# unbound and named (bind9) would listen on port 53 and, under systemd with resolvconf, name
# themselves in /etc/resolv.conf (unbound-resolvconf, named-resolvconf): the machine's resolver
# must stay as it is, so those are stopped and disabled too.
for svc in prosody ejabberd postgresql unbound unbound-resolvconf named named-resolvconf; do
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl stop "$svc" 2>/dev/null || true
        systemctl disable "$svc" 2>/dev/null || true
    elif [ -x "/etc/init.d/$svc" ]; then
        "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
    fi
    if command -v update-rc.d >/dev/null 2>&1; then
        update-rc.d "$svc" disable >/dev/null 2>&1 || true
    fi
done
# The ejabberd postinst starts epmd (Erlang port mapper) as the ejabberd user; the tests use
# ERL_DIST_PORT and need no epmd. Ask it to exit (it refuses while nodes are registered).
if pgrep -u ejabberd -x epmd >/dev/null 2>&1; then
    /usr/bin/epmd -kill >/dev/null 2>&1 || true
fi

# Report (do not kill) anything still listening as a system daemon: the tests need the ports free.
if pgrep -u prosody >/dev/null 2>&1 || pgrep -u ejabberd >/dev/null 2>&1; then
    echo "install-deps.sh: WARNING: a system prosody/ejabberd process is still running" >&2
fi
if pgrep -u unbound -x unbound >/dev/null 2>&1 || pgrep -u bind -x named >/dev/null 2>&1; then
    echo "install-deps.sh: WARNING: a system unbound/named is still running (port 53)" >&2
fi

# Python test dependencies (pinned), into the python3 the tests run with. Debian's own python3 is
# "externally managed" (PEP 668): this is a throwaway CI/test machine, so install anyway.
export PIP_ROOT_USER_ACTION=ignore   # (an env var: older pips ignore it instead of failing)
pip_flags=(--disable-pip-version-check -q)
if python3 -c 'import sys, sysconfig, os; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
    pip_flags+=(--break-system-packages)
fi
python3 -m pip install "${pip_flags[@]}" -r "$here/tests/e2e/requirements.txt" -r "$here/tests/api/requirements.txt"

# Cargo tools, from crates.io, unless the pinned version is already there.
for row in "${cargo_tools[@]}"; do
    read -r tool crate version _ <<<"$row"
    if ! "$tool" --version 2>/dev/null | grep -qx "$tool $version" \
        && ! cargo "${tool#cargo-}" --version 2>/dev/null | grep -qx "$tool $version"; then
        echo "install-deps.sh: installing $crate $version"
        cargo install "$crate" --version "$version" --locked
    fi
done

# The web panel's browser tests drive Debian's chromium with playwright-core (pinned in
# tests/panel/package-lock.json; it downloads no browser of its own).
npm --prefix "$here/tests/panel" ci --no-audit --no-fund --loglevel=error

# ---- The guard: everything the suites call is here now, or fail naming what is missing. ----
absent=()
for row in "${programs[@]}"; do
    read -r prog pkg used <<<"$row"
    present "$prog" || absent+=("$prog (Debian package $pkg; used by $used)")
done
for row in "${cargo_tools[@]}"; do
    read -r tool crate version used <<<"$row"
    cargo "${tool#cargo-}" --version >/dev/null 2>&1 \
        || absent+=("$tool (cargo install $crate --version $version --locked; used by $used)")
done
for m in "${python_modules[@]}"; do
    python3 -c "import $m" 2>/dev/null \
        || absent+=("Python module $m (pip install -r tests/e2e/requirements.txt -r tests/api/requirements.txt)")
done
for n in "${npm_packages[@]}"; do
    [ -f "$here/tests/panel/node_modules/$n/package.json" ] \
        || absent+=("npm package $n (npm --prefix tests/panel ci)")
done
# Chromium must start headless, not only exist (a broken install fails here, not in the panel test).
if present chromium && ! chromium --headless --no-sandbox --disable-gpu --version >/dev/null 2>&1; then
    absent+=("a working chromium: 'chromium --version' fails (reinstall the Debian package chromium)")
fi
if [ "${#absent[@]}" -gt 0 ]; then
    echo "install-deps.sh: the test suite needs these, and they are missing after the install:" >&2
    printf '  - %s\n' "${absent[@]}" >&2
    exit 1
fi

echo "install-deps.sh: versions:"
dpkg-query -W prosody ejabberd lua-unbound lua-sec chromium postgresql dnsmasq-base unbound bind9
node --version
python3 -c 'import slixmpp, pytest; print("slixmpp", slixmpp.__version__, "pytest", pytest.__version__)'
