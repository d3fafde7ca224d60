"""The outbox: notifications not yet delivered to Slack, one JSON file each.

Why it exists: a rollback must tell people what happened even when Slack cannot be told
(no `SLACK_BOT_TOKEN`, the embedded default; Slack down; a wrong channel), and a notification
must never block a rollback. So every notification that is not (yet) on Slack is a file that
survives the process, that `crystal-runbook outbox list` shows and `outbox flush` delivers.

Each file is named by the notification's idempotency key: the run, the step and a digest of
the message. "Was this message of this run and step already sent?" is therefore a file lookup,
which is how `slack.notify`'s check, `resume` after a crash and a second `flush` avoid posting
twice. Layout under ``<state dir>/outbox/``::

    <key>.json          waiting: status "pending", or "sending" while (or if a crash
                        happened while) a process was posting it, or "posted" when the
                        message is on Slack and the file it shares is not yet
    <run>._live-update.latest.json
                        waiting: the latest state of a run's live progress message that
                        Slack did not take (an update of the message, not a new one; one
                        per run, overwritten: undelivered updates collapse to the latest)
    sent/<key>.json     delivered: Slack's channel id, message ts and permalink (and the
                        shared file's id and permalink)
    .locks/<key>.lock   held (flock) by the one process delivering that notification

Everything written here has already been through ``engine.secrets.Redactor``. A file to
share is kept by its path, not copied: `outbox flush` reads it when it uploads it.

A running step uses ``TolerantOutbox``: a full disk or an outbox that cannot be written
(a file where the directory should be, no permission) is reported, not raised, because a
notification must never stand between the on-call engineer and the rollback.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from crystal_runbook.engine import journal

VERSION = 1
PENDING = "pending"
SENDING = "sending"
POSTED = "posted"
"""The message is on Slack (``delivery``); the file it shares waits (``message.file``)."""
SENT = "sent"
DIRNAME = "outbox"

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class Message:
    """What to say and where (already redacted)."""

    channel: str | None
    text: str
    blocks: list[dict[str, Any]] | None = None
    thread_ts: str | None = None
    reply_to: str | None = None
    """Id of an earlier step of the same run whose message this one answers in its thread."""
    file: str | None = None
    """Absolute path of a file to upload into the message's thread once it is posted."""
    file_title: str | None = None
    update: bool = False
    """Not a new message: the new text and blocks of the message ``reply_to``'s step sent
    (``chat.update``): a run's live progress, parked while Slack did not take it."""


@dataclass(frozen=True)
class Origin:
    """Which run and step a notification belongs to."""

    run_id: str
    step_id: str
    env: str | None = None
    service: str | None = None
    actor: str | None = None


@dataclass(frozen=True)
class Delivery:
    """Where a message landed on Slack."""

    channel: str
    """Channel id as Slack answered it (C..., G..., D...)."""
    ts: str
    permalink: str | None
    at: str
    thread_ts: str | None = None
    """The thread the message was posted in (None: at the top of the channel)."""

    def outputs(self) -> dict[str, Any]:
        """The step outputs of a delivered notification."""
        return {"channel": self.channel, "ts": self.ts, "permalink": self.permalink}


@dataclass(frozen=True)
class FileShare:
    """Where a message's file landed on Slack."""

    file_id: str
    permalink: str | None
    at: str

    def outputs(self) -> dict[str, Any]:
        return {"file_id": self.file_id, "file_permalink": self.permalink}


@dataclass(frozen=True)
class Entry:
    """One notification in the outbox, as stored in its file."""

    key: str
    message: Message
    origin: Origin
    created_at: str
    status: str = PENDING
    attempts: int = 0
    attempted_at: str | None = None
    """When the latest delivery attempt started (where to look for its message on Slack)."""
    last_error: str | None = None
    parent_key: str | None = None
    """Key of the notification this one replies to, when that one was not delivered yet."""
    delivery: Delivery | None = None
    upload_attempts: int = 0
    """Uploads of ``message.file`` tried (after the message was posted)."""
    upload: FileShare | None = None

    def outputs(self) -> dict[str, Any]:
        """The step outputs of what is on Slack: the message, and its file once shared."""
        found = self.delivery.outputs() if self.delivery is not None else {}
        if self.upload is not None:
            found.update(self.upload.outputs())
        return found

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["version"] = VERSION
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Entry:
        """Raises ValueError (or KeyError/TypeError) on a file that is not an outbox entry."""
        if data.get("version") != VERSION:
            raise ValueError(f"unknown outbox entry version {data.get('version')!r}")
        delivery = data.get("delivery")
        upload = data.get("upload")
        return cls(
            key=str(data["key"]),
            message=Message(**data["message"]),
            origin=Origin(**data["origin"]),
            created_at=str(data["created_at"]),
            status=str(data.get("status", PENDING)),
            attempts=int(data.get("attempts", 0)),
            attempted_at=data.get("attempted_at"),
            last_error=data.get("last_error"),
            parent_key=data.get("parent_key"),
            delivery=Delivery(**delivery) if delivery else None,
            upload_attempts=int(data.get("upload_attempts", 0)),
            upload=FileShare(**upload) if upload else None,
        )

    def with_(self, **changes: Any) -> Entry:
        return replace(self, **changes)


