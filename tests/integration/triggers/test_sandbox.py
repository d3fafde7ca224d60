"""Triggers against the sandbox: its pods scraped directly, Prometheus scraping them, speed,
and the whole loop (bad release, rule fires, rollback, verification) through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from crystal_runbook import sandbox, service
from crystal_runbook.engine import journal
from crystal_runbook.triggers.watch import WatchSettings
from tests.conftest import REPO
from tests.integration.triggers import helpers
from tests.integration.triggers.servers import start_prometheus
from tests.unit.triggers.test_watch import Watching, runs

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
BAD_IMAGE = "registry.local/maia:1.5.1-bad"


@pytest.fixture
def sb(tmp_path: Path) -> Iterator[sandbox.Sandbox]:
    running = sandbox.start(tmp_path / ".crystal", ready_delay=0.2)
    running.config.update({"burn_ramp_seconds": 0.0})  # a step, so timings are the tool's own
    try:
        running.settle(10)
        yield running
    finally:
        running.stop()


def kubectl(sb: sandbox.Sandbox, *args: str) -> str:
    out = subprocess.run(
        [str(BIN / "kubectl"), "--kubeconfig", str(sb.kubeconfig_path), "-n", "crystal", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "KUBECACHEDIR": str(sb.dir / "kube-cache")},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def go_bad(sb: sandbox.Sandbox) -> None:
    kubectl(sb, "set", "image", "deployment/maia", f"maia={BAD_IMAGE}")
    kubectl(sb, "rollout", "status", "deployment/maia", "--timeout=30s")


def pod_urls(sb: sandbox.Sandbox) -> list[str]:
    pods = json.loads(kubectl(sb, "get", "pods", "-l", "app=maia", "-o", "json"))["items"]
    ports = [
        p["metadata"].get("annotations", {}).get("sandbox.crystal-runbook.io/port") for p in pods
    ]
    return [f"http://127.0.0.1:{port}/metrics" for port in ports if port]


def coherence(url: str) -> float:
    text = httpx.get(url, timeout=2).text
    return float(
        next(line.split()[1] for line in text.splitlines() if line.startswith("coherence_ratio "))
    )


POD_RULES = """
    apiVersion: crystal-runbook/v1
    kind: Triggers
    services:
      maia:
        sources:
          scrape: {{urls: {urls}}}
        rules:
          - {{name: coherence-low, source: {source}, query: 'avg(coherence_ratio{{job="maia"}})', op: "<", threshold: 0.4}}
          - {{name: error-rate, source: {source}, query: 'sum(rate(http_request_errors_total{{job="maia"}}[5s])) / sum(rate(http_requests_total{{job="maia"}}[5s]))', threshold: 0.05}}
          - {{name: latency-p99, source: {source}, query: 'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{{job="maia"}}[5s])))', threshold: 2}}
          - {{name: db-full, source: {source}, kind: ratio, query: 'db_connections_in_use{{job="maia"}}', denominator: 'db_connections_max{{job="maia"}}', op: ">=", threshold: 0.95}}
"""


def test_scrape_source_reads_the_sandbox_pods(tmp_path: Path, sb: sandbox.Sandbox) -> None:
    """Each pod's /metrics scraped directly: good release clear, `-bad` release firing."""

    def report_for(urls: list[str], root: Path):  # type: ignore[no-untyped-def]
        ws = helpers.workspace(
            root,
            metrics="{source: prometheus, url: 'http://127.0.0.1:1'}",
            triggers=POD_RULES.format(urls=json.dumps(urls), source="scrape"),
        )
        try:
            return service.triggers.trigger_report(ws, "maia")
        finally:
            ws.close()

    good = report_for(pod_urls(sb), tmp_path / "good")
    assert good is not None
    assert good.healthy, good.summary()
    assert good.rule("coherence-low").value == pytest.approx(0.8)
    p99 = good.rule("latency-p99").value
    assert p99 is not None
    assert p99 < 0.5
    go_bad(sb)
    bad = report_for(pod_urls(sb), tmp_path / "bad")
    assert bad is not None
    assert {r.name for r in bad.firing} == {"coherence-low", "error-rate", "latency-p99", "db-full"}
    assert bad.rule("db-full").value == pytest.approx(0.98)


def test_prometheus_scraping_the_sandbox_pods(tmp_path: Path, sb: sandbox.Sandbox) -> None:
    """Prometheus 2.x scrapes the pods (file_sd); the prometheus source fires after `-bad`."""
    prom = start_prometheus()
    try:
        prom.write_targets(
            "maia", [u.removeprefix("http://").removesuffix("/metrics") for u in pod_urls(sb)]
        )
        prom.wait_for_data('rate(http_requests_total{job="maia"}[5s])')
        ws = helpers.workspace(
            tmp_path,
            metrics=f"{{source: prometheus, url: '{prom.url}'}}",
            triggers=POD_RULES.format(urls="[]", source="prometheus")
            .replace("          scrape: {urls: []}\n", "")
            .replace("        sources:\n", ""),
        )
        try:
            good = service.triggers.trigger_report(ws, "maia")
            go_bad(sb)
            prom.write_targets(
                "maia", [u.removeprefix("http://").removesuffix("/metrics") for u in pod_urls(sb)]
            )
            prom.wait_for_data('avg(coherence_ratio{job="maia"}) < 0.4', timeout=20)
            prom.wait_for_data(
                'avg(rate(http_request_errors_total{job="maia"}[5s])) > 1', timeout=20
            )
            bad = service.triggers.trigger_report(ws, "maia")
        finally:
            ws.close()
    finally:
        prom.stop()
    assert good is not None
    assert good.healthy, good.summary()
    assert bad is not None
    assert "coherence-low" in {r.name for r in bad.firing}
    assert bad.rule("coherence-low").value == pytest.approx(0.3)


