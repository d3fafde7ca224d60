"""`/readyz` follows what a replica depends on; `/healthz` does not.

One `serve --scheduler --watch` on a PostgreSQL journal of its own (a throwaway server, so
stopping it harms no other test) and the sandbox: ready while both answer; 503 naming the
journal once PostgreSQL stops (the database URL's password masked), and naming the cluster
once the API server stops; `/healthz` stays 200 throughout (restarting would not help).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from crystal_runbook import sandbox
from tests.conftest import REPO
from tests.integration.serve.conftest import BIN, wait_for
from tests.postgres import Postgres, start_postgres_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def own_postgres() -> Iterator[Postgres]:
    pg = start_postgres_server()
    try:
        pg.psql("CREATE DATABASE journal OWNER crystal")
        yield pg
    finally:
        pg.stop()


def stop_fast(pg: Postgres) -> None:
    """Stop the server now, sessions and all (a fast shutdown, SIGINT, by the PID it wrote):
    a smart one would wait for `serve`'s pooled connections to end."""
    pid_file = pg.dir / "data" / "postmaster.pid"
    os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)
    wait_for(lambda: not pid_file.exists(), 30, "PostgreSQL to stop")


def test_readyz_names_the_journal_then_the_cluster_and_healthz_stays_up(
    tmp_path: Path, own_postgres: Postgres
) -> None:
    """200 while all answer; 503 with the journal's problem (no password), then the cluster's."""
    running = sandbox.start(tmp_path / "cluster", ready_delay=0.1)
    url = own_postgres.dsn(database="journal")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRYSTAL_", "KUBECONFIG", "SLACK_"))}
    env.update(
        CRYSTAL_STATE_DIR=str(tmp_path / ".crystal"),
        CRYSTAL_DATABASE_URL=url,
        HOME=str(tmp_path),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    kubeconfig = running.kubeconfig_path
    (inventory / "services.yaml").write_text(
        "default_environment: sandbox\nservices:\n  maia:\n    environments:\n      sandbox:\n"
        "        kubernetes: {context: crystal-sandbox, namespace: crystal, deployment: maia, "
        f"kubeconfig: '{kubeconfig}'}}\n"
        f"        metrics: {{source: scrape, url: '{running.metrics_url()}'}}\n"
    )
    (inventory / "serve.yaml").write_text(
        "leader_election:\n"
        f"  kubernetes: {{context: crystal-sandbox, namespace: crystal, kubeconfig: '{kubeconfig}'}}\n"
        "watch:\n  - {service: maia, env: sandbox, interval: 1s, auto_rollback: false}\n"
    )
    argv = [str(BIN / "crystal-runbook"), "--inventory", str(inventory), "--runbooks", str(REPO / "runbooks")]
    migrated = subprocess.run([*argv, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert migrated.returncode == 0, migrated.stderr
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*argv, "serve", "--scheduler", "--watch", "--host", "127.0.0.1", "--port", "0", "--grace", "2s"],
            cwd=tmp_path, env=env, stderr=out, stdout=subprocess.DEVNULL,
        )
    try:
        wait_for(lambda: "campaigns for" in log.read_text() or proc.poll() is not None, 60, "serve", log.read_text)
        assert proc.poll() is None, log.read_text()
        base = f"http://127.0.0.1:{int(log.read_text().split('127.0.0.1:')[1].split(' ')[0])}"

        def ready() -> httpx.Response:
            return httpx.get(f"{base}/readyz", timeout=15)

        assert ready().json() == {"status": "ready", "problems": []}

        stop_fast(own_postgres)
        down: httpx.Response = wait_for(lambda: (r := ready()).status_code == 503 and r, 30, "503", log.read_text)
        (problem,) = down.json()["problems"]
        assert problem.startswith("journal: "), problem
        assert own_postgres.password not in down.text
        assert httpx.get(f"{base}/healthz", timeout=15).status_code == 200

        running.stop()
        time.sleep(1.2)  # the last answer is reused for a second
        both = ready()
        assert both.status_code == 503
        journal, cluster = both.json()["problems"]
        assert journal.startswith("journal: ")
        assert cluster.startswith("kubernetes ("), cluster
        assert httpx.get(f"{base}/healthz", timeout=15).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        running.stop()
    assert "Traceback" not in log.read_text()
