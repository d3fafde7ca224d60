"""The `/crystal` slash command's use cases: decide fast, answer clearly, work in the background.

Why: on-call engineers run incidents from Slack (design.md section 1). A command must be
acknowledged within Slack's 3 seconds, only the people `access.yaml` lists may run it, a
mutation starts only after its Confirm (and, where asked, a second person's Approve), and
the run is the same run the CLI makes: the same runbook through the same engine, journalled
with actor ``slack:<user id> (<user name>)``.

``SlackCommands`` is what the Slack shell (``crystal_runbook.server.slack``) calls:

- ``command(invocation)`` and ``press(button)`` run in the request that Slack is waiting
  on. They decide with what is in memory and the journal (rate limits, the strict parser,
  the inventory, the access rules) and return the ephemeral ``Reply`` to acknowledge with.
  Slow work (planning, running, health, logs) is handed to ``submit`` (a background
  worker) and answered later through the ``SlackPort``.
- Every refusal (rate limit, bad input, access, a foreign, replayed or expired button) is
  journalled as an event of the pseudo-run ``REFUSALS`` with the user and the reason.

This module knows Slack's concepts (users, channels, buttons) but not its wire format:
answers are ``Reply`` values that the shell renders as Block Kit. The background jobs live
in ``service.slackjobs``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from crystal_runbook import errors
from crystal_runbook.engine import inventory as inventory_mod
from crystal_runbook.engine import journal as journal_mod
from crystal_runbook.engine import orphans
from crystal_runbook.service import access as access_mod
from crystal_runbook.service import approvals as approvals_mod
from crystal_runbook.service import ratelimit, slackparse
from crystal_runbook.service.workspace import Workspace

log = logging.getLogger("crystal_runbook.slack")

REFUSALS = "slack"
"""Run id under which refusals and decisions that belong to no run are journalled."""
RUNBOOKS = {"rollback": "rollback", "scale": "scale", "drill": "drill"}
"""The runbook each mutating command runs (the CLI's `rollback`, `scale` and `drill` run the
same; a drill through ``service.drills``, as `crystal-runbook drill` does)."""
STATUS_LIMIT = 50
"""Runs `status` and `runs` look at (newest first)."""


# -- values -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Invocation:
    """A slash command as Slack sent it (already signature-checked by the shell)."""

    user_id: str
    user_name: str
    channel_id: str
    text: str
    response_url: str | None = None
    team_id: str | None = None


ButtonAction = Literal["confirm", "approve", "cancel", "reject"]


@dataclass(frozen=True)
class ButtonPress:
    """A press of one of our buttons (already signature-checked by the shell)."""

    user_id: str
    user_name: str
    action: ButtonAction
    value: str
    channel_id: str | None = None
    message_ts: str | None = None
    response_url: str | None = None


@dataclass(frozen=True)
class Button:
    """A button of a message; ``value`` is the decision's token."""

    action: ButtonAction
    label: str
    value: str
    style: Literal["primary", "danger"] | None = None


@dataclass(frozen=True)
class Reply:
    """A message, in Slack's mrkdwn but not yet in its wire format."""

    text: str
    lines: tuple[str, ...] = ()
    code: str | None = None
    """A preformatted block (logs)."""
    buttons: tuple[Button, ...] = ()
    ephemeral: bool = True
    """Seen only by the person who asked (an answer), or by the channel."""

    def plain(self) -> str:
        """Everything as one mrkdwn text (notification text, logs, tests)."""
        parts = [self.text, *self.lines]
        if self.code is not None:
            parts.append(f"```\n{self.code}\n```")
        return "\n".join(parts)


