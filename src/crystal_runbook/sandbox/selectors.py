"""Label and field selectors: parsing the query-string forms and matching objects.

Used by list, watch and delete-collection requests (``labelSelector=app=maia,tier in (a,b)``,
``fieldSelector=metadata.name=maia``) and by the controllers, which turn a Deployment's or
ReplicaSet's structured ``spec.selector`` (``matchLabels`` / ``matchExpressions``) into the
same requirements. The grammar follows Kubernetes' ``labels.Parse``: ``=``, ``==``, ``!=``,
``in``, ``notin``, ``key`` (exists), ``!key`` (does not exist), ``>`` and ``<``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_KEY = re.compile(
    r"^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?$"
)


class SelectorError(ValueError):
    """A selector string that does not parse; the message says which part and why."""


@dataclass(frozen=True)
class Requirement:
    """One condition on one label: ``key <op> values``."""

    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("gt", "lt") and present and value is not None:
            try:
                have, want = int(value), int(self.values[0])
            except ValueError:
                return False
            return have > want if self.op == "gt" else have < want
        return False

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!":
            return f"!{self.key}"
        if self.op in ("in", "notin"):
            return f"{self.key} {self.op} ({','.join(self.values)})"
        if self.op in ("gt", "lt"):
            return f"{self.key}{'>' if self.op == 'gt' else '<'}{self.values[0]}"
        return f"{self.key}{self.op}{self.values[0]}"


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of requirements; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unbalanced ')' in selector {text!r}")
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth:
        raise SelectorError(f"unbalanced '(' in selector {text!r}")
    parts.append("".join(current))
    return parts


_SET = re.compile(r"^\s*(\S+)\s+(in|notin)\s*\((.*)\)\s*$")
_BINARY = re.compile(r"^\s*([^=!<>\s]+)\s*(==|=|!=|>|<)\s*(\S*)\s*$")


def _check_key(key: str, whole: str) -> str:
    if not _KEY.match(key) or len(key) > 317:
        raise SelectorError(f"invalid label key {key!r} in selector {whole!r}")
    return key


def parse_labels(text: str | None) -> LabelSelector:
    """Parse ``labelSelector`` text; raises ``SelectorError`` naming the bad part."""
    if not text or not text.strip():
        return LabelSelector()
    reqs: list[Requirement] = []
    for part in _split_top_level(text):
        if not part.strip():
            raise SelectorError(f"empty requirement in selector {text!r}")
        m = _SET.match(part)
        if m:
            values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            reqs.append(Requirement(_check_key(m.group(1), text), m.group(2), values))
            continue
        m = _BINARY.match(part)
        if m:
            key, op, value = m.group(1), m.group(2), m.group(3)
            op = {"==": "=", ">": "gt", "<": "lt"}.get(op, op)
            if op in ("gt", "lt") and not value.lstrip("-").isdigit():
                raise SelectorError(f"{value!r} is not an integer in selector {text!r}")
            reqs.append(Requirement(_check_key(key, text), op, (value,)))
            continue
        stripped = part.strip()
        if stripped.startswith("!"):
            reqs.append(Requirement(_check_key(stripped[1:].strip(), text), "!"))
        elif " " not in stripped:
            reqs.append(Requirement(_check_key(stripped, text), "exists"))
        else:
            raise SelectorError(f"unable to parse requirement {part.strip()!r} in {text!r}")
    return LabelSelector(tuple(reqs))


def from_structured(selector: Mapping[str, Any] | None) -> LabelSelector:
    """A Deployment/ReplicaSet ``spec.selector`` (matchLabels, matchExpressions) as requirements."""
    if not selector:
        return LabelSelector()
    reqs: list[Requirement] = []
    for key, value in sorted((selector.get("matchLabels") or {}).items()):
        reqs.append(Requirement(key, "=", (str(value),)))
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in selector.get("matchExpressions") or []:
        op = ops.get(str(expr.get("operator")))
        if op is None:
            raise SelectorError(f"unknown matchExpressions operator {expr.get('operator')!r}")
        values = tuple(sorted(str(v) for v in expr.get("values") or []))
        reqs.append(Requirement(str(expr.get("key")), op, values))
    return LabelSelector(tuple(reqs))


@dataclass(frozen=True)
class FieldRequirement:
    """``path=value`` or ``path!=value`` over a field label of the object.

    ``getter`` is the kind's value of the label (``fieldlabels.bind`` sets it); without one
    the label is read as a dotted path.
    """

    path: str
    value: str
    negate: bool
    getter: Callable[[Mapping[str, Any]], str] | None = None

    def matches(self, obj: Mapping[str, Any]) -> bool:
        have = self.getter(obj) if self.getter is not None else field_value(obj, self.path)
        equal = have == self.value
        return not equal if self.negate else equal


@dataclass(frozen=True)
class FieldSelector:
    """A conjunction of field requirements; the empty selector matches everything."""

    requirements: tuple[FieldRequirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all(r.matches(obj) for r in self.requirements)


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string form of a dotted field path (``status.phase``); missing fields are ``""``."""
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, Mapping):
            return ""
        current = current.get(part)
    if current is None:
        return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    return str(current)


def parse_fields(text: str | None) -> FieldSelector:
    """Parse ``fieldSelector`` text (``a=b,c!=d``; ``==`` is ``=``)."""
    if not text or not text.strip():
        return FieldSelector()
    reqs: list[FieldRequirement] = []
    for raw in text.split(","):
        part = raw.strip()
        if "!=" in part:
            path, value = part.split("!=", 1)
            reqs.append(FieldRequirement(path.strip(), value.strip(), negate=True))
        elif "==" in part:
            path, value = part.split("==", 1)
            reqs.append(FieldRequirement(path.strip(), value.strip(), negate=False))
        elif "=" in part:
            path, value = part.split("=", 1)
            reqs.append(FieldRequirement(path.strip(), value.strip(), negate=False))
        else:
            raise SelectorError(
                f"invalid field selector requirement {part!r}: expected a=b or a!=b"
            )
        if not reqs[-1].path:
            raise SelectorError(f"invalid field selector requirement {part!r}: empty field")
    return FieldSelector(tuple(reqs))
