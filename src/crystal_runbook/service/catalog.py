"""The runbook format as a product: `validate` (lint runbooks and inventory) and `schema`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crystal_runbook import errors
from crystal_runbook.engine import inventory as inventory_mod
from crystal_runbook.engine import inventory_values, loader, model, yamlsource
from crystal_runbook.service import access
from crystal_runbook.service.workspace import Workspace, display

HOSTS_INI = "hosts.ini"


def validate(ws: Workspace, paths: Sequence[Path] = ()) -> tuple[int, list[errors.Problem]]:
    """Check runbooks and inventory files; returns (files checked, problems)."""
    targets = list(paths) or [ws.runbooks_dir, ws.inventory_dir]
    files: list[Path] = []
    for target in targets:
        if target.is_dir():
            files.extend(
                sorted(
                    p
                    for p in target.iterdir()
                    if (p.suffix in (".yaml", ".yml") or p.name == HOSTS_INI) and p.is_file()
                )
            )
        elif target.exists():
            files.append(target)
        else:
            files.append(target)  # reported as "file not found"
    problems: list[errors.Problem] = []
    for path in files:
        try:
            _validate_file(ws, path)
        except errors.RunbookInvalid as exc:
            problems.extend(exc.problems)
    return len(files), problems


def _validate_file(ws: Workspace, path: Path) -> None:
    if path.name in (HOSTS_INI, "hosts.yaml", "hosts.yml"):  # Ansible's format, ssh.run's too
        from crystal_runbook.hosts import inventory as hosts_inventory

        hosts_inventory.load(path)
        return
    source = yamlsource.read_file(path, display=display(path))
    kind = source.data.get("kind") if isinstance(source.data, dict) else None
    if kind == "Runbook" or (isinstance(source.data, dict) and "steps" in source.data):
        loader.load_source(source, ws.registry)
    elif path.name == inventory_mod.SERVICES_FILE:
        inventory_mod.parse(source)
        found = inventory_values.problems(source, state_dir=ws.state_dir)
        if found:
            raise errors.RunbookInvalid(found)
    elif path.name == access.FILENAME:
        access.parse(source)
    elif path.name == "triggers.yaml":
        from crystal_runbook.triggers import loader as triggers_loader

        triggers_loader.parse(source)
    elif path.name == "drills.yaml":
        from crystal_runbook.drills import loader as drills_loader

        drills_loader.parse(source, inventory=_inventory_beside(ws, path))
    elif path.name == "serve.yaml":
        from crystal_runbook.serving import loader as serve_loader

        serve_loader.parse(source, inventory=_inventory_beside(ws, path))
    elif path.parent.resolve() == ws.inventory_dir.resolve():
        return  # other inventory files are validated by the features that own them
    else:
        raise errors.RunbookInvalid(
            [source.problem((), "not a runbook (kind: Runbook) nor a known inventory file")]
        )


def _inventory_beside(ws: Workspace, path: Path) -> inventory_mod.Inventory | None:
    """The `services.yaml` next to ``path``, to check names against (None: none, or broken:
    its own problems are reported when it is validated)."""
    services = path.parent / inventory_mod.SERVICES_FILE
    if not services.exists():
        return None
    try:
        return inventory_mod.parse(yamlsource.read_file(services, display=display(services)))
    except errors.RunbookInvalid:
        return None


def schema(ws: Workspace) -> dict[str, Any]:
    """JSON Schema of runbooks, with each action's `with:` schema attached by `uses:`."""
    schema = model.json_schema()
    branches = []
    for name in ws.registry.names():
        action = ws.registry.get(name)
        branches.append(
            {
                "if": {"properties": {"uses": {"const": name}}, "required": ["uses"]},
                "then": {"properties": {"with": action.Args.model_json_schema()}},
            }
        )
    for definition in ("Step", "FailureStep"):
        schema.get("$defs", {}).get(definition, {})["allOf"] = branches
    schema.setdefault("$defs", {})
    schema["x-actions"] = {
        n: ws.registry.get(n).summary or (ws.registry.get(n).__doc__ or "").strip()
        for n in ws.registry.names()
    }
    return schema
