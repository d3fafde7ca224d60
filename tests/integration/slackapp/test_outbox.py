"""`serve` delivers what waits in the outbox by itself, as `outbox flush` would."""

from __future__ import annotations

import io

import pytest

from crystal_runbook.engine.secrets import Redactor
from crystal_runbook.notify import outbox as outbox_mod
from crystal_runbook.notify import slack as slack_notify
from crystal_runbook.notify.slackconfig import SlackSettings
from tests.integration.slackapp.conftest import CHANNEL, Stack, dump, wait_for

pytestmark = pytest.mark.integration


def test_serve_flushes_the_outbox_at_start_and_then_every_interval(stack: Stack) -> None:
    """A message queued before `serve` started is posted at its start; one queued while
    it runs is posted at the next round (--flush-interval 1s), each once."""
    state = stack.root / ".crystal"
    offline = slack_notify.Notifier(
        state_dir=state, redactor=Redactor(), settings=SlackSettings(), stream=io.StringIO()
    )
    offline.send(
        {"run_id": "r0", "step_id": "announce"},
        {"channel": "#maia-incidents", "text": "queued before serve"},
        deadline=None,
    )
    stack.serve("--slack", "--flush-interval", "1s")

    def posted(text: str) -> list[object]:
        return [m for m in stack.slack.posted(CHANNEL) if m.text == text]

    wait_for(lambda: posted("queued before serve"), 20, "the first flush")
    offline.send(
        {"run_id": "r1", "step_id": "announce"},
        {"channel": "#maia-incidents", "text": "queued while serving"},
        deadline=None,
    )
    wait_for(lambda: posted("queued while serving"), 20, "the next flush")
    wait_for(lambda: outbox_mod.Outbox.of(state).waiting() == ([], []), 10, "the outbox to empty")
    assert len(posted("queued before serve")) == 1, dump(stack)
    assert "outbox flush: 1 sent" in dump(stack)
    assert stack.stop() == 0
