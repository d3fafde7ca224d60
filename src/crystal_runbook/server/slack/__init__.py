"""The Slack app in `serve --slack`: Bolt over ``service.slack``, by HTTP or Socket Mode.

- ``settings``: the secrets, from the environment (or ``*_FILE``).
- ``verify``: the signature check in front of everything (HTTP mode).
- ``bolt``: the Bolt ``App`` and its two listeners (the command, the buttons).
- ``blocks``: replies in Block Kit.
- ``port``: ``service.slack.SlackPort`` over the Web API and response URLs.
- ``socket``: Socket Mode (a WebSocket Slack opens to us; no public URL needed).

``components`` wires them for ``process.Server``.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from crystal_runbook.server import http
from crystal_runbook.server.process import Component, Periodic
from crystal_runbook.server.slack import verify
from crystal_runbook.server.slack.settings import SlackAppSettings
from crystal_runbook.server.worker import Worker
from crystal_runbook.service.slack import SlackCommands
from crystal_runbook.service.workspace import Workspace

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    from slack_bolt import App

log = logging.getLogger("crystal_runbook.slack")

EVENTS_PATH = "/slack/events"
TICK_SECONDS = 5.0
"""How often expired buttons are looked for (their messages then say "expired")."""


class SlackEndpoint:
    """``POST /slack/events``: the signature check, then Bolt."""

    def __init__(
        self, app: App, secret: str, *, observe_ack: Callable[[float], None] | None = None
    ) -> None:
        from slack_bolt.adapter.wsgi import SlackRequestHandler

        self.secret = secret
        self.handler = SlackRequestHandler(app, path=EVENTS_PATH)
        self.observe_ack = observe_ack
        """Called with the seconds from a request's arrival to its answer (/metrics)."""

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self.observe_ack is None:
            return self._answer(environ, start_response)
        started = time.perf_counter()
        answer = list(self._answer(environ, start_response))
        self.observe_ack(time.perf_counter() - started)
        return answer

    def _answer(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return http.text_response(start_response, "405 Method Not Allowed", "use POST\n")
        try:
            body = verify.read_verified(environ, self.secret)
        except verify.Rejected as exc:
            log.warning("refused a request to %s: %s", EVENTS_PATH, exc.reason)
            return http.text_response(start_response, exc.status, exc.reason + "\n")
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return self.handler(environ, start_response)


class CommandsComponent:
    """Expires unpressed buttons every few seconds; on stop, ends waiting approvals."""

    name = "slack-commands"

    def __init__(self, commands: SlackCommands) -> None:
        self.commands = commands
        self.ticker = Periodic("slack-tick", TICK_SECONDS, commands.tick)

    def start(self) -> None:
        self.ticker.start()

    def stop(self, deadline: float) -> None:
        self.commands.stop()
        self.ticker.stop(deadline)


class SocketMode:
    """Socket Mode: Slack's events over a WebSocket that this process opens."""

    name = "slack-socket-mode"

    def __init__(self, app: App, settings: SlackAppSettings) -> None:
        self.app = app
        self.settings = settings
        self.handler: Any = None

    def start(self) -> None:
        from slack_bolt.adapter.socket_mode import SocketModeHandler
        from slack_sdk import WebClient

        self.handler = SocketModeHandler(
            self.app,
            app_token=self.settings.app_token,
            web_client=WebClient(base_url=self.settings.web.api_url),
            logger=logging.getLogger("crystal_runbook.slack.socket"),
        )
        self.handler.connect()

    def stop(self, deadline: float) -> None:
        if self.handler is not None:
            self.handler.close()


def components(
    *,
    base: Workspace,
    router: http.Router,
    worker: Worker,
    settings: SlackAppSettings,
    socket_mode: bool,
    observe_ack: Callable[[float], None] | None = None,
) -> tuple[SlackCommands, list[Component]]:
    """The Slack app's components (and its use cases, for tests and benchmarks).

    Raises:
        errors.ConfigurationError: a secret the mode needs is missing (exit 2).
        errors.RunbookInvalid: `access.yaml` or `services.yaml` has problems (exit 2).
    """
    from crystal_runbook.server.slack.bolt import build_app
    from crystal_runbook.server.slack.port import WebPort

    settings.require(socket_mode=socket_mode)
    settings.hide_in(base.redactor)
    port = WebPort(settings.web, redactor=base.redactor)
    commands = SlackCommands(base=base, port=port, submit=worker.submit)
    app = build_app(commands, settings, port, worker.submit)
    found: list[Component] = [CommandsComponent(commands)]
    if socket_mode:
        found.append(SocketMode(app, settings))
    else:
        assert settings.signing_secret is not None  # noqa: S101 - checked by require()  # nosec B101
        router.mount(
            EVENTS_PATH, SlackEndpoint(app, settings.signing_secret, observe_ack=observe_ack)
        )
    return commands, found
