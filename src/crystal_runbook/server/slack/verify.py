"""Slack's request signature, checked before anything else reads the request.

Why: `POST /slack/events` is on the network; only Slack, holding the signing secret, can
make a request the app acts on. Checked here, before Bolt (which parses the body first):

- a body over ``MAX_BODY`` (64 KB) is refused (400) without being read past the limit;
- a missing ``X-Slack-Request-Timestamp`` or ``X-Slack-Signature`` is refused (401);
- a timestamp more than ``WINDOW`` (300 s) from now is refused (401): a replay of an old
  request, however well signed, does not run;
- the signature must be ``v0=`` + hex HMAC-SHA256(secret, ``v0:{timestamp}:{body}``),
  compared in constant time (401 otherwise).

Only the headers and the raw bytes are looked at; the body is parsed later, by Bolt, and
only when it passed.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wsgiref.types import WSGIEnvironment

MAX_BODY = 64 * 1024
"""Bytes a Slack request may have (Slack's payloads are a few KB)."""
WINDOW = 300
"""Seconds a request's timestamp may be off from our clock (Slack's own recommendation)."""


class Rejected(Exception):
    """The request is not Slack's (or is too old or too big)."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``v0=`` + hex HMAC-SHA256 over ``v0:{timestamp}:{body}`` (Slack's scheme)."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def read_verified(environ: WSGIEnvironment, secret: str, *, now: float | None = None) -> bytes:
    """The request's body, if the request is Slack's.

    Raises:
        Rejected: with the HTTP status to answer and why.
    """
    raw_length = str(environ.get("CONTENT_LENGTH") or "").strip()
    if not raw_length.isdigit():
        raise Rejected("400 Bad Request", "no Content-Length")
    length = int(raw_length)
    if length > MAX_BODY:
        raise Rejected("400 Bad Request", f"body of {length} bytes is over {MAX_BODY}")
    timestamp = str(environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP") or "").strip()
    sent = str(environ.get("HTTP_X_SLACK_SIGNATURE") or "").strip()
    if not timestamp or not sent:
        raise Rejected("401 Unauthorized", "missing X-Slack-Request-Timestamp or -Signature")
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise Rejected("401 Unauthorized", "malformed X-Slack-Request-Timestamp")
    clock = time.time() if now is None else now
    if abs(clock - int(timestamp)) > WINDOW:
        raise Rejected("401 Unauthorized", f"timestamp more than {WINDOW} s from now")
    body = environ["wsgi.input"].read(length) if length else b""
    if len(body) != length:
        raise Rejected("400 Bad Request", "body shorter than its Content-Length")
    if not hmac.compare_digest(signature(secret, timestamp, body), sent):
        raise Rejected("401 Unauthorized", "bad signature")
    return bytes(body)
