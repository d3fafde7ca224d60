"""`serve` put together: which components run, in which order, and the process's logging.

``build`` is the composition point (the list of components ``process.Server`` starts and
stops). Today: the background worker, the HTTP server (``/healthz``) and, with ``slack``,
the Slack app. Issue 15 adds its components here (scheduler, watchers, ``/readyz``,
``/metrics``, leader election) without touching the others.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from crystal_runbook.engine.secrets import Redactor
from crystal_runbook.server import http
from crystal_runbook.server.process import Component, Server
from crystal_runbook.server.worker import Worker
from crystal_runbook.service.workspace import Workspace

if TYPE_CHECKING:
    from crystal_runbook.service.slack import SlackCommands


@dataclass(frozen=True)
class ServeOptions:
    """What `crystal-runbook serve` was asked to run."""

    host: str = "0.0.0.0"  # noqa: S104 - Slack must reach it; put it behind your ingress
    port: int = 3000
    slack: bool = False
    socket_mode: bool = False
    grace: float = 25.0
    """Seconds running jobs get after SIGTERM (Kubernetes' default grace is 30 s)."""


@dataclass
class Built:
    """A server ready to run, and its parts (tests and benchmarks look at them)."""

    server: Server
    http: http.HttpServer
    worker: Worker
    commands: SlackCommands | None = None
    components: list[Component] = field(default_factory=list)


def build(ws: Workspace, options: ServeOptions) -> Built:
    """The components of this `serve`, not started yet.

    Raises:
        errors.InputError: a setting, a secret or an inventory file is wrong (exit 2).
    """
    worker = Worker()
    router = http.Router()
    server_http = http.HttpServer(router, host=options.host, port=options.port)
    components: list[Component] = [worker]
    commands = None
    if options.slack or options.socket_mode:
        from crystal_runbook.server import slack
        from crystal_runbook.server.slack.settings import SlackAppSettings

        commands, found = slack.components(
            base=ws,
            router=router,
            worker=worker,
            settings=SlackAppSettings.from_env(),
            socket_mode=options.socket_mode,
        )
        components += found
    components.append(server_http)
    router.mount("/healthz", http.healthz(lambda: [c.name for c in components]))
    server = Server(components, grace=options.grace)
    return Built(server, server_http, worker, commands, components)


class RedactingFilter(logging.Filter):
    """Secrets never reach the log: every record's message passes the redactor."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redactor.text(record.getMessage())
        record.args = None
        return True


def setup_logging(redactor: Redactor, *, verbose: int) -> None:
    """Log lines on stderr, redacted; Bolt's and slack_sdk's own chatter only when -vv."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO)
    quiet = logging.DEBUG if verbose >= 2 else logging.WARNING
    for name in ("slack_bolt", "slack_sdk", "crystal_runbook.slack.bolt", "waitress", "urllib3"):
        logging.getLogger(name).setLevel(quiet)


def serve(
    ws: Workspace, options: ServeOptions, *, verbose: int, announce: Callable[[str], None]
) -> int:
    """Run until SIGTERM or SIGINT; returns the exit code (0)."""
    setup_logging(ws.redactor, verbose=verbose)
    built = build(ws, options)

    def ready() -> None:
        where = f"http://{options.host}:{built.http.port}"
        routes = ", ".join(sorted(built.http.router.routes))
        mode = " (Slack by Socket Mode)" if options.socket_mode else ""
        announce(f"crystal-runbook serve: listening on {where} ({routes}){mode}")

    return built.server.run(ready=ready)
