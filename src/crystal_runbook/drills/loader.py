"""Read `inventory/drills.yaml` and check it, with file:line:column for every problem.

The file is validated like the runbooks and triggers (``engine.yamlsource`` keeps positions,
``engine.validation`` words pydantic's errors); with the inventory at hand, each service and
environment must also exist in `services.yaml`, so a typo is refused by `validate` rather
than silently never drilled.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from crystal_runbook import errors
from crystal_runbook.drills import model
from crystal_runbook.engine import inventory as inventory_mod
from crystal_runbook.engine import validation, yamlsource

FILENAME = "drills.yaml"
HINT = "see docs/drills.md for the format"


@dataclass(frozen=True)
class LoadedDrills:
    """A validated drills file and where each of its values is."""

    path: str
    drills: model.DrillsFile
    source: yamlsource.Source | None

    def where(self, service: str, env: str) -> str:
        """``file:line`` of a drill's block, for messages."""
        if self.source is None:
            return self.path
        line, _ = self.source.where(("services", service, "environments", env))
        return f"{self.path}:{line}"


EMPTY = LoadedDrills(path=FILENAME, drills=model.DrillsFile(), source=None)


def load(
    path: Path,
    *,
    display: str | None = None,
    inventory: inventory_mod.Inventory | None = None,
) -> LoadedDrills:
    """Read and validate a drills file; an absent file means no drill is scheduled.

    Raises:
        errors.RunbookInvalid: every problem, with file:line:column (exit 2).
    """
    if not path.exists():
        return LoadedDrills(path=display or str(path), drills=model.DrillsFile(), source=None)
    return parse(yamlsource.read_file(path, display=display), inventory=inventory)


def parse(
    source: yamlsource.Source, *, inventory: inventory_mod.Inventory | None = None
) -> LoadedDrills:
    """Validate parsed YAML as a drills file (and against ``inventory`` when given)."""
    data: Any = source.data if source.data is not None else {}
    if not isinstance(data, dict):
        raise errors.RunbookInvalid([source.problem((), "a drills file must be a mapping")])
    try:
        drills = model.DrillsFile.model_validate(data)
    except ValidationError as exc:
        raise errors.RunbookInvalid(validation.problems(source, exc), hint=HINT) from None
    if inventory is not None:
        problems = _unknown(source, drills, inventory)
        if problems:
            raise errors.RunbookInvalid(problems, hint=HINT)
    return LoadedDrills(path=source.path, drills=drills, source=source)


def _unknown(
    source: yamlsource.Source, drills: model.DrillsFile, inventory: inventory_mod.Inventory
) -> list[errors.Problem]:
    problems: list[errors.Problem] = []
    for name, svc in drills.services.items():
        known = inventory.services.get(name)
        if known is None:
            problems.append(
                source.problem(
                    ("services", name),
                    f"unknown service {name!r}{_close(name, list(inventory.services))}; "
                    f"services in {inventory_mod.SERVICES_FILE}: "
                    f"{', '.join(sorted(inventory.services)) or 'none'}",
                )
            )
            continue
        for env in svc.environments:
            if env not in known.environments:
                problems.append(
                    source.problem(
                        ("services", name, "environments", env),
                        f"service {name!r} has no environment {env!r} in "
                        f"{inventory_mod.SERVICES_FILE}{_close(env, list(known.environments))}; "
                        f"its environments: {', '.join(sorted(known.environments))}",
                    )
                )
    return problems


def _close(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
