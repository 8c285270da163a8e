"""A cycle asks Feldera only what can have changed: ``runtime_config`` once per version, ``checkpoint_status`` (a
database write in the manager) and ``sync_status`` when their answer can have changed or is older than
``poll.recheck_interval``, connector errors in the one ``stats`` request where the server can."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from exporter.config import build_settings
from exporter.poller import Poller
from exporter.simulator import ManualClock, Scenario, Simulator
from exporter.snapshot import PipelineSnapshot, Snapshot
from tests.conftest import new_poller

FT = {"fault_tolerance": {"model": "exactly_once", "checkpoint_interval_secs": 60}}
ORDERS: dict[str, Any] = {
    "name": "orders",
    "status": "Running",
    "checkpoints": 1,
    "runtime_config": FT,
    "tables": [{"name": "t", "connectors": ["in"]}],
    "views": [{"name": "v", "connectors": ["out"]}],
}
PLAIN: dict[str, Any] = {"name": "plain", "status": "Running"}


@dataclass
class Setup:
    sim: Simulator
    poller: Poller
    clock: ManualClock

    async def cycle(self, seconds: float = 15.0) -> Snapshot:
        self.clock.advance(seconds)
        return await self.poller.poll_once()

    def asked(self, endpoint: str, pipeline: str = "orders") -> int:
        return self.sim.requests(f"/v0/pipelines/{pipeline}/{endpoint}")


async def _setup(scenario: dict[str, Any], **config: Any) -> AsyncIterator[Setup]:
    clock = ManualClock(1_767_225_600.0)
    async with Simulator(Scenario.model_validate(scenario), clock=clock) as sim:
        raw = {"web": {"listen_address": "127.0.0.1:0"}, "targets": [{"url": sim.url}], **config}
        poller = new_poller(build_settings(raw, env={}), clock=clock.now)
        try:
            yield Setup(sim, poller, clock)
        finally:
            await poller.aclose()


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    async for made in _setup({"pipelines": [ORDERS, PLAIN]}):
        yield made


def snap_of(snapshot: Snapshot, name: str = "orders") -> PipelineSnapshot:
    return next(p for p in snapshot.targets[0].pipelines if p.name == name)


async def test_checkpoint_status_is_asked_once_and_reused_while_nothing_can_change_it(setup: Setup) -> None:
    first = snap_of(await setup.cycle())
    assert setup.asked("checkpoint_status") == 1
    for _ in range(3):
        again = snap_of(await setup.cycle(10))
        assert again.checkpoint_status == first.checkpoint_status
        assert again.derived.checkpoint_status_checked_seconds == first.derived.checkpoint_status_checked_seconds
    assert setup.asked("checkpoint_status") == 1
    assert setup.sim.database_writes()["total"] == 2  # orders and plain, once each


async def test_a_new_checkpoint_in_storage_asks_again(setup: Setup) -> None:
    await setup.cycle()
    await setup.cycle(50)  # the first automatic checkpoint is due 60 s after the start
    assert setup.asked("checkpoint_status") == 2
    assert setup.asked("checkpoint_status", "plain") == 1


async def test_a_requested_checkpoint_that_fails_shows_once_activity_or_the_recheck_interval_says_so(
    setup: Setup,
) -> None:
    await setup.cycle()
    setup.sim.set_checkpoint_activity("orders", "in_progress")
    assert snap_of(await setup.cycle()).checkpoint_status is not None
    assert setup.asked("checkpoint_status") == 2  # in progress: asked
    setup.sim.fail_checkpoint("orders", "disk full")  # ends the activity
    failed = snap_of(await setup.cycle(1))
    assert setup.asked("checkpoint_status") == 3  # just finished: asked
    assert failed.checkpoint_status is not None and failed.checkpoint_status.failure is not None
    setup.sim.fail_checkpoint("orders", "disk full again")  # nothing else shows it
    await setup.cycle(1)
    assert setup.asked("checkpoint_status") == 3
    recheck = snap_of(await setup.cycle(300))
    assert setup.asked("checkpoint_status") == 4
    assert recheck.checkpoint_status is not None and recheck.checkpoint_status.failure is not None
    assert recheck.checkpoint_status.failure.error == "disk full again"


async def test_the_open_source_edition_is_asked_checkpoint_status_once_per_process() -> None:
    """It answers POST /checkpoint with 501 (docs/feldera-api.md, "Checkpoints"): no answer there can change within
    a process, so no recheck."""
    async for setup in _setup({"edition": "community", "pipelines": [PLAIN]}):
        await setup.cycle()
        for _ in range(3):
            assert snap_of(await setup.cycle(600), "plain").checkpoint_status is not None
        assert setup.asked("checkpoint_status", "plain") == 1
        setup.sim.restart_pipeline("plain")
        await setup.cycle()
        assert setup.asked("checkpoint_status", "plain") == 2


async def test_a_restart_or_a_new_deployment_asks_again(setup: Setup) -> None:
    await setup.cycle()
    setup.sim.restart_pipeline("orders")
    await setup.cycle()
    assert setup.asked("checkpoint_status") == 2
    setup.sim.stop_pipeline("orders")
    assert snap_of(await setup.cycle()).checkpoint_status is None  # nothing reused while it cannot answer
    setup.sim.start_pipeline("orders")
    await setup.cycle(1)
    assert setup.asked("checkpoint_status") == 3


async def test_a_pipeline_without_stats_is_asked_again_only_when_its_runtime_status_changes() -> None:
    initializing = {**ORDERS, "name": "init", "status": "Initializing"}
    async for setup in _setup({"pipelines": [initializing]}):
        await setup.cycle()
        await setup.cycle()
        assert setup.asked("checkpoint_status", "init") == 1  # 200 while Initializing; /stats answers 503
        setup.sim.set_status("init", "Running")
        await setup.cycle()
        assert setup.asked("checkpoint_status", "init") == 2


async def test_a_failed_request_clears_the_reused_answer(setup: Setup) -> None:
    await setup.cycle()
    setup.sim.set_checkpoint_activity("orders", "in_progress")
    setup.sim.add_fault(kind="status", path="/v0/pipelines/orders/checkpoint_status", status=500)
    assert snap_of(await setup.cycle()).checkpoint_status is None


async def test_runtime_config_is_asked_once_per_version_and_gives_the_checkpoint_interval(setup: Setup) -> None:
    for _ in range(3):
        snap = snap_of(await setup.cycle())
    assert setup.sim.requests("/v0/pipelines/orders") == 1
    assert snap.fault_tolerance is not None
    assert (snap.fault_tolerance.model, snap.fault_tolerance.checkpoint_interval_seconds) == ("exactly_once", 60.0)
    plain = snap_of(await setup.cycle(), "plain")
    assert plain.fault_tolerance is not None and plain.fault_tolerance.checkpoint_interval_seconds is None
    setup.sim.stop_pipeline("orders")
    setup.sim.clear_storage("orders")
    setup.sim.set_runtime_config("orders", {"fault_tolerance": {"checkpoint_interval_secs": 10}})
    setup.sim.start_pipeline("orders")
    snap = snap_of(await setup.cycle())
    assert setup.sim.requests("/v0/pipelines/orders") == 2
    assert snap.fault_tolerance is not None and snap.fault_tolerance.checkpoint_interval_seconds == 10.0


async def test_a_failing_runtime_config_is_asked_again_after_a_doubling_pause_of_at_most_the_recheck_interval(
    setup: Setup,
) -> None:
    """The n-th failure in a row skips 2^(n-1) - 1 cycles, at most ``poll.recheck_interval`` (5m: 20 cycles)."""
    setup.sim.add_fault(kind="status", path="/v0/pipelines/orders", status=500)
    asked_in = []
    for cycle in range(1, 61):
        assert snap_of(await setup.cycle()).fault_tolerance is None
        if setup.sim.requests("/v0/pipelines/orders") > len(asked_in):
            asked_in.append(cycle)
    assert asked_in == [1, 2, 4, 8, 16, 32, 52]
    setup.sim.stop_pipeline("orders")
    setup.sim.clear_storage("orders")
    setup.sim.set_runtime_config("orders", {"fault_tolerance": {"checkpoint_interval_secs": 10}})
    setup.sim.start_pipeline("orders")
    await setup.cycle()
    assert setup.sim.requests("/v0/pipelines/orders") == len(asked_in) + 1  # a new version is asked at once,
    await setup.cycle()
    assert setup.sim.requests("/v0/pipelines/orders") == len(asked_in) + 2  # its first failure pauses no cycle
    for _ in range(2):
        await setup.cycle()
    assert setup.sim.requests("/v0/pipelines/orders") == len(asked_in) + 3
    setup.sim.clear_faults()
    for _ in range(20):
        snap = snap_of(await setup.cycle())
    assert setup.sim.requests("/v0/pipelines/orders") == len(asked_in) + 4  # answered: asked no more
    assert snap.fault_tolerance is not None and snap.fault_tolerance.checkpoint_interval_seconds == 10.0
    assert setup.sim.requests("/v0/pipelines/plain") == 1


async def test_sync_status_is_never_asked_of_the_open_source_edition() -> None:
    async for setup in _setup({"edition": "community", "pipelines": [{**ORDERS, "runtime_config": {}}]}):
        await setup.cycle()  # the edition is not known before the first /v0/config
        await setup.cycle()
        await setup.cycle(600)
        assert setup.asked("checkpoint/sync_status") == 1


async def test_sync_status_is_reused_unless_the_pipeline_syncs_periodically() -> None:
    syncing = {**ORDERS, "name": "syncing"}
    syncing["runtime_config"] = {
        **FT,
        "storage": {"backend": {"name": "file", "config": {"sync": {"bucket": "b", "push_interval": 60}}}},
    }
    async for setup in _setup({"pipelines": [ORDERS, syncing]}):
        for _ in range(4):
            await setup.cycle()
        assert setup.asked("checkpoint/sync_status") == 1
        assert setup.asked("checkpoint/sync_status", "syncing") == 4
        await setup.cycle(300)
        assert setup.asked("checkpoint/sync_status") == 2


async def test_connector_errors_come_with_the_one_stats_request_where_the_server_lists_them() -> None:
    async for setup in _setup({"pipelines": [ORDERS]}, collectors={"connector_errors": True}):
        setup.sim.add_connector_errors("orders", "t.in", "parse", 2, "bad row")
        snap = snap_of(await setup.cycle())
        assert set(snap.connector_details) == {"t.in", "v.out"}
        assert setup.sim.requests("/v0/pipelines/orders/*/connectors/*") == 0
        assert setup.asked("stats") == 1


async def test_servers_before_0_292_get_the_per_connector_requests() -> None:
    old = {"platform_version": "0.291.0", "pipelines": [ORDERS]}
    async for setup in _setup(old, collectors={"connector_errors": True}):
        snap = snap_of(await setup.cycle())
        assert set(snap.connector_details) == {"t.in", "v.out"}
        assert setup.sim.requests("/v0/pipelines/orders/*/connectors/*") == 2


async def test_a_cluster_monitor_without_events_yet_leaves_the_target_up_with_no_cluster_series() -> None:
    async for setup in _setup({"cluster": {"first_event_after": 20}, "pipelines": [PLAIN]}):
        snapshot = await setup.cycle(5)
        target = snapshot.targets[0]
        assert target.up and target.cluster is not None and not target.cluster.events
        assert target.cluster.api is None
        checked = (await setup.cycle(15)).targets[0].cluster
        assert checked is not None and checked.api is not None
        assert checked.api.checked_at == setup.clock.now()  # stored at this check, every 10 minutes after
