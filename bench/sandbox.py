"""The sandbox's speed, with kubectl's own figure for the same operation beside ours.

Measures, on one fresh sandbox per section, run in its own process as ``sandbox up`` runs it
(clients in this process would otherwise share one GIL with the server):

1. start: ``sandbox.start()`` in-process, and ``python -m crystal_runbook.sandbox`` from
   process start to its "ready" line;
2. GET deployment latency, p50/p99, through the Python ``kubernetes`` client (keep-alive),
   beside ``kubectl get deployment maia -o json`` (a process per call) and the server-side
   time of both from the request log;
3. 1,000 GETs from 20 threads (one client per thread), beside 100 ``kubectl get`` processes
   run 20 at a time;
4. a 20-replica rollout (ready delay 0.5 s) through the client (patch + watch), beside
   ``kubectl set image`` + ``kubectl rollout status`` on the same cluster.

Run: .venv/bin/python bench/sandbox.py [--gets 1000] [--kubectl-gets 20]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from crystal_runbook import sandbox

BIN = Path(sys.executable).parent
NS = "crystal"


def pct(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


def line(label: str, text: str) -> None:
    print(f"  {label:<58} {text}")


class Remote:
    """A sandbox in its own process (as `sandbox up` runs it), so that client threads here
    do not compete with the server for this interpreter's GIL."""

    def __init__(self, state: Path, ready_delay: float) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "crystal_runbook.sandbox",
                "--state-dir",
                str(state),
                "--port",
                "0",
                "--ready-delay",
                str(ready_delay),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        ready = self.proc.stdout.readline().split()
        assert ready[:1] == ["ready"], ready
        self.url = ready[1]
        self.port = int(self.url.rsplit(":", 1)[1])
        self.kubeconfig_path = state / "sandbox" / "kubeconfig"
        self.log = state / "sandbox" / "requests.jsonl"

    def requests(self) -> list[dict[str, Any]]:
        flush = f"{self.url}/_sandbox/flush"
        req = urllib.request.Request(flush, method="POST")  # noqa: S310 - our loopback sandbox
        with urllib.request.urlopen(req) as resp:  # noqa: S310 - our own loopback sandbox
            resp.read()
        return [json.loads(x) for x in self.log.read_text().splitlines() if x]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@contextmanager
def running(ready_delay: float = 0.5) -> Iterator[tuple[Remote, dict[str, str]]]:
    with tempfile.TemporaryDirectory() as tmp:
        sb = Remote(Path(tmp), ready_delay)
        env = {**os.environ, "KUBECONFIG": str(sb.kubeconfig_path), "KUBECACHEDIR": f"{tmp}/cache"}
        try:
            yield sb, env
        finally:
            sb.stop()


