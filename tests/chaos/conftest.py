"""The chaos suite (issue 16): the product under kill -9, API faults, Slack outages,
concurrency, a broken journal and generated hostile input, on real processes and servers.

Every test here is marked ``chaos`` (and ``integration``: it starts servers on loopback);
`scripts/test.sh` runs them with the rest, and ``pytest -m chaos`` runs them alone. They are
bounded by counts, not by time: each scenario runs a fixed number of rounds with generous
per-process timeouts, and asserts on outcomes (journal states, revisions, request-log
counts), never on how fast a loaded machine happened to be. ``CHAOS_SEED`` replays the
random choices of a run (kill moments, fault timing); the seed is printed in the summary.
"""

from __future__ import annotations

import os
import random

import pytest

from tests.chaos import figures


@pytest.fixture(scope="session")
def chaos_seed() -> int:
    """The seed of this run's random choices (``CHAOS_SEED`` to replay one)."""
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1, 2**31))
    figures.note(f"CHAOS_SEED={seed}")
    return seed


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    counts, notes = figures.snapshot()
    if not counts and not notes:
        return
    terminalreporter.section("chaos figures")
    for name, value in counts.items():
        terminalreporter.write_line(f"{name:<58} {value}")
    for line in notes:
        terminalreporter.write_line(line)
    figures.write()
