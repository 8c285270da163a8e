"""Scheduled checkpoint sync against the simulator over real HTTP, driven by fake clocks (no sleeping)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import Exporter
from exporter.config import Settings
from exporter.sidecar.sync import CheckpointSyncScheduler
from exporter.simulator import ManualClock, Scenario, Simulator
from tests.conftest import eventually

START = 1_767_225_600.0
EVERY = 600.0
SYNC_PATH = "/v0/pipelines/*/checkpoint/sync"


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


Harness = tuple[Simulator, Exporter, FakeClock]
Start = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def harness() -> AsyncIterator[Start]:
    started: list[tuple[Simulator, Exporter]] = []

    async def start(
        pipelines: list[dict[str, Any]], *, schedules: list[dict[str, Any]] | None = None, **scenario: Any
    ) -> Harness:
        sim = Simulator(Scenario.model_validate({"pipelines": pipelines, **scenario}), clock=ManualClock(START))
        await sim.start()
        settings = Settings.model_validate(
            {
                "web": {"listen_address": "127.0.0.1:0"},
                "targets": [{"name": "default", "url": sim.url, "timeout": 5}],
                "checkpoint_sync": {"schedules": schedules or [{"pipelines": "*", "every": EVERY}]},
            }
        )
        clock = FakeClock()
        exporter = Exporter(settings, clock=clock)
        await exporter.start(poll_loop=False)
        started.append((sim, exporter))
        return sim, exporter, clock

    yield start
    for sim, exporter in started:
        await exporter.stop()
        await sim.stop()


def scheduler(exporter: Exporter) -> CheckpointSyncScheduler:
    assert exporter.sidecar.scheduler is not None
    return exporter.sidecar.scheduler


async def cycle(exporter: Exporter, clock: FakeClock) -> None:
    """One poll (learn pipeline status) and one scheduler step at the fake clock's time."""
    await exporter.poll_once()
    await scheduler(exporter).tick(clock())
    await exporter.poll_once()


async def metrics(exporter: Exporter) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{exporter.url}/metrics")
    response.raise_for_status()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    wanted = {"target": "default", **labels}
    for (sample, sample_labels), number in samples.items():
        if sample == name and wanted.items() <= dict(sample_labels).items():
            return number
    return None


REQ = "feldera_checkpoint_sync_schedule_requests_total"
FAIL = "feldera_checkpoint_sync_schedule_failures_total"
CONFIRMED = "feldera_checkpoint_sync_schedule_last_confirmed_timestamp_seconds"
REQUESTED = "feldera_checkpoint_sync_schedule_last_request_timestamp_seconds"
AWAITING = "feldera_checkpoint_sync_schedule_awaiting_confirmation"
LAST_FAILURE = "feldera_checkpoint_sync_schedule_last_failure_timestamp_seconds"


async def test_accepted_sync_is_confirmed_when_sync_status_reports_its_uuid(harness: Start) -> None:
    sim, exporter, clock = await harness([{"name": "orders", "checkpoints": 2, "sync": "pending"}])

    await cycle(exporter, clock)
    before = await metrics(exporter)
    clock.now += 30
    sim.succeed_sync("orders")
    await cycle(exporter, clock)
    after = await metrics(exporter)

    assert value(before, REQ, pipeline_name="orders", result="accepted") == 1
    assert value(before, REQUESTED, pipeline_name="orders") == START
    assert value(before, AWAITING, pipeline_name="orders") == 1
    assert value(before, CONFIRMED, pipeline_name="orders") is None
    assert value(after, AWAITING, pipeline_name="orders") == 0
    assert value(after, CONFIRMED, pipeline_name="orders") == START + 30
    assert value(after, "feldera_checkpoint_sync_schedule_interval_seconds", pipeline_name="orders") == EVERY
    assert sim.requests(SYNC_PATH, "POST") == 1


async def test_sync_failure_for_the_requested_uuid_counts_as_failed(harness: Start) -> None:
    _sim, exporter, clock = await harness([{"name": "orders", "checkpoints": 1, "sync": "failure"}])

    await cycle(exporter, clock)
    clock.now += 15
    await cycle(exporter, clock)
    samples = await metrics(exporter)

    assert value(samples, FAIL, pipeline_name="orders", reason="failed") == 1
    assert value(samples, LAST_FAILURE, pipeline_name="orders", reason="failed") == START  # when it was requested
    assert value(samples, LAST_FAILURE, pipeline_name="orders", reason="rejected") is None
    assert value(samples, CONFIRMED, pipeline_name="orders") is None
    assert value(samples, AWAITING, pipeline_name="orders") == 0


