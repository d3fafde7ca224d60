"""The `inventory/drills.yaml` format: when each service's rollback drill runs, per environment.

These models are the contract of the file (docs/drills.md). Unknown keys are errors, as in
runbooks and triggers: a misspelt `blackout:` must not silently mean "drill any time".
Cron expressions are checked by cronsim (the same library that computes the slots) and time
zones by the IANA database (``zoneinfo``), so `validate` refuses what `drill due` could not
run.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crystal_runbook.engine.model import Duration

API_VERSION = "crystal-runbook/v1"
KIND = "Drills"
MAX_JITTER = 6 * 3600.0
"""Longest jitter (seconds): `drill due --run` waits out the jitter, so it must stay short."""
MAX_GRACE = 7 * 86400.0
DEFAULT_GRACE = 3600.0
"""A missed slot still runs when it was missed by less than this (the issue's default 1 h)."""


def cron_problem(expression: str) -> str | None:
    """Why ``expression`` is not a cron expression cronsim accepts (None when it is)."""
    from cronsim import CronSim, CronSimError

    if len(expression.split()) != 5:
        return (
            f"{expression[:60]!r} is not a cron expression: it needs 5 fields "
            "(minute hour day-of-month month day-of-week), e.g. '30 10 * * 2'"
        )
    try:
        CronSim(expression, datetime.now(UTC))
    except CronSimError as exc:
        return f"{expression[:60]!r} is not a valid cron expression: {exc}"
    return None


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``.

    Raises:
        ValueError: unknown or malformed name, with an example of a good one.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{name[:60]!r} is not a time zone of the IANA database; use e.g. UTC or Europe/Berlin"
        ) from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Blackout(_Strict):
    """A time when no drill may start: a date range, or a cron window.

    - ``{from: 2026-12-20, to: 2027-01-04}``: whole days (or exact times, if given as
      date-times) in the drill's time zone, both ends included;
    - ``{cron: "0 17 * * 5", duration: 64h}``: from every match of the expression, for
      ``duration`` (default one minute: every matching minute is blacked out).
    """

    from_: date | datetime | None = Field(default=None, alias="from")
    to: date | datetime | None = None
    cron: str | None = None
    duration: Duration = Field(default=60.0, gt=0, le=31 * 86400.0)
    reason: str = Field(default="", max_length=200)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            problem = cron_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _one_form(self) -> Blackout:
        dated = self.from_ is not None or self.to is not None
        if dated == (self.cron is not None):
            raise ValueError(
                "a blackout is either a date range {from: 2026-12-20, to: 2027-01-04} or a cron "
                'window {cron: "0 17 * * 5", duration: 64h}'
            )
        if dated and (self.from_ is None or self.to is None):
            raise ValueError("a date-range blackout needs both `from` and `to`")
        if self.from_ is not None and self.to is not None and _naive(self.to) < _naive(self.from_):
            raise ValueError("the blackout's `to` is before its `from`")
        if "duration" in self.model_fields_set and self.cron is None:
            raise ValueError("`duration` belongs to a cron window (with `cron:`)")
        return self

    def describe(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        if self.cron is not None:
            from crystal_runbook.engine.durations import format_duration

            return f"cron {self.cron!r} for {format_duration(self.duration)}{why}"
        return f"{self.from_} to {self.to}{why}"


def _naive(value: date | datetime) -> datetime:
    """A bound as a naive date-time, so dates and date-times compare."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    return datetime.combine(value, time.min)


class Drill(_Strict):
    """The drill of one service in one environment."""

    schedule: str | None = Field(
        default=None,
        description="cron expression (5 fields) in `timezone`; absent: only run by hand",
    )
    timezone: str = Field(default="UTC", description="IANA time zone of the schedule")
    jitter: Duration = Field(
        default=0.0,
        le=MAX_JITTER,
        description="each slot starts up to this much later (the same offset for every replica)",
    )
    grace: Duration = Field(
        default=DEFAULT_GRACE,
        le=MAX_GRACE,
        description="a missed slot still runs if missed by less than this",
    )
    blackout: list[Blackout] = Field(default_factory=list, max_length=100)
    allow_production: bool = Field(
        default=False,
        description="drills may run in this (production) environment, with --allow-production",
    )
    description: str = Field(default="", max_length=1000)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is not None:
            problem = cron_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        zone(value)
        return value

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.timezone)


class ServiceDrills(_Strict):
    """A service's drills, by environment."""

    description: str = ""
    environments: dict[str, Drill]


class DrillsFile(_Strict):
    """The whole `drills.yaml`."""

    api_version: str = Field(
        default=API_VERSION, alias="apiVersion", pattern=r"^crystal-runbook/v1$"
    )
    kind: str = Field(default=KIND, pattern=rf"^{KIND}$")
    services: dict[str, ServiceDrills] = Field(default_factory=dict)

    def entries(self) -> list[tuple[str, str, Drill]]:
        """(service, environment, drill) for every drill, in file order."""
        return [
            (name, env, drill)
            for name, svc in self.services.items()
            for env, drill in svc.environments.items()
        ]

    def get(self, service: str, env: str) -> Drill | None:
        found = self.services.get(service)
        return None if found is None else found.environments.get(env)
