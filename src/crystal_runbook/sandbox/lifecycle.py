"""One running sandbox in this process: start it, reach it, control it, stop it.

``start()`` builds the store, the controllers, the API and the HTTP server, seeds ``maia``,
writes ``<state>/sandbox/kubeconfig`` and returns a ``Sandbox`` whose threads run in the
background. The handle is also how tests and the engine control the cluster from Python:
faults, timings, the request log, waiting for the controllers to settle. The same controls
are served over HTTP under ``/_sandbox/`` (status, config, faults, flush), which is how a
detached sandbox is controlled. ``stop()`` ends every thread and closes every socket.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from crystal_runbook.sandbox import (
    api,
    apierrors,
    faults,
    requestlog,
    resources,
    seed,
    server,
    store,
)
from crystal_runbook.sandbox.config import SandboxConfig
from crystal_runbook.sandbox.controllers import Controllers

CONTEXT = "crystal-sandbox"
NAMESPACE = "crystal"
DIRNAME = "sandbox"


def sandbox_dir(state_dir: Path) -> Path:
    """Where a state directory keeps the sandbox's files (``<state>/sandbox``)."""
    return Path(state_dir) / DIRNAME


def kubeconfig_text(url: str) -> str:
    """A kubeconfig with cluster, context and user ``crystal-sandbox``, namespace ``crystal``."""
    return (
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        f"- name: {CONTEXT}\n"
        "  cluster:\n"
        f"    server: {url}\n"
        "contexts:\n"
        f"- name: {CONTEXT}\n"
        "  context:\n"
        f"    cluster: {CONTEXT}\n"
        f"    user: {CONTEXT}\n"
        f"    namespace: {NAMESPACE}\n"
        f"current-context: {CONTEXT}\n"
        "preferences: {}\n"
        "users:\n"
        f"- name: {CONTEXT}\n"
        "  user:\n"
        f"    token: {CONTEXT}\n"
    )


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


