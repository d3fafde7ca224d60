"""Trigger state kept between processes: rule windows and the open incident.

`watch` may be restarted, and `watch --once` is run from cron; neither should forget that
a rule has been pending for four of its five minutes, nor that this incident already got its
rollback. The state lives in ``<state dir>/triggers/<service>.<env>.json``, replaced
atomically after each evaluation. It is small (rule states and short histories), holds no
secrets (values and timestamps only) and is only trusted when recent (``WatchSettings``).

Beside it, ``<service>.<env>.samples.json`` keeps the scrape source's latest samples of the
series the rules read (targets named by a digest of their URL; the latest scrape and one at
least a rate gap before it), written by `watch` and `health`: the next `health` or `watch
--once` within the rules' ``rate()`` range has its earlier sample already and scrapes once
instead of twice a second apart, even when it comes right after the last.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

VERSION = 1


def path_for(state_dir: Path, service: str, env: str) -> Path:
    return Path(state_dir) / "triggers" / f"{service}.{env}.json"


def samples_path(state_dir: Path, service: str, env: str) -> Path:
    return Path(state_dir) / "triggers" / f"{service}.{env}.samples.json"


def load(path: Path) -> dict[str, Any]:
    """The saved state, or an empty one if absent, unreadable or of another version."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != VERSION:
        return {}
    return data


def save(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**data, "version": VERSION}, default=str), encoding="utf-8")
    tmp.replace(path)
