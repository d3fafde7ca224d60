"""Every command has help with an example; --help stays light; shipped files validate."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import typer.main

from crystal_runbook.cli import app
from tests.conftest import REPO, Cli

HEAVY = (
    "kubernetes",
    "fabric",
    "slack_sdk",
    "slack_bolt",
    "ansible_runner",
    "paramiko",
    "psycopg",
    "psycopg_pool",
    "prometheus_client",
    "waitress",
)


def all_commands() -> list[list[str]]:
    root = typer.main.get_command(app)
    found: list[list[str]] = []

    def walk(command: object, path: list[str]) -> None:
        subs = getattr(command, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, [*path, name])
        if path:
            found.append(path)

    walk(root, [])
    return found


@pytest.mark.parametrize("command", all_commands(), ids=" ".join)
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    """`crystal-runbook <command> --help` exits 0 and shows an example."""
    out = subprocess.run(
        [sys.executable, "-m", "crystal_runbook", *command, "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "Usage:" in out.stdout
    assert "Example" in out.stdout or "Commands:" in out.stdout


def test_help_imports_no_heavy_library() -> None:
    """--help must not pay for kubernetes, fabric, Slack or Ansible."""
    probe = (
        "import sys\n"
        "from crystal_runbook.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "try:\n    main(['run', '--help'])\nexcept SystemExit:\n    pass\n"
        "try:\n    main(['db', '--help'])\nexcept SystemExit:\n    pass\n"
        "try:\n    main(['serve', '--help'])\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_runs_on_the_embedded_journal_imports_no_database_client(cli: Cli) -> None:
    """`runs` without CRYSTAL_DATABASE_URL never loads psycopg (it is timed: bench/runs_list.py)."""
    probe = (
        "import sys\n"
        "from crystal_runbook.cli import main\n"
        "try:\n    main(['runs'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'psycopg_pool')))\n"
    )
    assert cli("db", "upgrade").returncode == 0  # a journal to read
    assert (cli.state / "journal.db").exists()
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=cli.env(),
        cwd=cli.root,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_shipped_runbooks_and_inventory_validate(cli: Cli) -> None:
    """`crystal-runbook validate` passes on what we ship."""
    out = cli(
        "--runbooks", str(REPO / "runbooks"), "--inventory", str(REPO / "inventory"), "validate"
    )
    assert out.returncode == 0, out.stderr
    count = int(out.stdout.split()[0])
    assert count >= len(list((REPO / "runbooks").glob("*.yaml")))


def test_every_action_named_in_the_docs_exists(cli: Cli) -> None:
    """A `uses:` in the docs names an action the registry knows."""
    schema = json.loads(cli("schema").stdout)
    known = set(schema["x-actions"])
    text = "\n".join(p.read_text() for p in (REPO / "docs").glob("*.md"))
    named = set(re.findall(r"uses:\s*([a-z0-9_.]+)", text))
    assert named, "the docs show no `uses:` at all"
    missing = named - known
    assert not missing, f"docs name unknown actions: {sorted(missing)}"


def test_schema_covers_each_actions_arguments(cli: Cli) -> None:
    """The schema attaches each action's `with:` model, for editors."""
    schema = json.loads(cli("schema").stdout)
    branches = schema["$defs"]["Step"]["allOf"]
    wait = next(b for b in branches if b["if"]["properties"]["uses"]["const"] == "wait")
    assert "seconds" in wait["then"]["properties"]["with"]["properties"]


def test_every_registered_action_is_in_the_docs_table(cli: Cli) -> None:
    """Each built-in action has a row in docs/runbook-format.md's table."""
    schema = json.loads(cli("schema").stdout)
    table = (REPO / "docs" / "runbook-format.md").read_text()
    builtin = {n for n in schema["x-actions"] if not n.startswith("fake.")}
    missing = {n for n in builtin if f"| `{n}` |" not in table}
    assert not missing, f"actions without a row in docs/runbook-format.md: {sorted(missing)}"
