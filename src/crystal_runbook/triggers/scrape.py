"""The `scrape` source: read the service's Prometheus text directly, for teams without Prometheus.

Each evaluation fetches every target URL once (in parallel), parses the text with
prometheus-client's parser, and appends the samples to a bounded ring: per target, scrapes
newer than the longest range any query needs (plus a margin), at most ``MAX_SCRAPES``.
Queries are answered from the ring by the PromQL subset in ``promql``; like Prometheus, each
target's samples carry ``job`` (the service) and ``instance`` (host:port) labels, and a
failed scrape makes that target's series vanish (Prometheus' staleness) instead of leaving
old numbers looking current.

A fresh source has no past, and ``rate()`` needs two samples: when a query uses a range
and a target's samples span less than ``MIN_GAP``, the refresh waits out the rest of the gap
and scrapes again, so even `watch --once` gets a rate. A ring may outlive one source: the
checks of one run share it (``metrics.check``), so only the first of them waits.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from crystal_runbook import web
from crystal_runbook.engine.secrets import Redactor
from crystal_runbook.triggers import promql
from crystal_runbook.triggers.promql import Labels, Series
from crystal_runbook.triggers.sources import (
    QueryRejected,
    SourceKind,
    SourceSpec,
    SourceUnavailable,
)

if TYPE_CHECKING:
    import httpx

MAX_SCRAPES = 4000
"""Scrapes kept per target: 66 minutes at one per second; bounds memory whatever the ranges."""
KEEP_SECONDS = 120.0
"""Seconds of scrapes kept before any query asked for a longer range (a 1m rate and margin)."""
MAX_LABEL_SETS = 50_000
"""Distinct label sets remembered for sharing; past it the table starts over (churn)."""
MIN_GAP = 1.0
"""Seconds between the two scrapes of a fresh source (rate() needs two samples)."""
MAX_BODY = 10 * 1024 * 1024
"""A /metrics page larger than this is refused (a real service's page is kilobytes)."""
LOOKBACK = 300.0
"""An instant selector ignores a target's last scrape older than this (Prometheus: 5 min)."""


@dataclass
class Scrape:
    """One fetch of one target: its samples, or why it failed."""

    at: float
    samples: dict[Labels, float] = field(default_factory=dict)
    error: str | None = None


class Ring:
    """Scrapes per target, oldest first, bounded by age and count; safe across threads.

    A `watch` keeps one for hours, scraping every second, so it is built to stay small and
    cheap: scrapes are kept only as long as the longest ``[range]`` asked for needs
    (``keep_seconds``, raised by ``ScrapeSource.keep_for``); the label sets that repeat in
    every scrape are stored once; which of them a selector matches is worked out once per
    new label set, not once per sample; and a range query walks back from the newest scrape
    only as far as its range.
    """

    def __init__(
        self, *, keep_seconds: float = KEEP_SECONDS, max_scrapes: int = MAX_SCRAPES
    ) -> None:
        self.keep_seconds = keep_seconds
        self._scrapes: dict[str, deque[Scrape]] = {}
        self._max = max_scrapes
        self._lock = threading.Lock()
        self._labels: dict[Labels, Labels] = {}
        """One tuple per distinct label set (the same series repeat in every scrape)."""
        self._matching: dict[promql.Selector, tuple[int, list[Labels]]] = {}
        """Per selector, the label sets it matches, as of ``_generation``."""
        self._generation = 0
        """Changes whenever a label set is seen for the first time."""

    def add(self, target: str, scrape: Scrape) -> None:
        with self._lock:
            if len(self._labels) > MAX_LABEL_SETS:  # label values that churn: start over
                self._labels.clear()
                self._matching.clear()
            shared: dict[Labels, float] = {}
            for labels, value in scrape.samples.items():
                known = self._labels.get(labels)
                if known is None:
                    known = self._labels[labels] = labels
                    self._generation += 1
                shared[known] = value
            scrape.samples = shared
            ring = self._scrapes.setdefault(target, deque(maxlen=self._max))
            if ring and scrape.at < ring[-1].at:  # two scrapes finished out of order
                ordered = sorted([*ring, scrape], key=lambda s: s.at)
                ring.clear()
                ring.extend(ordered)
            else:
                ring.append(scrape)
            horizon = ring[-1].at - self.keep_seconds
            while len(ring) > 2 and ring[0].at < horizon:
                ring.popleft()

    def _matched(self, selector: promql.Selector) -> list[Labels]:
        """The label sets seen that ``selector`` matches (call with the lock held)."""
        cached = self._matching.get(selector)
        if cached is not None and cached[0] == self._generation:
            return cached[1]
        found = [labels for labels in self._labels if selector.matches(dict(labels))]
        self._matching[selector] = (self._generation, found)
        return found

    def count_ok(self, target: str) -> int:
        with self._lock:
            return sum(1 for s in self._scrapes.get(target, ()) if s.error is None)

    def span_ok(self, target: str) -> float:
        """Seconds between the oldest and the newest successful scrape of ``target``."""
        with self._lock:
            times = [s.at for s in self._scrapes.get(target, ()) if s.error is None]
        return times[-1] - times[0] if len(times) > 1 else 0.0

    def forget_before(self, at: float) -> None:
        """Drop every scrape taken before ``at`` (seconds since the epoch)."""
        with self._lock:
            for ring in self._scrapes.values():
                while ring and ring[0].at < at:
                    ring.popleft()

    def scrapes(self, target: str) -> list[Scrape]:
        """``target``'s scrapes, oldest first."""
        with self._lock:
            return list(self._scrapes.get(target, ()))

    def latest(self, target: str) -> Scrape | None:
        with self._lock:
            ring = self._scrapes.get(target)
            return ring[-1] if ring else None

    def targets(self) -> list[str]:
        with self._lock:
            return list(self._scrapes)

    def instant(self, selector: promql.Selector, at: float) -> list[Series]:
        out: list[Series] = []
        with self._lock:
            wanted = self._matched(selector)
            for ring in self._scrapes.values():
                last = next((s for s in reversed(ring) if s.at <= at), None)
                if last is None or last.error is not None or at - last.at > LOOKBACK:
                    continue
                for labels in wanted:
                    value = last.samples.get(labels)
                    if value is not None:
                        out.append(Series(labels, value))
        return out

    def window(
        self, selector: promql.Selector, start: float, end: float
    ) -> list[tuple[Labels, list[tuple[float, float]]]]:
        series: dict[Labels, list[tuple[float, float]]] = {}
        with self._lock:
            wanted = self._matched(selector)
            for ring in self._scrapes.values():
                inside: list[Scrape] = []
                for scrape in reversed(ring):  # newest first, as far back as the range goes
                    if scrape.at <= start:
                        break
                    if scrape.error is None and scrape.at <= end:
                        inside.append(scrape)
                for scrape in reversed(inside):
                    for labels in wanted:
                        value = scrape.samples.get(labels)
                        if value is not None:
                            series.setdefault(labels, []).append((scrape.at, value))
        return list(series.items())


def target_key(target: str) -> str:
    """A target's name in saved state: a digest, so a URL's password is never written."""
    return hashlib.sha256(target.encode()).hexdigest()[:16]


def dump_latest(ring: Ring, targets: list[str], selectors: list[promql.Selector]) -> dict[str, Any]:
    """Each target's latest successful scrape, only the series some selector matches, with
    an earlier one under ``earlier``: the newest at least ``MIN_GAP`` before it, else the
    oldest. With both, the next process's first scrape makes a ``rate()`` at once even when
    it comes less than ``MIN_GAP`` after the latest (`health` run again at once)."""

    def kept(scrape: Scrape) -> dict[str, Any]:
        samples = [
            [list(labels), value]
            for labels, value in scrape.samples.items()
            if any(sel.matches(dict(labels)) for sel in selectors)
        ]
        return {"at": scrape.at, "samples": samples}

    out: dict[str, Any] = {}
    for target in targets:
        good = [s for s in ring.scrapes(target) if s.error is None]
        if not good:
            continue
        last = good[-1]
        entry = kept(last)
        older = [s for s in good[:-1] if s.at <= last.at - MIN_GAP]
        earlier = older[-1] if older else (good[0] if len(good) > 1 else None)
        if earlier is not None:
            entry["earlier"] = kept(earlier)
        out[target_key(target)] = entry
    return out


def load_latest(
    ring: Ring, targets: list[str], saved: Mapping[str, Any], *, now: float, max_age: float
) -> int:
    """Put saved scrapes (``dump_latest``) of these targets taken within ``max_age`` seconds
    before ``now`` back in the ring; returns how many targets were taken back."""
    taken = 0
    for target in targets:
        entry = saved.get(target_key(target))
        if not isinstance(entry, Mapping):
            continue
        found = False
        for saved_entry in (entry.get("earlier"), entry):
            scrape = _saved_scrape(saved_entry, now=now, max_age=max_age)
            if scrape is not None:
                ring.add(target, scrape)
                found = True
        taken += found
    return taken


def _saved_scrape(entry: object, *, now: float, max_age: float) -> Scrape | None:
    """A scrape saved by ``dump_latest``, if it is one and within ``max_age`` before ``now``."""
    if not isinstance(entry, Mapping):
        return None
    at = entry.get("at")
    if not isinstance(at, int | float) or not now - max_age <= at <= now:
        return None
    samples: dict[Labels, float] = {}
    for item in entry.get("samples") or []:
        try:
            labels, value = item
            samples[tuple((str(k), str(v)) for k, v in labels)] = float(value)
        except (TypeError, ValueError):
            continue
    return Scrape(at=float(at), samples=samples)


def parse_text(text: str, *, job: str, instance: str) -> dict[Labels, float]:
    """Samples of a Prometheus text page, each with ``__name__``, ``job`` and ``instance``."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[Labels, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = dict(sample.labels)
            labels.setdefault("job", job)
            labels.setdefault("instance", instance)
            labels[promql.NAME] = sample.name
            samples[tuple(sorted(labels.items()))] = float(sample.value)
    return samples


class ScrapeSource:
    """Scrapes target URLs into a ring and answers the PromQL subset from it."""

    kind: SourceKind = "scrape"

    def __init__(
        self,
        spec: SourceSpec,
        *,
        redactor: Redactor,
        needs_history: bool = False,
        ring: Ring | None = None,
    ) -> None:
        self.spec = spec
        self.redactor = redactor
        self.targets = list(spec.urls or (spec.url,))
        self.needs_history = needs_history
        self.ring = ring if ring is not None else Ring()
        self._parsed: dict[str, promql.Node] = {}
        self._client: httpx.Client = web.client()
        self._pool = (
            ThreadPoolExecutor(max_workers=min(8, len(self.targets)), thread_name_prefix="scrape")
            if len(self.targets) > 1
            else None
        )

    def keep_for(self, seconds: float) -> None:
        """Keep at least ``seconds`` of scrapes (the longest range of any query, plus margin)."""
        self.ring.keep_seconds = max(self.ring.keep_seconds, seconds)

    def refresh(self, now: float) -> None:
        self._scrape_all()
        if not self.needs_history:
            return
        short = max(MIN_GAP - self.ring.span_ok(t) for t in self.targets)
        if short > 0:
            time.sleep(short)
            self._scrape_all()

    def _scrape_all(self) -> None:
        if self._pool is None:
            for target in self.targets:
                self._scrape(target)
            return
        list(self._pool.map(self._scrape, self.targets))

    def _scrape(self, target: str) -> None:
        import httpx

        started = time.time()
        shown = self.redactor.text(target)
        try:
            response = self._client.get(
                target,
                headers={"Accept": "text/plain"},
                timeout=self.spec.timeout,
                follow_redirects=True,
            )
            if response.status_code != 200:
                raise SourceUnavailable(f"{shown} answered HTTP {response.status_code}")
            if len(response.content) > MAX_BODY:
                raise SourceUnavailable(f"{shown} sent more than {MAX_BODY // 1024 // 1024} MiB")
            parts = urlsplit(target)
            samples = parse_text(
                response.text, job=self.spec.job, instance=parts.netloc.rsplit("@", 1)[-1]
            )
        except httpx.TimeoutException:
            error = f"{shown} did not answer within {self.spec.timeout:g}s"
        except httpx.HTTPError as exc:
            error = f"{shown} is unreachable: {self.redactor.text(str(exc)) or type(exc).__name__}"
        except SourceUnavailable as exc:
            error = exc.message
        except ValueError as exc:  # the text is not Prometheus exposition format
            error = f"{shown} did not send Prometheus text: {exc}"
        else:
            self.ring.add(target, Scrape(at=started, samples=samples))
            return
        self.ring.add(target, Scrape(at=started, error=error))

    def failures(self) -> list[str]:
        """Why the latest scrape of each failing target failed."""
        found = []
        for target in self.targets:
            last = self.ring.latest(target)
            if last is not None and last.error is not None:
                found.append(last.error)
        return found

    def query(self, text: str, at: float, params: Mapping[str, Any] | None = None) -> list[Series]:
        node = self._parse(text)
        self.keep_for(promql.longest_range(node) + 60.0)
        failures = self.failures()
        if failures and len(failures) == len(self.targets):
            raise SourceUnavailable(
                "no target could be scraped: " + "; ".join(failures),
                hint="check the service's metrics URL (inventory) and that it is up",
            )
        try:
            value = promql.evaluate(node, self.ring, at)
        except promql.PromQLError as exc:
            raise QueryRejected(f"cannot evaluate {text!r}: {exc.message}") from None
        if isinstance(value, list):
            return value
        return [] if math.isnan(value) else [Series((), value)]

    def query_range(
        self, text: str, start: float, end: float, step: float
    ) -> list[tuple[float, list[Series]]]:
        node = self._parse(text)
        out: list[tuple[float, list[Series]]] = []
        t = start
        while t <= end + 1e-9:
            value = promql.evaluate(node, self.ring, t)
            out.append((t, value if isinstance(value, list) else [Series((), value)]))
            t += step
        return out

    def _parse(self, text: str) -> promql.Node:
        node = self._parsed.get(text)
        if node is None:
            try:
                node = promql.parse(text)
            except promql.PromQLError as exc:
                raise QueryRejected(
                    f"the scrape source cannot run {text!r}: {exc.message} (at character "
                    f"{exc.pos + 1})"
                ) from None
            self._parsed[text] = node
        return node

    def close(self) -> None:
        """Stop the scrape threads (the HTTP client is the process's: it stays open)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
