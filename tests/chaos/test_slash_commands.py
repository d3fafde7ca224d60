"""Hostile slash-command texts at a real `crystal-runbook serve --slack` (issue 16, item 2).

The stack of tests/integration/slackapp (sandbox, local Slack Web API server, the installed
`serve --slack` process) with secrets planted in serve's environment; hypothesis generates
`/crystal` texts from the command words and the hostile atoms of ``test_hostile_input``
(shell and template syntax, path traversal, control and bidi characters, huge numbers and
strings, the planted secrets), sent signed, as Slack sends them, by an allowed user and by
one who is not. For every text:

- the app answers (no 5xx, no connection closed), and says nothing of a planted secret;
- nothing reached the sandbox that changes it, and no run was journalled (a text that
  parses as a rollback only gets a confirmation message; no button is pressed);

and at the end `serve` is still up, and neither its log nor anything it posted to Slack
holds a secret or a traceback.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.chaos import figures
from tests.chaos import rig as rigs
from tests.chaos.test_hostile_input import ATOMS, budget, hostile_text
from tests.chaos.test_hostile_input import PLANTED as HOSTILE_PLANTED
from tests.integration.slackapp.conftest import ALICE, BOB, MALLORY, SECRET, Stack, dump

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(900)]

PLANTED = {
    k: v for k, v in rigs.planted_secrets().items() if k != "SLACK_SIGNING_SECRET"
}  # serve's signing secret is the stack's; it is checked too
# the hostile atoms include test_hostile_input's own planted secrets: serve has them too
PLANTED.update({f"CRYSTAL_CHAOS_{name}": value for name, value in HOSTILE_PLANTED.items()})
SECRETS = [*PLANTED.values(), SECRET]
WORDS = [
    "rollback", "scale", "status", "runs", "health", "logs", "help", "run", "approve",
    "maia", "sandbox", "production", "staging", "3", "--reason", "--to-revision", "--yes",
]  # fmt: skip
USERS = [ALICE, BOB, MALLORY]


class Arena:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.app = stack.serve("--slack", **PLANTED)
        self.tried = 0


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    stack = Stack(tmp_path_factory.mktemp("slash"))
    built = None
    try:
        built = Arena(stack)
        yield built
        alive = stack.proc is not None and stack.proc.poll() is None
        assert alive, f"serve died:\n{dump(stack)[-3000:]}"
        log = dump(stack)
        assert "Traceback" not in log, log[-3000:]
        posted = " ".join(m.text + str(m.blocks) for m in stack.slack.posted())
        for secret in SECRETS:
            assert secret not in log, "a planted secret in serve's log"
            assert secret not in posted, "a planted secret posted to Slack"
    finally:
        if built is not None:
            figures.add("hostile input: slash-command texts tried (serve --slack)", built.tried)
        errors = stack.close()
    assert errors == [], "\n".join(errors)


command_text = st.one_of(
    hostile_text,
    st.lists(st.one_of(st.sampled_from(WORDS), hostile_text), min_size=1, max_size=6).map(
        " ".join
    ),
)


@budget(120)
@given(text=command_text, user=st.sampled_from(USERS))
# found by this suite: the acknowledgement ("Planning `rollback ... --reason <it>`") echoed
# a secret of serve's environment
@example(text="rollback maia sandbox --reason " + PLANTED["CRYSTAL_CHAOS_PASSWORD"], user=ALICE)
@example(text="rollback $(touch /tmp/crystal-pwned) sandbox", user=ALICE)
@example(text="scale maia 99999999999999999999999 sandbox", user=ALICE)
@example(text="logs maia sandbox --grep (a+)+$ " + "x" * 5000, user=BOB)
@example(text="rollback ma\u202eia {{ 7*7 }} ../../etc/passwd", user=MALLORY)
@example(text="\x00\x1b[31m" + SECRET, user=ALICE)
def test_hostile_slash_commands_change_nothing(arena: Arena, text: str, user: str) -> None:
    """A hostile `/crystal` text: an answer without secrets, no change, no run."""
    stack = arena.stack
    arena.tried += 1
    since = stack.cluster.request_count()
    answer = arena.app.command(text, user_id=user, user_name=user.lower())
    assert answer.status < 500, (answer.status, answer.body, dump(stack)[-2000:])
    shown = str(answer.body)
    for secret in SECRETS:
        assert secret not in shown, f"a planted secret in the answer: {shown[-1000:]}"
    assert "Traceback" not in shown
    time.sleep(0.01)
    assert stack.cluster.mutations(since) == []
    assert stack.runs() == []


def test_the_atoms_are_all_sent(arena: Arena) -> None:
    """Every hostile atom once, alone, by an allowed user (the generated texts mix them)."""
    stack = arena.stack
    since = stack.cluster.request_count()
    for atom in ATOMS:
        arena.tried += 1
        answer = arena.app.command(f"rollback {atom} sandbox", user_id=BOB, user_name="bob")
        assert answer.status < 500, (atom, answer.status, answer.body)
        for secret in SECRETS:
            assert secret not in str(answer.body)
    assert stack.cluster.mutations(since) == []
    assert stack.runs() == []
    assert os.environ.get("CRYSTAL_CHAOS_PASSWORD") is None  # planted in serve only
