"""The demo: a driver that keeps the default scenario moving, and an exporter that can scrape it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from exporter.app import Exporter
from exporter.config import Settings
from exporter.metrics.server import normalized_version
from exporter.simulator import ManualClock, Simulator
from exporter.simulator.demo import DemoDriver, demo_scenario


def test_demo_driver_moves_pipelines_through_states_and_failures() -> None:
    sim = Simulator(demo_scenario(), clock=ManualClock())
    driver = DemoDriver(sim)
    nightly: set[str] = set()
    draft: set[str] = set()
    fraud_failed = clickstream_fatal = compiler_down = False
    for _ in range(60):
        sim.advance_clock(5)
        driver.step()
        nightly.add(sim.pipeline("nightly-batch").deployment_status)
        draft.add(str(sim.pipeline("reporting-draft").program.value))
        fraud = sim.pipeline("fraud-detection")
        failure = fraud.checkpoint_failure
        fraud_failed |= failure is not None and failure["sequence_number"] > (fraud.checkpoint_success or 0)
        clickstream_fatal |= sim.pipeline("clickstream").find_endpoint("clicks.s3-backfill").fatal_error is not None
        compiler_down |= not sim.world.cluster["compiler"]["healthy"]
    assert {"Provisioning", "Initializing", "Running", "Stopping", "Stopped"} <= nightly
    assert {"CompilingSql", "SqlError"} <= draft
    assert fraud_failed and clickstream_fatal and compiler_down


async def test_exporter_scrapes_the_demo_scenario() -> None:
    scenario = demo_scenario()
    async with Simulator(scenario, clock=ManualClock()) as sim:
        settings = Settings.model_validate(
            {"web": {"listen_address": "127.0.0.1:0"}, "targets": [{"name": "demo", "url": sim.url}]}
        )
        exporter = Exporter(settings)
        await exporter.start(poll_loop=False)
        try:
            snapshot = await exporter.poll_once()
        finally:
            await exporter.stop()
    (target,) = snapshot.targets
    assert target.up
    assert sorted(p.name for p in target.pipelines) == sorted(p.name for p in scenario.pipelines)
    # an upgraded platform: two pipelines still on the old runtime, a trial licence, a newer release out
    assert target.server is not None and target.server.version == "0.340.0"
    drift = {p.name for p in target.pipelines if normalized_version(p.pipeline.platform_version) != "0.340.0"}
    assert drift == {"inventory", "nightly-batch"}
    licence = target.server.license_validity
    assert licence is not None and licence.exists is not None and licence.exists.is_trial is True
    assert target.server.update_info is not None and target.server.update_info.is_latest_version is False


async def test_demo_command_prints_urls_and_stops_on_sigint() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "exporter",
        "demo",
        "--feldera-port",
        "0",
        "--web.listen-address",
        "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(30):
        while not lines or not lines[-1].startswith("Press Ctrl-C"):
            lines.append((await process.stdout.readline()).decode().strip())
        process.send_signal(signal.SIGINT)
        code = await process.wait()
    assert code == 0
    assert any(line.startswith("Exporter metrics:") and line.endswith("/metrics") for line in lines)
    assert any(line.startswith("Simulated Feldera API: http://127.0.0.1:") for line in lines)
