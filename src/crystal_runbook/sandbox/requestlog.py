"""The request log, ``<state>/sandbox/requests.jsonl``: one JSON line per API request.

Tests and benchmarks count API calls from it, so it must not slow requests down: a request
only appends a small dict to an in-memory list; a background thread serialises and writes
the batch every ``interval`` seconds, and ``close()`` writes what is left. ``flush()`` lets a
test read a complete log without waiting for the interval. Each sandbox run starts a new log,
so counts are of this run's requests only.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any


class RequestLog:
    """Buffered JSON-lines writer with a periodic flusher thread."""

    def __init__(self, path: Path, *, interval: float = 0.2) -> None:
        self.path = path
        self._interval = interval
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self.count = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("w", encoding="utf-8")  # one log per sandbox run
        self._thread = threading.Thread(target=self._run, name="sandbox-request-log", daemon=True)
        self._thread.start()

    def append(self, entry: dict[str, Any]) -> None:
        """Record one request (cheap: no I/O on the caller's thread)."""
        with self._lock:
            self._pending.append(entry)
            self.count += 1

    def flush(self) -> None:
        """Write everything recorded so far."""
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        text = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in batch)
        with self._write_lock:
            if not self._file.closed:
                self._file.write(text)
                self._file.flush()

    def close(self) -> None:
        """Stop the flusher, write what is left and close the file."""
        self._stop.set()
        self._thread.join()
        self.flush()
        with self._write_lock:
            self._file.close()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()
