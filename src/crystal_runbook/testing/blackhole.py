"""A server that accepts connections and never answers: the worst thing a network does.

Why: a Slack (or any HTTP API) behind a broken proxy or firewall often does not refuse the
connection; it accepts it and then says nothing until the client's timeout. Tests use this
to prove that such a peer never holds a rollback up::

    with BlackHole() as hole:
        env = {"SLACK_BOT_TOKEN": "xoxb-...", "SLACK_API_URL": hole.url + "/api/"}

It only accepts: it reads nothing and writes nothing, and closes every connection on exit.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class BlackHole:
    """A loopback TCP listener on a free port that accepts and never answers."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port: int = self._sock.getsockname()[1]
        self.accepted = 0
        """Connections accepted so far."""
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="black-hole", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:  # closed
                return
            with self._lock:
                self._conns.append(conn)
                self.accepted += 1

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.close()
            self._conns.clear()
        self._thread.join(5)

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
