"""Errors a caller can act on, answered as RFC 9457 problem details.

Domain code raises these; `http.endpoint` turns them into responses. Their text is written for the caller:
never a library's message, never a secret.
"""

from typing import Any, ClassVar

from leaderboard.security_events import SecurityEvent


class Problem(Exception):
    """Base of every error a client is told about. Subclasses fix the status, the title and the type.

    A refusal that is a `security_event` is recorded as one (with the caller and their address) by `http.endpoint`.
    """

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    slug: ClassVar[str] = "internal-error"

    def __init__(
        self,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        security_event: SecurityEvent | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.security_event = security_event
        self.extensions = extensions

    def body(self) -> dict[str, Any]:
        """The problem details object."""
        return {
            "type": f"urn:leaderboard:problem:{self.slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extensions,
        }


class InvalidRequest(Problem):
    status = 400
    title = "Invalid request"
    slug = "invalid-request"


class Unauthorized(Problem):
    status = 401
    title = "Unauthorized"
    slug = "unauthorized"


class Forbidden(Problem):
    status = 403
    title = "Forbidden"
    slug = "forbidden"


class NotFound(Problem):
    status = 404
    title = "Not found"
    slug = "not-found"


class Conflict(Problem):
    status = 409
    title = "Conflict"
    slug = "conflict"


class PayloadTooLarge(Problem):
    status = 413
    title = "Payload too large"
    slug = "payload-too-large"


class UnsupportedMediaType(Problem):
    status = 415
    title = "Unsupported media type"
    slug = "unsupported-media-type"


class UnprocessableContent(Problem):
    status = 422
    title = "Unprocessable content"
    slug = "unprocessable-content"


class TooManyRequests(Problem):
    status = 429
    title = "Too many requests"
    slug = "too-many-requests"

    def __init__(self, detail: str, *, retry_after: int, security_event: SecurityEvent | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)}, security_event=security_event)


class ServiceUnavailable(Problem):
    status = 503
    title = "Service unavailable"
    slug = "service-unavailable"

    def __init__(self, detail: str, *, retry_after: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})
