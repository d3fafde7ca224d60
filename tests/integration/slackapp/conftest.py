"""A running `crystal-runbook serve --slack` over the sandbox and the local Slack server.

Every stack is real: the sandbox (Kubernetes API emulator, checked with kubectl), the local
Slack Web API server (``crystal_runbook.testing.slack_server``), and the installed
`crystal-runbook serve` process, driven by signed HTTP requests
(``crystal_runbook.testing.slack_requests``) or Socket Mode envelopes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crystal_runbook import sandbox
from crystal_runbook.engine import journal as journal_mod
from crystal_runbook.server import app as serve_app
from crystal_runbook.service.workspace import Workspace
from crystal_runbook.testing.slack_requests import SlackAppClient
from crystal_runbook.testing.slack_server import SlackServer
from tests.conftest import REPO
from tests.integration.kube.conftest import Cluster
from tests.polling import wait_for

BIN = Path(sys.executable).parent
SECRET = "crystal-test-signing-secret-0123456789"  # noqa: S105 - a fake for tests
ALICE, BOB, MALLORY = "U0ALICE", "U0BOB", "U0MALLORY"
CHANNEL = "C0CRYSTAL01"
ACCESS = f"""
environments:
  sandbox:
    allow:
      - {{commands: ["*"], users: [{ALICE}, {BOB}], channels: ["*"]}}
  production:
    approvers: 2
    allow:
      - {{commands: [rollback, status, runs], users: [{ALICE}], usergroups: [S0ONCALL], channels: [{CHANNEL}]}}
"""


class Stack:
    """Sandbox, local Slack and a `serve` process in one temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sb = sandbox.start(root / ".crystal", ready_delay=0.1)
        self.sb.config.update({"burn_ramp_seconds": 1.0, "backoff_base": 0.2})
        self.cluster = Cluster(self.sb, root)
        self.slack = SlackServer().start()
        self.slack.usergroups["S0ONCALL"] = [BOB]
        self.proc: subprocess.Popen[str] | None = None
        self.runbooks = REPO / "runbooks"
        self.here: tuple[serve_app.Built, threading.Thread, Workspace] | None = None
        self.clients: list[SlackAppClient] = []
        self.port = 0
        self.log = root / "serve.log"
        inventory = root / "inventory"
        inventory.mkdir(exist_ok=True)
        block = (
            "        kubernetes: {context: crystal-sandbox, namespace: crystal, deployment: maia, "
            f"kubeconfig: {self.sb.kubeconfig_path}}}\n"
            f"        health_url: {self.sb.health_url()}\n"
            '        slack_channel: "#maia-incidents"\n'
        )
        (inventory / "services.yaml").write_text(
            "default_environment: sandbox\nservices:\n  maia:\n    environments:\n"
            f"      sandbox:\n{block}      production:\n{block}"
        )
        (inventory / "access.yaml").write_text(ACCESS)
        self.sb.settle(10)

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CRYSTAL_", "KUBECONFIG", "SLACK_"))
        }
        env.update(
            CRYSTAL_STATE_DIR=str(self.root / ".crystal"),
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            HOME=str(self.root),
            SLACK_SIGNING_SECRET=SECRET,
            **self.slack.env(),
        )
        env.update(extra)
        return env

    def serve(self, *args: str, **env: str) -> SlackAppClient:
        """Start `serve` and wait until it listens."""
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "crystal-runbook"), "--runbooks", str(self.runbooks), "serve",
                 "--host", "127.0.0.1", "--port", "0", *args],
                cwd=self.root,
                env=self.env(**env),
                stderr=log,
                text=True,
            )
        line = wait_for(self._listening, 30, "serve to listen")
        self.port = int(line.split("127.0.0.1:")[1].split(" ")[0])
        client = SlackAppClient(f"http://127.0.0.1:{self.port}", SECRET)
        self.clients.append(client)
        return client

    def serve_here(self, monkeypatch: pytest.MonkeyPatch) -> tuple[SlackAppClient, serve_app.Built]:
        """`serve --slack` in this process (its parts, e.g. ``commands.approvals``, can then
        be looked at and tuned), listening on a free port; stopped by ``close``."""
        for name in [k for k in os.environ if k.startswith(("CRYSTAL_", "SLACK_"))]:
            monkeypatch.delenv(name)
        for name, value in self.env().items():
            if name.startswith("SLACK_"):
                monkeypatch.setenv(name, value)
        ws = Workspace(
            state_dir=self.root / ".crystal",
            inventory_dir=self.root / "inventory",
            runbooks_dir=self.runbooks,
            env=None,
        )
        options = serve_app.ServeOptions(host="127.0.0.1", port=0, slack=True, grace=5.0)
        built = serve_app.build(ws, options)
        thread = threading.Thread(target=built.server.run, name="serve-here", daemon=True)
        thread.start()
        wait_for(lambda: built.http.port, 30, "serve to listen")
        self.here = (built, thread, ws)
        client = SlackAppClient(f"http://127.0.0.1:{built.http.port}", SECRET)
        self.clients.append(client)
        return client, built

    def _listening(self) -> str | None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"serve exited {self.proc.returncode}:\n{self.log.read_text()}")
        return next((ln for ln in self.log.read_text().splitlines() if "listening on" in ln), None)

    def stop(self) -> int | None:
        """SIGTERM `serve`; returns its exit code."""
        code = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            code = self.proc.wait(60)
        elif self.proc is not None:
            code = self.proc.returncode
        self.proc = None
        return code

    def close(self) -> list[str]:
        for client in self.clients:
            client.close()
        self.stop()
        if self.here is not None:
            built, thread, ws = self.here
            built.server.stopping.set()
            thread.join(30)
            ws.close()
            self.here = None
        self.slack.stop()
        errors = list(self.sb.internal_errors)
        self.sb.stop()
        return errors

    # -- what happened -------------------------------------------------------------------------

    def journal(self) -> journal_mod.SqliteJournal:
        return journal_mod.open_journal(self.root / ".crystal")

    def runs(self) -> list[journal_mod.RunRecord]:
        journal = self.journal()
        try:
            return [journal.get_run(r.id) for r in journal.list_runs(limit=100)]
        finally:
            journal.close()

    def refusals(self) -> list[journal_mod.EventRecord]:
        journal = self.journal()
        try:
            return [e for e in journal.events("slack") if e.status == "refused"]
        finally:
            journal.close()

    def confirm_message(self, index: int = -1) -> Any:
        """The latest message with buttons in the channel, and its buttons by action."""

        def found() -> Any:
            with_buttons = [m for m in self.slack.posted(CHANNEL) if buttons(m)]
            return with_buttons if with_buttons else None

        return wait_for(found, 30, "a confirm message")[index]

    def finished_run(self, timeout: float = 60.0) -> journal_mod.RunRecord:
        def done() -> journal_mod.RunRecord | None:
            runs = [r for r in self.runs() if r.status != "running"]
            return runs[0] if runs else None

        return wait_for(done, timeout, "the run to finish")


