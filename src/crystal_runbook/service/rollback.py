"""Which rollback a service needs: the same `rollback SERVICE` for Kubernetes and for hosts.

The on-call engineer types one command; the environment's block in
inventory/services.yaml decides the runbook: `kubernetes:` -> `rollback.yaml` (rollout undo),
`hosts:` -> `rollback-vm.yaml` (release symlink switched back on every host); anything else
keeps `rollback.yaml`, whose steps then say what is missing. Options that belong to the other
kind are refused before anything runs, with the right option named.
"""

from __future__ import annotations

from typing import Any

from crystal_runbook import errors
from crystal_runbook.service.workspace import Workspace

KUBERNETES_RUNBOOK = "rollback"
HOSTS_RUNBOOK = "rollback-vm"


def choose(
    ws: Workspace,
    service: str,
    *,
    to_revision: int = 0,
    to_release: str | None = None,
    reason: str = "",
) -> tuple[str, dict[str, Any]]:
    """The rollback runbook for ``service`` in the workspace's environment, and its params.

    Raises:
        errors.TargetNotFound: unknown service or environment.
        errors.ParamError: an option of the other kind of rollback.
    """
    env, target = ws.target(service)
    if target.get("hosts") and not target.get("kubernetes"):
        if to_revision:
            raise errors.ParamError(
                f"--to-revision is for Kubernetes; {service} in {env} runs on hosts",
                hint="use --to-release NAME (a directory in releases/; default the previous one)",
            )
        return HOSTS_RUNBOOK, {"service": service, "version": to_release or "", "reason": reason}
    if to_release:
        raise errors.ParamError(
            f"--to-release is for services on hosts; {service} in {env} has no `hosts:`",
            hint="use --to-revision N (0: the previous revision)",
        )
    return KUBERNETES_RUNBOOK, {"service": service, "to_revision": to_revision, "reason": reason}
