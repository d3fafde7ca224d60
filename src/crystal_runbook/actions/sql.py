"""`sql.check`: a runbook step that asks the service's database a read-only question.

The source checklist proves health in SQL (``SELECT * FROM current_health;``, the hourly
``AVG(coherence_ratio)`` of ``system_health``). This action runs such a query through the
triggers' `sql` source, so it has the same guarantees: parameterised only, one SELECT-like
statement (anything else is refused at `validate`, with file:line:column), a READ ONLY
transaction that is rolled back, a statement timeout, and the DSN only from the environment,
never in a message. It holds when the value passes ``op threshold``, or when the query
returns rows (``expect: rows``) or none (``expect: no_rows``).
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from crystal_runbook import errors
from crystal_runbook.engine.model import Duration
from crystal_runbook.engine.registry import Action, Args, Check, StepContext
from crystal_runbook.engine.secrets import Redactor
from crystal_runbook.triggers import model, rules, sqlsource
from crystal_runbook.triggers.sources import SourceSpec


class SqlCheckArgs(Args):
    query: str = Field(max_length=model.MAX_QUERY_LENGTH, description="One read-only SELECT.")
    params: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict,
        description="Bound parameters (%(name)s); `service` and `env` are always there.",
    )
    op: model.Op | None = None
    threshold: float | None = None
    expect: Literal["rows", "no_rows"] | None = None
    url_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Variable holding the DSN; default: the service's metrics block (source sql).",
    )
    timeout: Duration = Field(default=5.0, gt=0, le=300, description="statement_timeout")

    @field_validator("query")
    @classmethod
    def _read_only(cls, value: str) -> str:
        refused = sqlsource.check_read_only(value)
        if refused is not None:
            raise ValueError(f"refused: {refused}")
        return value

    @model_validator(mode="after")
    def _one_test(self) -> SqlCheckArgs:
        compare = self.op is not None or self.threshold is not None
        if compare and (self.op is None or self.threshold is None):
            raise ValueError("give both `op` and `threshold`")
        if compare == (self.expect is not None):
            raise ValueError("give either `op` and `threshold`, or `expect: rows|no_rows`")
        return self


class SqlCheck(Action):
    """Holds when a read-only query's value passes a threshold (or it returns rows, or none)."""

    name = "sql.check"
    summary = "Ask the database (with: {query: 'SELECT ...', op: '>=', threshold: 0.6})."
    Args = SqlCheckArgs
    outputs = ("value", "rows")
    default_timeout = 120.0
    poll_interval = 5.0

    def check(self, args: Any, ctx: StepContext) -> Check:
        redactor = Redactor()
        dsn, where = self._dsn(args, ctx)
        source = sqlsource.SqlSource(
            SourceSpec("sql", dsn, timeout=args.timeout, where=where), redactor=redactor
        )
        params = {"service": ctx.service, "env": ctx.env, **args.params}
        try:
            series = source.query(args.query, 0.0, params)
        finally:
            source.close()
        outputs: dict[str, Any] = {"rows": len(series), "value": None}
        evidence = {
            "sql": {
                "query": args.query,
                "rows": [{"labels": dict(s.labels), "value": s.value} for s in series[:20]],
            }
        }
        if args.expect is not None:
            satisfied = bool(series) == (args.expect == "rows")
            summary = f"{len(series)} row(s) with a value; wanted {args.expect.replace('_', ' ')}"
            if series:
                outputs["value"] = series[0].value
            return Check(satisfied, summary, outputs=outputs, evidence=evidence)
        top = rules.worst(args.op, args.threshold, series)
        if top is None:
            return Check(
                False,
                "no data: the query returned no value (missing data never passes)",
                outputs=outputs,
                evidence=evidence,
            )
        outputs["value"] = top.value
        held = rules.holds(args.op, top.value, args.threshold)
        summary = (
            f"value {top.value:.4g} {'passes' if held else 'fails'} {args.op} {args.threshold:g}"
        )
        return Check(held, summary, outputs=outputs, evidence=evidence)

    @staticmethod
    def _dsn(args: Any, ctx: StepContext) -> tuple[str, str]:
        var = args.url_env
        url: str | None = None
        if var is None:
            metrics = dict(ctx.target).get("metrics") or {}
            if metrics.get("source") == "sql":
                var, url = metrics.get("url_env"), metrics.get("url")
        if var is not None:
            value = os.environ.get(var)
            if not value:
                raise errors.ConfigurationError(
                    f"${var} is not set; sql.check reads the database URL there",
                    hint=f"export {var}=postgresql://... (secrets only come from the environment)",
                )
            return value, f"${var}"
        if url:
            return url, "inventory metrics"
        raise errors.ConfigurationError(
            "sql.check has no database: give `url_env:` or a `metrics: {source: sql, url_env: ...}`"
            " block for this service and environment in inventory/services.yaml"
        )
