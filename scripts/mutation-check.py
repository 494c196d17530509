#!/usr/bin/env python3
"""Shows that the suite guards what the README promises: each entry below removes one behaviour
from the source (a small, exact text replacement), runs the tests that name that behaviour and
expects them to FAIL. The source is restored after each run, whatever happens.

    scripts/mutation-check.py            # every mutation
    scripts/mutation-check.py 3 5        # only mutations 3 and 5 (numbers from --list)
    scripts/mutation-check.py --list

Prints one line per mutation (CAUGHT when the tests failed, MISSED when they passed) and exits 1 if
any mutation was missed. Needs what `scripts/test.sh` installs; takes a few minutes per mutation
(each one rebuilds the crates it touches).
"""

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

E2E = "cargo build -p fedgate && E2E_SUBNET=127.0.19 python3 -m pytest -q -x tests/e2e/test_gateway_logs_and_certs.py"

# (behaviour removed, file, exact text, replacement, tests that must fail)
MUTATIONS = [
    (
        "dialback keys: receiving and originating domains swapped",
        "crates/fedgate-gateway/src/dialback.rs",
        "    mac.update(receiving.to_ascii_lowercase().as_bytes());\n    mac.update(b\" \");\n    mac.update(originating.to_ascii_lowercase().as_bytes());",
        "    mac.update(originating.to_ascii_lowercase().as_bytes());\n    mac.update(b\" \");\n    mac.update(receiving.to_ascii_lowercase().as_bytes());",
        "cargo test -p fedgate-gateway --lib dialback",
    ),
    (
        "db:verify answered valid whatever the key (only the domain checked)",
        "crates/fedgate-gateway/src/inbound.rs",
        "let valid = authoritative && check_key(",
        "let valid = authoritative || check_key(",
        "cargo test -p fedgate-gateway --test dialback_verify",
    ),
    (
        "db:verify answered invalid whatever the key",
        "crates/fedgate-gateway/src/inbound.rs",
        "let valid = authoritative && check_key(",
        "let valid = false && authoritative && check_key(",
        "cargo test -p fedgate-gateway --test dialback_verify",
    ),
    (
        "refusal log lines charged to the claimed domain before authentication",
        "crates/fedgate-gateway/src/inbound.rs",
        "let culprit = authenticated.map_or(Culprit::Source(addr), Culprit::Peer);",
        "let culprit = authenticated.or(claimed).map_or(Culprit::Source(addr), Culprit::Peer);",
        "cargo test -p fedgate-gateway --test refusal_log",
    ),
    (
        "shutdown waits for an outbound write to a peer that stopped reading",
        "crates/fedgate-gateway/src/outbound.rs",
        "_ = shutdown.changed() => (tokio::time::timeout(CLOSE_WRITE_TIMEOUT, send).await.ok(), true),",
        "_ = shutdown.changed() => (Some(send.await), true),",
        "cargo test -p fedgate-gateway --test stalled_peer",
    ),
    (
        "no backoff after a stall (the next stanza opens a new stream at once)",
        "crates/fedgate-gateway/src/outbound.rs",
        "        let (_, until) = map.get(key)?;",
        "        let (_, until) = map.get(key).filter(|_| false)?;",
        "cargo test -p fedgate-gateway --test stalled_peer",
    ),
    (
        "closing writes tried after a stalled write (a second wait)",
        "crates/fedgate-gateway/src/conn.rs",
        "        if self.stalled {\n            return Err(",
        "        if false && self.stalled {\n            return Err(",
        "cargo test -p fedgate-gateway --lib conn",
    ),
    (
        "gateway-wide ConnectionLimit never enforced",
        "crates/fedgate-model/src/enforce.rs",
        "    if counts.total >= connection_limit {",
        "    if false && counts.total >= connection_limit {",
        "cargo test -p fedgate-gateway --test limits_and_timeouts",
    ),
    (
        "PartnerConnectionLimit fallback ignored (only a partner's own ConnectionLimit counts)",
        "crates/fedgate-model/src/enforce.rs",
        "    let limit = partner.connection_limit.unwrap_or(partner_connection_limit);\n    if counts.partner >= limit {",
        "    let limit = partner.connection_limit.unwrap_or(u32::MAX);\n    if counts.partner >= limit {",
        "cargo test -p fedgate-gateway --test limits_and_timeouts",
    ),
    (
        "StreamInactivityTimeout never closes a stream",
        "crates/fedgate-model/src/enforce.rs",
        "    if clock.authenticated && clock.since_stanza >= t.stream_inactivity_timeout {",
        "    if false && clock.authenticated && clock.since_stanza >= t.stream_inactivity_timeout {",
        "cargo test -p fedgate-gateway --test limits_and_timeouts",
    ),
    (
        "peer certificates accepted without chain or name checks",
        "crates/fedgate-gateway/src/tls.rs",
        "        check_chain(roots, chain, domain)\n    }",
        "        let _ = (roots, domain);\n        if chain.is_empty() { CertCheck::Absent } else { CertCheck::Valid }\n    }",
        "cargo test -p fedgate-gateway --test outbound_certificates",
    ),
    (
        "SIGHUP ignored (no reload)",
        "crates/fedgate-gateway/src/runtime.rs",
        "                _ = hup.recv() => gw.reload(),",
        "                _ = hup.recv() => {},",
        "cargo test -p fedgate-gateway --test signals",
    ),
    (
        "no backpressure towards the sender (outbound credits never awaited)",
        "crates/fedgate-gateway/src/outbound.rs",
        "        Some(c) => c.acquire_owned().await.ok(),",
        "        Some(_c) => None,",
        "cargo test -p fedgate-gateway --test relay_flow",
    ),
    (
        "refusals never counted in /metrics",
        "crates/fedgate-gateway/src/state.rs",
        "    pub fn refused(&self, side: Side, reason: &'static str) {\n",
        "    pub fn refused(&self, side: Side, reason: &'static str) {\n        if true { let _ = (side, reason); return; }\n",
        "cargo test -p fedgate-gateway --no-fail-fast",
    ),
    (
        "admin tokens stored as plain text instead of their hash",
        "crates/fedgate-manage/src/tokens.rs",
        "pub fn hash(token: &str) -> String {\n",
        "pub fn hash(token: &str) -> String {\n    if true { return token.to_owned(); }\n",
        "cargo test -p fedgate-manage tokens && cargo test -p fedgate --test token_cli",
    ),
    (
        "New -WhatIf writes the partner",
        "crates/fedgate-manage/src/partners.rs",
        "        self.check_domains_free(&partner)?;\n        if mode == Mode::WhatIf {",
        "        self.check_domains_free(&partner)?;\n        if mode == Mode::WhatIf && false {",
        "cargo test -p fedgate --test cli what_if_and_in_memory_write_nothing",
    ),
    (
        "PublicUnverified authorisations not loaded into the snapshot at start",
        "crates/fedgate-gateway/src/runtime.rs",
        "        p.settings,\n        authorisations,\n    ))",
        "        p.settings,\n        {\n            let _ = authorisations;\n            Default::default()\n        },\n    ))",
        "cargo test -p fedgate-gateway --test access public_unverified",
    ),
    (
        "a committed authorisation change never reaches the snapshot",
        "crates/fedgate-gateway/src/authorisations.rs",
        "            if committed {",
        "            if false && committed {",
        "cargo test -p fedgate-gateway --test access public_unverified",
    ),
    (
        "message bodies always logged (EnableLoggingAllMessageBodies ignored when False)",
        "crates/fedgate-gateway/src/inbound.rs",
        "                if policy.settings.enable_logging_all_message_bodies {",
        "                if true || policy.settings.enable_logging_all_message_bodies {",
        E2E + " -k bodies",
    ),
    (
        "message bodies never logged (EnableLoggingAllMessageBodies ignored when True)",
        "crates/fedgate-gateway/src/inbound.rs",
        "                if policy.settings.enable_logging_all_message_bodies {",
        "                if false && policy.settings.enable_logging_all_message_bodies {",
        E2E + " -k bodies",
    ),
    (
        "PostgreSQL writes of several nodes not serialised (no advisory lock)",
        "crates/fedgate-store/src/pg.rs",
        "            tx.execute(\"SELECT pg_advisory_xact_lock($1)\", &[&WRITE_LOCK])\n                .map_err(e)?;\n",
        "",
        "cargo test -p fedgate-store --test postgres two_nodes",
    ),
    (
        "PostgreSQL writes not announced to the other nodes (no NOTIFY)",
        "crates/fedgate-store/src/pg.rs",
        "tx.execute(\"SELECT pg_notify($1, $2)\", &[&CHANNEL, &what])",
        "tx.execute(\"SELECT $1::text, $2::text\", &[&CHANNEL, &what])",
        "cargo test -p fedgate-store --test postgres watch",
    ),
    (
        "authorisations announced by another node not reloaded",
        "crates/fedgate-gateway/src/runtime.rs",
        "match crate::authorisations::Writer::reload(&shared).await {",
        "match Ok::<usize, StoreError>(0) {",
        "cargo test -p fedgate-gateway --test pool",
    ),
    (
        "the partner list read in two snapshots (SQLite)",
        "crates/fedgate-store/src/sqlite.rs",
        "let conn = guard.unchecked_transaction().map_err(e)?;",
        "let conn = &*guard;",
        "cargo test -p fedgate-store --test store_suite sqlite::reading_the_list",
    ),
]


