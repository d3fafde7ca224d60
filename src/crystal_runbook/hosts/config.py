"""A service's `hosts:` block resolved to files, and the host-key policy of its environment.

`inventory/services.yaml` names the host group and, optionally, the inventory file and the
known_hosts file (paths may start with ``{state_dir}``, so the practice hosts follow
`--state-dir`). The service layer resolves them to absolute paths when a run starts; the
run journals that block, so `resume` reads the same files from any working directory.

Host keys are checked against that known_hosts file by fabric and by Ansible's ssh alike;
unknown keys are added to it only in the `sandbox` environment.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crystal_runbook import errors
from crystal_runbook.hosts import inventory as inventory_mod

STATE_DIR_TOKEN = "{state_dir}"  # noqa: S105 - a path placeholder, not a secret  # nosec B105
INVENTORY_FILES = ("hosts.ini", "hosts.yaml", "hosts.yml")
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
AUTO_ADD_ENVIRONMENTS = frozenset({"sandbox"})


def expand(path: str, *, state_dir: Path, base: Path) -> Path:
    """``path`` with ``{state_dir}`` and ``~`` expanded, made absolute against ``base``."""
    text = path.replace(STATE_DIR_TOKEN, str(state_dir))
    resolved = Path(text).expanduser()
    if not resolved.is_absolute():
        resolved = base / resolved
    return Path(os.path.abspath(resolved))


def resolve_block(
    block: Mapping[str, Any], *, inventory_dir: Path, state_dir: Path
) -> dict[str, Any]:
    """The `hosts:` block of a target with its files as absolute paths (what runs journal)."""
    inventory = block.get("inventory")
    if inventory:
        inventory_path = expand(str(inventory), state_dir=state_dir, base=inventory_dir)
    else:
        candidates = [inventory_dir / name for name in INVENTORY_FILES]
        inventory_path = next((p for p in candidates if p.exists()), candidates[0])
        inventory_path = Path(os.path.abspath(inventory_path))
    known = str(block.get("known_hosts") or DEFAULT_KNOWN_HOSTS)
    return {
        **block,
        "inventory": str(inventory_path),
        "known_hosts": str(expand(known, state_dir=state_dir, base=inventory_dir)),
    }


@dataclass(frozen=True)
class HostsConfig:
    """Where a step's hosts are and how their keys are checked."""

    group: str
    inventory: Path
    known_hosts: Path
    auto_add: bool
    """Add unknown host keys to ``known_hosts`` (only in the `sandbox` environment)."""

    @classmethod
    def from_target(cls, target: Mapping[str, Any], *, env: str, state_dir: Path) -> HostsConfig:
        """The hosts of a step's target (its `hosts:` block).

        Raises:
            errors.ConfigurationError: the service has no `hosts:` in this environment.
        """
        block = target.get("hosts")
        if not isinstance(block, Mapping) or not block.get("group"):
            raise errors.ConfigurationError(
                f"no hosts: the service has no `hosts:` group in environment {env!r}",
                hint="add `hosts: GROUP` (a group of inventory/hosts.ini) to the environment "
                "in inventory/services.yaml",
            )
        resolved = resolve_block(block, inventory_dir=Path("inventory"), state_dir=state_dir)
        return cls(
            group=str(resolved["group"]),
            inventory=Path(resolved["inventory"]),
            known_hosts=Path(resolved["known_hosts"]),
            auto_add=env in AUTO_ADD_ENVIRONMENTS,
        )

    def select(self, limit: str | None) -> list[inventory_mod.Host]:
        """The hosts of ``limit`` (default: the service's group), their key files checked.

        Raises:
            errors.RunbookInvalid: the inventory file is missing or malformed.
            errors.TargetNotFound: an unknown group or host.
            errors.PermanentActionError: a key file that cannot be read.
        """
        found = inventory_mod.load(self.inventory).select(limit or self.group)
        check_key_files(found)
        if not self.auto_add:
            check_known_hosts(self.known_hosts)
        return found


def check_key_files(hosts: Iterable[inventory_mod.Host]) -> None:
    """Every named private key exists, can be read and holds a private key.

    Raises:
        errors.PermanentActionError: naming each host whose key is unusable.
    """
    problems: list[str] = []
    seen: dict[str, str | None] = {}
    for host in hosts:
        if host.key_file is None:
            continue
        if host.key_file not in seen:
            seen[host.key_file] = _key_problem(Path(host.key_file))
        problem = seen[host.key_file]
        if problem:
            problems.append(f"{host.name}: {problem}")
    if problems:
        raise errors.PermanentActionError(
            "unusable SSH key: " + "; ".join(problems[:10]),
            hint="fix ansible_ssh_private_key_file in the host inventory (the file must be "
            "readable by this user and hold a private key); nothing was changed",
        )


def _key_problem(path: Path) -> str | None:
    try:
        with path.open("rb") as fh:
            head = fh.read(64 * 1024)
    except FileNotFoundError:
        return f"key file {path} does not exist"
    except IsADirectoryError:
        return f"key file {path} is a directory"
    except OSError as exc:
        return f"key file {path} cannot be read: {exc.strerror}"
    if b"PRIVATE KEY-----" not in head:
        return f"key file {path} holds no private key"
    return None


def check_known_hosts(path: Path) -> None:
    """The known_hosts file exists and can be read (outside `sandbox` keys are never added).

    Raises:
        errors.PermanentActionError: missing or unreadable.
    """
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise errors.PermanentActionError(
            f"known_hosts file {path} cannot be read: {exc.strerror}",
            hint="name the hosts' known_hosts in `hosts: {known_hosts: ...}` of "
            "inventory/services.yaml (fill it with `ssh-keyscan` and check the fingerprints); "
            "nothing was changed",
        ) from None
