"""`ssh.run`: one shell command on every host of a group, checked first, in parallel, verified.

Per host, like every step: ``check`` (exit 0 = already done there), ``command`` only where the
check failed, ``verify`` afterwards. All hosts run at once, at most ``concurrency`` at a time,
each command bounded by ``host_timeout``. A host that fails never stops the others: the step
fails after all have finished (unless ``allow_failures`` tolerates that many), and every
host's result is journalled (one progress line per host, the table in the step's outputs).

Injection: `check`, `command` and `verify` are shell templates whose every ``{{ value }}`` is
quoted with ``shlex.quote`` when rendered (the engine's ``shell`` markup), so a parameter is
always one literal word. Inventory variables reach commands only as environment variables
named in ``export_vars`` (``"$app_root"``), never pasted into the command text.

Resume: the check runs again on every host, so hosts that finished are left alone. Host keys
are checked against the service's known_hosts (``hosts.config``); a mismatch, an unknown key
or an unusable key file is an error before any command runs anywhere.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field, field_validator, model_validator

from crystal_runbook import errors
from crystal_runbook.engine import durations
from crystal_runbook.engine.model import Duration
from crystal_runbook.engine.registry import Action, Args, Change, Check, Outcome, StepContext
from crystal_runbook.hosts import fanout
from crystal_runbook.hosts import ssh as ssh_mod
from crystal_runbook.hosts.config import HostsConfig
from crystal_runbook.hosts.inventory import Host

MAX_COMMAND = 10_000
"""Characters of one rendered command: a runbook's command is a line or a short script."""
TAIL = 300
"""Characters of each host's output kept in the step's outputs (the journal has them)."""
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


class SshRunArgs(Args):
    check: str | None = Field(
        default=None,
        max_length=MAX_COMMAND,
        description="Shell command; exit 0 on a host means the change is already there.",
    )
    command: str | None = Field(
        default=None,
        max_length=MAX_COMMAND,
        description="Shell command run on the hosts whose check failed (needs `check`).",
    )
    verify: str | None = Field(
        default=None,
        max_length=MAX_COMMAND,
        description="Shell command that must exit 0 on every host afterwards (retried).",
    )
    limit: str | None = Field(
        default=None,
        max_length=1000,
        description="Host groups or hosts, comma-separated; default target.hosts.group.",
    )
    concurrency: int = Field(default=10, ge=1, le=100, description="Hosts at a time.")
    host_timeout: Duration = Field(default=60.0, description="Bound on one command on one host.")
    allow_failures: int = Field(
        default=0, ge=0, description="Hosts that may fail (or be down) without failing the step."
    )
    export_vars: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="Inventory variables exported to the commands, e.g. app_root -> $app_root.",
    )

    @field_validator("export_vars")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _VAR.fullmatch(name) or name.startswith("ansible_"):
                raise ValueError(
                    f"{name[:60]!r} cannot be exported: use a variable name that is a shell "
                    "identifier and not an ansible_* connection variable"
                )
        return value

    @model_validator(mode="after")
    def _commands(self) -> SshRunArgs:
        if not (self.check or self.command or self.verify):
            raise ValueError("give at least one of check, command and verify")
        if self.command and not self.check:
            raise ValueError(
                "`command` needs a `check` (exit 0 when the change is already there) so that "
                "a second run and `resume` do not apply it again; for a command that must run "
                "every time, write check: 'false'"
            )
        return self


_LABELS = {"check": ("ok", "needed"), "command": ("changed", "failed"), "verify": ("ok", "failed")}
"""Status of a host by phase, for exit 0 and for any other exit code."""
GOOD = frozenset({"ok", "changed"})


def _row(
    host: Host, phase: str, outcome: ssh_mod.CommandResult | errors.ActionError
) -> dict[str, Any]:
    if isinstance(outcome, errors.ActionError):
        state = "unreachable" if outcome.temporary else "error"
        return {"phase": phase, "status": state, "error": outcome.message, "address": host.where}
    good, bad = _LABELS[phase]
    return {
        "phase": phase,
        "status": good if outcome.ok else bad,
        "exit_code": outcome.exit_code,
        "seconds": round(outcome.seconds, 3),
        "stdout": outcome.stdout[-TAIL:],
        "stderr": outcome.stderr[-TAIL:],
    }


def _line(name: str, row: Mapping[str, Any]) -> str:
    """One row of the per-host table, as shown live and journalled."""
    if "error" in row:
        detail = row["error"]
    else:
        last = (row.get("stderr") or row.get("stdout") or "").strip().splitlines()
        detail = f"exit {row['exit_code']} in {durations.format_duration(row['seconds'])}"
        if last:
            detail += f": {last[-1][:120]}"
    return f"{name:<16} {row['phase']:<7} {row['status']:<11} {detail}"


