"""Read `triggers.yaml`, check it, and bind a service's rules to one environment's sources.

Two steps, because a file is checked before anyone knows where it will run:

- ``load`` parses and validates the file (types, durations, rule kinds, read-only SQL, the
  PromQL subset for rules pinned to the scrape source); every problem is
  ``file:line:column`` through ``engine.yamlsource`` and ``engine.validation``, exit 2.
- ``bind`` picks one service's rules for one environment and decides each rule's source:
  its own ``source:``, else the environment's ``metrics`` block in the inventory; the URL
  comes from that block or from the service's ``sources:`` in this file. A query the chosen
  source cannot run (PromQL outside the scrape subset) is again exit 2 with its position.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from crystal_runbook import errors
from crystal_runbook.engine import validation, yamlsource
from crystal_runbook.engine.inventory import Target
from crystal_runbook.triggers import model, promql, sqlsource
from crystal_runbook.triggers.sources import SourceKind, SourceSpec

FILENAME = model.FILENAME


@dataclass(frozen=True)
class LoadedTriggers:
    """A validated triggers file and where each of its values is."""

    path: str
    triggers: model.TriggersFile
    source: yamlsource.Source

    def problem(self, loc: tuple[str | int, ...], message: str) -> errors.Problem:
        return self.source.problem(loc, message)


@dataclass(frozen=True)
class BoundRule:
    """A rule with its source decided, ready to evaluate."""

    rule: model.Rule
    source: SourceKind
    where: str
    """``file:line`` of the rule, for messages."""

    @property
    def name(self) -> str:
        return self.rule.name

    def digest(self) -> str:
        """Changes when the rule's meaning changes (persisted state is then dropped)."""
        import hashlib

        text = self.rule.model_dump_json(by_alias=True) + self.source
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Bound:
    """One service's rules for one environment, and the sources they read."""

    service: str
    env: str
    path: str
    rules: tuple[BoundRule, ...]
    specs: Mapping[SourceKind, SourceSpec] = field(default_factory=dict)

    def rule(self, name: str) -> BoundRule:
        for bound in self.rules:
            if bound.name == name:
                return bound
        known = [b.name for b in self.rules]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise errors.InputError(
            f"no rule {name[:80]!r} for {self.service} in {self.env}{hint}",
            hint=f"rules in {self.path}: {', '.join(known)}",
        )


def load(path: Path, *, display: str | None = None) -> LoadedTriggers:
    """Read and validate a triggers file.

    Raises:
        errors.RunbookInvalid: every problem, with file:line:column (exit 2).
    """
    return parse(yamlsource.read_file(path, display=display))


def parse(source: yamlsource.Source) -> LoadedTriggers:
    """Validate parsed YAML as a triggers file."""
    data: Any = source.data if source.data is not None else {}
    if not isinstance(data, dict):
        raise errors.RunbookInvalid([source.problem((), "a triggers file must be a mapping")])
    try:
        triggers = model.TriggersFile.model_validate(data)
    except ValidationError as exc:
        raise errors.RunbookInvalid(
            validation.problems(source, exc), hint="see docs/triggers.md for the format"
        ) from None
    loaded = LoadedTriggers(source.path, triggers, source)
    problems = [p for name, svc in triggers.services.items() for p in _check(loaded, name, svc)]
    if problems:
        raise errors.RunbookInvalid(problems, hint="see docs/triggers.md for the format")
    return loaded


def _check(
    loaded: LoadedTriggers, service: str, svc: model.ServiceTriggers
) -> list[errors.Problem]:
    found: list[errors.Problem] = []
    seen: set[str] = set()
    for kind, conn in svc.sources.items():
        given = [k for k in ("url", "url_env", "urls") if getattr(conn, k) is not None]
        if len(given) != 1:
            found.append(
                loaded.problem(
                    ("services", service, "sources", kind),
                    "give exactly one of url, url_env or urls",
                )
            )
        if conn.urls is not None and kind != "scrape":
            found.append(
                loaded.problem(("services", service, "sources", kind, "urls"), "urls is for scrape")
            )
    for i, rule in enumerate(svc.rules):
        loc: tuple[str | int, ...] = ("services", service, "rules", i)
        if rule.name in seen:
            found.append(loaded.problem((*loc, "name"), f"duplicate rule name {rule.name!r}"))
        seen.add(rule.name)
        if rule.kind == "ratio" and rule.denominator is None:
            found.append(loaded.problem(loc, "a ratio rule needs `denominator:`"))
        if rule.kind != "ratio" and rule.denominator is not None:
            found.append(
                loaded.problem((*loc, "denominator"), "only ratio rules have a denominator")
            )
        if rule.kind == "trend":
            if rule.window is None:
                found.append(loaded.problem(loc, "a trend rule needs `window:` (e.g. 10m)"))
            if rule.op not in (">", ">="):
                found.append(
                    loaded.problem((*loc, "op"), "a trend rule compares the slope with > or >=")
                )
        elif rule.window is not None:
            found.append(loaded.problem((*loc, "window"), "only trend rules have a window"))
        if rule.params and rule.source not in (None, "sql"):
            found.append(loaded.problem((*loc, "params"), "params are for `source: sql` rules"))
        if rule.source is not None:
            found.extend(query_problems(loaded, loc, rule, rule.source))
    return found


