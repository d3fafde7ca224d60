"""The metric-source seam: ``query(text, at) -> series``, and the errors a source may raise.

A rule does not care where numbers come from: Prometheus' HTTP API, the service's own
``/metrics`` pages scraped directly, or its database. Each source is a small class with the
same few methods (like httpx's transport: one job, one method that matters), opened from a
``SourceSpec`` by ``open_source``. Client libraries (httpx, psycopg) are imported inside the
source that needs them, so `crystal-runbook --help` never pays for them.

Errors, translated at each adapter into the project's tree::

    ActionError
    ├── TemporaryActionError
    │   └── SourceUnavailable    unreachable, timed out, 5xx: the rule shows "no data", loudly
    └── PermanentActionError
        └── QueryRejected        the server refused the query (bad PromQL, SQL error, a write)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from crystal_runbook import errors
from crystal_runbook.engine.secrets import Redactor

if TYPE_CHECKING:  # the PromQL parser is loaded by the sources that evaluate PromQL
    from crystal_runbook.triggers.promql import Series

SourceKind = Literal["prometheus", "sql", "scrape"]
KINDS: tuple[SourceKind, ...] = ("prometheus", "sql", "scrape")


class SourceUnavailable(errors.TemporaryActionError):
    """The source could not be reached or did not answer in time; try again later."""


class QueryRejected(errors.PermanentActionError):
    """The source answered, and refused this query; retrying the same text cannot help."""


@dataclass(frozen=True)
class SourceSpec:
    """Where one source reads from; ``url`` may hold a secret (a DSN with a password)."""

    kind: SourceKind
    url: str = field(repr=False)
    urls: tuple[str, ...] = ()
    job: str = ""
    """Value of the ``job`` label the scrape source adds (Prometheus does the same)."""
    timeout: float = 5.0
    """Seconds one request or statement may take before the source counts as unavailable."""
    where: str = ""
    """Where the URL came from (``inventory: maia/production`` or ``$MAIA_DATABASE_URL``)."""


class Source(Protocol):
    """A place that answers queries with instant vectors."""

    kind: SourceKind

    def refresh(self, now: float) -> None:
        """Called once per evaluation before any query (the scrape source scrapes here)."""
        ...

    def query(self, text: str, at: float, params: Mapping[str, Any] | None = None) -> list[Series]:
        """The value(s) of ``text`` at ``at`` (seconds since the epoch).

        Raises:
            SourceUnavailable: unreachable or too slow.
            QueryRejected: the query itself is wrong or was refused.
        """
        ...

    def query_range(
        self, text: str, start: float, end: float, step: float
    ) -> list[tuple[float, list[Series]]]:
        """Past values at each ``step`` from ``start`` to ``end`` (empty if it has no past)."""
        ...

    def close(self) -> None: ...


def open_source(spec: SourceSpec, *, redactor: Redactor, needs_history: bool = False) -> Source:
    """A source for ``spec``; its client library is imported here, not before.

    ``needs_history`` tells the scrape source that some query uses a range (``rate``), so
    its first refresh scrapes twice instead of once.
    """
    if spec.where.startswith("$"):  # read from the environment: may be a secret as a whole
        redactor.add(spec.url)
    if spec.kind == "prometheus":
        from crystal_runbook.triggers import prometheus

        return prometheus.PrometheusSource(spec, redactor=redactor)
    if spec.kind == "scrape":
        from crystal_runbook.triggers import scrape

        return scrape.ScrapeSource(spec, redactor=redactor, needs_history=needs_history)
    from crystal_runbook.triggers import sqlsource

    return sqlsource.SqlSource(spec, redactor=redactor)


def scalar(series: Sequence[Series]) -> float | None:
    """The value of a one-series result, else None."""
    return series[0].value if len(series) == 1 else None
