"""core/v1 Events written by the controllers and the kubelet (``kubectl describe``/``get events``).

Repeated events about the same object with the same reason and message are folded into one
Event whose ``count`` and ``lastTimestamp`` grow, as Kubernetes' event correlator does, and a
namespace keeps at most ``limit`` events (the oldest go first), so a crash-looping pod cannot
fill memory.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

from crystal_runbook.sandbox import resources, store


class Recorder:
    """Writes Events into the store on behalf of a component (``deployment-controller`` ...)."""

    def __init__(self, st: store.Store, *, limit: int = 500) -> None:
        self._store = st
        self._limit = limit
        self._seen: dict[str, OrderedDict[str, None]] = {}

    def record(
        self,
        involved: dict[str, Any],
        *,
        reason: str,
        message: str,
        component: str,
        warning: bool = False,
    ) -> None:
        """Record (or fold into an earlier) event about ``involved`` (a stored object dict)."""
        meta = involved["metadata"]
        ns = str(meta.get("namespace") or "default")
        digest = hashlib.sha256(
            f"{meta.get('uid')}|{reason}|{message}|{component}".encode()
        ).hexdigest()[:16]
        name = f"{meta['name']}.{digest}"
        now = store.rfc3339()
        with self._store.lock:
            if self._store.get(resources.NAMESPACES, "", ns) is None:
                return
            existing = self._store.get(resources.EVENTS, ns, name)
            if existing is not None:
                event = existing.copy()
                event["count"] = int(event.get("count") or 1) + 1
                event["lastTimestamp"] = now
                self._store.replace(resources.EVENTS, event)
                return
            event = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": ns},
                "involvedObject": {
                    "kind": involved.get("kind"),
                    "namespace": meta.get("namespace"),
                    "name": meta["name"],
                    "uid": meta.get("uid"),
                    "apiVersion": involved.get("apiVersion"),
                    "resourceVersion": meta.get("resourceVersion"),
                },
                "reason": reason,
                "message": message,
                "source": {"component": component},
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
                "type": "Warning" if warning else "Normal",
                "eventTime": None,
                "reportingComponent": component,
                "reportingInstance": "crystal-sandbox",
            }
            self._store.create(resources.EVENTS, event)
            seen = self._seen.setdefault(ns, OrderedDict())
            seen[name] = None
            while len(seen) > self._limit:
                old, _ = seen.popitem(last=False)
                if self._store.get(resources.EVENTS, ns, old) is not None:
                    self._store.delete(resources.EVENTS, ns, old)
