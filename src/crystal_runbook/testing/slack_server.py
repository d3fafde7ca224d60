"""A local Slack Web API server for tests: Slack's wire format on 127.0.0.1, recorded.

Why: no Slack emulator exists in any registry we can reach, and the product's Slack code must
be tested over real HTTP with the real slack_sdk, not by patching its internals. This is a
standard-library HTTP server that answers the methods crystal-runbook uses, the way Slack
does (form or JSON bodies, ``{"ok": false, "error": ...}``, 429 with Retry-After):

``auth.test``, ``chat.postMessage`` (with message ``metadata``), ``chat.getPermalink``,
``conversations.info``, ``conversations.list``, ``conversations.history``,
``conversations.replies``, ``files.getUploadURLExternal``, the upload URL it returns,
``files.completeUploadExternal``; for the Slack app (`serve --slack`) also ``chat.update``
(each message keeps its history of updates), ``chat.postEphemeral``,
``usergroups.users.list`` (``usergroups``), ``apps.connections.open`` (checked against the
app-level token ``app_token``) with a Socket Mode WebSocket endpoint
(``testing.slack_socket``, as ``socket``), and response URLs (``response_url(name)``: what
the app answers there is recorded as method ``response_url``).

It checks the bearer token (``not_authed`` / ``invalid_auth``), can be told to fail
(``fail``: 429 with Retry-After, 500, any Slack error code, a dropped connection, a failure
after the call took effect) or to be slow (``slow``), and records every request (method,
headers without the token, parsed body, uploaded bytes) for assertions::

    with SlackServer() as slack:
        client = WebClient(token=slack.token, base_url=slack.url)  # url ends with /api/
        slack.fail("chat.postMessage", status=429, retry_after=1)
        ...
        assert slack.calls("chat.postMessage")[0].body["channel"] == "#maia-incidents"

In pytest, the ``slack_server`` fixture of this module gives a started server per test
(``pytest_plugins = ["crystal_runbook.testing.slack_server"]`` or import it in a conftest).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

DEFAULT_TOKEN = "xoxb-0000000000-crystal-local-test-token"  # noqa: S105 - a fake for tests  # nosec B105
DEFAULT_APP_TOKEN = "xapp-1-A0CRYSTAL-crystal-local-app-token"  # noqa: S105 - a fake for tests  # nosec B105
DEFAULT_CHANNELS: Mapping[str, str] = {
    "C0CRYSTAL01": "maia-incidents",
    "C0CRYSTAL02": "maia-staging",
    "C0CRYSTAL03": "general",
}
TEAM_ID = "T0CRYSTAL"
BOT_USER = "U0CRYSTALBOT"
HIDDEN_HEADERS = frozenset({"authorization", "cookie"})


@dataclass(frozen=True)
class Request:
    """One request the server received."""

    method: str
    """The Web API method (``chat.postMessage``), or ``upload`` for the upload URL."""
    path: str
    headers: dict[str, str]
    """Request headers, without Authorization (the token never lands in a recording)."""
    authorized: bool
    """True when the request carried the server's token (upload URLs need none)."""
    body: dict[str, Any]
    """Parsed form or JSON body, with the query string's parameters; ``token`` removed."""
    files: dict[str, bytes]
    """Bytes sent to an upload URL, by file id."""
    status: int
    """HTTP status the server answered."""
    error: str | None
    """Slack error code answered, if any."""


@dataclass
class Message:
    """A message the server holds."""

    channel: str
    ts: str
    text: str
    user: str = BOT_USER
    thread_ts: str | None = None
    blocks: list[Any] | None = None
    metadata: dict[str, Any] | None = None
    files: list[str] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    """Every ``chat.update`` of this message, oldest first (``text``, ``blocks``)."""

    def as_json(self, *, metadata: bool) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": "message",
            "user": self.user,
            "bot_id": "B0CRYSTAL",
            "ts": self.ts,
            "text": self.text,
        }
        if self.thread_ts:
            data["thread_ts"] = self.thread_ts
        if self.blocks:
            data["blocks"] = self.blocks
        if self.files:
            data["files"] = [{"id": f} for f in self.files]
        if metadata and self.metadata:
            data["metadata"] = self.metadata
        return data


