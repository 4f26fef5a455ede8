"""A misbehaving S3 endpoint on 127.0.0.1 for the deadline and dead-server tests: a TCP proxy in front of moto.

``BadServer(upstream)`` forwards every connection to the moto server until told
otherwise; ``mode`` switches at any time (existing connections follow it on
their next request):

- ``"forward"``: a working server (the store is uploaded and opened through it);
- ``"stall"``: accepts connections, reads the request, never answers;
- ``"delay"``: each GET is forwarded only after ``delay`` seconds;
- ``"drop"``: reads the request, then closes the connection without a word;
- ``"dead"``: the server died: every connection is closed and new ones are refused.

Threads and sockets only; nothing leaves loopback.
"""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit


class BadServer:
    def __init__(self, upstream: str, delay: float = 40.0):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.mode, self.delay = "forward", delay
        self._listener: socket.socket | None = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def set(self, mode: str) -> None:
        assert mode in ("forward", "stall", "delay", "drop", "dead"), mode
        self.mode = mode
        if mode == "dead":
            with self._lock:
                listener, self._listener = self._listener, None
                conns, self._conns = self._conns, []
            if listener is not None:
                listener.close()
            for conn in conns:
                _close(conn)

    def close(self) -> None:
        self._stop.set()
        self.set("dead")

    # ------------------------------------------------------------ internals
    def _accept(self) -> None:
        while not self._stop.is_set():
            listener = self._listener
            if listener is None:
                return
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = None
        try:
            while not self._stop.is_set():
                request = client.recv(65536)
                if not request:
                    return
                mode = self.mode
                if mode == "stall":
                    while client.recv(65536):  # swallow everything, answer nothing
                        pass
                    return
                if mode in ("drop", "dead"):
                    return
                if mode == "delay" and request.startswith(b"GET "):
                    time.sleep(self.delay)
                if upstream is None:
                    upstream = socket.create_connection(self.upstream)
                    with self._lock:
                        self._conns.append(upstream)
                    threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
                upstream.sendall(request)
        except OSError:
            return
        finally:
            _close(client)
            if upstream is not None:
                _close(upstream)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        _close(dst)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
