"""Keep secrets out of the journal, logs and incident documents.

Secrets reach crystal-runbook only through the environment (`SLACK_BOT_TOKEN`,
`SLACK_SIGNING_SECRET`, database URLs, ...; design.md section 6), but people paste them
anywhere (`--reason "db password=hunter2"`). Anything that writes durable or shared text
(journal rows, JSON log lines, documents, Slack, the console) passes it through one
``Redactor``, which replaces the values of secret-named environment variables wherever they
appear, anything shaped like a token (Slack, AWS access key ids, JWTs, GitHub and GitLab
tokens, PEM private keys), the value after a secret-named key (`password=`, `passwd:`,
`secret=`, `token=`, `api_key:`), and URL passwords.
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
# Shapes of secrets in free text (a --reason, an error message, a log line). The token
# shapes follow the detectors of Yelp's detect-secrets (AWSKeyDetector, PrivateKeyDetector,
# JwtTokenDetector, GitHubTokenDetector, GitLabTokenDetector, SlackDetector, KeywordDetector),
# kept as regular expressions here because the redactor must replace spans in every journal
# write, quickly, and import nothing heavy.
#
# Each pattern goes with the literal text any match of it contains (None: always run it). A
# pattern runs only when its literal is in the text: a log line, followed at thousands of
# lines a second, is scanned by a few `in` tests instead of a dozen regular expressions
# (`logs -f` delivered a third of kubectl's lines per second before). Case-sensitive
# patterns only have literals; the case-insensitive ones are prefiltered below.
_PATTERNS: tuple[tuple[tuple[str, ...] | None, re.Pattern[str]], ...] = (
    (("xox",), re.compile(r"xox[abposr]-[0-9A-Za-z-]{8,}")),  # Slack tokens
    (("xapp-",), re.compile(r"xapp-[0-9A-Za-z-]{8,}")),  # Slack app-level tokens
    (("sk-",), re.compile(r"\bsk-[A-Za-z0-9_-]{16,}")),  # API keys of the sk- family
    (None, re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{12,}")),
    (  # AWS access key ids
        ("A3T", "AKIA", "ASIA", "ABIA", "ACCA"),
        re.compile(r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b"),
    ),
    (
        ("-----BEGIN",),
        re.compile(  # PEM private keys, the whole block (or what is left of it when cut)
            r"-----BEGIN[A-Z ]*PRIVATE KEY( BLOCK)?-----.*?"
            r"(?:-----END[A-Z ]*PRIVATE KEY( BLOCK)?-----|\Z)",
            re.S,
        ),
    ),
    (  # JWTs
        ("eyJ",),
        re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    ),
    (  # GitHub tokens
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
        re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}\b"),
    ),
    (("github_pat_",), re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,}\b")),  # GitHub fine-grained
    (("glpat-",), re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}\b")),  # GitLab personal tokens
)
# key=value / key: value pairs whose key names a secret: the value is masked, the key kept
_KEYWORD_VALUE = re.compile(
    r"(?P<key>\b[\w.-]*(?:password|passwd|pwd|passphrase|secret|token|api[_-]?key|apikey"
    r"|access[_-]?key|private[_-]?key|credentials?))"
    r"(?P<sep>\s*[=:]\s*)"
    r"(?P<quote>[\"']?)(?P<value>[^\s\"',;&]{4,})",
    re.I,
)
# Every match of _KEYWORD_VALUE holds one of these in its casefolded text, and "=" or ":":
# each character that matches a keyword letter under re.I casefolds to exactly that letter
# (checked over all of Unicode), except the dotless i, which no literal here contains
# ("credent", not "credential").
_KEYWORD_HINTS = ("pass", "pwd", "secret", "token", "key", "credent")
# user:password@ in URLs: keep the user, hide the password
_URL_PASSWORD = re.compile(
    r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]+:)(?P<pw>[^@/\s]+)(?P<at>@)", re.I
)
MIN_SECRET_LENGTH = 6


def _mask_value(match: re.Match[str]) -> str:
    if match["value"] == MASK or match["value"].startswith(MASK):
        return match[0]
    return f"{match['key']}{match['sep']}{match['quote']}{MASK}"


def looks_secret(name: str) -> bool:
    """True for names like SLACK_BOT_TOKEN, DB_PASSWORD, CRYSTAL_DATABASE_URL."""
    return bool(_SECRET_NAME.search(name))


class Redactor:
    """Replaces known secret values and secret-shaped text with ``*****``."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        # a *_FILE variable (SLACK_SIGNING_SECRET_FILE) names the file that holds a secret:
        # its value is a path, kept visible so an error can say which file it could not read
        # (the secret read from it is added by whoever reads it)
        values = {
            value
            for name, value in env.items()
            if looks_secret(name)
            and not name.upper().endswith("_FILE")
            and len(value) >= MIN_SECRET_LENGTH
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
        for hints, pattern in _PATTERNS:
            if hints is None or any(hint in value for hint in hints):
                value = pattern.sub(MASK, value)
        if "=" in value or ":" in value:
            folded = value.casefold()
            if any(hint in folded for hint in _KEYWORD_HINTS):
                value = _KEYWORD_VALUE.sub(_mask_value, value)
        if "://" not in value:
            return value
        return _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['at']}", value)

    def data(self, value: Any) -> Any:
        """Redact every string inside a JSON-like structure: values under keys that look
        secret, and the ``value`` of a ``{name, value}`` pair whose name does (a Kubernetes
        env entry such as ``{"name": "DB_PASSWORD", "value": "..."}`` in a pod template)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            name = value.get("name")
            named_secret = isinstance(name, str) and looks_secret(name)
            return {
                k: (
                    MASK
                    if isinstance(k, str)
                    and (looks_secret(k) or (named_secret and k == "value"))
                    and isinstance(v, str)
                    and v
                    else self.data(v)
                )
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value