@dataclass
class File:
    """A file uploaded through files.getUploadURLExternal and the upload URL."""

    id: str
    filename: str
    length: int
    secret: str
    content: bytes | None = None
    title: str | None = None
    channel: str | None = None
    thread_ts: str | None = None
    initial_comment: str | None = None


@dataclass
class _Fault:
    method: str
    status: int
    error: str | None
    retry_after: float | None
    times: int | None
    after_effect: bool
    drop: bool
    delay: float


class SlackError(Exception):
    """Raised by a method handler: answered as ``{"ok": false, "error": code}``."""

    def __init__(self, code: str, *, status: int = 200, **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.status = status
        self.extra = extra


class SlackServer:
    """Slack's Web API on a free loopback port. Start with ``start()`` or ``with``."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        app_token: str = DEFAULT_APP_TOKEN,
        channels: Mapping[str, str] | None = None,
        team: str = "crystal",
    ) -> None:
        from crystal_runbook.testing.slack_socket import SocketModeEndpoint

        self.token = token
        self.app_token = app_token
        self.socket = SocketModeEndpoint()
        self.usergroups: dict[str, list[str]] = {}
        """User-group IDs to their members' user IDs (``usergroups.users.list``)."""
        self.ephemerals: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []
        """Bodies the app posted to response URLs, oldest first (with ``_name``)."""
        self.team = team
        self.channels: dict[str, str] = dict(DEFAULT_CHANNELS if channels is None else channels)
        """Channel ids to names (no ``#``)."""
        self.requests: list[Request] = []
        self.messages: list[Message] = []
        self.files: dict[str, File] = {}
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._last_ts = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.getPermalink": self._get_permalink,
            "conversations.info": self._conversations_info,
            "conversations.list": self._conversations_list,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete_upload,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "usergroups.users.list": self._usergroup_users,
            "apps.connections.open": self._connections_open,
        }

    # -- life --------------------------------------------------------------------------------

    def start(self) -> SlackServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                server._handle(self)

            def do_GET(self) -> None:
                server._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        httpd = self._httpd
        self._thread = threading.Thread(
            target=lambda: httpd.serve_forever(poll_interval=0.05), name="slack-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        httpd, self._httpd = self._httpd, None
        self.socket.close_all()
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SlackServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the Slack server is not started")
        return int(self._httpd.server_address[1])

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The Web API base URL, with the trailing slash slack_sdk needs."""
        return f"{self.base}/api/"

    def response_url(self, name: str = "answer") -> str:
        """A response URL on this server; what is posted there is recorded under ``name``."""
        return f"{self.base}/respond/{name}"

    def answers(self, name: str | None = None) -> list[dict[str, Any]]:
        """Bodies posted to response URLs (of ``name`` if given), oldest first."""
        with self._lock:
            return [r for r in self.responses if name is None or r["_name"] == name]

    def env(self, *, token: str | None = None) -> dict[str, str]:
        """``SLACK_BOT_TOKEN`` and ``SLACK_API_URL`` pointing at this server."""
        return {"SLACK_BOT_TOKEN": token or self.token, "SLACK_API_URL": self.url}

    # -- what tests tell it and ask it -------------------------------------------------------

    def fail(
        self,
        method: str,
        *,
        status: int = 200,
        error: str | None = None,
        retry_after: float | None = None,
        times: int | None = 1,
        after_effect: bool = False,
        drop: bool = False,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail (``times=None``: all of them).

        ``status=429`` answers ratelimited with ``Retry-After: retry_after`` (default 1);
        ``status>=500`` answers a server error; ``error`` alone answers 200 with that Slack
        error code; ``drop`` closes the connection without an answer; ``after_effect``
        lets the call take effect (a message is posted) before failing.
        """
        if status == 200 and error is None and not drop:
            raise ValueError("say how it fails: status, error or drop")
        with self._lock:
            self._faults.append(
                _Fault(method, status, error, retry_after, times, after_effect, drop, 0.0)
            )

    def slow(self, method: str, seconds: float, *, times: int | None = 1) -> None:
        """Let the next calls of ``method`` take effect, then wait ``seconds`` to answer."""
        with self._lock:
            self._faults.append(_Fault(method, 200, None, None, times, True, False, seconds))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def calls(self, method: str | None = None) -> list[Request]:
        """Recorded requests, of ``method`` only if given."""
        with self._lock:
            return [r for r in self.requests if method is None or r.method == method]

    def posted(self, channel: str | None = None) -> list[Message]:
        """Messages posted (to ``channel``, an id or a name, if given), oldest first."""
        with self._lock:
            found = list(self.messages)
        if channel is None:
            return found
        wanted = self.channel_id(channel)
        return [m for m in found if m.channel == wanted]

    def channel_id(self, channel: str) -> str | None:
        """The id of a channel given by id, name or #name; None if there is none."""
        if channel in self.channels:
            return channel
        name = channel.lstrip("#")
        return next((cid for cid, n in self.channels.items() if n == name), None)

    def permalink(self, channel: str, ts: str) -> str:
        return f"https://{self.team}.slack.test/archives/{channel}/p{ts.replace('.', '')}"

    # -- HTTP --------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HIDDEN_HEADERS}
        if split.path.startswith("/link/"):
            self.socket.handle(handler, dict(parse_qsl(split.query)))
            return
        if split.path.startswith("/respond/"):
            self._handle_response_url(handler, split.path, raw, headers)
            return
        if split.path.startswith("/upload/"):
            self._handle_upload(handler, split.path, split.query, raw, headers)
            return
        method = split.path.removeprefix("/api/")
        body = self._parse(handler.headers.get("Content-Type") or "", raw, split.query)
        sent = handler.headers.get("Authorization") or ""
        token = sent.removeprefix("Bearer ").strip() if sent.startswith("Bearer ") else ""
        token = token or str(body.pop("token", ""))
        body.pop("token", None)
        fault = self._take_fault(method)
        status, payload, extra_headers, error = 200, {}, {}, None
        if fault is not None and fault.drop:
            self._record(
                method,
                path=split.path,
                headers=headers,
                token=token,
                body=body,
                files={},
                status=0,
                error="dropped",
            )
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.connection.shutdown(2)
            return
        try:
            if fault is not None and not fault.after_effect:
                raise self._fault_error(fault)
            if not token:
                raise SlackError("not_authed")
            expected = self.app_token if method == "apps.connections.open" else self.token
            if not secrets.compare_digest(token, expected):
                raise SlackError("invalid_auth")
            action = self._methods.get(method)
            if action is None:
                raise SlackError("unknown_method", status=404)
            payload = action(body)
            if fault is not None and fault.delay:
                time.sleep(fault.delay)
            if fault is not None and (fault.error or fault.status != 200):
                raise self._fault_error(fault)
        except SlackError as exc:
            status, error = exc.status, exc.code
            payload = {"ok": False, "error": exc.code, **exc.extra}
            if exc.status == 429:
                extra_headers["Retry-After"] = str(exc.extra.pop("retry_after", 1))
                payload.pop("retry_after", None)
        else:
            payload = {"ok": True, **payload}
        self._record(
            method,
            path=split.path,
            headers=headers,
            token=token,
            body=body,
            files={},
            status=status,
            error=error,
        )
        self._answer(handler, status, payload, extra_headers)

    def _handle_response_url(
        self, handler: BaseHTTPRequestHandler, path: str, raw: bytes, headers: dict[str, str]
    ) -> None:
        name = path.removeprefix("/respond/")
        fault = self._take_fault("response_url")
        try:
            body = json.loads(raw.decode("utf-8")) if raw else {}
        except ValueError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        status = 200 if fault is None else (fault.status if fault.status != 200 else 500)
        if status == 200 and isinstance(body, dict):
            with self._lock:
                self.responses.append({**body, "_name": name})
        self._record(
            "response_url",
            path=path,
            headers=headers,
            token="",  # no token: the request carried none  # nosec B106
            body=body if isinstance(body, dict) else {"_raw": body},
            files={},
            status=status,
            error=None,
        )
        self._answer(handler, status, {"ok": status == 200}, {})

    def _handle_upload(
        self,
        handler: BaseHTTPRequestHandler,
        path: str,
        query: str,
        raw: bytes,
        headers: dict[str, str],
    ) -> None:
        file_id = path.removeprefix("/upload/")
        params = dict(parse_qsl(query))
        fault = self._take_fault("upload")
        with self._lock:
            found = self.files.get(file_id)
        if fault is not None:
            status, text = fault.status if fault.status != 200 else 500, "error"
        elif found is None or params.get("s") != found.secret:
            status, text = 404, "not found"
        else:
            found.content = raw
            status, text = 200, f"OK - {len(raw)}"
        self._record(
            "upload",
            path=path,
            headers=headers,
            token="",  # no token: the request carried none  # nosec B106
            body=dict(params),
            files={file_id: raw},
            status=status,
            error=None,
        )
        data = text.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "text/plain; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        with contextlib.suppress(OSError):
            handler.wfile.write(data)

    @staticmethod
    def _parse(content_type: str, raw: bytes, query: str) -> dict[str, Any]:
        body: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
        if not raw:
            return body
        if content_type.startswith("application/json"):
            data = json.loads(raw.decode("utf-8"))
            if isinstance(data, dict):
                body.update(data)
        elif content_type.startswith("application/x-www-form-urlencoded"):
            body.update(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        else:
            body["_raw"] = raw.decode("utf-8", "replace")
        return body

    def _take_fault(self, method: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.method == method:
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    @staticmethod
    def _fault_error(fault: _Fault) -> SlackError:
        if fault.status == 429:
            return SlackError("ratelimited", status=429, retry_after=fault.retry_after or 1)
        if fault.status >= 500:
            return SlackError(fault.error or "internal_error", status=fault.status)
        return SlackError(fault.error or "fatal_error", status=fault.status)

    def _record(
        self,
        method: str,
        *,
        path: str,
        headers: dict[str, str],
        token: str,
        body: dict[str, Any],
        files: dict[str, bytes],
        status: int,
        error: str | None,
    ) -> None:
        expected = self.app_token if method == "apps.connections.open" else self.token
        authorized = bool(token) and secrets.compare_digest(token, expected)
        request = Request(method, path, headers, authorized, body, files, status, error)
        with self._lock:
            self.requests.append(request)

    @staticmethod
    def _answer(
        handler: BaseHTTPRequestHandler,
        status: int,
        payload: Mapping[str, Any],
        headers: Mapping[str, str],
    ) -> None:
        data = json.dumps(payload).encode()
        with contextlib.suppress(OSError):  # the client may have gone (a test killed it)
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json; charset=utf-8")
            handler.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)

    # -- methods -----------------------------------------------------------------------------

    def _channel(self, body: Mapping[str, Any], key: str = "channel") -> str:
        value = str(body.get(key) or "")
        if not value:
            raise SlackError("channel_not_found")
        found = self.channel_id(value)
        if found is None:
            raise SlackError("channel_not_found")
        return found

    def _new_ts(self) -> str:
        with self._lock:
            micros = max(int(time.time() * 1_000_000), self._last_ts + 1)
            self._last_ts = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    @staticmethod
    def _json_field(body: Mapping[str, Any], key: str) -> Any:
        value = body.get(key)
        if isinstance(value, str) and value:
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                raise SlackError(f"invalid_{key}") from None
        return value

    def _auth_test(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"https://{self.team}.slack.test/",
            "team": self.team,
            "user": "crystal-runbook",
            "team_id": TEAM_ID,
            "user_id": BOT_USER,
            "bot_id": "B0CRYSTAL",
        }

    def _post_message(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(body)
        text = str(body.get("text") or "")
        blocks = self._json_field(body, "blocks")
        if not text and not blocks:
            raise SlackError("no_text")
        if len(text) > 40_000:
            raise SlackError("msg_too_long")
        metadata = self._json_field(body, "metadata")
        thread_ts = body.get("thread_ts") or None
        message = Message(
            channel=channel,
            ts=self._new_ts(),
            text=text,
            thread_ts=str(thread_ts) if thread_ts else None,
            blocks=blocks if isinstance(blocks, list) else None,
            metadata=metadata if isinstance(metadata, dict) else None,
        )
        with self._lock:
            self.messages.append(message)
        return {"channel": channel, "ts": message.ts, "message": message.as_json(metadata=True)}

    def _find(self, channel: str, ts: str) -> Message | None:
        with self._lock:
            return next((m for m in self.messages if m.channel == channel and m.ts == ts), None)

    def _get_permalink(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(body)
        ts = str(body.get("message_ts") or "")
        if self._find(channel, ts) is None:
            raise SlackError("message_not_found")
        return {"channel": channel, "permalink": self.permalink(channel, ts)}

    def _channel_json(self, channel: str) -> dict[str, Any]:
        return {
            "id": channel,
            "name": self.channels[channel],
            "is_channel": True,
            "is_private": False,
            "is_archived": False,
            "is_member": True,
        }

    def _conversations_info(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"channel": self._channel_json(self._channel(body))}

    def _conversations_list(self, body: dict[str, Any]) -> dict[str, Any]:
        ids = sorted(self.channels)
        limit = max(1, min(int(body.get("limit") or 100), 1000))
        start = int(body.get("cursor") or 0) if str(body.get("cursor") or "0").isdigit() else 0
        page = ids[start : start + limit]
        following = start + limit if start + limit < len(ids) else None
        return {
            "channels": [self._channel_json(c) for c in page],
            "response_metadata": {"next_cursor": str(following) if following else ""},
        }

    @staticmethod
    def _window(body: Mapping[str, Any]) -> Callable[[Message], bool]:
        oldest = float(body.get("oldest") or 0)
        latest = float(body.get("latest") or 0) or float("inf")
        inclusive = str(body.get("inclusive") or "0").lower() in ("1", "true")

        def inside(message: Message) -> bool:
            ts = float(message.ts)
            if inclusive:
                return oldest <= ts <= latest
            return oldest < ts < latest

        return inside

    def _conversations_history(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(body)
        inside = self._window(body)
        metadata = str(body.get("include_all_metadata") or "0").lower() in ("1", "true")
        limit = max(1, min(int(body.get("limit") or 100), 1000))
        with self._lock:
            top = [
                m
                for m in self.messages
                if m.channel == channel and (m.thread_ts in (None, m.ts)) and inside(m)
            ]
        newest_first = sorted(top, key=lambda m: float(m.ts), reverse=True)[:limit]
        return {
            "messages": [m.as_json(metadata=metadata) for m in newest_first],
            "has_more": len(top) > limit,
        }

    def _conversations_replies(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(body)
        ts = str(body.get("ts") or "")
        parent = self._find(channel, ts)
        if parent is None:
            raise SlackError("thread_not_found")
        inside = self._window(body)
        metadata = str(body.get("include_all_metadata") or "0").lower() in ("1", "true")
        with self._lock:
            replies = [
                m
                for m in self.messages
                if m.channel == channel and m.thread_ts == ts and m.ts != ts and inside(m)
            ]
        thread = [parent, *sorted(replies, key=lambda m: float(m.ts))]
        return {"messages": [m.as_json(metadata=metadata) for m in thread], "has_more": False}

    def _update(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(body)
        ts = str(body.get("ts") or "")
        message = self._find(channel, ts)
        if message is None:
            raise SlackError("message_not_found")
        text = str(body.get("text") or "")
        blocks = self._json_field(body, "blocks")
        if not text and not blocks:
            raise SlackError("no_text")
        with self._lock:
            message.text = text
            message.blocks = blocks if isinstance(blocks, list) else None
            message.updates.append({"text": text, "blocks": message.blocks, "at": time.time()})
        return {"channel": channel, "ts": ts, "text": text}

    def _post_ephemeral(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(body)
        user = str(body.get("user") or "")
        if not user:
            raise SlackError("user_not_in_channel")
        text = str(body.get("text") or "")
        blocks = self._json_field(body, "blocks")
        if not text and not blocks:
            raise SlackError("no_text")
        ts = self._new_ts()
        with self._lock:
            self.ephemerals.append(
                {"channel": channel, "user": user, "text": text, "blocks": blocks, "ts": ts}
            )
        return {"message_ts": ts}

    def _usergroup_users(self, body: dict[str, Any]) -> dict[str, Any]:
        group = str(body.get("usergroup") or "")
        if group not in self.usergroups:
            raise SlackError("no_such_subteam")
        return {"users": list(self.usergroups[group])}

    def _connections_open(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"url": f"ws://127.0.0.1:{self.port}/link/?ticket={self.socket.ticket()}"}

    def _get_upload_url(self, body: dict[str, Any]) -> dict[str, Any]:
        filename = str(body.get("filename") or "")
        try:
            length = int(body.get("length") or 0)
        except ValueError:
            raise SlackError("invalid_arguments") from None
        if not filename or length <= 0:
            raise SlackError("invalid_arguments")
        file_id = "F" + secrets.token_hex(5).upper()
        secret = secrets.token_urlsafe(12)
        with self._lock:
            self.files[file_id] = File(file_id, filename, length, secret)
        return {"upload_url": f"{self.base}/upload/{file_id}?s={secret}", "file_id": file_id}

    def _complete_upload(self, body: dict[str, Any]) -> dict[str, Any]:
        listed = self._json_field(body, "files")
        if not isinstance(listed, list) or not listed:
            raise SlackError("invalid_arguments")
        channel = self._channel(body, "channel_id") if body.get("channel_id") else None
        thread_ts = str(body.get("thread_ts") or "") or None
        if channel and thread_ts and self._find(channel, thread_ts) is None:
            raise SlackError("thread_not_found")
        shared: list[File] = []
        for item in listed:
            with self._lock:
                found = self.files.get(str(item.get("id")))
            if found is None or found.content is None:
                raise SlackError("file_not_found")
            found.title = item.get("title") or found.filename
            found.channel, found.thread_ts = channel, thread_ts
            found.initial_comment = body.get("initial_comment") or None
            shared.append(found)
        if channel:
            message = Message(
                channel=channel,
                ts=self._new_ts(),
                text=str(body.get("initial_comment") or ""),
                thread_ts=thread_ts,
                files=[f.id for f in shared],
            )
            with self._lock:
                self.messages.append(message)
        return {
            "files": [
                {
                    "id": f.id,
                    "name": f.filename,
                    "title": f.title,
                    "size": len(f.content or b""),
                    "permalink": f"https://{self.team}.slack.test/files/{BOT_USER}/{f.id}/"
                    f"{f.filename}",
                }
                for f in shared
            ]
        }


def _define_fixture() -> Any:
    try:
        import pytest
    except ImportError:  # pragma: no cover - the fixture exists only where pytest does
        return None

    @pytest.fixture
    def slack_server() -> Iterator[SlackServer]:
        """A started local Slack Web API server, stopped after the test."""
        with SlackServer() as server:
            yield server

    return slack_server


slack_server = _define_fixture()
