"""Socket Mode for the local Slack server: a WebSocket endpoint speaking Slack's envelopes.

Why: `serve --socket-mode` connects out to Slack (``apps.connections.open``, then a
WebSocket) instead of taking HTTP requests; its test needs the other end on loopback. This
is a standard-library WebSocket server (RFC 6455: the handshake, masked client frames,
text, ping/pong, close) behind ``SlackServer``'s ``/link/`` path. It speaks the envelope
protocol: on connect it sends ``{"type": "hello", ...}``; ``send(type, payload)`` sends
``{"envelope_id", "type", "payload", "accepts_response_payload"}`` and waits for the app's
acknowledgement ``{"envelope_id", "payload"?}``, which it returns::

    ack = slack.socket.send("slash_commands", {"command": "/crystal", "text": "help", ...})
    assert ack["payload"]["text"].startswith("*crystal-runbook*")
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


@dataclass
class _Connection:
    sock: socket.socket
    lock: threading.Lock = field(default_factory=threading.Lock)
    open: bool = True

    def send(self, opcode: int, payload: bytes) -> None:
        head = bytes([0x80 | opcode])
        size = len(payload)
        if size < 126:
            head += bytes([size])
        elif size < 1 << 16:
            head += bytes([126]) + struct.pack("!H", size)
        else:
            head += bytes([127]) + struct.pack("!Q", size)
        with self.lock:
            self.sock.sendall(head + payload)

    def _read(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def receive(self) -> tuple[int, bytes]:
        first, second = self._read(2)
        opcode, size = first & 0x0F, second & 0x7F
        if size == 126:
            size = struct.unpack("!H", self._read(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", self._read(8))[0]
        mask = self._read(4) if second & 0x80 else b"\0\0\0\0"
        raw = self._read(size)
        return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(raw))


class SocketModeEndpoint:
    """The WebSocket end of Socket Mode, and the envelopes sent and acknowledged."""

    def __init__(self) -> None:
        self.tickets: set[str] = set()
        self.sent: list[dict[str, Any]] = []
        """Envelopes sent to the app, oldest first."""
        self.acks: dict[str, dict[str, Any]] = {}
        """The app's acknowledgements by envelope id."""
        self.connections = 0
        self._current: _Connection | None = None
        self._cond = threading.Condition()

    def ticket(self) -> str:
        value = secrets.token_urlsafe(12)
        self.tickets.add(value)
        return value

    def connected(self, timeout: float = 10.0) -> bool:
        """Wait until an app holds a connection (after its hello)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._current is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def send(
        self, kind: str, payload: dict[str, Any], *, timeout: float = 10.0, accepts: bool = True
    ) -> dict[str, Any]:
        """Send one envelope and return the app's acknowledgement of it.

        Raises:
            TimeoutError: no connection, or no acknowledgement in time.
        """
        if not self.connected(timeout):
            raise TimeoutError("no Socket Mode connection")
        envelope_id = secrets.token_hex(8)
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": accepts,
        }
        with self._cond:
            connection = self._current
            self.sent.append(envelope)
        assert connection is not None  # noqa: S101 - connected() said so  # nosec B101
        connection.send(TEXT, json.dumps(envelope).encode())
        deadline = time.monotonic() + timeout
        with self._cond:
            while envelope_id not in self.acks:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no acknowledgement of envelope {envelope_id}")
                self._cond.wait(left)
            return self.acks[envelope_id]

    def close_all(self) -> None:
        with self._cond:
            connection, self._current = self._current, None
        if connection is not None:
            connection.open = False
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)

    def handle(self, handler: BaseHTTPRequestHandler, query: dict[str, str]) -> None:
        """Serve one WebSocket connection in the request's thread until it closes."""
        key = handler.headers.get("Sec-WebSocket-Key") or ""
        upgrade = (handler.headers.get("Upgrade") or "").lower() == "websocket"
        if not key or not upgrade or query.get("ticket") not in self.tickets:
            handler.send_response(400 if upgrade else 426)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        self.tickets.discard(query["ticket"])
        # RFC 6455 mandates SHA-1 here (a handshake digest, not a security measure)
        digest = hashlib.sha1((key + GUID).encode(), usedforsecurity=False).digest()
        accept = base64.b64encode(digest).decode()
        handler.send_response(101, "Switching Protocols")
        handler.send_header("Upgrade", "websocket")
        handler.send_header("Connection", "Upgrade")
        handler.send_header("Sec-WebSocket-Accept", accept)
        handler.end_headers()
        handler.wfile.flush()
        connection = _Connection(handler.connection)
        hello = {
            "type": "hello",
            "num_connections": 1,
            "debug_info": {"host": "crystal-local", "approximate_connection_time": 3600},
            "connection_info": {"app_id": "A0CRYSTAL"},
        }
        connection.send(TEXT, json.dumps(hello).encode())
        with self._cond:
            self._current = connection
            self.connections += 1
            self._cond.notify_all()
        try:
            self._serve(connection)
        finally:
            with self._cond:
                if self._current is connection:
                    self._current = None
            handler.close_connection = True

    def _serve(self, connection: _Connection) -> None:
        while connection.open:
            try:
                opcode, data = connection.receive()
            except (ConnectionError, OSError):
                return
            if opcode == PING:
                connection.send(PONG, data)
            elif opcode == CLOSE:
                with contextlib.suppress(OSError):
                    connection.send(CLOSE, data[:2])
                return
            elif opcode == TEXT:
                try:
                    message = json.loads(data.decode("utf-8"))
                except ValueError:
                    continue
                if isinstance(message, dict) and "envelope_id" in message:
                    with self._cond:
                        self.acks[str(message["envelope_id"])] = message
                        self._cond.notify_all()
