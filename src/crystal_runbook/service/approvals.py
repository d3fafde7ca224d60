"""Confirmations and approvals waiting for a button press: accepted once, by the right person.

Why: a Slack button is a request anyone in the channel can send, and a request can be
replayed. A mutation from Slack starts only when the person who typed it presses Confirm,
and, where `access.yaml` says ``approvers: 2``, when a second allowed person presses
Approve (issue 11). The same goes for a runbook's `approval` step in a run started from
Slack. Each waiting decision is a ``Pending`` with an unguessable token (the buttons'
value) that:

- expires ``EXPIRY`` seconds after it was asked (10 minutes);
- is decided once: a press that finds it decided (a replay, a double click) is refused;
- is decided only by its intended people: Confirm and Cancel by the invoker; Approve by an
  allowed person who is not the invoker (two-person rule), or by any allowed person when
  one is enough for an `approval` step.

Presses are judged under one lock, so two presses at the same instant cannot both win.
The store is in memory: a button from before a restart of `serve` is unknown, and refused.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

EXPIRY = 600.0
"""Seconds a confirmation or approval waits for its button (the issue's 10 minutes)."""
KEEP = 3600.0
"""Seconds a decided or expired entry is remembered, so a late replay says why it fails."""

Kind = Literal["confirm", "approval"]
State = Literal["waiting", "confirmed", "started", "cancelled", "rejected", "expired"]
Action = Literal["confirm", "approve", "cancel", "reject"]


@dataclass
class Pending:
    """One decision waiting for buttons."""

    token: str
    kind: Kind
    invoker: str
    """Slack user ID of the person who typed the command."""
    env: str
    command: str
    summary: str
    approvers: int
    """People who must agree: 1 (the invoker's Confirm), 2 (and someone else's Approve)."""
    created: float
    expires: float
    state: State = "waiting"
    confirmed_by: str | None = None
    approved_by: str | None = None
    decided_by: str | None = None
    where: tuple[str, str] | None = None
    """(channel, ts) of the message holding the buttons, once posted."""
    data: dict[str, Any] = field(default_factory=dict)
    """What the service needs to act on the decision (the command's parameters)."""
    done: threading.Event = field(default_factory=threading.Event)
    """Set when decided (an `approval` step's run waits on it)."""


@dataclass(frozen=True)
class Press:
    """What a button press decided."""

    outcome: Literal["start", "need_approval", "cancelled", "rejected", "refused"]
    reason: str
    pending: Pending | None


Allowed = Callable[[str], str | None]
"""Whether a user may decide this: None if allowed, else the reason they may not."""


class Approvals:
    """Pending decisions by token; thread-safe."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, expiry: float = EXPIRY):
        self._clock = clock
        self.expiry = expiry
        self._items: dict[str, Pending] = {}
        self._lock = threading.Lock()

    def ask(
        self,
        *,
        kind: Kind,
        invoker: str,
        env: str,
        command: str,
        summary: str,
        approvers: int,
        data: dict[str, Any] | None = None,
    ) -> Pending:
        """A new decision; its token goes into the buttons' values."""
        now = self._clock()
        pending = Pending(
            token=secrets.token_urlsafe(18),
            kind=kind,
            invoker=invoker,
            env=env,
            command=command,
            summary=summary,
            approvers=approvers,
            created=now,
            expires=now + self.expiry,
            data=dict(data or {}),
        )
        with self._lock:
            self._sweep(now)
            self._items[pending.token] = pending
        return pending

    def get(self, token: str) -> Pending | None:
        with self._lock:
            return self._items.get(token)

    def waiting(self) -> list[Pending]:
        with self._lock:
            return [p for p in self._items.values() if p.state in ("waiting", "confirmed")]

    def withdraw(self, pending: Pending) -> None:
        """Give up on ``pending`` (its buttons could not be shown): any press is refused."""
        with self._lock:
            if pending.state in ("waiting", "confirmed"):
                pending.state = "expired"
        pending.done.set()

    def expire_due(self) -> list[Pending]:
        """Mark every undecided entry past its expiry as expired; returns those it marked."""
        now = self._clock()
        with self._lock:
            due = [
                p
                for p in self._items.values()
                if p.state in ("waiting", "confirmed") and now >= p.expires
            ]
            for pending in due:
                pending.state = "expired"
        for pending in due:
            pending.done.set()
        return due

    def press(self, token: str, action: Action, user: str, allowed: Allowed) -> Press:
        """Judge one press of a button carrying ``token``."""
        now = self._clock()
        with self._lock:
            pending = self._items.get(token)
            if pending is None:
                return Press(
                    "refused",
                    "this button is not known here (expired, or from before a restart); "
                    "run the command again",
                    None,
                )
            press = self._judge(pending, action, user, allowed, now)
            decided = pending.state not in ("waiting", "confirmed")
        if decided:
            pending.done.set()
        return press

    def _judge(
        self, pending: Pending, action: Action, user: str, allowed: Allowed, now: float
    ) -> Press:
        if pending.state in ("waiting", "confirmed") and now >= pending.expires:
            pending.state = "expired"
        if pending.state == "expired":
            return Press(
                "refused", "these buttons expired after 10 minutes; run the command again", pending
            )
        if pending.state not in ("waiting", "confirmed"):
            by = f" by <@{pending.decided_by}>" if pending.decided_by else ""
            return Press("refused", f"this was already decided ({pending.state}{by})", pending)
        reason = allowed(user)
        if reason is not None:
            return Press("refused", reason, pending)
        invoker = user == pending.invoker
        if action in ("cancel", "reject"):
            if pending.kind == "confirm" and not invoker:
                return Press("refused", f"only <@{pending.invoker}> can cancel this", pending)
            pending.state = "cancelled" if action == "cancel" else "rejected"
            pending.decided_by = user
            return Press("cancelled" if action == "cancel" else "rejected", "", pending)
        if action == "confirm":
            if pending.kind != "confirm":
                return Press("refused", "this is an approval: press Approve", pending)
            if not invoker:
                who = f"only <@{pending.invoker}>, who asked for it, can confirm this"
                return Press("refused", who, pending)
            if pending.confirmed_by is not None:
                return Press("refused", "this was already confirmed", pending)
            pending.confirmed_by = user
            if pending.approvers >= 2:
                pending.state = "confirmed"
                return Press("need_approval", "", pending)
            pending.state, pending.decided_by = "started", user
            return Press("start", "", pending)
        # approve
        if pending.kind == "confirm" and pending.confirmed_by is None:
            return Press("refused", f"<@{pending.invoker}> has not confirmed this yet", pending)
        if pending.approvers >= 2 and invoker:
            return Press(
                "refused",
                "you cannot approve your own request: a second allowed person must approve it",
                pending,
            )
        pending.approved_by = user
        pending.state, pending.decided_by = "started", user
        return Press("start", "", pending)

    def _sweep(self, now: float) -> None:
        for token, pending in list(self._items.items()):
            if now - pending.created > max(KEEP, self.expiry):
                del self._items[token]
