"""Fakes that ship with crystal-runbook, for its own tests and for users' runbook tests.

Like httpx's ``MockTransport``: fakes live in one place and are part of the product.
``ACTIONS`` are fake actions (load them with ``CRYSTAL_ACTION_MODULES=crystal_runbook.testing``),
``RecordingSink`` records engine events.
"""

from __future__ import annotations

from crystal_runbook.testing.actions import ACTIONS, FakeFail, FakeNoop, FakeOutput, FakeSet
from crystal_runbook.testing.sinks import RecordingSink

__all__ = ["ACTIONS", "FakeFail", "FakeNoop", "FakeOutput", "FakeSet", "RecordingSink"]
