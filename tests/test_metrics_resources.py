"""From the simulator's answers to the exposition: memory pressure, storage and its limit, output stall, input
backlog, paused output connectors, the runtime status reason and permanent checkpoint errors, as one poll cycle
serves them."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from exporter.config import Settings
from exporter.simulator import ManualClock, Scenario, Simulator
from tests.conftest import metrics_after_one_cycle

SCENARIO: dict[str, Any] = {
    "platform_version": "0.340.0",  # newer than 0.337: output connectors report `paused`
    "pipelines": [
        {
            "name": "orders",
            "runtime_config": {"max_rss_mb": 8000, "resources": {"storage_mb_max": 25000}},
            "rss_mb": 7000,
            "storage_mb": 20000,
            "tables": [{"name": "t", "connectors": ["in"]}],
            "views": [{"name": "v", "connectors": ["out", {"name": "audit", "paused": True}]}],
        },
        {"name": "flaky", "status": "Unavailable"},
        {"name": "idle", "status": "Stopped"},
    ],
}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def served(sim: Simulator) -> Samples:
    """One poll cycle of an exporter with the default configuration; every sample of ``/metrics``."""
    settings = Settings.model_validate(
        {"web": {"listen_address": "127.0.0.1:0"}, "targets": [{"name": "prod", "url": sim.url}]}
    )
    body = await metrics_after_one_cycle(settings)
    return {
        (s.name, frozenset((k, v) for k, v in s.labels.items() if k != "target")): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def of(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_what_a_running_process_uses_is_served() -> None:
    clock = ManualClock(1_767_225_600.0)
    async with Simulator(Scenario.model_validate(SCENARIO), clock=clock) as sim:
        clock.advance(10)
        sim.set_output_stall("orders", "v.out")
        clock.advance(90)
        samples = await served(sim)
    orders = {"pipeline_name": "orders"}
    levels = {lvl: of(samples, "feldera_pipeline_memory_pressure", **orders, status=lvl) for lvl in ("low", "high")}
    assert levels == {"low": 0.0, "high": 1.0}  # 7000 of the circuit's 7600 MB
    assert of(samples, "feldera_pipeline_memory_pressure_episodes_total", **orders) == 1.0
    assert of(samples, "feldera_pipeline_resident_memory_bytes", **orders) == 7e9
    assert of(samples, "feldera_pipeline_storage_usage_bytes", **orders) == 2e10
    assert of(samples, "feldera_pipeline_storage_limit_bytes", **orders) == 2.5e10  # from runtime_config
    assert of(samples, "feldera_pipeline_output_stall_seconds", **orders) == 90.0
    assert of(samples, "feldera_pipeline_input_buffered_records", **orders) == 9000.0  # 90 s at 100 records/s
    assert of(samples, "feldera_pipeline_input_records_total", **orders) == 10000.0
    audit = {**orders, "endpoint": "v.audit", "view": "v", "connector": "audit"}
    out = {**orders, "endpoint": "v.out", "view": "v", "connector": "out"}
    assert (
        of(samples, "feldera_output_connector_paused", **audit),
        of(samples, "feldera_output_connector_paused", **out),
    ) == (1.0, 0.0)
    assert (
        of(samples, "feldera_pipeline_runtime_status_reason_info", pipeline_name="flaky", reason="status_unreachable")
        == 1.0
    )
    assert not [
        key for key in samples if key[0].startswith("feldera_pipeline_memory") and ("pipeline_name", "idle") in key[1]
    ]


async def test_the_open_source_edition_reports_why_no_pipeline_checkpoints() -> None:
    async with Simulator(Scenario.model_validate({**SCENARIO, "edition": "community"}), clock=ManualClock()) as sim:
        samples = await served(sim)
    reasons = {
        reason: of(samples, "feldera_pipeline_checkpoint_permanent_errors", pipeline_name="orders", reason=reason)
        for reason in ("EnterpriseFeature", "StorageRequired", "UnsupportedInputEndpoint", "Other")
    }
    assert reasons == {"EnterpriseFeature": 1.0, "StorageRequired": 0.0, "UnsupportedInputEndpoint": 0.0, "Other": 0.0}
