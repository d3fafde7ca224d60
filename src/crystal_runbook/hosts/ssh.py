"""fabric connections to inventory hosts, with our host-key policy and our errors.

fabric's own default trusts any host key (paramiko's ``AutoAddPolicy``); here a host key
must be in the configured known_hosts file, a key that differs from the recorded one is
refused as a mismatch, and new keys are appended to the file only where ``HostsConfig``
allows it (the `sandbox` environment).

Every paramiko and socket error is translated into the project's tree in one place
(``translate``): refused connections and timeouts are temporary, authentication and host-key
problems permanent, each message naming the host, its address and what to do.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crystal_runbook import errors
from crystal_runbook.hosts import shell as shell_mod
from crystal_runbook.hosts.config import HostsConfig
from crystal_runbook.hosts.inventory import Host

if TYPE_CHECKING:
    import fabric

_FILE_LOCK = threading.Lock()
OUTPUT_LIMIT = 4000
"""Characters of stdout/stderr kept per host and command (the tail)."""


@dataclass(frozen=True)
class CommandResult:
    """What one command did on one host."""

    exit_code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def fingerprint(key_base64: str) -> str:
    """OpenSSH's SHA256 fingerprint of a base64 public key."""
    digest = hashlib.sha256(base64.b64decode(key_base64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _known_hosts_name(host: Host) -> str:
    return host.address if host.port == 22 else f"[{host.address}]:{host.port}"


def _policy(config: HostsConfig) -> Any:
    import paramiko

    class UnknownHostKey(paramiko.SSHException):  # type: ignore[misc]  # paramiko is untyped
        """The host's key is not in known_hosts and may not be added here."""

        def __init__(self, hostname: str, key: Any) -> None:
            super().__init__(f"host key of {hostname} is not in {config.known_hosts}")
            self.fingerprint = fingerprint(key.get_base64())

    class Policy(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]  # paramiko is untyped
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            if not config.auto_add:
                raise UnknownHostKey(hostname, key)
            line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
            with _FILE_LOCK:
                config.known_hosts.parent.mkdir(parents=True, exist_ok=True)
                with config.known_hosts.open("a", encoding="utf-8") as fh:
                    fh.write(line)

    return Policy()


class Pool:
    """Open connections of one step, one per host, reused by check, apply and verify."""

    def __init__(self, config: HostsConfig, *, connect_timeout: float = 10.0) -> None:
        self.config = config
        self.connect_timeout = connect_timeout
        self._connections: dict[str, fabric.Connection] = {}
        self._shells: dict[str, shell_mod.Shell] = {}
        self._lock = threading.Lock()
        self.last_used = time.monotonic()

    def connection(self, host: Host) -> fabric.Connection:
        """An open connection to ``host`` (opened on first use).

        Raises:
            errors.ActionError: as ``translate`` says.
        """
        self.last_used = time.monotonic()
        with self._lock:
            conn = self._connections.get(host.name)
        if conn is not None and conn.is_connected:
            return conn
        conn = self._open(host)
        with self._lock:
            self._connections[host.name] = conn
        return conn

    def _open(self, host: Host) -> fabric.Connection:
        import fabric

        connect_kwargs: dict[str, Any] = {
            "banner_timeout": self.connect_timeout,
            "auth_timeout": self.connect_timeout,
        }
        if host.key_file:
            connect_kwargs.update(
                key_filename=host.key_file, look_for_keys=False, allow_agent=False
            )
        conn = fabric.Connection(
            host.address,
            user=host.user,
            port=host.port,
            connect_timeout=max(1, round(self.connect_timeout)),
            connect_kwargs=connect_kwargs,
        )
        conn.client.set_missing_host_key_policy(_policy(self.config))
        if self.config.known_hosts.exists():
            with translate(host, self.config):
                conn.client.load_host_keys(str(self.config.known_hosts))
        with translate(host, self.config):
            conn.open()
        return conn

    def shell(self, host: Host) -> shell_mod.Shell:
        """The long-lived shell on ``host`` (its connection and session opened on first use).

        Raises:
            errors.ActionError: as ``translate`` says.
        """
        with self._lock:
            found = self._shells.get(host.name)
        if found is not None:
            return found
        conn = self.connection(host)
        with translate(host, self.config):
            opened = shell_mod.Shell(conn.create_session())
        with self._lock:
            self._shells[host.name] = opened
        return opened

    def stop_command(self, host: Host, pid: int | None) -> bool:
        """End the command that ran over its time on ``host`` (process group ``pid``) over a
        new session of the host's connection; False when that could not be done."""
        if pid is None:
            return False
        with self._lock:
            conn = self._connections.get(host.name)
        if conn is None:
            return False
        try:
            session = conn.create_session()
        except Exception:  # noqa: BLE001 - the connection broke with the command; say so
            return False
        return shell_mod.stop_command(session, pid)

    def drop(self, host: Host) -> None:
        """Forget (and close) ``host``'s shell and connection, e.g. after a failure."""
        with self._lock:
            found = self._shells.pop(host.name, None)
            conn = self._connections.pop(host.name, None)
        if found is not None:
            found.close()
        if conn is not None:
            _close(conn)

    def close(self) -> None:
        with self._lock:
            shells = list(self._shells.values())
            conns = list(self._connections.values())
            self._shells.clear()
            self._connections.clear()
        for found in shells:
            found.close()
        for conn in conns:
            _close(conn)


def _close(conn: fabric.Connection) -> None:
    with suppress(Exception):  # closing a broken connection may fail; it is gone either way
        conn.close()


def run(
    pool: Pool,
    host: Host,
    command: str,
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
) -> CommandResult:
    """Run ``command`` (a shell command line) on ``host`` within ``timeout`` seconds.

    It runs in the host's long-lived shell (``hosts.shell``); ``env`` is exported first,
    each value shell-quoted.

    Raises:
        errors.ActionError: the host could not be reached or the command timed out.
    """
    started = time.monotonic()
    where = host.where
    try:
        found = pool.shell(host)
        remaining = max(1.0, timeout - (time.monotonic() - started))
        with translate(host, pool.config, timeout=timeout):
            output = found.run(command, timeout=remaining, env=env, limit=OUTPUT_LIMIT)
    except shell_mod.ShellTimeout as late:
        stopped = pool.stop_command(host, late.pid)
        pool.drop(host)
        raise errors.TemporaryActionError(
            f"{where}: the command did not finish within {timeout:g}s"
            + (
                "; it was stopped on the host"
                if stopped
                else "; it could not be stopped on the host and may still be running"
            ),
            hint="raise `host_timeout` of the step or look at the host"
            + ("" if stopped else f" (ps -g {late.pid} there)" if late.pid else ""),
        ) from None
    except shell_mod.ShellGone:
        pool.drop(host)
        raise errors.TemporaryActionError(
            f"{where}: the connection closed while the command ran",
            hint="check the host; `resume` runs the check again on every host",
        ) from None
    except errors.ActionError:
        pool.drop(host)
        raise
    return CommandResult(
        exit_code=output.exit_code,
        stdout=output.stdout,
        stderr=output.stderr,
        seconds=time.monotonic() - started,
    )


def _mismatch(host: Host, config: HostsConfig, offered: str) -> errors.PermanentActionError:
    name = _known_hosts_name(host)
    return errors.PermanentActionError(
        f"{host.where}: HOST KEY MISMATCH: it offered {offered}, "
        f"but {config.known_hosts} holds another key for {name}",
        hint="someone may be intercepting the connection; if the host was reinstalled, "
        f"check its new fingerprint, then `ssh-keygen -R '{name}' -f {config.known_hosts}` "
        "and connect again; nothing was changed on it",
    )


def _unknown(host: Host, config: HostsConfig, offered: str) -> errors.PermanentActionError:
    return errors.PermanentActionError(
        f"{host.where}: its host key ({offered}) is not in {config.known_hosts}",
        hint=f"check the fingerprint with the host's owner, then "
        f"`ssh-keyscan -p {host.port} {host.address} >> {config.known_hosts}`; "
        "keys are added automatically only in the sandbox environment",
    )


def probe_host_key(host: Host, config: HostsConfig, *, timeout: float = 10.0) -> None:
    """Check ``host``'s key against known_hosts without logging in (before Ansible runs).

    OpenSSH (Ansible's transport) would refuse the same host, but with a message buried in
    a task result; this says it plainly, before any playbook starts.

    Raises:
        errors.PermanentActionError: mismatch, or unknown where keys are not added.
        errors.TemporaryActionError: the host cannot be reached (Ansible reports it too).
    """
    import paramiko

    known = paramiko.HostKeys()
    if config.known_hosts.exists():
        with translate(host, config, timeout=timeout):
            known.load(str(config.known_hosts))
    entry = known.lookup(_known_hosts_name(host))
    with translate(host, config, timeout=timeout):
        sock = socket.create_connection((host.address, host.port), timeout=timeout)
        transport = paramiko.Transport(sock)
        try:
            if entry:  # ask for the key type on record first, as OpenSSH does
                options = transport.get_security_options()
                recorded = list(entry.keys())
                options.key_types = recorded + [k for k in options.key_types if k not in recorded]
            transport.start_client(timeout=timeout)
            offered = transport.get_remote_server_key()
        finally:
            transport.close()
    printed = fingerprint(offered.get_base64())
    if entry is None:
        if not config.auto_add:
            raise _unknown(host, config, printed)
        return
    recorded_key = entry.get(offered.get_name())
    if recorded_key is None or recorded_key != offered:
        raise _mismatch(host, config, printed)


@contextmanager
def translate(host: Host, config: HostsConfig, *, timeout: float | None = None) -> Iterator[None]:
    """Turn paramiko and socket errors into ``errors.ActionError`` for ``host``."""
    import paramiko

    where = host.where
    try:
        yield
    except paramiko.BadHostKeyException as exc:
        raise _mismatch(host, config, fingerprint(exc.key.get_base64())) from None
    except paramiko.PasswordRequiredException:
        raise errors.PermanentActionError(
            f"{where}: the key {host.key_file} is protected by a passphrase",
            hint="load it into ssh-agent and drop ansible_ssh_private_key_file, or use a "
            "key without a passphrase",
        ) from None
    except paramiko.AuthenticationException as exc:
        raise errors.PermanentActionError(
            f"{where}: authentication failed as {host.user or 'the current user'}: {exc}",
            hint="check ansible_user and ansible_ssh_private_key_file in the host inventory",
        ) from None
    except paramiko.ssh_exception.NoValidConnectionsError:
        raise errors.TemporaryActionError(
            f"{where}: connection refused (is sshd running and the port right?)",
            hint="start the host or fix ansible_host/ansible_port; `allow_failures` tolerates "
            "hosts that are down",
        ) from None
    except socket.gaierror as exc:
        raise errors.PermanentActionError(
            f"{where}: cannot resolve {host.address!r}: {exc.strerror}",
            hint="fix ansible_host in the host inventory",
        ) from None
    except TimeoutError:
        raise errors.TemporaryActionError(
            f"{where}: no answer within {timeout or 10:g}s",
            hint="check the host and the network; `allow_failures` tolerates hosts that are down",
        ) from None
    except paramiko.SSHException as exc:
        found = getattr(exc, "fingerprint", None)
        if found is not None:
            raise _unknown(host, config, found) from None
        raise errors.TemporaryActionError(f"{where}: SSH error: {exc}") from None
    except OSError as exc:
        raise errors.TemporaryActionError(
            f"{where}: {exc.strerror or exc}",
            hint="check the host and the network",
        ) from None
