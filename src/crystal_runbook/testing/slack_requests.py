"""Requests as Slack sends them to an app: signed slash commands and button presses.

Why: the Slack app is tested (and benchmarked) through real HTTP requests to a running
`crystal-runbook serve --slack`, signed the way Slack signs them (``v0=`` + HMAC-SHA256
over ``v0:{timestamp}:{body}`` with the signing secret)::

    app = SlackAppClient("http://127.0.0.1:3000", secret)
    answer = app.command("rollback maia sandbox", user_id="U0ALICE")
    app.press("confirm", token, user_id="U0ALICE", channel_id=..., message_ts=...)

``slash_command`` and ``block_actions`` build the bodies (the same dictionaries also go
into Socket Mode envelopes); ``sign`` gives the headers, with any timestamp you like (a
stale one, for the tests that must be refused).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

TEAM_ID = "T0CRYSTAL"
CHANNEL = "C0CRYSTAL01"


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """Slack's signature headers for ``body``."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(
        secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256
    ).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


def slash_command(
    text: str,
    *,
    user_id: str = "U0ALICE",
    user_name: str = "alice",
    channel_id: str = CHANNEL,
    response_url: str = "",
    command: str = "/crystal",
) -> dict[str, str]:
    """The fields of a slash command."""
    return {
        "token": "unused-verification-token",  # Slack's legacy verification field, unused  # nosec B105
        "team_id": TEAM_ID,
        "team_domain": "crystal",
        "channel_id": channel_id,
        "channel_name": "maia-incidents",
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": "A0CRYSTAL",
        "response_url": response_url,
        "trigger_id": "1.2.3",
    }


def block_actions(
    action: str,
    value: str,
    *,
    user_id: str,
    user_name: str = "",
    channel_id: str = CHANNEL,
    message_ts: str = "",
    response_url: str = "",
) -> dict[str, Any]:
    """The payload of a press of button ``crystal_<action>`` with ``value``."""
    return {
        "type": "block_actions",
        "team": {"id": TEAM_ID, "domain": "crystal"},
        "user": {"id": user_id, "username": user_name or user_id.lower(), "team_id": TEAM_ID},
        "api_app_id": "A0CRYSTAL",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel_id},
        "channel": {"id": channel_id, "name": "maia-incidents"},
        "message": {"ts": message_ts, "type": "message"},
        "response_url": response_url,
        "trigger_id": "1.2.4",
        "actions": [
            {
                "type": "button",
                "action_id": f"crystal_{action}",
                "block_id": "b",
                "value": value,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


@dataclass(frozen=True)
class Answer:
    """What the app answered to one request."""

    status: int
    body: dict[str, Any]
    seconds: float
    """Time from sending the request to the whole answer."""

    @property
    def text(self) -> str:
        return str(self.body.get("text", ""))


class SlackAppClient:
    """Sends signed requests to a running Slack app at ``base`` (``/slack/events``)."""

    def __init__(self, base: str, secret: str, *, client: httpx.Client | None = None) -> None:
        self.url = base.rstrip("/") + "/slack/events"
        self.secret = secret
        self.client = client or httpx.Client(timeout=30.0)

    def post(
        self, body: bytes, *, headers: dict[str, str] | None = None, timestamp: int | None = None
    ) -> Answer:
        sent = {"Content-Type": "application/x-www-form-urlencoded"}
        sent.update(sign(self.secret, body, timestamp=timestamp) if headers is None else headers)
        started = time.perf_counter()
        response = self.client.post(self.url, content=body, headers=sent)
        seconds = time.perf_counter() - started
        try:
            parsed = response.json() if response.content else {}
        except ValueError:
            parsed = {"_raw": response.text}
        return Answer(response.status_code, parsed if isinstance(parsed, dict) else {}, seconds)

    def command(self, text: str, **fields: str) -> Answer:
        return self.post(urlencode(slash_command(text, **fields)).encode())

    def press(self, action: str, value: str, **fields: str) -> Answer:
        payload = json.dumps(block_actions(action, value, **fields))
        return self.post(urlencode({"payload": payload}).encode())

    def close(self) -> None:
        self.client.close()
