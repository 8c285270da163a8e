"""The Poller against the simulator and a scripted server: which calls one cycle makes, and how many at once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from exporter.config import Settings, build_settings
from exporter.models import COMBINED_STATUSES
from exporter.simulator import ManualClock, PipelineSpec, RelationSpec, Scenario, Simulator
from tests.conftest import (
    InFlight,
    Request,
    Response,
    ScriptedFeldera,
    feldera_error,
    json_response,
    new_poller,
    pipeline_json,
)


def settings_for(url: str) -> Settings:
    return build_settings({"web": {"listen_address": "127.0.0.1:0"}, "targets": [{"url": url}]}, env={})


@pytest.fixture
async def every_status() -> AsyncIterator[Simulator]:
    """One pipeline in each combined status, with one input and one output connector."""
    pipelines = [
        PipelineSpec(
            name=status.lower(),
            status=status,
            checkpoints=1,
            tables=[RelationSpec(name="t", connectors=["in"])],
            views=[RelationSpec(name="v", connectors=["out"])],
        )
        for status in COMBINED_STATUSES
    ]
    async with Simulator(Scenario(pipelines=pipelines), clock=ManualClock()) as simulator:
        yield simulator


async def test_a_cycle_asks_only_calls_that_can_succeed(every_status: Simulator) -> None:
    """No 503 (not deployed, unavailable, initializing, suspended) is provoked, so nothing is retried either."""
    poller = new_poller(settings_for(every_status.url))
    try:
        snapshot = await poller.poll_once()
    finally:
        await poller.aclose()
    requests = {(r.endpoint, r.code): r.count for r in snapshot.targets[0].exporter.requests}
    assert all(code == "200" for _, code in requests), requests
    sim = every_status
    assert sim.requests("/v0/pipelines/initializing/checkpoint_status") == 1
    assert sim.requests("/v0/pipelines/initializing/checkpoint/sync_status") == 0
    assert sim.requests("/v0/pipelines/initializing/stats") == 0
    for status in ("running", "paused"):
        assert sim.requests(f"/v0/pipelines/{status}/*") == 3  # checkpoint_status, sync_status, stats
    for status in ("stopped", "provisioning", "stopping", "unavailable", "suspended"):
        assert sim.requests(f"/v0/pipelines/{status}/*") == 0
    by_name = {p.name: p for p in snapshot.targets[0].pipelines}
    assert by_name["initializing"].checkpoint_status is not None
    assert by_name["running"].sync_status is not None and by_name["running"].stats is not None


async def test_program_code_is_fetched_once_per_deployed_pipeline_and_version(every_status: Simulator) -> None:
    """``runtime_config`` comes only with ``selector=all``, which carries the program code too: it is asked on first
    sight of a deployed pipeline and again only when its version changes."""
    sim = every_status

    def pipeline_gets() -> int:  # GET /v0/pipelines/{name}, not the list nor the endpoints under it
        return sum(sim.requests(f"/v0/pipelines/{name}") for name in sim.world.pipelines)

    poller = new_poller(settings_for(sim.url))
    try:
        await poller.poll_once()
        deployed = {name for name, p in sim.world.pipelines.items() if p.provisioned}
        asked = {name for name in sim.world.pipelines if sim.requests(f"/v0/pipelines/{name}") == 1}
        assert asked == deployed - {"unavailable", "suspended", "standby", "coordination"}
        await poller.poll_once()
        assert pipeline_gets() == len(asked)
        sim.stop_pipeline("running")
        sim.set_runtime_config("running", {"cpu_profiler": False})  # a new version
        sim.start_pipeline("running")
        await poller.poll_once()
        assert sim.requests("/v0/pipelines/running") == 2
        assert pipeline_gets() == len(asked) + 1
    finally:
        await poller.aclose()
    assert sim.requests("/v0/pipelines") == 3


def scripted_settings(url: str, concurrency: int, **collectors: bool) -> Settings:
    return build_settings(
        {
            "web": {"listen_address": "127.0.0.1:0"},
            "targets": [{"url": url}],
            "poll": {"concurrency": concurrency},
            "collectors": {"cluster": False, "server": False, **collectors},
        },
        env={},
    )


async def test_requests_in_flight_never_exceed_poll_concurrency(feldera: ScriptedFeldera) -> None:
    in_flight = InFlight(limit=3)

    async def slow(request: Request) -> Response:
        async with in_flight.held():
            pass
        if request.raw_path.endswith("/stats"):
            return json_response({"inputs": [], "outputs": []})
        if request.raw_path.endswith("/sync_status"):
            return json_response({"success": None, "failure": None, "periodic": None})
        return json_response({"success": 1, "failure": None})

    names = [f"p{i}" for i in range(12)]
    feldera.list_pipelines(*(pipeline_json(n) for n in names))
    for n in names:
        for path in ("", "/checkpoint_status", "/stats", "/checkpoint/sync_status"):
            feldera.routes[f"/v0/pipelines/{n}{path}"] = slow
    poller = new_poller(scripted_settings(feldera.url, 3))
    try:
        snapshot = await poller.poll_once()
    finally:
        await poller.aclose()
    assert in_flight.most == 3
    assert all(p.stats is not None and p.checkpoint_status is not None for p in snapshot.targets[0].pipelines)
    assert len(feldera.requests) == 1 + 4 * len(names)  # runtime_config, stats, checkpoint_status, sync_status


async def test_after_a_501_the_rest_of_the_cycle_does_not_ask_for_sync_status(feldera: ScriptedFeldera) -> None:
    names = [f"p{i}" for i in range(6)]
    feldera.list_pipelines(*(pipeline_json(n) for n in names))
    for n in names:
        feldera.routes[f"/v0/pipelines/{n}/checkpoint/sync_status"] = feldera_error(501, "EnterpriseFeature")
    poller = new_poller(
        scripted_settings(feldera.url, 1, checkpoints=False, connectors=False, connector_counters=False)
    )
    try:
        snapshot = await poller.poll_once()
    finally:
        await poller.aclose()
    assert [p for p in feldera.paths() if p.endswith("sync_status")] == ["/v0/pipelines/p0/checkpoint/sync_status"]
    assert all(p.sync_status is None for p in snapshot.targets[0].pipelines)
