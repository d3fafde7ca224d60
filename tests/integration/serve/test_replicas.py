"""Two `serve --scheduler --watch` replicas, one Lease per duty, one PostgreSQL journal.

Each due drill runs once and a bad release is rolled back once, whichever replica leads;
Slack commands are answered by both; `/metrics` (parsed with prometheus-client's own
parser) and `/readyz` say what each replica did and sees.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from crystal_runbook.testing.slack_requests import SlackAppClient
from crystal_runbook.testing.slack_server import SlackServer
from tests.integration.serve.conftest import (
    GOOD_IMAGE,
    SCHEDULER_LEASE,
    WATCH_LEASE,
    Replica,
    Team,
    logs,
    slot_ago,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "crystal-test-signing-secret-0123456789"  # noqa: S105 - a fake for tests


def samples(replica: Replica) -> list[Sample]:
    answer = replica.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return [s for family in text_string_to_metric_families(answer.text) for s in family.samples]


def value(found: list[Sample], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        s.value
        for s in found
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


@pytest.fixture
def slack() -> Iterator[SlackServer]:
    server = SlackServer().start()
    try:
        yield server
    finally:
        server.stop()


def test_each_due_drill_runs_once_and_a_bad_release_is_rolled_back_once(
    team: Team, slack: SlackServer
) -> None:
    """Two replicas, two due drills and a bad release: two drills, one rollback, one leader."""
    team.drills_yaml(
        f'      sandbox:\n        schedule: "{slot_ago(2)}"\n        grace: 1h\n'
        f'      staging:\n        schedule: "{slot_ago(1)}"\n        grace: 1h\n'
    )
    env = {**slack.env(), "SLACK_SIGNING_SECRET": SECRET}
    a = team.start("a", "--slack", **env)
    b = team.start("b", "--slack", **env)
    scheduler = team.leader(SCHEDULER_LEASE)
    watcher = team.leader(WATCH_LEASE)

    def drills_done() -> list[object]:
        found = team.runs("drill")
        return found if len(found) == 2 and all(r.status != "running" for r in found) else []

    wait_for(drills_done, 120, "two drills to finish", lambda: logs(team))
    time.sleep(3 * 1.0 + 0.5)  # three more scheduler looks on the leader: nothing new is due
    drills = team.runs("drill")
    assert [(r.env, r.status) for r in drills] == [("sandbox", "ok"), ("staging", "ok")], logs(team)
    assert {r.meta["serve"]["replica"] for r in drills} == {scheduler.identity}
    assert {r.meta["serve"]["duty"] for r in drills} == {"scheduler"}
    assert len({r.meta["drill"]["slot"] for r in drills}) == 2
    assert team.image() == GOOD_IMAGE  # each drill restored its baseline

    team.go_bad()

    def rolled_back() -> list[object]:
        found = team.runs("rollback")
        return found if found and all(r.status != "running" for r in found) else []

    wait_for(rolled_back, 120, "the rollback to finish", lambda: logs(team))
    time.sleep(6 * 1.0)  # six more evaluations on the leader: the incident stays open
    rollbacks = team.runs("rollback")
    assert [r.status for r in rollbacks] == ["ok"], logs(team)
    (rollback,) = rollbacks
    assert rollback.meta["serve"] == {"replica": watcher.identity, "duty": "watch/maia/sandbox"}
    assert "trigger fired for maia in sandbox" in rollback.params["reason"]
    assert team.image() == GOOD_IMAGE
    assert len(team.runs("drill")) == 2

    # Slack is served by every replica
    for replica in (a, b):
        client = SlackAppClient(replica.url(""), SECRET)
        try:
            answer = client.command("help", user_id="U0ALICE", channel_id="C0CRYSTAL01")
        finally:
            client.close()
        assert answer.status == 200, answer.body

    # /metrics: what each replica did, summed over both as Prometheus would
    by_replica = {r.identity: samples(r) for r in (a, b)}
    both = [s for found in by_replica.values() for s in found]
    assert value(both, "crystal_runbook_runs_total", runbook="drill", status="ok") == 2
    assert value(both, "crystal_runbook_runs_total", runbook="rollback", status="ok") == 1
    assert value(by_replica[scheduler.identity], "crystal_runbook_runs_total", runbook="drill") == 2
    assert value(both, "crystal_runbook_rollback_duration_seconds_count", env="sandbox") == 1
    assert value(both, "crystal_runbook_step_duration_seconds_count", uses="k8s.rollout_undo") == 3
    for lease, leader in ((SCHEDULER_LEASE, scheduler), (WATCH_LEASE, watcher)):
        assert value(both, "crystal_runbook_lease_leader", lease=lease) == 1
        for found in by_replica.values():
            assert value(found, "crystal_runbook_lease_holder", lease=lease, holder=leader.identity) == 1
    states = by_replica[watcher.identity]
    assert value(states, "crystal_runbook_trigger_rule_value", rule="coherence-low") > 0
    assert sum(
        value(states, "crystal_runbook_trigger_rule_state", rule="coherence-low", crystal_runbook_trigger_rule_state=s)
        for s in ("inactive", "pending", "firing", "no_data", "error")
    ) == 1
    for found in by_replica.values():
        assert value(found, "crystal_runbook_slack_ack_seconds_count") >= 1
        assert [s for s in found if s.name == "crystal_runbook_outbox_depth"]

    for replica in (a, b):
        ready = replica.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ready", "problems": []}
