"""The simulated service inside each pod: its metrics, health answer and log lines.

What a pod reports depends only on its image and the time since its container started, so
every value is computed when asked (no ticking threads, no stored samples):

- a good image: error rate about 0.5 %, p99 about 0.2 s, coherence about 0.8, flat memory,
  20 of 100 database connections;
- an image whose tag ends in ``-bad`` (the release that passes readiness and fails users):
  ramps over ``ramp_seconds`` to error rate 12 %, p99 3 s, coherence 0.3, memory growing
  linearly, 98 of 100 connections;
- an image whose tag ends in ``-crash``: logs a fatal error and exits (the kubelet restarts it).

Counters are exact integrals of the request rate over time, so they only grow and
``rate()`` over any window gives the value the gauges show. Log lines are a deterministic
function of (pod, attempt, line number): line ``k`` is written at a fixed time, which lets a
log request answer ``tailLines``/``sinceSeconds`` without storing anything.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

GOOD, BAD, CRASH = "good", "bad", "crash"

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# cumulative fraction of requests at or under each bucket bound: p99 = 0.2 s and 3 s
CDF_GOOD = (0.05, 0.15, 0.4, 0.75, 0.975, 0.9975, 0.9995, 1.0, 1.0, 1.0, 1.0)
CDF_BAD = (0.01, 0.03, 0.08, 0.2, 0.35, 0.55, 0.7, 0.85, 0.988, 0.998, 1.0)
MEAN_GOOD, MEAN_BAD = 0.045, 0.62
ERROR_GOOD, ERROR_BAD = 0.005, 0.12
P99_GOOD, P99_BAD = 0.2, 3.0
COHERENCE_GOOD, COHERENCE_BAD = 0.8, 0.3
DB_GOOD, DB_BAD, DB_MAX = 20, 98, 100
MEMORY_BASE = 180 * 1024 * 1024
MEMORY_GROWTH = 4 * 1024 * 1024  # bytes per second for a bad image
CPU_GOOD, CPU_BAD = 0.05, 0.4  # cores in use
LOG_KEEP = 1000  # lines a container keeps (older ones are "rotated away")

_PATHS = (
    "/api/crystals",
    "/api/crystals/{id}",
    "/api/resonance",
    "/api/emergence",
    "/api/users/me",
)
_ERRORS = (
    "coherence collapse: paradox accumulation overflow",
    "database pool exhausted (98/100 in use)",
    "upstream timeout after 3000ms",
    "resonance sync failed: stale collective state",
)


def image_tag(image: str) -> str:
    """The tag of an image reference (``registry.local/maia:1.5.0`` → ``1.5.0``)."""
    tail = image.rsplit("/", 1)[-1].split("@", 1)[0]
    return tail.split(":", 1)[1] if ":" in tail else "latest"


def image_kind(image: str) -> str:
    """``crash`` for tags ending in ``-crash``, ``bad`` for ``-bad``, else ``good``."""
    tag = image_tag(image)
    if tag.endswith("-crash"):
        return CRASH
    if tag.endswith("-bad"):
        return BAD
    return GOOD


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Counters:
    """Cumulative request counters of one pod (or of a whole service)."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: list[float] = field(default_factory=lambda: [0.0] * len(BUCKETS))
    seconds: float = 0.0

    def add(self, other: Counters) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.seconds += other.seconds
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]


@dataclass(frozen=True)
class Gauges:
    """What a pod reports right now."""

    error_ratio: float
    p99_seconds: float
    coherence: float
    memory_bytes: float
    db_in_use: float
    db_max: float = DB_MAX


