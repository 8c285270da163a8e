"""Typed failures of calls to the Feldera API.

Every failure maps onto a bounded ``code`` label value of ``feldera_exporter_api_requests_total``: the HTTP
status for an error answer, else ``timeout``, ``connection_error`` or ``invalid_response``. Feldera's error
message is kept for logs only (never used as a label value), and no error carries credentials: ``str()`` of
every error goes through :func:`exporter.logsafe.clean` (control characters escaped, keys and tokens redacted),
while the attributes (``message``, ``body_excerpt``) keep the text as received, up to a bound (a log line's length
is never Feldera's to choose).
"""

from __future__ import annotations

from exporter.logsafe import clean

MAX_MESSAGE_CHARS = 500
"""Characters of Feldera's error message kept (and logged); a longer one ends in ``...`` and its length."""
MAX_ERROR_CODE_CHARS = 100
"""Characters of an error code shown in the message (the attribute keeps it whole: it is compared to known codes)."""


def _shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


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
        message = _shortened(message, MAX_MESSAGE_CHARS)
        if error_code is not None:
            text = f"HTTP {status} {_shortened(error_code, MAX_ERROR_CODE_CHARS)}: {message}"
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
    """A success status with a body that is not the expected JSON (truncated, HTML, wrong shape), or larger than
    this exporter takes."""

    code = "invalid_response"


class OverLimit(InvalidResponse):
    """The pipeline list holds more pipelines than ``targets[].max_pipelines`` (or is too large to hold fewer)."""
