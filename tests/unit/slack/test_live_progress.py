"""The live progress message: the run's state from its events, paced and parked, never blocking."""

from __future__ import annotations

import itertools
import threading
import time

from crystal_runbook.engine import journal
from crystal_runbook.engine.events import Event
from crystal_runbook.notify import progress
from crystal_runbook.notify.live import LiveProgress
from crystal_runbook.notify.slackerrors import SlackRefused, SlackUnavailable
from crystal_runbook.testing.live import RecordingChannel

STEPS = [
    ("announce", "slack.notify", "Tell the channel"),
    ("undo", "k8s.rollout_undo", "Roll back"),
    ("healthy", "http.health", None),
]
T0 = 1_700_000_000.0


def iso(offset: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(T0 + offset)) + (
        f".{round((offset % 1) * 1000):03d}Z"
    )


def run_event(status: str, at: float = 0.0, message: str = "") -> Event:
    return Event("run", "r1", status, message or f"run {status}", iso(at))


def step_event(step: str, status: str, at: float, message: str = "", **data: object) -> Event:
    uses = next((u for s, u, _n in STEPS if s == step), "wait")
    return Event(
        "step", "r1", status, message or status, iso(at), step_id=step, uses=uses, data=data
    )


def fresh() -> progress.RunProgress:
    return progress.RunProgress.of("Rollback of *maia* in *sandbox*", STEPS)


def wait_until(check, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.01)
    raise AssertionError("timed out")


class TestTheRunsState:
    def test_steps_fold_into_states_with_times_and_attempts(self) -> None:
        """Each step shows its state, elapsed time and attempts; the run its state."""
        state = fresh()
        state.apply(run_event("running", 0))
        state.apply(step_event("announce", "ok", 0.3, started_at=iso(0.0), attempts=1))
        state.apply(step_event("undo", "verifying", 2.0, "waiting for the rollout", started_at=iso(0.4), attempts=2))
        snap = state.snapshot()
        assert [s.status for s in snap.steps] == ["ok", "verifying", "pending"]
        text, blocks = progress.render(snap, T0 + 5.0)
        body = str(blocks)
        assert ":white_check_mark: `announce` Tell the channel · ok · 300ms" in body
        assert ":mag: `undo` Roll back · verifying · 4.6s · attempt 2 — waiting for the rollout" in body
        assert ":white_circle: `healthy`" in body
        assert "*Running* · 5.0s elapsed · step `undo` verifying · run `r1`" in text
        assert text.startswith("Rollback of *maia* in *sandbox*")

    def test_the_final_state_says_how_it_ended(self) -> None:
        """ok shows the duration; a failure names the error; on_failure steps are listed apart."""
        state = fresh()
        state.apply(run_event("running", 0))
        state.apply(step_event("undo", "failed", 3.0, "rollout stuck", started_at=iso(1.0)))
        state.apply(Event("step", "r1", "ok", "posted", iso(3.5), step_id="notify-failure",
                          uses="slack.notify", phase="on_failure"))
        state.apply(run_event("failed", 4.0, "run r1 failed: step 'undo' failed: rollout stuck"))
        snap = state.snapshot()
        assert snap.final
        text, blocks = progress.render(snap, T0 + 60)
        assert ":x: *FAILED* after 4.0s · run `r1`: run r1 failed: step 'undo' failed" in text
        assert "_On failure:_" in str(blocks)
        assert [f.id for f in state.take_failures()] == ["undo"]
        assert state.take_failures() == []  # each failure is taken once

    def test_an_event_that_changes_nothing_keeps_the_version(self) -> None:
        """The same state twice is one version: nothing new to send."""
        state = fresh()
        assert state.apply(run_event("running", 0))
        assert state.apply(step_event("undo", "applying", 1.0, "patching", started_at=iso(1.0)))
        version = state.version
        assert not state.apply(step_event("undo", "applying", 1.0, "patching", started_at=iso(1.0)))
        assert state.version == version

    def test_a_resumed_run_starts_from_what_the_journal_kept(self) -> None:
        """Steps finished before the interruption keep their state and times; the rest wait."""
        state = fresh()
        state.seed([
            journal.StepRecord("r1", "main", 0, "announce", "slack.notify", status="ok",
                               attempts=1, started_at=iso(0), ended_at=iso(0.4)),
            journal.StepRecord("r1", "main", 1, "undo", "k8s.rollout_undo", status="interrupted",
                               attempts=1, started_at=iso(1), ended_at=iso(5),
                               error="interrupted by a signal"),
        ])
        state.apply(run_event("resumed", 60))
        body = str(progress.render(state.snapshot(), T0 + 61)[1])
        assert ":white_check_mark: `announce` Tell the channel · ok · 400ms" in body
        assert ":pause_button: `undo` Roll back · interrupted · 4.0s — interrupted by a signal" in body
        assert ":white_circle: `healthy`" in body
        assert state.snapshot().status == "running"

    def test_a_long_run_is_cut_to_slacks_limits(self) -> None:
        """Many steps and long notes stay within 3000 characters a block and 50 blocks."""
        state = progress.RunProgress.of("T" * 5000, [(f"s{i}", "wait", "n" * 200) for i in range(400)])
        state.apply(run_event("running", 0))
        _text, blocks = progress.render(state.snapshot(), T0 + 1)
        assert len(blocks) <= 50
        assert all(len(b["text"]["text"]) <= 3000 for b in blocks if b["type"] == "section")


