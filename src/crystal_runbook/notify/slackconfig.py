"""Where Slack is and which token to use: settings from the environment.

Why a module of its own: the settings are read by every Slack path (posting, `outbox
flush`, uploads, `outbox list` saying whether a token is set), and reading them must never
fail a rollback: a problem (an unreadable token file, a URL that is not http(s)) is kept in
``SlackSettings.problem`` and said, and notifications then go to the outbox.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

TOKEN_ENV = "SLACK_BOT_TOKEN"  # noqa: S105 - the variable's name, not a token  # nosec B105
TOKEN_FILE_ENV = "SLACK_BOT_TOKEN_FILE"  # noqa: S105 - the variable's name, not a token  # nosec B105
API_URL_ENV = "SLACK_API_URL"
DEFAULT_API_URL = "https://slack.com/api/"


@dataclass(frozen=True)
class SlackSettings:
    """How to reach Slack, from the environment (design.md section 6)."""

    token: str | None = field(default=None, repr=False)
    """Bot token (xoxb-...): `SLACK_BOT_TOKEN`, else the file named by `SLACK_BOT_TOKEN_FILE`.
    None is the embedded default: notifications go to the console and the outbox."""
    api_url: str = DEFAULT_API_URL
    """Web API base URL with its trailing slash (`SLACK_API_URL`; tests: a local server)."""
    request_timeout: float = 10.0
    """Seconds one HTTP request may take. Slack answers in well under a second; a hung
    connection must leave time for a retry within a notification step's 20 s."""
    flush_timeout: float = 60.0
    """Seconds `outbox flush` gives each notification (Slack allows about one message per
    second per channel, so a long outbox meets 429s and waits them out)."""
    problem: str | None = None
    """Why the environment's settings could not be used (then ``token`` is None)."""

    @property
    def configured(self) -> bool:
        return bool(self.token)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SlackSettings:
        """Read the settings; a problem (unreadable token file, bad URL) is kept in
        ``problem`` rather than raised, so that it can never stop a rollback."""
        env = os.environ if environ is None else environ
        api_url = env.get(API_URL_ENV, "").strip() or DEFAULT_API_URL
        if not re.match(r"https?://[^/\s]+", api_url):
            return cls(
                api_url=DEFAULT_API_URL,
                problem=f"{API_URL_ENV}={api_url[:100]!r} is not an http(s) URL",
            )
        if not api_url.endswith("/"):
            api_url += "/"  # slack_sdk joins base_url and the method name as strings
        token = env.get(TOKEN_ENV, "").strip()
        token_file = env.get(TOKEN_FILE_ENV, "").strip()
        if not token and token_file:
            try:
                token = Path(token_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                return cls(
                    api_url=api_url,
                    problem=f"{TOKEN_FILE_ENV}: cannot read {token_file}: {exc.strerror}",
                )
        return cls(token=token or None, api_url=api_url)