@dataclass(frozen=True)
class Broken:
    """A file in the outbox that could not be read as an entry."""

    path: Path
    error: str


def make_key(origin: Origin, message: Message) -> str:
    """The idempotency key: ``<run id>.<step id>.<12 hex digits of the message's digest>``.

    The same message of the same run and step has the same key, whatever process computes
    it; a different text, channel, thread or file is a different notification. (A message
    without a file keeps the key it had before files existed.)
    """
    parts: list[Any] = [
        message.channel,
        message.text,
        message.blocks,
        message.thread_ts,
        message.reply_to,
    ]
    if message.file is not None:
        parts += [message.file, message.file_title]
    if message.update:
        parts.append("update")
    body = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(body.encode()).hexdigest()[:12]
    return f"{_safe(origin.run_id)}.{_safe(origin.step_id)}.{digest}"


LIVE_STEP = "_live"
"""The pseudo step of a run's own live progress message (not a valid step id: no clash)."""
LIVE_UPDATE_STEP = "_live-update"
"""The pseudo step of a run's parked live progress state."""


def live_key(run_id: str) -> str:
    """The one key of a run's parked live progress state (overwritten by newer states)."""
    return f"{_safe(run_id)}.{LIVE_UPDATE_STEP}.latest"


def step_prefix(run_id: str, step_id: str) -> str:
    """The start of every key of ``step_id`` in ``run_id`` (for replies to that step)."""
    return f"{_safe(run_id)}.{_safe(step_id)}."


def _safe(part: str) -> str:
    return _UNSAFE.sub("_", part)[:64] or "_"


