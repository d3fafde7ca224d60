"""Rollbacks while Slack answers 429, 500 or does not answer in time (issue 16, item 1).

One sandbox and one local Slack server (``testing.slack_server``: Slack's wire format over
real HTTP, recording every call); rounds alternate between Slack up and each fault:

- ``429``: the first two calls of each posting method are rate-limited (Retry-After 1 s);
- ``500``: the first three calls of each posting method answer 500;
- ``timeout``: the first message and the first update take effect, then the answer comes
  only after the client's 10 s request timeout.

Each round ships a release, runs `crystal-runbook rollback maia` (the console script), then
Slack recovers and `outbox flush` delivers what was kept. Every round must end with the run
``ok`` on the intended revision; each of the run's notices (the announcement, the outcome,
the incident document and its file) on Slack exactly once and in the run's order; the live
progress message at its final state; nothing left in the outbox. The rollback's wall time to
its verified recovery (run start to the end of ``healthy``), the fastest of the rounds per
mode (a loaded machine only ever adds time), may exceed Slack-up's by 10 % plus the
announcement's inline budget (``notify.background.INLINE_SECONDS``: a notification step
waits for Slack at most that long, by design) plus one second of scheduling noise on two
shared cores; the measured ratio is printed in the chaos figures.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from crystal_runbook.engine import journal
from crystal_runbook.notify import outbox as outbox_mod
from crystal_runbook.notify.background import INLINE_SECONDS
from crystal_runbook.testing.slack_server import Message, SlackServer
from tests.chaos import figures
from tests.chaos import rig as rigs

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(900)]

CHANNEL = "C0CRYSTAL01"
POSTING = ("chat.postMessage", "chat.update", "chat.getPermalink")
ROUNDS = 2
SLOW = 12.0
"""Seconds a slow answer takes: past the client's 10 s request timeout."""
NOISE = 1.0
"""Seconds of scheduling noise allowed on two cores shared with other test runs."""


def slack_429(slack: SlackServer) -> int:
    for method in POSTING:
        slack.fail(method, status=429, retry_after=1, times=2)
    return 2 * len(POSTING)


def slack_500(slack: SlackServer) -> int:
    for method in POSTING:
        slack.fail(method, status=500, times=3)
    return 3 * len(POSTING)


def slack_timeout(slack: SlackServer) -> int:
    slack.slow("chat.postMessage", SLOW, times=1)
    slack.slow("chat.update", SLOW, times=1)
    return 2


MODES: dict[str, Callable[[SlackServer], int] | None] = {
    "up": None,
    "429": slack_429,
    "500": slack_500,
    "timeout": slack_timeout,
}


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[rigs.Rig, SlackServer]]:
    root = tmp_path_factory.mktemp("slack-faults")
    with rigs.rig(root, channel="#maia-incidents") as rig, SlackServer() as slack:
        yield rig, slack


def of_run(slack: SlackServer, run_id: str) -> list[Message]:
    """The run's messages in the channel (top level and threads), in Slack's order."""
    return sorted(
        (m for m in slack.posted(CHANNEL) if run_id in m.text or _in_thread_of(slack, m, run_id)),
        key=lambda m: float(m.ts),
    )


def _in_thread_of(slack: SlackServer, message: Message, run_id: str) -> bool:
    """A file share (no text of its own) in the thread of a message of the run."""
    if message.text or not message.files or message.thread_ts is None:
        return False
    parent = next((m for m in slack.posted(CHANNEL) if m.ts == message.thread_ts), None)
    return parent is not None and run_id in parent.text


def recovered_seconds(run: dict[str, Any]) -> float:
    started = journal.parse_iso(run["started_at"])
    healthy = next(s for s in run["steps"] if s["id"] == "healthy")
    return (journal.parse_iso(healthy["ended_at"]) - started).total_seconds()


def check_notices(slack: SlackServer, run_id: str) -> None:
    """Announcement, outcome, incident document and its file: each once, in that order."""
    messages = of_run(slack, run_id)
    kinds = []
    for m in messages:
        if m.text.startswith(":rewind: Rollback of"):
            kinds.append("announce")
        elif m.text.startswith(":white_check_mark: Rollback of"):
            kinds.append("outcome")
        elif m.text.startswith("Incident document for run"):
            kinds.append("document")
        elif m.files:
            kinds.append("file")
        else:
            kinds.append(f"unexpected: {m.text[:80]!r}")
    assert kinds == ["announce", "outcome", "document", "file"], kinds
    announce = messages[0]
    assert announce.updates, "the live progress message was never updated"
    assert "*Done* in" in announce.updates[-1]["text"], announce.updates[-1]["text"]
    states = [str(u["blocks"]) for u in announce.updates]
    assert len(states) == len(set(states)), "an update landed twice"


def test_rollback_while_slack_fails(stage: tuple[rigs.Rig, SlackServer]) -> None:
    """429, 500 and timeouts from Slack: the rollback is as fast, every notice lands once,
    in order, after recovery, and the outbox ends empty."""
    rig, slack = stage
    timings: dict[str, list[float]] = {mode: [] for mode in MODES}
    for round_ in range(ROUNDS):
        for mode, inject in MODES.items():
            good = rigs.image(rig.deployment())
            rig.release(f"registry.local/maia:1.6.{round_}-{mode}")
            expected = rigs.revision(rig.deployment()) + 1
            calls_before = len(slack.calls())
            armed = inject(slack) if inject else 0
            done = rig.cli("rollback", "maia", "-o", "json", **slack.env())
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
            assert "Traceback" not in done.stderr
            run = json.loads(done.stdout)
            assert run["status"] == "ok"
            deployment = rig.deployment()
            assert rigs.revision(deployment) == expected
            assert rigs.image(deployment) == good
            timings[mode].append(recovered_seconds(run))

            slack.clear_faults()  # Slack recovers
            flushed = rig.cli("outbox", "flush", **slack.env())
            assert flushed.returncode == 0, flushed.stderr[-3000:]
            waiting, _ = outbox_mod.Outbox.of(rig.state).waiting()
            assert waiting == [], [e.key for e in waiting]
            check_notices(slack, run["id"])
            assert rigs.held_locks(rig.state) == []
            assert rig.leases() == []

            calls = slack.calls()[calls_before:]
            if mode in {"429", "500"}:
                # armed faults a run never reached (a permalink not asked) are cleared above
                answered = sum(1 for c in calls if c.status == int(mode))
                assert 0 < answered <= armed, (mode, [(c.method, c.status) for c in calls])
                figures.add(f"slack faults injected: {mode} answers", answered)
            elif mode == "timeout":
                assert {c.method for c in calls} >= {"chat.postMessage", "chat.update"}
                figures.add("slack faults injected: answers past the 10 s timeout", armed)
            figures.add("slack: rollbacks with Slack failing or up", 1)

    up = min(timings["up"])
    for mode in ("429", "500", "timeout"):
        fastest = min(timings[mode])
        figures.note(
            f"slack {mode}: recovered in {fastest:.2f} s vs {up:.2f} s with Slack up "
            f"(ratio {fastest / up:.2f}; rounds {timings[mode]} vs {timings['up']})"
        )
        assert fastest <= up * 1.10 + INLINE_SECONDS + NOISE, timings
