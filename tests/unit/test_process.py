"""The console script's process: garbage collection by command, and the fast exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from crystal_runbook import process


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class TestCommandName:
    """The command is found behind global options and their values."""

    @pytest.mark.parametrize(
        ("argv", "name"),
        [
            (["rollback", "maia", "--yes"], "rollback"),
            (["--env", "production", "-v", "watch", "maia"], "watch"),
            (["-o", "json", "--state-dir=/tmp/x", "runs"], "runs"),
            (["--help"], None),
        ],
    )
    def test_found(self, argv: list[str], name: str | None) -> None:
        """Options with values are skipped with their value; flags alone."""
        assert process.command_name(argv) == name


class TestFinish:
    """`finish` ends the process with the command's status, output flushed, atexit run."""

    def test_status_output_and_atexit(self) -> None:
        """Buffered output is written, atexit handlers run, the status is the command's."""
        done = run_python(
            """
            import atexit, sys
            from crystal_runbook import process
            atexit.register(lambda: print("atexit ran", file=sys.stderr))
            sys.stdout.write("result")
            process.finish(3)
            """
        )
        assert done.returncode == 3
        assert done.stdout == "result"
        assert "atexit ran" in done.stderr

    def test_message_status(self) -> None:
        """A message as the exit code is printed and ends with status 1, like sys.exit."""
        done = run_python(
            """
            from crystal_runbook import process
            process.finish("something went wrong")
            """
        )
        assert done.returncode == 1
        assert "something went wrong" in done.stderr

    def test_waits_for_a_running_thread(self) -> None:
        """With another non-daemon thread running, the process waits for it as usual."""
        done = run_python(
            """
            import threading, time
            from crystal_runbook import process
            def late():
                time.sleep(0.3)
                print("thread finished", flush=True)
            threading.Thread(target=late).start()
            process.finish(0)
            """
        )
        assert done.returncode == 0
        assert "thread finished" in done.stdout


class TestGarbageCollection:
    """Commands that run to completion start without the collector; long-running ones keep it."""

    @pytest.mark.parametrize(("command", "enabled"), [("runs", False), ("watch", True)])
    def test_by_command(self, command: str, enabled: bool) -> None:
        """`runs` runs with the collector off; `watch` turns it back on."""
        done = run_python(
            f"""
            import gc, sys
            from crystal_runbook import cli, process
            cli.main = lambda argv=None: print(gc.isenabled())
            sys.argv = ["crystal-runbook", "{command}", "--help"]
            process.main()
            """
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str(enabled)


class TestStartUp:
    """What the command-line process leaves out of its start-up."""

    def test_no_pydantic_plugins_and_no_kubernetes_validate(self) -> None:
        """Pydantic plugins are off, and kubernetes-validate counts as not installed."""
        done = run_python(
            """
            import os, sys
            from crystal_runbook import cli, process
            def probe(argv=None):
                try:
                    import kubernetes_validate  # noqa: F401
                    found = "importable"
                except ImportError:
                    found = "absent"
                print(os.environ["PYDANTIC_DISABLE_PLUGINS"], found)
            cli.main = probe
            sys.argv = ["crystal-runbook", "runs"]
            process.main()
            """
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["__all__", "absent"]