def kubectl(env: dict[str, str], *args: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [str(BIN / "kubectl"), "-n", NS, *args],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def server_times(sb: Remote, agent: str, path: str) -> list[float]:
    return [
        r["duration_ms"] / 1000
        for r in sb.requests()
        if agent in r["user_agent"] and r["path"] == path
    ]


def bench_start() -> None:
    print("start")
    inproc = []
    for _ in range(5):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            sb = sandbox.start(Path(tmp))
            inproc.append(time.perf_counter() - started)
            sb.stop()
    line("sandbox.start() in-process (seeded, median of 5)", ms(statistics.median(inproc)))
    procs = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "crystal_runbook.sandbox",
                    "--state-dir",
                    tmp,
                    "--port",
                    "0",
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert proc.stdout is not None
            ready = proc.stdout.readline()
            procs.append(time.perf_counter() - started)
            assert ready.startswith("ready "), ready
            proc.terminate()
            proc.wait(10)
            proc.stdout.close()
    line(
        "python -m crystal_runbook.sandbox, exec to ready (median of 3)",
        ms(statistics.median(procs)),
    )
    line("target", "<= 500 ms")


def bench_get(gets: int, kubectl_gets: int) -> None:
    print("GET deployment maia")
    with running() as (sb, env):
        api_client = config.new_client_from_config(config_file=str(sb.kubeconfig_path))
        apps = client.AppsV1Api(api_client)
        for _ in range(50):
            apps.read_namespaced_deployment("maia", NS)
        times = []
        for _ in range(gets):
            started = time.perf_counter()
            apps.read_namespaced_deployment("maia", NS)
            times.append(time.perf_counter() - started)
        api_client.close()
        raw = []
        conn = http.client.HTTPConnection("127.0.0.1", sb.port)
        for _ in range(gets):
            started = time.perf_counter()
            conn.request("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/maia")
            conn.getresponse().read()
            raw.append(time.perf_counter() - started)
        conn.close()
        kubectl(env, "get", "deployment", "maia")  # fill kubectl's discovery cache
        ktimes = [
            kubectl(env, "get", "deployment", "maia", "-o", "json") for _ in range(kubectl_gets)
        ]
        path = f"/apis/apps/v1/namespaces/{NS}/deployments/maia"
        ours_server = server_times(sb, "OpenAPI-Generator", path)
        kubectl_server = server_times(sb, "kubectl", path)
    line(
        f"Python client, {gets} sequential GETs: p50 / p99",
        f"{ms(pct(times, 0.5))} / {ms(pct(times, 0.99))}",
    )
    line(
        f"http.client keep-alive, {gets} sequential GETs: p50 / p99",
        f"{ms(pct(raw, 0.5))} / {ms(pct(raw, 0.99))}",
    )
    line(
        f"kubectl get deployment maia -o json, {kubectl_gets} runs: p50 / p99",
        f"{ms(pct(ktimes, 0.5))} / {ms(pct(ktimes, 0.99))}",
    )
    line(
        "server time per GET (request log), client: p50 / p99",
        f"{ms(pct(ours_server, 0.5))} / {ms(pct(ours_server, 0.99))}",
    )
    if kubectl_server:
        line(
            "server time per GET (request log), kubectl: p50 / p99",
            f"{ms(pct(kubectl_server, 0.5))} / {ms(pct(kubectl_server, 0.99))}",
        )


def bench_parallel(total: int, threads: int, kubectl_total: int) -> None:
    print(f"{total} GETs from {threads} threads")
    with running() as (sb, env):
        per_thread = total // threads
        latencies: list[float] = []
        lock = threading.Lock()
        barrier = threading.Barrier(threads + 1)

        def worker() -> None:
            api_client = config.new_client_from_config(config_file=str(sb.kubeconfig_path))
            apps = client.AppsV1Api(api_client)
            apps.read_namespaced_deployment("maia", NS)  # connect before the clock starts
            mine = []
            barrier.wait()
            for _ in range(per_thread):
                started = time.perf_counter()
                apps.read_namespaced_deployment("maia", NS)
                mine.append(time.perf_counter() - started)
            api_client.close()
            with lock:
                latencies.extend(mine)

        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for t in pool:
            t.start()
        barrier.wait()
        started = time.perf_counter()
        for t in pool:
            t.join()
        wall = time.perf_counter() - started
        server = [
            r["duration_ms"] / 1000
            for r in sb.requests()
            if "OpenAPI-Generator" in r["user_agent"] and r["method"] == "GET"
        ]
        raw_wall = raw_parallel(sb.port, total, threads)
        kubectl(env, "get", "deployment", "maia")
        with ThreadPoolExecutor(threads) as ex:
            started = time.perf_counter()
            list(
                ex.map(
                    lambda _: kubectl(env, "get", "deployment", "maia", "-o", "json"),
                    range(kubectl_total),
                )
            )
            kwall = time.perf_counter() - started
    line("Python client: wall / throughput", f"{ms(wall)} / {len(latencies) / wall:7.0f} req/s")
    line(
        "Python client: per-request p50 / p99",
        f"{ms(pct(latencies, 0.5))} / {ms(pct(latencies, 0.99))}",
    )
    line(
        "server time per GET during it (request log): p50 / p99",
        f"{ms(pct(server, 0.5))} / {ms(pct(server, 0.99))}",
    )
    line(
        "http.client keep-alive, same load: wall / throughput",
        f"{ms(raw_wall)} / {total / raw_wall:7.0f} req/s",
    )
    line(
        f"kubectl, {kubectl_total} processes {threads} at a time: wall / rate",
        f"{ms(kwall)} / {kubectl_total / kwall:7.0f} req/s",
    )


def raw_parallel(port: int, total: int, threads: int) -> float:
    """Wall time of ``total`` keep-alive GETs from ``threads`` threads, no client library."""
    path = f"/apis/apps/v1/namespaces/{NS}/deployments/maia"
    barrier = threading.Barrier(threads + 1)

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.request("GET", path)
        conn.getresponse().read()
        barrier.wait()
        for _ in range(total // threads):
            conn.request("GET", path)
            conn.getresponse().read()
        conn.close()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in pool:
        t.join()
    return time.perf_counter() - started


def rollout_done(d: Any) -> bool:
    s = d.status
    return bool(
        d.metadata.generation <= (s.observed_generation or 0)
        and (s.updated_replicas or 0) == d.spec.replicas
        and (s.replicas or 0) == d.spec.replicas
        and (s.available_replicas or 0) == d.spec.replicas
    )


def wait_rollout(apps: client.AppsV1Api) -> None:
    w = watch.Watch()
    for event in w.stream(
        apps.list_namespaced_deployment, NS, field_selector="metadata.name=maia", timeout_seconds=30
    ):
        if rollout_done(event["object"]):
            w.stop()
            return
    raise RuntimeError("rollout did not complete")


def bench_rollout(ready_delay: float) -> None:
    print(f"20-replica rollout, ready delay {ready_delay} s")
    with running(ready_delay) as (sb, env):
        api_client = config.new_client_from_config(config_file=str(sb.kubeconfig_path))
        apps = client.AppsV1Api(api_client)
        apps.patch_namespaced_deployment_scale("maia", NS, {"spec": {"replicas": 20}})
        wait_rollout(apps)
        started = time.perf_counter()
        apps.patch_namespaced_deployment(
            "maia",
            NS,
            {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [{"name": "maia", "image": "registry.local/maia:1.6.0"}]
                        }
                    }
                }
            },
        )
        wait_rollout(apps)
        ours = time.perf_counter() - started
        kubectl(env, "get", "deployment", "maia")
        started = time.perf_counter()
        kubectl(env, "set", "image", "deployment/maia", "maia=registry.local/maia:1.7.0")
        kubectl(env, "rollout", "status", "deployment/maia", "--timeout=60s")
        theirs = time.perf_counter() - started
        api_client.close()
    line("Python client: patch + watch until complete", ms(ours))
    line("kubectl set image + kubectl rollout status", ms(theirs))
    line("target", f"<= {ms(ready_delay + 1.0).strip()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gets", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=20)
    parser.add_argument("--kubectl-gets", type=int, default=20)
    parser.add_argument("--kubectl-parallel", type=int, default=100)
    parser.add_argument("--ready-delay", type=float, default=0.5)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    bench_start()
    bench_get(args.gets, args.kubectl_gets)
    bench_parallel(1000, args.threads, args.kubectl_parallel)
    bench_rollout(args.ready_delay)


if __name__ == "__main__":
    main()
