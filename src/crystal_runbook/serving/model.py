"""The `inventory/serve.yaml` format (docs/operations.md): the contract of the file.

Unknown keys are errors, as in runbooks and the other inventory files: a misspelt
`auto_rollback:` must not silently watch without acting.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, model_validator

from crystal_runbook.engine.model import Duration

API_VERSION = "crystal-runbook/v1"
KIND = "Serve"
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class LeasePlace(_Strict):
    """Where the scheduler's Lease lives: a namespace of a kubeconfig context."""

    namespace: str = Field(pattern=NAME.pattern, max_length=63)
    context: str | None = Field(default=None, description="kubeconfig context; None: current")
    kubeconfig: str | None = Field(
        default=None,
        description="kubeconfig path ({state_dir} allowed); None: $KUBECONFIG or ~/.kube/config",
    )


class LeaderElection(_Strict):
    """Lease timing, shared by the scheduler's Lease and every watcher's."""

    kubernetes: LeasePlace | None = Field(
        default=None,
        description="where the scheduler's Lease lives; absent: the pod's own namespace "
        "(in a cluster). Each watcher's Lease lives beside the Deployment it watches.",
    )
    lease_duration: Duration = Field(
        default=15.0,
        ge=2.0,
        le=300.0,
        description="a follower takes over this long after the leader's last renewal "
        "(client-go's default: 15 s)",
    )
    renew_period: Duration = Field(
        default=2.0,
        ge=0.2,
        le=100.0,
        description="how often the leader renews and followers look (client-go's retry period)",
    )

    @model_validator(mode="after")
    def _renewals_fit(self) -> LeaderElection:
        if self.renew_period * 3 > self.lease_duration:
            raise ValueError(
                "renew_period must be at most a third of lease_duration, so that a leader "
                "misses two renewals before it steps down and before anyone takes over"
            )
        return self

    @property
    def renew_deadline(self) -> float:
        """A leader that could not renew for this long steps down: one renew period before
        any follower may take over."""
        return self.lease_duration - self.renew_period


class Scheduler(_Strict):
    """The drill scheduler (`serve --scheduler`): `drill due --run`, every ``interval``."""

    interval: Duration = Field(
        default=30.0,
        ge=1.0,
        le=3600.0,
        description="how often what is due is decided; a slot's jitter shorter than this is "
        "waited out",
    )


class Watch(_Strict):
    """One service and environment whose rollback triggers `serve --watch` evaluates."""

    service: str
    env: str
    interval: Duration = Field(default=15.0, ge=0.2, le=3600.0)
    auto_rollback: bool = Field(
        default=True,
        description="roll back when a rollback rule fires, as `watch --auto-rollback`; false: "
        "announce only",
    )
    cooldown: Duration = Field(
        default=600.0,
        ge=0.0,
        le=86400.0,
        description="after a rollback starts, how long before another incident may roll back",
    )


class ServeFile(_Strict):
    """The whole `serve.yaml`."""

    api_version: str = Field(
        default=API_VERSION, alias="apiVersion", pattern=r"^crystal-runbook/v1$"
    )
    kind: str = Field(default=KIND, pattern=rf"^{KIND}$")
    leader_election: LeaderElection = Field(default_factory=LeaderElection)
    scheduler: Scheduler = Field(default_factory=Scheduler)
    watch: list[Watch] = Field(default_factory=list, max_length=200)
