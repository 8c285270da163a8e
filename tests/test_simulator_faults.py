"""Fault injection: slow, failing, garbled and hanging answers, scoped by path and count."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from exporter.simulator import Fault, ManualClock, Scenario, Simulator

SCENARIO = Scenario.model_validate({"pipelines": [{"name": "p", "status": "Running", "checkpoints": 1}]})


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(SCENARIO, clock=ManualClock()) as simulator:
        yield simulator


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.url) as http:
        yield http


async def test_status_fault_returns_feldera_error_only_on_matching_path(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.add_fault(Fault("status", path="/v0/pipelines/*/stats", status=503))
    failed = await client.get("/v0/pipelines/p/stats")
    assert failed.status_code == 503
    assert set(failed.json()) == {"message", "error_code", "details"}
    assert (await client.get("/v0/pipelines/p/checkpoint_status")).status_code == 200


async def test_html_502_fault_has_a_non_json_body(sim: Simulator, client: httpx.AsyncClient) -> None:
    sim.add_fault(kind="html")
    response = await client.get("/v0/pipelines")
    assert response.status_code == 502
    assert response.headers["content-type"] == "text/html"
    assert response.text.startswith("<html>")


@pytest.mark.parametrize("kind", ["malformed", "truncated"])
async def test_garbled_json_faults_do_not_parse(sim: Simulator, client: httpx.AsyncClient, kind: str) -> None:
    sim.add_fault(Fault(kind, path="/v0/pipelines"))  # type: ignore[arg-type]
    response = await client.get("/v0/pipelines")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


async def test_fault_with_times_affects_only_that_many_requests(sim: Simulator, client: httpx.AsyncClient) -> None:
    sim.add_fault(Fault("status", status=500, times=2))
    codes = [(await client.get("/v0/pipelines")).status_code for _ in range(3)]
    assert codes == [500, 500, 200]


async def test_latency_fault_delays_then_answers_normally(sim: Simulator, client: httpx.AsyncClient) -> None:
    sim.add_fault(Fault("latency", seconds=0.05))
    response = await client.get("/v0/pipelines/p/checkpoint_status")
    assert response.status_code == 200


async def test_hang_fault_times_out_the_client_until_faults_are_cleared(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.add_fault(Fault("hang", path="/v0/cluster_healthz"))
    with pytest.raises(httpx.ReadTimeout):
        await client.get("/v0/cluster_healthz", timeout=0.2)
    pending = asyncio.ensure_future(client.get("/v0/cluster_healthz"))
    async with asyncio.timeout(10):
        await sim.wait_for_requests("/v0/cluster_healthz", 2)
    sim.clear_faults()
    assert (await pending).status_code == 200


async def test_faults_can_be_added_and_cleared_over_http(sim: Simulator, client: httpx.AsyncClient) -> None:
    added = await client.post("/_sim/add_fault", json={"kind": "status", "status": 504, "path": "/v0/pipelines"})
    assert added.json()["result"]["status"] == 504
    assert (await client.get("/v0/pipelines")).status_code == 504
    await client.post("/_sim/clear_faults", json={})
    assert (await client.get("/v0/pipelines")).status_code == 200
    assert (await client.post("/_sim/add_fault", json={"kind": "explode"})).status_code == 400


async def test_control_routes_are_not_subject_to_faults(sim: Simulator, client: httpx.AsyncClient) -> None:
    sim.add_fault(Fault("status", status=500))
    assert (await client.get("/_sim/state")).status_code == 200
