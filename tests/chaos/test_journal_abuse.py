"""The journal under abuse (issue 16, item 1): a full disk (before the run, and filling up in
the middle of it), a corrupted database file, and a read-only state directory.

The state directory of the command under test is a real small filesystem (a tmpfs mounted
by ``testing.disks``; the sandbox keeps its own files elsewhere). Each case must end with a
clear error (what, and what to do) and an exit code from design.md section 4, never a
traceback, and no change may reach the cluster without its intent journalled first: when
the disk fills mid-run, every PATCH that took effect has its `applying` event in the journal
from before it was sent, and once space is back `resume` finishes the run.
"""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from crystal_runbook.engine import journal as journal_mod
from crystal_runbook.testing import disks
from tests.chaos import figures
from tests.chaos import rig as rigs

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[rigs.Rig]:
    with rigs.rig(tmp_path / "cluster") as built:
        yield built


@pytest.fixture
def small_state(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB filesystem for the command's state directory."""
    try:
        with disks.small_disk(tmp_path / "state", size_kb=2048) as mounted:
            yield mounted
    except disks.Unavailable as exc:
        pytest.skip(str(exc))


def clean_error(done: subprocess.CompletedProcess[str], *, codes: set[int]) -> str:
    code, err = done.returncode, done.stderr
    assert code in codes, f"exit {code}: {err[-3000:]}"
    assert "Traceback" not in err
    assert "error" in err.lower()
    assert "hint:" in err, err[-2000:]
    return str(err)


def untouched(rig: rigs.Rig, since: int) -> None:
    assert rigs.deployment_patches(rig.requests(since)) == []
    assert rig.leases() == []


def test_a_full_disk_before_the_run(rig: rigs.Rig, small_state: Path) -> None:
    """No space for the journal: exit 2, 'No space left' or 'full' said, nothing changed."""
    disks.fill(small_state)
    since = rig.request_count()
    done = rig.cli("rollback", "maia", CRYSTAL_STATE_DIR=str(small_state))
    err = clean_error(done, codes={2})
    assert "space" in err.lower() or "full" in err.lower(), err
    untouched(rig, since)
    figures.add("journal abuse: full disk before the run: clear errors", 1)


@pytest.mark.parametrize("attempt", range(3))
def test_the_disk_fills_in_the_middle_of_a_run(
    rig: rigs.Rig, small_state: Path, attempt: int, chaos_seed: int
) -> None:
    """The disk fills after a random number of journal events: the run stops with a clear
    error, a PATCH that went out had its intent journalled first, and resume completes it."""
    state = small_state / ".crystal"
    env = {"CRYSTAL_STATE_DIR": str(state)}
    since = rig.request_count()
    revision = rigs.revision(rig.deployment())
    wanted = random.Random(chaos_seed + attempt).randint(1, 20)  # noqa: S311 - a moment, not security
    proc = rig.spawn("rollback", "maia", "-o", "json", **env)
    filler: Path | None = None
    try:
        rigs.wait_until(
            lambda: rigs.event_count(state) >= wanted or proc.poll() is not None, 120, "events"
        )
        filler = disks.fill(small_state)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    figures.add("journal abuse: disk filled mid-run", 1)
    assert proc.returncode in rigs.EXIT_CODES, err[-3000:]
    assert "Traceback" not in err
    run_id = rigs.run_ids(state)[-1]
    for patch in rigs.deployment_patches(rig.requests(since)):
        if rigs.took_effect(patch):
            assert rigs.intent_before_change(state, run_id, patch, "undo"), "PATCH without intent"
    if proc.returncode != 0:
        assert "hint:" in err or "resume" in err, err[-2000:]
        figures.add("journal abuse: disk filled mid-run: stopped with a clear error", 1)
    assert filler is not None
    filler.unlink()  # space is back
    resumed = rig.cli("resume", run_id, "-o", "json", **env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = rig.deployment()
    assert rigs.revision(after) == revision + 1
    assert rigs.journal_problems(state, run_id) == []
    assert rigs.held_locks(state) == []
    assert rig.leases() == []
    figures.add("journal abuse: disk filled mid-run: resumed ok after space came back", 1)


@pytest.mark.parametrize(
    "damage",
    ["garbage", "truncated", "zeroed-pages"],
)
def test_a_corrupted_journal(rig: rigs.Rig, tmp_path: Path, damage: str) -> None:
    """A damaged journal.db: exit 2 naming the journal and what to do; nothing changed."""
    state = tmp_path / "state"
    env = {"CRYSTAL_STATE_DIR": str(state)}
    journal_mod.open_journal(state).close()  # a journal, migrated, with its WAL checkpointed
    db = state / "journal.db"
    data = db.read_bytes()
    if damage == "garbage":
        db.write_bytes(os.urandom(len(data)))
    elif damage == "truncated":
        db.write_bytes(data[:100])
    else:  # the header survives, the schema pages do not
        db.write_bytes(data[:100] + b"\0" * (len(data) - 100))
    for suffix in ("-wal", "-shm"):
        (state / f"journal.db{suffix}").unlink(missing_ok=True)
    since = rig.request_count()
    done = rig.cli("rollback", "maia", **env)
    err = clean_error(done, codes={2})
    assert "journal" in err
    untouched(rig, since)
    listed = rig.cli("runs", **env)
    clean_error(listed, codes={2})
    figures.add("journal abuse: corrupted journals refused cleanly", 1)


def test_a_read_only_state_dir(rig: rigs.Rig, small_state: Path) -> None:
    """The state dir's filesystem is read-only (it stops root too): exit 2, nothing changed."""
    state = small_state / ".crystal"
    env = {"CRYSTAL_STATE_DIR": str(state)}
    journal_mod.open_journal(state).close()
    try:
        disks.set_read_only(small_state)
    except disks.Unavailable as exc:
        pytest.skip(str(exc))
    since = rig.request_count()
    done = rig.cli("rollback", "maia", **env)
    err = clean_error(done, codes={2})
    assert "journal" in err
    assert "writable" in err or "read-only" in err.lower(), err
    untouched(rig, since)
    figures.add("journal abuse: read-only state dir refused cleanly", 1)
