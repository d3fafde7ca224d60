"""Secrets in a Deployment's env never reach the journal or the incident document.

A rollback reads the template it rolls back from (the bad release's) and the one it rolls
back to; both can carry secrets in plain env values: a secret-named variable set by hand,
or a secret runbook parameter rendered into `set_env`. Whatever the rollback journals (the
step's outputs, changes, and what resume needs) and whatever documents it writes, those
values appear only as `*****`.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from crystal_runbook.engine.secrets import MASK
from tests.integration.kube.conftest import Cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PLANTED = "planted-Hunter2-in-the-bad-release"
RENDERED = "rendered-s3cr3t-from-a-param"

RUNBOOK = """\
apiVersion: crystal-runbook/v1
kind: Runbook
name: rollback-with-secret
params:
  service: {type: string, required: true}
  blob: {type: string, required: true, secret: true}
environments: [sandbox]
lock: "{{ service.name }}/{{ env }}"
steps:
  - id: undo
    uses: k8s.rollout_undo
    with:
      set_env: {CRYSTAL_MODE: legacy, CONFIG_BLOB: "{{ params.blob }}"}
  - id: document
    uses: incident.write
"""


def everything_journalled(state: Path) -> str:
    """Every row of every table of the journal, as text."""
    with sqlite3.connect(state / "journal.db") as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return "\n".join(
            repr(row)
            for table in tables
            for row in db.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - names from the db
        )


class TestTemplateSecrets:
    """The rolled-back-from template's secret env values and a rendered secret stay masked."""

    def test_planted_and_rendered_secrets_never_journalled(self, cluster: Cluster) -> None:
        """DB_PASSWORD set on the bad release and a secret param in set_env: neither value
        is in the journal (any table), the run's JSON, or the incident documents."""
        cluster.kubectl("set", "env", "deployment/maia", f"DB_PASSWORD={PLANTED}")
        cluster.wait_rolled_out()
        runbook = cluster.root / "rollback-with-secret.yaml"
        runbook.write_text(RUNBOOK)
        done = cluster.cli(
            "run",
            str(runbook),
            "-p",
            "service=maia",
            "-p",
            f"blob={RENDERED}",
            "--yes",
            "-o",
            "json",
        )
        assert done.returncode == 0, done.stdout + done.stderr
        run = json.loads(done.stdout)
        undo = next(s for s in run["steps"] if s["id"] == "undo")
        assert undo["outputs"]["from_env"]["DB_PASSWORD"] == MASK  # it was there, masked
        assert cluster.env_var("CONFIG_BLOB") == RENDERED  # the rollback did set it
        documents = [p.read_text() for p in (cluster.state / "incidents").iterdir() if p.is_file()]
        assert len(documents) >= 2  # Markdown and JSON
        shown = cluster.cli("runs", "show", run["id"], "-o", "json")
        assert shown.returncode == 0, shown.stderr
        everywhere = "\n".join(
            [
                everything_journalled(cluster.state),
                done.stdout,
                done.stderr,
                shown.stdout,
                *documents,
            ]
        )
        assert PLANTED not in everywhere
        assert RENDERED not in everywhere

    def test_what_resume_needs_is_journalled_masked(self, cluster: Cluster) -> None:
        """The step journals the old release's images and masked env for resume, not its
        whole template, and `rollback` reports the secret as masked."""
        cluster.kubectl("set", "env", "deployment/maia", f"API_TOKEN={PLANTED}")
        cluster.wait_rolled_out()
        done = cluster.cli("rollback", "maia", "--yes", "-o", "json")
        assert done.returncode == 0, done.stdout + done.stderr
        undo = next(s for s in json.loads(done.stdout)["steps"] if s["id"] == "undo")
        assert undo["outputs"]["from_env"]["API_TOKEN"] == MASK
        with sqlite3.connect(cluster.state / "journal.db") as db:
            (raw,) = db.execute("SELECT resolved FROM steps WHERE id = 'undo'").fetchone()
        resolved = json.loads(raw)
        assert "from_template" not in resolved
        assert resolved["from_env"]["API_TOKEN"] == MASK
        assert resolved["from_images"] == undo["outputs"]["from_images"]
        assert PLANTED not in everything_journalled(cluster.state)
