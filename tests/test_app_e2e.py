"""End to end: the ``feldera-exporter`` process against the simulator, scraped over HTTP like Prometheus does."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.simulator import PipelineSpec, RelationSpec, Scenario, Simulator
from tests.conftest import Running, eventually, running_exporter

DEADLINE_SECONDS = 30.0


async def scrape(url: str) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    async with httpx.AsyncClient() as http:
        response = await http.get(url + "/metrics")
    response.raise_for_status()
    found: dict[str, dict[frozenset[tuple[str, str]], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return found


def pipeline_names(found: dict[str, dict[frozenset[tuple[str, str]], float]]) -> set[str]:
    return {value for series in found.values() for labels in series for key, value in labels if key == "pipeline_name"}


def up(found: dict[str, dict[frozenset[tuple[str, str]], float]]) -> float | None:
    return found.get("feldera_up", {}).get(frozenset({("target", "default")}))


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    scenario = Scenario(
        pipelines=[
            PipelineSpec(name="orders", tables=[RelationSpec(name="orders", connectors=["kafka-in"])]),
            PipelineSpec(name="scratch", status="Stopped"),
        ]
    )
    async with Simulator(scenario) as simulator:
        yield simulator


@pytest.fixture
async def exporter(sim: Simulator, tmp_path: Path) -> AsyncIterator[Running]:
    async with running_exporter(sim.url, tmp_path, "200ms") as running:
        yield running


@pytest.mark.e2e
async def test_exporter_process_serves_simulated_pipelines_and_follows_changes(
    sim: Simulator, exporter: Running
) -> None:
    async def has_both() -> bool:
        return pipeline_names(await scrape(exporter.url)) == {"orders", "scratch"}

    await eventually(has_both, "both pipelines on /metrics")
    async with httpx.AsyncClient() as http:
        assert (await http.get(exporter.url + "/-/ready")).status_code == 200

    sim.delete_pipeline("scratch")

    async def scratch_gone() -> bool:
        return pipeline_names(await scrape(exporter.url)) == {"orders"}

    await eventually(scratch_gone, "the deleted pipeline to vanish")

    sim.add_fault(kind="status", path="/v0/pipelines", status=502)

    async def down() -> bool:
        found = await scrape(exporter.url)
        return up(found) == 0.0 and not pipeline_names(found)

    await eventually(down, "feldera_up 0 without pipeline series")

    sim.clear_faults()

    async def back() -> bool:
        found = await scrape(exporter.url)
        return up(found) == 1.0 and pipeline_names(found) == {"orders"}

    await eventually(back, "recovery")

    exporter.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(exporter.process.wait(), DEADLINE_SECONDS) == 0
    text = exporter.log.read_text()
    assert "Traceback" not in text
    assert "shutting down" in text


@pytest.mark.slow
@pytest.mark.e2e
async def test_sigterm_exits_within_seconds_with_hostile_clients_connected(tmp_path: Path) -> None:
    """Scrapers that never read a 13 MB /metrics, clients trickling headers and idle connections do not keep the
    process alive after SIGTERM (before: it did not stop for 60 s+ with five never-reading scrapers)."""
    fleet = Scenario(
        pipelines=[
            PipelineSpec(name=f"p{i}", tables=[RelationSpec(name="t", connectors=["c1", "c2"])]) for i in range(1000)
        ]
    )
    hostile: list[socket.socket] = []
    async with Simulator(fleet) as simulator, running_exporter(simulator.url, tmp_path, "1h") as running:
        try:

            async def ready() -> bool:
                async with httpx.AsyncClient() as http:
                    return (await http.get(running.url + "/-/ready")).status_code == 200

            await eventually(ready, "the first cycle")
            host, port = running.url.removeprefix("http://").rsplit(":", 1)
            loop = asyncio.get_running_loop()
            for kind in ("never-reads", "trickles", "idle") * 5:
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.setblocking(False)
                await loop.sock_connect(sock, (host, int(port)))
                if kind == "never-reads":
                    await loop.sock_sendall(sock, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                elif kind == "trickles":
                    await loop.sock_sendall(sock, b"GET /metrics HTTP/1.1\r\nHo")
                hostile.append(sock)
            await asyncio.sleep(0.5)
            running.process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(running.process.wait(), 10) == 0
        finally:
            for sock in hostile:
                sock.close()
    assert "Traceback" not in running.log.read_text()


@pytest.mark.e2e
async def test_sighup_reloads_the_config_and_keeps_it_when_the_new_file_is_refused(
    sim: Simulator, exporter: Running, tmp_path: Path
) -> None:
    async def up_with(labels: frozenset[tuple[str, str]]) -> bool:
        return (await scrape(exporter.url)).get("feldera_up", {}).get(labels) == 1

    await eventually(lambda: up_with(frozenset({("target", "default")})), "the first cycle", DEADLINE_SECONDS)
    config = tmp_path / "config.yaml"
    config.write_text("poll: {interval: 200ms}\ntargets: [{name: default, labels: {env: prod}}]\n")
    exporter.process.send_signal(signal.SIGHUP)
    prod = frozenset({("target", "default"), ("env", "prod")})
    await eventually(lambda: up_with(prod), "the target's new label after SIGHUP", DEADLINE_SECONDS)

    config.write_text("poll: {interval: soon}\n")
    exporter.process.send_signal(signal.SIGHUP)
    refused = "configuration not reloaded, keeping the one in force: poll.interval: invalid duration 'soon'"
    await eventually(lambda: refused in exporter.log.read_text(), "the refusal in the log", DEADLINE_SECONDS)
    assert exporter.process.returncode is None
    assert await up_with(prod)
    log = exporter.log.read_text()
    assert log.count("SIGHUP: reloading the configuration") == 2
    assert "configuration reloaded: targets[default].labels" in log
