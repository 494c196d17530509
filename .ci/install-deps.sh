#!/usr/bin/env bash
# Install everything the end-to-end tests (tests/e2e) need on a Debian machine.
# Idempotent, non-interactive; run as root:  bash .ci/install-deps.sh
# Leaves no Prosody/ejabberd daemon running: the tests start their own instances.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: must run as root (apt-get install, unshare -m in the tests)" >&2
    exit 1
fi

packages=(
    prosody lua-unbound lua-sec          # Prosody 0.12 with libunbound resolver and TLS
    ejabberd erlang-base                 # ejabberd 23.x (ejabberdctl, erl)
    iproute2 util-linux mount            # ip, unshare + mount --bind (per-server /etc/hosts)
    openssl ca-certificates procps
)
# python3 + pip for the tests (only when the python3 on PATH has no pip, e.g. a fresh Debian).
if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
    packages+=(python3 python3-pip)
fi

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

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
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
else
    echo "install-deps.sh: Debian packages already installed"
fi

# Stop and disable any daemon the packages may have started anyway.
for svc in prosody ejabberd; do
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

# Python test dependencies (pinned), into the python3 the tests run with. Debian's own python3 is
# "externally managed" (PEP 668): this is a throwaway CI/test machine, so install anyway.
export PIP_ROOT_USER_ACTION=ignore   # (an env var: older pips ignore it instead of failing)
pip_flags=(--disable-pip-version-check -q)
if python3 -c 'import sys, sysconfig, os; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
    pip_flags+=(--break-system-packages)
fi
python3 -m pip install "${pip_flags[@]}" -r "$here/tests/e2e/requirements.txt" -r "$here/tests/api/requirements.txt"

# The web panel's browser tests drive Debian's chromium with playwright-core (pinned in
# tests/panel/package-lock.json; it downloads no browser of its own).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "install-deps.sh: node and npm are needed for tests/panel (apt-get install nodejs npm)" >&2
    exit 1
fi
npm --prefix "$here/tests/panel" ci --no-audit --no-fund --loglevel=error

echo "install-deps.sh: versions:"
dpkg-query -W prosody ejabberd lua-unbound lua-sec
python3 -c 'import slixmpp, pytest; print("slixmpp", slixmpp.__version__, "pytest", pytest.__version__)'
