#!/usr/bin/env bash
# The whole test suite, on a fresh machine as on a developer's: installs what the tests need
# (Debian packages, Python packages; idempotent), checks formatting and lints, then runs the Rust
# tests (unit, property, store, CLI, gateway) and the end-to-end tests with real Prosody, ejabberd
# and XMPP clients. A missing dependency is a failure, never a skip.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" -eq 0 ]; then
    bash .ci/install-deps.sh
else
    sudo bash .ci/install-deps.sh
fi

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
cargo test --workspace

python3 -m pytest tests/e2e -q
