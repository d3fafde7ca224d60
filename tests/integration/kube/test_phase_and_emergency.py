"""`runbooks/phase.yaml` and `scripts/emergency-rollback.sh` against the sandbox."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from crystal_runbook.demo import DEMO_TRIGGERS
from tests.conftest import REPO
from tests.integration.kube.conftest import Cluster

pytestmark = pytest.mark.integration

GOOD, CURRENT = "registry.local/maia:1.4.2", "registry.local/maia:1.5.0"
SCRIPT = REPO / "scripts" / "emergency-rollback.sh"


def with_metrics(cluster: Cluster) -> None:
    """Scrape metrics for both environments and the checklist's rules on 10 s windows."""
    path = cluster.root / "inventory" / "services.yaml"
    path.write_text(
        path.read_text().replace(
            "        health_url:",
            f"        metrics: {{source: scrape, url: '{cluster.sb.metrics_url()}'}}\n"
            '        slack_channel: "#maia-incidents"\n'
            "        health_url:",
        )
    )
    (cluster.root / "inventory" / "triggers.yaml").write_text(DEMO_TRIGGERS)


def env_of(cluster: Cluster) -> dict[str, str]:
    container = cluster.deployment()["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def deployment_patches(cluster: Cluster, since: int) -> int:
    return sum(1 for r in cluster.mutations(since) if r["path"].endswith("/deployments/maia"))


class TestPhase:
    def test_a_phase_is_one_patch_and_passes_its_gate(self, cluster: Cluster) -> None:
        """crystal: both variables in one patch, one new revision, the gate clear for the soak."""
        with_metrics(cluster)
        revision = cluster.revision()
        before = cluster.request_count()
        done = cluster.cli(
            "run", "phase", "-p", "service=maia", "-p", "phase=crystal", "-p", "soak=4s",
            "-o", "json", timeout=180,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        run = json.loads(done.stdout)
        steps = {s["id"]: s for s in run["steps"]}
        assert steps["set-phase"]["changed"] is True
        assert steps["gate"]["status"] == "ok"
        assert "all 5 rollback rules clear" in steps["gate"]["summary"]
        assert env_of(cluster)["CRYSTAL_MODE"] == "crystal"
        assert env_of(cluster)["CRYSTAL_WEIGHT"] == "1.0"
        assert cluster.revision() == revision + 1  # one rollout
        assert deployment_patches(cluster, before) == 1
        again = cluster.cli("run", "phase", "-p", "service=maia", "-p", "phase=crystal",
                            "-p", "soak=1s", "-o", "json", timeout=120)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["steps"][0]["changed"] is False  # idempotent

    def test_a_gate_that_fires_goes_back_to_the_previous_phase_and_says_so(
        self, cluster: Cluster
    ) -> None:
        """transition on a burning release: the gate fires, hybrid (0.3) is set back, told."""
        with_metrics(cluster)
        cluster.kubectl("set", "image", "deployment/maia", "maia=registry.local/maia:1.5.1-bad")
        cluster.wait_rolled_out()
        done = cluster.cli(
            "run", "phase", "-p", "service=maia", "-p", "phase=transition", "-p", "soak=2m",
            "-o", "json", timeout=240,
        )
        assert done.returncode == 1, done.stdout + done.stderr
        run = json.loads(done.stdout)
        steps = {(s["phase"], s["id"]): s for s in run["steps"]}
        assert steps[("main", "set-phase")]["status"] == "ok"
        gate = steps[("main", "gate")]
        assert gate["status"] == "failed"
        assert "the gate fired: " in gate["error"]
        assert steps[("on_failure", "previous-phase")]["status"] == "ok"
        assert steps[("on_failure", "say-so")]["status"] == "ok"
        assert env_of(cluster) == {"CRYSTAL_MODE": "hybrid", "CRYSTAL_WEIGHT": "0.3"}
        queued = [json.loads(p.read_text()) for p in (cluster.state / "outbox").glob("*.json")]
        told = [q["message"]["text"] for q in queued if "Rolled back to phase" in q["message"]["text"]]
        assert len(told) == 1
        assert "Phase *transition* of *maia* in *sandbox* did not pass" in told[0]
        assert "Rolled back to phase *hybrid*" in told[0]


def script(cluster: Cluster, *args: str, path: Path = SCRIPT, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(path), *args],
        cwd=cluster.root,
        env={**cluster.env(), **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


class TestEmergencyRollbackScript:
    def test_service_and_env_from_the_environment_confirmed_by_crystal_confirm(
        self, cluster: Cluster
    ) -> None:
        """SERVICE/CRYSTAL_ENV: production without confirmation is exit 4 and changes nothing;
        CRYSTAL_CONFIRM=yes rolls back (exit 0)."""
        refused = script(cluster, SERVICE="maia", CRYSTAL_ENV="production")
        assert refused.returncode == 4, refused.stdout + refused.stderr
        assert "--yes" not in refused.stderr.splitlines()[0]
        assert cluster.image() == CURRENT
        done = script(cluster, SERVICE="maia", CRYSTAL_ENV="production", CRYSTAL_CONFIRM="yes")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "rollback maia --env production --yes" in done.stderr.splitlines()[0]
        assert cluster.image() == GOOD

    def test_arguments_and_the_commands_exit_code(self, cluster: Cluster) -> None:
        """SERVICE ENV as arguments with --yes and --reason; a second rollback's refusal (1)
        is the script's exit code too."""
        done = script(cluster, "--yes", "maia", "sandbox", "--reason", "p99 above 2s", "-o", "json")
        assert done.returncode == 0, done.stdout + done.stderr
        run = json.loads(done.stdout)
        assert run["env"] == "sandbox"
        assert run["params"]["reason"] == "p99 above 2s"
        again = script(cluster, "maia", "sandbox")
        assert again.returncode == 1
        assert "refused" in again.stdout
        assert script(cluster).returncode == 2  # no service named

    def test_options_with_values_are_not_taken_for_the_environment(
        self, cluster: Cluster
    ) -> None:
        """--env ENV names the environment; --to-release's value is not ENV; two different
        environments are bad input (exit 2) before anything runs."""
        conflicting = script(cluster, "--yes", "maia", "production", "--env", "sandbox")
        assert conflicting.returncode == 2
        assert "two environments named (production and --env sandbox)" in conflicting.stderr
        hosts_only = script(cluster, "maia", "--to-release", "1.4.1", "--env", "sandbox")
        assert hosts_only.returncode == 2  # crystal-runbook's own refusal: maia has no hosts
        assert "rollback maia --env sandbox --to-release 1.4.1" in hosts_only.stderr
        assert "--to-release is for services on hosts" in hosts_only.stderr
        assert cluster.image() == CURRENT
        done = script(cluster, "maia", "--env=production", "-y", "-o", "json")
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout)["env"] == "production"
        assert cluster.image() == GOOD

    def test_finds_the_repositorys_venv_when_none_is_on_path(
        self, cluster: Cluster, tmp_path: Path
    ) -> None:
        """Not on PATH: the repository's .venv; neither: exit 2 saying how to get one."""
        checkout = tmp_path / "checkout"
        (checkout / "scripts").mkdir(parents=True)
        copied = checkout / "scripts" / "emergency-rollback.sh"
        shutil.copy(SCRIPT, copied)
        bare_path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                    if not (Path(p) / "crystal-runbook").exists())
        missing = script(cluster, "--yes", "maia", path=copied, PATH=bare_path)
        assert missing.returncode == 2
        assert "cannot find crystal-runbook" in missing.stderr
        (checkout / ".venv" / "bin").mkdir(parents=True)
        (checkout / ".venv" / "bin" / "crystal-runbook").symlink_to(
            shutil.which("crystal-runbook", path=cluster.env()["PATH"]) or ""
        )
        found = script(cluster, "--yes", "maia", path=copied, PATH=bare_path)
        assert found.returncode == 0, found.stdout + found.stderr
        assert f"{checkout}/.venv/bin/crystal-runbook rollback maia" in found.stderr
        assert cluster.image() == GOOD
