"""Run locks on both backends: refusal names the holder, stale locks are taken over."""

from __future__ import annotations

import threading
import time

import pytest

from crystal_runbook import errors
from crystal_runbook.engine import journal, locks
from tests.conftest import JournalBackend

DEAD_PID = 2**22 + 12345  # above any pid_max: no such process on this host


class TestHolding:
    def test_a_live_holder_refuses_with_run_actor_host_and_start(
        self, journal_backend: JournalBackend
    ) -> None:
        """Exit 3, naming the holder's run, actor, host and start time."""
        j = journal_backend.open()
        mine = journal_backend.locks(j)
        theirs = journal_backend.locks(j, host="laptop-of-alice")
        held = theirs.acquire("maia/production", run_id="run-alice", actor="alice")
        with pytest.raises(errors.LockHeld) as info:
            mine.acquire("maia/production", run_id="run-bob", actor="bob")
        holder = theirs.holder("maia/production")
        assert holder is not None
        assert info.value.exit_code == 3
        assert str(info.value).startswith(
            f"lock 'maia/production' is held by run run-alice (actor alice on laptop-of-alice, "
            f"started {holder.acquired_at})"
        )
        assert holder.acquired_at.endswith("Z")
        held.release()
        assert mine.acquire("maia/production", run_id="run-bob", actor="bob").takeover is None

    def test_the_same_run_takes_its_own_lock_again(self, journal_backend: JournalBackend) -> None:
        """Resume in the same process re-takes the lock it holds, with no takeover warning."""
        j = journal_backend.open()
        table = journal_backend.locks(j)
        table.acquire("k", run_id="r1", actor="a")
        again = table.acquire("k", run_id="r1", actor="a")
        assert again.takeover is None
        again.release()
        assert table.holder("k") is None

    def test_release_only_frees_its_own_run(self, journal_backend: JournalBackend) -> None:
        """A late release from a run whose lock was taken over leaves the new holder alone."""
        j = journal_backend.open()
        old = journal_backend.locks(j, pid=DEAD_PID)
        lease_old = old.acquire("k", run_id="old", actor="a")
        new = journal_backend.locks(j)
        new.acquire("k", run_id="new", actor="b")
        lease_old.release()
        holder = new.holder("k")
        assert holder is not None
        assert holder.run_id == "new"


