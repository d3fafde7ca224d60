"""The `prometheus` source: Prometheus' HTTP API through the process's httpx client (``web``).

An instant query per rule per evaluation (``/api/v1/query``), and at start a
``/api/v1/query_range`` over the last ``for`` window, so that a restarted `watch` keeps the
minutes of evidence Prometheus already holds instead of starting every window from zero.
Queries are POSTed as forms (long PromQL does not fit in a URL). The server's own error text
("parse error at char 12: ...") is what a rule in state ``error`` shows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from crystal_runbook import web
from crystal_runbook.engine.secrets import Redactor
from crystal_runbook.triggers.promql import Labels, Series
from crystal_runbook.triggers.sources import (
    QueryRejected,
    SourceKind,
    SourceSpec,
    SourceUnavailable,
)

if TYPE_CHECKING:
    import httpx


class PrometheusSource:
    """Answers PromQL through one Prometheus server's HTTP API."""

    kind: SourceKind = "prometheus"

    def __init__(self, spec: SourceSpec, *, redactor: Redactor) -> None:
        self.spec = spec
        self.redactor = redactor
        self.base = spec.url.rstrip("/")
        self._client: httpx.Client = web.client()

    def refresh(self, now: float) -> None:
        return None

    def query(self, text: str, at: float, params: Mapping[str, Any] | None = None) -> list[Series]:
        data = self._post("/api/v1/query", {"query": text, "time": f"{at:.3f}"})
        kind = data.get("resultType")
        result = data.get("result")
        if kind == "scalar" and isinstance(result, list):
            return [Series((), _number(result[1]))]
        if kind != "vector" or not isinstance(result, list):
            raise QueryRejected(
                f"prometheus returned a {kind} for {text!r}; a rule needs a number or a vector"
            )
        return [
            Series(_labels(item.get("metric", {})), _number(item["value"][1])) for item in result
        ]

    def query_range(
        self, text: str, start: float, end: float, step: float
    ) -> list[tuple[float, list[Series]]]:
        data = self._post(
            "/api/v1/query_range",
            {"query": text, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:.3f}"},
        )
        by_time: dict[float, list[Series]] = {}
        result = data.get("result")
        if data.get("resultType") != "matrix" or not isinstance(result, list):
            return []
        for item in result:
            labels = _labels(item.get("metric", {}))
            for t, value in item.get("values", []):
                by_time.setdefault(float(t), []).append(Series(labels, _number(value)))
        return sorted(by_time.items())

    def close(self) -> None:
        """Nothing to release: the HTTP client is the process's (``web``)."""

    def _post(self, path: str, form: dict[str, str]) -> dict[str, Any]:
        import httpx

        url = self.base + path
        shown = self.redactor.text(self.base)
        try:
            response = self._client.post(url, data=form, timeout=self.spec.timeout)
        except httpx.TimeoutException:
            raise SourceUnavailable(
                f"prometheus at {shown} did not answer within {self.spec.timeout:g}s",
                hint="check that Prometheus is up and reachable from here",
            ) from None
        except httpx.HTTPError as exc:
            cause = self.redactor.text(str(exc)) or type(exc).__name__
            raise SourceUnavailable(
                f"prometheus at {shown} is unreachable: {cause}",
                hint=f"check the metrics URL ({self.spec.where or 'inventory'}) and the network",
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("status") == "error":
            message = self.redactor.text(str(body.get("error", "unknown error")))
            if response.status_code in (400, 422):
                raise QueryRejected(
                    f"prometheus rejected the query: {message}",
                    hint="fix the rule's query; try it in Prometheus' expression browser",
                )
            raise SourceUnavailable(f"prometheus at {shown} failed: {message}")
        if response.status_code >= 400 or not isinstance(body, dict):
            raise SourceUnavailable(
                f"prometheus at {shown} answered HTTP {response.status_code} to {path}",
                hint="is this URL a Prometheus server (…/api/v1/query)?",
            )
        data = body.get("data")
        return data if isinstance(data, dict) else {}


def _labels(metric: Mapping[str, str]) -> Labels:
    return tuple(sorted((str(k), str(v)) for k, v in metric.items()))


def _number(value: object) -> float:
    try:
        return float(str(value))
    except ValueError:
        return math.nan
