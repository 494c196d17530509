"""A recording TCP relay on a loopback address: listen_ip:port -> target. Used to observe what
fedgate sends to a partner (e.g. whitespace keepalives on a cleartext stream)."""
from __future__ import annotations

import selectors
import socket
import threading
import time
from dataclasses import dataclass

from .util import check_loopback


@dataclass
class Chunk:
    at: float          # time.monotonic()
    conn: int          # connection number (0, 1, ...)
    direction: str     # "c2t" (client -> target) or "t2c"
    data: bytes


class TcpProxy:
    def __init__(self, listen: tuple[str, int], target: tuple[str, int]):
        check_loopback(listen[0])
        check_loopback(target[0])
        self.listen, self.target = listen, target
        self.chunks: list[Chunk] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._srv = socket.create_server(listen, reuse_port=False)
        self._srv.settimeout(0.2)
        self._threads: list[threading.Thread] = []
        t = threading.Thread(target=self._accept_loop, name=f"tcpproxy-{listen}", daemon=True)
        t.start()
        self._threads.append(t)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._srv.accept()
            except (socket.timeout, OSError):
                continue
            with self._lock:
                n = self.connections
                self.connections += 1
            t = threading.Thread(target=self._relay, args=(n, client), daemon=True)
            t.start()
            self._threads.append(t)

    def _relay(self, n: int, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, ("c2t", upstream))
        sel.register(upstream, selectors.EVENT_READ, ("t2c", client))
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.2):
                    direction, dst = key.data
                    try:
                        data = key.fileobj.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        return
                    with self._lock:
                        self.chunks.append(Chunk(time.monotonic(), n, direction, data))
                    dst.sendall(data)
        finally:
            sel.close()
            client.close()
            upstream.close()

    def whitespace_chunks(self, direction: str = "c2t", since: float = 0.0) -> list[Chunk]:
        """Chunks consisting only of whitespace (XMPP whitespace keepalives on cleartext streams)."""
        with self._lock:
            return [c for c in self.chunks if c.direction == direction and c.at >= since
                    and c.data.strip() == b"" and c.data]

    def last_activity(self, direction: str = "c2t") -> float:
        with self._lock:
            times = [c.at for c in self.chunks if c.direction == direction]
        return max(times) if times else 0.0

    def close(self) -> None:
        self._stop.set()
        try:
            self._srv.close()
        except OSError:
            pass
        for t in self._threads:
            t.join(timeout=2)

    def diagnostics(self) -> str:
        with self._lock:
            return "\n".join(f"{c.at:.2f} conn{c.conn} {c.direction} {c.data[:120]!r}"
                             for c in self.chunks[-40:])

    def stop(self) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TcpProxy({self.listen} -> {self.target})"
