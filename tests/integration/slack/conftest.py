"""Slack integration tests: the local Slack Web API server over real HTTP, the real slack_sdk."""

from __future__ import annotations

import pytest

from crystal_runbook.testing.slack_server import slack_server  # the product's own fixture

__all__ = ["slack_server"]


@pytest.fixture(autouse=True)
def _only_the_local_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Slack settings leak in from the machine: each test says which server it uses.
    These tests count the calls of `slack.notify` and the outbox alone: the live progress
    message, which adds its own, has its tests in tests/integration/slackapp."""
    for name in ("SLACK_BOT_TOKEN", "SLACK_BOT_TOKEN_FILE", "SLACK_API_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CRYSTAL_LIVE_PROGRESS", "off")
