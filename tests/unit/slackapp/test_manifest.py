"""The shipped Slack app manifest matches what `serve --slack` serves."""

from __future__ import annotations

import yaml

from tests.conftest import REPO


def test_manifest_names_the_command_the_endpoint_and_the_scopes() -> None:
    """/crystal and interactivity at /slack/events, with every scope the app uses."""
    manifest = yaml.safe_load((REPO / "docs" / "slack-app-manifest.yaml").read_text())
    command = manifest["features"]["slash_commands"][0]
    assert command["command"] == "/crystal"
    assert command["url"].endswith("/slack/events")
    assert manifest["settings"]["interactivity"]["request_url"].endswith("/slack/events")
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert "socket_mode_enabled" in manifest["settings"]
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"commands", "chat:write", "files:write", "usergroups:read", "channels:history"} <= scopes
    docs = (REPO / "docs" / "slack.md").read_text()
    assert "slack-app-manifest.yaml" in docs
    assert "crystal-runbook serve --slack --port 3000" in docs
