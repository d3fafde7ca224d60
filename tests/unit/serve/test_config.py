"""inventory/serve.yaml is validated with file:line:column, like the other inventory files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from crystal_runbook import errors, service
from crystal_runbook.engine import inventory
from crystal_runbook.serving import loader
from tests.conftest import REPO

INVENTORY = inventory.Inventory.model_validate(
    {
        "services": {
            "maia": {
                "environments": {
                    "sandbox": {"kubernetes": {"deployment": "maia", "namespace": "crystal"}},
                    "staging": {"kubernetes": {"deployment": "maia"}},
                    "vm": {"hosts": "maia-vms"},
                }
            }
        }
    }
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "serve.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(errors.RunbookInvalid) as caught:
        loader.load(path, display="serve.yaml", inventory=INVENTORY)
    return [str(p) for p in caught.value.problems]


class TestProblemsHavePositions:
    """Every mistake points at its line and column and says what to do."""

    def test_unknown_key_and_bad_duration(self, tmp_path: Path) -> None:
        """A misspelt key and a duration that is not one, each at its line."""
        path = write(
            tmp_path,
            """
            watch:
              - service: maia
                env: sandbox
                auto_rolback: true
              - service: maia
                env: staging
                interval: soon
            """,
        )
        found = problems(path)
        assert len(found) == 2, found
        assert found[0].startswith("serve.yaml:4:")
        assert "auto_rolback" in found[0]
        assert found[1].startswith("serve.yaml:7:")

    def test_renew_period_must_fit_the_lease(self, tmp_path: Path) -> None:
        """A renew period over a third of the Lease duration is refused, saying why."""
        path = write(tmp_path, "leader_election: {lease_duration: 6s, renew_period: 3s}\n")
        (found,) = problems(path)
        assert found.startswith("serve.yaml:1:")
        assert "at most a third of lease_duration" in found

    def test_unknown_service_and_environment(self, tmp_path: Path) -> None:
        """Names are checked against services.yaml, with a suggestion."""
        path = write(
            tmp_path,
            """
            watch:
              - {service: mai, env: sandbox}
              - {service: maia, env: sandbx}
            """,
        )
        found = problems(path)
        assert found[0].startswith("serve.yaml:2:")
        assert "unknown service 'mai' (did you mean 'maia'?)" in found[0]
        assert found[1].startswith("serve.yaml:3:")
        assert "no environment 'sandbx' in services.yaml (did you mean 'sandbox'?)" in found[1]

    def test_watched_twice_or_without_kubernetes(self, tmp_path: Path) -> None:
        """One watcher per service and environment; a watched target needs a cluster."""
        path = write(
            tmp_path,
            """
            watch:
              - {service: maia, env: sandbox}
              - {service: maia, env: vm}
              - {service: maia, env: sandbox, interval: 5s}
            """,
        )
        found = problems(path)
        assert any(p.startswith("serve.yaml:3:") and "no `kubernetes:` block" in p for p in found)
        assert any(p.startswith("serve.yaml:4:") and "watched twice" in p for p in found)


def test_absent_file_means_defaults(tmp_path: Path) -> None:
    """Without serve.yaml nothing is watched and client-go's timing applies."""
    loaded = loader.load(tmp_path / "serve.yaml", inventory=INVENTORY)
    assert loaded.serve.watch == []
    assert loaded.serve.leader_election.lease_duration == 15.0
    assert loaded.serve.leader_election.renew_deadline == 13.0


def test_shipped_file_watches_the_sandbox() -> None:
    """The shipped serve.yaml validates against the shipped services.yaml."""
    shipped = inventory.load(REPO / "inventory")
    loaded = loader.load(REPO / "inventory" / "serve.yaml", inventory=shipped)
    assert [(w.service, w.env, w.auto_rollback) for w in loaded.serve.watch] == [
        ("maia", "sandbox", True)
    ]


def test_validate_reports_serve_yaml(workspace: service.Workspace) -> None:
    """`validate` checks serve.yaml beside services.yaml."""
    (workspace.inventory_dir / "services.yaml").write_text(
        "services:\n  maia:\n    environments:\n      sandbox: {kubernetes: {deployment: maia}}\n"
    )
    (workspace.inventory_dir / "serve.yaml").write_text("watch:\n  - {service: maia, env: prod}\n")
    _, found = service.catalog.validate(workspace)
    assert [str(p).split("inventory/")[-1][:12] for p in found] == ["serve.yaml:2"]


class TestPlanRefusals:
    """serve refuses to start (exit 2) when a duty cannot be done, saying what to add."""

    def test_watch_without_services(self, workspace: service.Workspace) -> None:
        """--watch with nothing listed in serve.yaml."""
        from crystal_runbook.service import duties

        with pytest.raises(errors.ConfigurationError) as caught:
            duties.plan(workspace, scheduler_on=False, watch_on=True)
        assert caught.value.exit_code == 2
        assert "nothing to watch" in caught.value.message
        assert "watch:" in str(caught.value.hint)

    def test_scheduler_without_a_place_for_its_lease(
        self, workspace: service.Workspace, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """--scheduler outside a pod needs leader_election.kubernetes."""
        from crystal_runbook.service import duties

        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        with pytest.raises(errors.ConfigurationError) as caught:
            duties.plan(workspace, scheduler_on=True, watch_on=False)
        assert "needs a place for its Lease" in caught.value.message

    def test_leases_are_named_per_duty(self, workspace: service.Workspace) -> None:
        """One Leadership per duty, its Lease named after it, one identity for the replica."""
        from crystal_runbook.service import duties

        (workspace.inventory_dir / "services.yaml").write_text(
            "services:\n  maia:\n    environments:\n"
            "      sandbox: {kubernetes: {deployment: maia, namespace: crystal}}\n"
        )
        (workspace.inventory_dir / "serve.yaml").write_text(
            "leader_election: {kubernetes: {namespace: ops, kubeconfig: '{state_dir}/kc'}}\n"
            "watch:\n  - {service: maia, env: sandbox}\n"
        )
        plan = duties.plan(workspace, scheduler_on=True, watch_on=True, identity="r1")
        names = [(lead.duty_name, lead.election.name) for lead in plan.leaderships]
        assert names == [
            ("scheduler", "crystal-runbook-serve-scheduler"),
            ("watch/maia/sandbox", "crystal-runbook-serve-watch-maia-sandbox"),
        ]
        assert {lead.election.identity for lead in plan.leaderships} == {"r1"}
        assert [c.namespace for c in plan.clusters] == ["ops", "crystal"]
        assert plan.clusters[0].kubeconfig == f"{workspace.state_dir.resolve()}/kc"
