"""Endurance of `crystal-runbook serve`: 1,000 runs through it against the sandbox.

Each run is what an on-call engineer does from Slack: a signed `/crystal scale maia N sandbox`
(alternating 3 and 4 replicas, so every run changes the Deployment, waits for the rollout and
checks health), then Confirm on the message the app posts; the run goes through the Bolt app,
the background worker, the service layer, the engine, the journal and the sandbox's API
server, and its notices through the local Slack Web API server. `serve` also runs
`--scheduler --watch` (elected, watching maia every second) meanwhile.

Printed: RSS, open file descriptors and threads of the `serve` process after the first run and
every 100 runs (the curve), with the machine's load average. The source checklist asks for
memory that stays stable over 1,000 interactions; the targets: RSS after 1,000 runs at most
1.2 x RSS after the first 100, and no growth in file descriptors or threads. The peer, in the
same invocation: a bare Bolt app (Bolt's own HTTP server, acknowledgement only) given the same
2,000 requests, its RSS at the same points: how much of the curve is Bolt's.

    python bench/serve.py [--runs 1000] [--postgres | --database-url postgresql://...]

File descriptors and threads are the fewest seen over a second at each point (what the
process keeps; a scrape or a Lease renewal holds one for a moment), with the most beside.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from crystal_runbook import sandbox
from crystal_runbook.testing.slack_requests import SlackAppClient
from crystal_runbook.testing.slack_server import SlackServer

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SECRET = "bench-signing-secret-0123456789abcdef"  # noqa: S105 - a fake for the benchmark
CHANNEL = "C0CRYSTAL01"
USERS = 20
"""Commands rotate over this many users: the per-user limit is 100 requests a minute."""

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
    @app.action("crystal_confirm")
    def confirm(ack):
        ack()
    print("listening", flush=True)
    app.start(port=int(sys.argv[1]), path="/slack/events")
    """
)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sample(pid: int) -> dict[str, float]:
    """RSS (MB), open file descriptors and threads of ``pid`` now."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    rss = next(int(ln.split()[1]) for ln in status if ln.startswith("VmRSS:")) / 1024
    threads = next(int(ln.split()[1]) for ln in status if ln.startswith("Threads:"))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return {"rss_mb": rss, "fds": fds, "threads": threads}


def footprint(pid: int, *, samples: int = 10, every: float = 0.1) -> dict[str, float]:
    """What ``pid`` keeps between runs: RSS now, and the fewest file descriptors and threads
    over ``samples`` looks ``every`` seconds apart (the watcher's scrape and the Lease
    renewals open a connection or a thread for a moment; those come and go, a leak stays),
    with the most seen beside them."""
    seen = []
    for _ in range(samples):
        seen.append(sample(pid))
        time.sleep(every)
    return {
        "rss_mb": seen[-1]["rss_mb"],
        "fds": min(s["fds"] for s in seen),
        "threads": min(s["threads"] for s in seen),
        "fds_max": max(s["fds"] for s in seen),
        "threads_max": max(s["threads"] for s in seen),
    }


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def write_inventory(root: Path, sb: sandbox.Sandbox) -> None:
    inventory = root / "inventory"
    inventory.mkdir()
    kubeconfig = sb.kubeconfig_path
    (inventory / "services.yaml").write_text(
        "default_environment: sandbox\nservices:\n  maia:\n    environments:\n      sandbox:\n"
        f"        kubernetes: {{context: crystal-sandbox, namespace: crystal, deployment: maia, "
        f"kubeconfig: '{kubeconfig}'}}\n"
        f"        health_url: '{sb.health_url()}'\n"
        f"        metrics: {{source: scrape, url: '{sb.metrics_url()}'}}\n"
        "        slack_channel: '#maia-incidents'\n"
    )
    for name in ("access.yaml", "triggers.yaml"):
        (inventory / name).write_text((REPO / "inventory" / name).read_text())
    (inventory / "serve.yaml").write_text(
        textwrap.dedent(
            f"""
            apiVersion: crystal-runbook/v1
            kind: Serve
            leader_election:
              kubernetes: {{context: crystal-sandbox, namespace: crystal, kubeconfig: '{kubeconfig}'}}
            watch:
              - {{service: maia, env: sandbox, interval: 1s, auto_rollback: false}}
            """
        ).lstrip()
    )


def finished_runs(state: Path, database_url: str | None) -> int:
    """Runs in the journal that are over (any status but running)."""
    if database_url:
        import psycopg

        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT count(*) FROM runs WHERE status <> 'running'").fetchone()
            return int(row[0]) if row else 0
    with sqlite3.connect(f"file:{state / 'journal.db'}?mode=ro", uri=True, timeout=10) as conn:
        return int(conn.execute("SELECT count(*) FROM runs WHERE status <> 'running'").fetchone()[0])


def asked(state: Path, database_url: str | None) -> int:
    """Confirm messages the app has posted and recorded (its `asked` events)."""
    query = "SELECT count(*) FROM events WHERE kind = 'slack' AND status = 'asked'"
    if database_url:
        import psycopg

        with psycopg.connect(database_url) as conn:
            row = conn.execute(query).fetchone()
            return int(row[0]) if row else 0
    with sqlite3.connect(f"file:{state / 'journal.db'}?mode=ro", uri=True, timeout=10) as conn:
        return int(conn.execute(query).fetchone()[0])


def statuses(state: Path, database_url: str | None) -> dict[str, int]:
    query = "SELECT status, count(*) FROM runs GROUP BY status"
    if database_url:
        import psycopg

        with psycopg.connect(database_url) as conn:
            return {str(s): int(n) for s, n in conn.execute(query).fetchall()}
    with sqlite3.connect(f"file:{state / 'journal.db'}?mode=ro", uri=True, timeout=10) as conn:
        return {str(s): int(n) for s, n in conn.execute(query).fetchall()}


def confirm_of(slack: SlackServer, seen: set[str], deadline: float) -> Any:
    """The newest confirm message not pressed yet."""
    while time.monotonic() < deadline:
        for message in reversed(slack.posted(CHANNEL)):
            if message.ts in seen:
                continue
            for block in message.blocks or []:
                if block.get("type") != "actions":
                    continue
                for element in block.get("elements", []):
                    if element.get("action_id") == "crystal_confirm":
                        seen.add(message.ts)
                        return message, element["value"]
        time.sleep(0.01)
    raise SystemExit("no confirm message within 60 s")


def checkpoints(runs: int) -> list[int]:
    return sorted({1, *range(100, runs + 1, 100), runs})


def start_serve(root: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`serve --slack --scheduler --watch` on a free port, once it listens and campaigns."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(BIN / "crystal-runbook"), "--inventory", str(root / "inventory"), "--runbooks",
             str(REPO / "runbooks"), "serve", "--slack", "--scheduler", "--watch",
             "--host", "127.0.0.1", "--port", "0", "--flush-interval", "0"],
            cwd=root, env=env, stderr=out, stdout=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 60
    while "campaigns for" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"serve did not start:\n{log.read_text()}")
        time.sleep(0.1)
    return proc, int(log.read_text().split("127.0.0.1:")[1].split(" ")[0])


def ours(root: Path, runs: int, database_url: str | None) -> tuple[dict[int, dict[str, float]], float, dict[str, int]]:
    sb = sandbox.start(root / "cluster", ready_delay=0.02)
    sb.config.update({"burn_ramp_seconds": 1.0})
    slack = SlackServer().start()
    write_inventory(root, sb)
    sb.settle(10)
    state = root / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRYSTAL_", "KUBECONFIG", "SLACK_"))}
    env.update(
        CRYSTAL_STATE_DIR=str(state),
        HOME=str(root),
        SLACK_SIGNING_SECRET=SECRET,
        CRYSTAL_LIVE_PROGRESS="off",  # one Slack message per notice: the bench measures serve
        **slack.env(),
    )
    if database_url:
        env["CRYSTAL_DATABASE_URL"] = database_url
    log = root / "serve.log"
    proc, port = start_serve(root, env, log)
    curve: dict[int, dict[str, float]] = {}
    try:
        app = SlackAppClient(f"http://127.0.0.1:{port}", SECRET)
        seen: set[str] = set()
        marks = checkpoints(runs)
        started = time.monotonic()
        for i in range(1, runs + 1):
            user = f"U0BENCH{i % USERS:03d}"
            answer = app.command(
                f"scale maia {3 + i % 2} sandbox",
                user_id=user,
                channel_id=CHANNEL,
                response_url=slack.response_url("command"),
            )
            if answer.status != 200:
                raise SystemExit(f"command {i}: HTTP {answer.status} {answer.body}")
            message, value = confirm_of(slack, seen, time.monotonic() + 60)
            # press once the app has recorded where its message is (a person is never faster)
            until = time.monotonic() + 60
            while asked(state, database_url) < i and time.monotonic() < until:
                time.sleep(0.005)
            pressed = app.press(
                "confirm",
                value,
                user_id=user,
                user_name="bench",
                message_ts=message.ts,
                channel_id=CHANNEL,
                response_url=slack.response_url("press"),
            )
            if pressed.status != 200:
                raise SystemExit(f"press {i}: HTTP {pressed.status}")
            until = time.monotonic() + 120
            while finished_runs(state, database_url) < i:
                if time.monotonic() > until or proc.poll() is not None:
                    raise SystemExit(f"run {i} did not finish:\n{log.read_text()[-3000:]}")
                time.sleep(0.01)
            if i in marks:
                curve[i] = footprint(proc.pid)
                at = curve[i]
                print(f"  after {i:5d} runs: RSS {at['rss_mb']:6.1f} MB, fds {at['fds']:3.0f} (up to {at['fds_max']:.0f}), threads {at['threads']:3.0f} (up to {at['threads_max']:.0f})  (load {load()})", flush=True)
        elapsed = time.monotonic() - started
        app.close()
        return curve, elapsed, statuses(state, database_url)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        slack.stop()
        sb.stop()


def peer(root: Path, runs: int) -> dict[int, dict[str, float]]:
    """A bare Bolt app given the same command and button requests."""
    slack = SlackServer().start()
    port = free_port()
    script = root / "peer.py"
    script.write_text(PEER)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(port), SECRET, slack.url],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    curve: dict[int, dict[str, float]] = {}
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        app = SlackAppClient(f"http://127.0.0.1:{port}", SECRET)
        deadline = time.monotonic() + 30
        while True:  # Bolt's server listens a moment after it prints
            try:
                app.command("help", user_id="U0BENCH000", channel_id=CHANNEL)
                break
            except httpx.HTTPError:  # not listening yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        marks = checkpoints(runs)
        for i in range(1, runs + 1):
            user = f"U0BENCH{i % USERS:03d}"
            app.command(f"scale maia {3 + i % 2} sandbox", user_id=user, channel_id=CHANNEL)
            app.press("confirm", json.dumps({"n": i}), user_id=user, user_name="bench", message_ts=f"{i}.0", channel_id=CHANNEL)
            if i in marks:
                curve[i] = sample(proc.pid)
        app.close()
        return curve
    finally:
        proc.terminate()
        proc.wait(30)
        slack.stop()


def throwaway_postgres(stack: ExitStack) -> str:
    """A PostgreSQL 15 on a free port with a migrated journal database; stopped on exit."""
    sys.path.insert(0, str(REPO))
    from tests.postgres import start_postgres_server

    pg = start_postgres_server()
    stack.callback(pg.stop)
    pg.psql("CREATE DATABASE journal OWNER crystal")
    url = pg.dsn(database="journal")
    env = {**os.environ, "CRYSTAL_DATABASE_URL": url}
    subprocess.run([str(BIN / "crystal-runbook"), "db", "upgrade"], env=env, check=True, capture_output=True)
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--database-url", default=None, help="the journal in PostgreSQL (default SQLite)")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="start a throwaway PostgreSQL 15 (as the tests do) and put the journal there",
    )
    args = parser.parse_args()
    journal = "PostgreSQL" if args.postgres or args.database_url else "SQLite"
    print(f"serve endurance: {args.runs} runs (/crystal scale + Confirm) against the sandbox, journal in {journal}; load {load()}")
    with tempfile.TemporaryDirectory(prefix="crystal-bench-serve-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        (root / "ours").mkdir()
        (root / "peer").mkdir()
        url = args.database_url
        if args.postgres:
            url = throwaway_postgres(stack)
        curve, elapsed, found = ours(root / "ours", args.runs, url)
        print(f"  {args.runs} runs in {elapsed:.0f} s ({args.runs / elapsed * 60:.0f} runs/min); journal: {found}")
        print(f"peer: bare Bolt app, the same {2 * args.runs} requests; load {load()}")
        theirs = peer(root / "peer", args.runs)
    print()
    print(f"{'runs':>6} | {'serve RSS MB':>12} {'fds':>5} {'threads':>7} | {'bare Bolt RSS MB':>16}")
    for mark in sorted(curve):
        ours_at, peer_at = curve[mark], theirs.get(mark, {})
        print(f"{mark:>6} | {ours_at['rss_mb']:>12.1f} {ours_at['fds']:>5.0f} {ours_at['threads']:>7.0f} | {peer_at.get('rss_mb', float('nan')):>16.1f}")
    first = curve[min(m for m in curve if m >= min(100, args.runs))]
    last = curve[max(curve)]
    ratio = last["rss_mb"] / first["rss_mb"]
    print()
    print(f"RSS after {max(curve)} / after {min(m for m in curve if m >= min(100, args.runs))}: {ratio:.3f} (target <= 1.2)")
    print(f"fds: {first['fds']:.0f} -> {last['fds']:.0f}; threads: {first['threads']:.0f} -> {last['threads']:.0f} (target: no growth)")
    print(f"load average at the end: {load()}")
    ok = ratio <= 1.2 and last["fds"] <= first["fds"] and last["threads"] <= first["threads"]
    print("PASS" if ok else "FAIL")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
