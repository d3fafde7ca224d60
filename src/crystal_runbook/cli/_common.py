"""What every command shares: the global options, and turning errors into exit codes.

Kept free of heavy imports: `crystal-runbook --help` loads this module.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from crystal_runbook import errors


@dataclass(frozen=True)
class GlobalOptions:
    """The options every command accepts, before or after the command name."""

    env: str | None
    inventory: Path
    runbooks: Path
    output: str
    state_dir: Path
    verbose: int

    @property
    def json(self) -> bool:
        return self.output == "json"


def default_dir(name: str) -> Path:
    """`./<name>` when it exists, else the one shipped with crystal-runbook, else `./<name>`.

    So `rollback`, `health` and friends work from any working directory with the shipped
    runbooks and inventory (design.md section 6); an explicit --inventory/--runbooks wins.
    """
    here = Path(name)
    if here.is_dir():
        return here
    package = Path(__file__).resolve().parents[1]
    checkout = package.parents[1]  # src layout: <checkout>/src/crystal_runbook
    roots = [checkout] if (checkout / "pyproject.toml").is_file() else []
    roots.append(Path(sys.prefix) / "share" / "crystal-runbook")  # installed from a wheel
    for root in roots:
        if (root / name).is_dir():
            return root / name
    return here


def options(ctx: typer.Context) -> GlobalOptions:
    """The global options parsed by the root callback (commands call this first)."""
    root = ctx.find_root()
    obj = root.obj
    if not isinstance(obj, GlobalOptions):  # a command invoked without the root callback
        obj = GlobalOptions(
            env=os.environ.get("CRYSTAL_ENV") or None,
            inventory=default_dir("inventory"),
            runbooks=default_dir("runbooks"),
            output="text",
            state_dir=Path(os.environ.get("CRYSTAL_STATE_DIR") or ".crystal"),
            verbose=0,
        )
        root.obj = obj
    return obj


class RedactedStream:
    """A text stream that masks secrets (``engine.secrets.Redactor``) in what is written.

    Messages echo what people typed (an unknown service, a bad option value, a path), and
    people paste secrets anywhere (a password in a health URL that a plan then prints); the
    command line's stdout and stderr go through this, so no result, error, usage message or
    warning prints a token or password. Everything else (isatty, fileno, encoding) is the
    wrapped stream's.
    """

    def __init__(self, stream: Any) -> None:
        from crystal_runbook.engine.secrets import Redactor

        self._stream = stream
        self._redactor = Redactor()

    def write(self, text: str) -> int:
        self._stream.write(self._redactor.text(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._stream.flush()

    @property
    def wrapped(self) -> Any:
        return self._stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def redacted_stdio() -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` through ``RedactedStream`` for the block (restored
    after it)."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactedStream(out), RedactedStream(err)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err


def fail(message: str, *, code: int, hint: str | None = None) -> typer.Exit:
    """Print an error to stderr and return the Exit to raise."""
    print(f"error: {message}", file=sys.stderr)
    if hint:
        print(f"  hint: {hint}", file=sys.stderr)
    return typer.Exit(code)


@contextmanager
def handle_errors() -> Iterator[None]:
    """Map the project's exception tree to messages on stderr and exit codes."""
    try:
        yield
    except errors.CrystalError as exc:
        from crystal_runbook.engine.printable import printable

        print(printable(f"error: {exc}"), file=sys.stderr)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise typer.Exit(130) from None


@contextmanager
def stopped_by_user(message: str | None = None) -> Iterator[None]:
    """For commands a person ends with Ctrl-C or SIGTERM (`logs -f`, `watch`): a quiet exit 0
    with at most one line, whenever the signal arrives (design.md section 4)."""
    try:
        with sigterm_as_interrupt():
            yield
    except KeyboardInterrupt:
        if message:
            print(message, file=sys.stderr)
        raise typer.Exit(0) from None


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C for the duration of a run, so both journal `interrupted`."""
    import signal

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. called from a test harness thread)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interactive() -> bool:
    """True when a person can answer a question on this terminal."""
    return sys.stdin.isatty() and sys.stderr.isatty()


def ask_yes(question: str) -> bool:
    """Ask on the terminal; only the word yes counts."""
    print(f"{question}: ", end="", file=sys.stderr, flush=True)
    try:
        answer = sys.stdin.readline()
    except (EOFError, KeyboardInterrupt):
        return False
    return answer.strip().lower() == "yes"


def unexpected(exc: Exception) -> int:
    """Say what an error nobody translated means, without a traceback; its exit code.

    The state directory's files (a journal on a full, read-only or damaged disk, a path
    too long) are the user's to fix: exit 2. Anything else is a bug of ours: exit 1.
    """
    import sqlite3

    from crystal_runbook.engine.printable import printable

    if isinstance(exc, sqlite3.DatabaseError):
        message = f"the journal cannot be used: {exc}"
        hint = (
            "check the state directory (--state-dir, $CRYSTAL_STATE_DIR): free disk space, "
            "write permission; a damaged journal.db can be moved aside (runs start afresh)"
        )
        code = 2
    elif isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        message = f"cannot use{where}: {exc.strerror or exc}"
        hint = "check the path, free disk space and permissions (--state-dir, $CRYSTAL_STATE_DIR)"
        code = 2
    else:
        message = f"unexpected {type(exc).__name__}: {exc}"
        hint = "this is a bug in crystal-runbook; please report it with the command you ran"
        code = 1
    print(printable(f"error: {message}"[:2000]), file=sys.stderr)
    print(f"  hint: {hint}", file=sys.stderr)
    return code
