"""`http.health`: is the service answering? (`curl -I https://api.production.com/health`).

Read-only. Satisfied when the URL (default: the target's `health_url`) answers with an
expected status (and, if asked, a body containing a string) within the timeout. The
executor retries it with the step's `retry:`; each attempt's status and latency are evidence.
Requests go through the process's one HTTP client (``web``): no new TLS context per attempt.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import Field

from crystal_runbook import errors, web
from crystal_runbook.engine.registry import Action, Args, Check, StepContext


class HealthArgs(Args):
    url: str | None = Field(default=None, max_length=2000, description="Default: target.health_url")
    method: Literal["GET", "HEAD"] = "GET"
    expect_status: list[int] = Field(default_factory=lambda: [200, 204])
    contains: str | None = Field(default=None, max_length=200)
    timeout: float = Field(default=5.0, gt=0, le=60)


class Health(Action):
    """Check a health endpoint."""

    name = "http.health"
    summary = "Check a health URL (default target.health_url): status and optional body text."
    Args = HealthArgs
    outputs = ("url", "status", "latency_ms")
    poll_interval = 2.0

    def warm(self) -> None:
        """Load httpx and open the process's client (its TLS context costs tens of ms)."""
        web.client()

    def check(self, args: Any, ctx: StepContext) -> Check:
        import httpx

        url = args.url or ctx.target.get("health_url")
        if not url:
            raise errors.ConfigurationError(
                "no health URL: the step names none and the target has no health_url",
                hint="add health_url to the service's environment in inventory/services.yaml",
            )
        if not str(url).startswith(("http://", "https://")):
            raise errors.PermanentActionError(f"health URL {str(url)[:100]!r} is not http(s)")
        started = time.monotonic()
        try:
            response = web.client().request(
                args.method, url, timeout=args.timeout, follow_redirects=True
            )
        except httpx.HTTPError as exc:
            took = (time.monotonic() - started) * 1000
            return Check(
                satisfied=False,
                summary=f"{url}: {type(exc).__name__}: {exc}"[:300],
                evidence={"url": url, "error": str(exc)[:300], "latency_ms": round(took)},
            )
        took = round((time.monotonic() - started) * 1000, 1)
        ok = response.status_code in args.expect_status
        if ok and args.contains is not None and args.method == "GET":
            ok = args.contains in response.text
        outputs = {"url": url, "status": response.status_code, "latency_ms": took}
        summary = f"{url} answered {response.status_code} in {took:.0f} ms"
        if not ok and args.contains is not None:
            summary += f" (wanted {args.contains!r} in the body)"
        return Check(
            satisfied=ok,
            summary=summary,
            outputs=outputs,
            evidence={**outputs, "body": response.text[:200]},
        )


ACTIONS: tuple[type[Action], ...] = (Health,)
