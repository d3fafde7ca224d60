"""README's `crystal-runbook serve --slack --scheduler --watch` on the embedded defaults: the
shipped inventory and runbooks, the SQLite journal, the sandbox (Slack: the local server)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from crystal_runbook.testing.slack_requests import SlackAppClient
from crystal_runbook.testing.slack_server import SlackServer
from tests.conftest import Cli

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

BIN = Path(sys.executable).parent
SECRET = "crystal-test-signing-secret-0123456789"  # noqa: S105 - a fake for tests

# fake tokens of the right shapes, made fresh for each run (no token-like literal in the repo)
BOT_TOKEN = f"xoxb-{secrets.token_hex(8)}"
NOT_AN_APP_TOKEN = f"xoxb-{secrets.token_hex(8)}"  # a bot token where an app token belongs


def test_serve_slack_scheduler_watch_on_the_embedded_defaults(tmp_path: Path) -> None:
    """It starts, leads both duties, answers /healthz, /readyz, /metrics and Slack, and
    stops on SIGTERM with exit 0, leaving its Leases released."""
    cwd = tmp_path / "anywhere"
    cwd.mkdir()
    state = tmp_path / "state"
    slack = SlackServer().start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRYSTAL_", "KUBECONFIG", "SLACK_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        CRYSTAL_STATE_DIR=str(state),
        HOME=str(tmp_path),
        SLACK_SIGNING_SECRET=SECRET,
        **slack.env(),
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "crystal-runbook"), *args],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
        )

    up = cli("sandbox", "up", "--detach", "--port", "0", "--ready-delay", "0.1")
    assert up.returncode == 0, up.stderr
    log = tmp_path / "serve.log"
    try:
        with log.open("w") as out:
            proc = subprocess.Popen(
                [str(BIN / "crystal-runbook"), "serve", "--slack", "--scheduler", "--watch",
                 "--host", "127.0.0.1", "--port", "0"],
                cwd=cwd, env=env, stderr=out, stdout=subprocess.DEVNULL,
            )
        try:
            deadline = time.monotonic() + 60
            while "campaigns for" not in log.read_text():
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            port = int(log.read_text().split("127.0.0.1:")[1].split(" ")[0])
            base = f"http://127.0.0.1:{port}"

            def leaders() -> dict[str, float]:
                text = httpx.get(f"{base}/metrics", timeout=10).text
                return {
                    s.labels["duty"]: s.value
                    for family in text_string_to_metric_families(text)
                    for s in family.samples
                    if s.name == "crystal_runbook_lease_leader"
                }

            while leaders() != {"scheduler": 1.0, "watch/maia/sandbox": 1.0}:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
            ready = httpx.get(f"{base}/readyz", timeout=10)
            assert ready.status_code == 200, ready.text
            client = SlackAppClient(base, SECRET)
            try:
                answer = client.command("help", user_id="U0ALICE", channel_id="C0CRYSTAL01")
            finally:
                client.close()
            assert answer.status == 200
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(90)
        assert code == 0, log.read_text()
        text = log.read_text()
        assert "lease crystal-runbook-serve-scheduler released" in text
        assert "lease crystal-runbook-serve-watch-maia-sandbox released" in text
        assert "Traceback" not in text
        assert (state / "journal.db").exists()
    finally:
        cli("sandbox", "down")
        slack.stop()


class TestBadInput:
    """serve refuses to start on bad input, with exit 2 and what to fix, before listening."""

    def test_nothing_to_serve(self, cli: Cli) -> None:
        """No duty asked for."""
        out = cli("serve", "--port", "0")
        assert out.returncode == 2
        assert "nothing to serve" in out.stderr
        assert "--scheduler" in out.stderr

    def test_broken_serve_yaml(self, cli: Cli) -> None:
        """A serve.yaml mistake is reported with file:line:column."""
        cli.write(
            "inventory/services.yaml",
            """
            services:
              maia:
                environments:
                  sandbox: {kubernetes: {deployment: maia}}
            """,
        )
        cli.write("inventory/serve.yaml", "watch:\n  - {service: maia, env: sandbox, interval: soon}\n")
        out = cli("serve", "--watch", "--port", "0")
        assert out.returncode == 2, out.stderr
        assert "inventory/serve.yaml:2:" in out.stderr
        assert "listening" not in out.stderr

    @pytest.mark.parametrize(
        ("args", "env", "expected"),
        [
            (("--slack",), {"SLACK_BOT_TOKEN": "", "SLACK_SIGNING_SECRET": SECRET},
             "SLACK_BOT_TOKEN is not set: the Slack app needs its bot token"),
            (("--slack",), {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": ""},
             "SLACK_SIGNING_SECRET is not set: without it no request can be trusted"),
            (("--slack",), {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": "",
                            "SLACK_SIGNING_SECRET_FILE": "/nonexistent/signing"},
             # a *_FILE variable holds a path, not a secret: the error names the file
             "SLACK_SIGNING_SECRET_FILE: cannot read /nonexistent/signing: No such file or directory"),
            (("--socket-mode",), {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": ""},
             "--socket-mode needs SLACK_APP_TOKEN (an app-level token, xapp-...)"),
            (("--socket-mode",), {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": NOT_AN_APP_TOKEN},
             "--socket-mode needs SLACK_APP_TOKEN (an app-level token, xapp-...)"),
        ],
        ids=["no-bot-token", "no-signing-secret", "unreadable-secret-file", "no-app-token",
             "not-an-app-token"],
    )
    def test_the_slack_app_without_its_secrets(
        self, cli: Cli, args: tuple[str, ...], env: dict[str, str], expected: str
    ) -> None:
        """The Slack app refuses to start without the secrets its mode needs (exit 2), saying
        which and where to find it, and never prints a secret it was given."""
        out = cli("serve", *args, "--host", "127.0.0.1", "--port", "0", **env)
        assert out.returncode == 2, out.stderr
        assert expected in out.stderr, out.stderr
        assert "listening" not in out.stderr
        assert "Traceback" not in out.stderr
        assert SECRET not in out.stderr
        assert NOT_AN_APP_TOKEN not in out.stderr
