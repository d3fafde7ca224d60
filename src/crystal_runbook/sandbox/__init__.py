"""The sandbox: a local Kubernetes API server emulator for practice, tests and benchmarks.

Real kubectl 1.37 and the official Python ``kubernetes`` client work against it (design.md
section 7): discovery and ``/openapi/v3``, core/v1 (namespaces, a node, pods with logs,
events, configmaps, secrets, serviceaccounts, services), apps/v1 (deployments, replicasets,
with ``/scale`` and ``/status``), batch/v1, policy/v1, rbac/v1, coordination.k8s.io/v1,
autoscaling/v2, metrics.k8s.io; watches, the three patch types, selectors per kind, dryRun,
fieldValidation, graceful deletion; a deployment controller that follows upstream's (revisions,
rolling updates, proportional scaling, pruning); pods whose simulated service serves
``/health`` and ``/metrics`` and writes logs; fault injection. Standard library only on the
request path (``openapi_gen`` is a dev tool that writes the schemas it reads).

Use from Python::

    from crystal_runbook import sandbox

    with sandbox.start(tmp_path, ready_delay=0.1) as sb:
        run(["kubectl", "--kubeconfig", sb.kubeconfig_path, "get", "deploy", "maia"])
        sb.faults.add(sandbox.Fault(kind="status", status=429, count=1))

Modules, each with one job: ``lifecycle`` (start/stop, the handle, admin endpoints),
``daemon`` (the detached process and its PID file), ``server`` (HTTP), ``api`` (routing),
``rest`` (object semantics and watch), ``store`` (objects, resourceVersions, watch fan-out),
``patch``, ``selectors``, ``admission`` (defaults, validation), ``resources`` (types and
discovery), ``tables``, ``controllers``/``deployments``/``replicasets``/``gc``/``kubelet``/
``workqueue``, ``workload``/``podnet``/``proxy``/``logs`` (the simulated service),
``events``, ``faults``, ``requestlog``, ``config``, ``seed``, ``hashing``, ``apierrors``; see
docs/sandbox.md for the full list and the upstream function each behaviour follows.
"""

from __future__ import annotations

from crystal_runbook.sandbox.config import SandboxConfig
from crystal_runbook.sandbox.faults import Fault, FaultSpecError
from crystal_runbook.sandbox.lifecycle import CONTEXT, NAMESPACE, Sandbox, start

__all__ = ["CONTEXT", "NAMESPACE", "Fault", "FaultSpecError", "Sandbox", "SandboxConfig", "start"]
