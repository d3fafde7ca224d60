"""Exactly one replica does each duty: a Lease election around a piece of work.

`serve --scheduler --watch` runs on every replica, but each duty (the drill scheduler, the
watcher of one service in one environment) must run on one replica at a time. A
``Leadership`` campaigns for the duty's Lease (``kube.election``: client-go's algorithm, the
API server's compare-and-swap) and, while it holds it, runs the duty in a thread of its own:

- **acquire**: a follower looks every ``renew_period`` (and exactly when the holder's Lease
  would expire as seen from here), so a dead leader is replaced within the Lease duration
  plus one renew period.
- **renew**: the leader renews every ``renew_period``. When it has not managed to for
  ``renew_deadline`` (one renew period less than the duration), or sees someone else holding
  the Lease, it steps down: the duty is told to stop before any follower may take over. A
  run the duty had started goes on to its end: its own run lock still protects the service.
- **release**: on shutdown the duty is told to stop (no new work) and the Lease is given up
  at once, so a follower takes over on its next look; the runs in flight then get the grace
  period (``server.duties`` interrupts what is left, journalled as interrupted, and the next
  leader resumes it: ``service.recovery``).

A duty is ``duty(stop)``: it works until ``stop`` is set. This module does not know what the
duties are (``service.scheduler``, ``service.watchers``) nor how threads are interrupted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from crystal_runbook import errors

log = logging.getLogger("crystal_runbook.serve")

Duty = Callable[[threading.Event], None]
"""The work of a leader; returns once the event is set (leadership lost, or shutdown)."""


class Election(Protocol):
    """One candidate for one Lease (``kube.election.LeaseElection``)."""

    identity: str
    name: str

    @property
    def holder(self) -> str: ...

    @property
    def leading(self) -> bool: ...

    def try_acquire_or_renew(self) -> bool: ...
    def renew(self) -> bool: ...
    def release(self) -> bool: ...
    def expires_in(self) -> float: ...


@dataclass(frozen=True)
class Timing:
    """Lease timing (``serving.model.LeaderElection``), in seconds."""

    lease_duration: float = 15.0
    renew_period: float = 2.0
    restart_delay: float = 10.0
    """A duty that ended on its own (a bug, a broken file) is started again after this."""

    @property
    def renew_deadline(self) -> float:
        return self.lease_duration - self.renew_period


class Leadership:
    """Campaigns for one Lease and runs ``duty`` while holding it."""

    def __init__(
        self,
        duty_name: str,
        election: Election,
        duty: Duty,
        *,
        timing: Timing,
        on_change: Callable[[Leadership], None] = lambda _l: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.duty_name = duty_name
        self.election = election
        self.duty = duty
        self.timing = timing
        self.on_change = on_change
        self.clock = clock
        self.leading = False
        """Whether this replica does the duty now (holds the Lease and has not stepped down)."""
        self.acquired_at: float | None = None
        """When (``clock``) this replica last became leader."""
        self.error: str | None = None
        """The last election request's failure, None once one succeeds."""
        self._shutdown = threading.Event()
        self._stop_duty = threading.Event()
        self._renewed = 0.0
        self._duty_thread: threading.Thread | None = None
        self._duty_ended = 0.0
        self._thread: threading.Thread | None = None

    @property
    def holder(self) -> str:
        """The Lease's holder as last seen ("" nobody)."""
        return self.election.holder

    @property
    def duty_thread(self) -> threading.Thread | None:
        """The thread doing the duty, while it runs (to wait for, or interrupt)."""
        thread = self._duty_thread
        return thread if thread is not None and thread.is_alive() else None

    # -- the campaign ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._campaign, name=f"lease-{self.duty_name}", daemon=True
        )
        self._thread.start()

    def _campaign(self) -> None:
        while not self._shutdown.is_set():
            try:
                wait = self.look()
            except Exception:  # a bug must not end the campaign: log it, look again later
                log.exception("%s: leader election failed", self.duty_name)
                wait = self.timing.renew_period
            self._shutdown.wait(wait)

    def look(self) -> float:
        """One step of the campaign; returns the seconds until the next one."""
        period = self.timing.renew_period
        if self.leading:
            self._renew()
            if self.leading and self.duty_thread is None:
                self._restart_duty()
            return period
        if self.duty_thread is not None:
            return period  # the last duty is still finishing a run: no new one yet
        try:
            acquired = self.election.try_acquire_or_renew()
        except errors.CrystalError as exc:
            self._failed(exc)
            return period
        self.error = None
        if acquired:
            self._lead()
            return period
        # look again when the holder's Lease would expire here, at the latest next period
        return min(period, self.election.expires_in() + 0.01)

    def _renew(self) -> None:
        try:
            held = self.election.renew()
        except errors.CrystalError as exc:
            self._failed(exc)
            if self.clock() - self._renewed > self.timing.renew_deadline:
                self._step_down(
                    f"could not renew for {self.timing.renew_deadline:.0f}s ({exc.message})"
                )
            return
        self.error = None
        if held:
            self._renewed = self.clock()
        else:
            self._step_down(f"{self.election.holder or 'nobody'} holds the Lease now")

    def _failed(self, exc: errors.CrystalError) -> None:
        if self.error != exc.message:
            log.warning("%s: %s", self.duty_name, exc.message)
        self.error = exc.message

    def _lead(self) -> None:
        self.leading = True
        self._renewed = self.acquired_at = self.clock()
        log.info(
            "%s: %s is the leader (lease %s)",
            self.duty_name,
            self.election.identity,
            self.election.name,
        )
        self._start_duty()
        self.on_change(self)

    def _start_duty(self) -> None:
        self._stop_duty = threading.Event()
        stop = self._stop_duty

        def run() -> None:
            try:
                self.duty(stop)
            except KeyboardInterrupt:  # interrupted after the grace period (server.duties)
                log.warning("%s: interrupted", self.duty_name)
            except errors.CrystalError as exc:  # the journal or a cluster is down: said, no trace
                log.warning(
                    "%s: the duty stopped: %s (started again in %.0f s)",
                    self.duty_name,
                    exc.message,
                    self.timing.restart_delay,
                )
            except Exception:
                log.exception("%s: the duty failed", self.duty_name)
            finally:
                self._duty_ended = self.clock()

        self._duty_thread = threading.Thread(target=run, name=f"duty-{self.duty_name}", daemon=True)
        self._duty_thread.start()

    def _restart_duty(self) -> None:
        if self._shutdown.is_set() or self._stop_duty.is_set():
            return
        if self.clock() - self._duty_ended >= self.timing.restart_delay:
            log.warning("%s: the duty ended on its own; starting it again", self.duty_name)
            self._start_duty()

    def _step_down(self, why: str) -> None:
        self.leading = False
        self._stop_duty.set()
        log.warning("%s: %s steps down: %s", self.duty_name, self.election.identity, why)
        self.on_change(self)

    # -- shutdown ----------------------------------------------------------------------------

    def quiesce(self) -> bool:
        """Stop taking new work and release the Lease at once; returns whether it was held.

        The duty is told to stop (it finishes what it is doing); the campaign ends; the Lease
        is written free so a follower takes over on its next look.
        """
        self._shutdown.set()
        self._stop_duty.set()
        if self._thread is not None:
            self._thread.join(self.timing.renew_period + 6.0)  # at most one request in flight
        held = self.leading
        self.leading = False
        released = held and self.election.release()
        if held:
            log.info(
                "%s: lease %s %s",
                self.duty_name,
                self.election.name,
                "released" if released else "not released (it expires on its own)",
            )
            self.on_change(self)
        return held
