"""One watch stream: initial events, the WatchList bookmark, then changes as they happen.

The stream sleeps on the store's condition variable for its resource type and is woken by
the change itself (or by the server stopping, or by the connection monitor when the client
hangs up). Each change is filtered through the watch's namespace and selectors, including
the transitions Kubernetes reports: an object that starts matching arrives as ADDED, one
that stops matching leaves as DELETED. With ``sendInitialEvents=true`` (WatchList, which
kubectl 1.37's ``rollout status`` uses) the current objects come first as ADDED, followed by a
BOOKMARK annotated ``k8s.io/initial-events-end: "true"``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from crystal_runbook.sandbox import apierrors, resources, selectors, store

INITIAL_EVENTS_END = "k8s.io/initial-events-end"
# a sleeping watch re-checks its client at least this often (seconds); normally the
# connection monitor wakes it as soon as the client hangs up
HEARTBEAT_SECONDS = 15.0

Obj = dict[str, Any]
Encoder = Callable[[Obj, bytes], bytes]


class WatchStream:
    """An iterator of byte chunks, each holding one or more newline-terminated events."""

    def __init__(
        self,
        st: store.Store,
        res: resources.Resource,
        *,
        namespace: str | None,
        labels: selectors.LabelSelector,
        fields: selectors.FieldSelector,
        initial: list[store.Stored],
        start_rv: int,
        initial_events_end: bool,
        timeout: float,
        encode: Encoder | None = None,
        client_gone: Callable[[], bool] = lambda: False,
    ) -> None:
        self._store = st
        self._res = res
        self._namespace = namespace
        self._labels = labels
        self._fields = fields
        self._initial = initial
        self._start_rv = start_rv
        self._initial_events_end = initial_events_end
        self._deadline = time.monotonic() + timeout
        self._encode = encode
        self._client_gone = client_gone

    def __iter__(self) -> Iterator[bytes]:
        return self._stream()

    def _line(self, kind: str, obj: Obj, raw: bytes) -> bytes:
        body = self._encode(obj, raw) if self._encode is not None else raw
        return b'{"type":"' + kind.encode() + b'","object":' + body + b"}\n"

    def _matches(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        meta = obj["metadata"]
        if self._namespace and meta.get("namespace") != self._namespace:
            return False
        return self._labels.matches(meta.get("labels")) and self._fields.matches(obj)

    def _seen_as(self, event: store.Event) -> str | None:
        """How this watch reports ``event`` (ADDED/MODIFIED/DELETED), or None to skip it."""
        now, before = self._matches(event.obj), self._matches(event.prev)
        if event.type == "DELETED":
            return "DELETED" if now or before else None
        if now:
            return "MODIFIED" if before and event.type == "MODIFIED" else "ADDED"
        return "DELETED" if before else None

    def _bookmark(self) -> bytes:
        mark = {
            "kind": self._res.kind,
            "apiVersion": self._res.api_version,
            "metadata": {
                "resourceVersion": str(self._start_rv),
                "annotations": {INITIAL_EVENTS_END: "true"},
            },
        }
        return b'{"type":"BOOKMARK","object":' + store.dumps(mark) + b"}\n"

    def _stream(self) -> Iterator[bytes]:
        if self._initial:
            yield b"".join(self._line("ADDED", s.obj, s.raw) for s in self._initial)
        if self._initial_events_end:
            yield self._bookmark()
        last = self._start_rv
        while not self._store.closed:
            try:
                events = self._store.events_after(self._res, last)
            except store.TooOld as exc:
                gone = apierrors.gone(str(exc)).status()
                yield b'{"type":"ERROR","object":' + store.dumps(gone) + b"}\n"
                return
            if events:
                last = events[-1].rv
                out = [
                    self._line(kind, ev.obj, ev.raw)
                    for ev in events
                    if (kind := self._seen_as(ev)) is not None
                ]
                if out:
                    yield b"".join(out)
                continue
            remaining = self._deadline - time.monotonic()
            if remaining <= 0 or self._client_gone():
                return
            self._store.wait(self._res, last, min(remaining, HEARTBEAT_SECONDS))
