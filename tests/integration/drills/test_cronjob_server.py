"""The emitted CronJob against the sandbox's batch/v1 API, with real kubectl."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.integration.drills.conftest import Drills

pytestmark = pytest.mark.integration

VALIDATE = "--validate=false"  # the sandbox serves no OpenAPI documents (yet)


def test_kubectl_server_dry_run_accepts_the_emitted_cronjob(drills: Drills) -> None:
    """`kubectl apply --dry-run=server` accepts it and stores nothing; apply stores it whole."""
    drills.drills_yaml(
        """
        services:
          maia:
            environments:
              sandbox: {schedule: "15 4 * * 1-5", timezone: Europe/Berlin, jitter: 5m, grace: 2h}
        """
    )
    out = drills.cli("drill", "schedule", "--emit-cronjob", "maia")
    assert out.returncode == 0, out.stderr
    manifest = drills.root / "cronjob.yaml"
    manifest.write_text(out.stdout)
    dry = drills.kubectl("apply", VALIDATE, "--dry-run=server", "-f", str(manifest))
    assert dry.stdout.strip() == (
        "cronjob.batch/crystal-runbook-drill-maia-sandbox created (server dry run)"
    )
    assert drills.kubectl("get", "cronjobs", "-o", "name").stdout.strip() == ""
    drills.kubectl("apply", VALIDATE, "-f", str(manifest))
    stored = json.loads(drills.kubectl("get", "cronjob", "crystal-runbook-drill-maia-sandbox",
                                       "-o", "json").stdout)
    sent = yaml.safe_load(out.stdout)
    assert stored["spec"]["schedule"] == "15 4 * * 1-5"
    assert stored["spec"]["timeZone"] == "Europe/Berlin"
    assert stored["spec"]["concurrencyPolicy"] == "Forbid"
    assert stored["spec"]["startingDeadlineSeconds"] == 7200
    container = stored["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == sent["spec"]["jobTemplate"]["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]


def test_the_server_would_refuse_a_broken_one(drills: Drills) -> None:
    """The same dry run fails on a CronJob the API must refuse (so the check above can fail)."""
    drills.drills_yaml(
        """
        services:
          maia:
            environments:
              sandbox: {schedule: "0 * * * *"}
        """
    )
    out = drills.cli("drill", "schedule", "--emit-cronjob", "maia", "-o", "json")
    assert out.returncode == 0, out.stderr
    broken = json.loads(out.stdout)
    broken["spec"]["concurrencyPolicy"] = "Sometimes"
    refused = drills.kubectl(
        "apply", VALIDATE, "--dry-run=server", "-f", "-", stdin=json.dumps(broken), check=False
    )
    assert refused.returncode != 0
    assert "concurrencyPolicy" in refused.stderr
