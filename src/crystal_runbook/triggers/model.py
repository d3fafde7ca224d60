"""The `inventory/triggers.yaml` format: per service, the rules that start a rollback.

These pydantic models are the contract of the file (docs/triggers.md). Unknown keys are
errors, as in runbooks: a misspelt `for:` must not silently mean "fire at once".

A rule is one of three kinds:

- ``threshold``: ``query`` compared with ``threshold`` by ``op``;
- ``ratio``: ``query / denominator`` (series matched by labels), compared the same way;
- ``trend``: the least-squares slope of ``query`` over ``window`` (per second), above
  ``threshold``, with at least ``min_rising`` of successive deltas positive.

Every kind then has Prometheus' alerting-rule semantics: inactive, pending while the
condition holds, firing once it held at every evaluation for ``for``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from crystal_runbook.engine.model import NAME, Duration
from crystal_runbook.triggers.sources import SourceKind

API_VERSION = "crystal-runbook/v1"
KIND = "Triggers"
FILENAME = "triggers.yaml"
"""The file's name in the inventory directory."""
MAX_QUERY_LENGTH = 4000

Op = Literal[">", ">=", "<", "<=", "==", "!="]
State = Literal["inactive", "pending", "firing", "no_data", "error"]
STATES: tuple[State, ...] = ("inactive", "pending", "firing", "no_data", "error")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Connection(_Strict):
    """Where a source reads when the environment's inventory block does not say."""

    url: str | None = Field(default=None, description="URL (no secrets: use url_env for those)")
    url_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="environment variable holding the URL or DSN (may contain a password)",
    )
    urls: list[str] | None = Field(default=None, description="scrape: several /metrics URLs")
    timeout: Duration = Field(default=5.0, gt=0, le=120, description="per request or statement")


class Rule(_Strict):
    """One condition that, held long enough, starts a rollback (or a notice)."""

    name: str = Field(pattern=NAME)
    description: str = ""
    kind: Literal["threshold", "ratio", "trend"] = "threshold"
    source: SourceKind | None = Field(
        default=None, description="default: the environment's metrics source (inventory)"
    )
    query: str = Field(min_length=1, max_length=MAX_QUERY_LENGTH)
    denominator: str | None = Field(default=None, max_length=MAX_QUERY_LENGTH)
    params: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict, description="sql: bound parameters (besides service and env)"
    )
    op: Op = ">"
    threshold: float
    for_: Duration = Field(default=0.0, alias="for", le=86400)
    window: Duration | None = Field(default=None, gt=0, le=86400, description="trend only")
    min_rising: float = Field(default=0.9, ge=0.5, le=1.0, description="trend only")
    severity: Literal["critical", "warning", "info"] = "critical"
    action: Literal["rollback", "notify", "approve"] = "notify"
    on_missing: Literal["no_data", "fire"] = "no_data"
    environments: list[str] | None = Field(default=None, description="default: every one")


class ServiceTriggers(_Strict):
    """The rules of one service, and sources its environments' inventory does not name."""

    description: str = ""
    sources: dict[SourceKind, Connection] = Field(default_factory=dict)
    rules: list[Rule] = Field(min_length=1)


class TriggersFile(_Strict):
    """The whole `triggers.yaml`."""

    api_version: Literal["crystal-runbook/v1"] = Field(alias="apiVersion")
    kind: Literal["Triggers"]
    services: dict[str, ServiceTriggers]
