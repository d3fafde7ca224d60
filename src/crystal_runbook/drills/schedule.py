"""What is due: a drill's slots, and the decision for the latest one, as pure functions.

`drill schedule`, `drill due` and (later) `serve --scheduler` all decide here, from a drill's
settings, a clock and the start of the last drill of that service and environment (from the
journal). Nothing here reads a file or the time: tests pass ``now``.

- A *slot* is a match of the cron expression in the drill's time zone (cronsim handles
  daylight saving time: a 02:30 slot on the night the clocks go forward runs at 03:00).
  Its *start* is the slot plus the jitter offset: a deterministic function of service,
  environment and slot, so every process (two cron lines, several `serve` replicas) agrees
  on it without talking to each other.
- The latest slot at or before ``now`` is **done** when a drill started at or after it (by
  hand or by schedule: no second drill), **blackout** when its start falls in a blackout
  (the slot is cancelled, not postponed), **waiting** while its start is still ahead,
  **missed** when ``now`` is more than the grace past its start (it is skipped: only the
  latest slot counts, so a long outage runs one drill, not one per missed slot), and
  otherwise **due** (unless ``now`` itself is in a blackout). A slot that is due runs once:
  its drill is then in the journal, so the next decision is "done".
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Literal

from crystal_runbook.drills import model
from crystal_runbook.engine.durations import format_duration

State = Literal["due", "waiting", "done", "missed", "blackout", "unscheduled"]
SEARCH_LIMIT = 10_000
"""Cron matches looked at when skipping blacked-out slots (a yearly schedule is 1 per year)."""


@dataclass(frozen=True)
class Slot:
    """One scheduled drill: the cron match and when it actually starts (with jitter)."""

    nominal: datetime
    """The cron match, aware, in the drill's time zone."""
    start: datetime
    """``nominal`` plus the jitter offset."""
    blackout: model.Blackout | None = None
    """The blackout that cancels this slot, if any."""


@dataclass(frozen=True)
class Decision:
    """What to do about one drill now."""

    service: str
    env: str
    state: State
    slot: Slot | None
    reason: str
    wait_seconds: float = 0.0
    """For ``waiting``: seconds until the slot's start."""

    @property
    def due(self) -> bool:
        return self.state == "due"


def jitter_offset(service: str, env: str, nominal: datetime, jitter: float) -> float:
    """Seconds added to a slot: the same for everyone who computes it, spread over the jitter."""
    if jitter <= 0:
        return 0.0
    key = f"{service}/{env}/{nominal.isoformat()}".encode()
    fraction = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
    return float(int(fraction * jitter))


def _matches(expression: str, at: datetime, *, reverse: bool) -> Iterator[datetime]:
    from cronsim import CronSim, CronSimError

    try:
        yield from CronSim(expression, at, reverse=reverse)
    except CronSimError:  # cronsim gives up on expressions that never match (Feb 30)
        return


def _slot(service: str, env: str, drill: model.Drill, nominal: datetime) -> Slot:
    start = nominal + timedelta(seconds=jitter_offset(service, env, nominal, drill.jitter))
    cancelled = blackout_at(drill, nominal) or blackout_at(drill, start)
    return Slot(nominal=nominal, start=start, blackout=cancelled)


def latest(service: str, env: str, drill: model.Drill, *, now: datetime) -> Slot | None:
    """The latest slot whose cron match is at or before ``now`` (None: no schedule)."""
    if drill.schedule is None:
        return None
    local = now.astimezone(drill.tz)
    # cronsim's reverse iteration excludes its start; one second on includes ``now`` itself
    for nominal in _matches(drill.schedule, local + timedelta(seconds=1), reverse=True):
        if nominal <= local:
            return _slot(service, env, drill, nominal)
        break
    return None


