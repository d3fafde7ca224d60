"""The Slack app's calls to Slack from background jobs: they never fail a job or a run.

Why: a job (a plan, a run, an answer) talks to Slack many times; Slack being slow, down or
refusing must never stop it. Every call goes through ``say``, which logs and swallows the
error; every text passes the workspace's redactor first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from crystal_runbook.service import approvals as approvals_mod
from crystal_runbook.service.slack import Reply, SlackCommands

log = logging.getLogger("crystal_runbook.slack")


def redacted(app: SlackCommands, reply: Reply) -> Reply:
    """``reply`` with every text through the workspace's redactor."""
    text = app.base.redactor.text
    return Reply(
        text(reply.text),
        tuple(text(line) for line in reply.lines),
        None if reply.code is None else text(reply.code),
        reply.buttons,
        reply.ephemeral,
    )


def say(app: SlackCommands, what: str, call: Callable[[], Any]) -> Any:
    """``call()``'s result, or None (logged) when it raised."""
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - Slack failing must never stop a job or a run
        log.warning("Slack: %s failed: %s", what, app.base.redactor.text(str(exc)))
        return None


def respond(app: SlackCommands, response_url: str | None, reply: Reply) -> None:
    """Answer through a command's or a button's response URL (if there is one)."""
    if response_url:
        say(app, "answering", lambda: app.port.respond(response_url, redacted(app, reply)))


def update(app: SlackCommands, pending: approvals_mod.Pending, reply: Reply) -> None:
    """Replace the message holding ``pending``'s buttons (once it is posted)."""
    if pending.where is not None:
        channel, ts = pending.where
        say(app, "updating a message", lambda: app.port.update(channel, ts, redacted(app, reply)))


def post(
    app: SlackCommands, channel: str, reply: Reply, *, thread_ts: str | None = None
) -> str | None:
    """Post in ``channel`` (or a thread); the message's ts, or None when Slack failed."""
    found = say(
        app,
        "posting",
        lambda: app.port.post(channel, redacted(app, reply), thread_ts=thread_ts),
    )
    return str(found) if found else None