@dataclass
class Container:
    """One container of one pod, as the simulated service sees it."""

    pod: str
    namespace: str
    uid: str
    name: str
    image: str
    env: Mapping[str, str]
    started_at: float
    attempt: int = 0
    ramp_seconds: float = 5.0
    rps: float = 40.0
    log_interval: float = 0.3
    crash_after: float = 0.2
    ended_at: float | None = None
    held_until: Callable[[], float] = field(default=lambda: 0.0, repr=False, compare=False)
    """When a ``-bad`` image may start to burn (the sandbox's ``burn_held_until``), read
    each time: the ramp starts at the later of this and ``started_at``."""

    @property
    def kind(self) -> str:
        return image_kind(self.image)

    @property
    def version(self) -> str:
        return image_tag(self.image)

    @property
    def mode(self) -> str:
        return str(self.env.get("CRYSTAL_MODE", "legacy"))

    # metrics ---------------------------------------------------------------------------

    def burn(self, now: float) -> float:
        """0 for a healthy image; for ``-bad``, how far the burn has ramped (0 to 1)."""
        if self.kind != BAD:
            return 0.0
        return min(1.0, max(0.0, now - self._burn_start()) / max(self.ramp_seconds, 1e-9))

    def _burn_start(self) -> float:
        return max(self.started_at, self.held_until())

    def _burn_integral(self, now: float) -> float:
        if self.kind != BAD:
            return 0.0
        t = max(0.0, now - self._burn_start())
        ramp = max(self.ramp_seconds, 1e-9)
        return t * t / (2 * ramp) if t <= ramp else ramp / 2 + (t - ramp)

    def counters(self, now: float) -> Counters:
        """Requests served since start (exact integral of rate x ramp)."""
        end = now if self.ended_at is None else min(now, self.ended_at)
        t = max(0.0, end - self.started_at)
        burned = self._burn_integral(end)
        rate = self.rps
        return Counters(
            requests=rate * t,
            errors=rate * (t * ERROR_GOOD + burned * (ERROR_BAD - ERROR_GOOD)),
            buckets=[
                rate * (t * g + burned * (b - g)) for g, b in zip(CDF_GOOD, CDF_BAD, strict=True)
            ],
            seconds=rate * (t * MEAN_GOOD + burned * (MEAN_BAD - MEAN_GOOD)),
        )

    def gauges(self, now: float) -> Gauges:
        r = self.burn(now)
        age = max(0.0, now - self.started_at)
        memory = MEMORY_BASE + 2 * 1024 * 1024 * math.sin(age / 30.0)
        if self.kind == BAD:
            memory = MEMORY_BASE + MEMORY_GROWTH * max(0.0, now - self._burn_start())
        return Gauges(
            error_ratio=ERROR_GOOD + r * (ERROR_BAD - ERROR_GOOD),
            p99_seconds=P99_GOOD + r * (P99_BAD - P99_GOOD),
            coherence=COHERENCE_GOOD - r * (COHERENCE_GOOD - COHERENCE_BAD),
            memory_bytes=memory,
            db_in_use=round(DB_GOOD + r * (DB_BAD - DB_GOOD)),
        )

    def cpu_cores(self, now: float) -> float:
        """CPU in use (cores): about 0.05 for a good image, rising to 0.4 as a bad one burns."""
        return CPU_GOOD + self.burn(now) * (CPU_BAD - CPU_GOOD)

    def health(self, now: float) -> tuple[int, dict[str, object]]:
        """The answer to ``GET /health``: 200 while error rate is under 5 %, else 503."""
        g = self.gauges(now)
        healthy = g.error_ratio < 0.05
        return (200 if healthy else 503), {
            "status": "ok" if healthy else "degraded",
            "pod": self.pod,
            "version": self.version,
            "image": self.image,
            "mode": self.mode,
            "uptime_seconds": round(max(0.0, now - self.started_at), 3),
            "checks": {
                "error_rate": round(g.error_ratio, 4),
                "p99_seconds": round(g.p99_seconds, 3),
                "coherence_ratio": round(g.coherence, 3),
                "database": f"{int(g.db_in_use)}/{int(g.db_max)} connections",
            },
        }

    # logs ------------------------------------------------------------------------------

    def _line_time(self, k: int) -> float:
        if self.kind == CRASH:
            return self.started_at + k * self.crash_after / 4
        jitter = random.Random(f"{self.uid}:{self.attempt}:{k}:t").random() * 0.9  # noqa: S311 - simulated data, not security  # nosec B311
        return self.started_at + (k + jitter) * self.log_interval

    def line_count(self, now: float) -> int:
        """How many lines this container has written by ``now``."""
        end = now if self.ended_at is None else min(now, self.ended_at)
        if end < self.started_at:
            return 0
        if self.kind == CRASH:
            return sum(1 for k in range(3) if self._line_time(k) <= end)
        k = int((end - self.started_at) / self.log_interval)
        return k + 1 if self._line_time(k) <= end else k

    def next_line_time(self, now: float) -> float | None:
        """When the next line will be written, or None if this container writes no more."""
        if self.ended_at is not None:
            return None
        n = self.line_count(now)
        if self.kind == CRASH and n >= 3:
            return None
        return self._line_time(n)

    def lines(self, start: int, stop: int) -> list[tuple[float, str]]:
        """Lines ``start``..``stop-1`` as (time written, JSON text)."""
        return [(self._line_time(k), self._line_text(k)) for k in range(max(start, 0), stop)]

    def first_kept(self, now: float) -> int:
        return max(0, self.line_count(now) - LOG_KEEP)

    def _line_text(self, k: int) -> str:
        at = self._line_time(k)
        base: dict[str, object] = {"time": _iso(at)}
        rng = random.Random(f"{self.uid}:{self.attempt}:{k}")  # noqa: S311 - simulated data  # nosec B311
        if self.kind == CRASH:
            messages = [
                ("info", f"starting maia {self.version}"),
                ("info", "loading configuration"),
                ("fatal", "panic: invalid crystal lattice configuration: nil resonance table"),
            ]
            level, msg = messages[min(k, 2)]
            return json.dumps({**base, "level": level, "msg": msg, "pod": self.pod})
        if k == 0:
            return json.dumps(
                {
                    **base,
                    "level": "info",
                    "msg": f"starting maia {self.version}",
                    "mode": self.mode,
                    "pod": self.pod,
                }
            )
        if k == 1:
            return json.dumps(
                {**base, "level": "info", "msg": "database pool ready", "max_connections": DB_MAX}
            )
        if k == 2:
            return json.dumps({**base, "level": "info", "msg": "listening", "port": 8080})
        r = self.burn(at)
        failed = rng.random() < ERROR_GOOD + r * (ERROR_BAD - ERROR_GOOD)
        cdf = CDF_BAD if rng.random() < r else CDF_GOOD
        latency = _sample(cdf, rng.random())
        path = rng.choice(_PATHS).replace("{id}", str(rng.randint(1, 9999)))
        line: dict[str, object] = {
            **base,
            "level": "error" if failed else ("warn" if latency > 1.0 else "info"),
            "msg": "request failed" if failed else "request served",
            "method": rng.choice(("GET", "GET", "GET", "POST")),
            "path": path,
            "status": rng.choice((500, 503)) if failed else 200,
            "latency_ms": round(latency * 1000, 1),
        }
        if failed:
            line["error"] = rng.choice(_ERRORS)
        return json.dumps(line)


