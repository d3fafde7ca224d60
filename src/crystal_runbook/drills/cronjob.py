"""A Kubernetes CronJob that drives `crystal-runbook drill due --run` on a drill's schedule.

`drill schedule --emit-cronjob SERVICE` prints one per scheduled environment of the service
(batch/v1, as the official client's ``V1CronJob`` reads it): the drill's cron expression and
time zone, ``concurrencyPolicy: Forbid`` (a drill still running blocks the next start; the
drill's own lock and `drill due`'s lock cover the rest), a starting deadline equal to the
grace, and a Job of one pod that runs `drill due --run --service S --env E` once. The jitter
is applied by `drill due` itself, which waits out the slot's offset before it starts, so the
Job's active deadline leaves room for it.

The pod needs the inventory and runbooks (baked into the image, or mounted) and, for the
"missed slot" rule to see earlier drills, a journal that outlives the pod (a volume for
``CRYSTAL_STATE_DIR``, or a database); docs/drills.md shows both.
"""

from __future__ import annotations

import re
from typing import Any

from crystal_runbook.drills import model

NAME_LIMIT = 52
"""Longest CronJob name: the controller appends 11 characters to name its Jobs (63 in all)."""
RUN_MARGIN = 3600
"""Seconds a Job may run besides the jitter it waits out (a drill takes minutes)."""


def name_for(service: str, env: str) -> str:
    """`crystal-runbook-drill-maia-staging`, cut to a valid CronJob name."""
    slug = re.sub(r"[^a-z0-9-]+", "-", f"crystal-runbook-drill-{service}-{env}".lower())
    return slug[:NAME_LIMIT].strip("-")


def manifest(
    service: str,
    env: str,
    drill: model.Drill,
    *,
    image: str,
    namespace: str | None,
    service_account: str | None,
) -> dict[str, Any]:
    """The CronJob for ``service``'s drill in ``env`` (which must have a schedule)."""
    if drill.schedule is None:
        raise ValueError(f"the drill of {service} in {env} has no schedule")
    labels = {
        "app.kubernetes.io/name": "crystal-runbook",
        "app.kubernetes.io/component": "drill",
        "crystal-runbook.io/service": service,
        "crystal-runbook.io/environment": env,
    }
    metadata: dict[str, Any] = {"name": name_for(service, env), "labels": labels}
    if namespace:
        metadata["namespace"] = namespace
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "drill",
                "image": image,
                "command": ["crystal-runbook"],
                "args": ["drill", "due", "--run", "--service", service, "--env", env],
                "env": [{"name": "CRYSTAL_ACTOR", "value": f"cronjob/{metadata['name']}"}],
            }
        ],
    }
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata,
        "spec": {
            "schedule": drill.schedule,
            "timeZone": drill.timezone,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": max(10, int(drill.grace)),
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {
                    "backoffLimit": 0,
                    "activeDeadlineSeconds": int(drill.jitter) + RUN_MARGIN,
                    "template": {"metadata": {"labels": labels}, "spec": pod_spec},
                },
            },
        },
    }
