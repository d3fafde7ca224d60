"""The elected duties of `serve` (scheduler, watchers) as one ``process.Component``.

The decisions live in ``service.leader`` (campaign, renew, step down, release) and the
duties themselves in ``service.scheduler`` and ``service.watchers``; this shell starts the
campaigns and, on SIGTERM, stops them the way the issue asks:

1. ``quiesce`` (at once, for every duty in parallel): no new work, and each Lease held is
   released so a follower takes over on its next look;
2. ``stop``: the runs in flight get until the end of the grace period to finish; a duty still
   running then is interrupted (``worker.interrupt``: the engine journals the run as
   `interrupted`, and the next leader resumes it) and gets ``INTERRUPT_WAIT`` to journal it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from crystal_runbook.server.worker import INTERRUPT_WAIT, interrupt
from crystal_runbook.service.leader import Leadership

log = logging.getLogger("crystal_runbook.serve")


class Duties:
    """Every Leadership of this replica, started and stopped together."""

    name = "duties"

    def __init__(self, leaderships: Sequence[Leadership]) -> None:
        self.leaderships = list(leaderships)
        self._quiesced = False

    def start(self) -> None:
        for leadership in self.leaderships:
            leadership.start()

    def quiesce(self) -> None:
        """No new work anywhere, and every Lease held released (in parallel)."""
        if self._quiesced:
            return
        self._quiesced = True
        threads = [
            threading.Thread(target=one.quiesce, name=f"release-{one.duty_name}", daemon=True)
            for one in self.leaderships
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30.0)

    def running(self) -> list[tuple[str, threading.Thread]]:
        found = []
        for leadership in self.leaderships:
            thread = leadership.duty_thread
            if thread is not None:
                found.append((leadership.duty_name, thread))
        return found

    def stop(self, deadline: float) -> None:
        self.quiesce()
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        left = self.running()
        for name, thread in left:
            log.warning("interrupting %s (the grace period is over)", name)
            if thread.ident is not None:
                interrupt(thread.ident)
        until = time.monotonic() + (INTERRUPT_WAIT if left else 0.0)
        for _name, thread in left:
            thread.join(max(0.0, until - time.monotonic()))