class TestStaleTakeover:
    def test_a_dead_process_on_this_host_is_taken_over_at_once(
        self, journal_backend: JournalBackend
    ) -> None:
        """The holder's pid is gone: its lock is stale whatever its heartbeat says."""
        j = journal_backend.open()
        dead = journal_backend.locks(j, pid=DEAD_PID)
        dead.acquire("k", run_id="dead-run", actor="bob")
        lease = journal_backend.locks(j).acquire("k", run_id="new-run", actor="carol")
        assert lease.takeover is not None
        assert (lease.takeover.run_id, lease.takeover.actor, lease.takeover.pid) == (
            "dead-run",
            "bob",
            DEAD_PID,
        )

    def test_another_host_is_stale_only_after_its_ttl(
        self, journal_backend: JournalBackend
    ) -> None:
        """A holder elsewhere is trusted until its heartbeat is older than its TTL."""
        j = journal_backend.open()
        remote = journal_backend.locks(j, host="other-host", pid=DEAD_PID)
        remote.acquire("k", run_id="remote-run", actor="dave", ttl=1.5)
        here = journal_backend.locks(j)
        with pytest.raises(errors.LockHeld):  # its pid means nothing on this host
            here.acquire("k", run_id="local-run", actor="erin")
        time.sleep(1.8)
        lease = here.acquire("k", run_id="local-run", actor="erin")
        assert lease.takeover is not None
        assert lease.takeover.host == "other-host"

    def test_a_takeover_names_the_dead_run_before_the_block_starts(
        self, journal_backend: JournalBackend
    ) -> None:
        """hold_all reports the run whose lock it took over, before the caller's block runs."""
        j = journal_backend.open()
        journal_backend.locks(j, pid=DEAD_PID).acquire("k", run_id="dead-run", actor="bob")
        seen: list[tuple[str, str]] = []
        with locks.hold_all(
            [journal_backend.locks(j)],
            "k",
            run_id="new-run",
            actor="carol",
            taken_over=lambda run, why: seen.append((run, why)),
        ):
            assert seen == [("dead-run", "its lock 'k' was taken over by run new-run")]

    def test_heartbeats_keep_a_lock_past_its_ttl(self, journal_backend: JournalBackend) -> None:
        """hold_all renews every TTL/3, so a live holder is never taken over."""
        j = journal_backend.open()
        remote = journal_backend.locks(j, host="other-host")
        with locks.hold_all([remote], "k", run_id="long-run", actor="f", ttl=1.2):
            time.sleep(2.0)  # well past the TTL: only the heartbeats (every 0.4 s) keep it
            with pytest.raises(errors.LockHeld, match="long-run"):
                journal_backend.locks(j).acquire("k", run_id="late", actor="g")
        assert remote.holder("k") is None  # released when the block ends

    def test_of_many_racing_for_a_lock_exactly_one_wins(
        self, journal_backend: JournalBackend
    ) -> None:
        """Eight runs take over one stale lock at once: one wins, seven are refused naming it."""
        j = journal_backend.open()
        journal_backend.locks(j, pid=DEAD_PID).acquire("k", run_id="dead", actor="x")
        results: list[str] = []
        start = threading.Barrier(8)

        def race(n: int) -> None:
            table = journal_backend.locks(j)  # this live process: only the run ids differ
            start.wait()
            try:
                table.acquire("k", run_id=f"run-{n}", actor=f"a{n}", ttl=60)
                results.append(f"won run-{n}")
            except errors.LockHeld as exc:
                results.append(f"lost to {exc.holder_run_id}")

        threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [r for r in results if r.startswith("won")]
        assert len(winners) == 1, results
        winner = winners[0].removeprefix("won ")
        assert sorted(results) == sorted([f"won {winner}"] + [f"lost to {winner}"] * 7)

    def test_a_run_the_journal_shows_ended_is_taken_over_at_once(
        self, journal_backend: JournalBackend
    ) -> None:
        """A lock left behind by a run that finished is stale, wherever its holder ran."""
        j = journal_backend.open()
        j.create_run(
            journal.RunRecord("ended-run", "rollback", "production", "h", "ok", journal.now_iso())
        )
        journal_backend.locks(j, host="other-host").acquire("k", run_id="ended-run", actor="h")
        lease = journal_backend.locks(j).acquire("k", run_id="next-run", actor="i")
        assert lease.takeover is not None
        assert lease.takeover.run_id == "ended-run"
        j.create_run(
            journal.RunRecord(
                "live-run", "rollback", "production", "h", "running", journal.now_iso()
            )
        )
        journal_backend.locks(j, host="other-host").acquire("k2", run_id="live-run", actor="h")
        with pytest.raises(errors.LockHeld, match="live-run"):
            journal_backend.locks(j).acquire("k2", run_id="next-run", actor="i")


class TestLeftBehind:
    """A run killed after it journalled its end, before it released its lock (chaos suite)."""

    def test_resume_of_the_ended_run_releases_what_it_left(
        self, journal_backend: JournalBackend
    ) -> None:
        """`release_left_by` frees a lock still naming the ended run, and only that one."""
        j = journal_backend.open()
        j.create_run(
            journal.RunRecord("ended-run", "rollback", "sandbox", "h", "ok", journal.now_iso())
        )
        journal_backend.locks(j, pid=DEAD_PID).acquire("k", run_id="ended-run", actor="h")
        table = journal_backend.locks(j)
        assert locks.release_left_by([table], "k", run_id="ended-run", actor="i") is True
        assert table.holder("k") is None
        assert locks.release_left_by([table], "k", run_id="ended-run", actor="i") is False

    def test_a_lock_another_run_holds_now_is_left_alone(
        self, journal_backend: JournalBackend
    ) -> None:
        """The lock was taken over by a newer run: releasing the ended one changes nothing."""
        j = journal_backend.open()
        table = journal_backend.locks(j)
        table.acquire("k", run_id="newer-run", actor="b")
        assert locks.release_left_by([table], "k", run_id="ended-run", actor="i") is False
        holder = table.holder("k")
        assert holder is not None
        assert holder.run_id == "newer-run"
