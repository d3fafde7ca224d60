"""Slack's Web API for the rest of crystal-runbook: settings, errors, the client, uploads.

Why: one name to import for everything Slack (``slackapi.SlackSettings``,
``slackapi.SlackRefused``, ``slackapi.upload_file``), while the pieces live in small modules
of their own:

- ``slackconfig``: ``SLACK_BOT_TOKEN`` (or the file ``SLACK_BOT_TOKEN_FILE`` names) and
  ``SLACK_API_URL`` (default Slack's own; tests point it at
  ``crystal_runbook.testing.slack_server``);
- ``slackerrors``: ``SlackUnavailable`` (temporary) and ``SlackRefused`` (permanent), and
  what each refusal means;
- ``slackweb``: ``SlackWeb``, the calls retried within a deadline;
- here: ``upload_file``, which shares a file in a channel or thread (``files_upload_v2``).

slack_sdk is imported only inside the functions that talk to Slack: `--help` must not load it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crystal_runbook import errors
from crystal_runbook.engine.secrets import Redactor
from crystal_runbook.notify.slackconfig import (
    API_URL_ENV,
    DEFAULT_API_URL,
    TOKEN_ENV,
    TOKEN_FILE_ENV,
    SlackSettings,
)
from crystal_runbook.notify.slackerrors import SlackRefused, SlackUnavailable, explain
from crystal_runbook.notify.slackweb import EVENT_TYPE, SlackWeb

__all__ = [
    "API_URL_ENV",
    "DEFAULT_API_URL",
    "EVENT_TYPE",
    "TOKEN_ENV",
    "TOKEN_FILE_ENV",
    "SlackRefused",
    "SlackSettings",
    "SlackUnavailable",
    "SlackWeb",
    "Upload",
    "explain",
    "upload_file",
]

Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    return None


@dataclass(frozen=True)
class Upload:
    """A file shared in a channel or thread."""

    file_id: str
    permalink: str | None
    channel: str
    thread_ts: str | None


def upload_file(
    *,
    settings: SlackSettings,
    redactor: Redactor,
    channel: str,
    filename: str,
    content: bytes | str | None = None,
    path: Path | None = None,
    title: str | None = None,
    thread_ts: str | None = None,
    initial_comment: str | None = None,
    deadline: float | None = None,
    progress: Progress = _quiet,
) -> Upload:
    """Upload a file into ``channel`` (in the thread of ``thread_ts`` if given) with slack_sdk's
    ``files_upload_v2``: ``files.getUploadURLExternal``, the upload to the URL it returns,
    then ``files.completeUploadExternal``. Text content and the comment are redacted.

    Args:
        channel: a channel id (as in ``slack.notify``'s outputs) or a name (looked up).
        content / path: the file's bytes or text, or a file to read (one of the two).

    Raises:
        errors.ConfigurationError: no token, or ``path`` cannot be read.
        SlackRefused: Slack refused (bad token, channel, missing files:write scope).
        SlackUnavailable: Slack failed until the deadline. A retried upload may leave an
            unshared duplicate file behind, never a duplicate message.
    """
    if (content is None) == (path is None):
        raise ValueError("give exactly one of content and path")
    if path is not None:
        try:
            data: bytes | str = path.read_bytes()
        except OSError as exc:
            raise errors.ConfigurationError(
                f"cannot read {path} to upload it: {exc.strerror}"
            ) from None
    else:
        assert content is not None  # noqa: S101 - checked above  # nosec B101
        data = redactor.text(content) if isinstance(content, str) else content
    web = SlackWeb(settings, redactor=redactor)
    channel_id = web.channel_id(channel, deadline=deadline)
    comment = redactor.text(initial_comment) if initial_comment else None
    response = web.call(
        f"uploading {filename} to {channel}",
        lambda c: c.files_upload_v2(
            channel=channel_id,
            filename=filename,
            content=data,
            title=title or filename,
            thread_ts=thread_ts,
            initial_comment=comment,
        ),
        deadline=deadline,
        channel=channel,
        progress=progress,
    )
    files = response.get("files") or [response.get("file") or {}]
    first = files[0] if files else {}
    return Upload(
        file_id=str(first.get("id", "")),
        permalink=first.get("permalink"),
        channel=channel_id,
        thread_ts=thread_ts,
    )