def test_rollback_starts_within_for_plus_3s(tmp_path: Path, sb: sandbox.Sandbox) -> None:
    """for: 10s at --interval 1s: from the bad release's data to the rollback starting <= 13 s."""
    triggers = """
        apiVersion: crystal-runbook/v1
        kind: Triggers
        services:
          maia:
            rules:
              - {name: coherence-low, query: 'avg(coherence_ratio{job="maia"})', op: "<", threshold: 0.4, for: 10s, action: rollback}
    """
    ws = helpers.workspace(
        tmp_path, metrics=f"{{source: scrape, url: '{sb.metrics_url()}'}}", triggers=triggers
    )
    watching = Watching(ws, WatchSettings(interval=1.0, auto_rollback=True))
    try:
        watching.wait_for(lambda: len(watching.reports) >= 2)
        assert watching.reports[-1].healthy
        kubectl(sb, "set", "image", "deployment/maia", f"maia={BAD_IMAGE}")
        deadline = time.monotonic() + 20
        while coherence(sb.metrics_url()) > 0.31:  # every Ready pod serves the bad release
            assert time.monotonic() < deadline, "the bad release never went live"
            time.sleep(0.02)
        live = time.time()
        watching.wait_for(lambda: len(runs(tmp_path)) == 1, timeout=25)
    finally:
        watching.finish()
    (run,) = runs(tmp_path)
    started = journal.parse_iso(str(run["started_at"])).timestamp()
    latency = started - live
    print(f"rollback started {latency:.2f}s after the bad data went live")  # for the report
    assert 9.5 <= latency <= 13.0, f"rollback started {latency:.2f}s after the bad data"


def test_whole_loop_through_the_cli(tmp_path: Path, sb: sandbox.Sandbox) -> None:
    """`watch --once` 0 on the good release, 1 naming the rules on `-bad`; `--auto-rollback`
    runs the shipped rollback plus metric verification, and the service is good again."""
    rollback = (REPO / "runbooks" / "rollback.yaml").read_text()  # verifies by metrics itself
    triggers = (REPO / "inventory" / "triggers.yaml").read_text()
    for long, short in (
        ("for: 5m", "for: 2s"),
        ("for: 2m", "for: 2s"),
        ("for: 1m", "for: 2s"),
        ("[1m]", "[5s]"),
    ):
        triggers = triggers.replace(long, short)
    target = (
        f"kubernetes: {{context: crystal-sandbox, namespace: crystal, deployment: maia, kubeconfig: {sb.kubeconfig_path}}}\n"
        f"health_url: {sb.health_url()}\n"
    )
    helpers.workspace(
        tmp_path,
        metrics=f"{{source: scrape, url: '{sb.metrics_url()}'}}",
        triggers=triggers,
        extra_target=target,
        runbooks={"rollback": rollback},
    ).close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRYSTAL_", "KUBECONFIG"))}
    env.update(
        CRYSTAL_STATE_DIR=str(tmp_path / ".crystal"), CRYSTAL_ACTOR="oncall", HOME=str(tmp_path)
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "crystal-runbook"), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    clear = cli("watch", "maia", "--once")
    assert clear.returncode == 0, clear.stdout + clear.stderr
    go_bad(sb)
    cli("watch", "maia", "--once")  # starts the 2 s windows (state is saved between runs)
    time.sleep(2.5)
    firing = cli("watch", "maia", "--once", "-o", "json")
    assert firing.returncode == 1, firing.stderr
    doc = json.loads(firing.stdout)
    assert {"coherence-low", "error-rate", "latency-p99", "db-connections-exhausted"} <= set(
        doc["firing"]
    )
    watcher = subprocess.Popen(
        [str(BIN / "crystal-runbook"), "watch", "maia", "--auto-rollback", "--interval", "1s"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        done: list[dict[str, object]] = []
        while not done:
            assert time.monotonic() < deadline, "no finished rollback"
            assert watcher.poll() is None, watcher.communicate()
            listed = cli("runs", "-o", "json")
            done = [r for r in json.loads(listed.stdout or "[]") if r["status"] != "running"]
            time.sleep(0.5)
    finally:
        watcher.terminate()
        _, err = watcher.communicate(timeout=30)
    (run,) = done
    assert run["status"] == "ok", err
    shown = json.loads(cli("runs", "show", str(run["id"]), "-o", "json").stdout)
    steps = {s["id"]: s for s in shown["steps"]}
    assert steps["errors-ceased"]["status"] == "ok"
    assert steps["performance-restored"]["status"] == "ok"
    assert "trigger fired for maia in sandbox" in shown["params"]["reason"]
    image = json.loads(kubectl(sb, "get", "deployment", "maia", "-o", "json"))
    container = image["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.local/maia:1.5.0"
    assert {"name": "CRYSTAL_MODE", "value": "legacy"} in container["env"]
    assert "starting rollback" in err
