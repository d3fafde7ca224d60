"""The Kubernetes adapter: the only place that imports the official `kubernetes` client.

``client`` builds API clients from a target's kubeconfig and context and translates every
client error into the project's exception tree (with retries for what is worth retrying);
``rollout`` holds the pure logic of `kubectl rollout` (which ReplicaSet is "previous", when a
rollout is complete) so it can be tested without a server; ``lease`` is the Lease lock
backend. Actions in ``crystal_runbook.actions.kubernetes`` and the service layer use these.

Nothing here is imported by `crystal-runbook --help`.
"""
