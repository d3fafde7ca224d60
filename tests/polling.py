"""Waiting in tests: poll a test-side check until it holds, or fail saying what was awaited.

One helper for the integration and chaos suites (their conftests and rigs name it as they
always have). Not the product's waiting: the product watches, it does not poll.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    check: Callable[[], Any],
    timeout: float = 30.0,
    what: str = "condition",
    detail: Callable[[], str] | None = None,
    *,
    interval: float = 0.05,
) -> Any:
    """``check()``'s first truthy value, polled every ``interval`` seconds.

    Raises:
        AssertionError: none within ``timeout`` seconds; names ``what`` and adds ``detail()``
            (a log, say) when given.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{extra}")
        time.sleep(interval)