def query_problems(
    loaded: LoadedTriggers, loc: tuple[str | int, ...], rule: model.Rule, kind: SourceKind
) -> list[errors.Problem]:
    """What ``kind`` refuses in ``rule``'s queries (checked before anything runs)."""
    found: list[errors.Problem] = []
    for key in ("query", "denominator"):
        text = getattr(rule, key)
        if text is None:
            continue
        if kind == "sql":
            refused = sqlsource.check_read_only(text)
            if refused is not None:
                found.append(loaded.problem((*loc, key), f"{key}: refused: {refused}"))
        elif kind == "scrape":
            try:
                promql.parse(text)
            except promql.PromQLError as exc:
                found.append(
                    loaded.problem(
                        (*loc, key),
                        f"{key}: the scrape source cannot run this query: {exc.message} "
                        f"(at character {exc.pos + 1} of the query)",
                    )
                )
    return found


def bind(
    loaded: LoadedTriggers,
    service: str,
    env: str,
    target: Target | None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Bound:
    """``service``'s rules for ``env``, each with its source decided.

    Raises:
        errors.TargetNotFound: the file has no rules for ``service`` (or none for ``env``).
        errors.RunbookInvalid: a rule has no source, or its query does not suit its source.
        errors.ConfigurationError: a source's URL variable is not set.
    """
    env_vars = os.environ if environ is None else environ
    svc = loaded.triggers.services.get(service)
    if svc is None:
        known = ", ".join(sorted(loaded.triggers.services)) or "none"
        raise errors.TargetNotFound(
            f"{loaded.path} has no rules for service {service[:80]!r}",
            hint=f"services with rules: {known}",
        )
    metrics = target.metrics if target is not None else None
    problems: list[errors.Problem] = []
    rules: list[BoundRule] = []
    specs: dict[SourceKind, SourceSpec] = {}
    for i, rule in enumerate(svc.rules):
        if rule.environments is not None and env not in rule.environments:
            continue
        loc: tuple[str | int, ...] = ("services", service, "rules", i)
        kind = rule.source or (metrics.source if metrics is not None else None)
        if kind is None:
            problems.append(
                loaded.problem(
                    loc,
                    f"rule {rule.name!r} has no source in {env}: set `source:` or give "
                    f"{service}/{env} a `metrics:` block in inventory/services.yaml",
                )
            )
            continue
        if rule.source is None:
            problems.extend(query_problems(loaded, loc, rule, kind))
        if rule.params and kind != "sql":
            problems.append(loaded.problem((*loc, "params"), "params are for sql rules"))
        if kind not in specs:
            spec = _spec(loaded, service, env, kind, svc, target, env_vars, loc)
            if isinstance(spec, errors.Problem):
                problems.append(spec)
                continue
            specs[kind] = spec
        line, _ = loaded.source.where(loc)
        rules.append(BoundRule(rule, kind, f"{loaded.path}:{line}"))
    if problems:
        raise errors.RunbookInvalid(problems, hint="nothing was evaluated")
    if not rules:
        raise errors.TargetNotFound(
            f"{loaded.path} has no rules for {service} in environment {env!r}",
            hint="check the rules' `environments:` lists",
        )
    return Bound(service, env, loaded.path, tuple(rules), specs)


def bind_inline(
    rule: model.Rule,
    service: str,
    env: str,
    target: Target | None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Bound:
    """Bind one rule written in a runbook step (``metrics.check`` with ``query:``)."""
    text = "<inline query>"
    source = yamlsource.Source(path=text, data=None, text="")
    triggers = model.TriggersFile.model_validate(
        {
            "apiVersion": model.API_VERSION,
            "kind": model.KIND,
            "services": {service: {"rules": [rule.model_dump(by_alias=True)]}},
        }
    )
    loaded = LoadedTriggers(text, triggers, source)
    problems = _check(loaded, service, triggers.services[service])
    if problems:
        raise errors.InputError("; ".join(p.message for p in problems))
    try:
        return bind(loaded, service, env, target, environ=environ)
    except errors.RunbookInvalid as exc:
        raise errors.InputError("; ".join(p.message for p in exc.problems)) from None


def _spec(  # noqa: PLR0917 - a private helper of bind(), called once
    loaded: LoadedTriggers,
    service: str,
    env: str,
    kind: SourceKind,
    svc: model.ServiceTriggers,
    target: Target | None,
    env_vars: Mapping[str, str],
    loc: tuple[str | int, ...],
) -> SourceSpec | errors.Problem:
    metrics = target.metrics if target is not None else None
    if metrics is not None and metrics.source == kind:
        url, var = metrics.url, metrics.url_env
        where = f"inventory: {service}/{env} metrics"
        urls: tuple[str, ...] = ()
        timeout = 5.0
    elif kind in svc.sources:
        conn = svc.sources[kind]
        url, var, urls, timeout = conn.url, conn.url_env, tuple(conn.urls or ()), conn.timeout
        where = f"{loaded.path}: services.{service}.sources.{kind}"
    else:
        return loaded.problem(
            loc,
            f"no {kind} source for {service} in {env}: the inventory's metrics block is "
            f"{metrics.source if metrics else 'absent'}; add `sources: {{{kind}: ...}}` "
            f"to {service} in this file",
        )
    if var is not None:
        value = env_vars.get(var)
        if not value:
            raise errors.ConfigurationError(
                f"${var} is not set; the {kind} source of {service} in {env} reads its URL there",
                hint=f"export {var}=... (secrets only ever come from the environment)",
            )
        return SourceSpec(kind, value, job=service, timeout=timeout, where=f"${var}")
    if urls:
        return SourceSpec(kind, urls[0], urls=urls, job=service, timeout=timeout, where=where)
    if not url:
        return loaded.problem(loc, f"the {kind} source of {service} in {env} has no URL ({where})")
    return SourceSpec(kind, url, job=service, timeout=timeout, where=where)
