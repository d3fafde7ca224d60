"""`ansible.playbook`: a playbook the team already trusts, as a checked, verified step.

- check: the playbook in check mode (``--check --diff``) on the service's host group (or
  ``limit``); satisfied when no host would change. `plan` shows each host's diff. A host
  that fails or cannot be reached in check mode stops the step before any change.
- apply: the real run, only on the hosts the check found would change, so `resume` after a
  crash (or ``kill -9``) leaves the hosts that finished alone.
- verify: a check-mode run that reports no change anywhere, or ``verify_playbook``.
- Task results stream into the journal and the console (host, status, task); the outputs
  are the per-host stats.

Playbooks are found by name in the workspace's `playbooks/` directory (``rollback`` ->
`playbooks/rollback.yml`), wired in by the service layer as ``Playbook.playbooks_dir``.
The run itself (ansible-runner, its isolation, the guard) is ``hosts.ansible``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from crystal_runbook import errors
from crystal_runbook.engine.registry import Action, Args, Change, Check, Outcome, StepContext
from crystal_runbook.hosts import ansible as ansible_mod
from crystal_runbook.hosts import fanout
from crystal_runbook.hosts import ssh as ssh_mod
from crystal_runbook.hosts.config import HostsConfig
from crystal_runbook.hosts.inventory import Host

_PLAYBOOK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
DIFF_TEXT = 300
"""Characters of each side of a diff shown in `plan` and kept in the journal."""
PLAN_SECONDS = 300.0
"""Bound of the check-mode run of `plan`/--dry-run (the engine gives API checks 10 s; a
playbook in check mode takes seconds per task on a busy machine)."""


class PlaybookArgs(Args):
    playbook: str = Field(
        max_length=1000,
        description="Name in playbooks/ (rollback -> playbooks/rollback.yml) or a .yml path.",
    )
    vars: dict[str, Any] = Field(default_factory=dict, description="Extra vars (-e).")
    limit: str | None = Field(
        default=None,
        max_length=1000,
        description="Host groups or hosts, comma-separated; default target.hosts.group.",
    )
    verify_playbook: str | None = Field(
        default=None,
        max_length=1000,
        description="Playbook whose success verifies the change; default a check-mode run.",
    )
    forks: int = Field(default=10, ge=1, le=100, description="Hosts at a time (-f).")


class Playbook(Action):
    """Run an Ansible playbook on the service's hosts: check mode first, then only if needed."""

    name = "ansible.playbook"
    summary = "An Ansible playbook through ansible-runner: --check --diff, apply, verify."
    Args = PlaybookArgs
    outputs = ("stats", "changed", "failed")
    default_timeout = 900.0
    poll_interval = 2.0
    playbooks_dir: Path = Path("playbooks")
    """Where playbook names are looked up (the service layer sets it beside the runbooks)."""

    def __init__(self) -> None:
        self._checked: dict[tuple[str, str], bool] = {}
        """(run, step) -> whether its last check found nothing to change."""

    def warm(self) -> None:
        import ansible_runner  # noqa: F401 - its import, off the critical path
        import paramiko  # noqa: F401 - the host-key probe

    def _playbook(self, name: str) -> Path:
        if name.endswith((".yml", ".yaml")) and ("/" in name or Path(name).is_file()):
            return Path(name)
        if not _PLAYBOOK_NAME.fullmatch(name) or ".." in name:
            raise errors.PermanentActionError(
                f"{name[:100]!r} is not a playbook name",
                hint=f"use a file name from {self.playbooks_dir} without .yml, or a .yml path",
            )
        for suffix in (".yml", ".yaml"):
            candidate = self.playbooks_dir / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
        known = sorted(p.stem for p in self.playbooks_dir.glob("*.y*ml"))
        raise errors.PermanentActionError(
            f"no playbook {name!r} in {self.playbooks_dir}",
            hint=f"available: {', '.join(known) or 'none'}",
        )

    def _run(
        self,
        args: Any,
        ctx: StepContext,
        hosts: list[Host],
        config: HostsConfig,
        *,
        phase: str,
        check: bool,
        playbook: str | None = None,
    ) -> ansible_mod.PlaybookResult:
        ident = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{ctx.run_id}-{ctx.step_id}-{phase}")
        deadline = ctx.deadline
        if ctx.dry_run and deadline is not None:  # `plan` bounds checks for APIs, not playbooks
            deadline = max(deadline, time.monotonic() + PLAN_SECONDS)
        return ansible_mod.run_playbook(
            playbook=self._playbook(playbook or args.playbook),
            config=config,
            limit=",".join(h.name for h in hosts),
            extravars=args.vars,
            check=check,
            state_dir=ctx.state_dir,
            ident=f"{ident}-{time.time_ns()}",
            forks=args.forks,
            deadline=deadline,
            cancelled=ctx.cancelled,
            progress=ctx.progress if not ctx.dry_run else lambda _line: None,
        )

    def _hosts(self, args: Any, ctx: StepContext) -> tuple[HostsConfig, list[Host]]:
        config = HostsConfig.from_target(ctx.target, env=ctx.env, state_dir=ctx.state_dir)
        self._playbook(args.playbook)  # a wrong name is an error before any host is touched
        if args.verify_playbook:
            self._playbook(args.verify_playbook)
        return config, config.select(args.limit)

    def check(self, args: Any, ctx: StepContext) -> Check:
        config, hosts = self._hosts(args, ctx)
        _probe_host_keys(config, hosts, ctx)
        if ctx.preflight:  # refusals are found above; the check-mode run is the step's own
            return Check(
                satisfied=False, summary=f"check mode on {len(hosts)} host(s) when the step runs"
            )
        result = self._run(args, ctx, hosts, config, phase="check", check=True)
        _refuse_failures(result, "in check mode, before any change")
        would = [h.name for h in hosts if h.name in result.changed_hosts]
        changes = tuple(_changes(result))
        summary = (
            f"change {len(would)} of {len(hosts)} host(s): {', '.join(would)}"
            if would
            else f"no change on {len(hosts)} host(s)"
        )
        self._checked[(ctx.run_id, ctx.step_id)] = not would
        return Check(
            satisfied=not would,
            summary=summary,
            changes=changes,
            outputs={"stats": dict(result.stats), "changed": [], "failed": []},
            evidence={"would_change": would, "check_artifacts": result.artifacts},
        )

    def apply(self, args: Any, ctx: StepContext, check: Check) -> Outcome:
        config, hosts = self._hosts(args, ctx)
        would = set(check.evidence.get("would_change") or [h.name for h in hosts])
        todo = [h for h in hosts if h.name in would]
        result = self._run(args, ctx, todo, config, phase="apply", check=False)
        _refuse_failures(result, "while applying")
        changed = result.changed_hosts
        return Outcome(
            changed=bool(changed),
            summary=f"{args.playbook} changed {len(changed)} of {len(hosts)} host(s)"
            + (f" ({len(hosts) - len(todo)} already as wanted)" if len(todo) < len(hosts) else ""),
            outputs={"stats": dict(result.stats), "changed": changed, "failed": []},
            evidence={"apply_artifacts": result.artifacts, "applied_on": [h.name for h in todo]},
        )

    def verify(self, args: Any, ctx: StepContext, outcome: Outcome | None) -> Check:
        config, hosts = self._hosts(args, ctx)
        if (
            outcome is None
            and not args.verify_playbook
            and self._checked.pop((ctx.run_id, ctx.step_id), False)
        ):  # the check-mode run a moment ago reported no change: that is the verification
            summary = f"check mode reports no change on {len(hosts)} host(s)"
            return Check(satisfied=True, summary=summary)
        if args.verify_playbook:
            result = self._run(
                args, ctx, hosts, config, phase="verify", check=False, playbook=args.verify_playbook
            )
            failed = result.failed_hosts
            return Check(
                satisfied=not failed and result.rc == 0,
                summary=_failure_summary(failed, result)
                if failed or result.rc
                else f"{args.verify_playbook} passed on {len(hosts)} host(s)",
                evidence={"verify_artifacts": result.artifacts},
            )
        result = self._run(args, ctx, hosts, config, phase="verify", check=True)
        failed = result.failed_hosts
        if failed or result.rc:
            return Check(satisfied=False, summary=_failure_summary(failed, result))
        still = result.changed_hosts
        if still:
            raise errors.VerificationFailed(
                f"after the run, check mode still reports changes on {', '.join(still)}",
                hint="the playbook is not idempotent there, or something else changes those "
                "hosts; the journal has each task's result",
                evidence="; ".join(c.render() for c in _changes(result))[:2000],
            )
        return Check(
            satisfied=True,
            summary=f"check mode reports no change on {len(hosts)} host(s)",
            evidence={"verify_artifacts": result.artifacts},
        )


