"""Fakes that ship with crystal-runbook, for its own tests and for users' runbook tests.

Like httpx's ``MockTransport``: fakes live in one place and are part of the product.
``ACTIONS`` are fake actions (load them with ``CRYSTAL_ACTION_MODULES=crystal_runbook.testing``),
``RecordingSink`` records engine events, ``SlackServer`` (``testing.slack_server``) is a local
Slack Web API server, loaded on first use so that the fake actions stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crystal_runbook.testing.actions import (
    ACTIONS,
    FAKE_ROLLBACK_RUNBOOK,
    FakeFail,
    FakeNoop,
    FakeOutput,
    FakeSet,
)
from crystal_runbook.testing.sinks import RecordingSink

if TYPE_CHECKING:
    from crystal_runbook.testing.slack_server import SlackServer

__all__ = [
    "ACTIONS",
    "FAKE_ROLLBACK_RUNBOOK",
    "FakeFail",
    "FakeNoop",
    "FakeOutput",
    "FakeSet",
    "RecordingSink",
    "SlackServer",
]


def __getattr__(name: str) -> Any:
    if name == "SlackServer":  # http.server only for the tests that use it
        from crystal_runbook.testing.slack_server import SlackServer

        return SlackServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
