"""Slack app speed: acknowledgement latency under concurrent signed slash commands, and RSS.

Sends 200 signed `/crystal` commands from 20 concurrent clients (each its own user, so the
per-user rate limit is not what is measured) to a running `crystal-runbook serve --slack`,
and the same load to the peer: a bare Bolt app on Bolt's own development HTTP server that
only acknowledges. Rounds alternate (ours, peer, ours, ...); figures are medians over the
rounds. The commands mix what answers in the acknowledgement (`help`, `status`, `runs`)
with what hands work to the background worker (`health maia sandbox`). Target: p99 <= 100
ms here (Slack allows 3 s). Then `serve`'s RSS after the commands.

The step-transition-to-chat.update delay is printed as not measured: the live progress
message (issue 11 item 3) is not built yet.

    python bench/slack.py [--rounds 3] [--commands 200] [--clients 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import httpx

from crystal_runbook.testing.slack_requests import SlackAppClient
from crystal_runbook.testing.slack_server import SlackServer

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SECRET = "bench-signing-secret-0123456789abcdef"  # noqa: S105 - a fake for the benchmark
TEXTS = ("help", "status", "runs", "health maia sandbox")

PEER = textwrap.dedent(
    """
    import logging, sys
    from slack_bolt import App
    from slack_bolt.authorization import AuthorizeResult
    from slack_sdk import WebClient
    logging.getLogger("slack_bolt").setLevel(logging.ERROR)
    app = App(signing_secret=sys.argv[2], client=WebClient(base_url=sys.argv[3]),
              authorize=lambda enterprise_id, team_id: AuthorizeResult(
                  enterprise_id=enterprise_id, team_id=team_id, bot_token="xoxb-bench"),
              process_before_response=True)
    @app.command("/crystal")
    def crystal(ack, body):
        ack(text="ok " + body.get("text", ""), response_type="ephemeral")
    print("listening", flush=True)
    app.start(port=int(sys.argv[1]), path="/slack/events")
    """
)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load(base: str, *, commands: int, clients: int) -> tuple[list[float], int]:
    """Seconds of each acknowledgement of ``commands`` commands sent by ``clients`` threads,
    and how many requests failed (connection refused or reset, non-200)."""
    latencies: list[float] = []
    failed = [0]
    lock = threading.Lock()
    per_client = commands // clients

    def client(n: int) -> None:
        app = SlackAppClient(base, SECRET, client=httpx.Client(timeout=30.0))
        try:
            for i in range(per_client):
                text = TEXTS[(n + i) % len(TEXTS)]
                try:
                    answer = app.command(
                        text, user_id=f"U0BENCH{n:03d}", channel_id="C0CRYSTAL01"
                    )
                except httpx.HTTPError:
                    with lock:
                        failed[0] += 1
                    continue
                with lock:
                    if answer.status == 200:
                        latencies.append(answer.seconds)
                    else:
                        failed[0] += 1
        finally:
            app.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, failed[0]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_listening(proc: subprocess.Popen[str], log: Path) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"exited {proc.returncode}: {log.read_text()}")
        for line in log.read_text().splitlines():
            if "listening" in line:
                return line
        time.sleep(0.05)
    raise SystemExit("did not start in 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    args = parser.parse_args()
    with SlackServer() as slack, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CRYSTAL_", "SLACK_"))}
        env.update(slack.env(), SLACK_SIGNING_SECRET=SECRET, CRYSTAL_STATE_DIR=str(root / "state"))
        ours_log, peer_log = root / "serve.log", root / "peer.log"
        started = time.perf_counter()
        with ours_log.open("w") as out:
            ours = subprocess.Popen(
                [str(BIN / "crystal-runbook"), "--inventory", str(REPO / "inventory"),
                 "--runbooks", str(REPO / "runbooks"), "serve", "--slack", "--host",
                 "127.0.0.1", "--port", "0"],
                env=env, stderr=out, text=True, cwd=root,
            )
        line = wait_listening(ours, ours_log)
        ours_start = time.perf_counter() - started
        ours_base = "http://127.0.0.1:" + line.split("127.0.0.1:")[1].split(" ")[0]
        peer_port = free_port()
        started = time.perf_counter()
        with peer_log.open("w") as out:
            peer = subprocess.Popen(
                [sys.executable, "-c", PEER, str(peer_port), SECRET, slack.url],
                env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
            )
        wait_listening(peer, peer_log)
        peer_start = time.perf_counter() - started
        try:
            results: dict[str, list[tuple[float, float]]] = {"ours": [], "peer": []}
            failures = {"ours": 0, "peer": 0}
            rss_after_first = 0.0
            for round_ in range(args.rounds):
                for name, base in (("ours", ours_base), ("peer", f"http://127.0.0.1:{peer_port}")):
                    times, failed = load(base, commands=args.commands, clients=args.clients)
                    failures[name] += failed
                    results[name].append((percentile(times, 0.5), percentile(times, 0.99)))
                    if name == "ours" and round_ == 0:
                        rss_after_first = rss_mb(ours.pid)
            rss_end = rss_mb(ours.pid)
            peer_rss = rss_mb(peer.pid)
        finally:
            for proc in (ours, peer):
                proc.terminate()
                proc.wait(60)
        load_avg = Path("/proc/loadavg").read_text().split()[:3]
        print(f"load average: {' '.join(load_avg)} (2 cores shared)")
        print(f"{args.commands} signed slash commands from {args.clients} concurrent clients, "
              f"{args.rounds} alternating rounds, medians of the rounds:")
        print(f"{'':34} {'p50':>9} {'p99':>9}   start-up  failed requests")
        for name, label, start in (
            ("ours", "crystal-runbook serve --slack", ours_start),
            ("peer", "bare Bolt app (Bolt's dev server)", peer_start),
        ):
            p50 = statistics.median(r[0] for r in results[name]) * 1000
            p99 = statistics.median(r[1] for r in results[name]) * 1000
            print(f"{label:34} {p50:7.1f}ms {p99:7.1f}ms   {start:5.2f} s   {failures[name]}")
        ours_p99 = statistics.median(r[1] for r in results["ours"]) * 1000
        print(f"target p99 <= 100 ms: {'met' if ours_p99 <= 100 else 'NOT met'}")
        print(f"serve RSS after the first {args.commands}: {rss_after_first:.1f} MB; after all "
              f"{args.rounds * args.commands}: {rss_end:.1f} MB (bare Bolt app: {peer_rss:.1f} MB)")
        print("step transition to chat.update: not measured (the live progress message, "
              "issue 11 item 3, is not built yet)")


if __name__ == "__main__":
    main()