class Sandbox:
    """A running sandbox; use ``start()`` to make one. Also a context manager."""

    def __init__(
        self,
        state_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ready_delay: float = 0.5,
        seed_objects: bool = True,
        fault_list: Iterable[faults.Fault] = (),
    ) -> None:
        self.state_dir = Path(state_dir)
        self.dir = sandbox_dir(self.state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = SandboxConfig(ready_delay=ready_delay)
        self.store = store.Store(resources.Registry())
        self.controllers = Controllers(self.store, self.config)
        self.faults = faults.FaultSet(list(fault_list))
        self.request_log = requestlog.RequestLog(self.dir / "requests.jsonl")
        self.started_at = time.time()
        self.seeded = seed_objects
        self._stopped = False
        self.api = api.Api(
            self.store,
            self.controllers.kubelet,
            server_address=lambda: f"{host}:{self.port}",
            admin=self._admin,
        )
        try:
            self.server = server.Server(
                (host, port),
                self.api.handle,
                fault_set=self.faults,
                request_log=self.request_log,
                wake_streams=self.store.wake_all,
            )
        except OSError:
            self.controllers.stop()
            self.request_log.close()
            raise
        self.host = host
        try:
            self.controllers.kubelet.register_node()
            if seed_objects:
                seed.seed(self.store, self.controllers.kubelet)
            self.controllers.start()
            self.controllers.queue.wait_idle(5.0)
            self.server.serve_in_thread()
            _write_atomic(self.kubeconfig_path, kubeconfig_text(self.url))
        except BaseException:
            self.stop()
            raise

    # addresses ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def kubeconfig_path(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def request_log_path(self) -> Path:
        return self.request_log.path

    def health_url(self, service: str = "maia", namespace: str = NAMESPACE) -> str:
        """The service's health through the API server's service proxy (one Ready pod)."""
        return f"{self.url}/api/v1/namespaces/{namespace}/services/{service}/proxy/health"

    def metrics_url(self, service: str = "maia", namespace: str = NAMESPACE) -> str:
        """The service's aggregated metrics (all pods in one scrape)."""
        return f"{self.url}/_sandbox/services/{namespace}/{service}/metrics"

    # control --------------------------------------------------------------------------

    @property
    def ready_delay(self) -> float:
        return self.config.ready_delay

    @ready_delay.setter
    def ready_delay(self, seconds: float) -> None:
        self.config.update({"ready_delay": seconds})

    def settle(self, timeout: float = 5.0) -> bool:
        """Wait until the controllers have nothing queued (timers may still be pending)."""
        return self.controllers.queue.wait_idle(timeout)

    def flush_requests(self) -> None:
        """Write the buffered request log now."""
        self.request_log.flush()

    def requests(self) -> list[dict[str, Any]]:
        """Every logged request so far (flushes first)."""
        self.flush_requests()
        with self.request_log_path.open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    @property
    def internal_errors(self) -> list[str]:
        """Unexpected exceptions in request handlers and controllers (should stay empty)."""
        return [*self.server.internal_errors, *self.controllers.queue.errors]

    def status(self) -> dict[str, Any]:
        """What ``GET /_sandbox/status`` answers."""
        counts = {
            res.plural: len(self.store.objects(res)[0])
            for res in self.store.registry.resources
            if not res.computed
        }
        return {
            "url": self.url,
            "pid": os.getpid(),
            "kubeconfig": str(self.kubeconfig_path),
            "context": CONTEXT,
            "namespace": NAMESPACE,
            "started_at": store.rfc3339(self.started_at),
            "uptime_seconds": round(time.time() - self.started_at, 3),
            # the seeded pods start with a past (logs, counters): they are this much older
            # than the sandbox, so `kubectl get pods` and /health show more than its uptime
            "seeded_pods_head_start_seconds": seed.POD_AGE if self.seeded else 0.0,
            "resource_version": self.store.rv,
            "objects": counts,
            "config": self.config.as_dict(),
            "faults": self.faults.describe(),
            "requests": self.request_log.count,
            "health_url": self.health_url(),
            "metrics_url": self.metrics_url(),
        }

    def _admin(self, req: api.Request) -> api.Response | None:
        path = req.path.rstrip("/")
        try:
            if path == "/_sandbox/status" and req.method == "GET":
                return api.json_response(200, self.status())
            if path == "/_sandbox/flush" and req.method == "POST":
                self.flush_requests()
                return api.json_response(200, {"requests": self.request_log.count})
            if path == "/_sandbox/config":
                if req.method in ("PUT", "PATCH", "POST"):
                    body = api.parse_body_json(req.body)
                    if not isinstance(body, dict):
                        raise apierrors.bad_request("config must be a JSON object")
                    self.config.update(body)
                elif req.method != "GET":
                    raise apierrors.method_not_allowed()
                return api.json_response(200, self.config.as_dict())
            if path == "/_sandbox/faults":
                if req.method in ("POST", "PUT"):
                    rules = _fault_rules(api.parse_body_json(req.body))
                    if req.method == "PUT":
                        self.faults.set(rules)
                    else:
                        for rule in rules:
                            self.faults.add(rule)
                elif req.method == "DELETE":
                    self.faults.clear()
                elif req.method != "GET":
                    raise apierrors.method_not_allowed()
                return api.json_response(200, {"faults": self.faults.describe()})
        except (ValueError, faults.FaultSpecError) as exc:
            raise apierrors.bad_request(str(exc)) from exc
        return None

    # stopping -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop serving and end every thread; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self.store.close()
        self.server.stop()
        self.controllers.stop()
        self.request_log.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _fault_rules(body: Any) -> list[faults.Fault]:
    """Rules from an admin request: one rule, a list, or ``{"faults": [...]}``."""
    if isinstance(body, dict) and "faults" in body:
        body = body["faults"]
    items = body if isinstance(body, list) else [body]
    return [faults.Fault.from_dict(item) for item in items]


def start(
    state_dir: Path,
    *,
    port: int = 0,
    ready_delay: float = 0.5,
    seed: bool = True,
    faults: Iterable[faults.Fault] = (),
    host: str = "127.0.0.1",
) -> Sandbox:
    """Start a sandbox in background threads of this process and return its handle.

    Args:
        state_dir: the state directory; files go to ``<state_dir>/sandbox/``.
        port: TCP port on ``host``; 0 picks a free one (see ``Sandbox.port``).
        ready_delay: seconds from a pod's start to Ready.
        seed: create namespace ``crystal`` and the ``maia`` Deployment with two revisions.
        faults: faults active from the start.
        host: the loopback address to listen on.

    Raises:
        OSError: the port is taken.
    """
    return Sandbox(
        state_dir,
        host=host,
        port=port,
        ready_delay=ready_delay,
        seed_objects=seed,
        fault_list=faults,
    )
