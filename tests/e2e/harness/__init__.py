"""End-to-end harness: real Prosody, ejabberd, slixmpp clients and fedgate on loopback addresses.

Every server runs with its own /etc/hosts and /etc/resolv.conf (per-process mount namespace via
`unshare -m`); all share the one network namespace and talk over 127.0.0.x.
"""
from .certs import CertFiles, TestCA, self_signed
from .client import Client, Received
from .ejabberd import Ejabberd
from .env import Env
from .fedgate import EXTERNAL_IP, INTERNAL_IP, METRICS_IP, Fedgate, fedgate_binary
from .prosody import Prosody
from .util import HarnessError

__all__ = ["CertFiles", "Client", "Ejabberd", "Env", "EXTERNAL_IP", "Fedgate", "HarnessError",
           "INTERNAL_IP", "METRICS_IP", "Prosody", "Received", "TestCA", "fedgate_binary",
           "self_signed"]
