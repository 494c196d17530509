"""Harness self-tests: real servers federating DIRECTLY (no fedgate). They prove the fixtures —
per-server /etc/hosts, certificates, users, clients — so that a failing gateway scenario points at
the gateway, not at the harness."""
from __future__ import annotations

from harness.util import addr

CORP, PARTNER = "corp.example", "partner.example"
CORP_IP, PARTNER_IP = addr(10), addr(30)


def exchange(env, a, a_jid, b, b_jid):
    """a → b and b → a; asserts each body arrives at the other client."""
    out = env.body("a2b")
    a.send_message(b_jid, out)
    got = b.wait_message(frm=a_jid, body=out, timeout=15)
    assert got is not None, f"{b_jid} did not receive {out!r} from {a_jid}"
    back = env.body("b2a")
    b.send_message(a_jid, back)
    got = a.wait_message(frm=b_jid, body=back, timeout=15)
    assert got is not None, f"{a_jid} did not receive {back!r} from {b_jid}"


def presence_both_ways(a, a_jid, b, b_jid):
    """Subscriptions both ways (clients auto-authorize), then available presence arrives."""
    a.subscribe(b_jid)
    assert b.wait_presence(frm=a_jid, ptype="subscribe"), f"{b_jid} got no subscribe"
    assert a.wait_presence(frm=b_jid, ptype="subscribed"), f"{a_jid} got no subscribed"
    assert a.wait_presence(frm=b_jid, ptype=""), f"{a_jid} got no available presence"
    b.subscribe(a_jid)
    assert b.wait_presence(frm=a_jid, ptype="subscribed"), f"{b_jid} got no subscribed"
    assert b.wait_presence(frm=a_jid, ptype=""), f"{b_jid} got no available presence"


def test_prosody_prosody_dialback(env):
    corp = env.prosody(CORP, CORP_IP, hosts={PARTNER: PARTNER_IP}, tls="dialback",
                       users={"alice": "alicepw"})
    partner = env.prosody(PARTNER, PARTNER_IP, hosts={CORP: CORP_IP}, tls="dialback",
                          users={"bob": "bobpw"})
    alice = env.client(f"alice@{CORP}", "alicepw", CORP_IP)
    bob = env.client(f"bob@{PARTNER}", "bobpw", PARTNER_IP)
    exchange(env, alice, f"alice@{CORP}", bob, f"bob@{PARTNER}")
    presence_both_ways(alice, f"alice@{CORP}", bob, f"bob@{PARTNER}")
    # Dialback, not SASL EXTERNAL (self-signed certificates, s2s_secure_auth = false).
    assert corp.log_search(r"dialback") and partner.log_search(r"dialback")
    assert not corp.log_search(r"Accepting SASL EXTERNAL") and \
        not partner.log_search(r"Accepting SASL EXTERNAL")


def test_prosody_prosody_sasl_external(env):
    corp = env.prosody(CORP, CORP_IP, hosts={PARTNER: PARTNER_IP}, tls="ca", users={"alice": "alicepw"})
    partner = env.prosody(PARTNER, PARTNER_IP, hosts={CORP: CORP_IP}, tls="ca", users={"bob": "bobpw"})
    alice = env.client(f"alice@{CORP}", "alicepw", CORP_IP)
    bob = env.client(f"bob@{PARTNER}", "bobpw", PARTNER_IP)
    exchange(env, alice, f"alice@{CORP}", bob, f"bob@{PARTNER}")
    # Each side accepted the other's certificate for SASL EXTERNAL (XEP-0178).
    assert partner.wait_log(rf"Accepting SASL EXTERNAL identity from {CORP}"), \
        "partner did not authenticate corp.example with SASL EXTERNAL"
    assert corp.wait_log(rf"Accepting SASL EXTERNAL identity from {PARTNER}"), \
        "corp did not authenticate partner.example with SASL EXTERNAL"


def test_prosody_ejabberd(env):
    env.prosody(CORP, CORP_IP, hosts={PARTNER: PARTNER_IP}, tls="dialback", users={"alice": "alicepw"})
    env.ejabberd(PARTNER, PARTNER_IP, hosts={CORP: CORP_IP}, tls="dialback", users={"bob": "bobpw"})
    alice = env.client(f"alice@{CORP}", "alicepw", CORP_IP)
    bob = env.client(f"bob@{PARTNER}", "bobpw", PARTNER_IP)
    exchange(env, alice, f"alice@{CORP}", bob, f"bob@{PARTNER}")
    presence_both_ways(alice, f"alice@{CORP}", bob, f"bob@{PARTNER}")


