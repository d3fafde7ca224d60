"""`serve` put together: which components run, in which order, and the process's logging.

``build`` is the composition point (the list of components ``process.Server`` starts and
stops): the background worker; with ``slack`` the Slack app; with ``scheduler`` and
``watch`` the elected duties (``duties.Duties`` over ``service.duties``: the drill scheduler
and one watcher per service of `inventory/serve.yaml`, each run by one leader among the
replicas); while a Slack token is set, the outbox flush (every ``flush_interval`` seconds
what waits in the outbox, notifications and live progress states that Slack did not take,
is delivered, oldest first, as `crystal-runbook outbox flush` does); and the HTTP server
with ``/healthz``, ``/readyz`` and ``/metrics``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from crystal_runbook.engine.secrets import Redactor
from crystal_runbook.server import http
from crystal_runbook.server.process import Component, Periodic, Server
from crystal_runbook.server.worker import Worker
from crystal_runbook.service import incidents
from crystal_runbook.service.workspace import Workspace

if TYPE_CHECKING:
    from crystal_runbook.server.duties import Duties
    from crystal_runbook.server.metrics import Metrics
    from crystal_runbook.service.leader import Leadership
    from crystal_runbook.service.slack import SlackCommands


@dataclass(frozen=True)
class ServeOptions:
    """What `crystal-runbook serve` was asked to run."""

    host: str = "0.0.0.0"  # noqa: S104 - Slack must reach it; put it behind your ingress  # nosec B104
    port: int = 3000
    slack: bool = False
    socket_mode: bool = False
    grace: float = 25.0
    """Seconds running jobs get after SIGTERM (Kubernetes' default grace is 30 s)."""
    scheduler: bool = False
    """Run due drills (`drill due --run`) while this replica leads the scheduler's Lease."""
    watch: bool = False
    """Watch the services of `inventory/serve.yaml`, each while leading its Lease."""
    flush_interval: float = 60.0
    """Seconds between two deliveries of what waits in the outbox (0: none); the first one
    right after the start."""


@dataclass
class Built:
    """A server ready to run, and its parts (tests and benchmarks look at them)."""

    server: Server
    http: http.HttpServer
    worker: Worker
    commands: SlackCommands | None = None
    components: list[Component] = field(default_factory=list)
    metrics: Metrics | None = None
    duties: Duties | None = None


def build(ws: Workspace, options: ServeOptions) -> Built:
    """The components of this `serve`, not started yet.

    Raises:
        errors.InputError: a setting, a secret or an inventory file is wrong (exit 2).
    """
    from crystal_runbook.server.duties import Duties
    from crystal_runbook.server.metrics import Metrics
    from crystal_runbook.service import duties, probes, recovery

    worker = Worker()
    router = http.Router()
    server_http = http.HttpServer(router, host=options.host, port=options.port)
    components: list[Component] = [worker]
    elected: list[Leadership] = []
    metrics = Metrics(
        read_run=ws.journal.get_run,
        outbox_depth=lambda: probes.outbox_depth(ws),
        leaderships=lambda: elected,
    )
    plan = duties.plan(
        ws,
        scheduler_on=options.scheduler,
        watch_on=options.watch,
        on_report=metrics.observe_rules,
    )
    elected += plan.leaderships
    ws.observers = (*ws.observers, metrics.sink)
    ws.origin = {**ws.origin, **recovery.origin(plan.identity, "slack")}
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
            observe_ack=metrics.observe_ack,
        )
        components += found
    campaigns = None
    if plan.leaderships:
        campaigns = Duties(plan.leaderships)
        components.append(campaigns)
    if options.flush_interval > 0 and ws.notifier.settings.configured:
        components.append(outbox_flusher(ws, options.flush_interval))
    components.append(server_http)
    server = Server(components, grace=options.grace)

    journal_probe = probes.Bounded(lambda: probes.journal(ws), what="journal")

    def problems() -> list[str]:
        if server.stopping.is_set():
            return ["stopping"]
        return probes.readiness(ws, plan.clusters, journal_probe=journal_probe)

    router.mount("/healthz", http.healthz(lambda: [c.name for c in components]))
    router.mount("/readyz", http.readyz(problems))
    router.mount("/metrics", metrics.app())
    return Built(server, server_http, worker, commands, components, metrics, campaigns)


def outbox_flusher(ws: Workspace, interval: float) -> Periodic:
    """Deliver what waits in the outbox every ``interval`` seconds (first: at the start).

    Entries a running run is still delivering (its live progress) are skipped and come
    with the next round; what Slack still refuses stays, with its reason (`outbox list`).
    """
    log = logging.getLogger("crystal_runbook.serve")

    def flush() -> None:
        results = incidents.flush_outbox(ws)
        counts: dict[str, int] = {}
        for result in results:
            counts[result.status] = counts.get(result.status, 0) + 1
        if counts.get("sent") or counts.get("failed") or counts.get("unreadable"):
            summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
            log.info("outbox flush: %s", summary)

    return Periodic("outbox-flush", interval, flush, first=0.0)


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
    for name in (
        "slack_bolt",
        "slack_sdk",
        "crystal_runbook.slack.bolt",
        "waitress",
        "urllib3",
        "httpx",  # one line per scrape and health check
    ):
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
        if built.duties is not None:
            names = ", ".join(one.duty_name for one in built.duties.leaderships)
            identity = built.duties.leaderships[0].election.identity
            announce(f"crystal-runbook serve: replica {identity} campaigns for {names}")

    return built.server.run(ready=ready)
