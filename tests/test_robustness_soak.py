"""Bounded soak: many fast poll+scrape cycles against the simulator, with faults switching on and off.

Asserts that the exporter's objects do not pile up (after a warm-up, the same number alive), and that no asyncio
task, file descriptor or socket is left behind. Bounded by cycle count (about 25 s alone on the 2-core box). The
client's retries back off 5 ms instead of 0.25 s (the backoff itself: test_client.py): the same cycles, retries and
timers, without half a minute of waiting on the 502 fault's retries.
Resident memory over the same cycles depends on the machine (allocator, page size, load): its goal, flat within
8 MiB, is measured by ``bench/soak.py``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections import Counter

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import Exporter, poll_plan
from exporter.client import FelderaClient
from exporter.config import TargetSettings, build_settings
from exporter.simulator import Fault, ManualClock, Scenario, Simulator

RETRY_BACKOFF = 0.005
WARMUP_CYCLES = 150
SOAK_CYCLES = 800
SCENARIO = Scenario.model_validate(
    {
        "pipelines": [
            {
                "name": f"p{i}",
                "status": "Running" if i % 3 else "Paused",
                "checkpoints": 2,
                "tables": [{"name": "t", "connectors": ["in-a", "in-b"]}],
                "views": [{"name": "v", "connectors": ["out"]}],
            }
            for i in range(6)
        ]
        + [{"name": "stopped", "status": "Stopped"}]
    }
)
FAULTS = (
    Fault("status", path="/v0/pipelines/p1/stats", status=500),
    Fault("html", path="/v0/pipelines"),
    Fault("truncated", path="/v0/pipelines/p2/checkpoint_status"),
    Fault("status", path="/v0/cluster_healthz", status=503),
)


class Discard(logging.Handler):
    """Formats every record, as the exporter's own handler does, and keeps none: pytest's handlers keep every
    record, and with it the failures it names and what they reference."""

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)


def exporter_objects() -> Counter[str]:
    """Objects alive of the exporter's own classes (the simulator's left out: it keeps its history), by class."""
    alive: Counter[str] = Counter()
    for o in gc.get_objects():
        module = type(o).__dict__.get("__module__")  # a str for classes defined in Python
        if isinstance(module, str) and module.startswith("exporter.") and not module.startswith("exporter.simulator"):
            alive[f"{module}.{type(o).__qualname__}"] += 1
    return alive


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def run_cycles(exporter: Exporter, sim: Simulator, client: httpx.AsyncClient, count: int, start: int) -> None:
    for cycle in range(start, start + count):
        sim.clear_faults()
        if cycle % 7 == 0:
            sim.add_fault(FAULTS[(cycle // 7) % len(FAULTS)])
        if cycle % 50 == 0:
            sim.restart_pipeline("p3")
        sim.advance_clock(15)
        await exporter.poll_once()
        response = await client.get("/metrics", headers={"Accept-Encoding": "gzip" if cycle % 2 else "identity"})
        assert response.status_code == 200
        if cycle % 100 == 0:
            assert any(f.name == "feldera_up" for f in text_string_to_metric_families(response.text))


@pytest.mark.slow
@pytest.mark.e2e
async def test_many_cycles_keep_memory_flat_and_leak_no_tasks_or_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter_log = logging.getLogger("exporter")
    monkeypatch.setattr(exporter_log, "propagate", False)
    monkeypatch.setattr(exporter_log, "handlers", [Discard()])
    tasks_before = len(asyncio.all_tasks())
    fds_before = _open_fds()
    async with Simulator(SCENARIO, clock=ManualClock()) as sim:
        settings = build_settings(
            {"web": {"listen_address": "127.0.0.1:0"}, "targets": [{"url": sim.url, "timeout": "2s"}]}, env={}
        )
        concurrency = poll_plan(settings).concurrency

        def client(target: TargetSettings) -> FelderaClient:
            return FelderaClient(target, max_connections=concurrency, backoff=RETRY_BACKOFF)

        exporter = Exporter(settings, client_factory=client)
        await exporter.start(poll_loop=False)
        try:
            async with httpx.AsyncClient(base_url=exporter.url) as client:
                await run_cycles(exporter, sim, client, WARMUP_CYCLES, 0)
                gc.collect()
                objects_start, fds_start, tasks_start = exporter_objects(), _open_fds(), len(asyncio.all_tasks())
                await run_cycles(exporter, sim, client, SOAK_CYCLES, WARMUP_CYCLES)
                gc.collect()
                objects_end, fds_end, tasks_end = exporter_objects(), _open_fds(), len(asyncio.all_tasks())
        finally:
            await exporter.stop()
    print(
        f"soak: {SOAK_CYCLES} cycles after {WARMUP_CYCLES} warm-up; exporter objects {objects_start.total()} -> "
        f"{objects_end.total()}; fds {fds_start} -> {fds_end}; tasks {tasks_start} -> {tasks_end}"
    )
    assert objects_end - objects_start == Counter(), objects_end - objects_start  # classes with more alive
    assert fds_end <= fds_start
    assert tasks_end <= tasks_start
    gc.collect()
    assert _open_fds() <= fds_before
    assert len(asyncio.all_tasks()) <= tasks_before
