"""`validate` checks inventory values, not only their shape (issue 17, point 6).

HOSTILE is the table of values a hostile or careless hand can put in
`inventory/services.yaml`; each one, alone in an otherwise good inventory, must be refused
with a problem at its own line. GOOD is the table of unusual but valid values that must pass.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crystal_runbook import service

# where a value goes in the inventory: a path in BASE, or a key to rename
SERVICE_KEY = "service key"
ENV_KEY = "environment key"

NAMES = [
    "",
    " ",
    "Maia",
    "MAIA",
    "maia prod",
    "maia\tprod",
    "maia\n",
    "-maia",
    "maia-",
    "maia_prod",
    "../etc",
    "maia/../x",
    "maia;rm -rf /",
    "$(reboot)",
    "`id`",
    "maia|cat",
    "maia&&true",
    "<script>",
    "maia'",
    'maia"',
    "maia\x1b[31m",
    "maia\x00",
    "ma\u0456a",  # Cyrillic i
    "maïa",
    "maia\u202e",
    "*",
    "{{ env }}",
    "a" * 64,
    "%2e%2e",
]
URLS = [
    "javascript:alert(1)",
    "file:///etc/passwd",
    "ftp://example.com/health",
    "gopher://example.com",
    "data:text/html,<b>x</b>",
    "http://",
    "https://",
    "http:///health",
    "//evil.example/health",
    "evil.example/health",
    "http://exa mple.com/health",
    "http://example.com/he alth",
    "http://example.com\n/health",
    "http://[::1/health",
    "http://example.com:99999/health",
    "http://example.com:-1/",
    " http://example.com/health",
    "http://example.com/\x00",
    "https://user:hunter2@example.com/health",
    "{{ target.health_url }}",
    "http://example.com/" + "a" * 2100,
]
CHANNELS = [
    "",
    "#",
    "maia-incidents",
    "#maia incidents",
    "##maia",
    "#MAIA",
    "@here",
    "<!channel>",
    "#<!here>",
    "#maia,#general",
    "#maia\n",
    "#" + "a" * 81,
    "https://slack.com/archives/C123",
    "C12",
    "#maia\x1b[2J",
]
KUBECONFIGS = [
    "/nonexistent/kubeconfig",
    "missing/kubeconfig",
    "",
    "/dev/null",
    "/",
    "kube\x00config",
    "a" * 1001,
]
CONTEXTS = ["", " ", "prod cluster", "prod\n", "prod\x1b[31m", "a" * 254]
URL_ENVS = ["", "1URL", "PROM URL", "PROM-URL", "$PROM_URL", "PROM_URL\n"]
HOSTS = ["", "web servers", "web;id", "web:&prod", "web\n", "$(id)"]
FREE_TEXT = ["maia\x1b[2J", "owner\x00", "x" * 1001]

HOSTILE: list[tuple[str, Any]] = [
    *((SERVICE_KEY, v) for v in NAMES),
    *((ENV_KEY, v) for v in NAMES if v not in ("maia_prod",)),
    *(("default_environment", v) for v in NAMES if v not in ("maia_prod",)),
    *(("kubernetes.namespace", v) for v in NAMES),
    *(("kubernetes.deployment", v) for v in NAMES if v != "a" * 64),
    ("kubernetes.deployment", "a" * 254),
    ("kubernetes.deployment", "maia..v2"),
    *(("kubernetes.container", v) for v in NAMES),
    *(("kubernetes.context", v) for v in CONTEXTS),
    *(("kubernetes.kubeconfig", v) for v in KUBECONFIGS),
    *(("health_url", v) for v in URLS),
    *(("metrics.url", v) for v in URLS),
    *(("dashboards.main", v) for v in URLS),
    *(("metrics.url_env", v) for v in URL_ENVS),
    *(("slack_channel", v) for v in CHANNELS),
    *(("hosts", v) for v in HOSTS),
    *(("description", v) for v in FREE_TEXT),
    *(("owner", v) for v in FREE_TEXT),
]

GOOD: list[tuple[str, Any]] = [
    (SERVICE_KEY, "maia-v2"),
    (SERVICE_KEY, "a" * 63),
    (ENV_KEY, "prod_eu-1"),
    ("kubernetes.namespace", "maia-prod"),
    ("kubernetes.deployment", "maia.v2"),
    ("kubernetes.context", "arn:aws:eks:eu-west-1:123456789012:cluster/prod"),
    ("kubernetes.context", "gke_project_europe-west1_prod"),
    ("kubernetes.kubeconfig", "{state_dir}/sandbox/kubeconfig"),
    ("kubernetes.kubeconfig", ".crystal/sandbox/kubeconfig"),  # under the state dir
    ("health_url", "https://api.production.com/health"),
    ("health_url", "http://127.0.0.1:17443/api/v1/namespaces/crystal/services/maia/proxy/health"),
    ("health_url", "{sandbox_url}/api/v1/namespaces/crystal/services/maia/proxy/health"),
    ("health_url", "http://[::1]:8080/health?full=1&x=2"),
    ("metrics.url", "http://prometheus.monitoring.svc:9090"),
    ("metrics.url_env", "PROMETHEUS_URL"),
    ("slack_channel", "#maia-incidents"),
    ("slack_channel", "#ops_2"),
    ("slack_channel", "C0CRYSTAL01"),
    ("hosts", "maia_sandbox"),
    ("hosts", "maia-vm"),
    ("description", "The maia service: API & workers"),
    ("owner", "team-maia <maia@example.com>"),
]


def base() -> dict[str, Any]:
    return {
        "default_environment": "sandbox",
        "services": {
            "maia": {
                "description": "maia",
                "owner": "team",
                "environments": {
                    "sandbox": {
                        "kubernetes": {
                            "context": "crystal-sandbox",
                            "namespace": "crystal",
                            "deployment": "maia",
                            "container": "maia",
                            "kubeconfig": "{state_dir}/sandbox/kubeconfig",
                        },
                        "health_url": "http://127.0.0.1:17443/health",
                        "metrics": {"source": "scrape", "url": "http://127.0.0.1:17443/metrics"},
                        "slack_channel": "#maia-incidents",
                        "hosts": "maia",
                        "dashboards": {"main": "https://grafana.example.com/d/maia"},
                    }
                },
            }
        },
    }


def inventory_with(where: str, value: Any) -> dict[str, Any]:
    data = base()
    svc = data["services"]["maia"]
    env = svc["environments"]["sandbox"]
    if where == SERVICE_KEY:
        data["services"] = {value: svc}
    elif where == ENV_KEY:
        svc["environments"] = {value: env}
        data["default_environment"] = None
    elif where == "default_environment":
        data["default_environment"] = value
    elif where in ("description", "owner"):
        svc[where] = value
    elif where == "metrics.url_env":
        env["metrics"] = {"source": "prometheus", "url_env": value}
    else:
        node = env
        *parents, leaf = where.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return data


def problems(ws: service.Workspace, data: dict[str, Any]) -> list[str]:
    path = ws.inventory_dir / "services.yaml"
    path.write_text(json.dumps(data))  # JSON is YAML: every value arrives exactly as written
    _, found = service.catalog.validate(ws, [path])
    return [str(p) for p in found]


@pytest.fixture
def ws(
    workspace: service.Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> service.Workspace:
    """A workspace whose state dir is ./.crystal of the working directory."""
    monkeypatch.chdir(tmp_path)
    return workspace


class TestHostileValues:
    """Every hostile value is refused, at its line, naming what is wrong."""

    @pytest.mark.parametrize(("where", "value"), HOSTILE, ids=lambda v: repr(v)[:40])
    def test_refused(self, ws: service.Workspace, where: str, value: Any) -> None:
        """A hostile value alone in a good inventory is a problem of `validate`."""
        found = problems(ws, inventory_with(where, value))
        assert found, f"{where} = {value!r} passed validate"
        assert all("services.yaml:" in p for p in found)

    def test_the_table_is_large(self) -> None:
        """The trial's 176 values, and more: the table is the test's contract."""
        assert len(HOSTILE) >= 176


class TestGoodValues:
    """Unusual but valid values pass."""

    def test_base_is_clean(self, ws: service.Workspace) -> None:
        """The base inventory of these tests has no problem."""
        assert problems(ws, base()) == []

    @pytest.mark.parametrize(("where", "value"), GOOD, ids=lambda v: repr(v)[:40])
    def test_accepted(self, ws: service.Workspace, where: str, value: Any) -> None:
        """A good value passes validate."""
        assert problems(ws, inventory_with(where, value)) == []

    def test_shipped_inventory_is_clean(self, ws: service.Workspace) -> None:
        """The shipped inventory passes with the new rules."""
        shipped = Path(__file__).resolve().parents[2] / "inventory" / "services.yaml"
        _, found = service.catalog.validate(ws, [shipped])
        assert found == []
