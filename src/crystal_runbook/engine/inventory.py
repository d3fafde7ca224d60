"""The inventory: which services exist, in which environments, and where each one lives.

`inventory/services.yaml` (design.md section 6) is the only place that says which cluster,
namespace, deployment, health URL, metric source and Slack channel belong to a service in an
environment. Runbooks see one environment's block as `target`. Unknown services and
environments are refused here, before any step runs, with the names that do exist.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError

from crystal_runbook import errors
from crystal_runbook.engine import validation, yamlsource

SERVICES_FILE = "services.yaml"
PLACEHOLDERS = ("state_dir", "sandbox_url")
"""Names a block's strings may use as ``{name}``; expanded by ``Inventory.target``."""

Variables = Mapping[str, Callable[[], str]]
"""Placeholder name -> a function giving its value (called only when a block uses it; it
raises a ``CrystalError`` saying what is missing when the value cannot be known)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KubernetesTarget(_Strict):
    """Where the service's Deployment is."""

    deployment: str
    namespace: str = "default"
    context: str | None = Field(default=None, description="kubeconfig context; None: current")
    kubeconfig: str | None = Field(
        default=None, description="kubeconfig path; None: $KUBECONFIG or ~/.kube/config"
    )
    container: str | None = Field(default=None, description="main container; None: all")


class MetricsTarget(_Strict):
    """Where the service's metrics are read (rollback triggers and verification)."""

    source: Literal["prometheus", "sql", "scrape"]
    url: str | None = None
    url_env: str | None = Field(
        default=None, description="environment variable holding the URL (for URLs with secrets)"
    )


class HostsTarget(_Strict):
    """Where the service's virtual machines are: a host group of an Ansible-style inventory.

    ``hosts: maia_vms`` is short for ``hosts: {group: maia_vms}``. Paths may start with
    ``{state_dir}`` (the state directory in use, e.g. for the practice hosts).
    """

    group: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
    inventory: str | None = Field(
        default=None, description="hosts.ini or hosts.yaml; None: the inventory directory's"
    )
    known_hosts: str | None = Field(
        default=None, description="known_hosts the host keys are checked against; None: ~/.ssh's"
    )


def _group_shorthand(value: object) -> object:
    return {"group": value} if isinstance(value, str) else value


class Target(_Strict):
    """One service in one environment."""

    kubernetes: KubernetesTarget | None = None
    health_url: str | None = None
    metrics: MetricsTarget | None = None
    slack_channel: str | None = None
    hosts: Annotated[HostsTarget | None, BeforeValidator(_group_shorthand)] = Field(
        default=None, description="Ansible/SSH host group (and its inventory and known_hosts)"
    )
    dashboards: dict[str, str] = Field(default_factory=dict)


class Service(_Strict):
    """A service and its environments."""

    description: str = ""
    owner: str = ""
    environments: dict[str, Target]


class Inventory(_Strict):
    """The whole `services.yaml`."""

    default_environment: str | None = None
    services: dict[str, Service] = Field(default_factory=dict)
    _variables: dict[str, Callable[[], str]] = PrivateAttr(default_factory=dict)

    def environments(self) -> list[str]:
        names: set[str] = set()
        for service in self.services.values():
            names.update(service.environments)
        return sorted(names)

    def target(self, service: str, env: str) -> Target:
        """The block of ``service`` in ``env``.

        Raises:
            errors.TargetNotFound: with the known services or that service's environments.
        """
        found = self.services.get(service)
        if found is None:
            raise errors.TargetNotFound(
                f"unknown service {service[:80]!r}" + _close(service, list(self.services)),
                hint=f"known services: {', '.join(sorted(self.services)) or 'none'} "
                f"(inventory/{SERVICES_FILE})",
            )
        block = found.environments.get(env)
        if block is None:
            raise errors.TargetNotFound(
                f"service {service!r} has no environment {env[:80]!r}"
                + _close(env, list(found.environments)),
                hint=f"its environments: {', '.join(sorted(found.environments))}",
            )
        return expand(block, self._variables)

    def with_variables(self, variables: Variables) -> Inventory:
        """This inventory, expanding ``{name}`` placeholders with ``variables`` in ``target``."""
        self._variables = dict(variables)
        return self


def expand(block: Target, variables: Variables) -> Target:
    """``block`` with the ``{name}`` placeholders of ``variables`` replaced in every string.

    Raises:
        errors.CrystalError: a placeholder's value cannot be known (from its function).
    """
    cache: dict[str, str] = {}

    def value(name: str) -> str:
        if name not in cache:
            cache[name] = variables[name]()
        return cache[name]

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            for name in variables:
                marker = "{" + name + "}"
                if marker in item:
                    item = item.replace(marker, value(name))
            return item
        if isinstance(item, dict):
            return {k: walk(v) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v) for v in item]
        return item

    data = block.model_dump(mode="json")
    expanded = walk(data)
    return block if expanded == data else Target.model_validate(expanded)


def _close(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def load(directory: Path, *, variables: Variables | None = None) -> Inventory:
    """Read `services.yaml` from ``directory``; an absent file is an empty inventory.

    Args:
        variables: the values of ``{name}`` placeholders (see the module docstring).
    Raises:
        errors.RunbookInvalid: the file has problems (file:line:column).
    """
    path = directory / SERVICES_FILE
    found = parse(yamlsource.read_file(path)) if path.exists() else Inventory()
    return found.with_variables(variables or {})


def parse(source: yamlsource.Source) -> Inventory:
    """Validate a parsed `services.yaml`."""
    data: Any = source.data if source.data is not None else {}
    try:
        return Inventory.model_validate(data)
    except ValidationError as exc:
        raise errors.RunbookInvalid(validation.problems(source, exc)) from None