def live(channel: RecordingChannel, **kw: float) -> tuple[progress.RunProgress, LiveProgress]:
    state = fresh()
    return state, LiveProgress(state, channel, interval=kw.get("interval", 0.2),
                               heartbeat=kw.get("heartbeat", 60.0),
                               close_seconds=kw.get("close_seconds", 3.0))


def drive(sink: LiveProgress, *, ok: bool = True) -> None:
    sink(run_event("running", 0))
    for i, (step, _uses, _name) in enumerate(STEPS):
        sink(step_event(step, "checking", i, started_at=iso(i)))
        sink(step_event(step, "applying", i + 0.1, started_at=iso(i)))
        sink(step_event(step, "ok" if ok or step != "healthy" else "failed", i + 0.2,
                        "health says 503" if not ok else "", started_at=iso(i)))
    sink(run_event("ok" if ok else "failed", 3.0, "" if ok else "run r1 failed: healthy"))


class TestPacing:
    def test_at_most_one_update_per_interval_the_latest_state_and_the_final_one(self) -> None:
        """A burst of events is sent as few updates, a second (here 0.2 s) apart, ending final."""
        channel = RecordingChannel()
        _state, sink = live(channel)
        drive(sink)
        sink.close()
        updates = channel.delivered()
        assert 1 <= len(updates) <= 3, [u.text for u in updates]
        gaps = [b.at - a.at for a, b in itertools.pairwise(updates)]
        assert all(g >= 0.19 for g in gaps), gaps
        assert "*Done* in 3.0s" in updates[-1].text
        assert channel.of("park") == []

    def test_updates_arrive_in_order_and_none_twice(self) -> None:
        """States sent while events keep coming only move forward and never repeat."""
        channel = RecordingChannel()
        _state, sink = live(channel, interval=0.05)
        sink(run_event("running", 0))
        for i in range(40):
            sink(step_event("undo", "verifying", 1 + i * 0.01, f"attempt {i}", started_at=iso(1), attempts=i + 1))
            time.sleep(0.01)
        sink(run_event("ok", 3.0))
        sink.close()
        texts = [str(u.blocks) for u in channel.delivered()]
        assert len(texts) == len(set(texts))
        attempts = [int(t.split("attempt ")[1].split(" ")[0].rstrip("'}]")) for t in texts if "attempt " in t]
        assert attempts == sorted(attempts)
        assert "*Done*" in channel.delivered()[-1].text

    def test_the_run_never_waits_for_slack(self) -> None:
        """A Slack call that hangs does not slow the events: the sink returns at once."""
        channel = RecordingChannel()
        gate = threading.Event()
        original = channel.update

        def slow(*args, **kw):  # type: ignore[no-untyped-def]
            gate.wait(2)
            original(*args, **kw)

        channel.update = slow  # type: ignore[method-assign]
        _state, sink = live(channel, close_seconds=0.2)
        started = time.perf_counter()
        drive(sink)
        assert time.perf_counter() - started < 0.1
        sink.close()
        gate.set()

    def test_a_run_that_never_started_shows_nothing(self) -> None:
        """A refused run (no `running` event) posts and parks nothing."""
        channel = RecordingChannel()
        _state, sink = live(channel)
        sink(step_event("undo", "refused", 0.0, "already on revision 1"))
        sink(run_event("refused", 0.1))
        sink.close()
        assert channel.calls == []