@dataclass
class Outbox:
    """The outbox directory of one state directory."""

    root: Path

    def __post_init__(self) -> None:
        # absolute: the journal, documents and outputs name files by it, read later from
        # any working directory
        self.root = Path(os.path.abspath(self.root))

    @classmethod
    def of(cls, state_dir: Path) -> Outbox:
        return cls(state_dir / DIRNAME)

    @property
    def sent_dir(self) -> Path:
        return self.root / "sent"

    def path(self, entry: Entry) -> Path:
        """Where ``entry`` lives now (``sent/`` once delivered)."""
        if entry.status == SENT:
            return self.sent_dir / f"{entry.key}.json"
        return self.root / f"{entry.key}.json"

    def get(self, key: str) -> Entry | None:
        """The entry with ``key`` (delivered or not), or None."""
        for path in (self.sent_dir / f"{key}.json", self.root / f"{key}.json"):
            with contextlib.suppress(FileNotFoundError):
                return _read(path)
        return None

    def of_step(self, run_id: str, step_id: str) -> Entry | None:
        """The newest notification of ``step_id`` in ``run_id`` (delivered ones first)."""
        prefix = step_prefix(run_id, step_id)
        for directory in (self.sent_dir, self.root):
            found: list[Entry] = []
            for path in directory.glob(f"{prefix}*.json"):
                with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                    found.append(_read(path))
            if found:
                return max(found, key=lambda e: e.created_at)
        return None

    def write(self, entry: Entry) -> Path:
        """Store a waiting (or being-sent) entry; atomic, so a crash leaves old or new."""
        if entry.status == SENT:
            raise ValueError("use mark_sent() for delivered entries")
        path = self.path(entry)
        _write_atomic(path, entry.to_json())
        return path

    def park(self, entry: Entry) -> Path:
        """Store the latest state of a message update (``message.update``), replacing the
        one waiting under its key but keeping that one's place in the queue (its
        ``created_at``), and dropping the record of an earlier delivered state."""
        waiting = self.root / f"{entry.key}.json"
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            entry = entry.with_(created_at=_read(waiting).created_at)
        path = self.write(entry)
        with contextlib.suppress(FileNotFoundError):
            (self.sent_dir / f"{entry.key}.json").unlink()
        return path

    def unpark(self, key: str) -> None:
        """Drop a parked update (a newer state reached Slack)."""
        with contextlib.suppress(FileNotFoundError):
            (self.root / f"{key}.json").unlink()

    def mark_posted(self, entry: Entry, delivery: Delivery) -> Entry:
        """Record that the message is on Slack while its file still waits (stays waiting)."""
        posted = entry.with_(status=POSTED, delivery=delivery, last_error=None)
        self.write(posted)
        return posted

    def mark_sent(
        self, entry: Entry, delivery: Delivery, *, upload: FileShare | None = None
    ) -> Entry:
        """Record the delivery (and the file's upload) in ``sent/`` first, then remove the
        waiting file."""
        sent = entry.with_(
            status=SENT, delivery=delivery, upload=upload or entry.upload, last_error=None
        )
        _write_atomic(self.path(sent), sent.to_json())
        with contextlib.suppress(FileNotFoundError):
            (self.root / f"{entry.key}.json").unlink()
        with contextlib.suppress(FileNotFoundError):
            self._lock_path(entry.key).unlink()
        return sent

    def waiting(self) -> tuple[list[Entry], list[Broken]]:
        """Entries not delivered yet, oldest first, and files that could not be read."""
        return self._scan(self.root)

    def delivered(self) -> tuple[list[Entry], list[Broken]]:
        """Entries already delivered, oldest first."""
        return self._scan(self.sent_dir)

    def _scan(self, directory: Path) -> tuple[list[Entry], list[Broken]]:
        entries: list[Entry] = []
        broken: list[Broken] = []
        if not directory.is_dir():
            return entries, broken
        for path in sorted(directory.glob("*.json")):
            try:
                entries.append(_read(path))
            except FileNotFoundError:
                continue  # delivered by another process while we looked
            except (OSError, ValueError, KeyError, TypeError) as exc:
                broken.append(Broken(path, f"{type(exc).__name__}: {exc}"))
        entries.sort(key=lambda e: (e.created_at, e.key))
        return entries, broken

    def forget_lock(self, key: str) -> None:
        """Remove the lock file of ``key`` when nothing of it waits any more."""
        if not (self.root / f"{key}.json").exists():
            with contextlib.suppress(FileNotFoundError):
                self._lock_path(key).unlink()

    def _lock_path(self, key: str) -> Path:
        return self.root / ".locks" / f"{key}.lock"

    @contextlib.contextmanager
    def claim(self, key: str, *, wait: float = 0.0) -> Iterator[bool]:
        """Hold the delivery lock of ``key`` (yields False if another process keeps it
        longer than ``wait`` seconds). Whoever holds it must re-read the entry first."""
        path = self._lock_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        until = time.monotonic() + wait
        with path.open("a") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= until:
                        yield False
                        return
                    time.sleep(0.05)
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class TolerantOutbox(Outbox):
    """An outbox whose read and write failures are reported to ``on_error`` instead of
    raised: reads find nothing, writes return the path the entry would have had, the lock
    counts as held. Used while a step sends, so that a message is still printed and
    delivered when its record cannot be kept."""

    on_error: Callable[[str, Exception], None] = lambda _what, _exc: None

    def _failed(self, what: str, exc: Exception) -> None:
        self.on_error(what, exc)

    def get(self, key: str) -> Entry | None:
        try:
            return super().get(key)
        except (OSError, ValueError, KeyError, TypeError) as exc:  # unreadable: start afresh
            self._failed(f"read {self.root}", exc)
            return None

    def of_step(self, run_id: str, step_id: str) -> Entry | None:
        try:
            return super().of_step(run_id, step_id)
        except OSError as exc:
            self._failed(f"read {self.root}", exc)
            return None

    def write(self, entry: Entry) -> Path:
        try:
            return super().write(entry)
        except OSError as exc:
            self._failed(f"write {self.path(entry)}", exc)
            return self.path(entry)

    def park(self, entry: Entry) -> Path:
        try:
            return super().park(entry)
        except OSError as exc:  # the earlier delivered state's record cannot be removed
            self._failed(f"drop {self.sent_dir / f'{entry.key}.json'}", exc)
            return self.path(entry)

    def unpark(self, key: str) -> None:
        try:
            super().unpark(key)
        except OSError as exc:
            self._failed(f"drop {self.root / f'{key}.json'}", exc)

    def mark_sent(
        self, entry: Entry, delivery: Delivery, *, upload: FileShare | None = None
    ) -> Entry:
        try:
            return super().mark_sent(entry, delivery, upload=upload)
        except OSError as exc:
            self._failed(f"record the delivery in {self.sent_dir}", exc)
            return entry.with_(
                status=SENT, delivery=delivery, upload=upload or entry.upload, last_error=None
            )

    @contextlib.contextmanager
    def claim(self, key: str, *, wait: float = 0.0) -> Iterator[bool]:
        with contextlib.ExitStack() as stack:
            try:
                held = stack.enter_context(super().claim(key, wait=wait))
            except OSError as exc:
                self._failed(f"lock {self._lock_path(key)}", exc)
                held = True  # no lock file can be made: deliver anyway, once, from here
            yield held


def now() -> str:
    """UTC now, as every timestamp in the outbox (ISO 8601 with a Z)."""
    return journal.now_iso()


def _read(path: Path) -> Entry:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return Entry.from_json(data)


def _write_atomic(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, ensure_ascii=False, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
