"""The object store: every object, the resourceVersion counter and the watch fan-out.

One lock guards everything; one resourceVersion counter (as etcd's revision) orders every
change across all types. Each committed object is kept twice: as a dict that is never
mutated after commit (readers may look, never touch) and as its JSON bytes, so a GET
answers without serialising. Every change is appended to its type's bounded event history
and wakes that type's condition variable: watchers sleep on the condition and are woken by
the change itself, never by polling. Listeners (the controllers) are called after each
commit, under the lock, and must only enqueue work.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from crystal_runbook.sandbox import resources

Obj = dict[str, Any]
StoreKey = tuple[str, str]  # (group, plural)


def dumps(obj: Any) -> bytes:
    """Compact JSON, as the API server writes it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def rfc3339(at: float | None = None) -> str:
    """A Kubernetes ``Time`` (second precision, UTC)."""
    moment = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(at: float | None = None) -> str:
    """A Kubernetes ``MicroTime``."""
    moment = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> float | None:
    """Seconds since the epoch of a ``Time`` or ``MicroTime`` string, or None."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Stored:
    """A committed object: the dict (read-only by convention), its JSON and its version."""

    obj: Obj
    raw: bytes
    rv: int

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"].get("namespace") or "")

    @property
    def uid(self) -> str:
        return str(self.obj["metadata"]["uid"])

    def copy(self) -> Obj:
        """A deep copy that the caller may change."""
        return copy.deepcopy(self.obj)


@dataclass(frozen=True, slots=True)
class Event:
    """One change: ADDED, MODIFIED or DELETED, with the object before it (for selectors)."""

    rv: int
    type: str
    obj: Obj
    raw: bytes
    prev: Obj | None


class TooOld(Exception):
    """A watch asked to resume from a resourceVersion the history no longer holds."""


@dataclass
class _Bucket:
    objects: dict[tuple[str, str], Stored]
    events: deque[Event]
    cond: threading.Condition
    compacted_rv: int = 0


Listener = Callable[[resources.Resource, Event], None]


@dataclass
class Store:
    """All objects of all served types, with per-type watch histories."""

    registry: resources.Registry
    history: int = 2048
    lock: threading.RLock = field(default_factory=threading.RLock)
    _rv: int = 1
    _buckets: dict[StoreKey, _Bucket] = field(default_factory=dict)
    _listeners: list[Listener] = field(default_factory=list)
    closed: bool = False
    by_uid: dict[str, tuple[resources.Resource, str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for res in self.registry.resources:
            self._buckets.setdefault(
                res.key,
                _Bucket({}, deque(maxlen=self.history), threading.Condition(self.lock)),
            )

    # reads ---------------------------------------------------------------------------

    @property
    def rv(self) -> int:
        """The latest resourceVersion handed out."""
        return self._rv

    def get(self, res: resources.Resource, namespace: str, name: str) -> Stored | None:
        with self.lock:
            return self._buckets[res.key].objects.get((namespace, name))

    def objects(
        self, res: resources.Resource, namespace: str | None = None
    ) -> tuple[list[Stored], int]:
        """Objects of a type (in one namespace, or all) sorted by namespace and name, and the rv."""
        with self.lock:
            objects = self._buckets[res.key].objects
            if namespace:
                items = [s for (ns, _), s in objects.items() if ns == namespace]
            else:
                items = list(objects.values())
            rv = self._rv
        items.sort(key=lambda s: (s.namespace, s.name))
        return items, rv

    def dependents(self, uid: str) -> list[tuple[resources.Resource, Stored]]:
        """Objects with an ownerReference to ``uid``."""
        out: list[tuple[resources.Resource, Stored]] = []
        with self.lock:
            for res in self.registry.resources:
                for stored in self._buckets[res.key].objects.values():
                    refs = stored.obj["metadata"].get("ownerReferences") or []
                    if any(ref.get("uid") == uid for ref in refs):
                        out.append((res, stored))
        return out

    def all_objects(self) -> list[tuple[resources.Resource, Stored]]:
        with self.lock:
            return [
                (res, stored)
                for res in self.registry.resources
                for stored in list(self._buckets[res.key].objects.values())
            ]

    # writes --------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(resource, event)`` after every commit (under the lock)."""
        with self.lock:
            self._listeners.append(listener)

    def create(self, res: resources.Resource, obj: Obj, *, dry_run: bool = False) -> Stored:
        """Commit a new object; fills uid, resourceVersion, creationTimestamp, generation.

        The caller has validated it and checked the name is free (``get`` under ``lock``).
        """
        with self.lock:
            meta = obj.setdefault("metadata", {})
            meta.setdefault("uid", str(uuid.uuid4()))  # admission may have chosen it
            meta.setdefault("creationTimestamp", rfc3339())
            if res.generation:
                meta["generation"] = 1
            if dry_run:
                meta["resourceVersion"] = str(self._rv)
                return Stored(obj, dumps(obj), self._rv)
            return self._commit(res, obj, "ADDED", None)

    def replace(self, res: resources.Resource, obj: Obj, *, dry_run: bool = False) -> Stored:
        """Commit a new version of an existing object (identity fields are kept from it)."""
        with self.lock:
            meta = obj["metadata"]
            key = (meta.get("namespace") or "", meta["name"])
            current = self._buckets[res.key].objects[key]
            cur_meta = current.obj["metadata"]
            meta["uid"] = cur_meta["uid"]
            meta["creationTimestamp"] = cur_meta["creationTimestamp"]
            if res.generation:
                generation = int(cur_meta.get("generation") or 1)
                if obj.get("spec") != current.obj.get("spec"):
                    generation += 1
                meta["generation"] = generation
            if dry_run:
                meta["resourceVersion"] = cur_meta["resourceVersion"]
                return Stored(obj, dumps(obj), current.rv)
            return self._commit(res, obj, "MODIFIED", current.obj)

    def delete(self, res: resources.Resource, namespace: str, name: str) -> Stored:
        """Remove an object now; its DELETED event carries a fresh resourceVersion."""
        with self.lock:
            bucket = self._buckets[res.key]
            current = bucket.objects.pop((namespace, name))
            self.by_uid.pop(current.uid, None)
            self._rv += 1
            obj = copy.deepcopy(current.obj)
            obj["metadata"]["resourceVersion"] = str(self._rv)
            raw = dumps(obj)
            stored = Stored(obj, raw, self._rv)
            self._publish(res, bucket, Event(self._rv, "DELETED", obj, raw, current.obj))
            return stored

    def _commit(self, res: resources.Resource, obj: Obj, kind: str, prev: Obj | None) -> Stored:
        bucket = self._buckets[res.key]
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        raw = dumps(obj)
        stored = Stored(obj, raw, self._rv)
        meta = obj["metadata"]
        key = (meta.get("namespace") or "", meta["name"])
        bucket.objects[key] = stored
        self.by_uid[meta["uid"]] = (res, key[0], key[1])
        self._publish(res, bucket, Event(self._rv, kind, obj, raw, prev))
        return stored

    def _publish(self, res: resources.Resource, bucket: _Bucket, event: Event) -> None:
        if len(bucket.events) == bucket.events.maxlen:
            bucket.compacted_rv = bucket.events[0].rv
        bucket.events.append(event)
        bucket.cond.notify_all()
        for listener in self._listeners:
            listener(res, event)

    # watching ------------------------------------------------------------------------

    def events_after(self, res: resources.Resource, rv: int) -> list[Event]:
        """Events of a type newer than ``rv``; raises ``TooOld`` if history was dropped."""
        with self.lock:
            bucket = self._buckets[res.key]
            if rv < bucket.compacted_rv:
                raise TooOld(f"too old resource version: {rv} ({bucket.compacted_rv})")
            out: list[Event] = []
            for event in reversed(bucket.events):
                if event.rv <= rv:
                    break
                out.append(event)
            out.reverse()
            return out

    def wait(self, res: resources.Resource, after_rv: int, timeout: float | None) -> None:
        """Block until a change of this type newer than ``after_rv``, ``close()``, or timeout."""
        with self.lock:
            bucket = self._buckets[res.key]
            if self.closed or (bucket.events and bucket.events[-1].rv > after_rv):
                return
            bucket.cond.wait(timeout)

    def wake_all(self) -> None:
        """Wake every sleeping watcher once (they re-check their clients and deadlines)."""
        with self.lock:
            for bucket in self._buckets.values():
                bucket.cond.notify_all()

    def close(self) -> None:
        """Wake every watcher for good (the server is stopping)."""
        with self.lock:
            self.closed = True
            for bucket in self._buckets.values():
                bucket.cond.notify_all()
