"""Rollback triggers: rules with `for` windows and trends, over Prometheus, SQL or scrapes.

The source checklist's five rollback conditions (coherence, error rate, p99, memory, DB
connections) as rules evaluated continuously, so the rollback starts the moment one has held
long enough, and so the same rules prove the rollback worked. Modules, each with one job:

- ``model`` / ``loader``: the `inventory/triggers.yaml` format, its file:line:column checks,
  and binding a service's rules to one environment's sources;
- ``sources`` (the seam) with ``prometheus``, ``scrape`` (plus ``promql``, the subset it
  evaluates itself) and ``sqlsource``;
- ``rules``: the per-rule state machine (inactive, pending, firing, no_data, error), trends,
  ratios;
- ``evaluator``: one evaluation of every rule and its ``Report``;
- ``watch`` and ``store``: the loop, incidents and cooldown, and state kept across restarts.

This package sits between the actions (``metrics.check`` uses it) and the engine: it imports
the engine's YAML and validation helpers, never the service layer or the shells.
"""
