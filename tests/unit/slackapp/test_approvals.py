"""Buttons decide once, only by their intended people, and expire after 10 minutes."""

from __future__ import annotations

from crystal_runbook.service.approvals import Approvals


def anyone(user: str) -> str | None:
    return None


def only(*users: str):  # type: ignore[no-untyped-def]
    def check(user: str) -> str | None:
        return None if user in users else f"{user} is not allowed"

    return check


def make(approvers: int = 1, *, kind: str = "confirm", clock=None):  # type: ignore[no-untyped-def]
    store = Approvals(clock=clock) if clock else Approvals()
    pending = store.ask(
        kind=kind,  # type: ignore[arg-type]
        invoker="U0ALICE",
        env="production",
        command="rollback",
        summary="rollback maia production",
        approvers=approvers,
    )
    return store, pending


class TestConfirm:
    def test_only_the_invoker_confirms_and_only_once(self) -> None:
        """A foreign press is refused; the invoker's starts; a replay is refused."""
        store, pending = make()
        foreign = store.press(pending.token, "confirm", "U0MALLORY", anyone)
        assert (foreign.outcome, pending.state) == ("refused", "waiting")
        assert "only <@U0ALICE>" in foreign.reason
        assert store.press(pending.token, "confirm", "U0ALICE", anyone).outcome == "start"
        replay = store.press(pending.token, "confirm", "U0ALICE", anyone)
        assert replay.outcome == "refused"
        assert "already decided (started by <@U0ALICE>)" in replay.reason
        assert pending.done.is_set()

    def test_an_unknown_token_is_refused(self) -> None:
        """A forged or pre-restart button value matches nothing."""
        store, _ = make()
        assert store.press("forged", "confirm", "U0ALICE", anyone).outcome == "refused"

    def test_a_user_no_longer_allowed_cannot_confirm(self) -> None:
        """Access is checked again at the press."""
        store, pending = make()
        press = store.press(pending.token, "confirm", "U0ALICE", only("U0BOB"))
        assert (press.outcome, press.reason) == ("refused", "U0ALICE is not allowed")

    def test_buttons_expire_after_ten_minutes(self) -> None:
        """After 600 s the press is refused and the decision is expired."""
        now = [0.0]
        store, pending = make(clock=lambda: now[0])
        now[0] = 600.0
        press = store.press(pending.token, "confirm", "U0ALICE", anyone)
        assert press.outcome == "refused"
        assert "expired after 10 minutes" in press.reason
        assert pending.state == "expired"

    def test_expire_due_marks_only_the_overdue(self) -> None:
        """The periodic sweep expires what is due and reports it once."""
        now = [0.0]
        store, old = make(clock=lambda: now[0])
        now[0] = 590.0
        young = store.ask(kind="confirm", invoker="U0B", env="sandbox", command="scale", summary="s", approvers=1)
        now[0] = 601.0
        assert store.expire_due() == [old]
        assert store.expire_due() == []
        assert young.state == "waiting"

    def test_cancel_is_the_invokers(self) -> None:
        """Someone else cannot cancel; the invoker can, and nothing starts after."""
        store, pending = make()
        assert store.press(pending.token, "cancel", "U0BOB", anyone).outcome == "refused"
        assert store.press(pending.token, "cancel", "U0ALICE", anyone).outcome == "cancelled"
        assert store.press(pending.token, "confirm", "U0ALICE", anyone).outcome == "refused"


class TestTwoPersonRule:
    def test_a_second_allowed_person_must_approve(self) -> None:
        """approvers: 2: Confirm asks for approval; the invoker cannot approve; another can."""
        store, pending = make(approvers=2)
        early = store.press(pending.token, "approve", "U0BOB", anyone)
        assert (early.outcome, early.reason) == ("refused", "<@U0ALICE> has not confirmed this yet")
        assert store.press(pending.token, "confirm", "U0ALICE", anyone).outcome == "need_approval"
        twice = store.press(pending.token, "approve", "U0ALICE", anyone)
        assert twice.outcome == "refused"
        assert "cannot approve your own request" in twice.reason
        assert store.press(pending.token, "confirm", "U0ALICE", anyone).outcome == "refused"
        assert store.press(pending.token, "approve", "U0BOB", only("U0ALICE")).outcome == "refused"
        approved = store.press(pending.token, "approve", "U0BOB", anyone)
        assert approved.outcome == "start"
        assert (pending.confirmed_by, pending.approved_by) == ("U0ALICE", "U0BOB")
        assert store.press(pending.token, "approve", "U0CAROL", anyone).outcome == "refused"

    def test_an_approval_step_may_be_approved_by_the_invoker_when_one_is_enough(self) -> None:
        """A runbook's approval step with approvers: 1: any allowed person, invoker included."""
        store, pending = make(kind="approval")
        assert store.press(pending.token, "confirm", "U0ALICE", anyone).outcome == "refused"
        assert store.press(pending.token, "approve", "U0ALICE", anyone).outcome == "start"

    def test_an_approval_step_can_be_rejected(self) -> None:
        """Reject decides it too: the waiting run is told."""
        store, pending = make(kind="approval", approvers=2)
        assert store.press(pending.token, "reject", "U0BOB", anyone).outcome == "rejected"
        assert pending.done.is_set()
        assert pending.state == "rejected"
