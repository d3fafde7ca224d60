"""The journal on both backends: records, prefixes, ordering, pages and redaction."""

from __future__ import annotations

import threading

import pytest

from crystal_runbook import errors
from crystal_runbook.engine import journal
from crystal_runbook.engine.secrets import Redactor
from tests.conftest import JournalBackend


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
    def test_newest_first_and_filtered_by_service(self, journal_backend: JournalBackend) -> None:
        """`runs` lists newest first; --service filters."""
        j = journal_backend.open()
        j.create_run(make_run("aaa111", "2026-01-01T00:00:00.000Z"))
        j.create_run(make_run("bbb222", "2026-01-02T00:00:00.000Z", service="other"))
        j.create_run(make_run("ccc333", "2026-01-03T00:00:00.000Z"))
        assert [r.id for r in j.list_runs()] == ["ccc333", "bbb222", "aaa111"]
        assert [r.id for r in j.list_runs(service="maia", limit=1)] == ["ccc333"]

    def test_unique_prefix_finds_a_run_and_ambiguous_one_says_so(
        self, journal_backend: JournalBackend
    ) -> None:
        """`runs show 3fa` works like a git short hash."""
        j = journal_backend.open()
        j.create_run(make_run("abc123", "2026-01-01T00:00:00.000Z"))
        j.create_run(make_run("abd456", "2026-01-01T00:00:01.000Z"))
        assert j.get_run("abc").id == "abc123"
        with pytest.raises(errors.RunNotFound, match="ambiguous"):
            j.get_run("ab")
        with pytest.raises(errors.RunNotFound, match="no run 'zzz'"):
            j.get_run("zzz")
        with pytest.raises(errors.RunNotFound, match="is not a run id"):
            j.get_run("'; DROP TABLE runs; --")

    def test_underscore_in_a_prefix_is_a_character_not_a_wildcard(
        self, journal_backend: JournalBackend
    ) -> None:
        """Run ids may hold `_` and `-`; a prefix matches them literally."""
        j = journal_backend.open()
        j.create_run(make_run("drill_1", "2026-01-01T00:00:00.000Z"))
        j.create_run(make_run("drillx2", "2026-01-01T00:00:01.000Z"))
        assert j.get_run("drill_").id == "drill_1"
        assert j.get_run("drillx").id == "drillx2"

    def test_every_field_comes_back_as_written(self, journal_backend: JournalBackend) -> None:
        """Times, documents, booleans, None and non-ASCII text survive the round trip."""
        j = journal_backend.open()
        run = make_run("f1e2d3", "2026-03-04T05:06:07.089Z")
        run.params = {"service": "maia", "to_revision": 0, "reason": "p99 über 2 s"}
        run.meta = {"target": {"kubernetes": {"namespace": "maia"}}, "z": 1, "a": [1, 2]}
        run.drill = True
        run.lock_key = "maia/staging"
        run.runbook_text = "name: rollback\n"
        run.runbook_digest = "sha256:abc"
        run.runbook_path = "runbooks/rollback.yaml"
        step = run.steps[0]
        step.status, step.attempts, step.changed = "ok", 2, False
        step.summary, step.error = "did it", None
        step.changes = [{"field": "image", "before": "v2", "after": "v1"}]
        step.outputs = {"revision": 3, "nested": {"k": None}}
        step.started_at, step.ended_at = "2026-03-04T05:06:07.100Z", "2026-03-04T05:06:08.000Z"
        run.steps.append(
            journal.StepRecord(run_id=run.id, phase="on_failure", index=0, id="n", uses="slack")
        )
        j.create_run(run)
        run.status, run.ended_at, run.error = "failed", "2026-03-04T05:07:00.000Z", "boom"
        j.update_run(run, event="failed", message="run failed", data={"why": "boom"})
        back = j.get_run(run.id)
        assert back == run
        assert list(back.params) == ["service", "to_revision", "reason"]  # key order kept
        assert list(back.meta) == ["target", "z", "a"]
        events = j.events(run.id)
        assert [(e.kind, e.status, e.data) for e in events] == [
            ("run", "ok", {"env": "staging", "service": "maia", "actor": "a"}),
            ("run", "failed", {"why": "boom"}),
        ]
        assert all(e.at.endswith("Z") and len(e.at) == 24 for e in events)
        assert events[0].seq < events[1].seq

    def test_step_transitions_are_events(self, journal_backend: JournalBackend) -> None:
        """Every save of a step adds an event in order."""
        j = journal_backend.open()
        run = make_run("r1", journal.now_iso())
        j.create_run(run)
        step = run.steps[0]
        for status in ("checking", "applying", "applied", "ok"):
            step.status = status
            j.save_step(step, message=status)
        assert [e.status for e in j.events("r1")] == ["ok", "checking", "applying", "applied", "ok"]
        assert j.get_run("r1").steps[0].status == "ok"


