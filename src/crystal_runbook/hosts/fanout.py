"""Run one function on many hosts at once, at most ``concurrency`` at a time.

Threads, not asyncio (style.md: sync code, threads where concurrency is needed): each host's
work blocks on its own SSH channel. Results come back to the calling thread as they finish,
so the caller can journal and show them there (the journal's connection belongs to that
thread). One host's failure never stops the others; Ctrl-C stops handing out new hosts and
returns at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from crystal_runbook import errors
from crystal_runbook.hosts.inventory import Host

T = TypeVar("T")


def run_all(
    hosts: Sequence[Host],
    work: Callable[[Host], T],
    *,
    concurrency: int,
    cancelled: threading.Event | None = None,
    on_done: Callable[[Host, T | errors.ActionError], None] | None = None,
) -> dict[str, T | errors.ActionError]:
    """``work(host)`` for every host; a host's ``ActionError`` becomes its result.

    ``on_done`` is called in the calling thread as each host finishes. Any other exception
    from ``work`` is a bug and is raised once the running hosts are done.
    """
    results: dict[str, T | errors.ActionError] = {}
    if not hosts:
        return results
    stop = cancelled or threading.Event()

    def guarded(host: Host) -> T | errors.ActionError:
        if stop.is_set():
            return errors.TemporaryActionError(f"{host.where}: not started (cancelled)")
        try:
            return work(host)
        except errors.ActionError as exc:
            return exc

    pool = ThreadPoolExecutor(
        max_workers=max(1, min(concurrency, len(hosts))), thread_name_prefix="crystal-host"
    )
    pending: dict[Future[T | errors.ActionError], Host] = {
        pool.submit(guarded, host): host for host in hosts
    }
    try:
        while pending:
            done, _ = wait(list(pending), timeout=0.2, return_when=FIRST_COMPLETED)
            for future in done:
                host = pending.pop(future)
                outcome = future.result()
                results[host.name] = outcome
                if on_done is not None:
                    on_done(host, outcome)
    except BaseException:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return {host.name: results[host.name] for host in hosts}
