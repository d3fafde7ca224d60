"""The runbook format (`apiVersion: crystal-runbook/v1`) as pydantic models.

These models are the contract of design.md section 5: `validate`, `plan`, `schema` and the
executor all read runbooks through them. Unknown keys are errors (a typo in `retry:` must
not silently mean "no retry"). Templates are kept as strings here; `templating` checks and
renders them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, field_validator
from pydantic.json_schema import WithJsonSchema

from crystal_runbook.engine import durations

API_VERSION = "crystal-runbook/v1"
MAX_INPUT_LENGTH = 1000  # the source checklist's limit for anything a user can send
STEP_ID = r"^[a-z0-9][a-z0-9_-]{0,62}$"
NAME = r"^[a-z0-9][a-z0-9_.-]{0,62}$"


def _duration(value: object) -> float:
    return durations.parse_duration(value)


Duration = Annotated[
    float,
    BeforeValidator(_duration),
    PlainSerializer(lambda v: v, return_type=float),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d))+$"},
            ],
            "description": durations.EXPECTED,
        }
    ),
]

ParamType = Literal["string", "integer", "number", "boolean", "duration", "list"]


def regex(value: str | None, what: str) -> str | None:
    """``value`` if it is a valid regular expression (for validators of models that take one).

    Raises:
        ValueError: naming ``what`` and the compiler's complaint.
    """
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"{what} is not a valid regular expression: {exc}") from None
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ParamSpec(_Strict):
    """One parameter a runbook accepts (`-p name=value` on the command line)."""

    type: ParamType = "string"
    description: str = ""
    required: bool = False
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    format: Literal["image"] | None = Field(
        default=None,
        description="A string's grammar, checked with an error in words: image (a container "
        "image reference, lower-case repository).",
    )
    max_length: int = Field(default=MAX_INPUT_LENGTH, ge=1, le=MAX_INPUT_LENGTH)
    choices: list[Any] | None = None
    secret: bool = Field(
        default=False,
        description="Never written to the journal, logs or incident documents.",
    )

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        return regex(value, "pattern")


class Retry(_Strict):
    """How often a step's verification (or a read-only check) is tried before it fails."""

    attempts: int = Field(default=3, ge=1, le=10_000)
    delay: Duration = Field(default=1.0, description="Wait before the second attempt.")
    backoff: float = Field(
        default=1.0, ge=1.0, le=10.0, description="Delay multiplier per attempt."
    )
    max_delay: Duration = Field(default=30.0, description="Upper bound of one wait.")


class Step(_Strict):
    """One idempotent action: check, apply only if needed, verify."""

    id: str = Field(pattern=STEP_ID, description="Unique within the runbook; lower case.")
    uses: str = Field(description="Action name, e.g. k8s.rollout_undo (see `schema`).")
    name: str = ""
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    when: str | None = Field(default=None, description="Jinja2 expression; false skips the step.")
    timeout: Duration | None = Field(default=None, description="Bound on the whole step.")
    retry: Retry | None = None


class FailureStep(_Strict):
    """A step run when the main sequence fails (typically a notification)."""

    id: str | None = Field(default=None, pattern=STEP_ID)
    uses: str
    name: str = ""
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    when: str | None = None
    timeout: Duration | None = None
    retry: Retry | None = None


class Runbook(_Strict):
    """A runbook file."""

    api_version: Literal["crystal-runbook/v1"] = Field(alias="apiVersion")
    kind: Literal["Runbook"]
    name: str = Field(pattern=NAME)
    description: str = ""
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    environments: list[str] | None = Field(
        default=None, description="Environments it may run in; absent means any."
    )
    confirm: list[str] = Field(
        default_factory=list, description="Environments that need --yes or an interactive yes."
    )
    lock: str | None = Field(default=None, description="Template of the lock key held by a run.")
    steps: list[Step] = Field(min_length=1)
    on_failure: list[FailureStep] = Field(default_factory=list)

    @field_validator("params")
    @classmethod
    def _param_names(cls, value: dict[str, ParamSpec]) -> dict[str, ParamSpec]:
        for key in value:
            if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", key):
                raise ValueError(f"parameter name {key!r} must be lower case letters, digits and _")
        return value


def json_schema() -> dict[str, Any]:
    """JSON Schema of the runbook format (the `schema` command prints it)."""
    schema = Runbook.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "crystal-runbook runbook (apiVersion crystal-runbook/v1)"
    return schema
