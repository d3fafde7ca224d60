"""Field errors worded as Kubernetes words them (``k8s.io/apimachinery/.../validation/field``).

A 422 from a real API server lists causes such as ``spec.replicas: Invalid value: -1: must
be greater than or equal to 0``; clients and people match on that text, so the sandbox
builds its causes with the same constructors (``field.Required``, ``Invalid``,
``NotSupported``, ``Forbidden``, ``Duplicate``) and prints bad values as Go does
(``field.Error.ErrorBody``: strings quoted, numbers bare, an int-or-string as its Go struct,
because ``IntOrString.String`` has a pointer receiver and the value is passed by value).
"""

from __future__ import annotations

import json
from typing import Any

Cause = tuple[str, str, str]  # (reason, field, message) as in Status details.causes


def go_value(value: Any) -> str:
    """How ``field.Error`` prints a bad value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        items = ", ".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in sorted(value.items()))
        return "map[string]string{" + items + "}"
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def int_or_string(value: Any) -> str:
    """An ``intstr.IntOrString`` printed with ``%#v``."""
    if isinstance(value, str):
        return f"intstr.IntOrString{{Type:1, IntVal:0, StrVal:{json.dumps(value)}}}"
    return f'intstr.IntOrString{{Type:0, IntVal:{int(value or 0)}, StrVal:""}}'


def required(path: str, detail: str = "") -> Cause:
    return ("FieldValueRequired", path, f"Required value: {detail}" if detail else "Required value")


def invalid(path: str, value: Any, detail: str, *, shown: str | None = None) -> Cause:
    text = go_value(value) if shown is None else shown
    return ("FieldValueInvalid", path, f"Invalid value: {text}: {detail}")


def not_supported(path: str, value: Any, supported: list[str]) -> Cause:
    values = ", ".join(json.dumps(v) for v in supported)
    return (
        "FieldValueNotSupported",
        path,
        f"Unsupported value: {go_value(value)}: supported values: {values}",
    )


def forbidden(path: str, detail: str) -> Cause:
    return ("FieldValueForbidden", path, f"Forbidden: {detail}")


def duplicate(path: str, value: Any) -> Cause:
    return ("FieldValueDuplicate", path, f"Duplicate value: {go_value(value)}")


def too_long(path: str, limit: int) -> Cause:
    return ("FieldValueTooLong", path, f"Too long: may not be more than {limit} bytes")


NEGATIVE = "must be greater than or equal to 0"


def nonnegative(path: str, value: Any) -> list[Cause]:
    """``apivalidation.ValidateNonnegativeField``."""
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        return [invalid(path, value, NEGATIVE)]
    return []


PERCENT_MSG = (
    "a valid percent string must be a numeric string followed by an ending '%' "
    "(e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"
)


def percent_value(value: Any) -> int | None:
    """The number of a valid percent string (``"25%"`` → 25), else None."""
    if isinstance(value, str) and len(value) > 1 and value.endswith("%") and value[:-1].isdigit():
        return int(value[:-1])
    return None


def int_or_percent_value(value: Any) -> int:
    """``getIntOrPercentValue``: the percent's number, the int, or 0."""
    pct = percent_value(value)
    if pct is not None:
        return pct
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def positive_int_or_percent(path: str, value: Any) -> list[Cause]:
    """``ValidatePositiveIntOrPercent``."""
    if isinstance(value, str):
        if percent_value(value) is None:
            return [invalid(path, value, PERCENT_MSG, shown=int_or_string(value))]
        return []
    if isinstance(value, int) and not isinstance(value, bool):
        return nonnegative(path, value)
    return [invalid(path, value, "must be an integer or percentage (e.g '5%%')")]


def not_more_than_100_percent(path: str, value: Any) -> list[Cause]:
    """``IsNotMoreThan100Percent``."""
    pct = percent_value(value)
    if pct is None or pct <= 100:
        return []
    return [invalid(path, value, "must not be greater than 100%", shown=int_or_string(value))]
