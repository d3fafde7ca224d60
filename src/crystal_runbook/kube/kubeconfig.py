"""Static kubeconfig credentials read without the client library's loader, for a fast start.

The official client's loader, `kubernetes.config.kube_config`, imports requests, oauthlib
and requests-oauthlib as it loads (for the OIDC, GCP and Azure auth providers): about 0.1 s
of CPU on a rollback's way to its PATCH, for kubeconfigs that need none of it. Most that a
rollback meets are static: the sandbox's, a CI runner's service-account token, a kind or
kubeadm cluster's client certificate. ``load`` reads those itself and fills the client's
``Configuration`` with the fields the library's loader sets, from the same places:

- the context asked for, else ``current-context``; its cluster and its user;
- cluster: ``server``; for https, ``certificate-authority`` (file or ``-data``);
  ``insecure-skip-tls-verify``; ``tls-server-name``;
- user: ``token`` or ``tokenFile`` (as ``Bearer``); ``client-certificate`` and
  ``client-key`` (file or ``-data``, for https); ``username`` and ``password`` (basic auth).

Relative file names are relative to the kubeconfig's directory, and inline ``-data`` is
written to private temporary files removed at exit, as the library does. Anything else, such
as an exec plugin, an auth provider, a proxy, several files in ``KUBECONFIG``, a file that is
not a well-formed kubeconfig or a context that is not there, makes ``load`` return False
without touching the configuration: the caller then uses the library's loader, which handles
it or says what is wrong in its own words, as before.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

DELEGATED_USER_KEYS = frozenset({"exec", "auth-provider"})
"""User entries that need the library's loader (plugins and token refresh)."""
DELEGATED_CLUSTER_KEYS = frozenset({"proxy-url"})
"""Cluster entries that need the library's loader."""

_TEMP: list[Path] = []
_TEMP_LOCK = threading.Lock()


class Delegate(Exception):
    """This kubeconfig needs the library's loader."""


def load(path: str, context: str | None, configuration: Any) -> bool:
    """Fill ``configuration`` from the kubeconfig at ``path``; False: use the library's loader.

    ``path`` is one file (a ``KUBECONFIG`` of several files is merged by the library).
    """
    if os.pathsep in path:
        return False
    try:
        settings = read(Path(path), context)
    except (Delegate, OSError, yaml.YAMLError, UnicodeDecodeError):
        return False
    for key, value in settings.items():
        if key == "token":
            configuration.api_key["BearerToken"] = value
        else:
            setattr(configuration, key, value)
    return True


def read(path: Path, context: str | None) -> dict[str, Any]:
    """The configuration's fields for ``context`` of the kubeconfig at ``path``.

    Raises:
        Delegate: the file is not a plain static kubeconfig (see the module docstring).
        OSError: the file, or a file it names, cannot be read.
    """
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(document, Mapping):
        raise Delegate("not a mapping")
    name = context if context is not None else document.get("current-context")
    ctx = _named(document, "contexts", name, "context")
    cluster = _named(document, "clusters", ctx.get("cluster"), "cluster")
    user_name = ctx.get("user")
    user: Mapping[str, Any] = {}
    if user_name and document.get("users"):
        user = _named(document, "users", user_name, "user", required=False)
    if DELEGATED_USER_KEYS & set(user) or DELEGATED_CLUSTER_KEYS & set(cluster):
        raise Delegate("needs the library's loader")
    server = cluster.get("server")
    if not isinstance(server, str) or not server:
        raise Delegate("no server")
    base = path.resolve().parent
    out: dict[str, Any] = {"host": server.rstrip("/")}
    token = _data(user, "tokenFile", "token", base, decode=False)
    if token:
        out["token"] = f"Bearer {token.decode('utf-8')}"
    elif isinstance(user.get("username"), str) and isinstance(user.get("password"), str):
        pair = f"{user['username']}:{user['password']}".encode()
        out["token"] = "Basic " + base64.b64encode(pair).decode("ascii")
    if out["host"].startswith("https"):
        out["ssl_ca_cert"] = _file(cluster, "certificate-authority", base)
        out["cert_file"] = _file(user, "client-certificate", base)
        out["key_file"] = _file(user, "client-key", base)
    if "insecure-skip-tls-verify" in cluster:
        out["verify_ssl"] = not cluster["insecure-skip-tls-verify"]
    if "tls-server-name" in cluster:
        out["tls_server_name"] = cluster["tls-server-name"]
    return out


def _named(
    document: Mapping[str, Any], section: str, name: Any, key: str, *, required: bool = True
) -> Mapping[str, Any]:
    """The ``key`` mapping of the entry called ``name`` in ``document[section]``."""
    entries = document.get(section)
    if not isinstance(entries, list) or not isinstance(name, str):
        raise Delegate(f"no {section}")
    for entry in entries:
        if isinstance(entry, Mapping) and entry.get("name") == name:
            value = entry.get(key)
            if value is None and not required:
                return {}
            if not isinstance(value, Mapping):
                raise Delegate(f"{section} entry {name} has no {key}")
            return value
    if not required:
        return {}
    raise Delegate(f"no {section} entry {name}")


def _data(
    entry: Mapping[str, Any], file_key: str, data_key: str, base: Path, *, decode: bool
) -> bytes | None:
    """The content of ``entry[data_key]`` (base64 when ``decode``), else of the file named by
    ``entry[file_key]``; None when neither is given."""
    data = entry.get(data_key)
    if data:
        if not isinstance(data, str):
            raise Delegate(f"{data_key} is not a string")
        if not decode:
            return data.encode("utf-8")
        try:
            return base64.b64decode(data, validate=True)
        except binascii.Error:
            raise Delegate(f"{data_key} is not base64") from None
    name = entry.get(file_key)
    if not name:
        return None
    if not isinstance(name, str):
        raise Delegate(f"{file_key} is not a string")
    return (base / name).read_bytes()


def _file(entry: Mapping[str, Any], key: str, base: Path) -> str | None:
    """A file holding ``entry[key + '-data']`` (decoded), else the file ``entry[key]`` names."""
    data = entry.get(f"{key}-data")
    if data:
        content = _data(entry, key, f"{key}-data", base, decode=True)
        return _private_file(content or b"")
    name = entry.get(key)
    if not name:
        return None
    if not isinstance(name, str):
        raise Delegate(f"{key} is not a string")
    file = Path(os.path.normpath(base / name))
    if not file.is_file():
        raise Delegate(f"no file {file}")  # the library says "File does not exist"
    return str(file)


def _private_file(content: bytes) -> str:
    """A file only this user can read, holding ``content``, removed when the process ends."""
    with _TEMP_LOCK:
        if not _TEMP:
            _TEMP.append(Path(tempfile.mkdtemp(prefix="crystal-kubeconfig-")))
            atexit.register(_remove_temporary_files)
        fd, name = tempfile.mkstemp(dir=_TEMP[0])
    with os.fdopen(fd, "wb") as out:
        out.write(content)
    return name


def _remove_temporary_files() -> None:
    with _TEMP_LOCK:
        for directory in _TEMP:
            shutil.rmtree(directory, ignore_errors=True)
        _TEMP.clear()
