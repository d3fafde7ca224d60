"""Bad input through the real command line: exit 2, a precise message, nothing applied."""

from __future__ import annotations

import sqlite3
import time

import pytest

from tests.conftest import Cli

GOOD = """\
apiVersion: crystal-runbook/v1
kind: Runbook
name: good
params:
  service: {type: string, required: true}
  to_revision: {type: integer, default: 0, minimum: 0}
  reason: {type: string, default: "", max_length: 50}
steps:
  - {id: a, uses: fake.set, with: {key: "{{ params.service }}", value: "v{{ params.to_revision }}"}}
"""


def assert_nothing_applied(cli: Cli) -> None:
    assert not (cli.state / "fake-applies.log").exists()
    db = cli.state / "journal.db"
    if db.exists():
        with sqlite3.connect(db) as conn:
            applied = conn.execute(
                "SELECT COUNT(*) FROM steps WHERE status IN ('applying', 'applied', 'ok')"
            ).fetchone()[0]
        assert applied == 0


def broken(cli: Cli, name: str, text: str) -> None:
    cli.write(f"runbooks/{name}.yaml", text)


CASES = {
    "malformed-yaml": (
        "steps:\n  - id: a\n    uses: [unclosed\n",
        "runbooks/bad.yaml:4:1: invalid YAML",
    ),
    "unknown-top-level-key": (
        GOOD.replace("params:", "paramz:"),
        "runbooks/bad.yaml:4:1: paramz: unknown key",
    ),
    "unknown-uses": (
        GOOD.replace("uses: fake.set", "uses: fake.sett"),
        "runbooks/bad.yaml:9:13: unknown action 'fake.sett' (did you mean fake.set?)",
    ),
    "duplicate-step-id": (
        GOOD + "  - {id: a, uses: fake.noop}\n",
        "runbooks/bad.yaml:10:6: duplicate step id 'a'",
    ),
    "undefined-name": (
        GOOD.replace("params.service }}", "servce }}"),
        "runbooks/bad.yaml:9:36: undefined name 'servce' in template",
    ),
    "later-step-outputs": (
        GOOD.replace('"v{{ params.to_revision }}"', '"{{ steps.b.outputs.key }}"')
        + "  - {id: b, uses: fake.set, with: {key: b, value: c}}\n",
        "refers to steps.b, which runs later",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_broken_runbook_is_refused_with_its_position(cli: Cli, case: str) -> None:
    """`validate` and `run` both exit 2 and point at file:line:column."""
    text, message = CASES[case]
    broken(cli, "bad", text)
    validated = cli("validate", "runbooks/bad.yaml")
    assert validated.returncode == 2
    assert message in validated.stderr
    ran = cli("run", "bad", "-p", "service=maia")
    assert ran.returncode == 2, ran.stderr
    assert message in ran.stderr
    assert_nothing_applied(cli)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["-p", "service=maia", "-p", "to_revision=abc"],
            "parameter 'to_revision': expected an integer",
        ),
        ([], "runbook 'good' needs parameter 'service' (string)"),
        (
            ["-p", "service=maia", "-p", "reason=" + "x" * 51],
            "51 characters, more than its limit of 50",
        ),
        (["-p", "service"], "-p 'service': expected key=value"),
        (["-p", "service=maia", "-p", "to_revision=-1"], "below its minimum 0"),
        (["-p", "service=maia", "-p", "colour=red"], "runbook 'good' has no parameter 'colour'"),
    ],
)
def test_bad_parameters_are_refused(cli: Cli, args: list[str], message: str) -> None:
    """Parameters are checked before any step runs."""
    broken(cli, "good", GOOD)
    ran = cli("run", "good", *args)
    assert ran.returncode == 2
    assert message in ran.stderr
    assert_nothing_applied(cli)


def test_runbook_name_cannot_escape_the_runbooks_directory(cli: Cli) -> None:
    """`../../etc/passwd` is refused as a name."""
    ran = cli("run", "../../etc/passwd")
    assert ran.returncode == 2
    assert "'../../etc/passwd' is not a runbook name" in ran.stderr


