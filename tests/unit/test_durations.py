"""Durations as written in runbooks and on the command line."""

from __future__ import annotations

import pytest

from crystal_runbook.engine.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0), ("250ms", 0.25), ("2", 2.0), (1.5, 1.5)],
)
def test_accepted_forms(text: object, seconds: float) -> None:
    """Each documented form parses to seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5 minutes", "-3s", "1x", True, None, "9" * 40 + "s"])
def test_rejected_forms_say_what_is_expected(bad: object) -> None:
    """Anything else is refused with the expected form in the message."""
    with pytest.raises(ValueError, match="duration such as"):
        parse_duration(bad)


def test_format_is_short() -> None:
    """Human output stays short at every scale."""
    assert [format_duration(s) for s in (0.05, 12.34, 245, 3725)] == [
        "50ms",
        "12.3s",
        "4m05s",
        "1h02m",
    ]
