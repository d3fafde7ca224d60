"""drills.yaml is validated with file:line:column, like runbooks and triggers."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from crystal_runbook import errors, service
from crystal_runbook.drills import loader
from crystal_runbook.engine import inventory
from tests.conftest import REPO

SERVICES = """
services:
  maia:
    environments:
      sandbox: {}
      staging: {}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "drills.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def problems(path: Path) -> list[str]:
    inv = inventory.Inventory.model_validate(
        {"services": {"maia": {"environments": {"sandbox": {}, "staging": {}}}}}
    )
    with pytest.raises(errors.RunbookInvalid) as caught:
        loader.load(path, display="drills.yaml", inventory=inv)
    return [str(p) for p in caught.value.problems]


class TestProblemsHavePositions:
    """Every mistake points at its line and column."""

    def test_bad_cron_expression(self, tmp_path: Path) -> None:
        """A minute of 61 is refused where it is written."""
        path = write(
            tmp_path,
            """
            services:
              maia:
                environments:
                  staging:
                    schedule: "61 10 * * 2"
            """,
        )
        found = problems(path)
        assert len(found) == 1
        assert found[0].startswith("drills.yaml:5:")
        assert "not a valid cron expression" in found[0]

    def test_unknown_key_and_bad_time_zone(self, tmp_path: Path) -> None:
        """A misspelt key and an unknown zone, both reported, each at its line."""
        path = write(
            tmp_path,
            """
            services:
              maia:
                environments:
                  staging:
                    schedule: "0 10 * * 2"
                    timezone: Europe/Atlantis
                    blackouts: []
            """,
        )
        found = problems(path)
        assert any(p.startswith("drills.yaml:6:") and "not a time zone" in p for p in found)
        assert any(p.startswith("drills.yaml:7:") and "unknown key" in p for p in found)

    def test_unknown_service_and_environment(self, tmp_path: Path) -> None:
        """Names must exist in services.yaml, with a suggestion when one is close."""
        path = write(
            tmp_path,
            """
            services:
              maia:
                environments:
                  stagin: {schedule: "0 10 * * 2"}
              mia:
                environments:
                  staging: {}
            """,
        )
        found = problems(path)
        assert any(
            p.startswith("drills.yaml:4:") and "no environment 'stagin'" in p and "'staging'" in p
            for p in found
        )
        assert any(p.startswith("drills.yaml:5:") and "unknown service 'mia'" in p for p in found)

    def test_blackout_without_its_end(self, tmp_path: Path) -> None:
        """A date range needs both ends."""
        path = write(
            tmp_path,
            """
            services:
              maia:
                environments:
                  staging:
                    blackout:
                      - {from: 2026-12-20}
            """,
        )
        found = problems(path)
        assert found[0].startswith("drills.yaml:6:")
        assert "needs both `from` and `to`" in found[0]


def test_validate_covers_drills_yaml(workspace: service.Workspace) -> None:
    """`crystal-runbook validate` checks drills.yaml against the services beside it."""
    (workspace.inventory_dir / "services.yaml").write_text(SERVICES)
    (workspace.inventory_dir / "drills.yaml").write_text(
        "services:\n  maia:\n    environments:\n      prod: {}\n"
    )
    count, found = service.catalog.validate(workspace)
    assert count == 2
    assert [(p.line, p.column) for p in found] == [(4, 7)]
    assert "no environment 'prod'" in found[0].message


def test_shipped_drills_validate() -> None:
    """The shipped drills.yaml is valid against the shipped services.yaml."""
    inv = inventory.load(REPO / "inventory")
    loaded = loader.load(REPO / "inventory" / "drills.yaml", inventory=inv)
    assert ("maia", "staging") in {(s, e) for s, e, _ in loaded.drills.entries()}
