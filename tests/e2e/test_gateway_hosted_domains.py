"""Config contract: several [[hosted_domain]]s, each delivered to its own internal server, each
presenting its own certificate (SNI / stream 'to') to partners."""
import pytest

from harness import EXTERNAL_IP, INTERNAL_IP
from harness.topology import PARTNER, PARTNER_IP, PASSWORD, assert_exchange
from harness.util import addr

pytestmark = pytest.mark.gateway

CORP, CORP2 = "corp.example", "corp2.example"


def test_two_hosted_domains_routed_to_their_own_internal_servers(env):
    gw = env.fedgate(tls="ca", internal_ca=True, hosts={PARTNER: PARTNER_IP},
                     hosted={CORP: f"{addr(10)}:5269", CORP2: f"{addr(11)}:5269"})
    gw.enable_xmpp_access_globally()
    gw.allow_partner(PARTNER, proxy=f"{PARTNER_IP}:5269")
    gw.start()
    corp = env.prosody(CORP, addr(10), hosts={PARTNER: INTERNAL_IP}, tls="ca", users={"alice": PASSWORD})
    corp2 = env.prosody(CORP2, addr(11), hosts={PARTNER: INTERNAL_IP}, tls="ca",
                        users={"frank": PASSWORD})
    partner = env.prosody(PARTNER, PARTNER_IP, hosts={CORP: EXTERNAL_IP, CORP2: EXTERNAL_IP},
                          tls="ca", users={"bob": PASSWORD})
    alice = env.client(f"alice@{CORP}", PASSWORD, addr(10))
    frank = env.client(f"frank@{CORP2}", PASSWORD, addr(11))
    bob = env.client(f"bob@{PARTNER}", PASSWORD, PARTNER_IP)

    assert_exchange(env, alice, bob)
    assert_exchange(env, frank, bob)
    # Each internal server only saw its own domain's traffic; the partner authenticated both
    # hosted domains by their own certificates (SASL EXTERNAL).
    assert corp.log_search(rf"to='alice@{CORP}") and corp.log_search(rf"to='frank@{CORP2}") == []
    assert corp2.log_search(rf"to='frank@{CORP2}") and corp2.log_search(rf"to='alice@{CORP}") == []
    for d in (CORP, CORP2):
        assert partner.wait_log(rf"Accepting SASL EXTERNAL identity from {d}"), d
