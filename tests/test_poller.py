"""The Poller against the simulator: which calls one cycle makes, and what they cost."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from exporter.config import Settings, build_settings
from exporter.models import COMBINED_STATUSES
from exporter.poller import Poller
from exporter.simulator import ManualClock, PipelineSpec, RelationSpec, Scenario, Simulator


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
    poller = Poller(settings_for(every_status.url))
    try:
        snapshot = await poller.poll_once()
    finally:
        await poller.aclose()
    requests = {(e, c): n for e, c, n in snapshot.targets[0].exporter.requests}
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


async def test_no_program_code_is_fetched(every_status: Simulator) -> None:
    poller = Poller(settings_for(every_status.url))
    try:
        await poller.poll_once()
    finally:
        await poller.aclose()
    assert every_status.requests("/v0/pipelines") == 1
    assert every_status.requests("/v0/pipelines/*", method="GET") == every_status.requests("/v0/pipelines/*/*")
