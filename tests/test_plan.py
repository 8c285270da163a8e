"""The poll plan: made once from the settings, it asks for what the emitted families read and nothing else."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import gc
import logging
import weakref
from typing import Any

import pytest

from exporter.app import poll_plan
from exporter.config import Settings
from exporter.landing import PROBLEMS
from exporter.metrics import ALL_SPECS
from exporter.models import Pipeline
from exporter.plan import (
    PIPELINE_REQUESTS,
    STATS,
    STATS_WITH_CONNECTOR_ERRORS,
    TARGET_REQUESTS,
    Selection,
    failures_summed_up,
    guarded,
    make_plan,
)
from exporter.snapshot import PipelineSnapshot, TargetSnapshot

PIPELINE_FIELDS = {r.field for r in PIPELINE_REQUESTS}
TARGET_FIELDS = {r.field for r in TARGET_REQUESTS}


def _settings(**raw: Any) -> Settings:
    return Settings.model_validate(raw)


def test_every_request_fills_the_snapshot_field_it_names() -> None:
    pipeline = PipelineSnapshot(pipeline=Pipeline.model_validate({"id": "1", "name": "p"}))
    answer = object()
    for request in PIPELINE_REQUESTS:
        assert getattr(request.store(pipeline, answer), request.field) is answer
        assert all(need in PIPELINE_FIELDS for need in request.needs)
    for target_request in TARGET_REQUESTS:
        assert getattr(target_request.store(TargetSnapshot(name="t"), answer), target_request.field) is answer
    snapshot_fields = {f.name for f in dataclasses.fields(PipelineSnapshot)} | {
        f.name for f in dataclasses.fields(TargetSnapshot)
    }
    assert snapshot_fields >= PIPELINE_FIELDS | TARGET_FIELDS


def test_families_read_only_planned_fields_and_every_request_has_a_reader() -> None:
    read = {field for spec in ALL_SPECS for field in spec.reads}
    assert read == PIPELINE_FIELDS | TARGET_FIELDS
    assert {problem.reads for problem in PROBLEMS} <= PIPELINE_FIELDS


def test_everything_on_plans_every_request_in_stages_after_what_each_needs() -> None:
    plan = poll_plan(_settings(collectors={"connector_errors": True}))
    assert [[r.field for r in stage] for stage in plan.stages] == [
        ["fault_tolerance", "stats"],
        ["checkpoint_status", "sync_status", "connector_details"],
    ]
    assert [r.field for r in plan.target_requests] == ["cluster", "server"]


def test_a_request_that_is_needed_is_planned_though_no_family_reads_it() -> None:
    plan = make_plan(_settings(), {"connector_details"})
    assert [[r.field for r in stage] for stage in plan.stages] == [["stats"], ["connector_details"]]
    assert plan.target_requests == ()


def test_stats_lists_connector_errors_in_the_same_request_only_when_their_families_are_read() -> None:
    assert make_plan(_settings(), {"connector_details"}).stages[0] == (STATS_WITH_CONNECTOR_ERRORS,)
    assert make_plan(_settings(), {"stats"}).stages[0] == (STATS,)


def test_nothing_read_plans_no_request() -> None:
    plan = make_plan(_settings(poll={"concurrency": 3}), set())
    assert (plan.stages, plan.target_requests, plan.fields, plan.concurrency) == ((), (), frozenset(), 3)


def test_switched_off_collectors_plan_no_request_for_their_families() -> None:
    off = {"checkpoints": False, "checkpoint_sync": False, "cluster": False, "server": False, "resources": False}
    assert poll_plan(_settings(collectors=off)).fields == {"stats"}  # connectors and their counters
    only = {**off, "connectors": False, "connector_counters": False, "resources": True}
    # memory, storage, stall from /stats; the storage limit from runtime_config
    assert poll_plan(_settings(collectors=only)).fields == {"stats", "fault_tolerance"}


@pytest.mark.parametrize(
    ("selection", "taken"),
    [
        (Selection(), ["orders", "orders-eu", "idle"]),
        (Selection(include=("orders*",)), ["orders", "orders-eu"]),
        (Selection(include=("orders*",), exclude=("*-eu",)), ["orders"]),
        (Selection(shard=0, total_shards=2), ["orders", "orders-eu"]),
        (Selection(shard=1, total_shards=2), ["idle"]),
    ],
)
def test_the_selection_takes_the_pipelines_of_its_globs_and_shard(selection: Selection, taken: list[str]) -> None:
    assert [name for name in ("orders", "orders-eu", "idle") if selection.takes(name)] == taken


async def test_a_context_copied_in_a_cycle_keeps_none_of_its_failures_and_logs_a_later_one_on_its_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found by the soak: a pooled connection's reader keeps a copy of the context of the cycle that opened it,
    which kept that cycle's failures (an exception and its traceback) alive; a failure in such a context after the
    cycle's summary was counted into a summary already logged, and lost."""

    async def fails() -> None:
        raise RuntimeError("boom")

    caplog.set_level(logging.INFO, logger="exporter")
    with failures_summed_up("t") as failures:
        copied = contextvars.copy_context()
        assert await guarded(fails(), "stats", "t", "p") is None
    summed_up = weakref.ref(failures)
    del failures
    gc.collect()
    assert summed_up() is None
    assert await asyncio.create_task(guarded(fails(), "stats", "t", "q"), context=copied) is None
    assert [r.getMessage() for r in caplog.records] == [
        "t: 1 request(s) failed this cycle (stats 1), e.g. t/p: stats failed unexpectedly: RuntimeError: boom",
        "t/q: stats failed unexpectedly: RuntimeError: boom",
    ]
