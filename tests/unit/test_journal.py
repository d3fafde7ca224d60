"""The journal: records, prefixes, ordering and redaction."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from crystal_runbook import errors
from crystal_runbook.engine import journal
from crystal_runbook.engine.secrets import Redactor


def make_run(run_id: str, started: str, service: str = "maia") -> journal.RunRecord:
    return journal.RunRecord(
        id=run_id,
        runbook="rollback",
        env="staging",
        actor="a",
        status="ok",
        started_at=started,
        service=service,
        host="h",
        pid=1,
        steps=[journal.StepRecord(run_id=run_id, phase="main", index=0, id="s", uses="wait")],
    )


class TestRecords:
    def test_newest_first_and_filtered_by_service(self, tmp_path: Path) -> None:
        """`runs` lists newest first; --service filters."""
        j = journal.open_journal(tmp_path)
        j.create_run(make_run("aaa111", "2026-01-01T00:00:00.000Z"))
        j.create_run(make_run("bbb222", "2026-01-02T00:00:00.000Z", service="other"))
        j.create_run(make_run("ccc333", "2026-01-03T00:00:00.000Z"))
        assert [r.id for r in j.list_runs()] == ["ccc333", "bbb222", "aaa111"]
        assert [r.id for r in j.list_runs(service="maia", limit=1)] == ["ccc333"]
        j.close()

    def test_unique_prefix_finds_a_run_and_ambiguous_one_says_so(self, tmp_path: Path) -> None:
        """`runs show 3fa` works like a git short hash."""
        j = journal.open_journal(tmp_path)
        j.create_run(make_run("abc123", "2026-01-01T00:00:00.000Z"))
        j.create_run(make_run("abd456", "2026-01-01T00:00:01.000Z"))
        assert j.get_run("abc").id == "abc123"
        with pytest.raises(errors.RunNotFound, match="ambiguous"):
            j.get_run("ab")
        with pytest.raises(errors.RunNotFound, match="no run 'zzz'"):
            j.get_run("zzz")
        with pytest.raises(errors.RunNotFound, match="is not a run id"):
            j.get_run("'; DROP TABLE runs; --")
        j.close()

    def test_step_transitions_are_events(self, tmp_path: Path) -> None:
        """Every save of a step adds an event in order."""
        j = journal.open_journal(tmp_path)
        run = make_run("r1", journal.now_iso())
        j.create_run(run)
        step = run.steps[0]
        for status in ("checking", "applying", "applied", "ok"):
            step.status = status
            j.save_step(step, message=status)
        assert [e.status for e in j.events("r1")] == ["ok", "checking", "applying", "applied", "ok"]
        assert j.get_run("r1").steps[0].status == "ok"
        j.close()

    def test_redactor_masks_values_and_shapes(self) -> None:
        """Known secret values, token shapes and URL passwords are masked."""
        r = Redactor({"SLACK_SIGNING_SECRET": "abcdef123456", "HOME": "/root"})
        fake = "sig abcdef123456 xoxp-11111-22222-abcdef https://u:pw1234@h/x home /root"
        text = r.text(fake)
        assert text == "sig ***** ***** https://u:*****@h/x home /root"
        assert r.data({"DB_PASSWORD": "x", "n": ["abcdef123456"]}) == {
            "DB_PASSWORD": "*****",
            "n": ["*****"],
        }


class TestConcurrency:
    def test_readers_work_while_a_writer_commits(self, tmp_path: Path) -> None:
        """WAL: listing runs never waits for (or breaks) a run being journalled."""
        writer = journal.open_journal(tmp_path)
        total = 300

        def write() -> None:
            for i in range(total):
                writer.create_run(make_run(f"w{i:05d}", journal.now_iso()))

        thread = threading.Thread(target=write)
        reader = journal.open_journal(tmp_path)
        thread.start()
        reads = []
        while thread.is_alive():
            reads.append(len(reader.list_runs(limit=20)))
        thread.join()
        assert reads
        assert all(0 <= n <= 20 for n in reads)
        assert len(reader.list_runs(limit=1000)) == total
        reader.close()
        writer.close()