async def test_success_of_another_uuid_does_not_confirm_our_sync(harness: Start) -> None:
    sim, exporter, clock = await harness([{"name": "orders", "checkpoints": 1, "sync": "pending"}])

    await cycle(exporter, clock)
    sim.succeed_sync("orders", checkpoint_uuid="00000000-0000-0000-0000-000000000000")
    clock.now += 15
    await cycle(exporter, clock)

    assert value(await metrics(exporter), AWAITING, pipeline_name="orders") == 1


async def test_pipeline_restart_before_confirmation_marks_the_sync_lost(harness: Start) -> None:
    sim, exporter, clock = await harness([{"name": "orders", "checkpoints": 1, "sync": "pending"}])

    await cycle(exporter, clock)
    sim.restart_pipeline("orders")
    clock.now += 15
    await cycle(exporter, clock)
    samples = await metrics(exporter)

    assert value(samples, FAIL, pipeline_name="orders", reason="lost") == 1
    assert value(samples, LAST_FAILURE, pipeline_name="orders", reason="lost") == START
    assert value(samples, AWAITING, pipeline_name="orders") == 0


async def test_pipeline_stopped_before_confirmation_marks_the_sync_lost(harness: Start) -> None:
    sim, exporter, clock = await harness([{"name": "orders", "checkpoints": 1, "sync": "pending"}])

    await cycle(exporter, clock)
    sim.stop_pipeline("orders")
    clock.now += 15
    await cycle(exporter, clock)

    assert value(await metrics(exporter), FAIL, pipeline_name="orders", reason="lost") == 1


async def test_unconfirmed_sync_is_given_up_at_the_next_slot(harness: Start) -> None:
    sim, exporter, clock = await harness([{"name": "orders", "checkpoints": 1, "sync": "pending"}])

    await cycle(exporter, clock)
    clock.now += EVERY
    await cycle(exporter, clock)
    samples = await metrics(exporter)

    assert value(samples, FAIL, pipeline_name="orders", reason="unconfirmed") == 1
    assert value(samples, LAST_FAILURE, pipeline_name="orders", reason="unconfirmed") == START
    assert value(samples, REQ, pipeline_name="orders", result="accepted") == 2
    assert sim.requests(SYNC_PATH, "POST") == 2


async def test_a_sync_the_server_lists_as_running_is_not_given_up_at_the_next_slot(harness: Start) -> None:
    pipeline = {"name": "orders", "checkpoints": 1, "sync": "pending"}
    sim, exporter, clock = await harness([pipeline], platform_version="0.369.0")  # sync_status lists `running`

    await cycle(exporter, clock)
    clock.now += EVERY
    await cycle(exporter, clock)
    running = await metrics(exporter)
    sim.succeed_sync("orders")
    clock.now += 15
    await cycle(exporter, clock)
    done = await metrics(exporter)

    assert value(running, FAIL, pipeline_name="orders", reason="unconfirmed") == 0
    assert value(running, AWAITING, pipeline_name="orders") == 1
    assert sim.requests(SYNC_PATH, "POST") == 1  # the slot is skipped while the sync runs
    assert value(done, CONFIRMED, pipeline_name="orders") == START + EVERY + 15
    assert value(done, FAIL, pipeline_name="orders", reason="unconfirmed") == 0


async def test_a_multi_host_pipeline_is_told_apart_from_no_checkpoints_and_left_alone_for_an_hour(
    harness: Start,
) -> None:
    wide = {"name": "wide", "checkpoints": 1, "runtime_config": {"hosts": 2}}
    sim, exporter, clock = await harness([wide, {"name": "empty", "checkpoints": 0}])

    await cycle(exporter, clock)
    clock.now += EVERY
    await cycle(exporter, clock)
    samples = await metrics(exporter)
    clock.now += 3600
    await cycle(exporter, clock)

    assert value(samples, REQ, pipeline_name="wide", result="multihost_unsupported") == 1
    assert value(samples, REQ, pipeline_name="wide", result="no_checkpoints") == 0
    assert value(samples, REQ, pipeline_name="empty", result="no_checkpoints") == 2
    assert sum(value(samples, FAIL, pipeline_name="wide", reason=r) or 0 for r in ("rejected", "failed")) == 0
    assert sim.requests("/v0/pipelines/wide/checkpoint/sync", "POST") == 2  # not in the next slot; after an hour


