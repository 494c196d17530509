#!/usr/bin/env bash
# The whole test suite, on a fresh machine as on a developer's: installs what the tests need
# (.ci/install-deps.sh: Debian packages, Python and npm packages; idempotent), checks formatting
# lints and the API documentation's links (rustdoc), then runs
#   1. every Rust test (unit, property, store, CLI against the real binary, admin API, gateway),
#      and the CLI on a real pseudo-terminal (tests/cli: `fedgate init` asking its questions),
#   2. the web panel end to end in headless Chromium (tests/panel, node's test runner),
#   3. the OpenAPI document against the running API with schemathesis (tests/api),
#   4. real Prosody and ejabberd servers and XMPP clients federating through fedgate (tests/e2e),
#   5. the Debian package built from the debug binary, installed with dpkg, run as its user and
#      removed (tests/package; purges it afterwards).
# A missing dependency is a failure, never a skip.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" -eq 0 ]; then
    bash .ci/install-deps.sh
else
    sudo bash .ci/install-deps.sh
fi

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace
cargo build --workspace --all-targets
cargo test --workspace
python3 -m pytest tests/cli -q

npm --prefix tests/panel test
python3 -m pytest tests/api -q
python3 -m pytest tests/e2e -q
python3 -m pytest tests/package -q
