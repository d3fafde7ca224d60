"""Read YAML safely and remember where every value came from.

Runbooks and inventory files are written by people at odd hours; every error must point at
`file:line:column`. PyYAML's safe loader forgets positions once it builds Python objects, so
this module composes the node graph itself, builds plain data from it and keeps a map from
each value's path (``("steps", 1, "with", "replicas")``) to its line and column.

It also refuses what a runbook never needs and an attacker would send: files over
``MAX_FILE_BYTES``, several documents in one file, duplicate keys, non-string keys, and
alias expansion past ``MAX_NODES`` (the billion-laughs bomb is refused after reading at most
that many nodes, never expanded).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from crystal_runbook import errors

MAX_FILE_BYTES = 1024 * 1024
MAX_NODES = 50_000
MAX_DEPTH = 64

PathKey = tuple[str | int, ...]

try:  # the C parser is much faster; it is part of PyYAML's wheels
    _Loader: type[Any] = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - pure-Python PyYAML builds
    _Loader = yaml.SafeLoader


@dataclass
class Source:
    """Data read from one YAML file, with the position of each value in it."""

    path: str
    data: Any
    text: str
    positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)

    def where(self, loc: PathKey) -> tuple[int, int]:
        """Line and column of ``loc``, or of its nearest ancestor that has one."""
        key = tuple(loc)
        while key:
            if key in self.positions:
                return self.positions[key]
            key = key[:-1]
        return self.positions.get((), (1, 1))

    def problem(self, loc: PathKey, message: str) -> errors.Problem:
        """A problem located at ``loc``."""
        line, column = self.where(loc)
        return errors.Problem(self.path, line, column, message)


def read_file(path: Path, *, display: str | None = None) -> Source:
    """Read and parse one YAML file.

    Raises:
        errors.RunbookInvalid: unreadable, too large, or not valid YAML (with position).
    """
    shown = display or str(path)
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise errors.RunbookInvalid([errors.Problem(shown, 1, 1, "file not found")]) from None
    except OSError as exc:
        raise errors.RunbookInvalid(
            [errors.Problem(shown, 1, 1, f"cannot read file: {exc.strerror}")]
        ) from None
    if len(raw) > MAX_FILE_BYTES:
        raise errors.RunbookInvalid(
            [
                errors.Problem(
                    shown,
                    1,
                    1,
                    f"file is larger than {MAX_FILE_BYTES // 1024} KiB; "
                    "a runbook or inventory file is never that big",
                )
            ]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.RunbookInvalid(
            [errors.Problem(shown, 1, 1, f"file is not UTF-8 text (byte {exc.start})")]
        ) from None
    return parse_text(text, path=shown)


def parse_text(text: str, *, path: str) -> Source:
    """Parse YAML text (one document) into a :class:`Source`."""
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or exc.context or "invalid YAML"
        raise errors.RunbookInvalid(
            [errors.Problem(path, line, col, f"invalid YAML: {what}")]
        ) from None
    except yaml.YAMLError as exc:
        raise errors.RunbookInvalid([errors.Problem(path, 1, 1, f"invalid YAML: {exc}")]) from None
    if len(nodes) > 1:
        second = nodes[1].start_mark
        raise errors.RunbookInvalid(
            [
                errors.Problem(
                    path,
                    second.line + 1,
                    second.column + 1,
                    "several YAML documents in one file; put one per file",
                )
            ]
        )
    source = Source(path=path, data=None, text=text)
    if nodes:
        builder = _Builder(source)
        source.data = builder.build(nodes[0], (), 0)
        if builder.problems:
            raise errors.RunbookInvalid(builder.problems)
    return source


class _Builder:
    """Turn a composed node graph into plain data, counting nodes as it goes."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.count = 0
        self.problems: list[errors.Problem] = []
        self.scalars = yaml.constructor.SafeConstructor()

    def _at(self, node: yaml.Node) -> tuple[int, int]:
        return node.start_mark.line + 1, node.start_mark.column + 1

    def _budget(self, node: yaml.Node, depth: int) -> None:
        self.count += 1
        if self.count > MAX_NODES or depth > MAX_DEPTH:
            line, col = self._at(node)
            what = (
                f"more than {MAX_NODES} values"
                if self.count > MAX_NODES
                else f"nesting deeper than {MAX_DEPTH} levels"
            )
            raise errors.RunbookInvalid(
                [
                    errors.Problem(
                        self.source.path,
                        line,
                        col,
                        f"document expands to {what} (YAML aliases?); refused",
                    )
                ]
            )

    def build(self, node: yaml.Node, loc: PathKey, depth: int) -> Any:
        self._budget(node, depth)
        self.source.positions.setdefault(loc, self._at(node))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, i), depth + 1) for i, item in enumerate(node.value)]
        try:
            return self.scalars.construct_object(node)
        except yaml.constructor.ConstructorError as exc:
            line, col = self._at(node)
            self.problems.append(
                errors.Problem(self.source.path, line, col, f"cannot read value: {exc.problem}")
            )
            return None

    def _mapping(self, node: yaml.MappingNode, loc: PathKey, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        seen: dict[str, tuple[int, int]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                merged = self.build(value_node, loc, depth + 1)
                for part in merged if isinstance(merged, list) else [merged]:
                    if isinstance(part, Mapping):
                        for k, v in part.items():
                            result.setdefault(k, v)
                continue
            line, col = self._at(key_node)
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(
                    errors.Problem(
                        self.source.path, line, col, "mapping keys must be plain strings"
                    )
                )
                continue
            key = str(key_node.value)
            if key in seen:
                first = seen[key]
                self.problems.append(
                    errors.Problem(
                        self.source.path,
                        line,
                        col,
                        f"duplicate key {key!r} (first at line {first[0]}); keep only one",
                    )
                )
                continue
            seen[key] = (line, col)
            self.source.positions[(*loc, key)] = (line, col)
            result[key] = self.build(value_node, (*loc, key), depth + 1)
        return result
