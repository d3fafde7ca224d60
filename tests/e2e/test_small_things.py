"""The small things a user hits first: version, completion, colour, usage lines, listings."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import socket
import subprocess

import pytest
import typer.main

from crystal_runbook.cli import app
from tests.conftest import REPO, Cli

WORK = """
apiVersion: crystal-runbook/v1
kind: Runbook
name: work
params:
  service: {type: string, required: true}
steps:
  - id: announce
    uses: slack.notify
    with: {text: "work on {{ service.name }}"}
  - id: a-step-with-a-much-longer-identifier-than-the-others
    uses: fake.set
    with: {key: a, value: "1"}
  - id: b
    uses: fake.noop
  - id: document
    uses: incident.write
"""

SERVICES = """
default_environment: sandbox
services:
  maia:
    environments:
      sandbox:
        slack_channel: "#maia-incidents"
"""


@pytest.fixture
def worked(cli: Cli) -> Cli:
    """One finished run of `work` (a notice queued in the outbox, a document written)."""
    cli.write("inventory/services.yaml", SERVICES)
    cli.write("runbooks/work.yaml", WORK)
    done = cli("run", "work", "-p", "service=maia")
    assert done.returncode == 0, done.stdout + done.stderr
    return cli


def in_a_terminal(cli: Cli, *args: str, **env: str) -> str:
    """Run the command with stdout and stderr on a pseudo-terminal; everything it printed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        cli.argv(*args), cwd=cli.root, env=cli.env(**env), stdout=follower, stderr=follower
    )
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        if not ready:
            break
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(30)
    os.close(leader)
    return b"".join(chunks).decode("utf-8", "replace")


class TestVersionAndCompletion:
    def test_version(self, cli: Cli) -> None:
        """`--version` prints the version and exits 0."""
        out = cli("--version")
        assert out.returncode == 0
        assert out.stdout.strip() == "crystal-runbook 0.1.0"

    def test_typers_completion(self, cli: Cli) -> None:
        """typer's own --install-completion / --show-completion are there and work."""
        helped = cli("--help")
        assert "--install-completion" in helped.stdout
        assert "--show-completion" in helped.stdout
        shown = cli("--show-completion", "bash")
        assert shown.returncode == 0, shown.stderr
        assert "_CRYSTAL_RUNBOOK_COMPLETE" in shown.stdout


def usage_lines() -> list[str]:
    """The usage line of every command, as click writes it."""
    import click

    root = typer.main.get_command(app)
    found: list[str] = []

    def walk(command: click.Command, parent: click.Context | None, name: str) -> None:
        ctx = click.Context(command, info_name=name, parent=parent)
        if parent is not None:
            found.append(command.get_usage(ctx))
        for sub_name, sub in (getattr(command, "commands", None) or {}).items():
            walk(sub, ctx, sub_name)

    walk(root, None, "crystal-runbook")
    return found


def test_usage_lines_name_arguments_in_capitals() -> None:
    """`Usage: crystal-runbook rollback [OPTIONS] SERVICE`, never `{service}`."""
    lines = usage_lines()
    assert len(lines) > 20
    assert [line for line in lines if "{" in line] == []
    assert "Usage: crystal-runbook rollback [OPTIONS] SERVICE" in lines
    assert "Usage: crystal-runbook run [OPTIONS] RUNBOOK" in lines
    assert "Usage: crystal-runbook resume [OPTIONS] RUN_ID" in lines
    assert "Usage: crystal-runbook incident show [OPTIONS] [RUN_ID]" in lines


class TestColour:
    def test_statuses_are_coloured_in_a_terminal_only(self, worked: Cli) -> None:
        """ANSI colour on a terminal; none with NO_COLOR, none in a pipe."""
        assert "\x1b[32m" in in_a_terminal(worked, "runs")  # ok in green
        assert "\x1b[" not in in_a_terminal(worked, "runs", NO_COLOR="1")
        piped = worked("runs")
        assert "\x1b[" not in piped.stdout
        assert " ok " in piped.stdout


