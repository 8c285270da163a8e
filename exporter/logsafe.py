"""Make text from outside (Feldera's answers, pipeline names) safe to put in a log line or an error message.

:func:`clean` is the one place this happens; everything Feldera says that reaches a log goes through it (the
``str()`` of :mod:`exporter.errors`, the poller's and the sidecar's log calls):

* control characters (C0 incl. CR, LF, TAB and ESC, DEL, C1, U+2028/U+2029) and lone surrogates are written as
  Python escapes (``\\r``, ``\\x1b``, ``\\ud800``), so a value cannot forge a log line, move the cursor or break
  the log handler's encoder;
* secrets are replaced by ``[REDACTED]``: every value registered with :func:`add_secret` (the configured API
  keys), the ``secrets`` a caller passes (a reset watch's token), anything that looks like a Feldera API key
  (``apikey:...``), a bearer credential, a ``token=`` parameter or the password of a URL
  (``postgres://user:...@host``: connector errors quote connection strings), and the token Feldera repeats in its
  answer to a bad reset token (``Invalid reset token '...'``).

Every log line passes through it too: :class:`SafeFormatter` (installed by the CLI for every log record) cleans
each formatted message, the libraries' included, and writes each exception's message and notes as one cleaned line,
so neither a third-party message nor ``log.debug(..., exc_info=exc)`` can carry a forged line or a key.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from types import TracebackType

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 4
"""Shorter registered values are not redacted by value (they would blank out ordinary words)."""

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_PATTERNS = (
    re.compile(r"(?i)(apikey:)[^\s'\",;]+"),
    re.compile(r"(?i)(bearer\s+)[^\s'\",;]+"),
    re.compile(r"(?i)(reset token\s*'?)[^'\s]+"),
    re.compile(r"(?i)(token=)[^&\s'\",;]+"),
    re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^/\s:@'\"]*:)[^@\s/'\"]+(?=@)"),
)

_secrets: set[str] = set()
_lock = threading.Lock()
_secret_pattern: re.Pattern[str] | None = None


def add_secret(value: str) -> None:
    """Redact ``value`` wherever :func:`clean` meets it from now on."""
    global _secret_pattern
    if len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        if value not in _secrets:
            _secrets.add(value)
            _secret_pattern = _compile(_secrets)


def _compile(values: set[str]) -> re.Pattern[str] | None:
    if not values:
        return None
    return re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))


def _escape(match: re.Match[str]) -> str:
    char = ord(match.group())
    if char < 0x100:
        return {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}.get(char, f"\\x{char:02x}")
    return f"\\u{char:04x}"


def clean(text: object, secrets: tuple[str, ...] = ()) -> str:
    """``str(text)`` with registered secrets and ``secrets`` redacted, control characters escaped (module docs).

    >>> clean("ok\\r\\nFAKE line \\x1b[31m")
    'ok\\\\r\\\\nFAKE line \\\\x1b[31m'
    >>> clean("HTTP 400 InvalidResetToken: Invalid reset token '3f2a9c'")
    "HTTP 400 InvalidResetToken: Invalid reset token '[REDACTED]'"
    """
    value = str(text)
    pattern = _secret_pattern
    if pattern is not None:
        value = pattern.sub(REDACTED, value)
    for secret in secrets:
        if len(secret) >= MIN_SECRET_LENGTH:
            value = value.replace(secret, REDACTED)
    for shape in _PATTERNS:
        value = shape.sub(lambda m: m.group(1) + REDACTED, value)
    return _UNSAFE.sub(_escape, value)


_CAUSE = "The above exception was the direct cause of the following exception:"
_CONTEXT = "During handling of the above exception, another exception occurred:"

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


def format_exception(exc: BaseException) -> str:
    """Python's traceback text for ``exc`` and its causes, with every message (and note) through :func:`clean`:
    one line each. Frame lines (file names and source) are cleaned line by line."""
    chain: list[tuple[BaseException, str]] = []  # outermost first, each with how it follows the one after it
    seen: set[int] = set()
    current: BaseException | None = exc
    joint = ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, joint))
        if current.__cause__ is not None:
            current, joint = current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, joint = current.__context__, _CONTEXT
        else:
            current = None
    lines: list[str] = []
    for link, joint in reversed(chain):
        if link.__traceback__ is not None:
            lines.append("Traceback (most recent call last):")
            frames = traceback.format_tb(link.__traceback__)
            lines.extend(clean(line) for frame in frames for line in frame.rstrip("\n").split("\n"))
        lines.append(clean("".join(traceback.format_exception_only(link)).rstrip("\n")))
        if isinstance(link, BaseExceptionGroup):
            for number, inner in enumerate(link.exceptions, 1):
                lines.append(f"+---- {number} ----")
                lines.extend(f"| {line}" for line in format_exception(inner).split("\n"))
        if joint:
            lines.extend(("", joint, ""))
    return "\n".join(lines)


class SafeFormatter(logging.Formatter):
    """A :class:`logging.Formatter` whose messages go through :func:`clean` and whose tracebacks go through
    :func:`format_exception`: also what the libraries log (asyncio's and aiohttp's messages carry exception texts
    and reprs of their own). :func:`clean` is idempotent, so a value the caller cleaned is unchanged."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return clean(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        record.exc_text = None  # a traceback cached by another handler's formatter is raw: format it again
        return super().format(record)

    def formatException(self, ei: ExcInfo) -> str:
        value = ei[1]
        return "NoneType: None" if value is None else format_exception(value)