def buttons(message: Any) -> dict[str, str]:
    """``{action: value}`` of a recorded message's buttons."""
    found: dict[str, str] = {}
    for block in message.blocks or []:
        if block.get("type") == "actions":
            for element in block.get("elements", []):
                found[element["action_id"].removeprefix("crystal_")] = element["value"]
    return found


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A fresh stack per test (for tests that change the sandbox)."""
    built = Stack(tmp_path)
    try:
        yield built
    finally:
        errors = built.close()
    assert errors == [], "\n".join(errors)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, SlackAppClient]]:
    """One stack with `serve --slack` running, for tests that must change nothing."""
    built = Stack(tmp_path_factory.mktemp("slack-shared"))
    try:
        yield built, built.serve("--slack")
    finally:
        errors = built.close()
    assert errors == [], "\n".join(errors)


@pytest.fixture
def untouched(shared: tuple[Stack, SlackAppClient]) -> Iterator[tuple[Stack, SlackAppClient]]:
    """The shared stack; after the test, no mutating request reached the sandbox and no run
    was journalled."""
    stack, _ = shared
    before = stack.cluster.request_count()
    yield shared
    time.sleep(0.3)  # a background job would have started by now
    assert stack.cluster.mutations(before, exclude_leases=False) == []
    assert stack.runs() == []


def dump(stack: Stack) -> str:
    """What serve logged (for assertion messages)."""
    return stack.log.read_text() if stack.log.exists() else ""


__all__ = ["ALICE", "BOB", "CHANNEL", "MALLORY", "Stack", "buttons", "dump", "json", "stack"]
