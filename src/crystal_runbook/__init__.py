"""crystal-runbook: emergency rollback and incident runbook automation.

Every capability is a runbook (YAML) run by one engine whose steps are idempotent
check/apply/verify actions, journalled before each transition so a killed run resumes.
"""

__version__ = "0.1.0"
