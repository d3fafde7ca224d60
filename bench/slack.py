"""Slack app speed: acknowledgement latency under concurrent signed slash commands, and RSS.

Sends 200 signed `/crystal` commands at once, 200 concurrent requests as issue 16 asks
(each from its own user, so the per-user rate limit is not what is measured): all are
built and signed first, then sent on 200 non-blocking connections in one quick loop, and
each is timed from its connection's start to its whole answer (``burst``). With
``--clients`` below ``--commands``, that many client threads send in turn instead (the
earlier mode: ``--clients 20`` keeps at most 20 in flight) to a running `crystal-runbook serve --slack`,
and the same load to the peer: a bare Bolt app on Bolt's own development HTTP server that
only acknowledges. Rounds alternate (ours, peer, ours, ...); figures are medians over the
rounds. The commands mix what answers in the acknowledgement (`help`, `status`, `runs`)
with what hands work to the background worker (`health maia sandbox`). Target: p99 <= 100
ms here (Slack allows 3 s). Beside the latencies, the server's CPU time per command: on a
machine shared with other work the latency is mostly the wait for a core, the CPU time is
what the server itself spends. Then `serve`'s RSS after the commands.

Then the live progress message: a run with a token against the same local Slack server
(a runbook of one live announcement and ``--steps`` `wait` steps of 50 ms to 2.2 s, so
transitions come in bursts and alone), and for every step transition the journal recorded,
the delay until the Slack server received the first `chat.update` showing that state (or a
later one of the same step). Target: <= 1.2 s (updates are paced at one a second per run).
No peer tool sends Slack progress this way; the figure stands against the target.

    python bench/slack.py [--rounds 3] [--commands 200] [--clients 200] [--steps 24]
                          [--deadline 20]

The peer's server (Python's http.server, accept backlog 5) cannot take 200 connections at
once: most wait in the kernel's SYN retries (1 s, 3 s, 7 s, ...), and those still unanswered
after ``--deadline`` count as failed; its p99 is of the answered ones, and the table's note
gives the failures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import httpx
from _timing import emit

from crystal_runbook.testing.slack_requests import SlackAppClient, sign, slash_command
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


def load(base: str, *, commands: int, clients: int) -> tuple[list[float], int, int]:
    """Seconds of each acknowledgement of ``commands`` commands sent by ``clients`` threads,
    how many requests failed (connection refused or reset, non-200), and the most that were
    in flight at once. The clients connect first and start together (a barrier), so with
    ``clients`` = ``commands`` every command is in flight at the same moment."""
    latencies: list[float] = []
    failed = [0]
    flight = [0, 0]  # now, most
    lock = threading.Lock()
    per_client = commands // clients
    start = threading.Barrier(clients)

    def client(n: int) -> None:
        app = SlackAppClient(base, SECRET, client=httpx.Client(timeout=60.0))
        try:
            start.wait(60)
            for i in range(per_client):
                text = TEXTS[(n + i) % len(TEXTS)]
                with lock:
                    flight[0] += 1
                    flight[1] = max(flight)
                try:
                    answer = app.command(
                        text, user_id=f"U0BENCH{n:03d}", channel_id="C0CRYSTAL01"
                    )
                except httpx.HTTPError:
                    with lock:
                        failed[0] += 1
                    continue
                finally:
                    with lock:
                        flight[0] -= 1
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
    return latencies, failed[0], flight[1]


def request_bytes(host: str, port: int, text: str, user: str) -> bytes:
    """One signed slash command as raw HTTP/1.1 bytes (the connection closes after it)."""
    body = urlencode(slash_command(text, user_id=user, channel_id="C0CRYSTAL01")).encode()
    headers = {"Host": f"{host}:{port}", "Content-Type": "application/x-www-form-urlencoded",
               "Content-Length": str(len(body)), "Connection": "close",
               **sign(SECRET, body)}
    head = "POST /slack/events HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (head + "\r\n").encode() + body


def complete(data: bytes) -> bool:
    """The response in ``data`` is whole (its headers and Content-Length bytes of body)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False  # no length: the server's close ends it


