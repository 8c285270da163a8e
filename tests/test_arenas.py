"""The exporter bounds glibc's malloc arenas before its threads start (measured: peak RSS, docs/performance.md)."""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(ctypes.util.find_library("c") is None, reason="no C library to ask")

PROBE = """
import ctypes, ctypes.util, sys, threading
from exporter.arenas import limit_malloc_arenas
if sys.argv[1] == "limit":
    print(limit_malloc_arenas())
together = threading.Barrier(8)  # all alive at once: an exited thread's arena would be reused by the next
def allocate():
    blocks = [bytearray(4096) for _ in range(64)]  # above pymalloc's 512 bytes: glibc malloc, in this thread's arena
    together.wait()
threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads: thread.start()
for thread in threads: thread.join()
ctypes.CDLL(ctypes.util.find_library("c")).malloc_stats()  # one "Arena N:" block per arena, on stderr
"""


def arenas(mode: str, env: dict[str, str]) -> tuple[str, int]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60, check=True, env=env
    )
    return result.stdout.strip(), sum(line.startswith("Arena ") for line in result.stderr.splitlines())


def test_threads_share_two_arenas_once_limited() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    applied, limited = arenas("limit", env)
    _, unlimited = arenas("none", env)
    assert applied == "True"
    assert limited <= 2 < unlimited


def test_an_operators_malloc_arena_max_is_left_alone() -> None:
    applied, _ = arenas("limit", {**os.environ, "MALLOC_ARENA_MAX": "4"})
    assert applied == "False"
