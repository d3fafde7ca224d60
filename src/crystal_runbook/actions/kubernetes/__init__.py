"""Kubernetes actions, one module each: `undo`, `template` (set env/image), `scale`, `status`,
`baseline` (a drill's record of a Deployment, and the restore that rolls forward to it).

Each action reads the Deployment named by the runbook's `target.kubernetes` (overridable in
`with:`) through ``crystal_runbook.kube``, which owns the client, error translation and
retries. The semantics follow kubectl (design.md section 5); what we add is what kubectl
leaves to the on-call engineer: a check before every change (so a second run changes
nothing), the change made in one patch (rollback and legacy mode: one rollout, not two),
verification by watch with a fast failure for pods that will never start, and a record on the
Deployment of what a rollback rolled back from, so that a second `rollback` does not flip
back to the bad release. Every one of them records in its step's evidence how many API
requests it made (``_common.count_requests``), which drill reports add up per phase.
"""

from crystal_runbook.actions.kubernetes import _common
from crystal_runbook.actions.kubernetes.baseline import Baseline, Restore
from crystal_runbook.actions.kubernetes.scale import Scale
from crystal_runbook.actions.kubernetes.status import Logs, RolloutStatus
from crystal_runbook.actions.kubernetes.template import SetEnv, SetImage
from crystal_runbook.actions.kubernetes.undo import RolloutUndo
from crystal_runbook.engine.registry import Action

ACTIONS: tuple[type[Action], ...] = (
    RolloutUndo,
    SetEnv,
    SetImage,
    Scale,
    RolloutStatus,
    Logs,
    Baseline,
    Restore,
)
for _action in ACTIONS:  # the registry imports the submodules: this runs first either way
    _common.count_requests(_action)