def _sample(cdf: tuple[float, ...], u: float) -> float:
    """Invert a piecewise-linear CDF over ``BUCKETS`` (from 0 at 0 s)."""
    lo_bound, lo_p = 0.0, 0.0
    for bound, p in zip(BUCKETS, cdf, strict=True):
        if u <= p:
            span = p - lo_p
            return lo_bound + (bound - lo_bound) * ((u - lo_p) / span if span else 0.0)
        lo_bound, lo_p = bound, p
    return BUCKETS[-1]


def render_metrics(
    counters: Counters, gauges: Gauges, *, labels: Mapping[str, str], ready_pods: int | None = None
) -> str:
    """Prometheus text exposition of one pod or one service."""
    info = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    out = [
        "# HELP http_requests_total Requests served.",
        "# TYPE http_requests_total counter",
        f"http_requests_total {math.floor(counters.requests)}",
        "# HELP http_request_errors_total Requests answered with a 5xx status.",
        "# TYPE http_request_errors_total counter",
        f"http_request_errors_total {math.floor(counters.errors)}",
        "# HELP http_request_duration_seconds Request latency.",
        "# TYPE http_request_duration_seconds histogram",
    ]
    for bound, value in zip(BUCKETS, counters.buckets, strict=True):
        out.append(f'http_request_duration_seconds_bucket{{le="{bound}"}} {math.floor(value)}')
    out += [
        f'http_request_duration_seconds_bucket{{le="+Inf"}} {math.floor(counters.requests)}',
        f"http_request_duration_seconds_sum {counters.seconds:.3f}",
        f"http_request_duration_seconds_count {math.floor(counters.requests)}",
        "# HELP http_error_ratio Share of requests failing over the last minute.",
        "# TYPE http_error_ratio gauge",
        f"http_error_ratio {gauges.error_ratio:.4f}",
        "# HELP http_latency_p99_seconds 99th percentile latency over the last minute.",
        "# TYPE http_latency_p99_seconds gauge",
        f"http_latency_p99_seconds {gauges.p99_seconds:.3f}",
        "# HELP coherence_ratio Crystal coherence ratio (rollback below 0.4).",
        "# TYPE coherence_ratio gauge",
        f"coherence_ratio {gauges.coherence:.3f}",
        "# HELP process_resident_memory_bytes Resident memory size in bytes.",
        "# TYPE process_resident_memory_bytes gauge",
        f"process_resident_memory_bytes {gauges.memory_bytes:.0f}",
        "# HELP db_connections_in_use Database connections in use.",
        "# TYPE db_connections_in_use gauge",
        f"db_connections_in_use {gauges.db_in_use:.0f}",
        "# HELP db_connections_max Database connection pool size.",
        "# TYPE db_connections_max gauge",
        f"db_connections_max {gauges.db_max:.0f}",
        "# HELP build_info Version and mode of the serving release.",
        "# TYPE build_info gauge",
        f"build_info{{{info}}} 1",
    ]
    if ready_pods is not None:
        out += [
            "# HELP sandbox_ready_pods Ready pods behind the service.",
            "# TYPE sandbox_ready_pods gauge",
            f"sandbox_ready_pods {ready_pods}",
        ]
    return "\n".join(out) + "\n"


def aggregate_gauges(gauges: list[Gauges]) -> Gauges:
    """A service's view of its pods: mean error ratio and coherence, worst p99/memory/pool."""
    if not gauges:
        return Gauges(0.0, 0.0, 0.0, 0.0, 0.0)
    n = len(gauges)
    return Gauges(
        error_ratio=sum(g.error_ratio for g in gauges) / n,
        p99_seconds=max(g.p99_seconds for g in gauges),
        coherence=sum(g.coherence for g in gauges) / n,
        memory_bytes=max(g.memory_bytes for g in gauges),
        db_in_use=max(g.db_in_use for g in gauges),
        db_max=max(g.db_max for g in gauges),
    )
