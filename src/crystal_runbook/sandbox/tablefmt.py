"""Small formatting helpers shared by the Table printers (``tables`` and ``printers``)."""

from __future__ import annotations

from typing import Any

from crystal_runbook.sandbox import selectors, store

Obj = dict[str, Any]
Column = tuple[str, str, int]  # name, type, priority (1 = only with -o wide)


def human_age(seconds: float) -> str:
    """Kubernetes' ``duration.HumanDuration``: 45s, 3m20s, 12m, 5h3m, 3d4h, 20d."""
    s = int(max(0, seconds))
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


def age(obj: Obj, now: float) -> str:
    created = store.parse_time(obj["metadata"].get("creationTimestamp"))
    return "<unknown>" if created is None else human_age(now - created)


def selector_text(selector: Any) -> str:
    """A structured label selector as kubectl prints it (``app=maia``), or ""."""
    try:
        return str(selectors.from_structured(selector))
    except selectors.SelectorError:
        return ""
