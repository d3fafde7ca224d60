"""Replicas of `crystal-runbook serve` sharing one PostgreSQL journal and one sandbox cluster.

Every part is real: PostgreSQL 15 (one server for the session, a fresh schema per test),
the sandbox (a Kubernetes API emulator on a free port, where the Leases live, read back
with kubectl), and the installed `crystal-runbook serve` processes, each with a state
directory of its own as separate pods would have. Timings are short for tests: Leases of
4 s renewed every 0.5 s, watchers and the scheduler every second, trigger windows of 2 s.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from crystal_runbook import sandbox, service
from crystal_runbook.engine import journal as journal_mod
from tests.conftest import REPO, fresh_postgres_journal
from tests.polling import wait_for
from tests.postgres import Postgres

BIN = Path(sys.executable).parent
LEASE_SECONDS = 4.0
RENEW_SECONDS = 0.5
SCHEDULER_LEASE = "crystal-runbook-serve-scheduler"
WATCH_LEASE = "crystal-runbook-serve-watch-maia-sandbox"
BAD_IMAGE = "registry.local/maia:1.5.1-bad"
GOOD_IMAGE = "registry.local/maia:1.5.0"


def slot_ago(minutes: float) -> str:
    """A cron expression that matched once, ``minutes`` ago (UTC)."""
    at = datetime.now(UTC) - timedelta(minutes=minutes)
    return f"{at.minute} {at.hour} {at.day} {at.month} *"


@dataclass
class Replica:
    """One `serve` process."""

    name: str
    proc: subprocess.Popen[str]
    log: Path
    port: int = 0
    identity: str = ""

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url(path), timeout=10)

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class Team:
    """A sandbox, a PostgreSQL journal, an inventory, and the replicas started on them."""

    root: Path
    database_url: str
    sb: sandbox.Sandbox
    replicas: list[Replica] = field(default_factory=list)

    # -- set-up -----------------------------------------------------------------------------

    @classmethod
    def create(cls, root: Path, pg: Postgres) -> Team:
        running = sandbox.start(root / "cluster", ready_delay=0.1)
        running.config.update({"burn_ramp_seconds": 1.0, "backoff_base": 0.2})
        team = cls(root, fresh_postgres_journal(pg), running)
        team.write_inventory()
        running.settle(10)
        return team

    def write_inventory(self) -> None:
        inventory = self.root / "inventory"
        inventory.mkdir(exist_ok=True)
        kubeconfig = self.sb.kubeconfig_path
        block = (
            "        kubernetes: {context: crystal-sandbox, namespace: crystal, deployment: maia, "
            f"kubeconfig: '{kubeconfig}'}}\n"
            f"        health_url: '{self.sb.health_url()}'\n"
            f"        metrics: {{source: scrape, url: '{self.sb.metrics_url()}'}}\n"
        )
        (inventory / "services.yaml").write_text(
            "default_environment: sandbox\nservices:\n  maia:\n    environments:\n"
            f"      sandbox:\n{block}      staging:\n{block}"
        )
        triggers = (REPO / "inventory" / "triggers.yaml").read_text()
        for long, short in (("for: 5m", "for: 2s"), ("for: 2m", "for: 2s"), ("for: 1m", "for: 2s"), ("[1m]", "[5s]")):
            triggers = triggers.replace(long, short)
        (inventory / "triggers.yaml").write_text(triggers)
        (inventory / "serve.yaml").write_text(
            textwrap.dedent(
                f"""
                apiVersion: crystal-runbook/v1
                kind: Serve
                leader_election:
                  kubernetes: {{context: crystal-sandbox, namespace: crystal, kubeconfig: '{kubeconfig}'}}
                  lease_duration: {LEASE_SECONDS}s
                  renew_period: {RENEW_SECONDS}s
                scheduler: {{interval: 1s}}
                watch:
                  - {{service: maia, env: sandbox, interval: 1s, cooldown: 10m}}
                """
            ).lstrip()
        )
        self.drills_yaml("")

    def drills_yaml(self, schedules: str) -> None:
        """drills.yaml with ``schedules`` (environment blocks of maia, 6 spaces in)."""
        text = "services:\n  maia:\n    environments:\n" + schedules if schedules else ""
        (self.root / "inventory" / "drills.yaml").write_text(text)

    def env(self, name: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CRYSTAL_", "KUBECONFIG", "SLACK_"))}
        env.update(
            CRYSTAL_STATE_DIR=str(self.root / name / ".crystal"),
            CRYSTAL_DATABASE_URL=self.database_url,
            CRYSTAL_ACTOR=f"serve-{name}",
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            HOME=str(self.root / name),
        )
        env.update(extra)
        return env

    # -- replicas ---------------------------------------------------------------------------

    def start(self, name: str, *args: str, grace: str = "20s", **env: str) -> Replica:
        """Start `serve --scheduler --watch` (and ``args``) as replica ``name``; wait until it
        listens and says its identity."""
        (self.root / name).mkdir(exist_ok=True)
        log = self.root / f"{name}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [
                    str(BIN / "crystal-runbook"),
                    "--inventory",
                    str(self.root / "inventory"),
                    "--runbooks",
                    str(REPO / "runbooks"),
                    "serve",
                    "--scheduler",
                    "--watch",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--grace",
                    grace,
                    *args,
                ],
                cwd=self.root / name,
                env=self.env(name, **env),
                stderr=out,
                stdout=subprocess.DEVNULL,
                text=True,
            )
        replica = Replica(name, proc, log)
        self.replicas.append(replica)

        def ready() -> bool:
            if not replica.alive():
                raise AssertionError(f"{name} exited {proc.returncode}:\n{replica.text()}")
            text = replica.text()
            return "listening on" in text and "campaigns for" in text

        wait_for(ready, 60, f"{name} to listen")
        text = replica.text()
        replica.port = int(text.split("127.0.0.1:")[1].split(" ")[0])
        replica.identity = text.split("replica ")[1].split(" ")[0]
        return replica

    def sigterm(self, replica: Replica, timeout: float = 60) -> int:
        replica.proc.send_signal(signal.SIGTERM)
        return replica.proc.wait(timeout)

    def kill(self, replica: Replica) -> float:
        """kill -9; returns the wall-clock time of the kill (the process is reaped, so its
        pid is gone as a dead pod's would be)."""
        killed = time.time()
        replica.proc.send_signal(signal.SIGKILL)
        replica.proc.wait(30)
        return killed

    def close(self) -> list[str]:
        for replica in self.replicas:
            if replica.alive():
                replica.proc.send_signal(signal.SIGTERM)
                try:
                    replica.proc.wait(60)
                except subprocess.TimeoutExpired:
                    replica.proc.kill()
                    replica.proc.wait(10)
        errors = list(self.sb.internal_errors)
        self.sb.stop()
        return errors

    # -- the cluster ------------------------------------------------------------------------

    def kubectl(self, *args: str) -> str:
        out = subprocess.run(
            [str(BIN / "kubectl"), "--kubeconfig", str(self.sb.kubeconfig_path), "-n", "crystal", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "KUBECACHEDIR": str(self.root / "kube-cache")},
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    def lease(self, name: str) -> dict[str, Any]:
        """A Lease's spec as kubectl shows it ({} when it does not exist)."""
        listed = json.loads(self.kubectl("get", "leases", "-o", "json"))
        for item in listed["items"]:
            if item["metadata"]["name"] == name:
                return dict(item.get("spec") or {})
        return {}

    def holder(self, name: str) -> str:
        return str(self.lease(name).get("holderIdentity") or "")

    def leader(self, name: str, timeout: float = 30) -> Replica:
        """The replica holding ``name``, once one does."""

        def found() -> Replica | None:
            holder = self.holder(name)
            return next((r for r in self.replicas if r.identity == holder), None)

        replica: Replica = wait_for(found, timeout, f"a holder of {name}")
        return replica

    def image(self) -> str:
        dep = json.loads(self.kubectl("get", "deployment", "maia", "-o", "json"))
        return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])

    def go_bad(self) -> None:
        self.kubectl("set", "image", "deployment/maia", f"maia={BAD_IMAGE}")

    # -- the journal ------------------------------------------------------------------------

    def runs(self, runbook: str | None = None) -> list[journal_mod.RunRecord]:
        """Every run in the shared journal (with steps), oldest first."""
        journal = service.journals.open_journal(
            self.root / "reader", database_url=self.database_url, pooled=False
        )
        try:
            found = [journal.get_run(r.id) for r in journal.list_runs(limit=200)]
        finally:
            journal.close()
        return [r for r in reversed(found) if runbook is None or r.runbook == runbook]

    def events(self, run_id: str) -> list[journal_mod.EventRecord]:
        journal = service.journals.open_journal(
            self.root / "reader", database_url=self.database_url, pooled=False
        )
        try:
            return journal.events(run_id)
        finally:
            journal.close()


def logs(team: Team) -> str:
    """Every replica's log, for assertion messages."""
    return "\n".join(f"--- {r.name} ---\n{r.text()}" for r in team.replicas)


@pytest.fixture
def team(tmp_path: Path, postgres_server: Postgres) -> Iterator[Team]:
    built = Team.create(tmp_path, postgres_server)
    try:
        yield built
    finally:
        errors = built.close()
        shutil.rmtree(tmp_path / "reader", ignore_errors=True)
    assert errors == [], "\n".join(errors)
