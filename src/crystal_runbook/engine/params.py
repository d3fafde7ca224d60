"""Turn user input (`-p key=value`, Slack arguments, trigger reasons) into typed parameters.

Everything a user can send passes through here before any step runs: unknown names, missing
required values, wrong types, values outside `minimum`/`maximum`/`choices`/`pattern`, strings
over `max_length` (1000 characters at most, the source checklist's input limit) and control
characters are refused with a message naming the parameter and the expected form.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from crystal_runbook import errors
from crystal_runbook.engine import durations, imageref
from crystal_runbook.engine.model import MAX_INPUT_LENGTH, ParamSpec

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
MAX_LIST_ITEMS = 100


def parse_assignments(pairs: Sequence[str]) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` -> ``{"a": "1", "b": "x=y"}``.

    Raises:
        errors.ParamError: an item without ``=`` or with an empty name, or a repeated name.
    """
    result: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise errors.ParamError(
                f"-p {pair[:60]!r}: expected key=value",
                hint="for example: -p to_revision=3 -p reason='p99 above 2s'",
            )
        if name in result:
            raise errors.ParamError(f"-p {name}: given twice; give each parameter once")
        result[name] = value
    return result


def resolve(
    specs: Mapping[str, ParamSpec], given: Mapping[str, Any], *, runbook: str
) -> dict[str, Any]:
    """Typed values for every declared parameter: given ones coerced, others defaulted.

    Raises:
        errors.ParamError: naming the parameter, what was wrong and what is expected.
    """
    unknown = [name for name in given if name not in specs]
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name, list(specs), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        declared = ", ".join(sorted(specs)) or "none"
        raise errors.ParamError(
            f"runbook {runbook!r} has no parameter {name!r}",
            hint=f"{hint}its parameters: {declared}",
        )
    values: dict[str, Any] = {}
    for name, spec in specs.items():
        if name in given:
            values[name] = coerce(name, spec, given[name])
        elif spec.required:
            raise errors.ParamError(
                f"runbook {runbook!r} needs parameter {name!r} ({spec.type})",
                hint=f"pass it with -p {name}=VALUE"
                + (f": {spec.description}" if spec.description else ""),
            )
        else:
            values[name] = None if spec.default is None else coerce(name, spec, spec.default)
    return values


def coerce(name: str, spec: ParamSpec, value: Any) -> Any:
    """One value converted to the parameter's type and checked against its limits."""
    where = f"parameter {name!r}"
    converted = _convert(where, spec, value)
    _check_limits(where, spec, converted)
    return converted


def _convert(where: str, spec: ParamSpec, value: Any) -> Any:
    kind = spec.type
    if isinstance(value, str):
        _check_text(where, spec, value)
    if kind == "string":
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise errors.ParamError(f"{where}: expected a string, got {type(value).__name__}")
        return str(value)
    if kind == "integer":
        if isinstance(value, bool):
            raise errors.ParamError(f"{where}: expected an integer, got a boolean")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d{1,18}\s*", value):
            return int(value)
        raise errors.ParamError(f"{where}: expected an integer such as 3, got {_show(value)}")
    if kind == "number":
        if isinstance(value, bool):
            raise errors.ParamError(f"{where}: expected a number, got a boolean")
        if isinstance(value, int | float):
            return float(value)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise errors.ParamError(
                f"{where}: expected a number such as 0.4, got {_show(value)}"
            ) from None
        if not math.isfinite(number):
            raise errors.ParamError(f"{where}: expected a finite number, got {_show(value)}")
        return number
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise errors.ParamError(f"{where}: expected true or false, got {_show(value)}")
    if kind == "duration":
        try:
            return durations.parse_duration(value)
        except ValueError as exc:
            raise errors.ParamError(f"{where}: {exc}") from None
    # list
    if isinstance(value, str):
        items: list[Any] = [item.strip() for item in value.split(",") if item.strip()]
    elif isinstance(value, list):
        items = value
    else:
        raise errors.ParamError(f"{where}: expected a comma-separated list, got {_show(value)}")
    if len(items) > MAX_LIST_ITEMS:
        raise errors.ParamError(f"{where}: more than {MAX_LIST_ITEMS} items")
    for item in items:
        if not isinstance(item, str | int | float) or isinstance(item, bool):
            raise errors.ParamError(f"{where}: list items must be strings or numbers")
        if isinstance(item, str):
            _check_text(where, spec, item)
    return items


def _check_text(where: str, spec: ParamSpec, value: str) -> None:
    limit = min(spec.max_length, MAX_INPUT_LENGTH)
    if len(value) > limit:
        raise errors.ParamError(
            f"{where}: {len(value)} characters, more than its limit of {limit}",
            hint="shorten it; put long explanations in the incident document afterwards",
        )
    if _CONTROL.search(value):
        raise errors.ParamError(f"{where}: contains control characters; use plain text")


def _check_limits(where: str, spec: ParamSpec, value: Any) -> None:
    if spec.choices is not None and value not in spec.choices:
        options = ", ".join(str(c) for c in spec.choices)
        raise errors.ParamError(f"{where}: {_show(value)} is not one of: {options}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if spec.minimum is not None and value < spec.minimum:
            raise errors.ParamError(f"{where}: {value} is below its minimum {spec.minimum:g}")
        if spec.maximum is not None and value > spec.maximum:
            raise errors.ParamError(f"{where}: {value} is above its maximum {spec.maximum:g}")
    if (
        spec.pattern is not None
        and isinstance(value, str)
        and not re.fullmatch(spec.pattern, value)
    ):
        raise errors.ParamError(
            f"{where}: {_show(value)} does not match the pattern {spec.pattern}"
        )
    if spec.format == "image" and isinstance(value, str):
        wrong = imageref.problem(value)
        if wrong is not None:
            raise errors.ParamError(
                f"{where}: {_show(value)} is not a valid image reference: {wrong}"
            )


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def redact(specs: Mapping[str, ParamSpec], values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with every secret parameter replaced, for the journal and documents."""
    return {
        k: ("*****" if k in specs and specs[k].secret and v is not None else v)
        for k, v in values.items()
    }