class TestPages:
    def test_before_walks_every_run_once_newest_first(
        self, journal_backend: JournalBackend
    ) -> None:
        """`runs --limit N --before LAST` pages through the history with no gap or repeat."""
        j = journal_backend.open()
        # 25 runs, several sharing a start time: the id breaks the tie
        for i in range(25):
            j.create_run(make_run(f"r{i:03d}", f"2026-01-01T00:00:{i // 3:02d}.000Z"))
        everything = [r.id for r in j.list_runs(limit=100)]
        assert len(everything) == 25
        pages: list[list[str]] = []
        before = None
        while True:
            page = [r.id for r in j.list_runs(limit=7, before=before)]
            if not page:
                break
            pages.append(page)
            before = page[-1]
        assert [len(p) for p in pages] == [7, 7, 7, 4]
        assert [rid for p in pages for rid in p] == everything
        assert everything[:3] == ["r024", "r023", "r022"]

    def test_before_with_a_service_and_a_prefix(self, journal_backend: JournalBackend) -> None:
        """--before takes a unique prefix and combines with --service."""
        j = journal_backend.open()
        for i in range(6):
            service = "maia" if i % 2 else "other"
            j.create_run(make_run(f"id{i}abc", f"2026-01-0{i + 1}T00:00:00.000Z", service))
        assert [r.id for r in j.list_runs(service="maia", before="id5")] == ["id3abc", "id1abc"]
        with pytest.raises(errors.RunNotFound, match="no run 'nope'"):
            j.list_runs(before="nope")
        with pytest.raises(errors.RunNotFound, match="ambiguous"):
            j.list_runs(before="id")


class TestRedaction:
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

    def test_env_entries_with_secret_names_are_masked(self) -> None:
        """A pod template's `{name, value}` env entry is masked by its name; others are kept."""
        template = {
            "spec": {
                "containers": [
                    {
                        "name": "maia",
                        "env": [
                            {"name": "DB_PASSWORD", "value": "plain-hunter2"},
                            {"name": "CRYSTAL_MODE", "value": "legacy"},
                            {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "s"}}},
                        ],
                    }
                ]
            }
        }
        env = Redactor({}).data(template)["spec"]["containers"][0]["env"]
        assert env == [
            {"name": "DB_PASSWORD", "value": "*****"},
            {"name": "CRYSTAL_MODE", "value": "legacy"},
            {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "s"}}},
        ]

    def test_nothing_secret_is_stored(self, journal_backend: JournalBackend) -> None:
        """Params, errors, outputs, summaries and event messages are masked before storage."""
        secret = "hunter2-very-secret"  # noqa: S105 - a fake secret for the test
        token = "xoxb-1111111111-abcdefghijkl"  # noqa: S105 - a fake token for the test
        j = journal_backend.open(redactor=Redactor({"MY_API_TOKEN": secret}))
        run = make_run("sec001", journal.now_iso())
        run.params = {"reason": f"leaked {secret}", "password": "pw-in-a-param"}
        run.error = f"failed with {token}"
        j.create_run(run)
        step = run.steps[0]
        step.summary = f"used {secret}"
        step.outputs = {"url": "postgresql://crystal:topsecretpw@db/x"}
        step.error = f"bearer {secret}"
        j.save_step(step, message=f"saw {token}", data={"api_token": "abc123456789"})
        j.add_event(run.id, kind="warning", status="warn", message=f"warn {secret}")
        j.update_run(run, event="failed", message=f"end {secret}")
        stored = journal_backend.stored_text()
        for leaked in (secret, token, "pw-in-a-param", "topsecretpw", "abc123456789"):
            assert leaked not in stored
        assert "*****" in stored
        back = j.get_run(run.id)
        assert back.params == {"reason": "leaked *****", "password": "*****"}
        assert back.steps[0].outputs == {"url": "postgresql://crystal:*****@db/x"}


class TestConcurrency:
    def test_readers_work_while_a_writer_commits(self, journal_backend: JournalBackend) -> None:
        """Listing runs never waits for (or breaks) a run being journalled."""
        writer = journal_backend.open()
        total = 300

        def write() -> None:
            for i in range(total):
                writer.create_run(make_run(f"w{i:05d}", journal.now_iso()))

        thread = threading.Thread(target=write)
        reader = journal_backend.open()
        thread.start()
        reads = []
        while thread.is_alive():
            reads.append(len(reader.list_runs(limit=20)))
        thread.join()
        assert reads
        assert all(0 <= n <= 20 for n in reads)
        assert len(reader.list_runs(limit=1000)) == total
