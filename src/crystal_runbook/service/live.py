"""Which runs have a live progress message, and where it is (issue 11 item 3).

A run keeps one Slack message up to date with its steps when a bot token is set and it
has somewhere to say it: its service's `slack_channel` in this environment, or, for a run
started from Slack, the channel the command came from. The message is the runbook's
announcement when a `slack.notify` step says ``live: true`` (the shipped rollback and
drill), else one of our own. `CRYSTAL_LIVE_PROGRESS=off` turns it off (the runbook's
own messages stay as they are). ``watching`` wraps a run (start, resume) with that sink and,
after it, waits for its final state (``notify.live.LiveProgress.close``: bounded, and not
at all while Slack is down).

The decisions live here, the delivery in ``notify.live`` and ``notify.livechannel``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from crystal_runbook.engine import executor as executor_mod
from crystal_runbook.engine import journal as journal_mod
from crystal_runbook.engine.events import Sink
from crystal_runbook.service.workspace import Workspace

if TYPE_CHECKING:
    from crystal_runbook.notify import live

SWITCH_ENV = "CRYSTAL_LIVE_PROGRESS"
"""`off` (or 0, false, no): no live progress message; anything else, or unset: on."""


def enabled() -> bool:
    """Whether runs keep a live progress message (`CRYSTAL_LIVE_PROGRESS`, default on)."""
    return os.environ.get(SWITCH_ENV, "").strip().lower() not in ("off", "0", "false", "no")


def announcement(req: executor_mod.Request) -> tuple[str, str | None] | None:
    """(step id, its own channel) of the runbook's live announcement, if it has one: the
    first main `slack.notify` step with ``live: true``."""
    for step in req.loaded.runbook.steps:
        if step.uses == "slack.notify" and step.with_.get("live") is True:
            channel = step.with_.get("channel")
            return step.id, str(channel) if isinstance(channel, str) and channel else None
    return None


def slack_origin(meta: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``slack`` metadata of a run started from Slack (channel, ts of the confirm)."""
    found = meta.get("slack")
    return found if isinstance(found, Mapping) else {}


def heading(req: executor_mod.Request, *, resumed_by: str | None = None) -> str:
    """Our own message's text: what runs, where, by whom, why."""
    what = f"`{req.loaded.runbook.name}`"
    if req.service:
        what += f" of *{req.service}*"
    who = f"resumed by {resumed_by}" if resumed_by else f"started by {req.actor}"
    reason = str(req.params.get("reason") or "").strip()
    mark = ":rotating_light: DRILL:" if req.drill else ":arrow_forward:"
    return f"{mark} {what} in *{req.env}* {who}" + (f": {reason}" if reason else "")


def tracker(
    ws: Workspace, req: executor_mod.Request, *, resumed: journal_mod.RunRecord | None = None
) -> live.LiveProgress | None:
    """The live progress sink of this run, or None when it has none (no token, or nowhere
    to say it)."""
    if not enabled():
        return None
    notifier = ws.notifier
    if not notifier.settings.configured:
        return None
    from crystal_runbook.notify import live, livechannel, progress  # only with a token

    service_channel = req.target.get("slack_channel") or None
    found = announcement(req)
    step: str | None = None
    where = service_channel or slack_origin(req.meta).get("channel")
    if found is not None and (found[1] or service_channel):
        step, where = found[0], found[1] or service_channel  # where that step sends it
    if not where:
        return None
    text = heading(req, resumed_by=req.actor if resumed is not None else None)
    names = [(s.id, s.uses, s.name) for s in req.loaded.runbook.steps]
    state = progress.RunProgress.of(text, names)
    if resumed is not None:
        state.seed(resumed.steps)
    channel = livechannel.SlackLiveChannel(
        notifier=notifier,
        channel=str(where),
        heading=text,
        announcement=step,
        origin={"env": req.env, "service": req.service, "actor": req.actor},
    )
    return live.LiveProgress(state, channel)


@contextmanager
def watching(
    ws: Workspace, req: executor_mod.Request, *, resumed: journal_mod.RunRecord | None = None
) -> Iterator[list[Sink]]:
    """The extra sinks of a run (its live progress, if any), closed after it."""
    sink = tracker(ws, req, resumed=resumed)
    if sink is None:
        yield []
        return
    try:
        yield [sink]
    finally:
        sink.close()
