"""Slack integration tests: the local Slack Web API server over real HTTP, the real slack_sdk."""

from __future__ import annotations

import pytest

from crystal_runbook.testing.slack_server import slack_server  # the product's own fixture

__all__ = ["slack_server"]


@pytest.fixture(autouse=True)
def _only_the_local_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Slack settings leak in from the machine: each test says which server it uses."""
    for name in ("SLACK_BOT_TOKEN", "SLACK_BOT_TOKEN_FILE", "SLACK_API_URL"):
        monkeypatch.delenv(name, raising=False)