class SlackPort(Protocol):
    """What the use cases need from Slack; the shell implements it with the Web API.

    Every method may raise ``errors.CrystalError``; callers here never let that stop a run.
    """

    def respond(self, response_url: str, reply: Reply, *, replace: bool = False) -> None:
        """Answer through a command's or a button's ``response_url``."""

    def post(self, channel: str, reply: Reply, *, thread_ts: str | None = None) -> str:
        """Post in a channel (or a thread); returns the message's ts."""

    def update(self, channel: str, ts: str, reply: Reply) -> None:
        """Replace a message the app posted."""

    def members(self, usergroup: str) -> list[str]:
        """User IDs in a user group (usergroups.users.list)."""


Submit = Callable[[str, Callable[[], None]], bool]
"""Hands a job to the background worker; False when it takes no more (full, stopping)."""


# -- the use cases ----------------------------------------------------------------------------


class SlackCommands:
    """The Slack app's decisions and jobs for one state directory and inventory."""

    def __init__(
        self,
        *,
        base: Workspace,
        port: SlackPort,
        submit: Submit,
        limits: ratelimit.RateLimiter | None = None,
        approvals: approvals_mod.Approvals | None = None,
    ) -> None:
        self.base = base
        self.port = port
        self.submit = submit
        self.limits = limits or ratelimit.RateLimiter()
        self.approvals = approvals or approvals_mod.Approvals()
        self.stopping = threading.Event()
        """Set when `serve` stops: waiting approvals end, runs are interrupted."""
        self._files: dict[str, tuple[float, Any]] = {}
        self._files_lock = threading.Lock()
        self._journal_lock = threading.Lock()
        self.access()  # a broken access.yaml stops `serve` at start, exit 2
        self.inventory()

    # -- inputs that may change while serving ------------------------------------------------

    def _cached(self, name: str, path: Path, load: Callable[[], Any]) -> Any:
        try:
            stamp = path.stat().st_mtime
        except OSError:
            stamp = -1.0
        with self._files_lock:
            found = self._files.get(name)
        if found is not None and found[0] == stamp:
            return found[1]
        value = load()
        with self._files_lock:
            self._files[name] = (stamp, value)
        return value

    def access(self) -> access_mod.Access:
        """The access rules, re-read when `access.yaml` changes.

        Raises:
            errors.RunbookInvalid: the file has problems (everything is then refused).
        """
        directory = self.base.inventory_dir
        return self._cached(  # type: ignore[no-any-return]
            "access",
            directory / access_mod.FILENAME,
            lambda: access_mod.Access(access_mod.load(directory), members=self.port.members),
        )

    def inventory(self) -> inventory_mod.Inventory:
        """`services.yaml`, re-read when it changes."""
        directory = self.base.inventory_dir
        return self._cached(  # type: ignore[no-any-return]
            "inventory",
            directory / inventory_mod.SERVICES_FILE,
            lambda: inventory_mod.load(directory),
        )

    # -- journal -----------------------------------------------------------------------------

    def journal_event(self, status: str, message: str, **data: Any) -> None:
        """An event of the pseudo-run ``REFUSALS`` (a refusal or a decision)."""
        try:
            with self._journal_lock:
                self.base.journal.add_event(
                    REFUSALS, kind="slack", status=status, message=message, data=data
                )
        except errors.CrystalError as exc:  # an unwritable journal must not hang Slack
            log.error("cannot journal a Slack %s: %s", status, exc)

    def refuse(self, user: str, name: str, reason: str, **data: Any) -> Reply:
        self.journal_event(
            "refused",
            f"refused {user} ({name}): {reason}",
            user=user,
            user_name=name,
            reason=reason,
            **data,
        )
        return Reply(f":no_entry: {reason}")

    # -- the acknowledgement path ------------------------------------------------------------

    def command(self, inv: Invocation) -> Reply:
        """Decide what to do with a slash command; returns the acknowledgement.

        Never raises for bad input: every problem is a clear ephemeral reply, and nothing
        runs.
        """
        who = {"command_text": inv.text[:200], "channel": inv.channel_id}
        verdict = self.limits.take(inv.user_id)
        if not verdict.allowed:
            wait = max(1, round(verdict.retry_after + 0.5))
            return self.refuse(
                inv.user_id,
                inv.user_name,
                f"slow down: more than {verdict.limit} commands; retry in {wait} s",
                **who,
            )
        try:
            cmd = slackparse.parse(inv.text)
            return self._dispatch(inv, cmd)
        except errors.CrystalError as exc:
            reason = exc.message + (f" ({exc.hint})" if exc.hint else "")
            return self.refuse(inv.user_id, inv.user_name, self.base.redactor.text(reason), **who)

    def _dispatch(self, inv: Invocation, cmd: slackparse.Command) -> Reply:
        if cmd.name == "help":
            return self.help(inv)
        if cmd.name in ("status", "runs"):
            envs = self._readable_envs(inv, cmd)
            if cmd.name == "status":
                return self.status(envs)
            return self.runs(envs, cmd.service)
        assert cmd.service is not None  # noqa: S101 - the grammar requires it  # nosec B101
        env = cmd.env or self.inventory().default_environment or "sandbox"
        self.inventory().target(cmd.service, env)  # unknown service or environment: refused
        decision = self.access().check(
            env=env, command=cmd.name, user=inv.user_id, channel=inv.channel_id
        )
        if not decision.allowed:
            raise errors.InputError(decision.reason)
        cmd = dataclasses.replace(cmd, env=env)
        from crystal_runbook.service import slackjobs

        job = slackjobs.job_for(self, inv, cmd)
        if not self.submit(f"{cmd.name} {cmd.service}/{env}", job):
            return Reply(
                ":hourglass: crystal-runbook is busy or shutting down; nothing ran. "
                "Try again in a minute."
            )
        verb = {"health": "Checking", "logs": "Reading the logs of"}.get(cmd.name, "Planning")
        return Reply(f":hourglass_flowing_sand: {verb} `{cmd.describe()}`…")

    def _readable_envs(self, inv: Invocation, cmd: slackparse.Command) -> list[str]:
        envs = self.access().environments(cmd.name, inv.user_id, inv.channel_id)
        if not envs:
            raise errors.InputError(
                f"you are not allowed to run {cmd.name!r} in any environment "
                f"({access_mod.FILENAME})"
            )
        if cmd.service is not None and cmd.service not in self.inventory().services:
            self.inventory().target(cmd.service, envs[0])  # the unknown-service error
        return envs

    # -- answers made in the acknowledgement -------------------------------------------------

    def help(self, inv: Invocation) -> Reply:
        lines = [f"`/crystal {usage}`" for usage in slackparse.USAGE.values()]
        try:
            allowed = {
                c: self.access().environments(c, inv.user_id, inv.channel_id)
                for c in access_mod.COMMANDS
            }
            where = ", ".join(f"{c}: {', '.join(envs)}" for c, envs in allowed.items() if envs)
        except errors.CrystalError as exc:
            where = f"unknown ({exc.message.splitlines()[0]})"
        lines.append(f"You may run here: {where or 'nothing (ask to be added to access.yaml)'}")
        lines.append(
            "Mutations (rollback, scale, drill) show what will change and wait for your "
            "Confirm; ENV is always the word after SERVICE."
        )
        return Reply("*crystal-runbook* — emergency rollback and incident runbooks", tuple(lines))

    def _recent(
        self, envs: Iterable[str], service: str | None = None
    ) -> list[journal_mod.RunRecord]:
        allowed = set(envs)
        with self._journal_lock:
            runs = self.base.journal.list_runs(service=service, limit=STATUS_LIMIT)
        # a run whose process is gone (kill -9) is not in progress: shown as `runs` shows it
        return [orphans.as_seen(r) for r in runs if r.env in allowed]

    def status(self, envs: list[str]) -> Reply:
        running = [r for r in self._recent(envs) if r.status == "running"]
        if not running:
            return Reply(f"No run in progress in {', '.join(envs)}; no lock held by a run.")
        lines = []
        for run in running:
            with self._journal_lock:
                steps = self.base.journal.get_run(run.id).steps
            current = next((s for s in steps if s.status not in ("ok", "skipped", "pending")), None)
            step = f", step {current.id} {current.status}" if current else ""
            lock = f", lock `{run.lock_key}`" if run.lock_key else ""
            lines.append(
                f"• `{run.id}` {run.runbook} {run.service or ''} in {run.env} by {run.actor}, "
                f"since {run.started_at[11:19]} UTC{step}{lock}"
            )
        return Reply(f"{len(running)} run(s) in progress:", tuple(lines))

    def runs(self, envs: list[str], service: str | None) -> Reply:
        found = self._recent(envs, service)[:10]
        if not found:
            return Reply("No runs yet" + (f" of {service}" if service else "") + ".")
        lines = tuple(
            f"• `{r.id}` {r.started_at[:16].replace('T', ' ')} {r.runbook} {r.service or ''} "
            f"in {r.env}: *{r.status}* ({r.actor})"
            for r in found
        )
        return Reply("Recent runs, newest first:", lines)

    # -- buttons -----------------------------------------------------------------------------

    def press(self, press: ButtonPress) -> Reply | None:
        """Judge a button press; returns an ephemeral answer for the presser, or None.

        Confirm by the invoker (and Approve by a second allowed person where
        ``approvers: 2``) starts the run in the background.
        """
        data = {"action": press.action, "channel": press.channel_id, "message_ts": press.message_ts}
        verdict = self.limits.take(press.user_id)
        if not verdict.allowed:
            wait = max(1, round(verdict.retry_after + 0.5))
            return self.refuse(
                press.user_id, press.user_name, f"slow down: retry in {wait} s", **data
            )
        pending = self.approvals.get(press.value)

        def allowed(user: str) -> str | None:
            if pending is None:
                return None
            channel = str(pending.data.get("channel") or press.channel_id or "")
            try:
                decision = self.access().check(
                    env=pending.env, command=pending.command, user=user, channel=channel
                )
            except errors.CrystalError as exc:
                return exc.message.splitlines()[0]
            return None if decision.allowed else decision.reason

        judged = self.approvals.press(press.value, press.action, press.user_id, allowed)
        if judged.outcome == "refused":
            return self.refuse(
                press.user_id,
                press.user_name,
                judged.reason,
                command=pending.command if pending else None,
                env=pending.env if pending else None,
                **data,
            )
        assert judged.pending is not None  # noqa: S101 - only refusals lack it  # nosec B101
        from crystal_runbook.service import slackjobs

        slackjobs.decided(self, judged, press)
        return None

    # -- periodic ------------------------------------------------------------------------------

    def tick(self) -> None:
        """Expire buttons nobody pressed in time (their messages say so)."""
        from crystal_runbook.service import slackjobs

        for pending in self.approvals.expire_due():
            slackjobs.expired(self, pending)

    def stop(self) -> None:
        """`serve` is stopping: waiting approvals give up (their runs are interrupted)."""
        self.stopping.set()
        for pending in self.approvals.waiting():
            pending.done.set()


def actor(user_id: str, user_name: str) -> str:
    """The journal's actor for a Slack user: ``slack:<user id> (<user name>)``."""
    name = "".join(c for c in user_name if c.isprintable() and c not in "()")[:60].strip()
    return f"slack:{user_id[:20]}" + (f" ({name})" if name else "")


def workspace_for(base: Workspace, **changes: Any) -> Workspace:
    """A workspace like ``base`` (same directories) for one job, with its own connections."""
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    fields.update(sink=None, confirm=None, interactive=False)  # nobody at a terminal
    fields.update(changes)
    ws = Workspace(**fields)
    ws.redactor = base.redactor  # secrets read from *_FILE were added to the base's
    return ws
