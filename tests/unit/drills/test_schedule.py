"""What is due: slots in a time zone, jitter, grace, blackouts (drills/schedule.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from crystal_runbook.drills import model, schedule

UTC_TUESDAYS = {"schedule": "30 10 * * 2", "timezone": "UTC"}
SLOT = datetime(2026, 3, 3, 10, 30, tzinfo=UTC)  # a Tuesday


def drill(**settings: Any) -> model.Drill:
    return model.Drill.model_validate({**UTC_TUESDAYS, **settings})


def decide(d: model.Drill, now: datetime, last: datetime | None = None) -> schedule.Decision:
    return schedule.decide("maia", "staging", d, now=now, last_drill_at=last)


class TestSlots:
    """The next slots follow the cron expression in the drill's time zone."""

    def test_next_five_slots_in_order(self) -> None:
        """Five Tuesdays at 10:30, after `now`."""
        slots = schedule.upcoming("maia", "staging", drill(), now=SLOT, count=5)
        assert [s.nominal for s in slots] == [SLOT + timedelta(weeks=w) for w in range(1, 6)]

    def test_time_zone_and_daylight_saving(self) -> None:
        """10:30 Berlin is 09:30 UTC in winter and 08:30 UTC in summer."""
        d = drill(timezone="Europe/Berlin")
        slots = schedule.upcoming("maia", "staging", d, now=datetime(2026, 3, 20, tzinfo=UTC))
        utc = [s.nominal.astimezone(UTC).strftime("%m-%d %H:%M") for s in slots[:2]]
        assert utc == ["03-24 09:30", "03-31 08:30"]

    def test_latest_slot_includes_now(self) -> None:
        """At exactly 10:30 the 10:30 slot is the latest one."""
        assert schedule.latest("maia", "staging", drill(), now=SLOT).nominal == SLOT  # type: ignore[union-attr]

    def test_jitter_is_deterministic_and_bounded(self) -> None:
        """Every process computes the same offset, within the jitter, different per slot."""
        d = drill(jitter="10m")
        first = schedule.upcoming("maia", "staging", d, now=SLOT, count=20)
        again = schedule.upcoming("maia", "staging", d, now=SLOT, count=20)
        offsets = [(s.start - s.nominal).total_seconds() for s in first]
        assert offsets == [(s.start - s.nominal).total_seconds() for s in again]
        assert all(0 <= o <= 600 for o in offsets)
        assert len(set(offsets)) > 1

    def test_blacked_out_slots_are_left_out(self) -> None:
        """A date-range blackout removes the slots inside it from the next slots."""
        d = drill(blackout=[{"from": date(2026, 3, 10), "to": date(2026, 3, 17)}])
        slots = schedule.upcoming("maia", "staging", d, now=SLOT, count=2)
        assert [s.nominal.day for s in slots] == [24, 31]


class TestDecision:
    """Due within the grace once; missed past it; done after a drill; blackouts block."""

    def test_due_at_the_slot(self) -> None:
        """No drill since the slot and within the grace: due."""
        assert decide(drill(), SLOT + timedelta(minutes=1)).state == "due"

    def test_missed_slot_within_grace_runs_once(self) -> None:
        """59 minutes late is still due; once a drill started after the slot, it is done."""
        late = SLOT + timedelta(minutes=59)
        assert decide(drill(), late).state == "due"
        ran = SLOT + timedelta(minutes=59, seconds=5)
        assert decide(drill(), late + timedelta(minutes=1), last=ran).state == "done"

    def test_missed_slot_outside_grace_is_skipped(self) -> None:
        """More than the grace (1 h by default) late: missed, nothing runs."""
        found = decide(drill(), SLOT + timedelta(minutes=61))
        assert found.state == "missed"
        assert "grace of 1h00m" in found.reason

    def test_grace_is_configurable(self) -> None:
        """With grace 3h, two hours late is still due."""
        assert decide(drill(grace="3h"), SLOT + timedelta(hours=2)).state == "due"

    def test_a_drill_before_the_slot_does_not_count(self) -> None:
        """Last week's drill does not satisfy today's slot."""
        found = decide(drill(), SLOT + timedelta(minutes=5), last=SLOT - timedelta(days=7))
        assert found.state == "due"

    def test_waiting_for_the_jitter(self) -> None:
        """Between the slot and its jittered start: waiting, with the seconds left."""
        d = drill(jitter="10m")
        slot = schedule.latest("maia", "staging", d, now=SLOT)
        assert slot is not None
        assert slot.start > SLOT
        found = decide(d, SLOT)
        assert found.state == "waiting"
        assert found.wait_seconds == (slot.start - SLOT).total_seconds()
        assert decide(d, slot.start).state == "due"

    def test_date_range_blackout_blocks_the_slot(self) -> None:
        """A slot inside a blackout is cancelled, and says which blackout."""
        d = drill(blackout=[{"from": date(2026, 3, 1), "to": date(2026, 3, 5), "reason": "freeze"}])
        found = decide(d, SLOT + timedelta(minutes=5))
        assert found.state == "blackout"
        assert "freeze" in found.reason

    def test_cron_window_blackout(self) -> None:
        """A window opening every Tuesday 10:00 for an hour covers the 10:30 slot."""
        d = drill(blackout=[{"cron": "0 10 * * 2", "duration": "1h"}])
        assert decide(d, SLOT + timedelta(minutes=5)).state == "blackout"
        other = drill(blackout=[{"cron": "0 10 * * 2", "duration": "20m"}])
        assert decide(other, SLOT + timedelta(minutes=5)).state == "due"

    def test_now_in_a_blackout_blocks_a_late_slot(self) -> None:
        """The slot was fine, but a blackout started since: no drill starts now."""
        d = drill(blackout=[{"cron": "40 10 * * *", "duration": "30m"}])
        assert decide(d, SLOT + timedelta(minutes=35)).state == "blackout"
        assert decide(d, SLOT + timedelta(minutes=45)).state == "due"
        assert decide(d, SLOT + timedelta(minutes=5)).state == "due"

    def test_unscheduled(self) -> None:
        """Without a schedule a drill is only run by hand."""
        d = model.Drill.model_validate({})
        assert decide(d, SLOT).state == "unscheduled"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"schedule": "61 * * * *"}, "not a valid cron expression"),
        ({"schedule": "0 10 * *"}, "needs 5 fields"),
        ({"timezone": "Mars/Olympus"}, "not a time zone"),
        ({"jitter": "7h"}, "less than or equal to 21600"),
        ({"blackout": [{"from": date(2026, 3, 1)}]}, "needs both `from` and `to`"),
        ({"blackout": [{"from": date(2026, 3, 5), "to": date(2026, 3, 1)}]}, "before its `from`"),
        ({"blackout": [{"cron": "0 0 * * *", "from": date(2026, 3, 1), "to": date(2026, 3, 2)}]}, "either a date range"),
        ({"blackout": [{"from": date(2026, 3, 1), "to": date(2026, 3, 2), "duration": "1h"}]}, "belongs to a cron window"),
    ],
)
def test_bad_settings_are_refused(settings: dict[str, Any], message: str) -> None:
    """Each mistake is a validation error that says what to write."""
    with pytest.raises(ValueError, match=message.replace("`", ".").replace("(", ".")):
        model.Drill.model_validate({**UTC_TUESDAYS, **settings})
