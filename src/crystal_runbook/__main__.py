"""`python -m crystal_runbook` is the same as the `crystal-runbook` console script."""

from crystal_runbook import process

process.main()
