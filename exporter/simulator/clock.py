"""Time sources for the simulator: the wall clock, or a manual clock tests drive explicitly."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that only moves when told to (``advance``/``set``); counters and ``*_since`` follow it."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += seconds
        return self._now

    def set(self, when: float) -> None:
        self._now = float(when)


def rfc3339(when: float, *, nanos: bool = False) -> str:
    """Format like chrono's ``DateTime<Utc>`` serialization: ``2026-01-01T00:00:00.123456Z``.

    With ``nanos`` the fraction has nine digits, as Feldera's checkpoint ``failed_at`` can.
    """
    whole = int(when // 1)
    base = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        fraction = min(round((when - whole) * 1_000_000_000), 999_999_999)
        return f"{base}.{fraction:09d}Z"
    fraction = min(round((when - whole) * 1_000_000), 999_999)
    return f"{base}.{fraction:06d}Z"
