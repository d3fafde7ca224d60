"""Bounds and clean errors (issue 17, point 5): bad numbers and broken state are exit 2 with
a clear message, never a traceback, and nothing is journalled."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO, Cli

pytestmark = pytest.mark.e2e

SERVICES = """
default_environment: local
services:
  maia:
    environments:
      local:
        kubernetes: {namespace: crystal, deployment: maia}
"""


@pytest.fixture
def shipped(cli: Cli) -> Cli:
    cli.write("inventory/services.yaml", SERVICES)
    return cli


def run(cli: Cli, *args: str, **env: str) -> tuple[int, str]:
    done = cli("--runbooks", str(REPO / "runbooks"), *args, **env)
    out = done.stdout + done.stderr
    assert "Traceback" not in out, out
    return done.returncode, out


def journalled(cli: Cli) -> int:
    done = cli("runs", "-o", "json")
    return len(json.loads(done.stdout or "[]")) if done.returncode == 0 else 0


class TestBounds:
    """Replica counts and image references are checked before anything runs."""

    def test_more_than_1000_replicas_without_force_is_bad_input(self, shipped: Cli) -> None:
        """Exit 2, what to do, and no run in the journal."""
        code, out = run(shipped, "scale", "maia", "--replicas", "1001")
        assert code == 2
        assert "--replicas 1001 is more than 1000" in out
        assert "--force" in out
        assert journalled(shipped) == 0

    @pytest.mark.parametrize("replicas", ["2147483648", "99999999999999999999"])
    def test_above_int32_is_refused_even_with_force(self, shipped: Cli, replicas: str) -> None:
        """Kubernetes' int32 limit holds with --force too."""
        code, out = run(shipped, "scale", "maia", "--replicas", replicas, "--force", "--dry-run")
        assert code == 2
        assert "above its maximum" in out
        assert journalled(shipped) == 0

    @pytest.mark.parametrize("image", ["MAIA", "registry.local/Maia:1", "maia::1", "-maia", "a b"])
    def test_image_references_follow_the_grammar(self, shipped: Cli, image: str) -> None:
        """A repository in upper case (or no reference at all) is exit 2."""
        code, out = run(
            shipped, "run", "release", "-p", "service=maia", "-p", f"image={image}", "--dry-run"
        )
        assert code == 2, out
        assert "parameter 'image'" in out
        assert "is not a valid image reference" in out
        assert "a valid reference is [registry[:port]/]repository[:tag]" in out  # what is valid
        assert "(?:" not in out  # words, never the regular expression
        assert "pattern" not in out
        assert journalled(shipped) == 0


class TestCleanErrors:
    """Broken state is a message and an exit code, never a traceback."""

    def test_a_damaged_journal(self, shipped: Cli) -> None:
        """`runs` and `runs show` agree: the journal cannot be used (exit 2)."""
        shipped.state.mkdir(parents=True)
        (shipped.state / "journal.db").write_bytes(b"SQLite format 3\x00" + b"\x5a" * 8192)
        listed, said = run(shipped, "runs")
        shown, told = run(shipped, "runs", "show", "abc123")
        assert (listed, shown) == (2, 2)
        assert "journal" in said
        assert "not a database" in said
        assert said.splitlines()[0] == told.splitlines()[0]  # they agree

    def test_a_state_dir_path_too_long(self, shipped: Cli, tmp_path: object) -> None:
        """A 1001-character state directory: exit 2 naming the problem."""
        code, out = run(shipped, "runs", CRYSTAL_STATE_DIR="/tmp/" + "x" * 996)
        assert code == 2
        assert "File name too long" in out

    @pytest.mark.parametrize(
        "command", [["runs"], ["runs", "show", "abc123"], ["incident", "show", "abc123"]]
    )
    @pytest.mark.parametrize("under", [False, True])
    def test_a_state_dir_that_is_a_file(
        self, shipped: Cli, command: list[str], under: bool
    ) -> None:
        """A state dir that is a file (or under one) is exit 2 naming it, never "no runs"."""
        shipped.state.write_text("not a directory\n")
        state = shipped.state / "sub" if under else shipped.state
        code, out = run(shipped, *command, CRYSTAL_STATE_DIR=str(state))
        assert code == 2, out
        assert f"the state directory {state} " in out
        assert "a file, not a directory" in out
        assert f"move the file {shipped.state} aside" in out
        assert "no runs" not in out
        assert shipped.state.read_text() == "not a directory\n"  # nothing changed

    def test_a_journal_that_is_a_directory(self, shipped: Cli) -> None:
        """A directory in the journal's place is exit 2 naming it, never "no runs"."""
        (shipped.state / "journal.db").mkdir(parents=True)
        code, out = run(shipped, "runs")
        assert code == 2, out
        assert f"the journal {shipped.state / 'journal.db'} is not a file" in out
        assert "no runs" not in out

    def test_a_kubeconfig_that_is_a_plain_string(self, cli: Cli) -> None:
        """`rollback` with a kubeconfig whose YAML is a string: exit 2 naming the file and
        what is wrong with it, and no run in the journal."""
        kubeconfig = cli.write("kubeconfig", '"just a string"\n')
        cli.write(
            "inventory/services.yaml",
            SERVICES.replace("local", "staging").replace(
                "deployment: maia}", f"deployment: maia, kubeconfig: '{kubeconfig}'}}"
            ),
        )
        code, out = run(cli, "rollback", "maia", "--yes")
        assert code == 2, out
        assert f"kubeconfig {kubeconfig} is not a kubeconfig" in out
        assert "its YAML is a string ('just a string'), not a mapping" in out
        assert "unexpected" not in out
        assert journalled(cli) == 0

    def test_a_runaway_template_stops_at_once(self, shipped: Cli) -> None:
        """`plan` of a template with range(10**9): exit 2 at its file:line:column."""
        shipped.write(
            "runbooks/huge.yaml",
            """
            apiVersion: crystal-runbook/v1
            kind: Runbook
            name: huge
            steps:
              - id: a
                uses: wait
                with: {seconds: "{% for i in range(10**9) %}{% endfor %}1s"}
            """,
        )
        done = shipped("plan", "runbooks/huge.yaml", timeout=30)
        assert done.returncode == 2
        assert "huge.yaml:7:" in done.stderr
        assert "loops more than 100,000 times" in done.stderr
        assert "Traceback" not in done.stderr
