"""The runbook engine: model, loader, templating, executor, journal and locks.

It never imports a backend's client library (kubernetes, ansible_runner, fabric, slack_sdk)
nor the UI libraries (typer, rich): actions and shells sit above it (design.md section 8).
"""
