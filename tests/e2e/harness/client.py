"""A real XMPP client (slixmpp) running its own asyncio loop in a thread."""
from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from dataclasses import dataclass, field

try:
    import slixmpp
except ImportError as e:  # a missing dependency is a failure, never a skip
    raise AssertionError(f"slixmpp missing ({e}): pip install -r tests/e2e/requirements.txt "
                         "(or run .ci/install-deps.sh)") from e

from .util import HarnessError, check_loopback

log = logging.getLogger("e2e.client")


@dataclass
class Received:
    kind: str                 # "message" | "presence" | "iq"
    type: str                 # stanza type attribute ("" when absent)
    frm: str
    to: str
    body: str = ""
    error: str = ""           # error condition (e.g. "policy-violation") for type="error"
    xml: str = ""
    at: float = field(default_factory=time.monotonic)

    @property
    def bare_from(self) -> str:
        return self.frm.split("/", 1)[0]


class Client:
    """Client(jid, password, server_ip): connects with STARTTLS (no Direct TLS), accepts the test
    servers' self-signed certificates, binds, sends initial presence, and records every stanza it
    receives. Methods are thread-safe and synchronous."""

    def __init__(self, jid: str, password: str, server_ip: str, port: int = 5222,
                 auto_authorize: bool = True, connect_timeout: float = 15.0):
        check_loopback(server_ip)
        self.jid, self.password, self.server_ip, self.port = jid, password, server_ip, port
        self.received: list[Received] = []
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self._failed: str | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=f"xmpp-{jid}", daemon=True)
        self.xmpp: slixmpp.ClientXMPP | None = None
        self.auto_authorize = auto_authorize
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._setup(), self._loop)
        fut.result(timeout=5)
        if not self._ready.wait(connect_timeout) or self._failed:
            self.close()
            raise HarnessError(f"client {jid} could not log in to {server_ip}:{port}: "
                               f"{self._failed or 'timeout'}")

    # -- thread/loop -------------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    async def _setup(self) -> None:
        x = slixmpp.ClientXMPP(self.jid, self.password)
        x.enable_direct_tls = False
        x.enable_starttls = True
        x.enable_plaintext = False
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE        # test servers use self-signed/test-CA certs
        x.ssl_context = ctx
        x.roster.auto_authorize = self.auto_authorize
        x.roster.auto_subscribe = False
        x.add_event_handler("session_start", self._on_session_start)
        x.add_event_handler("failed_auth", lambda *_: self._fail("authentication failed"))
        x.add_event_handler("connection_failed", lambda e: self._fail(f"connection failed: {e}"))
        x.add_filter("in", self._on_stanza)
        self.xmpp = x
        x.connect(self.server_ip, self.port)

    def _fail(self, why: str) -> None:
        self._failed = why
        self._ready.set()

    async def _on_session_start(self, _event) -> None:
        try:
            await self.xmpp.get_roster(timeout=10)
        except Exception as e:  # roster is not essential
            log.warning("%s: roster fetch failed: %s", self.jid, e)
        self.xmpp.send_presence()
        self._ready.set()

    def _on_stanza(self, stanza):
        name = stanza.name
        if name in ("message", "presence", "iq"):
            # The raw attribute: slixmpp reports a presence without type as "available" (or its
            # <show/>) and a message without type as "normal".
            stype = stanza.xml.attrib.get("type", "")
            err = ""
            if stype == "error":
                err = "?"
                for child in stanza.xml:
                    if child.tag.endswith("}error") or child.tag == "error":
                        for cond in child:
                            cname = cond.tag.rsplit("}", 1)[-1]
                            if cond.tag.startswith("{urn:ietf:params:xml:ns:xmpp-stanzas}") \
                                    and cname != "text":
                                err = cname
                                break
            body = stanza["body"] if name == "message" else ""
            rec = Received(name, stype, str(stanza["from"]), str(stanza["to"]),
                           body, err, str(stanza))
            with self._cond:
                self.received.append(rec)
                self._cond.notify_all()
        return stanza

    def _call(self, fn, *args, **kw):
        done = threading.Event()
        box: dict = {}

        def run():
            try:
                box["r"] = fn(*args, **kw)
            except Exception as e:  # pragma: no cover - surfaced to the caller
                box["e"] = e
            done.set()
        self._loop.call_soon_threadsafe(run)
        if not done.wait(10):
            raise HarnessError(f"client {self.jid}: call {fn} timed out")
        if "e" in box:
            raise box["e"]
        return box.get("r")

    # -- actions -----------------------------------------------------------------------------
    def send_message(self, to: str, body: str, mtype: str = "chat") -> None:
        self._call(lambda: self.xmpp.send_message(mto=to, mbody=body, mtype=mtype))

    def send_presence(self, to: str | None = None, ptype: str | None = None,
                      status: str | None = None) -> None:
        self._call(lambda: self.xmpp.send_presence(pto=to, ptype=ptype, pstatus=status))

    def subscribe(self, to: str) -> None:
        self.send_presence(to, "subscribe")

    # -- waiting -----------------------------------------------------------------------------
    def wait_for(self, pred, timeout: float = 10.0, since: int = 0) -> Received | None:
        """First received stanza (from index `since`) matching pred, or None after timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for rec in self.received[since:]:
                    if pred(rec):
                        return rec
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def wait_message(self, frm: str | None = None, body: str | None = None,
                     timeout: float = 10.0) -> Received | None:
        return self.wait_for(lambda r: r.kind == "message" and r.type != "error"
                             and (frm is None or r.bare_from == frm)
                             and (body is None or r.body == body), timeout)

    def wait_presence(self, frm: str | None = None, ptype: str | None = "",
                      timeout: float = 10.0) -> Received | None:
        """ptype "" = available; None = any type."""
        return self.wait_for(lambda r: r.kind == "presence"
                             and (frm is None or r.bare_from == frm)
                             and (ptype is None or r.type == ptype), timeout)

    def wait_error(self, frm: str | None = None, kind: str | None = None,
                   timeout: float = 10.0) -> Received | None:
        """A stanza of type error (a bounce), optionally from the given (bare) JID or domain."""
        return self.wait_for(lambda r: r.type == "error"
                             and (kind is None or r.kind == kind)
                             and (frm is None or r.bare_from == frm or r.frm == frm), timeout)

    def messages_from(self, frm: str) -> list[Received]:
        with self._cond:
            return [r for r in self.received if r.kind == "message" and r.type != "error"
                    and r.bare_from == frm]

    # -- teardown ----------------------------------------------------------------------------
    def close(self) -> None:
        if self._loop.is_closed():
            return
        if self.xmpp is not None:
            try:
                fut = asyncio.run_coroutine_threadsafe(self._disconnect(), self._loop)
                fut.result(timeout=5)
            except Exception:
                pass
        try:
            asyncio.run_coroutine_threadsafe(self._cancel_tasks(), self._loop).result(timeout=5)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

    async def _cancel_tasks(self) -> None:
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _disconnect(self) -> None:
        try:
            await asyncio.wait_for(self.xmpp.disconnect(wait=0.5), 3)
        except Exception:
            self.xmpp.abort()

    def __repr__(self) -> str:
        return f"Client({self.jid} via {self.server_ip})"
