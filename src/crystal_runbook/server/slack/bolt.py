"""Bolt wiring: Slack's requests to ``service.slack.SlackCommands``, and back.

Why Bolt: it is Slack's own framework over slack_sdk; it parses every payload shape
(slash commands, block actions, Socket Mode envelopes) and acknowledges them the way Slack
expects, in HTTP mode and in Socket Mode alike. It runs here as a synchronous ``App``:

- ``process_before_response=True``: the listener runs in the request's own thread and its
  acknowledgement is the HTTP response. Listeners only decide (``SlackCommands.command`` /
  ``press`` are in-memory and journal work) and hand everything slow to the background
  worker, so Bolt's own listener pool and its 10 ms acknowledgement polling are not used.
- ``authorize`` returns the bot token from our settings without calling Slack: no
  ``auth.test`` at start or on a request, so a Slack outage cannot make the app refuse.
- Bolt's request verification stays on (a second check); the first, stricter one is
  ``verify.read_verified`` in front of it (in HTTP mode).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from crystal_runbook.server.slack import blocks
from crystal_runbook.server.slack.port import WebPort
from crystal_runbook.server.slack.settings import SlackAppSettings
from crystal_runbook.service.slack import ButtonPress, Invocation, Reply, SlackCommands, Submit

if TYPE_CHECKING:
    from slack_bolt import App

log = logging.getLogger("crystal_runbook.slack")

ACTIONS = re.compile(r"^crystal_(confirm|approve|cancel|reject)$")


def _str(value: Any, limit: int = 4000) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def build_app(
    commands: SlackCommands, settings: SlackAppSettings, port: WebPort, submit: Submit
) -> App:
    """The Bolt app whose listeners call ``commands``."""
    from slack_bolt import App
    from slack_bolt.authorization import AuthorizeResult
    from slack_sdk import WebClient

    token = settings.web.token

    def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=token)

    bolt_log = logging.getLogger("crystal_runbook.slack.bolt")
    level = bolt_log.level
    bolt_log.setLevel(logging.ERROR)  # Bolt warns that SLACK_BOT_TOKEN yields to authorize
    try:
        app = App(
            signing_secret=settings.signing_secret or "",
            client=WebClient(base_url=settings.web.api_url),  # its token: from authorize
            authorize=authorize,
            process_before_response=True,
            logger=bolt_log,
            ignoring_self_events_enabled=False,
        )
    finally:
        bolt_log.setLevel(level)

    @app.command(re.compile(r"^/.+"))
    def on_command(ack: Any, body: dict[str, Any]) -> None:
        invocation = Invocation(
            user_id=_str(body.get("user_id"), 40),
            user_name=_str(body.get("user_name"), 80),
            channel_id=_str(body.get("channel_id"), 40),
            text=_str(body.get("text"), 100_000),
            response_url=_str(body.get("response_url"), 1000) or None,
            team_id=_str(body.get("team_id"), 40) or None,
        )
        if not invocation.user_id or not invocation.channel_id:
            ack(**blocks.ack(Reply(":no_entry: the command came without a user or channel")))
            return
        # the acknowledgement echoes the command's text, and people paste secrets anywhere:
        # it goes through the redactor like everything posted through ``port``
        ack(**port.redactor.data(blocks.ack(commands.command(invocation))))

    @app.action(ACTIONS)
    def on_button(ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        user, channel, message = (_dict(body.get(k)) for k in ("user", "channel", "message"))
        match = ACTIONS.match(_str(action.get("action_id")))
        if match is None or not _str(user.get("id")):
            return
        press = ButtonPress(
            user_id=_str(user.get("id"), 40),
            user_name=_str(user.get("username") or user.get("name"), 80),
            action=match.group(1),  # type: ignore[arg-type]  # the pattern lists the actions
            value=_str(action.get("value"), 200),
            channel_id=_str(channel.get("id"), 40) or None,
            message_ts=_str(message.get("ts"), 40) or None,
            response_url=_str(body.get("response_url"), 1000) or None,
        )
        answer = commands.press(press)
        url = press.response_url
        if answer is not None and url:
            submit("answer a button", lambda: port.respond(url, answer))

    return app
