"""Real Prometheus 2.x and PostgreSQL on free loopback ports, in temporary directories.

Started by the fixtures (and by `bench/triggers.py`) as test-servers.md describes, never as
system services, and stopped by their PID. PostgreSQL itself is `tests/postgres.py`, shared
with the journal tests; here it gets the source document's tables. Prometheus' first sample
is queryable only after about 5.5 s (targets are applied every 5 s), so ``wait_for_data``
polls for it.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.postgres import Postgres, free_port, start_postgres_server

__all__ = ["Postgres", "Prometheus", "free_port", "start_postgres", "start_prometheus"]


def _wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


@dataclass
class Prometheus:
    """A running Prometheus; ``write_targets`` changes what the file_sd job scrapes."""

    process: subprocess.Popen[bytes]
    port: int
    dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_targets(self, job: str, targets: list[str]) -> None:
        doc = f'[{{"targets": [{", ".join(repr(t).replace(chr(39), chr(34)) for t in targets)}], "labels": {{"job": "{job}"}}}}]'
        tmp = self.dir / "targets.json.tmp"
        tmp.write_text(doc)
        tmp.replace(self.dir / "targets.json")

    def query(self, expr: str) -> list[dict[str, object]]:
        with httpx.Client(timeout=5) as client:
            body = client.get(f"{self.url}/api/v1/query", params={"query": expr}).json()
        return list(body["data"]["result"]) if body.get("status") == "success" else []

    def wait_for_data(self, expr: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.query(expr):
                return
            time.sleep(0.25)
        raise AssertionError(f"prometheus has no data for {expr} after {timeout}s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def start_prometheus(
    *, static: dict[str, list[str]] | None = None, metrics_path: str = "/metrics", rules: str = ""
) -> Prometheus:
    """Prometheus with one static job per ``static`` entry, a file_sd job and optional rules."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus is not installed (scripts/test.sh installs it)")
    directory = Path(tempfile.mkdtemp(prefix="crystal-prom-"))
    port = free_port()
    (directory / "targets.json").write_text("[]")
    jobs = []
    for job, targets in (static or {}).items():
        listed = ", ".join(f"'{t}'" for t in targets)
        jobs.append(
            f"  - job_name: {job}\n    metrics_path: {metrics_path}\n"
            f"    static_configs: [{{targets: [{listed}]}}]\n"
        )
    jobs.append(
        "  - job_name: discovered\n"
        f"    file_sd_configs: [{{files: ['{directory / 'targets.json'}'], refresh_interval: 1s}}]\n"
    )
    rule_files = ""
    if rules:
        (directory / "rules.yml").write_text(rules)
        rule_files = f"rule_files: ['{directory / 'rules.yml'}']\n"
    (directory / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s, scrape_timeout: 1s}\n"
        + rule_files
        + "scrape_configs:\n"
        + "".join(jobs)
    )
    log = (directory / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    log.close()  # the child has its own descriptor
    prom = Prometheus(process, port, directory)
    if not _wait_port(port, 10):
        prom.stop()
        raise RuntimeError("prometheus did not start")
    return prom


def start_postgres(password: str = "s3cret-Pa55word") -> Postgres:  # noqa: S107 - a throwaway test cluster
    """The shared test PostgreSQL, plus a `maia` database with the source document's tables."""
    pg = start_postgres_server(password)
    try:
        pg.psql("CREATE DATABASE maia OWNER crystal")
        pg.psql(SCHEMA, database="maia")
    except BaseException:
        pg.stop()
        raise
    return pg


SCHEMA = """
SET ROLE crystal;
CREATE TABLE system_health (
    timestamp timestamptz NOT NULL DEFAULT now(),
    service text NOT NULL,
    coherence_ratio double precision NOT NULL,
    error_rate double precision NOT NULL
);
CREATE VIEW current_health AS
    SELECT DISTINCT ON (service) service, coherence_ratio, error_rate, timestamp
    FROM system_health ORDER BY service, timestamp DESC;
CREATE TABLE resonance_events (
    timestamp timestamptz NOT NULL DEFAULT now(),
    event_type text NOT NULL
);
CREATE SEQUENCE probe_seq;
INSERT INTO system_health (timestamp, service, coherence_ratio, error_rate)
    SELECT now() - (n || ' minutes')::interval, 'maia', 0.8, 0.004 FROM generate_series(1, 50) n;
INSERT INTO resonance_events (event_type) SELECT 'emergence' FROM generate_series(1, 7);
"""
