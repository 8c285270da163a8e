"""Typed failures of calls to the Feldera API.

Every failure maps onto a bounded ``code`` label value of ``feldera_exporter_api_requests_total``: the HTTP
status for an error answer, else ``timeout``, ``connection_error`` or ``invalid_response``. Feldera's error
message is kept for logs only (never used as a label value), and no error carries credentials: ``str()`` of
every error goes through :func:`exporter.logsafe.clean` (control characters escaped, keys and tokens redacted),
while the attributes (``message``, ``body_excerpt``) keep the text as received.
"""

from __future__ import annotations

from exporter.logsafe import clean


class FelderaError(Exception):
    """A call to the Feldera API failed. ``endpoint`` is the operation name (``list_pipelines``, ``stats``...)."""

    code: str = "error"

    def __init__(self, endpoint: str, message: str) -> None:
        super().__init__(f"{endpoint}: {message}")
        self.endpoint = endpoint

    def __str__(self) -> str:
        return clean(super().__str__())


class ApiError(FelderaError):
    """Feldera (or a proxy in front of it) answered with an error status.

    ``error_code`` and ``message`` come from Feldera's JSON error body; for a non-JSON body (e.g. a proxy's HTML
    502 page) ``error_code`` is ``None`` and ``body_excerpt`` holds the start of the body for the logs.
    """

    def __init__(
        self,
        endpoint: str,
        status: int,
        *,
        error_code: str | None = None,
        message: str = "",
        body_excerpt: str = "",
        retry_after: float | None = None,
    ) -> None:
        if error_code is not None:
            text = f"HTTP {status} {error_code}: {message}"
        else:
            text = f"HTTP {status} with a non-JSON body: {body_excerpt!r}"
        super().__init__(endpoint, text)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.body_excerpt = body_excerpt
        self.retry_after = retry_after

    @property
    def code(self) -> str:  # type: ignore[override]  # computed from the status, over the base's plain attribute
        return str(self.status)


class RequestTimeout(FelderaError):
    """No complete answer within the target's timeout."""

    code = "timeout"


class ConnectionFailed(FelderaError):
    """The connection could not be made or broke before an answer (refused, reset, DNS, TLS)."""

    code = "connection_error"


class InvalidResponse(FelderaError):
    """A success status with a body that is not the expected JSON (truncated, HTML, wrong shape)."""

    code = "invalid_response"
