"""Kubernetes API errors as real ``Status`` objects.

Clients decide what to do from ``reason`` and ``code`` (kubectl retries a ``Conflict``, the
Python client raises ``ApiException`` with the body), so every failure the sandbox answers is
one ``ApiError`` carrying the same reason, code, message wording and details a real API
server would send. The REST layer raises them; the HTTP layer turns them into responses.
"""

from __future__ import annotations

from typing import Any

from crystal_runbook.sandbox import resources


class ApiError(Exception):
    """A failed API request, rendered as a ``Status`` object with an HTTP code."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        """The ``Status`` body a real API server sends for this error."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(res: resources.Resource, name: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": res.plural}
    if res.group:
        details["group"] = res.group
    return details


def not_found(res: resources.Resource, name: str) -> ApiError:
    return ApiError(
        404, "NotFound", f'{res.qualified} "{name}" not found', details=_details(res, name)
    )


def already_exists(res: resources.Resource, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{res.qualified} "{name}" already exists',
        details=_details(res, name),
    )


def conflict(res: resources.Resource, name: str, why: str | None = None) -> ApiError:
    why = why or (
        "the object has been modified; please apply your changes to the latest version "
        "and try again"
    )
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {res.qualified} "{name}": {why}',
        details=_details(res, name),
    )


def invalid(res: resources.Resource, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """422 Invalid; each cause is (reason, field, message) as in ``details.causes``."""
    # field.ErrorList.ToAggregate(): one error alone, several in brackets
    parts = [f"{field}: {message}" if field else message for _, field, message in causes]
    text = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    details: dict[str, Any] = {
        "name": name,
        "kind": res.kind,
        "causes": [
            {"reason": reason, "message": message, "field": field}
            for reason, field, message in causes
        ],
    }
    if res.group:
        details["group"] = res.group
    kind = f"{res.kind}.{res.group}" if res.group else res.kind
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {text}', details=details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed() -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


PATCH_MEDIA_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)
BODY_MEDIA_TYPES = ("application/json", "application/vnd.kubernetes.protobuf")


def unsupported_media_type(
    content_type: str, accepted: tuple[str, ...] = PATCH_MEDIA_TYPES
) -> ApiError:
    """415, worded as ``negotiation.errUnsupportedMediaType``: what the server accepts.

    A real server also accepts YAML (and CBOR when enabled); the sandbox decodes JSON and
    protobuf.
    """
    del content_type  # upstream's message does not repeat it
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted),
    )


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def path_not_found(path: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f"the server could not find the requested resource ({path})",
        details={
            "causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]
        },
    )


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}")


def service_unavailable(message: str) -> ApiError:
    return ApiError(503, "ServiceUnavailable", message)
