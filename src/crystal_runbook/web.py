"""One HTTP client per process, for every health check, scrape and Prometheus query.

A new ``httpx.Client`` per request builds a new connection pool and a new TLS context (the
CA bundle loaded again: tens of milliseconds) and opens a new connection each time. The
checks of a rollback, and a `watch` that scrapes every second, share this one instead: one
pool with kept-alive connections, one TLS context. Timeouts and redirects are chosen per
request by the caller. httpx is imported on first use, never by `--help`.

Like the Kubernetes clients of ``kube.client``, it lives as long as the process: ``close``
ends it, and runs at the process's exit (its kept-alive connections closed, not leaked).

httpx's package imports its own command-line client (``httpx._main``: click, rich's
progress and syntax, pygments) whenever those happen to be installed: about half of what
`import httpx` costs and 5 MB, for a command this process never runs. Importing this module
first puts a stand-in for it in place, so every `import httpx` after it skips that.
"""

from __future__ import annotations

import atexit
import sys
import threading
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

def _without_httpx_cli() -> None:
    if "httpx" in sys.modules or "httpx._main" in sys.modules:
        return  # imported already (a test, a library): nothing to spare any more

    def main() -> None:
        raise SystemExit("httpx's command line is not available in crystal-runbook")

    stand_in = types.ModuleType("httpx._main", "httpx's command line: not loaded (web.py)")
    stand_in.main = main  # type: ignore[attr-defined]  # the one name httpx takes from it
    sys.modules["httpx._main"] = stand_in


_without_httpx_cli()

MAX_CONNECTIONS = 16
"""Connections open at once across every caller (scrapes of many targets run in parallel)."""


class _Shared:
    """The process's client, created under a lock on first use."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.client: httpx.Client | None = None
        self.closes_at_exit = False


_SHARED = _Shared()


def client() -> httpx.Client:
    """The process's HTTP client (created on first use)."""
    with _SHARED.lock:
        if _SHARED.client is None or _SHARED.client.is_closed:
            import httpx

            if not _SHARED.closes_at_exit:
                atexit.register(close)
                _SHARED.closes_at_exit = True
            _SHARED.client = httpx.Client(
                limits=httpx.Limits(
                    max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS
                )
            )
        return _SHARED.client


def close() -> None:
    """Close the process's client; the next ``client()`` makes a new one."""
    with _SHARED.lock:
        if _SHARED.client is not None:
            _SHARED.client.close()
            _SHARED.client = None
