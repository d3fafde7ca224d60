"""Ansible-style host inventories, read once for both `ssh.run` and `ansible.playbook`.

The same file drives fabric and Ansible, so a host has one address, port, user and key
whichever action reaches it. Both formats Ansible reads are understood:

- INI (`hosts.ini`): ``[group]`` host lines ``name key=value ...``, ``[group:vars]`` and
  ``[group:children]``; hosts before any section are ungrouped;
- YAML (`hosts.yaml`): ``all: {hosts, vars, children}``, nested.

Variables apply as Ansible applies them: ``all``'s, then each group's from the outermost to
the innermost, then the host's own. Ansible's connection variables (``ansible_host``,
``ansible_port``, ``ansible_user``, ``ansible_ssh_private_key_file``) become fields of
``Host``. Problems are reported with file:line, before anything connects anywhere.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crystal_runbook import errors
from crystal_runbook.engine import yamlsource

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,252}$")
_GROUP = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
KEY_VARS = ("ansible_ssh_private_key_file", "ansible_private_key_file")
MAX_HOSTS = 10_000


@dataclass(frozen=True)
class Host:
    """One host as Ansible and fabric both reach it."""

    name: str
    address: str
    port: int = 22
    user: str | None = None
    key_file: str | None = None
    vars: Mapping[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        """``name (address:port)`` for messages."""
        return f"{self.name} ({self.address}:{self.port})"


@dataclass(frozen=True)
class HostInventory:
    """The hosts and groups of one inventory file."""

    path: Path
    hosts: Mapping[str, Host]
    groups: Mapping[str, tuple[str, ...]]
    """Group name -> every host in it, its children's included, in file order."""

    def select(self, pattern: str) -> list[Host]:
        """The hosts a limit names: groups or host names separated by commas or colons.

        Raises:
            errors.TargetNotFound: a name that is neither a group nor a host of this file.
        """
        chosen: dict[str, Host] = {}
        for part in re.split(r"[,:]", pattern.strip()):
            name = part.strip()
            if not name:
                continue
            if name in self.groups:
                chosen.update((h, self.hosts[h]) for h in self.groups[name])
            elif name in self.hosts:
                chosen[name] = self.hosts[name]
            else:
                known = sorted(g for g in self.groups if g not in ("all", "ungrouped"))
                close = difflib.get_close_matches(name, [*known, *self.hosts], n=1)
                maybe = f" (did you mean {close[0]!r}?)" if close else ""
                raise errors.TargetNotFound(
                    f"no host group or host {name[:100]!r} in {self.path}{maybe}",
                    hint=f"groups there: {', '.join(known) or 'none'}; fix `hosts:` in "
                    "inventory/services.yaml or the step's `limit:`",
                )
        if not chosen:
            raise errors.TargetNotFound(
                f"host pattern {pattern[:100]!r} selects no host in {self.path}",
                hint="name a group with hosts in it",
            )
        return list(chosen.values())


