"""Slack's Web API through slack_sdk: calls retried within a deadline, errors translated.

Why: every Slack call crystal-runbook makes (posting a notification, finding one an earlier
attempt posted, uploading an incident document) needs the same things, and they live here
once:

- retries bounded by the caller's deadline: a 429 waits for its Retry-After, 5xx and
  connection errors back off exponentially; a retry that cannot finish in time is not made;
- one error tree (``slackerrors``), translated at this edge (slack_sdk's own retry handlers
  are off);
- messages carry their idempotency key in Slack message metadata (``EVENT_TYPE``), so
  ``SlackWeb.find_posted`` can tell whether an earlier attempt already posted one.

slack_sdk is imported only inside the methods that talk to Slack: `--help` must not load it.
"""

from __future__ import annotations

import functools
import http.client
import math
import re
import time
import urllib.error
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tenacity import RetryCallState, Retrying, retry_if_exception

from crystal_runbook import errors
from crystal_runbook.engine.secrets import Redactor
from crystal_runbook.notify import outbox as outbox_mod
from crystal_runbook.notify.slackconfig import API_URL_ENV, TOKEN_ENV, SlackSettings
from crystal_runbook.notify.slackerrors import (
    TEMPORARY_CODES,
    SlackRefused,
    SlackUnavailable,
    explain,
    retry_after,
)

if TYPE_CHECKING:
    from slack_sdk import WebClient
    from slack_sdk.web import SlackResponse

EVENT_TYPE = "crystal_runbook_notification"
"""Type of the Slack message metadata that carries a notification's idempotency key."""
MAX_TRIES = 8
"""Tries of one API call at most (the deadline usually ends them first)."""
FIRST_BACKOFF = 0.5
"""Seconds before the first retry of a 5xx or a connection error; doubled each time."""
MAX_BACKOFF = 8.0
"""Longest wait between two tries without a Retry-After."""
REFUSED_SECONDS = 2.0
"""Seconds one call keeps trying a Slack that refuses connections (nothing listens, or a
proxy says no): a few quick tries, then the outbox keeps the message. Retrying such a Slack
until the step's timeout only held the end of the command (and the incident document, which
waits for deliveries) about 6 s longer, never delivered more."""
MIN_REQUEST_TIME = 0.5
"""Seconds a retry needs at least; a retry that would start later than this before the
deadline is not made (waiting out a 30 s Retry-After in a 20 s step helps nobody)."""
LOOKBACK = 300.0
"""Seconds around an attempt searched for its message (clock skew between us and Slack)."""
CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{8,}")

Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    return None


def _list_channels(client: WebClient, *, cursor: str | None) -> SlackResponse:
    return client.conversations_list(
        types="public_channel,private_channel", exclude_archived=True, limit=1000, cursor=cursor
    )


def _left(deadline: float | None) -> float:
    return math.inf if deadline is None else deadline - time.monotonic()


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# -- the Web API ------------------------------------------------------------------------------


