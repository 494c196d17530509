"""Issue 13: two fedgate nodes (a pool) on one PostgreSQL store, with real Prosody on both sides.

Topology (harness/pool.py): node A and node B serve the same hosted domain corp.example with the
same certificate and the same `store = "postgres://..."`, on their own addresses; the partner
Prosody finds them through the SRV record _xmpp-server._tcp.corp.example (two targets, two
priorities, so which node the partner's first stream lands on is certain); the corp Prosody sends
partner traffic to one node's internal listener (`internal_via`). PostgreSQL is a real server
(harness/postgres.py) that the outage test stops and starts again.

Every test measures what a user would notice, prints the timings (`-s` to see them) and asserts
the bounds the issue sets.
"""
from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime

import pytest

from harness.pool import PG_IP, pool_world, set_srv_priorities
from harness.topology import (ALICE, BOB, PARTNER, PARTNER_IP, assert_exchange, assert_gateway_logged,
                              assert_message, assert_not_delivered, assert_refused, stream_error_seen)

pytestmark = pytest.mark.gateway

ADMIN_PORT = 8443
CONNECT_TIMEOUT = 2              # the pool's store URL: connect_timeout=2 (harness/postgres.py)
SECOND = "partner2.example"      # a second domain of the partner (its own s2s stream)


# -- helpers ---------------------------------------------------------------------------------
def log_time(line: str) -> float:
    """The UTC timestamp that starts a fedgate log line, as a Unix time."""
    stamp = line.split(" ", 1)[0]
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def wait_log_after(gw, pattern: str, after: float, timeout: float) -> str | None:
    """The first fedgate log line matching pattern whose timestamp is >= after (Unix time),
    polled every 10 ms."""
    rx = re.compile(pattern, re.I)
    deadline = time.monotonic() + timeout
    while True:
        for line in gw.log_text().splitlines():
            if rx.search(line):
                try:
                    if log_time(line) >= after:
                        return line
                except ValueError:
                    continue
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)


def partner_streams(gw, direction: str) -> list[str]:
    """`fedgate status` lines of this node's streams with partner.example (Inbound/Outbound)."""
    out = []
    for ln in gw.status().splitlines():
        cols = ln.split()
        if len(cols) >= 3 and cols[0] == PARTNER and cols[1] == "External" and cols[2] == direction:
            out.append(ln)
    return out


def store_available(gw) -> int | None:
    m = re.search(r"^fedgate_store_available (\d+)$", gw.metrics(), re.M)
    return int(m.group(1)) if m else None


def wait_store_available(gw, value: int, timeout: float) -> float:
    """Seconds until /metrics shows fedgate_store_available <value>."""
    t0 = time.monotonic()
    while store_available(gw) != value:
        assert time.monotonic() - t0 < timeout, \
            f"{gw.name}: fedgate_store_available is not {value} after {timeout}s\n{gw.metrics()[:2000]}"
        time.sleep(0.05)
    return time.monotonic() - t0


