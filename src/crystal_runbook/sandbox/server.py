"""The HTTP/1.1 server: sockets, keep-alive, chunked streams, faults and the request log.

Built on the standard library's ``ThreadingHTTPServer`` (one thread per connection, sync
code). What it adds, each for a reason found the hard way:

- ``TCP_NODELAY`` on every connection and each response written with one ``sendall``:
  with Nagle's algorithm on, a small second write waits for a delayed ACK (about 40 ms);
- request bodies are always read, DELETE included (kubectl sends DeleteOptions), or the
  next request on the keep-alive connection would start in the middle of a body;
- watches and log follows are written as chunked streams, one chunk per batch of events;
- open connections are tracked, so ``stop()`` can shut idle keep-alive sockets and every
  handler thread ends and is joined: no thread and no port outlive the server;
- faults are applied here, before routing, to every path except the sandbox's own control
  endpoints; every request is appended to the buffered request log when it completes.
"""

from __future__ import annotations

import contextlib
import logging
import select
import selectors
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from crystal_runbook.sandbox import apierrors, faults, requestlog, store
from crystal_runbook.sandbox.api import Request, Response

log = logging.getLogger("crystal_runbook.sandbox")

App = Callable[[Request], Response]
CONTROL_PREFIXES = ("/_sandbox/faults", "/_sandbox/config", "/_sandbox/status", "/_sandbox/flush")
MAX_BODY = 64 * 1024 * 1024


