"""Kubernetes API access for a target: the official client's transport, errors translated.

We use the official `kubernetes` client's ``ApiClient`` (auth, TLS, connection pool, and
kubeconfig loading beyond static credentials, which ``kubeconfig`` reads faster) but not its
generated API classes: importing `AppsV1Api` and `CoreV1Api` costs 1.2 s here, more than a
whole `kubectl rollout undo`. Requests name the REST path and return the server's JSON as
dicts, exactly what the server sent.

- The kubeconfig is the target's `kubernetes.kubeconfig` (relative to the working directory),
  else `$KUBECONFIG`, else `~/.kube/config`; the context is the target's (else the current one).
  Inside a pod (`KUBERNETES_SERVICE_HOST` set) with none of those, the pod's service account
  is used (in-cluster configuration), as `serve` does when deployed with `deploy/`.
- urllib3's own retries are off: ``Kube.json`` retries 429, 5xx and connection errors with
  exponential backoff and jitter (tenacity), honours Retry-After, and never waits past the
  step's deadline. Other 4xx are not retried; 409 is a ``ConflictError`` for the caller to
  re-read and re-apply.
- Every failure becomes a ``TemporaryActionError`` or ``PermanentActionError`` whose message
  says what failed, where (API server, namespace) and what to do.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from crystal_runbook import errors

REQUEST_TIMEOUT = 15.0
"""Seconds one API request may take when the step has more time left."""
MAX_TRIES = 5
"""Upper bound of tries of one request; the step's deadline usually ends retries first."""

Query = Mapping[str, str | int | bool | None]

_SENT = threading.local()
"""Per thread: how many API requests this thread has sent (see ``requests_sent``)."""


def requests_sent() -> int:
    """API requests sent by the calling thread so far (retries, watches and streams included).

    Per thread, so that a step's count (a run's steps all run on one thread) is not mixed
    with the lock heartbeat's renewals or another run's requests.
    """
    return int(getattr(_SENT, "count", 0))


@dataclass(frozen=True)
class KubeTarget:
    """Where a Deployment lives, from `inventory/services.yaml`."""

    deployment: str
    namespace: str = "default"
    context: str | None = None
    kubeconfig: str | None = None
    container: str | None = None

    @classmethod
    def from_target(cls, target: Mapping[str, Any]) -> KubeTarget:
        """The `kubernetes` block of a runbook's ``target``.

        Raises:
            errors.ConfigurationError: the target has no Kubernetes block.
        """
        block = target.get("kubernetes") if target else None
        if not block:
            raise errors.ConfigurationError(
                "this service has no `kubernetes:` block in inventory/services.yaml for this "
                "environment",
                hint="add kubernetes: {context, namespace, deployment} to its environment",
            )
        return cls(
            deployment=str(block["deployment"]),
            namespace=str(block.get("namespace") or "default"),
            context=block.get("context"),
            kubeconfig=block.get("kubeconfig"),
            container=block.get("container"),
        )

    @property
    def where(self) -> str:
        context = f"context {self.context}, " if self.context else ""
        return f"{context}namespace {self.namespace}"

    def path(
        self, group: str, resource: str, name: str | None = None, sub: str | None = None
    ) -> str:
        """REST path of a namespaced resource: group "" is the core API."""
        base = "/api/v1" if not group else f"/apis/{group}"
        path = f"{base}/namespaces/{quote(self.namespace, safe='')}/{resource}"
        if name is not None:
            path += f"/{quote(name, safe='')}"
        if sub is not None:
            path += f"/{sub}"
        return path


class ConflictError(errors.TemporaryActionError):
    """409: the object changed under us; re-read and re-apply."""


