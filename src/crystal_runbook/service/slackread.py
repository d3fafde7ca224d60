"""`/crystal health` and `/crystal logs`: read-only answers, ephemeral, from a background job.

Why its own module: they share nothing with the mutations' plan, confirm and run but the
Slack calls (``slacksay``); the same use cases as the CLI's `health` and `logs`
(``service.oncall``), rendered for Slack.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from crystal_runbook import errors
from crystal_runbook.service import oncall, slackparse, slacksay
from crystal_runbook.service.slack import Invocation, Reply, SlackCommands, actor, workspace_for

LOG_LINES = 50
"""Lines `/crystal logs` shows (the last ones)."""
LOG_LINE_CHARS = 300
"""A longer log line is cut: Slack shows a message of at most 40,000 characters."""


def read_only(app: SlackCommands, inv: Invocation, cmd: slackparse.Command) -> None:
    """`health` and `logs`, answered ephemerally through the command's response_url."""
    assert cmd.service is not None  # noqa: S101 - the grammar requires it  # nosec B101
    ws = workspace_for(app.base, actor=actor(inv.user_id, inv.user_name), env=cmd.env)
    try:
        if cmd.name == "health":
            reply = health_reply(oncall.health(ws, cmd.service))
        else:
            reply = logs_reply(ws, cmd)
    except errors.CrystalError as exc:
        reply = Reply(f":x: `{cmd.describe()}`: {exc}")
    finally:
        ws.close()
    slacksay.respond(app, inv.response_url, reply)


def health_reply(report: Mapping[str, Any]) -> Reply:
    mark = ":white_check_mark:" if report["healthy"] else ":red_circle:"
    state = "healthy" if report["healthy"] else "NOT healthy"
    lines = [
        f"{'✓' if c['ok'] else '✗'} {c['name']}: {c['detail']}" for c in report.get("checks", [])
    ]
    lines += [
        f"{r['state']}: {r['name']} (value {r.get('value')}, threshold {r.get('threshold')})"
        for r in report.get("rules", [])
    ]
    return Reply(f"{mark} {report['service']} in {report['env']}: {state}", tuple(lines))


def logs_reply(ws: Any, cmd: slackparse.Command) -> Reply:
    assert cmd.service is not None  # noqa: S101 - the grammar requires it  # nosec B101
    found: list[str] = []

    def emit(line: str) -> None:
        found.append(line if len(line) <= LOG_LINE_CHARS else line[: LOG_LINE_CHARS - 1] + "…")
        del found[:-LOG_LINES]

    oncall.logs(
        ws,
        cmd.service,
        since=None,
        tail=LOG_LINES,
        grep=cmd.grep,
        follow=False,
        emit=emit,
        stop=threading.Event(),
    )
    grep = f" matching `{cmd.grep}`" if cmd.grep else ""
    if not found:
        return Reply(f"No log lines of {cmd.service} in {cmd.env}{grep}.")
    return Reply(
        f"The last {len(found)} log lines of {cmd.service} in {cmd.env}{grep}:",
        code="\n".join(found),
    )
