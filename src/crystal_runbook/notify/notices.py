"""How a notification shows on the console while it cannot be on Slack.

Why: a notification that is queued (no token) or that Slack refused must still be seen by
the person running the rollback, on stderr, in the same shape whichever path printed it: a
block of lines, or one JSON log line when `CRYSTAL_LOG_FORMAT=json` makes stderr a stream
of JSON lines.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO

from crystal_runbook.engine import events, printable, templating
from crystal_runbook.notify import jsonlog
from crystal_runbook.notify import outbox as outbox_mod


def show(
    stream: TextIO, entry: outbox_mod.Entry, *, path: Path, headline: str, footer: str
) -> None:
    """Show ``entry`` (kept at ``path``) on ``stream``: a block of lines, or one JSON log
    line when `CRYSTAL_LOG_FORMAT=json`."""
    message = entry.message
    text = templating.slack_unescape(message.text)  # as Slack would show it, not its wire form
    if os.environ.get("CRYSTAL_LOG_FORMAT", "").lower() == "json":
        event = events.Event(
            kind="notification",
            run_id=entry.origin.run_id,
            status="warning" if entry.last_error else "queued",
            message=headline,
            at=outbox_mod.now(),
            step_id=entry.origin.step_id,
            uses="slack.notify",
            data={
                "channel": message.channel,
                "text": text,
                "reply_to": message.reply_to,
                "file": message.file,
                "outbox": str(path),
                "detail": footer,
            },
        )
        jsonlog.JsonLogSink(stream)(event)
        return
    where = message.channel or "(no channel: set slack_channel in inventory/services.yaml)"
    if message.reply_to:
        where += f", in the thread of step {message.reply_to}"
    lines = [headline, f"  to: {where}"]
    lines += [f"  | {line}" for line in (text.splitlines() or [""])]
    if message.file:
        lines.append(f"  file: {message.file}")
    lines += [f"  {line}" for line in footer.splitlines()]
    stream.write(printable.printable("\n".join(lines)) + "\n")
    stream.flush()


def clip(text: str, limit: int) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def display(path: Path) -> str:
    """A path as messages name it: absolute, since a summary is journalled and read again
    from other working directories (`runs show`, the incident document)."""
    return os.path.abspath(path)