class Kube:
    """One kubeconfig context's API server; reused by every action of a process."""

    def __init__(self, api_client: Any) -> None:
        self.api_client = api_client
        self.server = str(api_client.configuration.host)

    def close(self) -> None:
        self.api_client.close()

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Query | None,
        body: Any,
        content_type: str | None,
        timeout: float | tuple[float, float | None],
    ) -> Any:
        _SENT.count = requests_sent() + 1
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        params = [
            (k, str(v).lower() if isinstance(v, bool) else str(v))
            for k, v in (query or {}).items()
            if v is not None
        ]
        _, url, headers, body, _ = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=params,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        return self.api_client.call_api(
            method, url, header_params=headers, body=body, _request_timeout=timeout
        )

    def json(
        self,
        method: str,
        path: str,
        *,
        what: str,
        where: str = "",
        query: Query | None = None,
        body: Any = None,
        content_type: str | None = None,
        deadline: float | None = None,
    ) -> dict[str, Any]:
        """Send one request (with retries) and return the JSON body.

        Raises:
            errors.TemporaryActionError / PermanentActionError / ConflictError.
        """

        def remaining() -> float:
            return REQUEST_TIMEOUT if deadline is None else max(0.5, deadline - time.monotonic())

        def once() -> dict[str, Any]:
            with translate(what, server=self.server, where=where):
                response = self._send(
                    method,
                    path,
                    query=query,
                    body=body,
                    content_type=content_type,
                    timeout=min(REQUEST_TIMEOUT, remaining()),
                )
                data = response.read()
            _raise_for_status(
                response.status, data, response.headers, what=what, server=self.server, where=where
            )
            return json.loads(data) if data else {}

        return _retrying(deadline)(once)

    def stream(
        self,
        path: str,
        *,
        what: str,
        where: str = "",
        query: Query | None = None,
        read_timeout: float | None = None,
    ) -> Any:
        """Open a streaming GET (watch, log follow); the caller closes the response.

        Returns the urllib3 response. Raises like ``json`` (no retries).
        """
        with translate(what, server=self.server, where=where):
            response = self._send(
                "GET", path, query=query, body=None, content_type=None, timeout=(10.0, read_timeout)
            )
        if not 200 <= response.status <= 299:
            data = response.read()
            _raise_for_status(
                response.status, data, response.headers, what=what, server=self.server, where=where
            )
        return response.response

    def watch(
        self,
        path: str,
        *,
        what: str,
        where: str = "",
        query: Query | None = None,
        timeout_seconds: int,
    ) -> Generator[dict[str, Any], None, None]:
        """Events of a watch (`?watch=true`) until the server's timeout closes it."""
        params = {
            **(query or {}),
            "watch": True,
            "timeoutSeconds": timeout_seconds,
            "allowWatchBookmarks": True,
        }
        response = self.stream(
            path, what=what, where=where, query=params, read_timeout=timeout_seconds + 10
        )
        try:
            with translate(what, server=self.server, where=where):
                for line in iter_lines(response):
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        if status.get("code") == 410:  # too old: the caller re-lists
                            return
                        raise errors.TemporaryActionError(
                            f"{what}: watch error {status.get('code')}: {status.get('message')}"
                        )
                    yield event
        finally:
            response.release_conn()
            response.close()


def iter_lines(response: Any) -> Iterator[str]:
    """Lines of a streaming urllib3 response, as they arrive."""
    buffer = b""
    for chunk in response.stream(4096, decode_content=True):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line.decode("utf-8", "replace")
    if buffer:
        yield buffer.decode("utf-8", "replace")


_CACHE: dict[tuple[str | None, str | None], Kube] = {}
_CACHE_LOCK = threading.Lock()


def connect(target: KubeTarget) -> Kube:
    """A client for ``target``'s kubeconfig and context (cached per process).

    Raises:
        errors.ConfigurationError: no kubeconfig, unknown context, unreadable file.
    """
    path = target.kubeconfig or os.environ.get("KUBECONFIG") or None
    if path is not None:
        path = str(Path(path).expanduser())
    key = (path, target.context)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        from kubernetes.client.configuration import Configuration

        from crystal_runbook.kube import kubeconfig

        configuration = Configuration()
        shown = path or "~/.kube/config"
        file = Path(shown).expanduser()
        inside = in_cluster(path, target.context)
        if not inside and not file.exists():
            sandbox = file.name == "kubeconfig" and file.parent.name == "sandbox"
            raise errors.ConfigurationError(
                f"no kubeconfig at {file}"
                + (" (the sandbox writes it when it starts)" if sandbox else ""),
                hint=f"start it: crystal-runbook --state-dir {file.parent.parent} sandbox up "
                "--detach"
                if sandbox
                else "set KUBECONFIG, or kubernetes.kubeconfig of the environment in "
                "inventory/services.yaml",
            )
        if not inside and kubeconfig.load(str(file), target.context, configuration):
            return _keep(key, configuration)
        from kubernetes.config import kube_config
        from kubernetes.config.config_exception import ConfigException

        try:
            if inside:
                from kubernetes.config import incluster_config

                shown = "the pod's service account"
                incluster_config.load_incluster_config(  # type: ignore[no-untyped-call]  # untyped library
                    client_configuration=configuration
                )
            else:
                kube_config.load_kube_config(  # type: ignore[no-untyped-call]  # untyped library
                    config_file=path,
                    context=target.context,
                    client_configuration=configuration,
                    persist_config=False,
                )
        except ConfigException as exc:
            raise errors.ConfigurationError(
                f"cannot use kubeconfig {shown}"
                + (f" context {target.context!r}" if target.context else "")
                + f": {exc}",
                hint="check KUBECONFIG and the context in inventory/services.yaml "
                "(`kubectl config get-contexts` lists them)",
            ) from None
        except OSError as exc:
            raise errors.ConfigurationError(
                f"cannot read kubeconfig {shown}: {exc.strerror}",
                hint="set KUBECONFIG or the target's kubernetes.kubeconfig",
            ) from None
        except Exception as exc:  # noqa: BLE001 - the library fails on a malformed file with
            # whatever Python raises first (TypeError, AttributeError, a YAML error...)
            raise errors.ConfigurationError(
                f"kubeconfig {shown} is not a kubeconfig: {_malformed(path, exc)}",
                hint="point the target's kubernetes.kubeconfig (or KUBECONFIG) at a kubeconfig: "
                "a YAML mapping with clusters, contexts and users (`kubectl config view` "
                "shows one)",
            ) from None
        return _keep(key, configuration)


