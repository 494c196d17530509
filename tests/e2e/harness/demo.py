"""Demo: an internal Prosody (corp.example), a partner Prosody (partner.example) and fedgate between
them (the e2e topology), one message each way with real clients. Everything is stopped at the end.

    python3 -m tests.e2e.harness.demo [--tls ca|dialback] [--keep]
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from .env import Env
from .fedgate import EXTERNAL_IP, INTERNAL_IP, METRICS_IP
from .topology import ALICE, BOB, CORP, CORP_IP, PARTNER, PARTNER_IP, gateway_world
from .util import HarnessError


def _interrupted(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tls", choices=("ca", "dialback"), default="ca",
                    help="ca: test CA, SASL EXTERNAL (default); dialback: self-signed, dialback")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("demo: run as root (each server gets its own /etc/hosts via unshare -m)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupted)
    work = Path(tempfile.mkdtemp(prefix="fedgate-demo-"))
    env = Env(work)
    ok = False
    try:
        print(f"work directory: {work}")
        print(f"topology: {CORP} Prosody {CORP_IP} -> fedgate internal {INTERNAL_IP}:5269 | "
              f"fedgate external {EXTERNAL_IP}:5269 <- {PARTNER} Prosody {PARTNER_IP}; "
              f"metrics http://{METRICS_IP}:9269/metrics")
        print(f"starting fedgate, Prosody {CORP}, Prosody {PARTNER} (tls={args.tls}) ...")
        # dialback mode: the partner's certificate is self-signed, so SASL EXTERNAL cannot work;
        # the record allows TLS + dialback only.
        record = () if args.tls == "ca" else ("-SaslNegotiation", "NotSupported")
        w = gateway_world(env, tls=args.tls, partner_record=record)
        print(f"fedgate config: {w.gw.config}")
        print(f"partner record: fedgate --store {w.gw.store} New-CsXmppAllowedPartner -Identity "
              f"{PARTNER} -PartnerType Federated -ProxyFqdn {PARTNER_IP}:5269 {' '.join(record)}".rstrip())
        results = []
        for sender, receiver, to in ((w.alice, w.bob, BOB), (w.bob, w.alice, ALICE)):
            body = f"hello from {sender.jid} at {time.strftime('%H:%M:%S')}"
            t0 = time.monotonic()
            sender.send_message(to, body)
            got = receiver.wait_message(frm=sender.jid, body=body, timeout=15)
            if got:
                print(f"  {sender.jid} -> {to}: delivered in {time.monotonic() - t0:.2f}s: {got.body!r}")
            else:
                err = sender.wait_error(timeout=0.1)
                print(f"  {sender.jid} -> {to}: NOT delivered within 15s"
                      + (f" (bounce: {err.error})" if err else ""))
            results.append(bool(got))
        lines = w.gw.log_search(rf"\b(INFO|WARN|ERROR)\b.*{PARTNER}")
        print(f"fedgate log ({w.gw.log}), INFO/WARN lines naming {PARTNER}: {len(lines)}")
        for line in lines[-10:]:
            print("  " + line)
        ok = all(results)
        print("demo: OK, messages went both ways through fedgate" if ok else "demo: FAILED")
    except HarnessError as e:
        print(f"demo: FAILED: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
    finally:
        print("stopping clients, fedgate and servers ...")
        for err in env.close():
            print(f"  teardown: {err}", file=sys.stderr)
        if args.keep or not ok:
            print(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