def _probe_host_keys(config: HostsConfig, hosts: list[Host], ctx: StepContext) -> None:
    """Host keys checked before the playbook starts: a mismatch is said plainly, up front."""

    def probe(host: Host) -> None:
        ssh_mod.probe_host_key(host, config, timeout=10.0)

    outcomes = fanout.run_all(hosts, probe, concurrency=20, cancelled=ctx.cancelled)
    refused = [o for o in outcomes.values() if isinstance(o, errors.ActionError)]
    refused = [o for o in refused if not o.temporary]
    if refused:
        first = refused[0]
        others = "; ".join(o.message for o in refused[1:5])
        raise errors.PermanentActionError(
            first.message + (f"; also {others}" if others else ""), hint=first.hint
        )


def _failure_summary(failed: Mapping[str, str], result: ansible_mod.PlaybookResult) -> str:
    if failed:
        return "; ".join(f"{host}: {message}" for host, message in failed.items())[:1000]
    return f"ansible-playbook exited {result.rc}: {result.output_tail[-300:]}"


def _refuse_failures(result: ansible_mod.PlaybookResult, when: str) -> None:
    failed = result.failed_hosts
    if not failed and result.rc == 0:
        return
    text = " ".join(failed.values()) + result.output_tail
    hint = "the journal has every task's result; fix the cause, then resume the run"
    if "Host key verification failed" in text or "REMOTE HOST IDENTIFICATION" in text:
        hint = (
            "a host's key is not in the known_hosts file or differs from it (possible "
            "interception, or a reinstalled host): check its fingerprint before trusting it"
        )
    elif "Permission denied" in text:
        hint = "check ansible_user and ansible_ssh_private_key_file in the host inventory"
    if failed:
        message = f"{len(failed)} host(s) failed {when}: " + _failure_summary(failed, result)
    else:
        message = f"ansible-playbook failed {when}: exit {result.rc}"
    raise errors.PermanentActionError(message, hint=hint, evidence=result.output_tail)


def _render(value: Any) -> Any:
    if isinstance(value, Mapping):
        value = {k: v for k, v in value.items() if k != "path"}
        if len(value) == 1:
            value = next(iter(value.values()))
    text = value if isinstance(value, str) else repr(value)
    text = text.strip()
    return text if len(text) <= DIFF_TEXT else text[:DIFF_TEXT] + "…"


def _changes(result: ansible_mod.PlaybookResult) -> list[Change]:
    """Each changed task of each host, with its diff when the module gave one."""
    out: list[Change] = []
    for task in result.tasks:
        if task.status != "changed":
            continue
        diffs = task.diff if isinstance(task.diff, list) else [task.diff] if task.diff else []
        field = f"{task.host}: {task.task}"
        if not diffs:
            out.append(Change(field, "", task.message or "changed"))
        for diff in diffs:
            if isinstance(diff, Mapping) and ("before" in diff or "after" in diff):
                out.append(Change(field, _render(diff.get("before")), _render(diff.get("after"))))
            else:
                out.append(Change(field, "", task.message or "changed"))
    return out