def test_ten_megabyte_runbook_is_refused_quickly(cli: Cli) -> None:
    """Size is checked before parsing."""
    cli.write("runbooks/huge.yaml", GOOD + "# " + "x" * (10 * 1024 * 1024) + "\n")
    started = time.monotonic()
    ran = cli("run", "huge", "-p", "service=maia")
    assert ran.returncode == 2
    assert "runbooks/huge.yaml:1:1: file is larger than 1024 KiB" in ran.stderr
    assert time.monotonic() - started < 5


def test_yaml_bomb_is_refused_quickly(cli: Cli) -> None:
    """Billion laughs: refused by the node budget, not expanded."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    cli.write("runbooks/bomb.yaml", "\n".join(lines) + "\n")
    started = time.monotonic()
    ran = cli("validate", "runbooks/bomb.yaml")
    assert ran.returncode == 2
    assert "expands to more than" in ran.stderr
    assert time.monotonic() - started < 5


def test_unknown_service_and_environment(cli: Cli) -> None:
    """Targets come from the inventory; unknown ones are exit 2 with what exists."""
    cli.write(
        "inventory/services.yaml",
        """
        default_environment: staging
        services:
          maia:
            environments:
              staging: {health_url: "http://127.0.0.1:1/health"}
        """,
    )
    broken(cli, "good", GOOD)
    ran = cli("run", "good", "-p", "service=mia")
    assert ran.returncode == 2
    assert "unknown service 'mia' (did you mean 'maia'?)" in ran.stderr
    ran = cli("run", "good", "-p", "service=maia", "--env", "prod")
    assert ran.returncode == 2
    assert "service 'maia' has no environment 'prod'" in ran.stderr
    assert_nothing_applied(cli)


def test_bad_output_format_is_a_usage_error(cli: Cli) -> None:
    """--output accepts text or json."""
    ran = cli("runs", "-o", "yaml")
    assert ran.returncode == 2
    assert "--output must be text or json" in ran.stderr


def test_a_broken_access_yaml_is_refused_by_validate_with_its_position(cli: Cli) -> None:
    """`validate` checks inventory/access.yaml like the rest of the inventory: exit 2, and
    each mistake at file:line:column."""
    cli.write("inventory/services.yaml", "services:\n  maia:\n    environments:\n      sandbox: {}\n")
    cli.write(
        "inventory/access.yaml",
        """
        environments:
          production:
            approvers: 3
            allow:
              - {commands: [rollbak], users: [alice], channels: ["*"]}
        """,
    )
    out = cli("validate")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "access.yaml:3:5: environments.production.approvers" in out.stderr, out.stderr
    assert "unknown command 'rollbak'" in out.stderr
    assert "'alice' is not a Slack user ID (like U0123ABCD)" in out.stderr
    cli.write("inventory/access.yaml", "environments:\n  sandbox:\n    allow:\n"
              "      - {commands: ['*'], users: ['*'], channels: ['*']}\n")
    assert cli("validate").returncode == 0


@pytest.mark.parametrize(
    "args",
    [
        ["rollback", "{secret}"],  # an unknown service, echoed in the error
        ["rollback", "maia", "--to-revision", "{secret}"],  # click's own usage error
        ["runs", "show", "{secret}"],
    ],
)
def test_a_secret_typed_as_input_is_masked_in_messages(cli: Cli, args: list[str]) -> None:
    """Errors echo what was typed; a planted secret is printed as ***** (chaos suite)."""
    secret = "chaos-planted-password-0123456789"  # noqa: S105 - the planted secret
    done = cli(*[a.format(secret=secret) for a in args], CRYSTAL_TEST_PASSWORD=secret)
    assert done.returncode == 2, done.stderr
    assert secret not in done.stdout + done.stderr
    assert "*****" in done.stderr
