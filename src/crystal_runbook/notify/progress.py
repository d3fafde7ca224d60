"""The live state of one run, built from its engine events, as the text of one Slack message.

Why: a run started from Slack, or any run whose service has a Slack channel, keeps one
message up to date with each step's state and time (issue 11 item 3). This module is the
pure part of that: ``RunProgress`` folds the executor's events into the run's state (which
step, in which state, since when, how many attempts), and ``render`` turns a snapshot of it
into the message (mrkdwn text and Block Kit blocks). It sends nothing; ``notify.live`` paces
and delivers what this renders.

Times come from the events themselves (ISO timestamps), so a resumed run shows the steps'
real durations; ``render`` takes "now" for what is still running.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from crystal_runbook.engine import durations, journal, templating
from crystal_runbook.engine.events import Event

ENDED = frozenset({"ok", "skipped", "failed", "interrupted", "refused"})
"""Step states after which a step does not change any more (in this run of it)."""
RUN_ENDED = frozenset({"ok", "failed", "interrupted", "refused"})
MARKS = {
    "pending": ":white_circle:",
    "checking": ":hourglass_flowing_sand:",
    "applying": ":arrows_counterclockwise:",
    "applied": ":arrows_counterclockwise:",
    "verifying": ":mag:",
    "ok": ":white_check_mark:",
    "skipped": ":fast_forward:",
    "failed": ":x:",
    "interrupted": ":pause_button:",
    "refused": ":no_entry:",
}
RUN_WORDS = {
    "running": "Running",
    "ok": "Done",
    "failed": "FAILED",
    "interrupted": "Interrupted",
    "refused": "Refused",
}
NOTE_CHARS = 160
"""Characters of a step's latest message shown beside it (the thread has the rest)."""
TEXT_CHARS = 2900
"""A section's text stays under Slack's 3000 characters."""


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _clip(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class StepState:
    """One step as the message shows it."""

    id: str
    uses: str
    name: str | None = None
    phase: str = "main"
    status: str = "pending"
    attempts: int = 0
    started: float | None = None
    """Epoch seconds the step started (None: not yet)."""
    ended: float | None = None
    note: str = ""
    """The step's latest message (its summary, or its error once failed)."""


@dataclass(frozen=True)
class Snapshot:
    """The run's state at one moment; ``version`` grows with every change."""

    run_id: str
    title: str
    status: str
    started: float | None
    ended: float | None
    steps: tuple[StepState, ...]
    version: int
    error: str | None = None

    @property
    def final(self) -> bool:
        return self.status in RUN_ENDED


@dataclass
class RunProgress:
    """A run's live state, folded from its events (thread-safe)."""

    title: str
    """What the message is about: the announcement's text, or "Run X of rollback…"."""
    steps: list[StepState] = field(default_factory=list)
    run_id: str = ""
    status: str = "pending"
    """pending (no run event yet), running, ok, failed, interrupted, refused."""
    started: float | None = None
    ended: float | None = None
    error: str | None = None
    version: int = 0
    failures: list[StepState] = field(default_factory=list)
    """Steps that failed, in order (for the thread of a message of our own)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def of(cls, title: str, steps: Sequence[tuple[str, str, str | None]]) -> RunProgress:
        """A run about to start, with its main steps as ``(id, uses, name)``."""
        return cls(title=title, steps=[StepState(i, u, n) for i, u, n in steps])

    def seed(self, records: Sequence[journal.StepRecord]) -> None:
        """A resumed run: its steps as the journal left them (finished ones keep their
        state and times; the rest start again)."""
        with self._lock:
            by_id = {(r.id, r.phase): r for r in records}
            for i, step in enumerate(self.steps):
                rec = by_id.get((step.id, step.phase))
                if rec is None or rec.status == "pending":
                    continue
                self.steps[i] = replace(
                    step,
                    status=rec.status,
                    attempts=rec.attempts,
                    started=_epoch(rec.started_at),
                    ended=_epoch(rec.ended_at),
                    note=_clip(rec.error or rec.summary or "", NOTE_CHARS),
                )
            self.version += 1

    def apply(self, event: Event) -> bool:
        """Fold one event in; True when the message would change."""
        with self._lock:
            changed = self._apply(event)
            if changed:
                self.version += 1
            return changed

    def _apply(self, event: Event) -> bool:
        if event.kind == "run":
            return self._run(event)
        if event.kind not in ("step", "progress") or not event.step_id:
            return False
        index = next(
            (
                i
                for i, s in enumerate(self.steps)
                if s.id == event.step_id and s.phase == event.phase
            ),
            None,
        )
        if index is None:
            self.steps.append(
                StepState(event.step_id, event.uses or "", phase=event.phase or "main")
            )
            index = len(self.steps) - 1
        old = self.steps[index]
        note = _clip(event.message, NOTE_CHARS) if event.message else old.note
        if event.kind == "progress":
            new = replace(old, note=note)
        else:
            data: dict[str, Any] = dict(event.data or {})
            started = _epoch(data.get("started_at")) or old.started or _epoch(event.at)
            attempts = int(data.get("attempts") or old.attempts or 0)
            ended = _epoch(event.at) if event.status in ENDED else None
            new = replace(
                old, status=event.status, attempts=attempts, started=started, ended=ended, note=note
            )
            if event.status == "failed" and old.status != "failed":
                self.failures.append(new)
        if new == old:
            return False
        self.steps[index] = new
        return True

    def _run(self, event: Event) -> bool:
        self.run_id = event.run_id or self.run_id
        if event.status in ("running", "resumed"):
            status = "running"
            if self.started is None or event.status == "running":
                self.started = _epoch(event.at)
            self.ended = None
        elif event.status in RUN_ENDED:
            status = event.status
            self.ended = _epoch(event.at)
            if status != "ok":
                self.error = _clip(event.message, 500)
        else:
            return False
        if status == self.status and event.status != "resumed":
            return False
        self.status = status
        return True

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                run_id=self.run_id,
                title=self.title,
                status=self.status,
                started=self.started,
                ended=self.ended,
                steps=tuple(self.steps),
                version=self.version,
                error=self.error,
            )

    def take_failures(self) -> list[StepState]:
        """Failed steps not taken yet (each is said once in the thread)."""
        with self._lock:
            found, self.failures = self.failures, []
            return found


# -- the message ------------------------------------------------------------------------------


def _elapsed(start: float | None, end: float | None, now: float) -> str:
    if start is None:
        return ""
    return durations.format_duration(max(0.0, (end if end is not None else now) - start))


def step_line(step: StepState, now: float) -> str:
    """``:white_check_mark: `undo` Roll back… · 4.1s`` (with attempts and note if any)."""
    mark = MARKS.get(step.status, ":grey_question:")
    name = f" {_clip(step.name, 80)}" if step.name else ""
    parts = [f"{mark} `{step.id}`{name}"]
    if step.status != "pending":
        parts.append(step.status)
    took = _elapsed(step.started, step.ended, now)
    if took and step.status not in ("pending", "skipped"):
        parts.append(took)
    if step.attempts > 1:
        parts.append(f"attempt {step.attempts}")
    line = " · ".join(parts)
    if step.note and step.status not in ("pending", "ok", "skipped"):
        # a note is plain text (a step's summary or error): escaped on its way to Slack
        line += f" — {templating.slack_escape(_clip(step.note, NOTE_CHARS))}"
    return line


def status_line(snap: Snapshot, now: float) -> str:
    """``*Running* · 12s elapsed`` / ``*Done* in 1m05s`` / ``*FAILED* after 40s: …``."""
    word = RUN_WORDS.get(snap.status, snap.status)
    took = _elapsed(snap.started, snap.ended, now) or "0ms"
    run = f" · run `{snap.run_id}`" if snap.run_id else ""
    if snap.status in ("running", "pending"):
        current = next((s for s in snap.steps if s.status not in ("pending", *ENDED)), None)
        at = f" · step `{current.id}` {current.status}" if current else ""
        return f"*{word}* · {took} elapsed{at}{run}"
    if snap.status == "ok":
        return f":white_check_mark: *{word}* in {took}{run}"
    error = f": {_clip(snap.error, 300)}" if snap.error else ""
    mark = MARKS.get(snap.status, ":x:")
    return f"{mark} *{word}* after {took}{run}{error}"


def render(
    snap: Snapshot, now: float, *, title: str | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """The message for ``snap``: (notification text, Block Kit blocks).

    The text is the title (``title``, else the snapshot's) and the run's state (what
    notifications and search show); the blocks are the title, every step with its state
    and time, and the run's state.
    """
    heading = title or snap.title
    status = status_line(snap, now)
    main = [step_line(s, now) for s in snap.steps if s.phase == "main"]
    after = [step_line(s, now) for s in snap.steps if s.phase != "main"]
    if after:
        main += ["_On failure:_", *after]
    blocks: list[dict[str, Any]] = [_section(_clip_block(heading))]
    chunk: list[str] = []
    for line in main:
        if chunk and sum(len(x) + 1 for x in chunk) + len(line) > TEXT_CHARS:
            blocks.append(_section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    if chunk:
        blocks.append(_section("\n".join(chunk)))
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": status}]})
    text = f"{_clip(heading, 300)}\n{status}"
    return text, blocks[:50]


def _clip_block(text: str) -> str:
    return text if len(text) <= TEXT_CHARS else text[: TEXT_CHARS - 1] + "…"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text or " "}}
