"""The HTTP side of `serve`: waitress (a production WSGI server) and a small router.

Why waitress: it is a pure-Python WSGI server with no dependencies, in production use for
years; its model (one listener thread, a pool of request threads) is the model of Bolt's
synchronous ``App`` and of our background worker, so nothing in `serve` is async. It
installs no signal handlers of its own, so ``process.Server`` decides what SIGTERM does.

Routes are plain WSGI applications by exact path. ``GET /healthz`` (liveness: 200 while the
process serves) and ``GET /readyz`` (readiness: the journal and the clusters answer) are
here; other components mount theirs (the Slack app ``POST /slack/events``, ``metrics``
``GET /metrics``).

Stopping: the listening socket is closed first (no new requests), requests in flight get
until the deadline to finish, then every connection is closed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger("crystal_runbook.serve")

MAX_BODY = 1024 * 1024
"""Bytes waitress buffers of a request body at most (413 beyond). Routes set their own,
smaller limits (the Slack endpoint: 64 KB)."""
THREADS = 8
"""Request threads. A request only decides and answers; work goes to the worker."""


def text_response(
    start_response: StartResponse, status: str, body: str, *, content_type: str = "text/plain"
) -> Iterable[bytes]:
    data = body.encode()
    start_response(
        status,
        [("Content-Type", f"{content_type}; charset=utf-8"), ("Content-Length", str(len(data)))],
    )
    return [data]


class Router:
    """Exact-path routing to WSGI applications; 404 otherwise."""

    def __init__(self) -> None:
        self.routes: dict[str, WSGIApplication] = {}

    def mount(self, path: str, app: WSGIApplication) -> None:
        self.routes[path] = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        app = self.routes.get(str(environ.get("PATH_INFO") or ""))
        if app is None:
            return text_response(start_response, "404 Not Found", "not found\n")
        return app(environ, start_response)


def healthz(components: Callable[[], list[str]]) -> WSGIApplication:
    """``GET /healthz``: 200 and the components while this process serves."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return text_response(start_response, "405 Method Not Allowed", "use GET\n")
        body = json.dumps({"status": "ok", "components": components()})
        return text_response(start_response, "200 OK", body + "\n", content_type="application/json")

    return app


def readyz(check: Callable[[], list[str]], *, cache: float = 1.0) -> WSGIApplication:
    """``GET /readyz``: 200 when ``check`` finds nothing wrong, else 503 with what is wrong.

    ``check``'s answer is reused for ``cache`` seconds, so probes and scrapers cannot turn
    into a load on the journal or the API servers.
    """
    lock = threading.Lock()
    last: list[tuple[float, list[str]]] = []

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return text_response(start_response, "405 Method Not Allowed", "use GET\n")
        with lock:
            if not last or time.monotonic() - last[0][0] > cache:
                last[:] = [(time.monotonic(), check())]
            problems = last[0][1]
        body = json.dumps({"status": "not ready" if problems else "ready", "problems": problems})
        status = "503 Service Unavailable" if problems else "200 OK"
        return text_response(start_response, status, body + "\n", content_type="application/json")

    return app


class HttpServer:
    """waitress on ``host:port`` (port 0: a free one, see ``port`` after ``start``)."""

    name = "http"

    def __init__(self, router: Router, *, host: str, port: int, threads: int = THREADS) -> None:
        self.router = router
        self.host = host
        self.requested_port = port
        self.threads = threads
        self._map: dict[int, Any] = {}
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.effective_port) if self._server is not None else 0

    def start(self) -> None:
        from waitress.server import create_server

        self._server = create_server(
            self.router,
            map=self._map,
            host=self.host,
            port=self.requested_port,
            threads=self.threads,
            max_request_body_size=MAX_BODY,
            ident="crystal-runbook",
            clear_untrusted_proxy_headers=True,
        )
        self._thread = threading.Thread(target=self._server.run, name="serve-http", daemon=True)
        self._thread.start()

    def stop(self, deadline: float) -> None:
        server = self._server
        if server is None:
            return
        from waitress import wasyncore

        # in the server's own loop thread: stop listening, keep the connections in flight
        server.trigger.pull_trigger(lambda: wasyncore.dispatcher.close(server))
        dispatcher = server.task_dispatcher
        drain = min(deadline, time.monotonic() + 5.0)
        while time.monotonic() < drain and (dispatcher.active_count or dispatcher.queue):
            time.sleep(0.02)
        server.trigger.pull_trigger(lambda: wasyncore.close_all(self._map))
        if self._thread is not None:
            self._thread.join(max(0.1, deadline - time.monotonic()))
        dispatcher.shutdown(timeout=max(0.1, min(5.0, deadline - time.monotonic())))
        self._server = None