class TestListings:
    def test_incident_show_without_an_id_shows_the_latest(self, worked: Cli) -> None:
        """`incident show` alone: the latest run's document."""
        run_id = json.loads(worked("runs", "-o", "json").stdout)[0]["id"]
        shown = worked("incident", "show")
        assert shown.returncode == 0, shown.stderr
        assert f"`{run_id}`" in shown.stdout
        assert f"-{run_id}.md" in shown.stderr

    def test_incident_show_without_runs_says_so(self, cli: Cli) -> None:
        """No run yet: exit 2 with a clear message, no traceback."""
        shown = cli("incident", "show")
        assert shown.returncode == 2
        assert "no run with an incident document" in shown.stderr

    def test_outbox_has_a_header_row(self, worked: Cli) -> None:
        """`outbox` starts with the column names."""
        listed = worked("outbox").stdout.splitlines()
        assert listed[0].split() == ["CREATED", "(UTC)", "STATUS", "CHANNEL", "RUN/STEP", "TEXT"]
        assert "#maia-incidents" in listed[1]

    def test_runs_show_columns_stay_aligned(self, worked: Cli) -> None:
        """A long step id widens its column; every step's action starts at the same place."""
        run_id = json.loads(worked("runs", "-o", "json").stdout)[0]["id"]
        lines = [
            line
            for line in worked("runs", "show", run_id).stdout.splitlines()
            if re.search(r" (slack\.notify|fake\.set|fake\.noop|incident\.write) ", line)
        ]
        assert len(lines) == 4
        starts = {line.index(uses) for line, uses in zip(
            lines, ["slack.notify", "fake.set", "fake.noop", "incident.write"], strict=True
        )}
        assert len(starts) == 1
        statuses = {line.index(" ok ") for line in lines}
        assert len(statuses) == 1

    def test_attempts_count_attempts_not_phases(self, worked: Cli) -> None:
        """A step that applied once and was verified made one attempt."""
        run_id = json.loads(worked("runs", "-o", "json").stdout)[0]["id"]
        steps = json.loads(worked("runs", "show", run_id, "-o", "json").stdout)["steps"]
        assert {s["id"]: s["attempts"] for s in steps}[
            "a-step-with-a-much-longer-identifier-than-the-others"
        ] == 1


class TestClearErrors:
    def test_missing_kubeconfig_names_the_path(self, cli: Cli) -> None:
        """No file at the inventory's kubeconfig: "no kubeconfig at PATH", exit 2."""
        missing = cli.root / "nowhere" / "kubeconfig.yaml"
        cli.write(
            "inventory/services.yaml",
            f"""
            services:
              maia:
                environments:
                  sandbox:
                    kubernetes: {{namespace: crystal, deployment: maia, kubeconfig: "{missing}"}}
            """,
        )
        out = cli("logs", "maia", "--env", "sandbox")
        assert out.returncode == 2
        assert f"no kubeconfig at {missing}" in out.stderr
        assert "Invalid kube-config" not in out.stderr

    def test_a_missing_kubeconfig_is_bad_input_for_the_dry_run_as_for_the_run(
        self, cli: Cli
    ) -> None:
        """`rollback --dry-run` exits 2 like the real rollback, not 1 ("refuses")."""
        missing = cli.root / "nowhere" / "kubeconfig.yaml"
        cli.write(
            "inventory/services.yaml",
            f"""
            services:
              maia:
                environments:
                  sandbox:
                    kubernetes: {{namespace: crystal, deployment: maia, kubeconfig: "{missing}"}}
            """,
        )
        shipped = ("--runbooks", str(REPO / "runbooks"))
        real = cli(*shipped, "rollback", "maia", "--env", "sandbox", "--yes")
        assert real.returncode == 2, real.stdout + real.stderr
        dry = cli(*shipped, "rollback", "maia", "--env", "sandbox", "--dry-run")
        assert dry.returncode == 2, dry.stdout + dry.stderr
        assert f"no kubeconfig at {missing}" in dry.stdout + dry.stderr
        assert "(exit 1)" not in dry.stdout
        planned = cli(*shipped, "plan", "rollback", "-p", "service=maia", "--env", "sandbox")
        assert planned.returncode == 2, planned.stdout + planned.stderr

    def test_sandbox_up_on_a_busy_port_names_it(self, cli: Cli) -> None:
        """--port taken (also --detach): exit 1 naming the port, suggesting --port 0."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            for detach in ([], ["--detach"]):
                out = cli("sandbox", "up", "--port", str(port), *detach)
                assert out.returncode == 1
                assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
                assert "--port 0" in out.stderr


def test_test_sh_installs_its_packages_through_install_debs() -> None:
    """scripts/test.sh hands its Debian package list to scripts/install-debs.sh."""
    text = (REPO / "scripts" / "test.sh").read_text()
    assert 'scripts/install-debs.sh "${debs[@]}"' in text
    assert "apt-get" not in text
