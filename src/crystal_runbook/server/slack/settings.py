"""The Slack app's secrets, from the environment only (or the files the environment names).

`SLACK_SIGNING_SECRET` (HTTP mode: every request is checked against it), `SLACK_BOT_TOKEN`
(the Web API: answers, confirm messages), `SLACK_APP_TOKEN` (Socket Mode), each or its
``*_FILE`` twin (a file holding it, e.g. a mounted Kubernetes secret), and `SLACK_API_URL`
as for notifications. They are handed to the redactor as soon as they are read, so they
never reach the journal, logs, recorded requests or documents (design.md section 6).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from crystal_runbook import errors
from crystal_runbook.engine.secrets import Redactor
from crystal_runbook.notify import slackapi

SIGNING_SECRET_ENV = "SLACK_SIGNING_SECRET"  # noqa: S105 - the variable's name, not a secret  # nosec B105
APP_TOKEN_ENV = "SLACK_APP_TOKEN"  # noqa: S105 - the variable's name, not a token  # nosec B105


def read_secret(env: Mapping[str, str], name: str) -> str | None:
    """``$name``, else the content of the file ``$name_FILE``, else None.

    Raises:
        errors.ConfigurationError: the file cannot be read.
    """
    value = env.get(name, "").strip()
    if value:
        return value
    path = env.get(f"{name}_FILE", "").strip()
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").strip() or None
    except OSError as exc:
        raise errors.ConfigurationError(
            f"{name}_FILE: cannot read {path}: {exc.strerror}",
            hint=f"point {name}_FILE at a readable file, or set {name}",
        ) from None


@dataclass(frozen=True)
class SlackAppSettings:
    """What `serve --slack` needs to talk with Slack."""

    web: slackapi.SlackSettings
    signing_secret: str | None = field(default=None, repr=False)
    app_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SlackAppSettings:
        env = os.environ if environ is None else environ
        web = slackapi.SlackSettings.from_env(env)
        if web.problem:
            raise errors.ConfigurationError(web.problem)
        return cls(
            web=web,
            signing_secret=read_secret(env, SIGNING_SECRET_ENV),
            app_token=read_secret(env, APP_TOKEN_ENV),
        )

    def require(self, *, socket_mode: bool) -> None:
        """Refuse to start without the secrets the chosen mode needs (exit 2).

        Raises:
            errors.ConfigurationError: a secret is missing or malformed.
        """
        if not self.web.token:
            raise errors.ConfigurationError(
                f"{slackapi.TOKEN_ENV} is not set: the Slack app needs its bot token",
                hint=f"export {slackapi.TOKEN_ENV}=xoxb-... (or {slackapi.TOKEN_ENV}_FILE); "
                "docs/slack.md explains the app's setup",
            )
        if socket_mode:
            if not self.app_token or not self.app_token.startswith("xapp-"):
                raise errors.ConfigurationError(
                    f"--socket-mode needs {APP_TOKEN_ENV} (an app-level token, xapp-...)",
                    hint="create one under Basic Information > App-Level Tokens with the "
                    "connections:write scope",
                )
        elif not self.signing_secret:
            raise errors.ConfigurationError(
                f"{SIGNING_SECRET_ENV} is not set: without it no request can be trusted",
                hint=f"export {SIGNING_SECRET_ENV}=... (Basic Information > Signing Secret), "
                "or use --socket-mode with SLACK_APP_TOKEN",
            )

    def hide_in(self, redactor: Redactor) -> None:
        """Add every secret to ``redactor`` (values read from files are not in os.environ)."""
        for value in (self.web.token, self.signing_secret, self.app_token):
            if value:
                redactor.add(value)
