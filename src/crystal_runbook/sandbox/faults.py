"""Fault injection: make some API requests fail, slow down or lose their connection.

Reliability tests and benchmarks need a cluster that misbehaves on purpose. A ``Fault``
matches requests by path pattern (a regular expression searched in the path) and method,
fires for a fraction of them (and at most ``count`` times), and then answers 500 or 429
(with ``Retry-After``), drops the connection without an answer, or adds latency before the
request is served normally. Faults are set from Python (``Sandbox.faults``), from the CLI
(``--fault SPEC``) and over HTTP (``/_sandbox/faults``); the sandbox's own control endpoints
are never faulted.

Spec syntax (CLI): ``KIND[,key=value...]`` where KIND is an HTTP status (``500``, ``503``,
``429``), ``drop`` or ``latency=SECONDS``; keys are ``fraction``, ``path``, ``method``,
``count``, ``retry_after``. Examples: ``500,fraction=0.1``, ``429,path=/apis/apps,retry_after=2``,
``drop,count=1``, ``latency=0.2,path=/api/v1/namespaces/crystal/pods``.
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = ("status", "drop", "latency")


class FaultSpecError(ValueError):
    """A fault description that does not parse; the message says what to write instead."""


@dataclass(frozen=True)
class Fault:
    """One rule: which requests, how often, and what goes wrong."""

    kind: str  # "status", "drop" or "latency"
    status: int = 500
    latency: float = 0.0
    fraction: float = 1.0
    path: str | None = None
    method: str | None = None
    count: int | None = None
    retry_after: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FaultSpecError(f"fault kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if not 0.0 <= self.fraction <= 1.0:
            raise FaultSpecError(f"fraction must be between 0 and 1, not {self.fraction}")
        if self.kind == "status" and not 400 <= self.status <= 599:
            raise FaultSpecError(f"a status fault needs a 4xx or 5xx code, not {self.status}")
        if self.latency < 0 or self.retry_after < 0:
            raise FaultSpecError("latency and retry_after must not be negative")
        if self.count is not None and self.count < 0:
            raise FaultSpecError("count must not be negative")
        if self.path is not None:
            try:
                re.compile(self.path)
            except re.error as exc:
                raise FaultSpecError(
                    f"path {self.path!r} is not a regular expression: {exc}"
                ) from exc

    @property
    def label(self) -> str:
        """A short name for the request log: ``status:429``, ``drop``, ``latency:0.2``."""
        if self.kind == "status":
            return f"status:{self.status}"
        if self.kind == "latency":
            return f"latency:{self.latency:g}"
        return "drop"

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        return self.path is None or re.search(self.path, path) is not None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        """From the JSON the admin endpoint accepts (the same keys as the fields)."""
        if not isinstance(data, dict):
            raise FaultSpecError("a fault must be a JSON object")
        known = {"kind", "status", "latency", "fraction", "path", "method", "count", "retry_after"}
        unknown = set(data) - known
        if unknown:
            raise FaultSpecError(f"unknown fault keys {sorted(unknown)}; known: {sorted(known)}")
        kind = data.get("kind")
        if kind is None:
            kind = "latency" if "latency" in data else "status"
        try:
            return cls(
                kind=str(kind),
                status=int(data.get("status", 500)),
                latency=float(data.get("latency", 0.0)),
                fraction=float(data.get("fraction", 1.0)),
                path=data.get("path"),
                method=data.get("method"),
                count=None if data.get("count") is None else int(data["count"]),
                retry_after=float(data.get("retry_after", 1.0)),
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, FaultSpecError):
                raise
            raise FaultSpecError(f"bad fault {data!r}: {exc}") from exc

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """From the CLI form, e.g. ``429,fraction=0.5,path=/apis/apps,retry_after=2``."""
        parts = [p.strip() for p in spec.split(",") if p.strip()]
        if not parts:
            raise FaultSpecError(
                "empty fault spec; write e.g. 500,fraction=0.1 or drop or latency=0.2"
            )
        head, options = parts[0], parts[1:]
        data: dict[str, Any] = {}
        if head.isdigit():
            data.update(kind="status", status=int(head))
        elif head == "drop":
            data["kind"] = "drop"
        elif head.startswith("latency="):
            data.update(kind="latency", latency=head.split("=", 1)[1])
        else:
            raise FaultSpecError(
                f"fault {spec!r} must start with an HTTP status (500, 429), 'drop' "
                "or 'latency=SECONDS'"
            )
        for option in options:
            if "=" not in option:
                raise FaultSpecError(f"fault option {option!r} must be key=value")
            key, value = option.split("=", 1)
            data[key.strip().replace("-", "_")] = value.strip()
        return cls.from_dict(data)


@dataclass
class Decision:
    """What to do to one request: wait ``latency`` seconds, then answer, fail or drop."""

    latency: float = 0.0
    status: int | None = None
    retry_after: float | None = None
    drop: bool = False
    faults: list[str] = field(default_factory=list)


class FaultSet:
    """The active faults, safe to change from any thread while requests are served."""

    def __init__(self, faults: list[Fault] | None = None, *, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = list(faults or [])
        self._fired: list[int] = [0] * len(self._faults)
        self._random = random.Random(seed)  # noqa: S311 - choosing requests to fail, not security  # nosec B311

    def set(self, faults: list[Fault]) -> None:
        """Replace all faults."""
        with self._lock:
            self._faults = list(faults)
            self._fired = [0] * len(self._faults)

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)
            self._fired.append(0)

    def clear(self) -> None:
        self.set([])

    def describe(self) -> list[dict[str, Any]]:
        """The faults with how often each has fired."""
        with self._lock:
            return [
                dict(f.as_dict(), fired=n) for f, n in zip(self._faults, self._fired, strict=True)
            ]

    def decide(self, method: str, path: str) -> Decision | None:
        """What the faults do to this request, or None if nothing."""
        with self._lock:
            if not self._faults:
                return None
            decision = Decision()
            for i, fault in enumerate(self._faults):
                if fault.count is not None and self._fired[i] >= fault.count:
                    continue
                if not fault.matches(method, path):
                    continue
                if fault.fraction < 1.0 and self._random.random() >= fault.fraction:
                    continue
                if fault.kind == "latency":
                    decision.latency += fault.latency
                elif decision.status is not None or decision.drop:
                    continue  # one failure per request; the first matching rule wins
                elif fault.kind == "drop":
                    decision.drop = True
                else:
                    decision.status = fault.status
                    if fault.status in {429, 503}:
                        decision.retry_after = fault.retry_after
                self._fired[i] += 1
                decision.faults.append(fault.label)
            if not decision.faults:
                return None
            return decision
