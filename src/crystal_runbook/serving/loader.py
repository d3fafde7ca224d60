"""Read `inventory/serve.yaml` and check it, with file:line:column for every problem.

Validated like the runbooks and the other inventory files (``engine.yamlsource`` keeps
positions, ``engine.validation`` words pydantic's errors); with the inventory at hand, every
watched service and environment must exist in `services.yaml` and have a `kubernetes:` block
(its watcher's Lease lives beside its Deployment), and none is listed twice.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from crystal_runbook import errors
from crystal_runbook.engine import inventory as inventory_mod
from crystal_runbook.engine import validation, yamlsource
from crystal_runbook.serving import model

FILENAME = "serve.yaml"
HINT = "see docs/operations.md for the format"


@dataclass(frozen=True)
class LoadedServe:
    """A validated serve file and where each of its values is."""

    path: str
    serve: model.ServeFile
    source: yamlsource.Source | None

    def where(self, *loc: str | int) -> str:
        """``file:line`` of a value, for messages."""
        if self.source is None:
            return self.path
        line, _ = self.source.where(tuple(loc))
        return f"{self.path}:{line}"


def load(
    path: Path,
    *,
    display: str | None = None,
    inventory: inventory_mod.Inventory | None = None,
) -> LoadedServe:
    """Read and validate a serve file; an absent file means the defaults (nothing watched).

    Raises:
        errors.RunbookInvalid: every problem, with file:line:column (exit 2).
    """
    if not path.exists():
        return LoadedServe(path=display or str(path), serve=model.ServeFile(), source=None)
    return parse(yamlsource.read_file(path, display=display), inventory=inventory)


def parse(
    source: yamlsource.Source, *, inventory: inventory_mod.Inventory | None = None
) -> LoadedServe:
    """Validate parsed YAML as a serve file (and against ``inventory`` when given)."""
    data: Any = source.data if source.data is not None else {}
    if not isinstance(data, dict):
        raise errors.RunbookInvalid([source.problem((), "a serve file must be a mapping")])
    try:
        serve = model.ServeFile.model_validate(data)
    except ValidationError as exc:
        raise errors.RunbookInvalid(validation.problems(source, exc), hint=HINT) from None
    problems = _twice(source, serve)
    if inventory is not None:
        problems += _unknown(source, serve, inventory)
    if problems:
        raise errors.RunbookInvalid(problems, hint=HINT)
    return LoadedServe(path=source.path, serve=serve, source=source)


def _twice(source: yamlsource.Source, serve: model.ServeFile) -> list[errors.Problem]:
    seen: dict[tuple[str, str], int] = {}
    problems = []
    for i, entry in enumerate(serve.watch):
        key = (entry.service, entry.env)
        if key in seen:
            problems.append(
                source.problem(
                    ("watch", i),
                    f"{entry.service} in {entry.env} is watched twice (also entry "
                    f"{seen[key] + 1}); one watcher per service and environment",
                )
            )
        else:
            seen[key] = i
    return problems


def _unknown(
    source: yamlsource.Source, serve: model.ServeFile, inventory: inventory_mod.Inventory
) -> list[errors.Problem]:
    problems: list[errors.Problem] = []
    for i, entry in enumerate(serve.watch):
        known = inventory.services.get(entry.service)
        if known is None:
            problems.append(
                source.problem(
                    ("watch", i, "service"),
                    f"unknown service {entry.service!r}"
                    f"{_close(entry.service, list(inventory.services))}; services in "
                    f"{inventory_mod.SERVICES_FILE}: "
                    f"{', '.join(sorted(inventory.services)) or 'none'}",
                )
            )
            continue
        block = known.environments.get(entry.env)
        if block is None:
            problems.append(
                source.problem(
                    ("watch", i, "env"),
                    f"service {entry.service!r} has no environment {entry.env!r} in "
                    f"{inventory_mod.SERVICES_FILE}{_close(entry.env, list(known.environments))}"
                    f"; its environments: {', '.join(sorted(known.environments))}",
                )
            )
        elif block.kubernetes is None:
            problems.append(
                source.problem(
                    ("watch", i),
                    f"{entry.service} in {entry.env} has no `kubernetes:` block in "
                    f"{inventory_mod.SERVICES_FILE}: its watcher's Lease lives beside its "
                    "Deployment",
                )
            )
    return problems


def _close(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
