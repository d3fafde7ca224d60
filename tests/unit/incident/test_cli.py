"""`incident show` through the installed command line, secrets, and a light `--help`."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import jsonschema

from tests.conftest import REPO, Cli
from tests.unit.incident.conftest import SCHEMA, parse, write_workspace

TOKEN = "xoxb-1234567890-abcdefghijkl"  # noqa: S105 - a fake token the test must not find
PASSWORD = "s3cr3t-Pa55word"  # noqa: S105 - a fake password the test must not find
DATABASE_URL = f"postgresql://crystal:{PASSWORD}@db.internal:5432/journal"  # fake secret for the test


def run_cli(cli: Cli, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return cli(
        *args,
        PYTHONPATH=str(REPO),
        CRYSTAL_ACTION_MODULES="crystal_runbook.testing,tests.unit.incident.fakes",
        CRYSTAL_ACTOR="oncall",
        **env,
    )


def test_incident_show_prints_markdown_or_json(cli: Cli) -> None:
    """md by default, json with --format json (or -o json); both write the files."""
    write_workspace(cli.root)
    ran = run_cli(cli, "rollback", "maia", "--yes", "--reason", "p99 above 2s", "-o", "json")
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["id"]
    shown = run_cli(cli, "incident", "show", run_id[:8])
    assert shown.returncode == 0, shown.stderr
    title, sections = parse(shown.stdout)
    assert title.startswith("Incident: maia in sandbox rolled back from revision 2 to 1")
    assert "Timeline" in sections
    assert "incident document: " in shown.stderr
    path = Path(shown.stderr.split("incident document: ", 1)[1].strip())
    assert path.read_text() == shown.stdout
    as_json = run_cli(cli, "incident", "show", run_id, "--format", "json")
    doc = json.loads(as_json.stdout)
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    assert doc["trigger"] == {
        "kind": "manual",
        "reason": "p99 above 2s",
        "actor": "oncall",
        "detected_at": None,
        "rules": [],
        "other_rules": [],
    }
    assert json.loads(run_cli(cli, "-o", "json", "incident", "show", run_id).stdout) == doc


def test_incident_show_bad_input_exits_2(cli: Cli) -> None:
    """An unknown run id or format is bad input."""
    write_workspace(cli.root)
    unknown = run_cli(cli, "incident", "show", "ffffffffffff")
    assert unknown.returncode == 2
    assert "no run 'ffffffffffff'" in unknown.stderr
    bad = run_cli(cli, "incident", "show", "abc", "--format", "pdf")
    assert bad.returncode == 2
    assert "--format must be md or json" in bad.stderr


def test_secrets_appear_in_no_document_log_line_or_journal_row(cli: Cli) -> None:
    """SLACK_BOT_TOKEN and a database URL with a password, in the environment and in the
    reason, are masked in the documents, the JSON log lines and every journal row."""
    write_workspace(cli.root)
    secrets = {"SLACK_BOT_TOKEN": TOKEN, "MAIA_DATABASE_URL": DATABASE_URL}
    reason = f"db {DATABASE_URL} down; token {TOKEN} leaked"
    ran = run_cli(
        cli,
        "rollback",
        "maia",
        "--yes",
        "--reason",
        reason,
        "-o",
        "json",
        CRYSTAL_LOG_FORMAT="json",
        **secrets,
    )
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["id"]
    shown = run_cli(cli, "incident", "show", run_id, CRYSTAL_LOG_FORMAT="json", **secrets)
    as_json = run_cli(cli, "incident", "show", run_id, "--format", "json", **secrets)
    assert shown.returncode == 0, shown.stderr
    assert "*****" in shown.stdout  # the reason is there, masked
    # not ran.stdout: `rollback -o json` prints the run's parameters as given (reported)
    outputs = ran.stderr + shown.stdout + shown.stderr + as_json.stdout
    assert '"kind"' in ran.stderr  # JSON log lines were written
    files = [p for p in cli.state.rglob("*") if p.is_file()]
    assert any(p.suffix == ".md" for p in files)
    with sqlite3.connect(cli.state / "journal.db") as db:
        rows = [
            repr(row)
            for table in ("runs", "steps", "events")
            for row in db.execute(f"SELECT * FROM {table}")  # noqa: S608 - constant table names
        ]
    assert len(rows) > 10
    for secret in (TOKEN, PASSWORD):
        assert secret not in outputs
        assert not [r for r in rows if secret in r]
        assert not [p for p in files if secret.encode() in p.read_bytes()]


def test_help_does_not_import_the_chart_library() -> None:
    """`--help` (and `incident show --help`) never pay for Pillow or the generator."""
    probe = (
        "import sys\n"
        "from crystal_runbook.cli import main\n"
        "for argv in (['--help'], ['incident', 'show', '--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('PIL', 'matplotlib')"
        " or m.startswith('crystal_runbook.incident')))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "incident show" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]"