class TestSlackFailing:
    def test_429_then_200_delivers_every_state_once_in_order(self) -> None:
        """A rate-limited update waits for Retry-After, then sends the latest state; the
        parked copy is dropped once it lands."""
        channel = RecordingChannel()
        channel.fail_with(SlackUnavailable("Slack is rate-limiting us", retry_after=0.3))
        _state, sink = live(channel)
        sink(run_event("running", 0))
        wait_until(lambda: channel.of("park"))
        drive(sink)
        sink.close()
        attempts = channel.of("update")
        assert attempts[0].error is not None
        assert attempts[1].at - attempts[0].at >= 0.29
        delivered = [str(u.blocks) for u in channel.delivered()]
        assert len(delivered) == len(set(delivered))
        assert "*Done*" in channel.delivered()[-1].text
        assert channel.parked is None  # superseded by what landed
        assert [c.method for c in channel.calls if c.method in ("park", "unpark")] == ["park", "unpark"]

    def test_slack_down_for_the_whole_run_parks_the_latest_state_without_waiting(self) -> None:
        """Every update fails: the final state is parked; close does not wait for Slack."""
        channel = RecordingChannel()
        channel.fail_with(*[SlackUnavailable("cannot reach the Slack Web API") for _ in range(50)])
        _state, sink = live(channel, close_seconds=5.0)
        drive(sink, ok=False)
        wait_until(lambda: channel.of("update"))
        started = time.perf_counter()
        sink.close()
        assert time.perf_counter() - started < 0.5
        assert channel.parked is not None
        assert "*FAILED*" in channel.parked.text
        assert ":x: `healthy`" in str(channel.parked.blocks)
        replies = channel.of("reply")
        assert [r.name for r in replies] == ["failed-main-healthy", "result"]
        assert not any(r.try_now for r in replies)  # queued in the outbox, not tried

    def test_a_refusal_stops_live_delivery_and_the_end_is_parked(self) -> None:
        """Slack refusing for good (a revoked token) is not retried; the final state is parked."""
        channel = RecordingChannel()
        channel.fail_with(SlackRefused("Slack refused the bot token", code="token_revoked"))
        _state, sink = live(channel)
        sink(run_event("running", 0))
        wait_until(lambda: channel.of("park"))
        drive(sink)
        sink.close()
        assert len(channel.of("update")) == 1
        assert channel.parked is not None
        assert "*Done*" in channel.parked.text

    def test_an_announcement_not_on_slack_yet_is_waited_for(self) -> None:
        """The runbook's announcement is updated only once it is there."""
        channel = RecordingChannel(owns=False, title=":rewind: Rollback of maia started")
        channel.absent = True
        _state, sink = live(channel)
        sink(run_event("running", 0))
        wait_until(lambda: len(channel.of("locate")) >= 2)
        assert channel.of("update") == []
        channel.absent = False
        drive(sink)
        sink.close()
        assert channel.delivered()[-1].text.startswith(":rewind: Rollback of maia started")
        assert channel.of("reply") == []  # the runbook says its own outcome in the thread


class TestTheThreadOfOurOwnMessage:
    def test_step_failures_and_the_result_go_into_the_thread(self) -> None:
        """Our own message's thread hears each failed step once, then the result."""
        channel = RecordingChannel(owns=True)
        _state, sink = live(channel)
        drive(sink, ok=False)
        sink.close()
        replies = channel.of("reply")
        assert [r.name for r in replies] == ["failed-main-healthy", "result"]
        assert "Step `healthy` failed after 1 attempt(s): health says 503" in replies[0].text
        assert "*FAILED*" in replies[1].text
        assert all(r.try_now for r in replies)
        assert replies[0].at >= channel.delivered()[0].at



def test_a_step_note_is_escaped_on_its_way_to_slack() -> None:
    """A note (a summary as a person reads it) is escaped in the message: `<!channel>` pages nobody."""
    from crystal_runbook.notify import progress as progress_mod

    step = progress_mod.StepState(
        id="announce", uses="slack.notify", status="applying", note="post: <!channel> a<b & c"
    )
    line = progress_mod.step_line(step, now=0.0)
    assert line.endswith(" — post: &lt;!channel&gt; a&lt;b &amp; c"), line
