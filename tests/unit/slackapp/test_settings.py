"""The Slack app's secrets come from the environment or the files it names, and are hidden."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from crystal_runbook import errors
from crystal_runbook.engine.secrets import Redactor
from crystal_runbook.server.slack.settings import SlackAppSettings, read_secret

# token shapes made fresh for each run (no token-like literal in the repository)
BOT_TOKEN = f"xoxb-{secrets.token_hex(8)}"
APP_TOKEN = f"xapp-1-{secrets.token_hex(8)}"


class TestSecrets:
    def test_the_variable_wins_over_its_file(self, tmp_path: Path) -> None:
        """SLACK_SIGNING_SECRET is used as given; its *_FILE only when it is unset or blank."""
        path = tmp_path / "signing"
        path.write_text("from-the-file\n")
        env = {"SLACK_SIGNING_SECRET": "from-the-env", "SLACK_SIGNING_SECRET_FILE": str(path)}
        assert read_secret(env, "SLACK_SIGNING_SECRET") == "from-the-env"
        env["SLACK_SIGNING_SECRET"] = "  "  # noqa: S105 - a blank value, not a secret
        assert read_secret(env, "SLACK_SIGNING_SECRET") == "from-the-file"
        assert read_secret({}, "SLACK_SIGNING_SECRET") is None

    def test_secrets_read_from_files_are_hidden_and_never_shown(self, tmp_path: Path) -> None:
        """Secrets from *_FILE (not in os.environ) reach the redactor; repr() shows none."""
        for name, value in (("signing", "s3cret-signing-value"), ("app", APP_TOKEN)):
            (tmp_path / name).write_text(value)
        settings = SlackAppSettings.from_env(
            {
                "SLACK_BOT_TOKEN": BOT_TOKEN,
                "SLACK_SIGNING_SECRET_FILE": str(tmp_path / "signing"),
                "SLACK_APP_TOKEN_FILE": str(tmp_path / "app"),
            }
        )
        assert (settings.signing_secret, settings.app_token) == (
            "s3cret-signing-value",
            APP_TOKEN,
        )
        settings.require(socket_mode=True)
        settings.require(socket_mode=False)
        for secret in ("s3cret-signing-value", APP_TOKEN, BOT_TOKEN):
            assert secret not in repr(settings)
        redactor = Redactor({})
        settings.hide_in(redactor)
        masked = redactor.text(f"sig s3cret-signing-value app {APP_TOKEN} bot {BOT_TOKEN}")
        for secret in ("s3cret-signing-value", APP_TOKEN, BOT_TOKEN):
            assert secret not in masked, masked

    def test_an_unreadable_file_is_a_configuration_error(self, tmp_path: Path) -> None:
        """A *_FILE that cannot be read names the variable and the path."""
        with pytest.raises(errors.ConfigurationError, match="SLACK_APP_TOKEN_FILE: cannot read"):
            read_secret({"SLACK_APP_TOKEN_FILE": str(tmp_path / "missing")}, "SLACK_APP_TOKEN")


def test_the_path_in_a_file_variable_is_not_hidden() -> None:
    """SLACK_SIGNING_SECRET_FILE's value is a path: errors may name it; the secret is hidden."""
    redactor = Redactor(
        {"SLACK_SIGNING_SECRET_FILE": "/run/secrets/signing", "SLACK_BOT_TOKEN": BOT_TOKEN}
    )
    assert redactor.text("cannot read /run/secrets/signing") == "cannot read /run/secrets/signing"
    assert BOT_TOKEN not in redactor.text(f"token {BOT_TOKEN}")
