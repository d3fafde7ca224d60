"""The console view of a run: live progress in a terminal, plain lines elsewhere.

In a terminal a rich ``Live`` table shows each step, its status and elapsed time, refreshed
as events arrive and every quarter second. When output goes to a file or a pipe (CI, cron,
`tee`), the same events are printed as one plain, timestamped line each.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from crystal_runbook.engine import durations, printable
from crystal_runbook.engine.events import Event

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.live import Live

_STYLE = {
    "ok": "green",
    "skipped": "dim",
    "failed": "bold red",
    "interrupted": "yellow",
    "refused": "bold red",
    "applying": "cyan",
    "applied": "cyan",
    "verifying": "magenta",
    "checking": "blue",
    "pending": "dim",
}


@dataclass
class _Row:
    step: str
    uses: str
    status: str = "pending"
    detail: str = ""
    started: float | None = None
    ended: float | None = None


class PlainSink:
    """One line per event: ``12:00:01 undo           applying  image: a -> b``."""

    def __init__(self, stream: TextIO | None = None, *, verbose: int = 0) -> None:
        self.stream = stream or sys.stderr
        self.verbose = verbose

    def __call__(self, event: Event) -> None:
        if event.status == "checking" and event.kind == "step" and not self.verbose:
            return  # every step starts with a check; say so only when asked (-v)
        clock = event.at[11:19]
        who = event.step_id or "run"
        line = printable.printable(f"{clock} {who:<20} {event.status:<10} {event.message}")
        self.stream.write(line + "\n")
        self.stream.flush()

    def __enter__(self) -> PlainSink:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class LiveSink:
    """A live table of steps in a terminal (rich)."""

    def __init__(
        self, steps: list[tuple[str, str]], *, title: str, stream: TextIO | None = None
    ) -> None:
        from rich.console import Console

        self.console = Console(file=stream or sys.stderr)
        self.rows = {step: _Row(step, uses) for step, uses in steps}
        self.title = title
        self.messages: list[str] = []
        self._lock = threading.Lock()
        self._live: Live | None = None

    def __call__(self, event: Event) -> None:
        with self._lock:
            now = time.monotonic()
            if event.kind in ("step", "progress") and event.step_id:
                row = self.rows.get(event.step_id)
                if row is None:
                    row = self.rows[event.step_id] = _Row(event.step_id, event.uses or "")
                if event.kind == "step":
                    row.status = event.status
                    if row.started is None:
                        row.started = now
                    if event.status in ("ok", "skipped", "failed", "interrupted", "refused"):
                        row.ended = now
                row.detail = event.message
            else:
                self.messages.append(f"{event.at[11:19]} {event.message}")
        self._refresh()

    def _render(self) -> RenderableType:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(title=self.title, title_justify="left", expand=False)
        table.add_column("step")
        table.add_column("action", style="dim")
        table.add_column("status")
        table.add_column("elapsed", justify="right")
        table.add_column("detail", overflow="fold", max_width=70)
        now = time.monotonic()
        with self._lock:
            for row in self.rows.values():
                elapsed = ""
                if row.started is not None:
                    elapsed = durations.format_duration((row.ended or now) - row.started)
                table.add_row(
                    row.step,
                    row.uses,
                    Text(row.status, style=_STYLE.get(row.status, "")),
                    elapsed,
                    row.detail,
                )
            messages = [Text(m) for m in self.messages[-5:]]
        return Group(table, *messages)

    def _refresh(self) -> None:
        live = self._live
        if live is not None:
            live.update(self._render())

    def __enter__(self) -> LiveSink:
        from rich.live import Live

        live = Live(
            self._render(),
            console=self.console,
            refresh_per_second=4,
            transient=False,
            get_renderable=self._render,
        )
        live.start()
        self._live = live
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        live = self._live
        self._live = None
        if live is not None:
            live.stop()