def burst(base: str, *, commands: int, deadline: float) -> tuple[list[float], int, int]:
    """All ``commands`` slash commands in flight at once: every request is built and signed
    first, then each is sent on its own non-blocking connection in one quick loop (a few
    milliseconds for 200) and the answers are read as they come. The latency of each is
    from the start of its connection to the whole answer (a listener with a short accept
    backlog makes a connection wait: that wait is part of its latency). Returns the
    latencies of the answers, how many failed (refused, reset, not 200, or no answer within
    ``deadline`` seconds), and the most in flight at once."""
    import selectors
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(base)
    host, port = where.hostname or "127.0.0.1", int(where.port or 80)
    wires = [request_bytes(host, port, TEXTS[n % len(TEXTS)], f"U0BENCH{n:03d}")
             for n in range(commands)]
    selector = selectors.DefaultSelector()
    latencies: list[float] = []
    failed = 0
    for wire in wires:
        conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        conn.setblocking(False)
        conn.connect_ex((host, port))
        # state: the bytes left to send, what was read, when it started
        selector.register(conn, selectors.EVENT_WRITE, [wire, b"", time.perf_counter()])
    most = len(selector.get_map())
    ends = time.monotonic() + deadline
    while selector.get_map() and time.monotonic() < ends:
        for key, _ in selector.select(timeout=1.0):
            sock, state = key.fileobj, key.data
            assert isinstance(sock, socket.socket)
            done = False
            try:
                if state[0]:
                    state[0] = state[0][sock.send(state[0]):]
                    if not state[0]:
                        selector.modify(sock, selectors.EVENT_READ, state)
                    continue
                chunk = sock.recv(65536)
                state[1] += chunk
                done = not chunk or complete(state[1])
            except OSError:
                failed += 1
                selector.unregister(sock)
                sock.close()
                continue
            if done:
                took = time.perf_counter() - state[2]
                selector.unregister(sock)
                sock.close()
                if state[1].startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
                    latencies.append(took)
                else:
                    failed += 1
    for key in list(selector.get_map().values()):  # no answer within the deadline
        failed += 1
        key.fileobj.close()  # type: ignore[union-attr]  # sockets only here
    selector.close()
    return latencies, failed, most


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` and its children have used (load-independent: on a
    busy machine the latency grows with the queue for a core, this does not)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


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


LIVE_RUNBOOK = """\
apiVersion: crystal-runbook/v1
kind: Runbook
name: bench-live
params:
  service: {type: string, required: true}
steps:
  - id: announce
    uses: slack.notify
    with: {text: "bench: live progress of {{ service.name }}", live: true}
%s
"""
WAITS = (0.05, 0.4, 1.3, 0.2, 2.2, 0.7, 0.05, 0.05)
ORDER = {"pending": 0, "checking": 1, "applying": 2, "applied": 3, "verifying": 4}
MARKS = {"pending": ":white_circle:", "checking": ":hourglass_flowing_sand:",
         "applying": ":arrows_counterclockwise:", "applied": ":arrows_counterclockwise:",
         "verifying": ":mag:", "ok": ":white_check_mark:", "skipped": ":fast_forward:",
         "failed": ":x:"}


def shown(blocks: str, step: str) -> int:
    """The state order of ``step`` in a rendered update (-1: not shown)."""
    for status, mark in MARKS.items():
        if f"{mark} `{step}`" in blocks:
            return ORDER.get(status, 5)
    return -1


def live_delays(slack: SlackServer, root: Path, env: dict[str, str], steps: int) -> dict[str, float]:
    """Run the live-progress runbook with a token; seconds from each step transition to the
    first chat.update that shows it (or a later state of that step)."""
    from crystal_runbook.engine import journal

    (root / "live-runbooks").mkdir()
    waits = "\n".join(
        f"  - {{id: wait-{i:02d}, uses: wait, with: {{seconds: {WAITS[i % len(WAITS)]}s}}}}"
        for i in range(steps)
    )
    (root / "live-runbooks" / "bench-live.yaml").write_text(LIVE_RUNBOOK % waits)
    (root / "live-inventory").mkdir()
    (root / "live-inventory" / "services.yaml").write_text(
        "default_environment: sandbox\nservices:\n  bench:\n    environments:\n"
        "      sandbox: {slack_channel: '#maia-incidents'}\n"
    )
    state = root / "live-state"
    done = subprocess.run(
        [str(BIN / "crystal-runbook"), "--inventory", str(root / "live-inventory"),
         "--runbooks", str(root / "live-runbooks"), "--state-dir", str(state),
         "run", "bench-live", "-p", "service=bench", "-o", "json"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the live-progress run failed:\n{done.stdout}\n{done.stderr}")
    run_id = json.loads(done.stdout)["id"]
    opened = journal.open_journal(state)
    try:
        events = [e for e in opened.events(run_id) if e.kind == "step" and e.step_id]
    finally:
        opened.close()
    live = next(m for m in slack.posted("#maia-incidents") if m.updates)
    updates = [(u["at"], str(u["blocks"])) for u in live.updates]
    delays: list[float] = []
    missed = 0
    for event in events:
        at = journal.parse_iso(event.at).timestamp()
        order = ORDER.get(event.status, 5)
        seen = next((u for u, blocks in updates if u >= at - 0.002
                     and shown(blocks, str(event.step_id)) >= order), None)
        if seen is None:
            missed += 1
            continue
        delays.append(max(0.0, seen - at))
    return {
        "transitions": float(len(events)),
        "updates": float(len(updates)),
        "missed": float(missed),
        "p50": percentile(delays, 0.5),
        "p99": percentile(delays, 0.99),
        "max": max(delays),
    }


def loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def report_live(live: dict[str, float], load: list[str]) -> None:
    print(f"step transition to chat.update (load average {' '.join(load)} before): "
          f"{int(live['transitions'])} transitions, {int(live['updates'])} updates of one "
          f"message; delay p50 {live['p50'] * 1000:.0f} ms, p99 {live['p99'] * 1000:.0f} ms, "
          f"max {live['max'] * 1000:.0f} ms; never shown: {int(live['missed'])}")
    print(f"target <= 1.2 s: {'met' if live['max'] <= 1.2 else 'NOT met'} (the max)")
    emit("step transition to its chat.update, the longest delay", ours=[live["max"] * 1000],
         peer=None, unit="ms", note="no peer tool sends live progress; target <= 1200 ms")


@dataclass
class Acks:
    """What the acknowledgement rounds measured, per server (``ours``, ``peer``)."""

    latencies: dict[str, list[tuple[float, float]]] = field(
        default_factory=lambda: {"ours": [], "peer": []}
    )
    cpu: dict[str, list[float]] = field(default_factory=lambda: {"ours": [], "peer": []})
    failures: dict[str, int] = field(default_factory=lambda: {"ours": 0, "peer": 0})
    in_flight: dict[str, int] = field(default_factory=lambda: {"ours": 0, "peer": 0})
    start: dict[str, float] = field(default_factory=dict)
    rss_after_first: float = 0.0
    rss_end: float = 0.0
    peer_rss: float = 0.0
    load_before: list[str] = field(default_factory=list)


def report_acks(args: argparse.Namespace, acks: Acks) -> None:
    print(f"load average: {' '.join(acks.load_before)} before, {' '.join(loadavg())} after "
          "(2 cores shared)")
    print(f"{args.commands} signed slash commands from {min(args.clients, args.commands)} "
          "concurrent clients, "
          f"{args.rounds} alternating rounds, medians of the rounds:")
    print(f"{'':34} {'p50':>9} {'p99':>9}  CPU/command  start-up  failed  most in flight")
    for name, label in (
        ("ours", "crystal-runbook serve --slack"),
        ("peer", "bare Bolt app (Bolt's dev server)"),
    ):
        p50 = statistics.median(r[0] for r in acks.latencies[name]) * 1000
        p99 = statistics.median(r[1] for r in acks.latencies[name]) * 1000
        per = statistics.median(acks.cpu[name]) * 1000
        print(f"{label:34} {p50:7.1f}ms {p99:7.1f}ms  {per:8.2f}ms   {acks.start[name]:5.2f} s   "
              f"{acks.failures[name]:6d}  {acks.in_flight[name]}")
    ours_p99 = statistics.median(r[1] for r in acks.latencies["ours"]) * 1000
    sent = (f"{args.commands} commands at once" if args.clients >= args.commands
            else f"{args.commands} commands, {args.clients} concurrent clients")
    emit(f"slash-command acknowledgement p99 ({sent}, p99 of the answered)",
         note=f"at most {acks.in_flight['ours']} in flight at once (peer "
              f"{acks.in_flight['peer']}); failed requests: ours {acks.failures['ours']}, "
              f"peer {acks.failures['peer']}",
         ours=[r[1] * 1000 for r in acks.latencies["ours"]],
         peer=[r[1] * 1000 for r in acks.latencies["peer"]], unit="ms",
         peer_name="bare Bolt app, acknowledgement only")
    emit("serve CPU time per slash command", ours=[c * 1000 for c in acks.cpu["ours"]],
         peer=[c * 1000 for c in acks.cpu["peer"]], unit="ms",
         peer_name="bare Bolt app, acknowledgement only")
    print(f"target p99 <= 100 ms: {'met' if ours_p99 <= 100 else 'NOT met'}")
    print(f"serve RSS after the first {args.commands}: {acks.rss_after_first:.1f} MB; after all "
          f"{args.rounds * args.commands}: {acks.rss_end:.1f} MB (bare Bolt app: "
          f"{acks.peer_rss:.1f} MB)")


def measure_acks(args: argparse.Namespace, slack: SlackServer, root: Path,
                 env: dict[str, str]) -> Acks:
    """Start `serve --slack` and the peer, send the rounds of commands, stop both."""
    acks = Acks()
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
    acks.start["ours"] = time.perf_counter() - started
    ours_base = "http://127.0.0.1:" + line.split("127.0.0.1:")[1].split(" ")[0]
    peer_port = free_port()
    started = time.perf_counter()
    with peer_log.open("w") as out:
        peer = subprocess.Popen(
            [sys.executable, "-c", PEER, str(peer_port), SECRET, slack.url],
            env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
        )
    wait_listening(peer, peer_log)
    acks.start["peer"] = time.perf_counter() - started
    pids = {"ours": ours.pid, "peer": peer.pid}
    acks.load_before = loadavg()
    try:
        for round_ in range(args.rounds):
            for name, base in (("ours", ours_base), ("peer", f"http://127.0.0.1:{peer_port}")):
                used = cpu_seconds(pids[name])
                if args.clients >= args.commands:
                    times, failed, most = burst(base, commands=args.commands,
                                                deadline=args.deadline)
                else:
                    times, failed, most = load(base, commands=args.commands,
                                               clients=args.clients)
                acks.cpu[name].append((cpu_seconds(pids[name]) - used) / args.commands)
                acks.failures[name] += failed
                acks.in_flight[name] = max(acks.in_flight[name], most)
                acks.latencies[name].append((percentile(times, 0.5), percentile(times, 0.99)))
                if name == "ours" and round_ == 0:
                    acks.rss_after_first = rss_mb(ours.pid)
        acks.rss_end = rss_mb(ours.pid)
        acks.peer_rss = rss_mb(peer.pid)
    finally:
        for proc in (ours, peer):
            proc.terminate()
            proc.wait(60)
    return acks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--deadline", type=float, default=20.0,
                        help="seconds a burst waits for its answers; the rest count as failed")
    args = parser.parse_args()
    with SlackServer() as slack, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CRYSTAL_", "SLACK_"))}
        env.update(slack.env(), SLACK_SIGNING_SECRET=SECRET, CRYSTAL_STATE_DIR=str(root / "state"))
        acks = measure_acks(args, slack, root, env)
        live_load = loadavg()
        live = live_delays(slack, root, env, args.steps)
        report_acks(args, acks)
        report_live(live, live_load)


if __name__ == "__main__":
    main()
