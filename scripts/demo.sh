#!/usr/bin/env bash
# Demo: internal Prosody (corp.example, 127.0.0.10), partner Prosody (partner.example, 127.0.0.30)
# and `fedgate serve` between them (internal 127.0.0.20, external 127.0.0.21); sends a message each
# way with real clients, prints what happened, and stops everything (also on Ctrl-C).
# Needs root and the e2e dependencies: bash .ci/install-deps.sh
#   scripts/demo.sh [--tls ca|dialback] [--keep]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ ! -x target/debug/fedgate ] && [ -z "${FEDGATE_BIN:-}" ]; then
    echo "demo.sh: building fedgate (cargo build -p fedgate) ..."
    cargo build -q -p fedgate
fi

python3 -m tests.e2e.harness.demo "$@" &
demo_pid=$!
cleanup() {
    # The demo stops its servers itself on SIGTERM; wait for it to finish doing so.
    if kill -0 "$demo_pid" 2>/dev/null; then
        kill -TERM "$demo_pid" 2>/dev/null || true
        wait "$demo_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
wait "$demo_pid"
status=$?
trap - EXIT
exit "$status"
