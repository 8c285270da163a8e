"""Bound glibc's malloc arenas before the exporter starts its threads.

glibc gives each thread that allocates its own malloc arena (up to 8 per core). The exporter's threads (the
rendering worker, plain-text inflation for scrapes, the bcrypt pool, ``asyncio.to_thread``) each allocate
megabytes for a moment, and memory freed in an arena is rarely returned while others are busy. Measured with
``bench/run.py`` at 10,000 pipelines x 4 connectors under the bench's scrape load (docs/performance.md, "Why these
parts are home-made"): peak RSS 298 MiB with the default, 248 MiB with two arenas, for the same poll ratio, CPU
and scrape latency. ``MALLOC_ARENA_MAX`` in the environment does the same; this applies it when the variable is not
set.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

ARENAS = 2
"""Arenas for the whole process: the main one and one shared by every thread."""
_M_ARENA_MAX = -8
"""``M_ARENA_MAX`` from glibc's ``malloc.h``."""


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """``mallopt(M_ARENA_MAX, arenas)`` on glibc unless ``MALLOC_ARENA_MAX`` is set; whether it was applied.

    Call before any thread starts: threads that already have an arena keep it."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): nothing to bound
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))
