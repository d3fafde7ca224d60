"""``service.slack.SlackPort`` over Slack's Web API and response URLs.

Web API calls go through ``notify.slackapi.SlackWeb`` (retries within a deadline, 429's
Retry-After honoured, errors translated into the project's tree); answers to a command or a
button go to its ``response_url`` with slack_sdk's ``WebhookClient``. Every call has a
deadline (``CALL_SECONDS``): a slow Slack holds a background job, never a request or a run.
"""

from __future__ import annotations

import time
from typing import Any

from crystal_runbook import errors
from crystal_runbook.engine.secrets import Redactor
from crystal_runbook.notify import slackapi
from crystal_runbook.server.slack import blocks
from crystal_runbook.service.slack import Reply

CALL_SECONDS = 15.0
"""Seconds one answer, post or update may take, retries included."""
GROUP_SECONDS = 2.0
"""Seconds resolving a user group may take: it happens while Slack waits for the
acknowledgement (3 s), and a group that cannot be resolved allows nobody."""


class WebPort:
    """What the Slack use cases say, said through the Web API."""

    def __init__(self, settings: slackapi.SlackSettings, *, redactor: Redactor) -> None:
        self.settings = settings
        self.redactor = redactor
        self.web = slackapi.SlackWeb(settings, redactor=redactor)

    def respond(self, response_url: str, reply: Reply, *, replace: bool = False) -> None:
        from slack_sdk.webhook import WebhookClient

        if not response_url.startswith(("https://", "http://")):
            raise errors.ConfigurationError("the response_url is not an http(s) URL")
        client = WebhookClient(response_url, timeout=int(CALL_SECONDS))
        body: dict[str, Any] = {
            "text": blocks.text(reply),
            "blocks": blocks.blocks(reply),
            "response_type": "ephemeral" if reply.ephemeral else "in_channel",
            "replace_original": replace,
        }
        try:
            response = client.send_dict(body)
        except OSError as exc:
            raise slackapi.SlackUnavailable(
                f"answering through the response_url: {type(exc).__name__}: {exc}"
            ) from None
        if response.status_code >= 300:
            raise slackapi.SlackUnavailable(
                f"answering through the response_url: HTTP {response.status_code}"
            )

    def post(self, channel: str, reply: Reply, *, thread_ts: str | None = None) -> str:
        data = self.web.call(
            f"posting to {channel}",
            lambda c: c.chat_postMessage(
                channel=channel,
                text=blocks.text(reply),
                blocks=blocks.blocks(reply),
                thread_ts=thread_ts,
                unfurl_links=False,
                unfurl_media=False,
            ),
            deadline=time.monotonic() + CALL_SECONDS,
            channel=channel,
        )
        return str(data.get("ts") or "")

    def update(self, channel: str, ts: str, reply: Reply) -> None:
        self.web.call(
            f"updating a message in {channel}",
            lambda c: c.chat_update(
                channel=channel, ts=ts, text=blocks.text(reply), blocks=blocks.blocks(reply)
            ),
            deadline=time.monotonic() + CALL_SECONDS,
            channel=channel,
        )

    def members(self, usergroup: str) -> list[str]:
        data = self.web.call(
            f"listing the members of user group {usergroup}",
            lambda c: c.usergroups_users_list(usergroup=usergroup),
            deadline=time.monotonic() + GROUP_SECONDS,
            tries=2,
        )
        return [str(u) for u in data.get("users") or []]