def api(gw, method: str, path: str, token: str, body: dict | None = None,
        headers: dict | None = None) -> tuple[int, dict, dict]:
    """One admin API call on this node's admin listener: (status, headers, JSON body)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{gw.metrics_ip}:{ADMIN_PORT}{path}", data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = {"raw": raw.decode(errors="replace")}
        return e.code, {k.lower(): v for k, v in e.headers.items()}, payload


def wait_api(gw, token: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, _, _ = api(gw, "GET", "/api/v1/health", token)
            if status == 200:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{gw.name}: the admin API did not answer\n{gw.diagnostics()}"
        time.sleep(0.1)


# -- 1 -----------------------------------------------------------------------------------------
def test_partner_created_on_node_a_federates_through_node_b_within_a_second(env):
    """A partner created with node A's CLI is accepted by node B within a second: the partner
    Prosody prefers node B (SRV priority), the corp Prosody routes to node B, node A only wrote."""
    w = pool_world(env, partner_listed=False, internal_via="b", srv_priorities={"b": 10, "a": 20})
    # Before the write node B refuses the (unlisted) partner.
    assert_not_delivered(env, w.bob, w.alice, wait=3)
    assert_refused(w.b, "external", "not_listed")

    t_write = time.time()
    m_write = time.monotonic()
    w.a.cli_via_config("New-CsXmppAllowedPartner", "-Identity", PARTNER, "-PartnerType", "Federated",
                       "-ProxyFqdn", f"{PARTNER_IP}:5269")
    cli_took = time.monotonic() - m_write
    # Bob probes at once and every 50 ms until a probe gets through node B (a probe that reaches
    # node B before it applied the change is refused and bounced, which is allowed).
    delivered = None
    probes = []
    while delivered is None and time.monotonic() - m_write < 5:
        body = env.body(f"probe{len(probes)}")
        probes.append(body)
        w.bob.send_message(ALICE, body)
        delivered = w.alice.wait_for(lambda r: r.kind == "message" and r.type != "error"
                                     and r.body in probes, timeout=0.05)
    assert delivered is not None, f"no probe from bob reached alice within 5 s of the write\n{w.b.diagnostics()}"
    accepted = wait_log_after(w.b, rf'inbound stream authenticated side=external domain="?{re.escape(PARTNER)}\b',
                              t_write, timeout=1)
    applied = wait_log_after(w.b, r"policy refreshed.*partners=1", t_write, timeout=1)
    assert applied, f"node B logged no policy refresh after the write\n{w.b.diagnostics()}"
    assert accepted, f"node B logged no authenticated partner stream after the write\n{w.b.diagnostics()}"
    applied_after = log_time(applied) - t_write
    accepted_after = log_time(accepted) - t_write
    delivered_after = delivered.at - m_write
    print(f"\n[pool] New-CsXmppAllowedPartner on node A: CLI took {cli_took:.3f}s; node B applied it "
          f"{applied_after:.3f}s after the CLI started, accepted the partner's stream after "
          f"{accepted_after:.3f}s; first message delivered after {delivered_after:.3f}s "
          f"({len(probes)} probe(s))")
    assert accepted_after < 1.0, f"node B accepted the partner {accepted_after:.2f}s after the write (> 1 s)"
    assert delivered_after < 1.5, f"the first message got through {delivered_after:.2f}s after the write"
    # Through node B, both directions; node A carries nothing of the partner's.
    assert_message(env, w.alice, BOB, w.bob)
    assert partner_streams(w.b, "Inbound"), f"node B has no inbound partner stream:\n{w.b.status()}"
    assert partner_streams(w.b, "Outbound"), f"node B has no outbound partner stream:\n{w.b.status()}"
    assert not partner_streams(w.a, "Inbound") and not partner_streams(w.a, "Outbound"), \
        f"node A carries the partner's traffic:\n{w.a.status()}"


# -- 2 -----------------------------------------------------------------------------------------
def test_remove_on_node_b_closes_the_stream_on_node_a_with_policy_violation(env):
    """Both directions run through node A; Remove-CsXmppAllowedPartner with node B's CLI closes
    node A's partner stream with <policy-violation/> within a second."""
    w = pool_world(env, internal_via="a")
    assert_exchange(env, w.bob, w.alice)
    assert partner_streams(w.a, "Inbound"), f"the partner's stream is not on node A:\n{w.a.status()}"
    assert not partner_streams(w.b, "Inbound"), f"the partner's stream is on node B:\n{w.b.status()}"
    pid = w.a.proc.pid

    mark = w.partner.log_mark()
    t0 = time.monotonic()
    w.b.cli_via_config("Remove-CsXmppAllowedPartner", "-Identity", PARTNER)
    seen = stream_error_seen(w.partner, "policy-violation", timeout=3, since=mark)
    took = time.monotonic() - t0
    assert seen, f"node A did not close the partner's stream with <policy-violation/>\n{w.a.diagnostics()}"
    print(f"\n[pool] Remove on node B -> node A's stream closed after {took:.3f}s (incl. the CLI)")
    assert took <= 1.5, f"stream closed {took:.2f}s after Remove on node B (must be within a second)"
    assert_gateway_logged(w.a, "closing a stream after a policy change", PARTNER, "partner_removed")
    assert_refused(w.a, "external", "partner_removed")
    # Removed on the whole pool: neither node lets anything through, either way.
    assert_not_delivered(env, w.bob, w.alice, wait=3)
    assert_not_delivered(env, w.alice, w.bob, wait=3)
    assert w.a.running() and w.a.proc.pid == pid, "node A restarted"
    assert not partner_streams(w.a, "Inbound"), f"node A still lists the partner's stream:\n{w.a.status()}"