def load(path: Path) -> HostInventory:
    """Read an inventory file (INI, or YAML by its .yaml/.yml suffix).

    Raises:
        errors.RunbookInvalid: unreadable or malformed, with file:line:column.
    """
    if path.suffix in (".yaml", ".yml"):
        return _from_yaml(yamlsource.read_file(path), path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise errors.RunbookInvalid(
            [errors.Problem(str(path), 1, 1, "host inventory not found")],
            hint="create it, or run `crystal-runbook sandbox hosts up` for the practice hosts",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise errors.RunbookInvalid(
            [errors.Problem(str(path), 1, 1, f"cannot read host inventory: {reason}")]
        ) from None
    return parse_ini(text, path)


class _Builder:
    """Collects groups, hosts and variables, then flattens them as Ansible does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[errors.Problem] = []
        self.host_vars: dict[str, dict[str, Any]] = {}
        self.host_lines: dict[str, int] = {}
        self.members: dict[str, list[str]] = {"all": [], "ungrouped": []}
        self.children: dict[str, list[str]] = {"all": []}
        self.group_vars: dict[str, dict[str, Any]] = {}

    def problem(self, line: int, column: int, message: str) -> None:
        self.problems.append(errors.Problem(str(self.path), line, column, message))

    def group(self, name: str, line: int) -> bool:
        if not _GROUP.fullmatch(name):
            self.problem(line, 1, f"{name[:100]!r} is not a group name (letters, digits, _ . -)")
            return False
        self.members.setdefault(name, [])
        self.children.setdefault(name, [])
        return True

    def host(self, name: str, group: str, variables: Mapping[str, Any], line: int) -> None:
        if "[" in name:
            self.problem(line, 1, "host ranges are not supported: list each host")
            return
        if not _NAME.fullmatch(name):
            self.problem(line, 1, f"{name[:100]!r} is not a host name")
            return
        if len(self.host_vars) >= MAX_HOSTS and name not in self.host_vars:
            self.problem(line, 1, f"more than {MAX_HOSTS} hosts")
            return
        self.host_vars.setdefault(name, {}).update(variables)
        self.host_lines.setdefault(name, line)
        if name not in self.members[group]:
            self.members[group].append(name)

    def build(self) -> HostInventory:
        if self.problems:
            raise errors.RunbookInvalid(self.problems)
        for name in self.members:
            if name != "all" and not self._has_parent(name) and name not in self.children["all"]:
                self.children["all"].append(name)
        grouped = {h for g, hs in self.members.items() if g not in ("all", "ungrouped") for h in hs}
        for host in self.host_vars:
            if host not in grouped and host not in self.members["ungrouped"]:
                self.members["ungrouped"].append(host)
        flat: dict[str, tuple[str, ...]] = {}
        for name in self.members:
            flat[name] = tuple(self._flatten(name, ()))
        hosts: dict[str, Host] = {}
        for name, own in self.host_vars.items():
            merged: dict[str, Any] = {}
            for group in self._groups_of(name):
                merged.update(self.group_vars.get(group, {}))
            merged.update(own)
            hosts[name] = self._host(name, merged)
        if self.problems:
            raise errors.RunbookInvalid(self.problems)
        return HostInventory(path=self.path, hosts=hosts, groups=flat)

    def _has_parent(self, name: str) -> bool:
        return any(name in kids for parent, kids in self.children.items() if parent != "all")

    def _flatten(self, group: str, seen: tuple[str, ...]) -> list[str]:
        if group in seen:
            return []  # a cycle of children is reported by Ansible too; ignore the repeat
        out = list(self.members.get(group, []))
        for child in self.children.get(group, []):
            for host in self._flatten(child, (*seen, group)):
                if host not in out:
                    out.append(host)
        return out

    def _groups_of(self, host: str) -> list[str]:
        """Groups containing ``host``, outermost first (``all`` first), as Ansible merges."""
        depth: dict[str, int] = {}

        def walk(group: str, level: int, seen: tuple[str, ...]) -> None:
            if group in seen:
                return
            depth[group] = max(depth.get(group, 0), level)
            for child in self.children.get(group, []):
                walk(child, level + 1, (*seen, group))

        walk("all", 0, ())
        containing = [g for g in depth if host in self._flatten(g, ())]
        return sorted(containing, key=lambda g: (depth[g], g))

    def _host(self, name: str, merged: dict[str, Any]) -> Host:
        line = self.host_lines.get(name, 1)
        port_value = merged.get("ansible_port", merged.get("ansible_ssh_port", 22))
        try:
            port = int(port_value)
            if not 0 < port < 65536:
                raise ValueError
        except (TypeError, ValueError):
            self.problem(line, 1, f"host {name}: ansible_port {port_value!r} is not a TCP port")
            port = 22
        key = next((str(merged[k]) for k in KEY_VARS if merged.get(k)), None)
        user = merged.get("ansible_user", merged.get("ansible_ssh_user"))
        return Host(
            name=name,
            address=str(merged.get("ansible_host", merged.get("ansible_ssh_host", name))),
            port=port,
            user=None if user is None else str(user),
            key_file=None if key is None else str(Path(key).expanduser()),
            vars=dict(merged),
        )


def _value(text: str) -> Any:
    """An INI value as Ansible reads it: integers stay integers, the rest are strings."""
    if re.fullmatch(r"-?\d{1,18}", text):
        return int(text)
    return text


def _assignments(
    tokens: Iterable[str], builder: _Builder, line: int
) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            builder.problem(line, 1, f"expected key=value, found {token[:100]!r}")
            return None
        out[key] = _value(value)
    return out


def parse_ini(text: str, path: Path) -> HostInventory:
    """Parse the INI inventory format.

    Raises:
        errors.RunbookInvalid: every malformed line, with file:line.
    """
    builder = _Builder(path)
    section, kind = "ungrouped", "hosts"
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            match = re.fullmatch(r"\[([^\]:]+)(?::(vars|children))?\]", line)
            if not match:
                builder.problem(number, 1, f"malformed section header {line[:100]!r}")
                continue
            section, kind = match.group(1).strip(), match.group(2) or "hosts"
            if not builder.group(section, number):
                section, kind = "ungrouped", "skip"
            continue
        if kind == "skip":
            continue
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as exc:
            builder.problem(number, 1, f"cannot split line: {exc}")
            continue
        if not tokens:
            continue
        if kind == "vars":
            key, sep, value = line.partition("=")
            if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
                builder.problem(number, 1, f"expected key=value in [{section}:vars]")
                continue
            try:
                words = shlex.split(value.strip(), comments=True)
            except ValueError as exc:
                builder.problem(number, 1, f"cannot split value: {exc}")
                continue
            builder.group_vars.setdefault(section, {})[key.strip()] = _value(" ".join(words))
        elif kind == "children":
            child = tokens[0]
            if builder.group(child, number) and child not in builder.children[section]:
                builder.children[section].append(child)
        else:
            variables = _assignments(tokens[1:], builder, number)
            if variables is not None:
                builder.host(tokens[0], section, variables, number)
    return builder.build()


def _from_yaml(source: yamlsource.Source, path: Path) -> HostInventory:
    builder = _Builder(path)
    data = source.data
    if not isinstance(data, Mapping) or not data:
        raise errors.RunbookInvalid(
            [source.problem((), "a YAML inventory is a mapping of groups (usually `all:`)")]
        )

    def group(name: str, body: Any, loc: yamlsource.PathKey) -> None:
        line, col = source.where(loc)
        if not builder.group(name, line):
            return
        if body is None:
            return
        if not isinstance(body, Mapping):
            builder.problem(line, col, f"group {name}: expected a mapping of hosts, vars, children")
            return
        for key in body:
            if key not in ("hosts", "vars", "children"):
                kline, kcol = source.where((*loc, key))
                builder.problem(kline, kcol, f"group {name}: unknown key {key!r}")
        hosts = body.get("hosts") or {}
        if not isinstance(hosts, Mapping):
            builder.problem(line, col, f"group {name}: `hosts` must be a mapping")
            hosts = {}
        for host, host_vars in hosts.items():
            hline, _ = source.where((*loc, "hosts", host))
            if host_vars is not None and not isinstance(host_vars, Mapping):
                builder.problem(hline, 1, f"host {host}: variables must be a mapping")
                continue
            builder.host(str(host), name, dict(host_vars or {}), hline)
        variables = body.get("vars") or {}
        if not isinstance(variables, Mapping):
            builder.problem(line, col, f"group {name}: `vars` must be a mapping")
        else:
            builder.group_vars.setdefault(name, {}).update(variables)
        children = body.get("children") or {}
        if not isinstance(children, Mapping):
            builder.problem(line, col, f"group {name}: `children` must be a mapping")
            return
        for child, child_body in children.items():
            if builder.group(str(child), line) and child not in builder.children[name]:
                builder.children[name].append(str(child))
            group(str(child), child_body, (*loc, "children", child))

    for name, body in data.items():
        group(str(name), body, (name,))
    return builder.build()
