"""The secret scan itself (tests/secretscan.py): it finds what it must, and only that."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

from tests import secretscan

PLANTED_PASSWORD = f"planted-{uuid.uuid4().hex}"
"""Made at run time and never ``plant``-ed: the session's own scan must not find the files
these tests write on purpose."""


def test_finds_a_planted_secret_in_an_outbox_entry_and_a_journal(tmp_path: Path) -> None:
    """An outbox entry and a journal row holding a planted secret are both reported."""
    (tmp_path / "a/.crystal/outbox").mkdir(parents=True)
    (tmp_path / "a/.crystal/outbox/x.json").write_text(f'{{"text": "{PLANTED_PASSWORD}"}}')
    conn = sqlite3.connect(tmp_path / "a/.crystal/journal.db")
    conn.execute("CREATE TABLE events (message TEXT)")
    conn.execute("INSERT INTO events VALUES (?)", (f"reason {PLANTED_PASSWORD} " + "x" * 10000,))
    conn.commit()
    conn.close()
    found = secretscan.outputs(tmp_path, {PLANTED_PASSWORD})
    assert len(found) == 2, found
    assert all("planted secret plante…" in f for f in found)
    assert PLANTED_PASSWORD not in secretscan.planted()


def test_ignores_inputs_and_masked_outputs(tmp_path: Path) -> None:
    """A test's own input file may hold the secret; a masked output is clean."""
    (tmp_path / "token").write_text(PLANTED_PASSWORD)  # an input (SLACK_BOT_TOKEN_FILE), not an output
    (tmp_path / "incidents").mkdir()
    (tmp_path / "incidents/doc.md").write_text("reason: *****")
    assert secretscan.outputs(tmp_path, {PLANTED_PASSWORD}) == []


def test_the_tests_fakes_are_the_planted_ones() -> None:
    """Literals marked `noqa: S105` in the tests are what the scan looks for."""
    fakes = secretscan.marked_fakes()
    assert "crystal-test-signing-secret-0123456789" in fakes
    assert "xoxb-0000000000-crystal-local-test-token" in fakes  # testing.slack_server's


def test_the_repository_holds_no_secret_shaped_string() -> None:
    """Tracked files outside the tests hold no token or key that looks real."""
    assert secretscan.repository() == []
