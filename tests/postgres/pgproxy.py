"""A TCP proxy in front of the test server that can lose a commit's acknowledgement.

It forwards bytes both ways and reads the server's messages (type byte, then
a 4-byte length: the PostgreSQL wire protocol). Armed with `drop_after_commit`,
the first ``CommandComplete`` reading ``COMMIT`` from the server is not
forwarded: both sockets are closed instead. The server has committed; the
client never hears it (the network fault of SPEC §8, for real, on loopback).
`refuse` makes new connections fail, as a server that is down does.
Only for URLs with ``sslmode=disable&gssencmode=disable`` (it reads plain bytes).
"""
from __future__ import annotations

import socket
import struct
import threading
from urllib.parse import urlsplit, urlunsplit


class Proxy:
    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        netloc = f"{parts.username}@127.0.0.1:{self.port}" if parts.username else f"127.0.0.1:{self.port}"
        self.url = urlunsplit(parts._replace(netloc=netloc, query="sslmode=disable&gssencmode=disable"))
        self.armed = threading.Event()
        self.dropped = threading.Event()
        self.refuse = False
        self._stop = False
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def drop_after_commit(self) -> None:
        self.dropped.clear()
        self.armed.set()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.refuse:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._server_side, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        _close(src, dst)

    def _server_side(self, upstream: socket.socket, client: socket.socket) -> None:
        buf = b""
        try:
            while data := upstream.recv(65536):
                buf += data
                out = b""
                while len(buf) >= 5:
                    kind, size = buf[:1], struct.unpack("!I", buf[1:5])[0]
                    if len(buf) < 1 + size:
                        break
                    message, buf = buf[:1 + size], buf[1 + size:]
                    if kind == b"C" and message[5:].startswith(b"COMMIT\x00") and self.armed.is_set():
                        self.armed.clear()
                        client.sendall(out)
                        raise ConnectionAbortedError
                    out += message
                client.sendall(out)
        except OSError:
            pass
        _close(upstream, client)
        if not self.armed.is_set():
            self.dropped.set()

    def close(self) -> None:
        self._stop = True
        self.server.close()
        _close(*self._socks)


def _close(*socks: socket.socket) -> None:
    """Shut down, then close: a close alone does not wake a thread blocked in recv (no FIN)."""
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()
