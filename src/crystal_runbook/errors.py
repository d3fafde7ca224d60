"""The one exception tree of crystal-runbook, and the exit code each branch maps to.

Every error a user can see is a ``CrystalError``. Adapters translate third-party errors
(kubernetes ``ApiException``, psycopg, Slack, fabric) into these with ``raise ... from exc``,
so the CLI, the Slack app and the scheduler never need to know a library's exceptions.
The exit code is a property of the class, not an ``if`` chain in the shells::

    CrystalError                      exit 1
    ├── InputError                    exit 2   bad input: nothing was changed
    │   ├── RunbookInvalid                     runbook/inventory file errors (file:line:column)
    │   ├── ParamError                         a -p value or a parameter's type or limit
    │   ├── TargetNotFound                     unknown service or environment
    │   └── ConfigurationError                 settings, state dir, missing tool
    │       └── DiskFull                           the journal's disk is full (mid-run: the
    │                                              run ends `interrupted`, exit 130)
    ├── LockHeld                      exit 3   another run holds the service's lock
    ├── ConfirmationRequired          exit 4   a confirm environment without --yes
    ├── RunNotFound                   exit 2   `runs show` / `resume` of an unknown id
    ├── ActionError                   exit 1   an action failed (temporary or permanent)
    │   ├── TemporaryActionError               worth retrying (429, 5xx, connection reset)
    │   └── PermanentActionError               retrying cannot help (404, refused, invalid)
    ├── VerificationFailed            exit 1   the change was made but did not take effect in time
    ├── RunDrifted                    exit 1   `resume`: the world no longer matches the run
    └── Interrupted                   exit 130 SIGINT/SIGTERM: journal saved, `resume` continues

Every message says what was wrong, where (file:line:column, step id, service/env) and,
through ``hint``, what to do next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One finding in a file: where it is and what is wrong with it."""

    path: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


class CrystalError(Exception):
    """Root of every error crystal-runbook reports to a user."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class InputError(CrystalError):
    """Bad input from a user or a file; nothing was changed."""

    exit_code = 2


class RunbookInvalid(InputError):
    """A runbook or inventory file has one or more problems, each with file:line:column."""

    def __init__(self, problems: Sequence[Problem], *, hint: str | None = None) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = "\n".join(str(p) for p in self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"{head}\n{count} {noun} found", hint=hint)


class ParamError(InputError):
    """A runbook parameter is missing, malformed, of the wrong type or over a limit."""


class TargetNotFound(InputError):
    """The service or environment is not in the inventory, or the runbook does not allow it."""


class ConfigurationError(InputError):
    """Settings, the state directory or a required tool is missing or wrong."""


class DiskFull(ConfigurationError):
    """The journal cannot be written because its disk is full.

    Before a run starts this is bad state like any other (exit 2, nothing changed). Raised
    while a run is going, the executor ends the run `interrupted` (exit 130) instead: the
    next transition could not be journalled, so no further step may start.
    """


class RunNotFound(InputError):
    """No run in the journal has that id (or the prefix is ambiguous)."""


class LockHeld(CrystalError):
    """Another run holds the lock this run needs."""

    exit_code = 3

    def __init__(self, key: str, *, run_id: str, actor: str, host: str, started_at: str) -> None:
        self.key = key
        self.holder_run_id = run_id
        self.holder_actor = actor
        self.holder_host = host
        self.holder_started_at = started_at
        super().__init__(
            f"lock {key!r} is held by run {run_id} (actor {actor} on {host}, started {started_at})",
            hint=f"wait for it to finish, or inspect it with `crystal-runbook runs show {run_id}`",
        )


class ConfirmationRequired(CrystalError):
    """The environment needs an explicit yes and none was given."""

    exit_code = 4


class ActionError(CrystalError):
    """An action could not do its job; ``step`` is attached by the executor."""

    temporary: bool = False

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        evidence: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.evidence = evidence
        self.retry_after = retry_after
        self.step: str | None = None


class TemporaryActionError(ActionError):
    """A failure worth retrying: rate limits, server errors, dropped connections."""

    temporary = True


class PermanentActionError(ActionError):
    """A failure that retrying cannot fix: refused, not found, invalid."""


class VerificationFailed(CrystalError):
    """The step's change did not take effect (or the checked condition never held) in time."""

    def __init__(self, message: str, *, hint: str | None = None, evidence: str | None = None):
        super().__init__(message, hint=hint)
        self.evidence = evidence


class RunDrifted(CrystalError):
    """`resume` found that what the run changed no longer holds (another run, or someone by
    hand, changed it since): continuing would mark the run ok on a state it did not produce,
    or re-apply over someone else's decision. Nothing was changed."""


class Interrupted(CrystalError):
    """SIGINT or SIGTERM arrived (or the journal's disk filled); the journal is saved and
    `resume` continues the run."""

    exit_code = 130