async def test_stopped_and_paused_pipelines_are_not_synced(harness: Start) -> None:
    sim, exporter, clock = await harness(
        [
            {"name": "stopped", "status": "Stopped", "checkpoints": 1},
            {"name": "paused", "status": "Paused", "checkpoints": 1},
            {"name": "running", "checkpoints": 1},
        ]
    )

    await cycle(exporter, clock)
    samples = await metrics(exporter)

    assert sim.requests(SYNC_PATH, "POST") == 1
    assert sim.requests("/v0/pipelines/running/checkpoint/sync", "POST") == 1
    assert value(samples, REQ, pipeline_name="stopped", result="accepted") == 0
    assert value(samples, REQ, pipeline_name="paused", result="accepted") == 0


async def test_no_sync_is_requested_while_the_pipeline_list_fails(harness: Start) -> None:
    """A Feldera outage counts no failed syncs: the scheduler does not know the pipeline runs."""
    sim, exporter, clock = await harness([{"name": "orders", "checkpoints": 1}])
    await cycle(exporter, clock)
    sim.add_fault(kind="status", status=503, path="/v0/pipelines", method="GET")

    clock.now += EVERY
    await cycle(exporter, clock)
    during = sim.requests(SYNC_PATH, "POST")
    sim.clear_faults()
    clock.now += EVERY
    await cycle(exporter, clock)

    assert during == 1
    assert sim.requests(SYNC_PATH, "POST") == 2  # the list shows it running again: its next slot goes out
    assert value(await metrics(exporter), FAIL, pipeline_name="orders", reason="rejected") == 0


async def test_pipeline_started_later_is_synced_at_its_next_slot(harness: Start) -> None:
    sim, exporter, clock = await harness([{"name": "orders", "status": "Stopped", "checkpoints": 1}])

    await cycle(exporter, clock)
    sim.start_pipeline("orders")
    clock.now += 60
    await cycle(exporter, clock)

    assert sim.requests(SYNC_PATH, "POST") == 1


async def test_schedule_is_deterministic_and_skips_missed_slots(harness: Start) -> None:
    sim, exporter, clock = await harness([{"name": "orders", "checkpoints": 1}])
    posts = []

    for offset in (0, EVERY / 2, EVERY - 1, EVERY, EVERY + 1, 4.5 * EVERY, 4.9 * EVERY, 5 * EVERY):
        clock.now = START + offset
        await cycle(exporter, clock)
        posts.append(sim.requests(SYNC_PATH, "POST"))

    assert posts == [1, 1, 1, 2, 2, 3, 3, 4]


async def test_never_two_requests_in_flight_for_one_pipeline(harness: Start) -> None:
    sim, exporter, clock = await harness([{"name": "orders", "checkpoints": 1}])
    await exporter.poll_once()
    sim.add_fault(kind="hang", path="/v0/pipelines/orders/checkpoint/sync", method="POST")

    first = asyncio.create_task(scheduler(exporter).tick(clock()))
    await eventually(lambda: sim.requests(SYNC_PATH, "POST") == 1, "the first sync request")
    clock.now += 10 * EVERY
    await scheduler(exporter).tick(clock())
    posts_while_hanging = sim.requests(SYNC_PATH, "POST")
    sim.clear_faults()
    await first

    assert posts_while_hanging == 1


@pytest.mark.parametrize(
    ("scenario", "pipeline", "requested", "result"),
    [
        ({}, {"name": "orders", "checkpoints": 0}, 0, "no_checkpoints"),
        ({"sync_api": "seed"}, {"name": "orders", "checkpoints": 0}, 0, "no_checkpoints"),
        ({"sync_api": "seed"}, {"name": "orders", "checkpoints": 3}, 1, "synced"),
    ],
)
async def test_every_sync_answer_is_counted_by_result(
    harness: Start, scenario: dict[str, str], pipeline: dict[str, Any], requested: int, result: str
) -> None:
    sim, exporter, clock = await harness([pipeline], **scenario)
    for _ in range(requested):  # the seed API syncs the newest checkpoint requested with POST /checkpoint
        sim.checkpoint("orders")

    await cycle(exporter, clock)
    samples = await metrics(exporter)

    assert value(samples, REQ, pipeline_name="orders", result=result) == 1
    assert sum(value(samples, FAIL, pipeline_name="orders", reason=r) or 0 for r in ("rejected", "failed")) == 0
    expected_confirmed = START if result == "synced" else None
    assert value(samples, CONFIRMED, pipeline_name="orders") == expected_confirmed


