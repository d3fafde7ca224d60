"""Turn pydantic validation errors into file:line:column problems a person can act on.

pydantic's messages name a location as a tuple; runbook authors need the line in their file
and the form that was expected. This is the one place that translation happens.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from crystal_runbook import errors
from crystal_runbook.engine import yamlsource


def dotted(loc: tuple[str | int, ...]) -> str:
    """``("steps", 1, "with", "x")`` -> ``steps[1].with.x``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def describe(error: Any) -> str:
    """One pydantic error dict as a sentence with the expected form."""
    kind = error.get("type", "")
    loc = tuple(error.get("loc", ()))
    name = dotted(loc)
    if kind == "extra_forbidden":
        return f"{name}: unknown key; remove it or check its spelling"
    if kind == "missing":
        return f"{name}: required key is missing"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"{name}: expected {expected}, got {error.get('input')!r}"
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    given = error.get("input")
    if kind in {
        "string_type",
        "int_type",
        "int_parsing",
        "float_type",
        "float_parsing",
        "bool_type",
        "bool_parsing",
        "dict_type",
        "list_type",
    }:
        return f"{name}: {message.lower()}, got {type(given).__name__} {_short(given)}"
    return f"{name}: {message}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 50 else text[:47] + "..."


def problems(
    source: yamlsource.Source, exc: ValidationError, *, prefix: tuple[str | int, ...] = ()
) -> list[errors.Problem]:
    """Problems for every error in ``exc``; locations are relative to ``prefix`` in the file."""
    found = []
    for error in exc.errors():
        loc = (*prefix, *error.get("loc", ()))
        line, column = source.where(loc)
        found.append(errors.Problem(source.path, line, column, describe({**error, "loc": loc})))
    return found