def upcoming(
    service: str, env: str, drill: model.Drill, *, now: datetime, count: int = 5
) -> list[Slot]:
    """The next ``count`` slots after ``now`` that are not blacked out."""
    if drill.schedule is None:
        return []
    found: list[Slot] = []
    for i, nominal in enumerate(_matches(drill.schedule, now.astimezone(drill.tz), reverse=False)):
        if len(found) >= count or i >= SEARCH_LIMIT:
            break
        slot = _slot(service, env, drill, nominal)
        if slot.blackout is None:
            found.append(slot)
    return found


def blackout_at(drill: model.Drill, at: datetime) -> model.Blackout | None:
    """The first blackout of ``drill`` that covers the moment ``at`` (None: none does)."""
    local = at.astimezone(drill.tz)
    for window in drill.blackout:
        if window.cron is not None:
            inside = _in_cron_window(window.cron, window.duration, local)
        elif window.from_ is not None and window.to is not None:
            first = _bound(window.from_, drill.tz, end=False)
            inside = first <= local <= _bound(window.to, drill.tz, end=True)
        else:  # pragma: no cover - the model requires one form
            inside = False
        if inside:
            return window
    return None


def _in_cron_window(expression: str, duration: float, local: datetime) -> bool:
    # a window opens at a match and lasts `duration`: find the latest opening at or before
    # this minute (cron has minute resolution, so the minute itself counts as a match)
    minute = local.replace(second=0, microsecond=0)
    for opened in _matches(expression, minute + timedelta(seconds=1), reverse=True):
        return opened <= local < opened + timedelta(seconds=duration)
    return False


def _bound(value: date | datetime, zone: tzinfo, *, end: bool) -> datetime:
    """A blackout bound as an aware date-time: a date's whole day, its end included."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=zone)
    if end:
        return datetime.combine(value, time.max, tzinfo=zone)
    return datetime.combine(value, time.min, tzinfo=zone)


def decide(
    service: str,
    env: str,
    drill: model.Drill,
    *,
    now: datetime,
    last_drill_at: datetime | None,
) -> Decision:
    """The decision about ``drill``'s latest slot at ``now`` (see the module docstring).

    Args:
        now: an aware date-time.
        last_drill_at: when the last drill of this service and environment started (any
            outcome), from the journal; None if there never was one.
    """
    if drill.schedule is None:
        return Decision(service, env, "unscheduled", None, "no schedule: run it by hand")
    slot = latest(service, env, drill, now=now)
    if slot is None:
        return Decision(service, env, "unscheduled", None, "the schedule has no slot yet")
    when = _clock(slot)
    if last_drill_at is not None and last_drill_at >= slot.nominal:
        return Decision(
            service, env, "done", slot, f"the slot of {when} ran (drill at {_iso(last_drill_at)})"
        )
    if slot.blackout is not None:
        return Decision(
            service,
            env,
            "blackout",
            slot,
            f"the slot of {when} falls in the blackout {slot.blackout.describe()}",
        )
    if now < slot.start:
        wait = (slot.start - now).total_seconds()
        return Decision(
            service,
            env,
            "waiting",
            slot,
            f"the slot of {when} starts in {format_duration(wait)} (jitter)",
            wait_seconds=wait,
        )
    late = (now - slot.start).total_seconds()
    if late > drill.grace:
        return Decision(
            service,
            env,
            "missed",
            slot,
            f"the slot of {when} was missed by {format_duration(late)}, more than its grace "
            f"of {format_duration(drill.grace)}; the next slot will run",
        )
    current = blackout_at(drill, now)
    if current is not None:
        return Decision(
            service,
            env,
            "blackout",
            slot,
            f"now is in the blackout {current.describe()}; the slot of {when} waits for it to "
            "end (within its grace)",
        )
    overdue = (
        f", {format_duration(late)} late (grace {format_duration(drill.grace)})"
        if late >= 60
        else ""
    )
    return Decision(service, env, "due", slot, f"the slot of {when} is due{overdue}")


def _clock(slot: Slot) -> str:
    return slot.nominal.strftime("%Y-%m-%d %H:%M %Z")


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S %Z")
