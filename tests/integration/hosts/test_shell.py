"""The long-lived shell `ssh.run` uses on each host: one command never leaks into the next."""

from __future__ import annotations

import pytest

from crystal_runbook import errors
from crystal_runbook.hosts import config, ssh
from tests.integration.hosts.conftest import Practice

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def pool(practice: Practice) -> ssh.Pool:
    found = config.HostsConfig(
        group="maia_vms",
        inventory=practice.state / "sandbox" / "hosts.ini",
        known_hosts=practice.state / "sandbox" / "known_hosts",
        auto_add=False,
    )
    opened = ssh.Pool(found)
    yield opened  # type: ignore[misc]
    opened.close()


def vm1(pool: ssh.Pool) -> ssh.Host:
    return pool.config.select("vm1")[0]


def test_exit_status_and_output_are_exact(pool: ssh.Pool) -> None:
    """Output without a trailing newline, stderr and the exit status come back as they were."""
    done = ssh.run(pool, vm1(pool), "printf 'a\\nb'; printf oops >&2; exit 3", timeout=30)
    assert (done.exit_code, done.stdout, done.stderr) == (3, "a\nb", "oops")


def test_commands_do_not_leak_into_each_other(pool: ssh.Pool) -> None:
    """`cd`, a variable, `exit` and a syntax error stay in their own command."""
    host = vm1(pool)
    assert ssh.run(pool, host, "cd / && x=1 && exit 0", timeout=30).exit_code == 0
    assert ssh.run(pool, host, "if then fi", timeout=30).exit_code != 0
    after = ssh.run(pool, host, 'pwd; echo "x=${x:-unset}"; cat', timeout=30)
    assert after.exit_code == 0
    assert after.stdout.splitlines()[1] == "x=unset"
    assert after.stdout.splitlines()[0] != "/"


def test_exported_values_are_data(pool: ssh.Pool) -> None:
    """An exported value with shell syntax arrives as the same bytes."""
    value = "a b; $(id) `id` 'q' \"d\"\nz"
    done = ssh.run(pool, vm1(pool), 'printf %s "$v"', timeout=30, env={"v": value})
    assert done.stdout == value


def test_a_command_over_its_time_is_stopped_and_the_next_one_runs(pool: ssh.Pool) -> None:
    """A timeout is a temporary error naming the host; a fresh shell serves the next command."""
    host = vm1(pool)
    with pytest.raises(errors.TemporaryActionError, match=r"vm1 .* did not finish within 1s"):
        ssh.run(pool, host, "sleep 20", timeout=1)
    assert ssh.run(pool, host, "echo back", timeout=30).stdout == "back\n"
