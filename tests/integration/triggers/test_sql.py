"""The sql source and `sql.check` against a real PostgreSQL with the source document's tables."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from crystal_runbook import errors, service
from crystal_runbook.triggers import watch
from tests.integration.triggers import helpers
from tests.integration.triggers.servers import Postgres, free_port

pytestmark = pytest.mark.integration

TRIGGERS = """
    apiVersion: crystal-runbook/v1
    kind: Triggers
    services:
      maia:
        rules:
          - name: coherence-now
            query: SELECT coherence_ratio FROM current_health WHERE service = %(service)s
            op: "<"
            threshold: 0.4
            action: rollback
          - name: coherence-hourly
            query: >-
              SELECT date_trunc('hour', timestamp) AS hour, AVG(coherence_ratio) AS value
              FROM system_health WHERE service = %(service)s
              AND timestamp > NOW() - make_interval(hours => %(hours)s)
              GROUP BY hour
            params: {hours: 24}
            op: "<"
            threshold: 0.6
          - name: emergence
            query: >-
              SELECT COUNT(*) AS emergence_count FROM resonance_events
              WHERE event_type = 'emergence' AND timestamp > NOW() - INTERVAL '1 hour'
            op: "<"
            threshold: 1
"""


def sql_workspace(root: Path, triggers: str = TRIGGERS):  # type: ignore[no-untyped-def]
    return helpers.workspace(
        root,
        metrics="{source: sql, url_env: MAIA_DATABASE_URL}",
        triggers=triggers,
        env="production",
    )


@pytest.fixture
def dsn(postgres: Postgres, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MAIA_DATABASE_URL", postgres.dsn())
    return postgres.dsn()


def evaluate(root: Path, triggers: str = TRIGGERS):  # type: ignore[no-untyped-def]
    ws = sql_workspace(root, triggers)
    try:
        return service.triggers.trigger_report(ws, "maia")
    finally:
        ws.close()


def test_source_document_queries(tmp_path: Path, dsn: str) -> None:
    """current_health, the hourly AVG(coherence_ratio) and the emergence count, parameterised."""
    report = evaluate(tmp_path)
    assert report.healthy, report.summary()
    assert report.rule("coherence-now").value == 0.8
    assert report.rule("coherence-hourly").value == pytest.approx(0.8)
    assert report.rule("emergence").value == 7


def test_low_coherence_fires(tmp_path: Path, dsn: str) -> None:
    """A new row under 0.4 makes current_health fire (for: 0)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO system_health (service, coherence_ratio, error_rate) VALUES ('maia', 0.3, 0.1)"
        )
    try:
        report = evaluate(tmp_path)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM system_health WHERE coherence_ratio = 0.3")
    assert report.rule("coherence-now").state == "firing"
    assert report.rule("coherence-now").value == 0.3


def test_sql_error_is_error_and_others_keep_working(tmp_path: Path, dsn: str) -> None:
    """A query on a missing column shows the database's message; the other rules still run."""
    broken = TRIGGERS.replace(
        "SELECT COUNT(*) AS emergence_count", "SELECT COUNT(nope) AS emergence_count"
    )
    report = evaluate(tmp_path, broken)
    rule = report.rule("emergence")
    assert rule.state == "error"
    assert 'column "nope" does not exist' in rule.message
    assert report.rule("coherence-now").state == "inactive"
    assert report.rule("coherence-now").value == 0.8


def test_a_write_the_text_check_cannot_see_is_refused_by_the_server(
    tmp_path: Path, dsn: str
) -> None:
    """nextval() writes; the READ ONLY transaction refuses it and the sequence does not move."""
    sneaky = TRIGGERS.replace(
        "SELECT COUNT(*) AS emergence_count FROM resonance_events",
        "SELECT nextval('probe_seq') AS n, COUNT(*) AS emergence_count FROM resonance_events",
    ).replace("GROUP BY hour", "GROUP BY hour")
    report = evaluate(tmp_path, sneaky)
    rule = report.rule("emergence")
    assert rule.state == "error"
    assert "refused by the database" in rule.message
    assert "read-only transaction" in rule.message
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT last_value, is_called FROM probe_seq").fetchone()
    assert row == (1, False)