class SlackWeb:
    """Slack's Web API through slack_sdk: calls retried within a deadline, errors translated."""

    def __init__(self, settings: SlackSettings, *, redactor: Redactor) -> None:
        if not settings.token:
            raise errors.ConfigurationError(
                f"{TOKEN_ENV} is not set" + (f" ({settings.problem})" if settings.problem else ""),
                hint=f"export {TOKEN_ENV}=xoxb-... (the app's Bot User OAuth Token)",
            )
        self.settings = settings
        self.redactor = redactor
        redactor.add(settings.token)
        self._client: WebClient | None = None
        self._channel_ids: dict[str, str] = {}

    def _web_client(self, deadline: float | None) -> WebClient:
        from slack_sdk import WebClient

        if self._client is None:
            self._client = WebClient(
                token=self.settings.token,
                base_url=self.settings.api_url,
                timeout=math.ceil(self.settings.request_timeout),
                retry_handlers=[],  # retries are ours: bounded by the step's deadline
            )
        left = _left(deadline)
        self._client.timeout = max(1, math.ceil(min(self.settings.request_timeout, left)))
        return self._client

    def translate(
        self, exc: BaseException, *, what: str, channel: str | None
    ) -> errors.ActionError | None:
        """The project's error for a slack_sdk or transport error (None: not ours to map)."""
        from slack_sdk.errors import SlackApiError, SlackClientError

        if isinstance(exc, SlackApiError):
            response = exc.response
            status = int(response.status_code)
            data = response.data if isinstance(response.data, dict) else {}
            code = str(data.get("error") or f"HTTP {status}")
            if status == 429 or code == "ratelimited":
                delay = retry_after(response.headers)
                return SlackUnavailable(
                    f"{what}: Slack is rate-limiting us (HTTP 429, Retry-After {delay:g} s)",
                    retry_after=delay,
                )
            if status >= 500 or code in TEMPORARY_CODES:
                return SlackUnavailable(
                    f"{what}: Slack failed ({code}, HTTP {status})",
                    hint="Slack's status page says whether it is down; the outbox keeps "
                    "what could not be delivered",
                    maybe_posted=True,
                )
            return explain(code, what=what, channel=channel, needed=data.get("needed"))
        if isinstance(exc, SlackClientError):  # e.g. the upload to a files.* URL failed
            return SlackUnavailable(
                f"{what}: {self.redactor.text(str(exc))[:300]}", maybe_posted=True
            )
        if isinstance(exc, urllib.error.HTTPError):  # an upload URL's answer (files_upload_v2)
            exc.close()  # slack_sdk leaves the error response open
            if exc.code == 429 or exc.code >= 500:
                return SlackUnavailable(
                    f"{what}: the upload URL answered HTTP {exc.code}", maybe_posted=True
                )
            return SlackRefused(
                f"{what}: the upload URL answered HTTP {exc.code}",
                code=f"http_{exc.code}",
                hint="the upload URL expires quickly; try again, and check proxies on the way",
            )
        if isinstance(exc, OSError | http.client.HTTPException):
            reason = getattr(exc, "reason", None) or exc
            refused = isinstance(reason, ConnectionRefusedError)
            return SlackUnavailable(
                f"{what}: cannot reach the Slack Web API at {self.settings.api_url} "
                f"({type(reason).__name__}: {self.redactor.text(str(reason))[:200]})",
                hint="is this machine allowed out to Slack (proxy, firewall)? "
                f"{API_URL_ENV} overrides the URL",
                maybe_posted=not refused,
            )
        return None

    def call(
        self,
        what: str,
        fn: Callable[[WebClient], SlackResponse | Mapping[str, Any]],
        *,
        deadline: float | None,
        channel: str | None = None,
        tries: int = MAX_TRIES,
        progress: Progress = _quiet,
        before_retry: Callable[[errors.ActionError], None] | None = None,
    ) -> dict[str, Any]:
        """Call ``fn(client)`` and return the response's data, retrying temporary failures
        (honouring Retry-After) while the deadline allows another try.

        Raises:
            SlackRefused: the API said no (not retried).
            SlackUnavailable: the last temporary failure, once retrying is pointless.
        """
        started = time.monotonic()
        count = 0

        def attempt() -> dict[str, Any]:
            nonlocal count
            count += 1
            try:
                response = fn(self._web_client(deadline))
            except Exception as exc:
                translated = self.translate(exc, what=what, channel=channel)
                if translated is None:
                    raise
                raise translated from None
            data = response if isinstance(response, Mapping) else response.data
            return dict(data) if isinstance(data, Mapping) else {}

        def failure(state: RetryCallState) -> BaseException | None:
            outcome = state.outcome
            return outcome.exception() if outcome is not None and outcome.failed else None

        def wait(state: RetryCallState) -> float:
            retry_after = getattr(failure(state), "retry_after", None)
            if retry_after is not None:
                return float(retry_after)
            return float(min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (state.attempt_number - 1)))

        def stop(state: RetryCallState) -> bool:
            if state.attempt_number >= tries:
                return True
            exc = failure(state)
            refused = (
                isinstance(exc, SlackUnavailable)
                and exc.retry_after is None
                and not exc.maybe_posted  # a refused connection: nothing reached Slack
            )
            if refused and time.monotonic() + state.upcoming_sleep - started > REFUSED_SECONDS:
                return True
            return state.upcoming_sleep + MIN_REQUEST_TIME > _left(deadline)

        def before_sleep(state: RetryCallState) -> None:
            exc = failure(state)
            if isinstance(exc, errors.ActionError):
                progress(f"{exc.message}; retrying in {state.upcoming_sleep:.1f} s")
                if before_retry is not None:
                    before_retry(exc)

        retrying = Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, errors.TemporaryActionError)),
            wait=wait,
            stop=stop,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except SlackUnavailable as exc:
            if count < 2:
                raise
            elapsed = time.monotonic() - started
            raise SlackUnavailable(
                f"{exc.message} (gave up after {count} tries in {elapsed:.1f} s)",
                hint=exc.hint,
                maybe_posted=exc.maybe_posted,
            ) from None

    def channel_id(self, channel: str, *, deadline: float | None) -> str:
        """The id of ``channel`` (an id already, or a name with or without ``#``)."""
        if CHANNEL_ID.fullmatch(channel):
            return channel
        name = channel.lstrip("#")
        if name in self._channel_ids:
            return self._channel_ids[name]
        cursor: str | None = None
        for _page in range(50):
            data = self.call(
                f"looking up channel {channel}",
                functools.partial(_list_channels, cursor=cursor),
                deadline=deadline,
                channel=channel,
            )
            for found in data.get("channels") or []:
                self._channel_ids[str(found.get("name"))] = str(found.get("id"))
            if name in self._channel_ids:
                return self._channel_ids[name]
            cursor = (data.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        raise explain(
            "channel_not_found", what=f"looking up channel {channel}", channel=channel, needed=None
        )

    def permalink(
        self, channel_id: str, ts: str, *, deadline: float | None, progress: Progress
    ) -> str | None:
        """The message's permalink, or None (said through ``progress``) when Slack will not
        give one: the message is delivered either way."""
        try:
            data = self.call(
                f"getting the permalink of {ts} in {channel_id}",
                lambda c: c.chat_getPermalink(channel=channel_id, message_ts=ts),
                deadline=deadline,
                channel=channel_id,
                progress=progress,
            )
        except errors.ActionError as exc:
            progress(f"posted, but no permalink: {exc.message}")
            return None
        link = data.get("permalink")
        return str(link) if link else None

    def update(
        self,
        *,
        channel: str,
        ts: str,
        text: str,
        blocks: list[dict[str, Any]] | None,
        deadline: float | None,
        tries: int = MAX_TRIES,
        progress: Progress = _quiet,
    ) -> None:
        """Replace the text and blocks of the app's message ``ts`` in ``channel`` (an id)."""
        self.call(
            f"updating message {ts} in {channel}",
            lambda c: c.chat_update(channel=channel, ts=ts, text=text, blocks=blocks),
            deadline=deadline,
            channel=channel,
            tries=tries,
            progress=progress,
        )

    def post(
        self,
        entry: outbox_mod.Entry,
        *,
        channel: str,
        thread_ts: str | None,
        deadline: float | None,
        progress: Progress = _quiet,
    ) -> outbox_mod.Delivery:
        """Post ``entry`` with its key in the message metadata, then get its permalink.

        Before retrying a post whose failure may have posted it, looks for the key first.
        """
        message = entry.message
        metadata = {
            "event_type": EVENT_TYPE,
            "event_payload": {
                "key": entry.key,
                "run_id": entry.origin.run_id,
                "step_id": entry.origin.step_id,
            },
        }
        uncertain = False
        earlier: list[outbox_mod.Delivery] = []

        def note(exc: errors.ActionError) -> None:
            nonlocal uncertain
            uncertain = uncertain or bool(getattr(exc, "maybe_posted", False))

        def send(client: WebClient) -> SlackResponse | Mapping[str, Any]:
            if uncertain:
                found = self.find_quietly(
                    entry,
                    channel=channel,
                    thread_ts=thread_ts,
                    deadline=deadline,
                    progress=progress,
                )
                if found is not None:
                    earlier.append(found)
                    return {"ok": True, "channel": found.channel, "ts": found.ts}
                if _left(deadline) < MIN_REQUEST_TIME:  # the look-up took the time left
                    raise SlackUnavailable(
                        f"posting to {channel}: no time left to post after looking for an "
                        "earlier attempt",
                        maybe_posted=True,
                    )
                client = self._web_client(deadline)  # the look-up set its own timeout
            return client.chat_postMessage(
                channel=channel,
                text=message.text,
                blocks=message.blocks,
                thread_ts=thread_ts,
                metadata=metadata,
                unfurl_links=False,
                unfurl_media=False,
            )

        data = self.call(
            f"posting to {channel}",
            send,
            deadline=deadline,
            channel=channel,
            progress=progress,
            before_retry=note,
        )
        if earlier:
            return earlier[0]
        channel_id, ts = str(data.get("channel") or channel), str(data.get("ts") or "")
        if not ts:
            raise SlackUnavailable(
                f"posting to {channel}: Slack answered ok without a message ts", maybe_posted=True
            )
        link = self.permalink(channel_id, ts, deadline=deadline, progress=progress)
        return outbox_mod.Delivery(channel_id, ts, link, outbox_mod.now(), thread_ts=thread_ts)

    def find_posted(
        self,
        entry: outbox_mod.Entry,
        *,
        channel: str,
        thread_ts: str | None,
        deadline: float | None,
        tries: int = MAX_TRIES,
    ) -> outbox_mod.Delivery | None:
        """The message an earlier attempt posted for ``entry``, found by its metadata key.

        Raises:
            errors.ActionError: the look-up itself failed (e.g. the token lacks
                channels:history): whether it was posted is unknown.
        """
        channel_id = self.channel_id(channel, deadline=deadline)
        around = _epoch(entry.attempted_at or entry.created_at)
        oldest = f"{around - LOOKBACK:.6f}"
        latest = f"{around + LOOKBACK + self.settings.flush_timeout:.6f}"
        what = f"looking in {channel} for notification {entry.key}"

        def look(client: WebClient) -> SlackResponse:
            if thread_ts:
                return client.conversations_replies(
                    channel=channel_id,
                    ts=thread_ts,
                    oldest=oldest,
                    latest=latest,
                    inclusive=True,
                    include_all_metadata=True,
                    limit=200,
                )
            return client.conversations_history(
                channel=channel_id,
                oldest=oldest,
                latest=latest,
                inclusive=True,
                include_all_metadata=True,
                limit=200,
            )

        data = self.call(what, look, deadline=deadline, channel=channel, tries=tries)
        for found in data.get("messages") or []:
            meta = found.get("metadata") or {}
            payload = meta.get("event_payload") or {}
            if meta.get("event_type") == EVENT_TYPE and payload.get("key") == entry.key:
                ts = str(found.get("ts"))
                link = self.permalink(channel_id, ts, deadline=deadline, progress=_quiet)
                return outbox_mod.Delivery(
                    channel_id, ts, link, outbox_mod.now(), thread_ts=thread_ts
                )
        return None

    def find_quietly(
        self,
        entry: outbox_mod.Entry,
        *,
        channel: str,
        thread_ts: str | None,
        deadline: float | None,
        progress: Progress,
    ) -> outbox_mod.Delivery | None:
        """``find_posted`` in one try; a failed look-up is said and counts as not found
        (posting again may then show the message twice, which beats not showing it)."""
        try:
            return self.find_posted(
                entry, channel=channel, thread_ts=thread_ts, deadline=deadline, tries=1
            )
        except errors.ActionError as exc:
            progress(
                f"cannot tell whether an earlier attempt posted it ({exc.message}); "
                "posting it (it may appear twice)"
            )
            return None
