"""Argument types for the command lines (``feldera-exporter`` subcommands, ``python -m exporter.simulator``).

Each turns a flag's text into a value or raises :class:`argparse.ArgumentTypeError` with a message, so bad input
ends as ``usage: ... error: argument --port: ...`` with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import math
from urllib.parse import urlsplit

from exporter.config import parse_duration, parse_listen_address


def _whole(text: str, expected: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def port(text: str) -> int:
    """A TCP port, 0..65535 (0 = any free port)."""
    value = _whole(text, "a port number")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, got {value}")
    return value


def count(text: str) -> int:
    """A whole number >= 0."""
    value = _whole(text, "a whole number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def at_least_one(text: str) -> int:
    value = count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def seconds(text: str) -> float:
    """A finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds >= 0, got {text}")
    return value


def positive_seconds(text: str) -> float:
    """A finite number of seconds > 0."""
    value = seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def duration(text: str) -> float:
    """A duration as the config file takes it (``15``, ``15s``, ``2m``, ``500ms``), in seconds."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def listen_address(text: str) -> str:
    """``[host]:port``, as ``web.listen_address``."""
    try:
        parse_listen_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def http_url(text: str) -> str:
    """An ``http(s)://host[:port][/path]`` URL."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"invalid URL {text!r}: expected http(s)://host[:port][/path]")
    return text
