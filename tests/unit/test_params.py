"""Turning `-p key=value` and other user input into typed, bounded parameters."""

from __future__ import annotations

import pytest

from crystal_runbook import errors
from crystal_runbook.engine import params
from crystal_runbook.engine.model import ParamSpec

SPECS = {
    "service": ParamSpec(type="string", required=True),
    "to_revision": ParamSpec(type="integer", default=0, minimum=0),
    "ratio": ParamSpec(type="number", default=0.4, maximum=1),
    "force": ParamSpec(type="boolean", default=False),
    "since": ParamSpec(type="duration", default="10m"),
    "hosts": ParamSpec(type="list", default=[]),
    "mode": ParamSpec(type="string", choices=["legacy", "hybrid", "crystal"], default="legacy"),
    "reason": ParamSpec(type="string", default="", max_length=20),
    "tag": ParamSpec(type="string", pattern=r"v\d+", default="v1"),
}


class TestAssignments:
    def test_split_on_first_equals(self) -> None:
        """Values may contain `=`."""
        assert params.parse_assignments(["a=1", "b=x=y"]) == {"a": "1", "b": "x=y"}

    @pytest.mark.parametrize("bad", ["novalue", "=x", " =x"])
    def test_without_equals_is_refused(self, bad: str) -> None:
        """`-p` needs key=value."""
        with pytest.raises(errors.ParamError, match="expected key=value"):
            params.parse_assignments([bad])

    def test_repeated_name_is_refused(self) -> None:
        """Giving a parameter twice is ambiguous."""
        with pytest.raises(errors.ParamError, match="given twice"):
            params.parse_assignments(["a=1", "a=2"])


class TestResolve:
    def test_strings_are_coerced_to_each_type(self) -> None:
        """Command-line strings become the declared types; absent ones take defaults."""
        got = params.resolve(
            SPECS,
            {
                "service": "maia",
                "to_revision": "3",
                "force": "yes",
                "since": "90s",
                "hosts": "a, b",
            },
            runbook="rb",
        )
        assert got["to_revision"] == 3
        assert got["force"] is True
        assert got["since"] == 90.0
        assert got["hosts"] == ["a", "b"]
        assert got["ratio"] == 0.4
        assert got["mode"] == "legacy"

    @pytest.mark.parametrize(
        ("given", "message"),
        [
            ({}, "needs parameter 'service'"),
            ({"service": "m", "to_revision": "three"}, "expected an integer"),
            ({"service": "m", "to_revision": "-1"}, "below its minimum"),
            ({"service": "m", "ratio": "2"}, "above its maximum"),
            ({"service": "m", "ratio": "nan"}, "finite number"),
            ({"service": "m", "force": "maybe"}, "expected true or false"),
            ({"service": "m", "since": "soon"}, "duration such as"),
            ({"service": "m", "mode": "turbo"}, "is not one of: legacy, hybrid, crystal"),
            ({"service": "m", "reason": "x" * 21}, "21 characters, more than its limit of 20"),
            ({"service": "m", "tag": "latest"}, "does not match the pattern"),
            ({"service": "m\x00; rm -rf /"}, "control characters"),
            ({"service": "m", "servce": "x"}, "has no parameter 'servce'"),
            ({"service": True}, "expected a string"),
        ],
    )
    def test_bad_values_name_the_parameter(self, given: dict[str, object], message: str) -> None:
        """Each kind of bad input is refused with the parameter and the expected form."""
        with pytest.raises(errors.ParamError, match=message) as info:
            params.resolve(SPECS, given, runbook="rb")
        assert info.value.exit_code == 2

    def test_unknown_parameter_suggests_the_close_one(self) -> None:
        """A typo gets a did-you-mean."""
        with pytest.raises(errors.ParamError) as info:
            params.resolve(SPECS, {"service": "m", "servce": "x"}, runbook="rb")
        assert "did you mean 'service'" in str(info.value)

    def test_no_string_over_the_source_limit_even_if_declared_higher(self) -> None:
        """The checklist's 1000-character limit is a ceiling for every string."""
        with pytest.raises(ValueError, match="less than or equal to 1000"):
            ParamSpec(type="string", max_length=5000)
        with pytest.raises(errors.ParamError, match="more than its limit of 1000"):
            params.resolve({"r": ParamSpec()}, {"r": "x" * 1001}, runbook="rb")

    def test_secret_values_are_redacted_for_the_journal(self) -> None:
        """Secret parameters are masked in what gets journalled."""
        specs = {"token": ParamSpec(secret=True), "name": ParamSpec()}
        assert params.redact(specs, {"token": "abc", "name": "n"}) == {
            "token": "*****",
            "name": "n",
        }
