"""The long-running process behind `crystal-runbook serve`: one place that starts and stops.

Why: `serve` hosts several things in one process (design.md section 4): the Slack app
today, and the drill scheduler, trigger watchers, `/readyz`, `/metrics` and Lease leader
election later. Each is a ``process.Component`` (``start``, ``stop(deadline)``, ``name``);
``process.Server`` starts them in order, waits for SIGTERM or SIGINT, and stops them in
reverse order within one grace period, so adding a feature to `serve` is adding a
component to the list that ``cli/serve.py`` builds, not changing this package.

- ``process``: ``Component``, ``Server``, ``Periodic`` (a job every N seconds).
- ``worker``: the background worker that runs jobs (Slack commands' plans and runs) off
  the request threads, drained on stop.
- ``http``: the HTTP server (waitress, a production WSGI server) and its routes:
  ``GET /healthz`` and whatever components mount (``POST /slack/events``).
- ``slack``: the Slack app (Bolt) over ``service.slack``: HTTP and Socket Mode.

This is a shell like ``cli``: it parses and wires, the decisions live in ``service``.
"""
