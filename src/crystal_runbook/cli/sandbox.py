"""`crystal-runbook sandbox up|down|status`: the local practice cluster (design.md section 7)."""

from __future__ import annotations

import typer

app = typer.Typer(help="A local practice Kubernetes cluster on loopback.", no_args_is_help=True)
