"""`inventory/serve.yaml`: what a `crystal-runbook serve` process does besides Slack.

- ``model``: the file's format (leader election timing, the drill scheduler's pace, the
  services each replica set watches), validated like the other inventory files.
- ``loader``: reading it with file:line:column for every problem, and checking each watched
  service and environment against `services.yaml`.

The use cases that act on it are ``service.leader``, ``service.watchers`` and
``service.scheduler``; the process that hosts them is ``server``.
"""
