"""Small timing helpers shared by the benchmarks (median and spread of repeated runs)."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable, Sequence


def measure(fn: Callable[[], object], *, repeat: int = 10, warmup: int = 1) -> list[float]:
    """Seconds taken by each of ``repeat`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def run_command(argv: Sequence[str], **kwargs: object) -> Callable[[], object]:
    """A callable that runs ``argv`` to completion, output discarded, failure raised."""

    def call() -> object:
        return subprocess.run(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, **kwargs
        )  # type: ignore[call-overload]  # kwargs pass-through

    return call


def summary(times: list[float]) -> str:
    """``median 12.3 ms (min 11.0, p90 14.2, n=10)``."""
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return (
        f"median {statistics.median(times) * 1000:7.1f} ms "
        f"(min {ordered[0] * 1000:.1f}, p90 {p90 * 1000:.1f}, n={len(times)})"
    )


def row(label: str, times: list[float]) -> None:
    print(f"  {label:<44} {summary(times)}")


def emit(
    scenario: str,
    *,
    ours: Sequence[float],
    peer: Sequence[float] | None,
    unit: str,
    peer_name: str = "",
    note: str = "",
) -> None:
    """One scenario's figures as a JSON line in the file named by ``BENCH_RESULTS`` (set by
    scripts/bench.sh, which turns them into one table; nothing happens without it).

    ``ours`` and ``peer`` are the per-round values in ``unit`` (lower is better); the table
    shows their medians, min-max and the ratio ours / peer. ``peer`` None: no peer figure
    (``note`` says why)."""
    import json
    import os

    target = os.environ.get("BENCH_RESULTS")
    if not target:
        return
    record = {
        "scenario": scenario,
        "unit": unit,
        "ours": list(ours),
        "peer": None if peer is None else list(peer),
        "peer_name": peer_name,
        "note": note,
        "load": list(os.getloadavg()),
    }
    with open(target, "a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")
