"""Where an incident document's files go, and writing them without half-written files.

`<state dir>/incidents/<UTC date>-<service>-<run id>.md`, `.json` and `.png` (design.md
section 6). A file is replaced atomically (write beside, then rename) and only when its bytes
differ, so writing the same document twice is "no change" and a reader never sees half a file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from crystal_runbook.engine import journal

DIRECTORY = "incidents"


@dataclass(frozen=True)
class Paths:
    """The three files of one run's document."""

    markdown: Path
    json: Path
    chart: Path


def base_name(run: journal.RunRecord) -> str:
    """`<UTC date>-<service>-<run id>` (the runbook's name when the run has no service)."""
    date = journal.parse_iso(run.started_at).date().isoformat()
    who = re.sub(r"[^A-Za-z0-9_.-]+", "-", run.service or run.runbook).strip("-.") or "run"
    return f"{date}-{who}-{run.id}"


def paths_for(directory: Path, run: journal.RunRecord) -> Paths:
    base = directory / base_name(run)
    return Paths(
        markdown=base.with_name(base.name + ".md"),
        json=base.with_name(base.name + ".json"),
        chart=base.with_name(base.name + ".png"),
    )


def same(path: Path, content: bytes) -> bool:
    """Whether ``path`` holds exactly ``content``."""
    try:
        return path.read_bytes() == content
    except OSError:
        return False


def write(path: Path, content: bytes) -> bool:
    """Replace ``path`` with ``content`` atomically; False when it already held it.

    Raises:
        OSError: the directory or file cannot be written.
    """
    if same(path, content):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return True
