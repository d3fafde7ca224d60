"""Small things on the sandbox: `health` numbers, `scale` down, a release shipped by hand."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import REPO
from tests.integration.kube.conftest import Cluster

pytestmark = pytest.mark.integration


def test_health_formats_rule_values_as_watch_does(cluster: Cluster) -> None:
    """Rule lines of `health` and `watch --once`: same columns, numbers to 4 digits."""
    inventory = cluster.root / "inventory"
    text = (inventory / "services.yaml").read_text()
    (inventory / "services.yaml").write_text(
        text.replace(
            "        health_url:",
            f"        metrics: {{source: scrape, url: {cluster.sb.metrics_url()}}}\n"
            "        health_url:",
        )
    )
    (inventory / "triggers.yaml").write_text((REPO / "inventory" / "triggers.yaml").read_text())
    health = cluster.cli("health", "maia").stdout
    watched = cluster.cli("watch", "maia", "--once").stdout
    assert "value=" not in health
    values = [line.split()[2] for line in health.splitlines() if line.startswith("  inactive")]
    assert values
    for value in values:  # 0.1221, never 0.12213740458015268
        assert value == "-" or len(re.sub(r"\D", "", value).lstrip("0")) <= 4, health

    def columns(output: str) -> dict[str, str]:
        rows = {}
        for line in output.splitlines():
            parts = line.split()
            if len(parts) > 3 and parts[1] in ("error-rate", "latency-p99", "coherence-low"):
                rows[parts[1]] = " ".join(parts[3:-2])  # the condition, e.g. value > 0.05 for 120s
        return rows

    assert columns(health) == columns(watched)
    assert columns(health)["error-rate"] == "value > 0.05 for 120s"


def test_scale_down_is_journalled_as_scale(cluster: Cluster) -> None:
    """Scaling down records the runbook `scale` (neutral), not `scale-up`."""
    done = cluster.cli("scale", "maia", "--replicas", "2", "-o", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["runbook"] == "scale"
    listed = json.loads(cluster.cli("runs", "-o", "json").stdout)
    assert [r["runbook"] for r in listed] == ["scale"]


def test_the_readmes_release_by_hand_works(cluster: Cluster) -> None:
    """README's `run release -p service=... -p image=...` plans and ships a release."""
    readme = (REPO / "README.md").read_text()
    assert "crystal-runbook run release -p service=maia -p image=" in readme
    planned = cluster.cli(
        "plan", "release", "-p", "service=maia", "-p", "image=registry.local/maia:1.6.0"
    )
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "image[maia]: 'registry.local/maia:1.5.0' -> 'registry.local/maia:1.6.0'" in (
        planned.stdout
    )
    shipped = cluster.cli(
        "run", "release", "-p", "service=maia", "-p", "image=registry.local/maia:1.6.0"
    )
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    assert cluster.image() == "registry.local/maia:1.6.0"