async def test_503_answer_is_counted_as_unavailable(harness: Start) -> None:
    sim, exporter, clock = await harness([{"name": "orders", "checkpoints": 1}])
    await exporter.poll_once()
    sim.stop_pipeline("orders")

    await scheduler(exporter).tick(clock())
    await exporter.poll_once()

    assert value(await metrics(exporter), REQ, pipeline_name="orders", result="unavailable") == 1


async def test_deleted_pipeline_answer_is_counted_as_unknown_pipeline(harness: Start) -> None:
    sim, exporter, clock = await harness([{"name": "orders", "checkpoints": 1}])
    listed = (await exporter.poll_once()).targets[0].pipelines
    sim.delete_pipeline("orders")

    await scheduler(exporter).tick(clock())
    report = scheduler(exporter).observe("default", exporter.poller.targets[0].client, listed, clock())
    gone = scheduler(exporter).observe("default", exporter.poller.targets[0].client, (), clock())

    assert dict(report.pipelines[0].requests)["unknown_pipeline"] == 1
    assert sum(dict(report.pipelines[0].failures).values()) == 0
    assert gone.pipelines == ()


async def test_server_error_counts_as_rejected_failure(harness: Start) -> None:
    sim, exporter, clock = await harness([{"name": "orders", "checkpoints": 1}])
    sim.add_fault(kind="status", status=500, path="/v0/pipelines/orders/checkpoint/sync", method="POST")

    await cycle(exporter, clock)
    samples = await metrics(exporter)

    assert value(samples, REQ, pipeline_name="orders", result="error") == 1
    assert value(samples, FAIL, pipeline_name="orders", reason="rejected") == 1
    assert value(samples, LAST_FAILURE, pipeline_name="orders", reason="rejected") == START


async def test_enterprise_only_answer_pauses_the_target_and_logs_once(
    harness: Start, caplog: pytest.LogCaptureFixture
) -> None:
    sim, exporter, clock = await harness(
        [{"name": "a", "checkpoints": 1}, {"name": "b", "checkpoints": 1}], edition="community"
    )

    with caplog.at_level(logging.WARNING, logger="exporter.sidecar.sync"):
        await cycle(exporter, clock)
        paused = await metrics(exporter)
        for _ in range(3):
            clock.now += EVERY
            await cycle(exporter, clock)
    posts_during_backoff = sim.requests(SYNC_PATH, "POST")
    clock.now = START + 3600 + EVERY
    await cycle(exporter, clock)

    assert value(paused, "feldera_checkpoint_sync_schedule_enterprise_only") == 1
    assert value(paused, REQ, pipeline_name="a", result="enterprise_only") == 1
    assert posts_during_backoff == 2
    assert sim.requests(SYNC_PATH, "POST") == 4
    assert len([r for r in caplog.records if "501" in r.getMessage()]) == 1


async def test_schedule_only_matches_its_glob_and_target(harness: Start) -> None:
    sim, exporter, clock = await harness(
        [{"name": "orders-eu", "checkpoints": 1}, {"name": "billing", "checkpoints": 1}],
        schedules=[{"pipelines": "orders-*", "every": "10m", "target": "default"}],
    )

    await cycle(exporter, clock)
    samples = await metrics(exporter)

    assert sim.requests(SYNC_PATH, "POST") == 1
    assert value(samples, REQ, pipeline_name="billing", result="accepted") is None


async def test_without_schedules_the_exporter_never_writes() -> None:
    sim = Simulator(Scenario.model_validate({"pipelines": [{"name": "orders", "checkpoints": 1}]}))
    async with sim:
        settings = Settings.model_validate(
            {"web": {"listen_address": "127.0.0.1:0"}, "targets": [{"name": "default", "url": sim.url}]}
        )
        exporter = Exporter(settings)
        await exporter.start(poll_loop=False)
        try:
            await exporter.poll_once()
        finally:
            await exporter.stop()

    assert exporter.sidecar.scheduler is None
    assert sim.requests("*", "POST") == 0
