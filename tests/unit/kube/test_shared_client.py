"""One Kubernetes API client per kubeconfig and context, shared by the Lease and the actions
(issue 10, build item 3): one connection pool and one TLS set-up per process, not per step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from crystal_runbook.kube import client
from crystal_runbook.kube.lease import LeaseLocks


@pytest.fixture(autouse=True)
def no_cached_clients() -> Iterator[None]:
    client.close_all()
    yield
    client.close_all()


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    document = {
        "current-context": "a",
        "clusters": [
            {"name": "a", "cluster": {"server": "http://127.0.0.1:9"}},
            {"name": "b", "cluster": {"server": "http://127.0.0.1:10"}},
        ],
        "contexts": [
            {"name": "a", "context": {"cluster": "a", "user": "u"}},
            {"name": "b", "context": {"cluster": "b", "user": "u"}},
        ],
        "users": [{"name": "u", "user": {"token": "t"}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(document))
    return path


def test_one_client_per_kubeconfig_and_context(kubeconfig: Path) -> None:
    """Two deployments in one context share a client; another context has its own."""
    maia = client.KubeTarget(deployment="maia", namespace="x", kubeconfig=str(kubeconfig))
    other = client.KubeTarget(deployment="other", namespace="y", kubeconfig=str(kubeconfig))
    elsewhere = client.KubeTarget(deployment="maia", context="b", kubeconfig=str(kubeconfig))
    assert client.connect(maia) is client.connect(other)
    assert client.connect(elsewhere) is not client.connect(maia)
    assert client.connect(elsewhere).server == "http://127.0.0.1:10"


def test_the_lease_uses_the_actions_client(kubeconfig: Path) -> None:
    """The Lease (taken before the PATCH) and the steps' `connect` are one client."""
    target = client.KubeTarget(deployment="maia", kubeconfig=str(kubeconfig))
    assert LeaseLocks(target).kube is client.connect(target)
