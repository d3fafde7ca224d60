"""The redactor's literal prefilters skip only texts its patterns could not match.

``Redactor.text`` runs each secret pattern only when the literal every match contains is in
the text (a followed log line is mostly scanned by `in` tests). These tests compare it with
every pattern run unconditionally, on generated text made of secret-shaped pieces,
case-folding look-alikes (dotless i, long s, Kelvin sign, written as escapes) and
separators.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from crystal_runbook.engine import secrets
from crystal_runbook.engine.secrets import MASK, Redactor

PIECES = [
    "password", "PassWord", "pa\u017fsword", "pwd", "passphrase", "secret", "\u017fecret", "token",
    "TOKEN", "api_key", "apikey", "access-key", "private_key", "KEY", "credentials",
    "credent\u0131als", "CREDENT\u0130AL", "\u212aEY", "=", ":", " : ", "'", '"', "hunter2xyz", "s3cr3t-value",
    "https://", "postgres://bob:", "@db.local/x", "xoxb-", "xapp-", "sk-", "bearer ", "AKIA",
    "ASIA", "eyJ", ".", "ghp_", "github_pat_", "glpat-", "-----BEGIN RSA PRIVATE KEY-----",
    "-----END RSA PRIVATE KEY-----", "abcdefghijKLMNOPQRST0123456789abcdefghij", "_", "-",
    " ", "\n", "maia-5d8f7/maia ", '{"time": "2026-12-01T20:20:00Z", "msg": "GET /"}',
]


def unfiltered(value: str) -> str:
    """What the redactor did before the prefilters: every pattern, every time."""
    for _, pattern in secrets._PATTERNS:
        value = pattern.sub(MASK, value)
    value = secrets._KEYWORD_VALUE.sub(secrets._mask_value, value)
    return secrets._URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['at']}", value)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=12).map("".join))
def test_prefiltered_redaction_equals_running_every_pattern(text: str) -> None:
    """Texts built from secret-shaped pieces are masked exactly as without the prefilters."""
    assert Redactor({}).text(text) == unfiltered(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_prefiltered_redaction_equals_running_every_pattern_on_any_text(text: str) -> None:
    """Arbitrary Unicode text is masked exactly as without the prefilters."""
    assert Redactor({}).text(text) == unfiltered(text)


def test_keyword_hints_cover_every_case_insensitive_match() -> None:
    """Every character re.I matches to a hint's letter casefolds to exactly that letter."""
    letters = sorted({c for hint in secrets._KEYWORD_HINTS for c in hint} | {"=", ":"})
    for letter in letters:
        pattern = re.compile(re.escape(letter), re.I)
        for cp in range(0x3000):  # the cased scripts; the full range is checked the same way
            char = chr(cp)
            if pattern.fullmatch(char):
                assert char.casefold() == letter, (letter, hex(cp))


def test_a_plain_log_line_is_unchanged_and_secrets_in_it_are_masked() -> None:
    """A JSON log line passes as is; the same line with a password= or URL password does not."""
    redactor = Redactor({})
    line = 'maia-1/maia {"time": "2026-12-01T20:20:00Z", "level": "info", "msg": "GET /"}'
    assert redactor.text(line) == line
    assert "hunter2xyz" not in redactor.text(line + " db_password=hunter2xyz")
    assert "hunter2xyz" not in redactor.text(line + " postgres://bob:hunter2xyz@db/x")
    assert "hunter2xyz" not in redactor.text(line + " Credent\u0131als: hunter2xyz")
