"""`crystal-runbook watch` end to end: exit codes, the JSON contract, file errors."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import Cli
from tests.unit.triggers.metrics_server import MetricsServer
from tests.unit.triggers.test_watch import TRIGGERS, make_workspace

pytestmark = pytest.mark.e2e


def setup(cli: Cli, metrics: MetricsServer) -> None:
    make_workspace(cli.root, metrics.url).close()


def test_once_all_clear_exits_0_with_the_contract(cli: Cli, metrics: MetricsServer) -> None:
    """`watch --once -o json` prints one document with the design's fields; exit 0."""
    setup(cli, metrics)
    out = cli("watch", "maia", "--once", "-o", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert (doc["service"], doc["env"], doc["healthy"]) == ("maia", "sandbox", True)
    for rule in doc["rules"]:
        assert {"name", "state", "value", "threshold", "since"} <= set(rule)
        assert rule["state"] == "inactive"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rule["since"])


def test_once_firing_exits_1_naming_the_rule(cli: Cli, metrics: MetricsServer) -> None:
    """A firing rule (for: 0s) makes `--once` exit 1 and name it."""
    setup(cli, metrics)
    metrics.service.set(db_in_use=99.0)
    out = cli("watch", "maia", "--once")
    assert out.returncode == 1, out.stderr
    assert "firing: pool-full" in out.stdout
    assert "FIRING pool-full" in out.stderr


def test_no_data_exits_1_and_says_so(cli: Cli, metrics: MetricsServer) -> None:
    """An unreachable source is not "all clear": exit 1, no_data on every rule."""
    setup(cli, metrics)
    metrics.stop()
    out = cli("watch", "maia", "--once", "-o", "json")
    assert out.returncode == 1
    doc = json.loads(out.stdout)
    assert doc["healthy"] is False
    assert {r["state"] for r in doc["rules"]} == {"no_data"}
    assert "NO DATA" in out.stderr


@pytest.mark.parametrize(
    ("change", "where", "what"),
    [
        ("threshold: 0.4", ":6:", "threshold"),
        ("for: 0.5s", ":6:", "for: expected a duration"),
        ("action: rollback", ":6:", "action"),
    ],
)
def test_bad_triggers_file_exits_2_with_position(
    cli: Cli, metrics: MetricsServer, change: str, where: str, what: str
) -> None:
    """A wrong type, a bad duration or an unknown value: exit 2 with file:line:column."""
    setup(cli, metrics)
    broken = {
        "threshold: 0.4": "threshold: low",
        "for: 0.5s": "for: soon",
        "action: rollback": "action: explode",
    }[change]
    (cli.root / "inventory" / "triggers.yaml").write_text(
        TRIGGERS.lstrip().replace(change, broken, 1)
    )
    out = cli("watch", "maia", "--once")
    assert out.returncode == 2
    assert re.search(rf"inventory/triggers.yaml{where}\d+: .*{what}", out.stderr), out.stderr
    validated = cli("validate", "inventory")
    assert validated.returncode == 2
    assert "triggers.yaml" in validated.stderr


def test_unknown_source_in_a_triggers_file_exits_2(cli: Cli, metrics: MetricsServer) -> None:
    """`--triggers` with `source: influx` is refused before anything is evaluated."""
    setup(cli, metrics)
    path = cli.write("other.yaml", TRIGGERS.replace("query: 'avg", "source: influx, query: 'avg"))
    out = cli("watch", "maia", "--once", "--triggers", str(path))
    assert out.returncode == 2
    assert "other.yaml:6:" in out.stderr
    assert "expected 'prometheus', 'sql' or 'scrape'" in out.stderr


def test_bad_interval_is_exit_2(cli: Cli, metrics: MetricsServer) -> None:
    """`--interval soon` says which forms a duration takes."""
    setup(cli, metrics)
    out = cli("watch", "maia", "--interval", "soon")
    assert out.returncode == 2
    assert "--interval" in out.stderr


def test_health_shows_each_rules_state(cli: Cli, metrics: MetricsServer) -> None:
    """`health -o json` lists the rules; a firing one makes the service unhealthy (exit 1)."""
    setup(cli, metrics)
    good = cli("health", "maia", "-o", "json")
    assert good.returncode == 0, good.stderr
    rules = {r["name"]: r for r in json.loads(good.stdout)["rules"]}
    assert rules["coherence-low"]["state"] == "inactive"
    assert rules["coherence-low"]["value"] == 0.8
    metrics.service.set(db_in_use=99.0)
    bad = cli("health", "maia", "-o", "json")
    assert bad.returncode == 1
    doc = json.loads(bad.stdout)
    assert doc["healthy"] is False
    assert {r["name"]: r["state"] for r in doc["rules"]}["pool-full"] == "firing"
