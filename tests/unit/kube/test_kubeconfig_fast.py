"""Static kubeconfigs are read without the client library's loader, to the same settings;
everything else is left to the library (issue 10: the start before the PATCH)."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.configuration import Configuration
from kubernetes.config import kube_config

from crystal_runbook.kube import kubeconfig

CA = b"-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"
CERT = b"-----BEGIN CERTIFICATE-----\nCLIENT\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write(tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any] | None) -> Path:
    """A kubeconfig with contexts `main` (current) and `other` (a second cluster)."""
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "main",
        "clusters": [
            {"name": "c1", "cluster": cluster},
            {"name": "c2", "cluster": {"server": "http://127.0.0.1:9/"}},
        ],
        "contexts": [
            {"name": "main", "context": {"cluster": "c1", "user": "u1"}},
            {"name": "other", "context": {"cluster": "c2", "user": "u1"}},
        ],
        "users": [{"name": "u1", "user": user}] if user is not None else [],
    }
    path = tmp_path / "kube" / "config"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(document))
    return path


def settings(configuration: Configuration) -> dict[str, Any]:
    """What a request would use: server, auth header, TLS files' contents, verification."""

    def content(name: str | None) -> bytes | None:
        return Path(name).read_bytes() if name else None

    return {
        "host": configuration.host,
        "auth": configuration.get_api_key_with_prefix("BearerToken"),
        "ca": content(configuration.ssl_ca_cert),
        "cert": content(configuration.cert_file),
        "key": content(configuration.key_file),
        "verify": configuration.verify_ssl,
        "server_name": configuration.tls_server_name,
    }


def both(path: Path, context: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The settings from ``kubeconfig.load`` and from the library's loader."""
    ours = Configuration()
    assert kubeconfig.load(str(path), context, ours) is True
    library = Configuration()
    kube_config.load_kube_config(  # type: ignore[no-untyped-call]  # untyped library
        config_file=str(path),
        context=context,
        client_configuration=library,
        persist_config=False,
    )
    return settings(ours), settings(library)


class TestSameAsTheLibrary:
    """Each kind of static credential gives the settings the library's loader gives."""

    @pytest.mark.parametrize(
        ("cluster", "user"),
        [
            ({"server": "http://127.0.0.1:8080/"}, {"token": "abc.def"}),
            (
                {"server": "https://k8s.example:6443", "certificate-authority-data": b64(CA)},
                {"client-certificate-data": b64(CERT), "client-key-data": b64(KEY)},
            ),
            (
                {"server": "https://k8s.example:6443", "insecure-skip-tls-verify": True},
                {"username": "admin", "password": "s3cret"},
            ),
            (
                {
                    "server": "https://k8s.example",
                    "certificate-authority": "ca.crt",
                    "tls-server-name": "kubernetes",
                },
                {"tokenFile": "token", "client-certificate": "c.crt", "client-key": "c.key"},
            ),
            ({"server": "http://127.0.0.1:8080"}, None),
        ],
        ids=["token", "inline-certs", "basic-insecure", "files-relative", "no-user"],
    )
    def test_settings(
        self, tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any] | None
    ) -> None:
        path = write(tmp_path, cluster, user)
        for name, data in (("ca.crt", CA), ("c.crt", CERT), ("c.key", KEY), ("token", b"t0k")):
            (path.parent / name).write_bytes(data)
        ours, library = both(path)
        assert ours == library
        assert ours["host"] == cluster["server"].rstrip("/")

    def test_another_context(self, tmp_path: Path) -> None:
        path = write(tmp_path, {"server": "http://127.0.0.1:8080"}, {"token": "abc"})
        ours, library = both(path, "other")
        assert ours == library
        assert ours["host"] == "http://127.0.0.1:9"

    def test_inline_files_are_private(self, tmp_path: Path) -> None:
        path = write(
            tmp_path,
            {"server": "https://k8s.example", "certificate-authority-data": b64(CA)},
            {"client-certificate-data": b64(CERT), "client-key-data": b64(KEY)},
        )
        configuration = Configuration()
        assert kubeconfig.load(str(path), None, configuration)
        key_file = Path(str(configuration.key_file))
        assert key_file.read_bytes() == KEY
        assert key_file.stat().st_mode & 0o077 == 0


class TestLeftToTheLibrary:
    """Plugins, providers, proxies, several files and broken files are not read here: the
    configuration is untouched and the caller uses the library's loader."""

    @pytest.mark.parametrize(
        ("cluster", "user", "context"),
        [
            ({"server": "https://k8s.example"}, {"exec": {"command": "aws"}}, None),
            ({"server": "https://k8s.example"}, {"auth-provider": {"name": "oidc"}}, None),
            ({"server": "https://k8s.example", "proxy-url": "http://proxy:3128"}, {}, None),
            ({"server": "http://127.0.0.1:8080"}, {"token": "abc"}, "nowhere"),
            ({"server": "https://k8s.example", "certificate-authority": "gone.crt"}, {}, None),
            ({"server": "https://k8s.example", "certificate-authority-data": "%%"}, {}, None),
            ({}, {"token": "abc"}, None),
        ],
        ids=[
            "exec",
            "auth-provider",
            "proxy",
            "unknown-context",
            "missing-file",
            "not-base64",
            "no-server",
        ],
    )
    def test_delegated(
        self, tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any], context: str | None
    ) -> None:
        path = write(tmp_path, cluster, user)
        configuration = Configuration()
        before = settings(configuration)
        assert kubeconfig.load(str(path), context, configuration) is False
        assert settings(configuration) == before

    @pytest.mark.parametrize("text", ["clusters: [\n", "- a\n", "clusters: 5\n", "\x00\xff"])
    def test_not_a_kubeconfig(self, tmp_path: Path, text: str) -> None:
        path = tmp_path / "config"
        path.write_text(text, encoding="latin-1")
        assert kubeconfig.load(str(path), None, Configuration()) is False

    def test_several_files(self, tmp_path: Path) -> None:
        path = write(tmp_path, {"server": "http://127.0.0.1:8080"}, {"token": "abc"})
        assert kubeconfig.load(f"{path}:{path}", None, Configuration()) is False


def test_the_command_line_loads_the_kubernetes_config_parts_lazily() -> None:
    """In the console script's process `import kubernetes.client` no longer loads
    requests-oauthlib (the config loader's); the loader still works when asked for."""
    code = (
        "import sys\n"
        "from crystal_runbook import process\n"
        "process.load_lazily()\n"
        "import kubernetes.client\n"
        "print('requests_oauthlib' in sys.modules)\n"
        "from kubernetes.config import kube_config\n"
        "print(callable(kube_config.load_kube_config), 'requests_oauthlib' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == ["False", "True", "True"]
