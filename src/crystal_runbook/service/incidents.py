"""Incident documents of runs, and the outbox of notifications that have not reached Slack."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from crystal_runbook import errors
from crystal_runbook.service.workspace import Workspace

if TYPE_CHECKING:
    from crystal_runbook.incident import generate as incident_generate
    from crystal_runbook.notify import slack as slack_notify


def document(ws: Workspace, run_id: str, *, write: bool = True) -> incident_generate.Rendered:
    """The incident document of a run, generated from the journal as it is now.

    With ``write`` its files (Markdown, JSON, chart) are written to
    `<state dir>/incidents/` where they differ.

    Raises:
        errors.RunNotFound: no such run (exit 2).
        errors.InputError: the run was refused before any change: no incident, no document.
        errors.ConfigurationError: the files cannot be written.
    """
    from crystal_runbook.incident import files, generate

    prepared = generate.prepare(ws.journal, run_id, directory=ws.state_dir / files.DIRECTORY)
    if prepared.run.status == "refused":
        raise errors.InputError(
            f"run {prepared.run.id} was refused before any change ({prepared.run.error}); "
            "a refusal is not an incident and has no document",
            hint=f"`crystal-runbook runs show {prepared.run.id}` shows it",
        )
    rendered = generate.render(prepared, redactor=ws.redactor, draw=write)
    if write:
        try:
            generate.write(rendered)
        except OSError as exc:
            raise errors.ConfigurationError(
                f"cannot write the incident document to {prepared.paths.markdown.parent}: "
                f"{exc.strerror or exc}",
                hint="check the state directory (--state-dir) is writable",
            ) from None
    return rendered


def latest(ws: Workspace) -> str:
    """The id of the latest run that has an incident document (refused runs have none).

    Raises:
        errors.RunNotFound: no such run in the journal (exit 2).
    """
    for run in ws.journal.list_runs(limit=50):
        if run.status != "refused":
            return run.id
    raise errors.RunNotFound(
        f"no run with an incident document in the journal of {ws.state_dir}",
        hint="list runs with `crystal-runbook runs`",
    )


def outbox(ws: Workspace, *, include_sent: bool = False) -> slack_notify.Listing:
    """Notifications waiting in ``<state dir>/outbox/`` (and, if asked, those delivered)."""
    return ws.notifier.listing(include_sent=include_sent)


def flush_outbox(
    ws: Workspace, *, progress: Callable[[str], None] | None = None
) -> list[slack_notify.Result]:
    """Deliver what waits in the outbox (needs SLACK_BOT_TOKEN); idempotent.

    Raises:
        errors.ConfigurationError: no token is configured (exit 2).
    """
    return ws.notifier.flush(progress=progress or (lambda _message: None))
