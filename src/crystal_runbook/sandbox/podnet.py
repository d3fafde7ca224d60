"""Each running pod's own HTTP port on loopback, serving ``/health`` and ``/metrics``.

A real pod is reachable at its own address; here every pod gets a listening socket on
127.0.0.1 (the port is written to the pod's ``sandbox.crystal-runbook.io/port`` annotation).
One selector thread accepts on all of them, so a 20-replica rollout costs sockets, not
threads; each accepted connection is answered by a small worker pool, one request per
connection (``Connection: close``). What a request answers comes from a callable the
kubelet supplies, so this module knows nothing about pods beyond a key.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus

log = logging.getLogger("crystal_runbook.sandbox")

# (method, path) -> (status, content type, body); None when the pod no longer serves
Responder = Callable[[str, str], "tuple[int, str, bytes] | None"]


class PodNetwork:
    """Loopback listeners keyed by pod; ``open`` returns the port, ``close`` frees it."""

    def __init__(
        self, responder: Callable[[Hashable, str, str], tuple[int, str, bytes] | None]
    ) -> None:
        self._responder = responder
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._listeners: dict[Hashable, socket.socket] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="sandbox-pod-http")
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="sandbox-pod-net", daemon=True)
        self._thread.start()

    def open(self, key: Hashable) -> int:
        """Start listening for pod ``key``; returns the port."""
        with self._lock:
            existing = self._listeners.get(key)
            if existing is not None:
                return int(existing.getsockname()[1])
            sock = socket.create_server(("127.0.0.1", 0), backlog=64)
            sock.setblocking(False)
            self._listeners[key] = sock
            self._selector.register(sock, selectors.EVENT_READ, key)
        self._wake()
        return int(sock.getsockname()[1])

    def close(self, key: Hashable) -> None:
        """Stop listening for pod ``key`` (connections refused from now on)."""
        with self._lock:
            sock = self._listeners.pop(key, None)
            if sock is not None:
                self._selector.unregister(sock)
                sock.close()

    def stop(self) -> None:
        """Close every listener and wait for the thread and workers to finish."""
        with self._lock:
            self._stopping = True
        self._wake()
        self._thread.join()
        self._pool.shutdown(wait=True)
        with self._lock:
            for sock in self._listeners.values():
                sock.close()
            self._listeners.clear()
            self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
            for selected, _ in self._selector.select():
                if selected.data is None:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                    continue
                key = selected.data
                try:
                    conn, _ = selected.fileobj.accept()  # type: ignore[union-attr]  # a listening socket
                except (BlockingIOError, OSError):
                    continue
                conn.setblocking(True)
                conn.settimeout(5.0)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    self._pool.submit(self._serve, key, conn)
                except RuntimeError:  # pool shut down while stopping
                    conn.close()

    def _serve(self, key: Hashable, conn: socket.socket) -> None:
        with conn:
            try:
                reader = conn.makefile("rb")
                with reader:
                    request_line = reader.readline(8192).decode("latin-1").strip()
                    while True:  # skip headers; bodies are not used
                        line = reader.readline(8192)
                        if line in (b"\r\n", b"\n", b""):
                            break
                parts = request_line.split()
                if len(parts) < 2:
                    return
                method, target = parts[0].upper(), parts[1]
                answer = self._responder(key, method, target.split("?", 1)[0])
                if answer is None:
                    return  # the pod stopped serving: drop the connection
                status, content_type, body = answer
                reason = HTTPStatus(status).phrase
                head = (
                    f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                ).encode()
                conn.sendall(head if method == "HEAD" else head + body)
            except OSError as exc:
                log.debug("pod %r connection ended: %s", key, exc)
