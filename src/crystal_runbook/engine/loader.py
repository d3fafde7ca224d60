"""Find, read and fully validate a runbook before anything runs.

`validate`, `plan` and every run call ``load``: it parses the YAML (with positions), checks
the model, step ids, each `uses:` against the action registry, literal `with:` values against
the action's argument model, parameter defaults, and every template for undefined names and
forward references. All problems are collected and reported together with file:line:column.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from crystal_runbook import errors
from crystal_runbook.engine import params as params_mod
from crystal_runbook.engine import templating, validation, yamlsource
from crystal_runbook.engine.model import Runbook
from crystal_runbook.engine.registry import Registry, unknown_action_message

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class LoadedRunbook:
    """A validated runbook and where it came from."""

    runbook: Runbook
    source: yamlsource.Source
    path: str
    digest: str

    @property
    def text(self) -> str:
        return self.source.text


def resolve_path(name_or_path: str, runbooks_dir: Path, *, allow_paths: bool = True) -> Path:
    """The file a runbook name (``rollback``) or path (``./x.yaml``) refers to.

    A name is looked up only inside ``runbooks_dir``; anything that looks like a name but
    escapes it (``../../etc/passwd``) is refused. Explicit ``.yaml``/``.yml`` paths are
    accepted from the command line only (``allow_paths``), never from Slack.

    Raises:
        errors.InputError: not a valid name, escapes the directory, or no such runbook.
    """
    text = name_or_path.strip()
    is_path = text.endswith((".yaml", ".yml"))
    if is_path and allow_paths:
        path = Path(text)
        if not path.is_file():
            raise errors.InputError(f"runbook file {text[:200]!r} does not exist")
        return path
    if not _NAME.fullmatch(text) or ".." in text:
        raise errors.InputError(
            f"{text[:100]!r} is not a runbook name",
            hint="use a name from the runbooks directory (see `crystal-runbook run --help`)"
            + (", or a path ending in .yaml" if allow_paths else ""),
        )
    base = runbooks_dir.resolve()
    for suffix in (".yaml", ".yml"):
        candidate = (base / f"{text}{suffix}").resolve()
        if candidate.parent != base:
            raise errors.InputError(f"runbook name {text!r} escapes {runbooks_dir}")
        if candidate.is_file():
            return candidate
    known = sorted(p.stem for p in base.glob("*.y*ml")) if base.is_dir() else []
    raise errors.InputError(
        f"no runbook named {text!r} in {runbooks_dir}",
        hint=f"available: {', '.join(known) or 'none'}",
    )


def load(path: Path, registry: Registry, *, display: str | None = None) -> LoadedRunbook:
    """Read and fully validate the runbook at ``path``.

    Raises:
        errors.RunbookInvalid: every problem found, each with file:line:column.
    """
    return load_source(yamlsource.read_file(path, display=display or str(path)), registry)


def load_text(text: str, registry: Registry, *, path: str) -> LoadedRunbook:
    """Validate runbook text (as journalled by a run, for `resume`)."""
    return load_source(yamlsource.parse_text(text, path=path), registry)


def load_source(source: yamlsource.Source, registry: Registry) -> LoadedRunbook:
    data = source.data
    if not isinstance(data, dict):
        raise errors.RunbookInvalid(
            [
                source.problem(
                    (), "a runbook is a YAML mapping with apiVersion, kind, name and steps"
                )
            ]
        )
    try:
        runbook = Runbook.model_validate(data)
    except ValidationError as exc:
        raise errors.RunbookInvalid(validation.problems(source, exc)) from None
    problems = _semantic_problems(runbook, source, registry)
    if problems:
        raise errors.RunbookInvalid(problems)
    digest = hashlib.sha256(source.text.encode()).hexdigest()[:16]
    return LoadedRunbook(runbook=runbook, source=source, path=source.path, digest=digest)


def _semantic_problems(
    runbook: Runbook, source: yamlsource.Source, registry: Registry
) -> list[errors.Problem]:
    problems: list[errors.Problem] = []
    add = problems.append

    for name, spec in runbook.params.items():
        if spec.default is not None:
            try:
                params_mod.coerce(name, spec, spec.default)
            except errors.ParamError as exc:
                add(source.problem(("params", name, "default"), f"default of {exc.message}"))
    if runbook.environments is not None:
        for i, env in enumerate(runbook.confirm):
            if env not in runbook.environments:
                add(
                    source.problem(
                        ("confirm", i), f"confirm lists {env!r}, which is not in environments"
                    )
                )

    seen: dict[str, int] = {}
    for i, step in enumerate(runbook.steps):
        if step.id in seen:
            add(
                source.problem(
                    ("steps", i, "id"),
                    f"duplicate step id {step.id!r} (first used by steps[{seen[step.id]}])",
                )
            )
        else:
            seen[step.id] = i
    for i, fstep in enumerate(runbook.on_failure):
        if fstep.id is not None and fstep.id in seen:
            add(source.problem(("on_failure", i, "id"), f"duplicate step id {fstep.id!r}"))

    param_names = frozenset(runbook.params)
    all_ids = [s.id for s in runbook.steps]
    earlier: dict[str, tuple[str, ...] | None] = {}

    if runbook.lock is not None:
        scope = templating.Scope(
            params=param_names, earlier_steps={}, later_steps=frozenset(all_ids)
        )
        _check_templates(source, ("lock",), runbook.lock, scope, problems)

    groups: list[tuple[str, list[Any], bool]] = [
        ("steps", list(runbook.steps), False),
        ("on_failure", list(runbook.on_failure), True),
    ]
    for group, steps, failure in groups:
        for i, step in enumerate(steps):
            loc: tuple[str | int, ...] = (group, i)
            later = frozenset(all_ids[i:]) if not failure else frozenset()
            scope = templating.Scope(
                params=param_names, earlier_steps=dict(earlier), later_steps=later, failure=failure
            )
            declared: tuple[str, ...] | None = None
            if step.uses not in registry:
                add(
                    source.problem(
                        (*loc, "uses"), unknown_action_message(step.uses, registry.names())
                    )
                )
            else:
                action = registry.get(step.uses)
                declared = action.outputs
                _check_literal_args(source, (*loc, "with"), action.Args, step.with_, problems)
                for key in sorted(k for k, d in action.markup.items() if d == "shell"):
                    command = step.with_.get(key)
                    if isinstance(command, str):
                        for message in templating.shell_problems(command):
                            add(source.problem((*loc, "with", key), message))
            _check_templates(source, (*loc, "with"), step.with_, scope, problems)
            if step.when is not None:
                _check_templates(
                    source, (*loc, "when"), step.when, scope, problems, expression=True
                )
            if not failure:
                earlier[step.id] = declared
    return problems


def _check_literal_args(
    source: yamlsource.Source,
    loc: tuple[str | int, ...],
    model: Any,
    with_: dict[str, Any],
    problems: list[errors.Problem],
) -> None:
    """Validate the `with:` values that hold no template; templated ones are checked at plan."""
    literal = {k: v for k, v in with_.items() if not templating.has_template(v)}
    templated = set(with_) - set(literal)
    try:
        model.model_validate(literal)
    except ValidationError as exc:
        for error in exc.errors():
            field = error["loc"][0] if error["loc"] else None
            if error["type"] == "missing" and field in templated:
                continue
            if field is None and templated:  # a rule across fields needs them all: plan checks it
                continue
            full = (*loc, *error["loc"])
            line, col = source.where(full)
            problems.append(
                errors.Problem(source.path, line, col, validation.describe({**error, "loc": full}))
            )


def _check_templates(
    source: yamlsource.Source,
    loc: tuple[str | int, ...],
    value: Any,
    scope: templating.Scope,
    problems: list[errors.Problem],
    *,
    expression: bool = False,
) -> None:
    if isinstance(value, str):
        if expression or templating.has_template(value):
            for message in templating.check(value, scope, expression=expression):
                problems.append(source.problem(loc, message))
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_templates(source, (*loc, key), item, scope, problems)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_templates(source, (*loc, i), item, scope, problems)
