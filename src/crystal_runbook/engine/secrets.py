"""Keep secrets out of the journal, logs and incident documents.

Secrets reach crystal-runbook only through the environment (`SLACK_BOT_TOKEN`,
`SLACK_SIGNING_SECRET`, database URLs, ...; design.md section 6). Anything that writes
durable or shared text (journal rows, JSON log lines, documents, Slack) passes it through one
``Redactor``, which replaces the values of secret-named environment variables wherever they
appear, plus anything shaped like a token or a URL password.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

MASK = "*****"
_SECRET_NAME = re.compile(
    r"(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|PRIVATE_KEY|CREDENTIAL|DATABASE_URL|DSN)", re.I
)
_PATTERNS = (
    re.compile(r"xox[abposr]-[0-9A-Za-z-]{8,}"),  # Slack tokens
    re.compile(r"xapp-[0-9A-Za-z-]{8,}"),  # Slack app-level tokens
    re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"),  # API keys of the sk- family
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{12,}"),
)
# user:password@ in URLs: keep the user, hide the password
_URL_PASSWORD = re.compile(
    r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]+:)(?P<pw>[^@/\s]+)(?P<at>@)", re.I
)
MIN_SECRET_LENGTH = 6


def looks_secret(name: str) -> bool:
    """True for names like SLACK_BOT_TOKEN, DB_PASSWORD, CRYSTAL_DATABASE_URL."""
    return bool(_SECRET_NAME.search(name))


class Redactor:
    """Replaces known secret values and secret-shaped text with ``*****``."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        values = {
            value
            for name, value in env.items()
            if looks_secret(name) and len(value) >= MIN_SECRET_LENGTH
        }
        # longest first so a secret that contains another is replaced whole
        self._values = sorted(values, key=len, reverse=True)

    def add(self, value: str) -> None:
        """Also hide ``value`` (e.g. a secret runbook parameter)."""
        if len(value) >= MIN_SECRET_LENGTH and value not in self._values:
            self._values.append(value)
            self._values.sort(key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._values:
            if secret in value:
                value = value.replace(secret, MASK)
        for pattern in _PATTERNS:
            value = pattern.sub(MASK, value)
        return _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['at']}", value)

    def data(self, value: Any) -> Any:
        """Redact every string inside a JSON-like structure (keys that look secret too)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {
                k: (
                    MASK
                    if isinstance(k, str) and looks_secret(k) and isinstance(v, str) and v
                    else self.data(v)
                )
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value
