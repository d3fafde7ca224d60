"""`drill schedule --emit-cronjob` prints a batch/v1 CronJob the official client reads whole."""

from __future__ import annotations

import json
import re
from typing import Any

import kubernetes.client
import yaml

from tests.conftest import REPO, Cli


def unknown_fields(value: Any, type_name: str, path: str = "") -> list[str]:
    """Keys of ``value`` that the client's model ``type_name`` does not know, recursively."""
    match = re.fullmatch(r"list\[(.+)\]", type_name)
    if match:
        return [
            found
            for i, item in enumerate(value)
            for found in unknown_fields(item, match.group(1), f"{path}[{i}]")
        ]
    match = re.fullmatch(r"dict\((.+), (.+)\)", type_name)
    if match:
        return [
            found
            for key, item in value.items()
            for found in unknown_fields(item, match.group(2), f"{path}.{key}")
        ]
    model = getattr(kubernetes.client, type_name, None)
    if model is None:  # str, int, bool, object
        return []
    by_json = {json_key: attr for attr, json_key in model.attribute_map.items()}
    found = [f"{path}.{key}" for key in value if key not in by_json]
    for key, item in value.items():
        if key in by_json:
            found += unknown_fields(item, model.openapi_types[by_json[key]], f"{path}.{key}")
    return found


def emitted(cli: Cli, *args: str) -> list[dict[str, Any]]:
    out = cli(
        "--inventory", str(REPO / "inventory"), "drill", "schedule", "--emit-cronjob", "maia", *args
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def test_cronjob_deserializes_into_v1cronjob_with_no_unknown_field(cli: Cli) -> None:
    """Each scheduled environment of maia gives a CronJob the client reads without loss."""
    manifests = emitted(cli)
    assert [m["metadata"]["name"] for m in manifests] == [
        "crystal-runbook-drill-maia-sandbox",
        "crystal-runbook-drill-maia-staging",
    ]
    api = kubernetes.client.ApiClient()
    for manifest in manifests:
        assert unknown_fields(manifest, "V1CronJob") == []
        cronjob = api.deserialize(json.dumps(manifest), "V1CronJob", "application/json")
        assert isinstance(cronjob, kubernetes.client.V1CronJob)
        assert api.sanitize_for_serialization(cronjob) == manifest  # nothing was dropped


def test_cronjob_runs_drill_due_on_the_services_schedule(cli: Cli) -> None:
    """Forbid overlap, the drill's cron and zone, and `drill due --run --service` as command."""
    staging = emitted(cli, "--env", "staging", "--image", "registry.local/crystal-runbook:0.1.0")
    assert len(staging) == 1
    spec = staging[0]["spec"]
    assert spec["schedule"] == "30 10 * * 2"
    assert spec["timeZone"] == "Europe/Berlin"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] == 3600
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "registry.local/crystal-runbook:0.1.0"
    assert [*container["command"], *container["args"]] == [
        "crystal-runbook", "drill", "due", "--run", "--service", "maia", "--env", "staging"
    ]
    assert pod["restartPolicy"] == "Never"
    assert staging[0]["metadata"]["namespace"] == "maia"


def test_unscheduled_service_is_refused(cli: Cli) -> None:
    """A service without a scheduled drill: exit 2, saying where to add one."""
    out = cli("--inventory", str(REPO / "inventory"), "--env", "production", "drill", "schedule",
              "--emit-cronjob", "maia")
    assert out.returncode == 2
    assert "maia has no scheduled drill in 'production'" in out.stderr
