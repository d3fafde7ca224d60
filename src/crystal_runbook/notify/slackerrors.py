"""The errors of Slack's Web API, in the project's one exception tree::

    errors.TemporaryActionError
    └── SlackUnavailable   429, 5xx, connection refused/reset, timeout (``maybe_posted``: the
                           call may have taken effect, so look before posting again)
    errors.PermanentActionError
    └── SlackRefused       the API said no (``code``): invalid_auth, channel_not_found, ...;
                           not retried; the message says what, which channel, what to do

Why a module of its own: ``slackweb`` raises them, ``slack`` and the CLI read them, and
``explain`` (what a refusal means and what to do about it) is the longest text of the Slack
code; it reads best on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crystal_runbook import errors
from crystal_runbook.notify.slackconfig import TOKEN_ENV

AUTH_CODES = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "not_allowed_token_type",
    }
)
TEMPORARY_CODES = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
MESSAGE_CODES = frozenset(
    {"msg_too_long", "no_text", "invalid_blocks", "invalid_blocks_format", "too_many_attachments"}
)


class SlackUnavailable(errors.TemporaryActionError):
    """Slack could not be reached or failed; worth retrying."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        retry_after: float | None = None,
        maybe_posted: bool = False,
    ) -> None:
        super().__init__(message, hint=hint, retry_after=retry_after)
        self.maybe_posted = maybe_posted
        """True when the request may have taken effect (5xx, dropped connection, timeout)."""


class SlackRefused(errors.PermanentActionError):
    """Slack's API refused the call; retrying the same call cannot help."""

    def __init__(self, message: str, *, code: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code


def explain(code: str, *, what: str, channel: str | None, needed: str | None) -> SlackRefused:
    """The error for a refusal of the Web API: what failed, which channel, what to do."""
    flush = "then `crystal-runbook outbox flush` delivers what is waiting"
    if code in AUTH_CODES:
        return SlackRefused(
            f"{what}: Slack refused the bot token ({code})",
            code=code,
            hint=f"{TOKEN_ENV} is not a valid bot token for this workspace (revoked, expired, "
            f"mistyped, or not the xoxb- Bot User OAuth Token): reinstall the app, export its "
            f"token; {flush}",
        )
    if code == "channel_not_found":
        return SlackRefused(
            f"{what}: Slack has no channel {channel!r} that the bot can see ({code})",
            code=code,
            hint="check slack_channel of the service and environment in "
            "inventory/services.yaml (or the step's `channel:`); a private channel must have "
            f"the bot invited (/invite @your-app); {flush}",
        )
    if code == "not_in_channel":
        return SlackRefused(
            f"{what}: the bot is not a member of {channel} ({code})",
            code=code,
            hint=f"invite it (/invite @your-app in {channel}) or give the app the "
            f"chat:write.public scope; {flush}",
        )
    if code == "is_archived":
        return SlackRefused(
            f"{what}: channel {channel} is archived ({code})",
            code=code,
            hint=f"unarchive it, or point slack_channel at a live channel; {flush}",
        )
    if code == "missing_scope":
        scope = needed or "the scope this method needs"
        return SlackRefused(
            f"{what}: the bot token lacks {scope} ({code})",
            code=code,
            hint=f"add {scope} under OAuth & Permissions of the Slack app, reinstall it, and "
            f"export the new token; {flush}",
        )
    if code in MESSAGE_CODES:
        return SlackRefused(
            f"{what}: Slack rejected the message itself ({code})",
            code=code,
            hint="fix the step's text/blocks (Slack's limits: text 40,000 characters, "
            "50 blocks); the outbox keeps the message as it was",
        )
    return SlackRefused(
        f"{what}: Slack refused the call ({code})",
        code=code,
        hint=f"look the error code up at https://api.slack.com/methods; {flush}",
    )


def retry_after(headers: Mapping[str, Any]) -> float:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list | tuple) and value else value
            try:
                return max(0.0, float(raw))
            except (TypeError, ValueError):
                break
    return 1.0
