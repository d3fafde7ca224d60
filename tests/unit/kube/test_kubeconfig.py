"""A malformed kubeconfig is a configuration error naming the file and what is wrong (exit 2),
never the client library's TypeError (issue 17, point 5)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from crystal_runbook import errors
from crystal_runbook.kube import client


@pytest.fixture(autouse=True)
def no_cached_clients() -> Iterator[None]:
    client.close_all()
    yield
    client.close_all()


def connect(path: Path) -> errors.ConfigurationError:
    with pytest.raises(errors.ConfigurationError) as caught:
        client.connect(client.KubeTarget(deployment="maia", kubeconfig=str(path)))
    assert caught.value.exit_code == 2
    assert str(path) in caught.value.message
    return caught.value


class TestMalformedKubeconfig:
    """Each shape of broken file says what is wrong with it, in words."""

    @pytest.mark.parametrize(
        ("text", "said"),
        [
            ('"just a string"\n', "its YAML is a string ('just a string'), not a mapping"),
            ("hello\n", "its YAML is a string ('hello'), not a mapping"),
            ("- a\n- b\n", "its YAML is a list (['a', 'b']), not a mapping"),
            ("42\n", "its YAML is a number (42), not a mapping"),
        ],
    )
    def test_top_level_not_a_mapping(self, tmp_path: Path, text: str, said: str) -> None:
        """A plain string, a list or a number at the top level."""
        path = tmp_path / "kubeconfig"
        path.write_text(text)
        assert said in connect(path).message

    def test_yaml_that_does_not_parse(self, tmp_path: Path) -> None:
        """A syntax error is named with its line and column."""
        path = tmp_path / "kubeconfig"
        path.write_text("clusters: [\n")
        message = connect(path).message
        assert "its YAML does not parse" in message
        assert "line 2, column 1" in message

    def test_an_entry_of_the_wrong_shape(self, tmp_path: Path) -> None:
        """A mapping whose `clusters` is a number: the library's words, as a clear error."""
        path = tmp_path / "kubeconfig"
        path.write_text("clusters: 5\ncontexts: 5\ncurrent-context: x\n")
        assert "an entry has the wrong shape" in connect(path).message


def test_inside_a_pod_without_a_kubeconfig_the_service_account_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No KUBECONFIG and no ~/.kube/config inside a pod: the pod's service account is tried
    (here it has no token, so it says so), not "no kubeconfig at ~/.kube/config"."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    with pytest.raises(errors.ConfigurationError) as caught:
        client.connect(client.KubeTarget(deployment="maia"))
    assert "the pod's service account" in caught.value.message
    assert "no kubeconfig" not in caught.value.message
