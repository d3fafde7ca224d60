"""Rollback drills' schedules: `inventory/drills.yaml` and the one place that says what is due.

A drill is a run of `runbooks/drill.yaml` (the service layer's ``service.drills`` starts it);
this package only knows *when* drills run, so that `drill schedule`, `drill due` and, later,
`serve --scheduler` all read the same file the same way and agree on what is due:

- ``model``: the file's format (cron expression, time zone, jitter, grace, blackouts, whether
  production allows drills), as pydantic models;
- ``loader``: reads and validates the file with file:line:column for every problem, and
  checks that each service and environment exists in `services.yaml`;
- ``schedule``: pure functions over a drill's settings, a clock and the time of the last
  drill: the next slots, and the decision for the latest one (due, waiting for its jitter,
  done, missed past its grace, or blacked out).
"""
