#!/usr/bin/env python3
"""Resident memory over the soak of ``tests/test_robustness_soak.py``: the same cycles (simulator and exporter in
this process, faults switching on and off, a pipeline restarted every 50 cycles, a scrape per cycle), RSS read
after the warm-up and at the end. The goal: flat within 8 MiB. RSS depends on the machine (allocator, page size,
what else runs), so the test suite asserts what does not (the exporter's objects alive, file descriptors, tasks) and
this script measures the rest; run it on a quiet machine. Exit status 1 when the goal is missed.

    .venv/bin/python bench/soak.py                  # 150 warm-up cycles, then 800
    .venv/bin/python bench/soak.py --cycles 2000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exporter.app import Exporter  # noqa: E402
from exporter.config import build_settings  # noqa: E402
from exporter.simulator import ManualClock, Simulator  # noqa: E402
from tests.test_robustness_soak import SCENARIO, SOAK_CYCLES, WARMUP_CYCLES, run_cycles  # noqa: E402

GOAL_BYTES = 8 << 20


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def soak(warmup: int, cycles: int) -> tuple[int, int]:
    async with Simulator(SCENARIO, clock=ManualClock()) as sim:
        settings = build_settings(
            {"web": {"listen_address": "127.0.0.1:0"}, "targets": [{"url": sim.url, "timeout": "2s"}]}, env={}
        )
        exporter = Exporter(settings)
        await exporter.start(poll_loop=False)
        try:
            async with httpx.AsyncClient(base_url=exporter.url) as client:
                await run_cycles(exporter, sim, client, warmup, 0)
                gc.collect()
                start = rss_bytes()
                await run_cycles(exporter, sim, client, cycles, warmup)
                gc.collect()
                return start, rss_bytes()
        finally:
            await exporter.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warmup", type=int, default=WARMUP_CYCLES, help="cycles before the first reading")
    parser.add_argument("--cycles", type=int, default=SOAK_CYCLES, help="cycles between the two readings")
    options = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the injected faults' warnings, one per cycle, are expected
    start, end = asyncio.run(soak(options.warmup, options.cycles))
    grown = end - start
    verdict = "ok" if grown < GOAL_BYTES else f"over the {GOAL_BYTES >> 20} MiB goal"
    print(
        f"soak: {options.cycles} cycles after {options.warmup} warm-up: RSS {start / 2**20:.1f} -> "
        f"{end / 2**20:.1f} MiB ({grown / 2**20:+.1f} MiB): {verdict}"
    )
    return 0 if grown < GOAL_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
