"""Fault injection: errors, throttling, dropped connections and latency, set three ways."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from crystal_runbook import sandbox

from .conftest import Kubectl

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

DEPLOYMENT = "/apis/apps/v1/namespaces/crystal/deployments/maia"


def get(
    sb: sandbox.Sandbox, path: str, method: str = "GET", body: Any = None
) -> tuple[int, dict[str, str], bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(sb.url + path, method=method, data=data)  # noqa: S310 - loopback test server
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback test server
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers), err.read()


class TestFaultKinds:
    """Each kind of fault does what it says, for the requests it matches."""

    def test_status_fault_answers_a_status_object_count_times(self, sb: sandbox.Sandbox) -> None:
        """A 500 fault with count=2 fails two requests, then lets requests through."""
        sb.faults.add(sandbox.Fault(kind="status", status=500, count=2))
        codes = [get(sb, DEPLOYMENT)[0] for _ in range(3)]
        assert codes == [500, 500, 200]
        status, _, body = get(sb, DEPLOYMENT.replace("maia", "x"))
        assert status == 404
        sb.faults.clear()
        sb.faults.add(sandbox.Fault(kind="status", status=500))
        status, _, body = get(sb, DEPLOYMENT)
        doc = json.loads(body)
        assert (doc["kind"], doc["reason"], doc["code"]) == ("Status", "InternalError", 500)
        logged = [e for e in sb.requests() if e.get("fault")]
        assert [e["status"] for e in logged] == [500, 500, 500]
        assert logged[0]["fault"] == ["status:500"]

    def test_throttle_has_retry_after_and_kubectl_retries(
        self, sb: sandbox.Sandbox, kubectl: Kubectl
    ) -> None:
        """429 carries Retry-After; kubectl (client-go) waits and retries, then succeeds."""
        sb.faults.add(
            sandbox.Fault(
                kind="status", status=429, retry_after=1, count=1, path="/deployments/maia$"
            )
        )
        status, headers, body = get(sb, DEPLOYMENT)
        assert status == 429
        assert headers["Retry-After"] == "1"
        assert json.loads(body)["details"]["retryAfterSeconds"] == 1
        sb.faults.add(
            sandbox.Fault(
                kind="status", status=429, retry_after=1, count=1, path="/deployments/maia$"
            )
        )
        started = time.monotonic()
        out = kubectl.run("get", "deployment", "maia", "-o", "name").stdout
        assert out.strip() == "deployment.apps/maia"
        assert time.monotonic() - started >= 1.0
        gets = [
            e["status"]
            for e in sb.requests()
            if e["path"] == DEPLOYMENT and "kubectl" in e["user_agent"]
        ]
        assert gets == [429, 200]

    def test_drop_closes_the_connection_without_an_answer(self, sb: sandbox.Sandbox) -> None:
        """A drop fault closes the connection; the next connection is served."""
        sb.faults.add(sandbox.Fault(kind="drop", count=1))
        conn = http.client.HTTPConnection("127.0.0.1", sb.port, timeout=5)
        try:
            conn.request("GET", DEPLOYMENT)
            with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
                conn.getresponse()
        finally:
            conn.close()
        assert get(sb, DEPLOYMENT)[0] == 200

    def test_latency_delays_only_matching_paths(self, sb: sandbox.Sandbox) -> None:
        """A latency fault limited by path slows those requests and no others."""
        sb.faults.add(sandbox.Fault(kind="latency", latency=0.3, path="/pods"))
        started = time.monotonic()
        assert get(sb, "/api/v1/namespaces/crystal/pods")[0] == 200
        slow = time.monotonic() - started
        started = time.monotonic()
        assert get(sb, DEPLOYMENT)[0] == 200
        fast = time.monotonic() - started
        assert slow >= 0.3
        assert fast < 0.2

    def test_fraction_fails_about_that_share(self, sb: sandbox.Sandbox) -> None:
        """fraction=0.3 fails roughly 30 % of 200 requests."""
        sb.faults.add(sandbox.Fault(kind="status", status=503, fraction=0.3))
        failed = sum(1 for _ in range(200) if get(sb, DEPLOYMENT)[0] == 503)
        assert 30 <= failed <= 90

    def test_control_endpoints_are_never_faulted(self, sb: sandbox.Sandbox) -> None:
        """With every request failing, /_sandbox/status and /_sandbox/faults still answer."""
        sb.faults.add(sandbox.Fault(kind="status", status=500))
        assert get(sb, "/version")[0] == 500
        assert get(sb, "/_sandbox/status")[0] == 200
        assert get(sb, "/_sandbox/faults", "DELETE")[0] == 200
        assert get(sb, "/version")[0] == 200


class TestAdminEndpoint:
    """Faults and timings over HTTP, as a detached sandbox is controlled."""

    def test_post_get_delete_faults(self, sb: sandbox.Sandbox) -> None:
        """POST adds rules, GET lists them with how often they fired, DELETE clears them."""
        status, _, body = get(
            sb, "/_sandbox/faults", "POST", {"status": 500, "path": "^/version$", "count": 1}
        )
        assert status == 200
        assert json.loads(body)["faults"] == [
            {
                "kind": "status",
                "status": 500,
                "latency": 0.0,
                "fraction": 1.0,
                "path": "^/version$",
                "count": 1,
                "retry_after": 1.0,
                "fired": 0,
            }
        ]
        assert get(sb, "/version")[0] == 500
        assert json.loads(get(sb, "/_sandbox/faults")[2])["faults"][0]["fired"] == 1
        assert get(sb, "/_sandbox/faults", "DELETE")[0] == 200
        assert json.loads(get(sb, "/_sandbox/faults")[2])["faults"] == []

    def test_bad_rules_are_refused(self, sb: sandbox.Sandbox) -> None:
        """An unknown key or an impossible value is a 400 naming the problem."""
        status, _, body = get(sb, "/_sandbox/faults", "POST", {"status": 200})
        assert status == 400
        assert "4xx or 5xx" in json.loads(body)["message"]
        status, _, body = get(sb, "/_sandbox/faults", "POST", {"oops": 1})
        assert status == 400
        assert "unknown fault keys" in json.loads(body)["message"]

    def test_config_sets_the_ready_delay(self, sb: sandbox.Sandbox, kubectl: Kubectl) -> None:
        """PATCH /_sandbox/config changes the ready delay of pods started afterwards."""
        status, _, body = get(sb, "/_sandbox/config", "PATCH", {"ready_delay": 0.6})
        assert status == 200
        assert json.loads(body)["ready_delay"] == 0.6
        assert sb.ready_delay == 0.6
        started = time.monotonic()
        kubectl.run("scale", "deployment/maia", "--replicas=4")
        kubectl.run("rollout", "status", "deployment/maia", "--timeout=20s")
        assert time.monotonic() - started >= 0.6
        assert get(sb, "/_sandbox/config", "PATCH", {"ready_delay": -1})[0] == 400