def run(index: int) -> bool:
    name, rel, old, new, cmd = MUTATIONS[index]
    path = ROOT / rel
    original = path.read_text()
    if original.count(old) != 1:
        print(f"[{index}] {name}: the text to replace occurs {original.count(old)} times in {rel}")
        return False
    path.write_text(original.replace(old, new))
    started = time.monotonic()
    try:
        result = subprocess.run(
            cmd, shell=True, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    finally:
        path.write_text(original)
    took = time.monotonic() - started
    output = result.stdout
    if "error[E" in output or "could not compile" in output:
        print(f"[{index}] {name}: the mutation did not compile\n{output[-3000:]}")
        return False
    failed = [
        line.strip()
        for line in output.splitlines()
        if line.strip().startswith(("---- ", "FAILED ")) or " FAILED" in line
    ]
    caught = result.returncode != 0
    verdict = "CAUGHT" if caught else "MISSED"
    print(f"[{index}] {verdict} {name} ({took:.0f} s): {cmd}")
    for line in failed[:6]:
        print(f"      {line}")
    sys.stdout.flush()
    return caught


def main() -> int:
    args = sys.argv[1:]
    if args == ["--list"]:
        for i, m in enumerate(MUTATIONS):
            print(f"{i:2} {m[0]}  ->  {m[4]}")
        return 0
    chosen = [int(a) for a in args] if args else range(len(MUTATIONS))
    missed = [i for i in chosen if not run(i)]
    if missed:
        print(f"not caught: {missed}")
        return 1
    print("every mutation was caught")
    return 0


if __name__ == "__main__":
    sys.exit(main())
