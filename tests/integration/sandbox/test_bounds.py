"""The sandbox refuses what a real API server refuses: replica counts beyond int32."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from crystal_runbook import sandbox

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

DEPLOYMENT = "/apis/apps/v1/namespaces/crystal/deployments/maia"
INT32_MAX = 2**31 - 1


def patch(sb: sandbox.Sandbox, path: str, body: Any, *, dry_run: bool = False) -> tuple[int, Any]:
    query = "?dryRun=All" if dry_run else ""
    req = urllib.request.Request(  # noqa: S310 - loopback test server
        sb.url + path + query,
        method="PATCH",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback test server
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read())


def replicas(sb: sandbox.Sandbox) -> int:
    with urllib.request.urlopen(sb.url + DEPLOYMENT, timeout=5) as resp:  # noqa: S310 - loopback test server
        return int(json.loads(resp.read())["spec"]["replicas"])


class TestReplicaBounds:
    """spec.replicas is an int32: larger values are 422 Invalid and change nothing."""

    @pytest.mark.parametrize("path", [DEPLOYMENT, DEPLOYMENT + "/scale"])
    @pytest.mark.parametrize("value", [INT32_MAX + 1, 99999999999999999999])
    def test_above_int32_is_422_and_nothing_is_stored(
        self, sb: sandbox.Sandbox, path: str, value: int
    ) -> None:
        """A Deployment or its /scale patched past 2,147,483,647 answers 422 naming the field."""
        before = replicas(sb)
        status, body = patch(sb, path, {"spec": {"replicas": value}})
        assert status == 422, body
        assert body["reason"] == "Invalid"
        cause = body["details"]["causes"][0]
        assert cause["field"] == "spec.replicas"
        assert f"must be less than or equal to {INT32_MAX}" in cause["message"]
        assert replicas(sb) == before

    def test_int32_max_itself_is_accepted(self, sb: sandbox.Sandbox) -> None:
        """The limit is inclusive (a server-side dry run, so no pods are made)."""
        status, body = patch(sb, DEPLOYMENT, {"spec": {"replicas": INT32_MAX}}, dry_run=True)
        assert status == 200, body
        assert body["spec"]["replicas"] == INT32_MAX