def _keep(key: tuple[str | None, str | None], configuration: Any) -> Kube:
    """A client on ``configuration``, cached for ``key`` (call with ``_CACHE_LOCK`` held)."""
    from kubernetes.client.api_client import ApiClient

    configuration.retries = False  # ours: bounded by the step's deadline
    kube = Kube(ApiClient(configuration))
    _CACHE[key] = kube
    return kube


def in_cluster(path: str | None, context: str | None) -> bool:
    """Whether to use the pod's service account: inside a pod, and no kubeconfig or context
    was asked for and none exists at ``~/.kube/config``."""
    if path is not None or context is not None or not os.environ.get("KUBERNETES_SERVICE_HOST"):
        return False
    return not Path("~/.kube/config").expanduser().exists()


def _malformed(path: str | None, exc: Exception) -> str:
    """What is wrong with a kubeconfig the client library could not load, in words.

    Read again only on this failure path: the YAML does not parse, or its top level is not
    a mapping, or one of its entries has the wrong shape (the library's own words then).
    """
    import yaml

    if isinstance(exc, yaml.YAMLError):
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        return f"its YAML does not parse ({problem}{where})"
    candidate = Path(path) if path else Path.home() / ".kube" / "config"
    try:
        document = yaml.safe_load(candidate.read_text(encoding="utf-8", errors="replace"))
    except (OSError, yaml.YAMLError):  # several files in KUBECONFIG, or gone meanwhile
        document = {}
    if not isinstance(document, Mapping):
        shown = repr(document)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        kind = {str: "a string", list: "a list", bool: "a boolean", int: "a number"}
        what = next((v for t, v in kind.items() if isinstance(document, t)), "a plain value")
        return f"its YAML is {what} ({shown}), not a mapping of clusters, contexts and users"
    return f"an entry has the wrong shape ({type(exc).__name__}: {str(exc)[:200]})"


def close_all() -> None:
    """Close every cached client (end of a command; tests)."""
    with _CACHE_LOCK:
        for kube in _CACHE.values():
            kube.close()
        _CACHE.clear()


def _raise_for_status(
    status: int, data: bytes | None, headers: Any, *, what: str, server: str, where: str
) -> None:
    if 200 <= status <= 299:
        return
    reason = ""
    if data:
        try:
            body = json.loads(data)
            reason = str(body.get("message", "")) if isinstance(body, dict) else ""
        except ValueError:
            reason = data[:200].decode("utf-8", "replace")
    place = ", ".join(p for p in (f"at {server}" if server else "", where) if p)
    message = f"{what}: {status} {reason}".rstrip() + (f" ({place})" if place else "")
    if status == 429 or status >= 500:
        retry_after = None
        value = headers.get("Retry-After") if headers is not None else None
        try:
            retry_after = float(value) if value is not None else None
        except ValueError:
            retry_after = None
        raise errors.TemporaryActionError(message, retry_after=retry_after)
    if status in (401, 403):
        raise errors.PermanentActionError(
            message,
            hint="your credentials cannot do this; check the kubeconfig user and its "
            "RBAC (`kubectl auth can-i`)",
        )
    if status == 404:
        raise NotFound(
            message, hint="check the namespace and deployment in inventory/services.yaml"
        )
    if status == 409:
        raise ConflictError(message)
    raise errors.PermanentActionError(message)


class NotFound(errors.PermanentActionError):
    """404: the object (or namespace) does not exist."""


@contextmanager
def translate(what: str, *, server: str = "", where: str = "") -> Iterator[None]:
    """Turn transport errors raised inside the block into the project's errors."""
    from urllib3.exceptions import HTTPError as Urllib3Error

    try:
        yield
    except Urllib3Error as exc:
        place = ", ".join(p for p in (server, where) if p)
        raise errors.TemporaryActionError(
            f"{what}: cannot reach the API server ({place}): {type(exc).__name__}",
            hint="is the cluster reachable from here (VPN, context)? `kubectl cluster-info` tells",
        ) from None


def _retrying(deadline: float | None) -> Retrying:
    backoff = wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.2)

    def stop(state: RetryCallState) -> bool:
        past = deadline is not None and time.monotonic() >= deadline
        return past or stop_after_attempt(MAX_TRIES)(state)

    def wait(state: RetryCallState) -> float:
        outcome = state.outcome
        failure = outcome.exception() if outcome is not None and outcome.failed else None
        delay = getattr(failure, "retry_after", None) or backoff(state)
        if deadline is not None:
            delay = min(delay, max(0.0, deadline - time.monotonic()))
        return float(delay)

    return Retrying(
        retry=retry_if_exception(
            lambda e: (
                isinstance(e, errors.TemporaryActionError) and not isinstance(e, ConflictError)
            )
        ),
        stop=stop,
        wait=wait,
        reraise=True,
    )
