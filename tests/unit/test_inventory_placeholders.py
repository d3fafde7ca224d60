"""The inventory's {state_dir} and {sandbox_url} placeholders (design.md section 6)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from crystal_runbook import errors
from crystal_runbook.engine import inventory as inventory_mod
from crystal_runbook.service import workspace as workspace_mod
from tests.conftest import REPO


class TestPlaceholders:
    def test_state_dir_and_sandbox_url_expand_only_when_a_block_is_used(
        self, tmp_path: Path
    ) -> None:
        """{state_dir} is absolute; {sandbox_url} comes from endpoint.json, read on use."""
        shipped = inventory_mod.load(
            REPO / "inventory", variables=workspace_mod.inventory_variables(tmp_path / "st")
        )
        raw = shipped.services["maia"].environments["sandbox"]
        assert raw.kubernetes is not None
        assert raw.kubernetes.kubeconfig == "{state_dir}/sandbox/kubeconfig"
        with pytest.raises(errors.ConfigurationError, match="no sandbox runs for the state directory"):
            shipped.target("maia", "sandbox")
        assert shipped.target("maia", "production").health_url == "https://api.production.com/health"
        (tmp_path / "st" / "sandbox").mkdir(parents=True)
        (tmp_path / "st" / "sandbox" / "endpoint.json").write_text(
            json.dumps({"url": "http://127.0.0.1:40001", "pid": os.getpid()})
        )
        block = shipped.target("maia", "sandbox")
        assert block.kubernetes is not None
        assert block.kubernetes.kubeconfig == f"{tmp_path / 'st'}/sandbox/kubeconfig"
        assert block.health_url == (
            "http://127.0.0.1:40001/api/v1/namespaces/crystal/services/maia/proxy/health"
        )
        assert block.metrics is not None
        assert block.metrics.url == "http://127.0.0.1:40001/_sandbox/services/crystal/maia/metrics"

    def test_a_dead_sandbox_is_named(self, tmp_path: Path) -> None:
        """An endpoint.json left by a killed sandbox is not trusted: its pid is gone."""
        (tmp_path / "sandbox").mkdir()
        (tmp_path / "sandbox" / "endpoint.json").write_text(
            json.dumps({"url": "http://127.0.0.1:40001", "pid": 2**22 + 12345})
        )
        shipped = inventory_mod.load(
            REPO / "inventory", variables=workspace_mod.inventory_variables(tmp_path)
        )
        with pytest.raises(errors.ConfigurationError, match="is not running"):
            shipped.target("maia", "sandbox")
