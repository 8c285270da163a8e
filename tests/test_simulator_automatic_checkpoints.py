"""The simulator's automatic checkpoints and runtime_config behave as Feldera's controller and manager do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from contract.openapi_check import checked_client

from exporter.simulator import ManualClock, Scenario, Simulator

FT: dict[str, Any] = {"fault_tolerance": {"model": "exactly_once", "checkpoint_interval_secs": 60}}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_767_225_600.0)


@pytest.fixture
async def sim(clock: ManualClock) -> AsyncIterator[Simulator]:
    scenario = Scenario.model_validate(
        {
            "pipelines": [
                {"name": "ft", "status": "Running", "checkpoints": 1, "runtime_config": FT},
                {"name": "plain", "status": "Running", "checkpoints": 1},
                {"name": "stopped", "status": "Stopped", "checkpoints": 1, "runtime_config": FT},
            ]
        }
    )
    async with Simulator(scenario, clock=clock) as simulator:
        yield simulator


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with checked_client(sim.url) as http:
        yield http


async def stored(client: httpx.AsyncClient, name: str) -> list[str]:
    body = (await client.get(f"/v0/pipelines/{name}", params={"selector": "status"})).json()
    return [c["uuid"] for c in (body["storage_status_details"] or {"checkpoints": []})["checkpoints"]]


async def test_a_fault_tolerant_pipeline_checkpoints_every_interval_into_storage_only(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    first = await stored(client, "ft")
    clock.advance(59)
    assert await stored(client, "ft") == first
    clock.advance(1)
    second = await stored(client, "ft")
    assert len(second) == 2 and second[0] == first[0]
    clock.advance(60)
    third = await stored(client, "ft")
    assert third[0] == second[1] and third[1] not in second  # the newest two are kept
    status = (await client.get("/v0/pipelines/ft/checkpoint_status")).json()
    assert status == {"success": None, "failure": None}  # only POST /checkpoint shows there
    assert await stored(client, "plain") == (await stored(client, "plain"))[:1]


async def test_failing_automatic_checkpoints_change_nothing_a_client_reads(
    sim: Simulator, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    clock.advance(15)
    first_failure = sim.set_automatic_checkpoints("ft", "failed to write checkpoint: No space left on device")
    assert first_failure == clock.now() + 45  # the next one is due an interval after the start
    before = await stored(client, "ft")
    clock.advance(585)
    assert await stored(client, "ft") == before
    assert (await client.get("/v0/pipelines/ft/checkpoint_status")).json() == {"success": None, "failure": None}
    assert (await client.get("/v0/pipelines/ft/stats")).json()["checkpoint_activity"] == {"status": "idle"}
    assert (await client.get("/_sim/state")).json()["ft"]["automatic_checkpoint_failures"] == 10
    sim.set_automatic_checkpoints("ft", None)
    clock.advance(60)
    assert (await stored(client, "ft"))[-1] not in before


async def test_the_next_checkpoint_is_due_an_interval_after_the_last_attempt_of_any_kind(
    sim: Simulator, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    clock.advance(50)
    assert sim.fail_checkpoint("ft", "boom") == 0  # a POST /checkpoint, numbered per process from 0
    clock.advance(59)
    before = await stored(client, "ft")
    clock.advance(1)
    assert await stored(client, "ft") != before
    status = (await client.get("/v0/pipelines/ft/checkpoint_status")).json()
    assert status["success"] is None and status["failure"]["sequence_number"] == 0


async def test_no_checkpoint_completes_while_delayed_in_progress_or_replaying(
    sim: Simulator, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    before = await stored(client, "ft")
    sim.set_checkpoint_activity("ft", "delayed", ["TransactionInProgress"])
    clock.advance(300)
    sim.set_checkpoint_activity("ft", "delayed", ["Replaying"])
    delayed = (await client.get("/v0/pipelines/ft/stats")).json()["checkpoint_activity"]
    assert delayed == {"status": "delayed", "reasons": ["Replaying"], "delayed_since": "2026-01-01T00:00:00.000000Z"}
    assert await stored(client, "ft") == before
    sim.set_checkpoint_activity("ft", "idle")  # the delayed checkpoint completes at once
    after = await stored(client, "ft")
    assert after != before
    sim.set_status("ft", "Replaying")
    clock.advance(600)
    assert await stored(client, "ft") == after
    sim.set_status("ft", "Paused")  # a paused pipeline checkpoints too
    assert await stored(client, "ft") != after


async def test_a_restart_starts_the_interval_again_and_keeps_the_stored_checkpoints(
    sim: Simulator, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    clock.advance(50)
    sim.restart_pipeline("ft")
    before = await stored(client, "ft")
    clock.advance(59)
    assert await stored(client, "ft") == before
    clock.advance(1)
    assert (await stored(client, "ft"))[0] == before[-1]
    sim.stop_pipeline("ft")
    clock.advance(600)
    assert len(await stored(client, "ft")) == 2


async def test_runtime_config_comes_only_with_selector_all_normalised_as_stored(client: httpx.AsyncClient) -> None:
    everything = (await client.get("/v0/pipelines/ft", params={"selector": "all"})).json()
    assert everything["runtime_config"]["fault_tolerance"] == {"model": "exactly_once", "checkpoint_interval_secs": 60}
    plain = (await client.get("/v0/pipelines/plain", params={"selector": "all"})).json()
    assert plain["runtime_config"]["fault_tolerance"] == {"model": "none", "checkpoint_interval_secs": 60}
    for selector in ("status", "status_with_connectors"):
        body = (await client.get("/v0/pipelines/ft", params={"selector": selector})).json()
        assert "runtime_config" not in body and body["program_config"]["runtime_version"] is None


async def test_runtime_config_changes_only_while_stopped_and_bumps_the_version(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    with pytest.raises(ValueError, match="UpdateRestrictedToStopped"):
        sim.set_runtime_config("ft", {"fault_tolerance": None})
    with pytest.raises(ValueError, match="EditRestrictedToClearedStorage"):
        sim.set_runtime_config("stopped", {"fault_tolerance": None})
    version = sim.pipeline("stopped").version
    assert sim.set_runtime_config("stopped", {"fault_tolerance": {"model": "exactly_once"}}) == version  # the same
    assert sim.set_runtime_config("stopped", {"cpu_profiler": False}) == version + 1
    sim.clear_storage("stopped")
    assert sim.set_runtime_config("stopped", {"fault_tolerance": {"checkpoint_interval_secs": 5}}) == version + 2
    body = (await client.get("/v0/pipelines/stopped", params={"selector": "all"})).json()
    assert (body["version"], body["storage_status"]) == (version + 2, "Cleared")
    assert body["runtime_config"]["fault_tolerance"] == {"model": "exactly_once", "checkpoint_interval_secs": 5}
    response = await client.post("/_sim/set_runtime_config", json={"name": "stopped", "runtime_config": {"hosts": 0}})
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("fault_tolerance", "interval"),
    [
        (None, None),
        ({"model": "none"}, None),
        ({}, 60.0),
        ({"checkpoint_interval_secs": None}, None),
        ({"model": "at_least_once", "checkpoint_interval_secs": 0}, 1.0),
        ({"checkpoint_interval_secs": 86400}, 3600.0),
        ("latest_checkpoint", 60.0),
    ],
)
def test_the_checkpoint_interval_reads_fault_tolerance_as_feldera_does(
    fault_tolerance: object, interval: float | None, clock: ManualClock
) -> None:
    spec = {"name": "p", "status": "Stopped", "runtime_config": {"fault_tolerance": fault_tolerance}}
    sim = Simulator(Scenario.model_validate({"pipelines": [spec]}), clock=clock)
    assert sim.pipeline("p").checkpoint_interval == interval


@pytest.mark.slow
async def test_a_ten_thousand_pipeline_fleet_checkpoints_without_walking_every_pipeline(clock: ManualClock) -> None:
    sim = Simulator(Scenario.generate(10_000), clock=clock)
    fault_tolerant = sum(1 for p in sim.world.pipelines.values() if p.checkpoint_due() is not None)
    assert 4_000 < fault_tolerant < 5_000
    clock.advance(60)
    taken = [p.checkpoints_taken for p in sim.world.pipelines.values()]
    sim.world.tick()
    grew = sum(1 for p, before in zip(sim.world.pipelines.values(), taken, strict=True) if p.checkpoints_taken > before)
    assert grew == fault_tolerant
