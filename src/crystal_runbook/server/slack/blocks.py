"""``service.slack.Reply`` values in Slack's wire format: Block Kit and acknowledgements.

Why here: the service layer says what to answer (text, lines, a code block, buttons); only
the Slack shell knows how Slack wants it. Buttons carry ``action_id`` ``crystal_<action>``
and the decision's token as ``value``. Limits: a section's text is at most 3000
characters and a message has at most 50 blocks, so long texts are split and cut.
"""

from __future__ import annotations

from typing import Any

from crystal_runbook.service.slack import Reply

ACTION_PREFIX = "crystal_"
SECTION_CHARS = 2900
MAX_BLOCKS = 50


def _sections(text: str) -> list[dict[str, Any]]:
    chunks: list[str] = []
    current = ""
    for whole in text.splitlines() or [""]:
        line = whole
        while len(line) > SECTION_CHARS:
            chunks.append(line[:SECTION_CHARS])
            line = line[SECTION_CHARS:]
        if current and len(current) + 1 + len(line) > SECTION_CHARS:
            chunks.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current or not chunks:
        chunks.append(current or " ")
    return [{"type": "section", "text": {"type": "mrkdwn", "text": c}} for c in chunks]


def _code(code: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    lines = code.splitlines()
    chunk: list[str] = []
    for line in lines:
        if chunk and sum(len(x) + 1 for x in chunk) + len(line) > SECTION_CHARS - 8:
            out.append({"type": "section", "text": {"type": "mrkdwn", "text": _fence(chunk)}})
            chunk = []
        chunk.append(line[: SECTION_CHARS - 8])
    if chunk:
        out.append({"type": "section", "text": {"type": "mrkdwn", "text": _fence(chunk)}})
    return out


def _fence(lines: list[str]) -> str:
    return "```\n" + "\n".join(lines) + "\n```"


def blocks(reply: Reply) -> list[dict[str, Any]]:
    """The reply as Block Kit blocks (at most 50)."""
    found = _sections(reply.text)
    if reply.lines:
        found += _sections("\n".join(reply.lines))
    if reply.code is not None:
        found += _code(reply.code)
    if reply.buttons:
        elements = []
        for button in reply.buttons:
            element: dict[str, Any] = {
                "type": "button",
                "action_id": ACTION_PREFIX + button.action,
                "text": {"type": "plain_text", "text": button.label},
                "value": button.value,
            }
            if button.style:
                element["style"] = button.style
            elements.append(element)
        found = [*found[:MAX_BLOCKS - 1], {"type": "actions", "elements": elements}]
    return found[:MAX_BLOCKS]


def text(reply: Reply) -> str:
    """The notification text of the reply (what shows in notifications and search)."""
    return reply.text[:3000]


def ack(reply: Reply) -> dict[str, Any]:
    """The body acknowledging a slash command with this reply."""
    return {
        "response_type": "ephemeral" if reply.ephemeral else "in_channel",
        "text": text(reply),
        "blocks": blocks(reply),
    }