def test_prosody_ejabberd_sasl_external(env):
    corp = env.prosody(CORP, CORP_IP, hosts={PARTNER: PARTNER_IP}, tls="ca", users={"alice": "alicepw"})
    env.ejabberd(PARTNER, PARTNER_IP, hosts={CORP: CORP_IP}, tls="ca", users={"bob": "bobpw"})
    alice = env.client(f"alice@{CORP}", "alicepw", CORP_IP)
    bob = env.client(f"bob@{PARTNER}", "bobpw", PARTNER_IP)
    exchange(env, alice, f"alice@{CORP}", bob, f"bob@{PARTNER}")
    assert corp.wait_log(rf"Accepting SASL EXTERNAL identity from {PARTNER}"), \
        "Prosody did not authenticate ejabberd's partner.example with SASL EXTERNAL"


def test_prosody_cleartext_dialback_two_domains_via_tcpproxy(env):
    """tls="none" (no s2s TLS at all), a second VirtualHost on the partner server, and the recording
    TCP relay (used by the keepalive scenario) in the corp -> partner path."""
    proxy_ip = addr(31)
    proxy = env.tcpproxy((proxy_ip, 5269), (PARTNER_IP, 5269))
    env.prosody(CORP, CORP_IP, hosts={PARTNER: proxy_ip, "partner2.example": proxy_ip}, tls="none",
                users={"alice": "alicepw"})
    partner = env.prosody(PARTNER, PARTNER_IP, hosts={CORP: CORP_IP}, tls="none",
                          users={"bob": "bobpw", "dave@partner2.example": "davepw"},
                          extra_domains=("partner2.example",))
    alice = env.client(f"alice@{CORP}", "alicepw", CORP_IP)
    bob = env.client(f"bob@{PARTNER}", "bobpw", PARTNER_IP)
    dave = env.client("dave@partner2.example", "davepw", PARTNER_IP)
    exchange(env, alice, f"alice@{CORP}", bob, f"bob@{PARTNER}")
    exchange(env, alice, f"alice@{CORP}", dave, "dave@partner2.example")
    # Cleartext: the relay saw the message bodies, and no STARTTLS was negotiated.
    seen = b"".join(c.data for c in proxy.chunks if c.direction == "c2t")
    assert b"<body>a2b-" in seen and b"starttls" not in seen
    assert not partner.log_search(r"s2s(in|out)\S*\s+info\s+Stream encrypted")


def test_dns_stub_answers_a_srv_and_nxdomain_at_once(env):
    """The DNS stub all servers' resolv.conf point at: records the test sets, NXDOMAIN otherwise,
    over UDP and TCP, without delay."""
    import socket
    import struct
    import time

    from harness.dns import _encode_name

    env.dns.add_a("xmpp.partner.example", PARTNER_IP)
    env.dns.add_srv("_xmpp-server._tcp.partner.example", "xmpp.partner.example", port=5270)

    def query(name, qtype, tcp=False):
        msg = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + _encode_name(name) + \
            struct.pack("!HH", qtype, 1)
        if tcp:
            with socket.create_connection((env.dns.ip, 53), timeout=2) as s:
                s.sendall(struct.pack("!H", len(msg)) + msg)
                n = struct.unpack("!H", s.recv(2))[0]
                reply = s.recv(n)
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(2)
                s.sendto(msg, (env.dns.ip, 53))
                reply = s.recv(4096)
        _id, flags, _qd, ancount = struct.unpack("!HHHH", reply[:8])
        return flags & 0xF, ancount, reply

    t0 = time.monotonic()
    rcode, n, reply = query("xmpp.partner.example", 1)
    assert (rcode, n) == (0, 1) and reply.endswith(socket.inet_aton(PARTNER_IP))
    rcode, n, reply = query("_xmpp-server._tcp.partner.example", 33, tcp=True)
    assert (rcode, n) == (0, 1) and struct.pack("!H", 5270) in reply
    assert query("_xmpp-server._tcp.nowhere.example", 33)[:2] == (3, 0)
    assert time.monotonic() - t0 < 1
