"""The values of `inventory/services.yaml`, checked by `validate` (not only their shape).

Why: the inventory decides which cluster, namespace, URL and channel a rollback touches, and
it is edited by hand at bad moments. A deployment name with a space, a health URL that is a
`file:` path, a Slack channel that is `<!channel>` or a kubeconfig that does not exist pass
the schema but fail (or do harm) at 3 a.m. ``problems`` finds them first, each at its own
file:line:column with what is wrong and what a good value looks like:

- service keys, namespaces and containers are Kubernetes names (DNS-1123 labels);
  deployments are DNS-1123 subdomains;
- service and environment names are plain words (lower-case letters, digits, `-`, `_`);
- URLs are http(s) with a host (and no password: use ``url_env``);
- Slack channels are ``#name`` or a channel id;
- kubeconfig paths exist, or are under the state directory (``{state_dir}/...``);
- free text has no control characters and at most 1000 characters.

``{state_dir}`` and ``{sandbox_url}`` placeholders (``engine.inventory``) count as what they
expand to.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from crystal_runbook import errors
from crystal_runbook.engine import yamlsource

MAX_TEXT = 1000
"""Characters of any value (the source checklist's input limit)."""
MAX_URL = 2000

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
ENV_NAME = re.compile(r"[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?")
SLACK_CHANNEL = re.compile(r"#[a-z0-9_][a-z0-9._-]{0,79}|[CGD][A-Z0-9]{8,}")
VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
CONTEXT = re.compile(r"[^\s\x00-\x1f\x7f]{1,253}")
HOST_GROUP = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
SANDBOX_URL = "{sandbox_url}"
STATE_DIR = "{state_dir}"

Loc = tuple[str | int, ...]
Check = Callable[[str], str | None]


def _named(pattern: re.Pattern[str], what: str) -> Check:
    def check(value: str) -> str | None:
        if pattern.fullmatch(value):
            return None
        return f"{value[:80]!r} is not {what}"

    return check


kubernetes_name = _named(
    DNS_LABEL, "a Kubernetes name (lower-case letters, digits and '-', at most 63, e.g. maia)"
)
_subdomain = _named(
    DNS_SUBDOMAIN, "a Kubernetes object name (lower-case letters, digits, '-' and '.')"
)


def deployment_name(value: str) -> str | None:
    if len(value) > 253:
        return f"{value[:80]!r}... is longer than 253 characters (a Kubernetes object name)"
    return _subdomain(value)
plain_word = _named(ENV_NAME, "a plain name (lower-case letters, digits, '-' and '_')")
slack_channel = _named(SLACK_CHANNEL, "a Slack channel: #name (lower case) or a channel id")
variable_name = _named(VARIABLE, "an environment variable name")
context_name = _named(CONTEXT, "a kubeconfig context name (no spaces or control characters)")
host_group = _named(HOST_GROUP, "a host group name (letters, digits, '_', '-', '.')")


def service_key(value: str) -> str | None:
    if len(value) > 63 or not DNS_LABEL.fullmatch(value):
        return (
            f"service {value[:80]!r} is not a plain Kubernetes name (lower-case letters, digits "
            "and '-', at most 63)"
        )
    return None


def url(value: str) -> str | None:
    """An http(s) URL with a host, no spaces, no password; ``{sandbox_url}`` counts as one."""
    if len(value) > MAX_URL:
        return f"URL longer than {MAX_URL} characters"
    full = value
    if value.startswith(SANDBOX_URL):  # the sandbox's http://127.0.0.1:PORT
        full = "http://127.0.0.1:1" + value[len(SANDBOX_URL) :]
    if any(c.isspace() for c in full) or CONTROL.search(full):
        return f"URL {value[:80]!r} has spaces or control characters"
    try:
        parts = urlsplit(full)
        port = parts.port
    except ValueError as exc:
        return f"URL {value[:80]!r} does not parse: {exc}"
    if parts.scheme not in ("http", "https"):
        return f"URL {value[:80]!r} is not http(s)"
    host = parts.hostname or ""
    if not host:
        return f"URL {value[:80]!r} has no host"
    if parts.password is not None:
        return (
            f"URL {value[:80]!r} carries a password; the inventory is not a secret store: put "
            "the URL in an environment variable and name it with url_env"
        )
    if "[" in parts.netloc:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return f"URL {value[:80]!r} has a bad IPv6 address"
    elif not re.fullmatch(r"[A-Za-z0-9._-]+", host):
        return f"URL {value[:80]!r} has a bad host name"
    if port is not None and not 0 < port < 65536:
        return f"URL {value[:80]!r} has a bad port"
    return None


def text(value: str) -> str | None:
    if len(value) > MAX_TEXT:
        return f"longer than {MAX_TEXT} characters"
    if CONTROL.search(value):
        return "contains control characters"
    return None


def kubeconfig(value: str, *, state_dir: Path | None) -> str | None:
    """A kubeconfig path that exists, or one under the state directory (written there by
    `crystal-runbook sandbox up`)."""
    if not value or len(value) > MAX_TEXT or CONTROL.search(value) or "\x00" in value:
        return f"kubeconfig {value[:80]!r} is not a usable path"
    if value.startswith(STATE_DIR):
        return None
    path = Path(value).expanduser()
    if state_dir is not None:
        try:
            path.resolve().relative_to(state_dir.resolve())
        except ValueError:
            pass
        else:
            return None
    try:
        if path.is_file():
            return None
        exists = path.exists()
    except OSError as exc:
        return f"kubeconfig {value[:80]!r} cannot be read: {exc.strerror}"
    what = "is not a file" if exists else "does not exist"
    return (
        f"kubeconfig {value[:80]!r} {what}; give an existing kubeconfig, or a path under "
        "the state directory ({state_dir}/...)"
    )


def problems(source: yamlsource.Source, *, state_dir: Path | None) -> list[errors.Problem]:
    """Every bad value of a `services.yaml` whose shape is valid, at its place."""
    data = source.data if isinstance(source.data, Mapping) else {}
    return [source.problem(loc, message) for loc, message in _walk(data, state_dir)]


def _walk(data: Mapping[str, Any], state_dir: Path | None) -> Iterator[tuple[Loc, str]]:
    default = data.get("default_environment")
    if isinstance(default, str):
        yield from _one(("default_environment",), default, plain_word)
    for name, svc in (data.get("services") or {}).items():
        where: Loc = ("services", name)
        yield from _one(where, str(name), service_key)
        if not isinstance(svc, Mapping):
            continue
        for field in ("description", "owner"):
            if isinstance(svc.get(field), str):
                yield from _one((*where, field), svc[field], text)
        for env, block in (svc.get("environments") or {}).items():
            at: Loc = (*where, "environments", env)
            yield from _one(at, str(env), plain_word)
            if isinstance(block, Mapping):
                yield from _block(at, block, state_dir)


def _block(at: Loc, block: Mapping[str, Any], state_dir: Path | None) -> Iterator[tuple[Loc, str]]:
    kube = block.get("kubernetes")
    if isinstance(kube, Mapping):
        k: Loc = (*at, "kubernetes")
        checks: dict[str, Check] = {
            "deployment": deployment_name,
            "namespace": kubernetes_name,
            "container": kubernetes_name,
            "context": context_name,
            "kubeconfig": lambda v: kubeconfig(v, state_dir=state_dir),
        }
        for field, check in checks.items():
            if isinstance(kube.get(field), str):
                yield from _one((*k, field), kube[field], check)
    if isinstance(block.get("health_url"), str):
        yield from _one((*at, "health_url"), block["health_url"], url)
    metrics = block.get("metrics")
    if isinstance(metrics, Mapping):
        if isinstance(metrics.get("url"), str):
            yield from _one((*at, "metrics", "url"), metrics["url"], url)
        if isinstance(metrics.get("url_env"), str):
            yield from _one((*at, "metrics", "url_env"), metrics["url_env"], variable_name)
    if isinstance(block.get("slack_channel"), str):
        yield from _one((*at, "slack_channel"), block["slack_channel"], slack_channel)
    hosts = block.get("hosts")
    if isinstance(hosts, str):
        yield from _one((*at, "hosts"), hosts, host_group)
    elif isinstance(hosts, Mapping):
        if isinstance(hosts.get("group"), str):
            yield from _one((*at, "hosts", "group"), hosts["group"], host_group)
        for field in ("inventory", "known_hosts"):
            if isinstance(hosts.get(field), str):
                yield from _one((*at, "hosts", field), hosts[field], text)
    for name, link in (block.get("dashboards") or {}).items():
        if isinstance(link, str):
            yield from _one((*at, "dashboards", name), link, url)


def _one(loc: Loc, value: str, check: Check) -> Iterator[tuple[Loc, str]]:
    message = check(value)
    if message is not None:
        yield loc, message