def test_a_write_in_the_file_is_refused_before_connecting(tmp_path: Path, dsn: str) -> None:
    """DELETE in a rule is exit 2 with file:line:column; nothing reaches the database."""
    bad = TRIGGERS.replace(
        "SELECT coherence_ratio FROM current_health WHERE service = %(service)s",
        "DELETE FROM system_health",
    )
    with pytest.raises(errors.RunbookInvalid, match=r"triggers.yaml:\d+:\d+: .*refused"):
        evaluate(tmp_path, bad)
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM system_health").fetchone()
    assert row is not None
    assert row[0] >= 50


def test_statement_timeout_is_no_data(tmp_path: Path, dsn: str) -> None:
    """A query slower than the source's timeout is cut by statement_timeout: no data, said why."""
    slow = """
        apiVersion: crystal-runbook/v1
        kind: Triggers
        services:
          maia:
            sources:
              sql: {url_env: MAIA_DATABASE_URL, timeout: 0.3s}
            rules:
              - {name: slow, source: sql, query: "SELECT 1 AS value FROM pg_sleep(3)", threshold: 5}
    """
    ws = helpers.workspace(
        tmp_path, metrics="{source: scrape, url: 'http://127.0.0.1:1/metrics'}", triggers=slow
    )
    try:
        report = service.triggers.trigger_report(ws, "maia")
    finally:
        ws.close()
    assert report is not None
    assert report.rule("slow").state == "no_data"
    assert "statement_timeout" in report.rule("slow").message


@pytest.mark.parametrize("where", ["wrong password", "nothing listening"])
def test_unreachable_database_is_no_data_and_hides_the_password(
    tmp_path: Path, postgres: Postgres, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Bad credentials or no server: no_data, loudly, and the DSN's password appears nowhere."""
    secret = "Hunter2-very-secret"  # noqa: S105 - the password that must never leak
    dsn = postgres.dsn(password=secret)
    if where == "nothing listening":
        dsn = dsn.replace(f":{postgres.port}/", f":{free_port()}/")
    monkeypatch.setenv("MAIA_DATABASE_URL", dsn)
    ws = sql_workspace(tmp_path)
    notices: list[watch.Notice] = []
    try:
        report = service.triggers.watch(ws,
            "maia",
            settings=watch.WatchSettings(),
            notify=notices.append,
            on_report=lambda _r: None,
            once=True,
        )
    finally:
        ws.close()
    assert {r.state for r in report.rules} == {"no_data"}
    assert "cannot connect to the database ($MAIA_DATABASE_URL)" in report.rules[0].message
    everything = json.dumps(report.as_json()) + " ".join(n.message for n in notices)
    state_file = (tmp_path / ".crystal" / "triggers" / "maia.production.json").read_text()
    assert secret not in everything
    assert secret not in state_file
    assert any("NO DATA" in n.message for n in notices)


def test_sql_check_in_a_runbook(tmp_path: Path, dsn: str) -> None:
    """`sql.check` verifies from a runbook: the hourly coherence passes >= 0.6."""
    runbook = """
        apiVersion: crystal-runbook/v1
        kind: Runbook
        name: verify
        params:
          service: {type: string, required: true}
        steps:
          - id: coherence
            uses: sql.check
            with:
              query: "SELECT AVG(coherence_ratio) FROM system_health WHERE service = %(service)s"
              op: ">="
              threshold: 0.6
          - id: health-row
            uses: sql.check
            with: {query: "SELECT * FROM current_health", expect: rows}
    """
    ws = helpers.workspace(
        tmp_path,
        metrics="{source: sql, url_env: MAIA_DATABASE_URL}",
        triggers=TRIGGERS,
        env="production",
        runbooks={"verify": runbook},
    )
    try:
        result = service.runs.run(ws, "verify", {"service": "maia"})
    finally:
        ws.close()
    assert result.run.status == "ok", result.run.error
    assert result.run.steps[0].outputs["value"] == pytest.approx(0.8)
    assert result.run.steps[1].outputs["rows"] == 1
