"""The chaos suite's figures: how many runs were killed, faults injected, examples tried.

Each test adds what it did (``add("runs killed", 1)``); the suite's conftest prints the
totals at the end of the pytest run ("chaos figures"), and writes them as JSON to the file
named by ``CHAOS_FIGURES`` when it is set, so a report quotes what actually ran.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from pathlib import Path

_lock = threading.Lock()
_counts: Counter[str] = Counter()
_notes: list[str] = []


def add(name: str, count: int = 1) -> None:
    with _lock:
        _counts[name] += count


def note(text: str) -> None:
    """A line for the summary (a seed, a distribution)."""
    with _lock:
        _notes.append(text)


def snapshot() -> tuple[dict[str, int], list[str]]:
    with _lock:
        return dict(sorted(_counts.items())), list(_notes)


def write(path: str | None = None) -> None:
    target = path or os.environ.get("CHAOS_FIGURES")
    if not target:
        return
    counts, notes = snapshot()
    Path(target).write_text(json.dumps({"counts": counts, "notes": notes}, indent=2) + "\n")