class HangupMonitor:
    """Notices when the client of a streaming response hangs up, and wakes the stream.

    A watch or log follow sleeps on a condition variable, not on its socket, so without
    help it would only notice a departed client when it next writes. This thread watches the
    sockets of running streams; when one reads EOF it sets that stream's flag and calls
    ``wake`` (which notifies the store's conditions), so the handler thread ends at once.
    """

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake_streams = wake
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._commands: list[tuple[str, socket.socket, threading.Event | None]] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="sandbox-hangups", daemon=True)
        self._thread.start()

    def watch(self, sock: socket.socket) -> threading.Event:
        """Start watching ``sock``; the returned event is set when its peer hangs up."""
        gone = threading.Event()
        self._command("add", sock, gone)
        return gone

    def forget(self, sock: socket.socket) -> None:
        self._command("remove", sock, None)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
        self._poke()
        self._thread.join()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _command(self, what: str, sock: socket.socket, gone: threading.Event | None) -> None:
        with self._lock:
            self._commands.append((what, sock, gone))
        self._poke()

    def _poke(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _apply_commands(self) -> bool:
        with self._lock:
            commands, self._commands = self._commands, []
            stopping = self._stopping
        for what, sock, gone in commands:
            with contextlib.suppress(KeyError, ValueError, OSError):
                if what == "add":
                    self._selector.register(sock, selectors.EVENT_READ, gone)
                else:
                    self._selector.unregister(sock)
        return not stopping

    def _run(self) -> None:
        while self._apply_commands():
            for key, _ in self._selector.select():
                if key.data is None:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                    continue
                sock = key.fileobj
                assert isinstance(sock, socket.socket)  # noqa: S101 - only sockets are registered  # nosec B101
                try:
                    data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(sock)
                if not data:  # EOF: the client is gone (data would be a pipelined request)
                    key.data.set()
                    self._wake_streams()


class Server(ThreadingHTTPServer):
    """A threading HTTP server that can be stopped with no thread or socket left behind.

    Its threads are daemon threads that ``stop()`` joins explicitly: stopping is clean, and
    a program that forgets to stop a sandbox still exits instead of hanging on them.
    """

    daemon_threads = True
    block_on_close = False  # stop() joins the connection threads itself
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        app: App,
        *,
        fault_set: faults.FaultSet,
        request_log: requestlog.RequestLog | None,
        wake_streams: Callable[[], None] = lambda: None,
    ) -> None:
        self.app = app
        self.fault_set = fault_set
        self.request_log = request_log
        self.internal_errors: list[str] = []
        self._conns: set[socket.socket] = set()
        self._workers: set[threading.Thread] = set()
        self._conns_lock = threading.Lock()
        self._stopping = False
        super().__init__(address, Handler)  # binds: raises OSError if the port is taken
        self.hangups = HangupMonitor(wake_streams)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection in a tracked thread (one per connection)."""
        sock: socket.socket = request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        worker = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name="sandbox-http-conn",
            daemon=True,
        )
        with self._conns_lock:
            if self._stopping:
                self.shutdown_request(request)
                return
            self._conns.add(sock)
            self._workers.add(worker)
        worker.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._conns_lock:
                self._workers.discard(threading.current_thread())

    def drop_connections(self) -> int:
        """Shut every open client connection, watches and log follows included, as an API
        server that went away does (chaos tests: with a ``drop`` fault on every path, the
        API is down until the fault is cleared). Returns how many were open."""
        with self._conns_lock:
            conns = list(self._conns)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return len(conns)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (killed with SIGKILL, timed out) is no error
        of the sandbox: say nothing. Anything else is printed as the standard library does."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def serve_in_thread(self) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="sandbox-http",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, end every connection, join every thread, close the port."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
        with self._conns_lock:
            self._stopping = True
            conns = list(self._conns)
            workers = list(self._workers)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for worker in workers:
            worker.join()
        self.server_close()
        self.hangups.stop()


class Handler(BaseHTTPRequestHandler):
    """One connection; ``_serve`` runs once per request on it."""

    protocol_version = "HTTP/1.1"
    server_version = "crystal-sandbox"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr log: requests go to the request log."""

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_OPTIONS(self) -> None:
        self._serve()

    # ---------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline(1024).split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(8)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise apierrors.ApiError(413, "RequestEntityTooLarge", "the request body is too large")
        return self.rfile.read(length) if length > 0 else b""

    _gone: threading.Event | None = None

    def _client_gone(self) -> bool:
        if self._gone is not None:
            return self._gone.is_set()
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return bool(self.connection.recv(1, socket.MSG_PEEK) == b"")
        except (OSError, ValueError):
            return True

    def _serve(self) -> None:
        started = time.perf_counter()
        wall = time.time()
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "method": self.command,
            "path": path,
            "query": split.query,
            "status": 0,
            "duration_ms": 0.0,
            "user_agent": self.headers.get("User-Agent", ""),
        }
        try:
            body = self._read_body()
        except (ValueError, apierrors.ApiError) as exc:
            self.close_connection = True
            err = (
                exc
                if isinstance(exc, apierrors.ApiError)
                else apierrors.bad_request(f"bad request body: {exc}")
            )
            self._send(Response(err.code, store.dumps(err.status())), entry, started)
            return
        decision = None
        if not path.startswith(CONTROL_PREFIXES):
            decision = self.server.fault_set.decide(self.command, path)
        if decision is not None:
            entry["fault"] = decision.faults
            if decision.latency:
                time.sleep(decision.latency)
            if decision.drop:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                self._finish(entry, started)
                return
            if decision.status is not None:
                self._send(self._fault_response(decision), entry, started)
                return
        request = Request(
            method=self.command,
            path=path,
            query=query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            client_gone=self._client_gone,
        )
        try:
            response = self.server.app(request)
        except Exception as exc:  # noqa: BLE001 - a sandbox bug must answer 500, not kill the connection
            text = "".join(traceback.format_exception(exc))
            log.error("internal error on %s %s\n%s", self.command, self.path, text)
            self.server.internal_errors.append(f"{self.command} {self.path}: {exc!r}\n{text}")
            err = apierrors.internal(repr(exc))
            response = Response(500, store.dumps(err.status()))
        self._send(response, entry, started)

    def _finish(self, entry: dict[str, Any], started: float) -> None:
        entry["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
        if self.server.request_log is not None:
            self.server.request_log.append(entry)

    @staticmethod
    def _fault_response(decision: faults.Decision) -> Response:
        status = decision.status or 500
        headers: dict[str, str] = {}
        details: dict[str, Any] | None = None
        if decision.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(decision.retry_after)))
            details = {"retryAfterSeconds": max(1, round(decision.retry_after))}
        reasons = {
            429: "TooManyRequests",
            500: "InternalError",
            503: "ServiceUnavailable",
            504: "Timeout",
            409: "Conflict",
            404: "NotFound",
            403: "Forbidden",
        }
        err = apierrors.ApiError(
            status,
            reasons.get(status, "Unknown"),
            "Too many requests, please try again later."
            if status == 429
            else f"injected fault: HTTP {status}",
            details=details,
            headers=headers,
        )
        return Response(status, store.dumps(err.status()), "application/json", headers)

    def _head(self, status: int, headers: dict[str, str]) -> bytes:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        lines = [f"HTTP/1.1 {status} {phrase}\r\n"]
        lines += [f"{k}: {v}\r\n" for k, v in headers.items()]
        if self.close_connection:
            lines.append("Connection: close\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")

    def _send(self, response: Response, entry: dict[str, Any], started: float) -> None:
        """Write the response; the request is logged before a full answer is written (so
        a client that has its answer finds it in the log) and after a stream ends."""
        entry["status"] = response.status
        headers = {"Content-Type": response.content_type, "Cache-Control": "no-cache, private"}
        headers.update(response.headers)
        try:
            if response.stream is None:
                headers["Content-Length"] = str(len(response.body))
                body = b"" if self.command == "HEAD" else response.body
                self._finish(entry, started)
                self.wfile.write(self._head(response.status, headers) + body)
                return
            headers["Transfer-Encoding"] = "chunked"
            entry["stream"] = True
            self._gone = self.server.hangups.watch(self.connection)
            try:
                self.wfile.write(self._head(response.status, headers))
                for chunk in response.stream:
                    if chunk:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            finally:
                self._finish(entry, started)
                self.server.hangups.forget(self.connection)
                if self._gone.is_set():
                    self.close_connection = True
                self._gone = None
                close = getattr(response.stream, "close", None)
                if close is not None:
                    close()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError):
            self.close_connection = True
