"""A real PostgreSQL on a free loopback port, in a temporary directory, for tests and benches.

Started as test-servers.md describes (initdb and pg_ctl as the `postgres` user, never as a
system service) and stopped by the PID it wrote. One role, `crystal`, logs in over TCP with
a password (scram-sha-256) and may create databases; the trigger tests add the source
document's tables, the journal tests one database with a schema per test. Durability is
switched off (fsync, synchronous_commit): the data is thrown away with the directory.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_binary(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    if found:
        return found[0]
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found (scripts/test.sh installs postgresql)")
    return path


RUN_AS = ["runuser", "-u", "postgres", "--"]


@dataclass
class Postgres:
    """A running PostgreSQL cluster owned by the `postgres` user, password-protected on TCP."""

    port: int
    dir: Path
    password: str

    def dsn(
        self, *, password: str | None = None, database: str = "maia", search_path: str = ""
    ) -> str:
        pw = self.password if password is None else password
        url = f"postgresql://crystal:{pw}@127.0.0.1:{self.port}/{database}"
        if search_path:
            url += "?options=" + quote(f"-csearch_path={search_path}", safe="")
        return url

    def psql(self, *commands: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the Unix socket; the output of the last command."""
        argv = [
            *RUN_AS,
            pg_binary("psql"),
            "-h",
            str(self.dir),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-At",
        ]
        for command in commands:
            argv += ["-c", command]
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout

    def stop(self) -> None:
        pid_file = self.dir / "data" / "postmaster.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, signal.SIGTERM)  # smart shutdown, by the PID it wrote
            deadline = time.monotonic() + 15
            while pid_file.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        shutil.rmtree(self.dir, ignore_errors=True)


def start_postgres_server(password: str = "s3cret-Pa55word") -> Postgres:  # noqa: S107 - a throwaway test cluster
    """initdb in a temporary directory as `postgres`, start on a free port, add `crystal`."""
    directory = Path(tempfile.mkdtemp(prefix="crystal-pg-"))
    shutil.chown(directory, "postgres", "postgres")
    pwfile = directory / "pw"
    pwfile.write_text("bootstrap\n")
    shutil.chown(pwfile, "postgres", "postgres")
    data = directory / "data"
    subprocess.run(
        [
            *RUN_AS,
            pg_binary("initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    settings = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    subprocess.run(
        [
            *RUN_AS,
            pg_binary("pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(directory / "log"),
            "-o",
            f"-k {directory} -p {port} -c listen_addresses=127.0.0.1 {settings}",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    pg = Postgres(port, directory, password)
    try:
        pg.psql(f"CREATE ROLE crystal LOGIN CREATEDB PASSWORD '{password}'")
    except BaseException:
        pg.stop()
        raise
    return pg