# -- 3 -----------------------------------------------------------------------------------------
def test_concurrent_set_through_both_nodes_one_wins_one_conflicts(env):
    """Two admins read the partner, then each changes it through another node with the same
    If-Match at the same moment: one 200, one 412 "changed by someone else"; the winner's value is
    what both nodes and the audit log show (one Set entry)."""
    w = pool_world(env, admin=True)
    out = w.a.cli_via_config("token", "create", "--name", "ops", "--role", "admin", json=True)
    token = json.loads(out.stdout)["Token"]
    for gw in (w.a, w.b):
        wait_api(gw, token)
    status, headers, _ = api(w.a, "GET", f"/api/v1/partners/{PARTNER}", token)
    assert status == 200
    etag = headers.get("etag")
    assert etag, f"no ETag: {headers}"

    barrier = threading.Barrier(2)
    results: dict[str, tuple] = {}

    def writer(name, gw):
        barrier.wait()
        results[name] = api(gw, "PATCH", f"/api/v1/partners/{PARTNER}", token,
                            {"Description": f"set through node {name}"}, {"If-Match": etag})

    threads = [threading.Thread(target=writer, args=(n, g)) for n, g in (("a", w.a), ("b", w.b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    codes = {n: r[0] for n, r in results.items()}
    print(f"\n[pool] concurrent PATCH with the same If-Match: {codes}")
    assert sorted(codes.values()) == [200, 412], f"expected one 200 and one 412: {results}"
    winner = next(n for n, c in codes.items() if c == 200)
    loser = "b" if winner == "a" else "a"
    err = results[loser][2].get("error", {})
    assert err.get("code") == "precondition_failed", results[loser]
    assert "changed by someone else" in json.dumps(err), err

    # Nothing lost, nothing mixed: both nodes read the winner's value; the audit log has one Set.
    for gw in (w.a, w.b):
        status, _, rec = api(gw, "GET", f"/api/v1/partners/{PARTNER}", token)
        assert status == 200 and rec.get("Description") == f"set through node {winner}", rec
    audit = json.loads(w.b.cli_via_config("audit", "--target", PARTNER, json=True).stdout)
    sets = [e for e in audit if e.get("Command") == "Set-CsXmppAllowedPartner"]
    assert len(sets) == 1, f"the audit log should show exactly one Set:\n{json.dumps(audit, indent=1)}"
    assert sets[0]["Actor"] == "token:ops", sets[0]
    assert sets[0]["Before"]["Description"] == "", sets[0]
    assert sets[0]["After"]["Description"] == f"set through node {winner}", sets[0]
    # The loser does what the error says (read again, retry) and wins on top of the first change.
    status, headers, _ = api(w.node(loser), "GET", f"/api/v1/partners/{PARTNER}", token)
    assert headers.get("etag") != etag
    status, _, _ = api(w.node(loser), "PATCH", f"/api/v1/partners/{PARTNER}", token,
                       {"Description": f"set through node {loser}"}, {"If-Match": headers.get("etag")})
    assert status == 200
    audit = json.loads(w.a.cli_via_config("audit", "--target", PARTNER, json=True).stdout)
    sets = sorted((e for e in audit if e.get("Command") == "Set-CsXmppAllowedPartner"), key=lambda e: e["Id"])
    assert [(e["Before"]["Description"], e["After"]["Description"]) for e in sets] == \
        [("", f"set through node {winner}"), (f"set through node {winner}", f"set through node {loser}")], \
        json.dumps(sets, indent=1)
    # And the pool still federates.
    assert_exchange(env, w.bob, w.alice)


# -- 4 -----------------------------------------------------------------------------------------
def test_postgresql_restart_while_the_pool_runs(env):
    """PostgreSQL stops under the pool: both nodes relay on their last snapshot, say the store is
    unavailable (/metrics, status), an admin write fails naming the server; PostgreSQL starts again:
    within a few seconds both say available and a change through node A applies on node B."""
    # partner -> corp through A, corp -> partner through B; partner2.example (another domain of the
    # partner, its own s2s stream) opens a new stream during the outage.
    w = pool_world(env, internal_via="b", partner_domains=(SECOND,),
                   extra_partner_users=(f"dave@{SECOND}",), partner_record=("-AdditionalDomains", SECOND))
    dave = w.extra_clients[f"dave@{SECOND}"]
    assert_exchange(env, w.bob, w.alice)
    assert partner_streams(w.a, "Inbound") and partner_streams(w.b, "Outbound")
    for gw in (w.a, w.b):
        assert store_available(gw) == 1

    t_stop = time.monotonic()
    w.pg.stop()
    noticed = {gw.name: wait_store_available(gw, 0, timeout=10) for gw in (w.a, w.b)}
    print(f"\n[pool] PostgreSQL stopped ({time.monotonic() - t_stop:.2f}s); "
          f"fedgate_store_available 0 after {noticed}")
    for gw in (w.a, w.b):
        st = json.loads(gw.status_json())
        assert st.get("store", {}).get("available") is False, f"{gw.name} /status: {st.get('store')}"
        assert "STORE UNAVAILABLE" in gw.status(), f"{gw.name}: fedgate status does not say so"
    # Messages still flow through both nodes, on the streams they had...
    assert_exchange(env, w.bob, w.alice)
    assert_exchange(env, w.alice, w.bob)
    # ... and on a new stream, admitted on the last snapshot (the partner's second domain, to
    # node B this time).
    set_srv_priorities(env, {"b": 10, "a": 20})
    assert_message(env, dave, ALICE, w.alice)
    assert [ln for ln in partner_streams(w.b, "Inbound") if SECOND in ln], \
        f"the new stream is not on node B:\n{w.b.status()}"
    # An admin write fails with an error naming the server.
    r = w.a.cli_via_config("Set-CsXmppAllowedPartner", "-Identity", PARTNER, "-Description", "during outage",
                           check=False)
    print(f"[pool] admin write during the outage: rc={r.returncode}: {r.stderr.strip()[:300]}")
    assert r.returncode != 0, "an admin write succeeded while PostgreSQL was down"
    assert f"{PG_IP}:5432" in r.stderr and "PostgreSQL" in r.stderr, \
        f"the error does not name the server:\n{r.stderr}"

    t_start = time.monotonic()
    w.pg.start()
    back = {gw.name: wait_store_available(gw, 1, timeout=10) for gw in (w.a, w.b)}
    print(f"[pool] PostgreSQL started; fedgate_store_available 1 after {back} "
          f"(start took {time.monotonic() - t_start - max(back.values()):.2f}s)")
    assert max(back.values()) < 5, f"store available again only after {back}"
    for gw in (w.a, w.b):
        assert "STORE UNAVAILABLE" not in gw.status()
    # A change through node A applies on node B: removing the partner closes node B's streams and
    # node B refuses what alice sends.
    t_write = time.time()
    m_write = time.monotonic()
    w.a.cli_via_config("Remove-CsXmppAllowedPartner", "-Identity", PARTNER)
    applied = wait_log_after(w.b, r"policy refreshed.*partners=0", t_write, timeout=3)
    assert applied, f"node B did not apply the Remove made on node A after the restart\n{w.b.diagnostics()}"
    print(f"[pool] Remove on node A applied on node B {log_time(applied) - t_write:.3f}s after the write "
          f"(CLI {time.monotonic() - m_write:.2f}s)")
    assert log_time(applied) - t_write < 1.0
    assert_gateway_logged(w.b, "closing a stream after a policy change", PARTNER, "partner_removed")
    assert_not_delivered(env, w.alice, w.bob, wait=3)



class BlackHole:
    """A TCP listener that accepts and never answers: a PostgreSQL that hangs (or a network that
    drops the packets after the handshake), so every store call runs into connect_timeout."""

    def __init__(self, ip: str, port: int):
        import socket
        self.sock = socket.create_server((ip, port))
        self.sock.settimeout(0.2)
        self.conns: list = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
                self.conns.append(conn)
            except OSError:
                continue

    def close(self):
        self.stop.set()
        self.thread.join(2)
        for c in [self.sock, *self.conns]:
            c.close()


def test_postgresql_hanging_does_not_hold_up_relaying(env):
    """PostgreSQL stops answering (accepts TCP, says nothing): every store call waits for
    connect_timeout (2 s here). Relaying on the live streams and admitting a new stream must not
    wait for it; both nodes say the store is unavailable; an admin write fails naming the server."""
    w = pool_world(env, internal_via="b", partner_domains=(SECOND,),
                   extra_partner_users=(f"dave@{SECOND}",), partner_record=("-AdditionalDomains", SECOND))
    dave = w.extra_clients[f"dave@{SECOND}"]
    assert_exchange(env, w.bob, w.alice)
    w.pg.stop()
    hole = BlackHole(PG_IP, 5432)
    try:
        time.sleep(3)                          # past connect_timeout: the store calls hang now
        timings = {}
        for name, (sender, to, receiver) in {"partner->corp via A": (w.bob, ALICE, w.alice),
                                             "corp->partner via B": (w.alice, BOB, w.bob)}.items():
            t0 = time.monotonic()
            assert_message(env, sender, to, receiver)
            timings[name] = time.monotonic() - t0
        set_srv_priorities(env, {"b": 10, "a": 20})
        t0 = time.monotonic()
        assert_message(env, dave, ALICE, w.alice)
        timings["new stream partner2->corp via B"] = time.monotonic() - t0
        print("\n[pool] PostgreSQL hanging: message times "
              + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()))
        slow = {k: v for k, v in timings.items() if v > 1.5}
        assert not slow, f"relaying waited for the hanging store: {slow}"
        t0 = time.monotonic()
        try:
            r = w.b.cli_via_config("Set-CsXmppAllowedPartner", "-Identity", PARTNER, "-Description", "x",
                                   check=False, timeout=CONNECT_TIMEOUT + 6)
            cli = f"rc={r.returncode} after {time.monotonic() - t0:.2f}s: {r.stderr.strip()[:200]}"
        except subprocess.TimeoutExpired:
            r, cli = None, f"still waiting after {time.monotonic() - t0:.0f}s (killed)"
        states = {gw.name: store_available(gw) for gw in (w.a, w.b)}
        print(f"[pool] PostgreSQL hanging: admin write {cli}; fedgate_store_available {states}")
        assert r is not None and r.returncode != 0 and f"{PG_IP}:5432" in r.stderr, \
            f"the admin write did not fail naming the server within connect_timeout: {cli}"
        for gw in (w.a, w.b):
            wait_store_available(gw, 0, timeout=5)
    finally:
        hole.close()
    w.pg.start()
    for gw in (w.a, w.b):
        wait_store_available(gw, 1, timeout=10)
    assert_exchange(env, w.bob, w.alice)


# -- 5 -----------------------------------------------------------------------------------------
def test_kill9_node_a_mid_traffic_partner_fails_over_to_node_b(env):
    """bob's Prosody sends a numbered message every 100 ms to alice through node A (SRV priority
    10); node A is killed with SIGKILL; the partner's Prosody reconnects through node B (priority
    20). Measures the time until traffic resumes and counts what was lost in flight (plain s2s
    cannot recover those); every message sent after the partner's new stream was up must arrive.
    TODO(lease work): once streams are leased in the store, also assert that node A's dead
    streams stop counting against the pool's connection limits."""
    w = pool_world(env, internal_via="b")
    assert_message(env, w.bob, ALICE, w.alice)
    assert partner_streams(w.a, "Inbound"), f"the partner's first stream is not on node A:\n{w.a.status()}"

    sent: list[tuple[int, float]] = []       # (number, Unix time sent)
    stop = threading.Event()
    kill_now = threading.Event()             # set by the test: the sender kills node A
    killed: dict[str, float] = {}            # right after its next message, so one is in flight

    def sender():
        n = 0
        next_at = time.monotonic()
        while not stop.is_set():
            n += 1
            sent.append((n, time.time()))
            w.bob.send_message(ALICE, f"seq-{n:05d}")
            if kill_now.is_set() and not killed:
                killed.update(wall=time.time(), mono=time.monotonic(), after=n)
                w.a.kill9()
            next_at += 0.1
            time.sleep(max(0.0, next_at - time.monotonic()))

    def delivered() -> dict[int, float]:
        out = {}
        for r in w.alice.messages_from(BOB):
            if r.body.startswith("seq-"):
                out.setdefault(int(r.body[4:]), r.at)
        return out

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 10
        while len(delivered()) < 20:
            assert time.monotonic() < deadline, "the steady stream did not flow through node A"
            time.sleep(0.05)
        kill_now.set()
        deadline = time.monotonic() + 5
        while not killed:
            assert time.monotonic() < deadline and t.is_alive(), "the sender did not kill node A"
            time.sleep(0.01)
        kill_wall, kill_mono, last_before_kill = killed["wall"], killed["mono"], killed["after"]
        # Wait for traffic to resume: a message sent after the kill arrives.
        deadline = time.monotonic() + 20
        resumed_at = None
        while resumed_at is None:
            after = [at for n, at in delivered().items() if n > last_before_kill]
            if after:
                resumed_at = min(after)
            else:
                assert time.monotonic() < deadline, \
                    f"no message got through within 20 s of killing node A\n{w.b.diagnostics()}"
                time.sleep(0.02)
        time.sleep(2)                          # 20 more messages through node B
    finally:
        stop.set()
        t.join(5)
    time.sleep(1)                              # the last ones arrive
    got = delivered()
    total = len(sent)
    reconnected = wait_log_after(w.b, r'inbound stream authenticated side=external domain="?partner\.example\b', kill_wall, timeout=1)
    assert reconnected, f"node B logged no partner stream after the kill\n{w.b.diagnostics()}"
    failover_at = log_time(reconnected)        # the partner's new stream is up on node B
    lost = sorted(n for n, _ in sent if n not in got)
    after_failover = [n for n, at in sent if at > failover_at]
    lost_after_failover = [n for n in after_failover if n not in got]
    in_flight_lost = [n for n in lost if n <= last_before_kill]
    print(f"\n[pool] kill -9 node A right after bob sent message {last_before_kill}: partner's stream up on node B "
          f"{failover_at - kill_wall:.3f}s after the kill, first message after the kill delivered "
          f"{resumed_at - kill_mono:.3f}s after it; sent {total}, delivered {len(got)}, lost {len(lost)} "
          f"{lost} (sent before the kill: {len(in_flight_lost)}; sent between kill and failover: "
          f"{len([n for n in lost if n > last_before_kill and n not in after_failover])}); "
          f"sent after the failover {len(after_failover)}, lost {len(lost_after_failover)}")
    bounced = [r for r in w.bob.received if r.type == "error" and r.at >= kill_mono]
    print(f"[pool] bob got {len(bounced)} error bounce(s) after the kill"
          + "".join(f"\n  {r.xml[:300]}" for r in bounced))
    assert w.a.exit_status == -9, f"node A was not killed by SIGKILL: {w.a.exit_status}"
    assert partner_streams(w.b, "Inbound"), f"node B has no partner stream:\n{w.b.status()}"
    assert after_failover, "nothing was sent after the failover"
    assert not lost_after_failover, \
        f"messages sent after the partner reconnected through node B were lost: {lost_after_failover}"
    assert resumed_at - kill_mono < 5, f"traffic resumed only {resumed_at - kill_mono:.2f}s after the kill"
    # Duplicates would be as wrong as losses.
    bodies = [r.body for r in w.alice.messages_from(BOB) if r.body.startswith("seq-")]
    assert len(bodies) == len(set(bodies)), "some messages were delivered twice"


# -- 6 (stream leases) --------------------------------------------------------------------------


def test_partner_connection_limit_counts_the_streams_of_the_whole_pool(env):
    """A partner with ConnectionLimit 1 has its one stream on node A; its second stream (another of
    its domains) lands on node B, which must refuse it as the partner's second connection in the
    pool (partner_connection_limit, <policy-violation/>), as one gateway does."""
    w = pool_world(env, internal_via="a", partner_domains=(SECOND,),
                   extra_partner_users=(f"dave@{SECOND}",),
                   partner_record=("-AdditionalDomains", SECOND, "-ConnectionLimit", "1"))
    dave = w.extra_clients[f"dave@{SECOND}"]
    assert_message(env, w.bob, ALICE, w.alice)                  # connection 1 of 1, on node A
    assert partner_streams(w.a, "Inbound"), f"the first stream is not on node A:\n{w.a.status()}"
    set_srv_priorities(env, {"b": 10, "a": 20})                  # the next stream goes to node B
    mark = w.partner.log_mark()
    body = env.body("dave")
    t_sent = time.time()
    dave.send_message(ALICE, body)                               # connection 2 of 1, to node B
    got = w.alice.wait_message(frm=dave.jid, body=body, timeout=4)
    # Whatever node B decided, the stream went to node B (the test's own precondition).
    reached_b = wait_log_after(w.b, rf'{re.escape(SECOND)}', t_sent, timeout=1)
    assert reached_b, f"dave's stream did not reach node B\n{w.b.diagnostics()}"
    print(f"\n[pool] the partner's second stream, to node B: {'DELIVERED' if got else 'refused'}; "
          f"node B:\n{w.b.status()}")
    assert got is None, "node B admitted the partner's second connection (ConnectionLimit 1 in the pool)"
    assert stream_error_seen(w.partner, "policy-violation", timeout=1, since=mark)
    assert_refused(w.b, "external", "partner_connection_limit")



# Store layer (fedgate_store::cluster): a node's heartbeat every 2 s, its leases count while the
# heartbeat is at most 10 s old.
HEARTBEAT_INTERVAL, LEASE_TTL = 2, 10


def test_kill9_node_a_its_streams_stop_counting_within_the_lease_ttl(env):
    """The partner has ConnectionLimit 1 and its one stream on node A; node A is killed with
    SIGKILL (it never releases its lease). The partner reconnects through node B, which must admit
    it once node A's lease has expired: within LEASE_TTL + a heartbeat + a margin (not never).
    Until the gateway counts leases (branch `pool`), node B admits it at once and this passes
    trivially; the print says which it was."""
    w = pool_world(env, internal_via="b", partner_record=("-ConnectionLimit", "1"))
    assert_message(env, w.bob, ALICE, w.alice)
    assert partner_streams(w.a, "Inbound"), f"the partner's stream is not on node A:\n{w.a.status()}"
    w.a.kill9()
    t_kill, m_kill = time.time(), time.monotonic()
    limit = LEASE_TTL + HEARTBEAT_INTERVAL + 3
    got, probes = None, []
    while got is None and time.monotonic() - m_kill < limit:
        body = env.body(f"after-kill{len(probes)}")
        probes.append(body)
        w.bob.send_message(ALICE, body)
        got = w.alice.wait_for(lambda r: r.kind == "message" and r.type != "error" and r.body in probes,
                               timeout=0.5)
    refused = [ln for ln in w.b.log_search(r"partner_connection_limit") if log_time(ln) >= t_kill]
    took = (got.at - m_kill) if got else None
    print(f"\n[pool] ConnectionLimit 1, node A killed: node B admitted the partner after "
          f"{'%.2fs' % took if got else 'NEVER'} ({len(probes)} probes, {len(refused)} refusal log lines "
          f"on node B before: {'the pool counts leases' if refused else 'no pool-wide counting yet'})")
    assert got is not None, (f"node B did not admit the partner within {limit}s of node A's death: "
                             f"the dead node's stream still counts\n{w.b.diagnostics()}")
    assert partner_streams(w.b, "Inbound"), f"node B has no partner stream:\n{w.b.status()}"


# -- secrets with a PostgreSQL store ----------------------------------------------------------
PASSPHRASE = "e2e-Pool-Dialback-Passphrase-51c0ffee"


def test_dialback_passphrase_never_in_a_nodes_debug_log(env):
    """README: secrets never appear in logs (test_gateway_logs_and_certs checks it with SQLite).
    With the shared PostgreSQL store: neither the DialbackPassphrase node A generated at its first
    start nor one an admin sets through node B's admin API may be in the nodes' debug logs."""
    w = pool_world(env, admin=True)
    generated = w.pg.psql("SELECT value FROM gateway_settings WHERE name = 'DialbackPassphrase'",
                          database=w.pg.DATABASE).strip()
    assert len(generated) >= 16, f"no generated DialbackPassphrase in the store: {generated!r}"
    token = json.loads(w.b.cli_via_config("token", "create", "--name", "ops", "--role", "admin",
                                          json=True).stdout)["Token"]
    wait_api(w.b, token)
    status, _, reply = api(w.b, "PATCH", "/api/v1/gateway-configuration", token,
                           {"DialbackPassphrase": PASSPHRASE})
    assert status == 200, reply
    time.sleep(0.5)                      # both nodes re-read the settings
    leaks = {(gw.name, what) for gw in (w.a, w.b) for what, secret in
             (("generated", generated), ("set through the API", PASSPHRASE)) if secret in gw.log_text()}
    for name, what in sorted(leaks):
        gw = w.a if name == "fedgate-a" else w.b
        secret = generated if what == "generated" else PASSPHRASE
        line = next(ln for ln in gw.log_text().splitlines() if secret in ln)
        print(f"[pool] {name}: the DialbackPassphrase ({what}) is in the log:\n  {line[:300]}")
    assert not leaks, f"the DialbackPassphrase is in the debug log: {sorted(leaks)}"
