"""`rollback SERVICE` picks its runbook from the inventory: the engineer types one command."""

from __future__ import annotations

import pytest

from crystal_runbook import errors, service

SERVICES = """\
services:
  maia:
    environments:
      cluster:
        kubernetes: {deployment: maia}
      vms:
        hosts: maia_vms
      bare: {}
"""


@pytest.fixture
def ws(workspace: service.Workspace) -> service.Workspace:
    (workspace.inventory_dir / "services.yaml").write_text(SERVICES)
    return workspace


def test_kubernetes_environment_gets_rollout_undo(ws: service.Workspace) -> None:
    """`kubernetes:` -> rollback.yaml with the revision."""
    ws.env = "cluster"
    name, params = service.rollback.choose(ws, "maia", to_revision=3, reason="p99")
    assert name == "rollback"
    assert params == {"service": "maia", "to_revision": 3, "reason": "p99"}


def test_hosts_environment_gets_the_vm_rollback(ws: service.Workspace) -> None:
    """`hosts:` (the group shorthand) -> rollback-vm.yaml with the release."""
    ws.env = "vms"
    name, params = service.rollback.choose(ws, "maia", to_release="1.4.0")
    assert name == "rollback-vm"
    assert params == {"service": "maia", "version": "1.4.0", "reason": ""}


def test_options_of_the_other_kind_are_refused(ws: service.Workspace) -> None:
    """--to-revision on hosts and --to-release on Kubernetes name the right option."""
    ws.env = "vms"
    with pytest.raises(errors.ParamError, match="use --to-release"):
        service.rollback.choose(ws, "maia", to_revision=2)
    ws.env = "cluster"
    with pytest.raises(errors.ParamError, match="use --to-revision"):
        service.rollback.choose(ws, "maia", to_release="1.4.0")


def test_hosts_block_is_journalled_with_absolute_files(ws: service.Workspace) -> None:
    """The target a run journals names its inventory and known_hosts as absolute paths."""
    ws.env = "vms"
    _, target = ws.target("maia")
    assert target["hosts"]["group"] == "maia_vms"
    assert target["hosts"]["inventory"] == str((ws.inventory_dir / "hosts.ini").absolute())
    assert target["hosts"]["known_hosts"].endswith("/.ssh/known_hosts")


def test_unknown_service_is_still_bad_input(ws: service.Workspace) -> None:
    """The choice never hides an unknown service."""
    ws.env = "vms"
    with pytest.raises(errors.TargetNotFound):
        service.rollback.choose(ws, "nope")
