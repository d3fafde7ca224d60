"""The database URL is a secret: the one form of it that may be shown, and its password.

``CRYSTAL_DATABASE_URL`` may carry a password in the URL (``postgresql://u:pw@h/db``), in
its query (``?password=pw``) or, as libpq allows, in key=value form (``password=pw``).
Messages, `db status` and logs only ever show ``masked(url)``. Pure string work, no psycopg,
so that any layer may mask a URL cheaply.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from crystal_runbook.engine.secrets import MASK

_URL_PASSWORD = re.compile(r"^(?P<head>[a-z][a-z0-9+.-]*://[^:/@?#\s]*:)(?P<pw>[^@/?#\s]*)@", re.I)
_PARAM_PASSWORD = re.compile(
    r"(?P<head>(?:^|[\s?&])password\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|[^\s&]*)", re.I
)


def masked(url: str) -> str:
    """``url`` with any password replaced by ``*****``."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", url.strip())
    return _PARAM_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", text)


def passwords(url: str) -> list[str]:
    """Every password written in ``url``, as written and decoded (for the redactor)."""
    found: list[str] = []
    match = _URL_PASSWORD.match(url.strip())
    if match and match["pw"]:
        found += [match["pw"], unquote(match["pw"])]
    for param in _PARAM_PASSWORD.finditer(url):
        value = param["pw"]
        if value.startswith("'") and value.endswith("'") and len(value) >= 2:
            value = value[1:-1].replace("\\'", "'").replace("\\\\", "\\")
        if value:
            found += [value, unquote(value)]
    return list(dict.fromkeys(found))