class SshRun(Action):
    """Run a shell command on every host of the service's group, only where its check fails."""

    name = "ssh.run"
    summary = "Shell commands on a host group over SSH (fabric): check, command, verify per host."
    Args = SshRunArgs
    outputs = ("hosts", "changed", "failed")
    markup = {"check": "shell", "command": "shell", "verify": "shell"}
    default_timeout = 600.0
    poll_interval = 2.0

    def __init__(self) -> None:
        self._pools: dict[tuple[str, str], ssh_mod.Pool] = {}
        """Open connections by (run, step): the preflight's serve the step's check."""
        self._lock = threading.Lock()

    def warm(self) -> None:
        import fabric  # noqa: F401 - about 150 ms of import, off the critical path

    # -- plumbing ----------------------------------------------------------------------------

    def _hosts(self, args: SshRunArgs, ctx: StepContext) -> tuple[ssh_mod.Pool, list[Host]]:
        config = HostsConfig.from_target(ctx.target, env=ctx.env, state_dir=ctx.state_dir)
        hosts = config.select(args.limit)
        missing = [
            f"{h.name} has no {var}" for h in hosts for var in args.export_vars if var not in h.vars
        ]
        if missing:
            raise errors.PermanentActionError(
                "export_vars: " + "; ".join(missing[:10]),
                hint="set the variable for those hosts (host or group vars) in "
                f"{config.inventory}; nothing was run",
            )
        key = (ctx.run_id, ctx.step_id)
        stale: list[ssh_mod.Pool] = []
        with self._lock:  # the preflight checks steps on several threads at once
            for other in [k for k in self._pools if k[0] != ctx.run_id]:
                stale.append(self._pools.pop(other))  # another run's: it has ended
            pool = self._pools.get(key)
            if pool is None or pool.config != config:
                if pool is not None:
                    stale.append(pool)
                pool = self._pools[key] = ssh_mod.Pool(
                    config, connect_timeout=min(10.0, args.host_timeout)
                )
        for old in stale:
            old.close()
        return pool, hosts

    def _close(self, ctx: StepContext) -> None:
        with self._lock:
            pool = self._pools.pop((ctx.run_id, ctx.step_id), None)
        if pool is not None:
            pool.close()

    def _run(
        self,
        pool: ssh_mod.Pool,
        hosts: Sequence[Host],
        command: str,
        args: SshRunArgs,
        ctx: StepContext,
        *,
        phase: str,
    ) -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}

        def work(host: Host) -> ssh_mod.CommandResult:
            env = {name: _scalar(host.vars[name]) for name in args.export_vars}
            return ssh_mod.run(pool, host, command, timeout=args.host_timeout, env=env)

        def done(host: Host, outcome: ssh_mod.CommandResult | errors.ActionError) -> None:
            rows[host.name] = _row(host, phase, outcome)
            if not ctx.dry_run:
                ctx.progress(_line(host.name, rows[host.name]))

        try:
            fanout.run_all(
                hosts, work, concurrency=args.concurrency, cancelled=ctx.cancelled, on_done=done
            )
        except BaseException:
            self._close(ctx)
            raise
        return {h.name: rows[h.name] for h in hosts}

    def _connect(
        self, pool: ssh_mod.Pool, hosts: Sequence[Host], args: SshRunArgs, ctx: StepContext
    ) -> None:
        """Open every host's connection and shell; host-key or credential problems refuse."""
        outcomes = fanout.run_all(
            hosts, pool.shell, concurrency=args.concurrency, cancelled=ctx.cancelled
        )
        rows = {
            h.name: _row(h, "check", o)
            for h in hosts
            if isinstance((o := outcomes[h.name]), errors.ActionError)
        }
        self._refuse_permanent(rows, ctx)

    def _refuse_permanent(self, rows: Mapping[str, Mapping[str, Any]], ctx: StepContext) -> None:
        """Host-key and authentication problems stop the step before any change."""
        bad = [f"{row['error']}" for row in rows.values() if row["status"] == "error"]
        if bad:
            self._close(ctx)
            raise errors.PermanentActionError(
                f"{len(bad)} host(s) refused before any change: " + "; ".join(bad[:5]),
                hint="fix the host keys or credentials (details per host in the journal), then "
                f"`crystal-runbook resume {ctx.run_id}`"
                if not ctx.dry_run
                else "fix the host keys or credentials first",
            )

    # -- check, apply, verify ----------------------------------------------------------------

    def check(self, args: Any, ctx: StepContext) -> Check:
        pool, hosts = self._hosts(args, ctx)
        if not args.check:
            summary = f"verify only, on {len(hosts)} host(s)"
            return Check(satisfied=True, summary=summary, evidence={"hosts": {}})
        if ctx.preflight:  # refusals only: connect (keys, credentials), keep the connections
            self._connect(pool, hosts, args, ctx)
            summary = f"check on {len(hosts)} host(s) when the step runs"
            return Check(satisfied=False, summary=summary)
        rows = self._run(pool, hosts, args.check, args, ctx, phase="check")
        self._refuse_permanent(rows, ctx)
        needed = [n for n, r in rows.items() if r["status"] == "needed"]
        down = [n for n, r in rows.items() if r["status"] == "unreachable"]
        satisfied = not needed and len(down) <= args.allow_failures
        summary = f"check holds on {len(hosts) - len(needed) - len(down)} of {len(hosts)} host(s)"
        if needed:
            summary += f"; command needed on {', '.join(needed)}"
        if down:
            summary += f"; unreachable: {', '.join(down)}"
            if satisfied:
                summary += f" (tolerated: allow_failures={args.allow_failures})"
        changes = tuple(
            Change(name, f"check exit {rows[name].get('exit_code', '?')}", "run command")
            for name in needed
        )
        if ctx.dry_run and not ctx.preflight:
            self._close(ctx)
        return Check(
            satisfied=satisfied,
            summary=summary,
            changes=changes,
            outputs=_outputs(rows, changed=[]),
            evidence={"hosts": rows},
        )

    def apply(self, args: Any, ctx: StepContext, check: Check) -> Outcome:
        pool, hosts = self._hosts(args, ctx)
        before: Mapping[str, Mapping[str, Any]] = check.evidence.get("hosts", {})
        todo = [h for h in hosts if before.get(h.name, {}).get("status") != "ok"]
        if not args.command:
            self._close(ctx)
            raise errors.PermanentActionError(
                f"check failed on {', '.join(h.name for h in todo)} and the step has no command",
                hint="the journal has each host's output",
            )
        rows = {name: dict(row) for name, row in before.items()}
        rechecked = [h for h in todo if before.get(h.name, {}).get("status") != "needed"]
        if rechecked:  # unreachable during the check: look again before changing anything
            again = self._run(pool, rechecked, args.check, args, ctx, phase="check")
            self._refuse_permanent(again, ctx)
            rows.update(again)
            todo = [h for h in todo if rows[h.name]["status"] == "needed"]
        applied = self._run(pool, todo, args.command, args, ctx, phase="command")
        rows.update(applied)
        changed = [n for n, r in applied.items() if r["status"] == "changed"]
        failed = [n for n, r in rows.items() if r["status"] not in GOOD]
        outputs = _outputs(rows, changed=changed)
        summary = f"command applied on {len(changed)} of {len(hosts)} host(s)"
        if len(failed) > args.allow_failures:
            self._close(ctx)
            table = "\n".join(_line(n, r) for n, r in rows.items())
            raise errors.PermanentActionError(
                f"{len(failed)} of {len(hosts)} host(s) failed ({', '.join(failed)}); "
                f"allow_failures is {args.allow_failures}; {summary}",
                hint=f"fix those hosts, then `crystal-runbook resume {ctx.run_id}`: the check "
                "runs again on every host and only those that still need it are changed",
                evidence=table,
            )
        if failed:
            summary += f"; failed (tolerated): {', '.join(failed)}"
        return Outcome(
            changed=bool(changed), summary=summary, outputs=outputs, evidence={"hosts": rows}
        )

    def verify(self, args: Any, ctx: StepContext, outcome: Outcome | None) -> Check:
        pool, hosts = self._hosts(args, ctx)
        command = args.verify or args.check
        previous: Mapping[str, Mapping[str, Any]] = (
            outcome.evidence.get("hosts", {}) if outcome is not None else {}
        )
        tolerated = [n for n, r in previous.items() if r["status"] not in GOOD]
        targets = [h for h in hosts if h.name not in tolerated]
        rows = self._run(pool, targets, command, args, ctx, phase="verify")
        failed = [n for n, r in rows.items() if r["status"] not in GOOD]
        satisfied = len(failed) + len(tolerated) <= args.allow_failures
        summary = f"verified on {len(targets) - len(failed)} of {len(hosts)} host(s)"
        if failed:
            summary += f"; failing: {', '.join(failed)}"
        if tolerated:
            summary += f"; not verified (failed earlier, tolerated): {', '.join(tolerated)}"
        if satisfied:
            self._close(ctx)
        changed = list(outcome.outputs.get("changed", [])) if outcome is not None else []
        merged = {**{n: dict(r) for n, r in previous.items()}, **rows}
        return Check(
            satisfied=satisfied,
            summary=summary,
            outputs=_outputs(merged, changed=changed),
            evidence={"verify": rows},
        )


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _outputs(rows: Mapping[str, Mapping[str, Any]], *, changed: list[str]) -> dict[str, Any]:
    return {
        "hosts": {name: dict(row) for name, row in rows.items()},
        "changed": changed,
        "failed": [n for n, r in rows.items() if r["status"] not in GOOD | {"needed"}],
    }
