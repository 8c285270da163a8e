"""The simulator reports what a pipeline process uses as Feldera does: memory pressure against the circuit's limit
with its hysteresis and episode count, output stalls, storage, paused output connectors, suspend errors, the runtime
status reason, and the manager's own ``/v0/metrics`` exposition."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from contract.openapi_check import checked_client
from prometheus_client.parser import text_string_to_metric_families

from exporter.simulator import ManualClock, Scenario, Simulator
from exporter.simulator.metrics import rust_float

LIMITED: dict[str, Any] = {
    "name": "orders",
    "status": "Running",
    "runtime_config": {"max_rss_mb": 8000},  # the circuit gets 8000 - 5 % = 7600 MB
    "rss_mb": 3000,
    "tables": [{"name": "t", "connectors": ["in"]}],
    "views": [{"name": "v", "connectors": ["out", "audit"]}],
}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_767_225_600.0)


@contextlib.asynccontextmanager
async def serve(
    clock: ManualClock, *pipelines: dict[str, Any], **settings: Any
) -> AsyncIterator[tuple[Simulator, httpx.AsyncClient]]:
    scenario = Scenario.model_validate({"pipelines": list(pipelines), **settings})
    async with (
        Simulator(scenario, clock=clock) as sim,
        checked_client(sim.url) as http,
    ):
        yield sim, http


@pytest.fixture
async def served(clock: ManualClock) -> AsyncIterator[tuple[Simulator, httpx.AsyncClient]]:
    pipelines = (
        LIMITED,
        {"name": "unlimited", "status": "Running", "rss_mb": 100_000},
        {"name": "idle", "status": "Stopped"},
    )
    async with serve(clock, *pipelines, platform_version="0.340.0") as both:
        yield both


@pytest.fixture
def sim(served: tuple[Simulator, httpx.AsyncClient]) -> Simulator:
    return served[0]


@pytest.fixture
def client(served: tuple[Simulator, httpx.AsyncClient]) -> httpx.AsyncClient:
    return served[1]


async def global_metrics(client: httpx.AsyncClient, name: str = "orders") -> dict[str, Any]:
    metrics: dict[str, Any] = (await client.get(f"/v0/pipelines/{name}/stats")).json()["global_metrics"]
    return metrics


# ---- memory --------------------------------------------------------------------------------------------------


async def test_memory_pressure_follows_the_resident_set_against_the_circuit_limit(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    assert (await global_metrics(client))["memory_pressure"] == "low"
    levels = [sim.set_memory("orders", mb) for mb in (6460, 6840, 7220)]  # exactly 85, 90 and 95 % of 7600 MB
    assert levels == ["moderate", "high", "critical"]
    stats = await global_metrics(client)
    assert (stats["memory_pressure"], stats["rss_bytes"], stats["memory_pressure_epoch"]) == (
        "critical",
        7_220_000_000,
        1,
    )
    assert (await global_metrics(client, "unlimited"))["memory_pressure"] == "low"  # no limit: never pressure


async def test_high_and_critical_are_held_until_the_resident_set_falls_two_levels(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    assert [sim.set_memory("orders", mb) for mb in (6900, 6500, 6000)] == ["high", "high", "low"]
    assert [sim.set_memory("orders", mb) for mb in (7300, 6900, 6500)] == ["critical", "critical", "moderate"]
    assert (await global_metrics(client))["memory_pressure_epoch"] == 2  # each rise to high or critical is one


async def test_a_new_process_starts_without_pressure_at_its_baseline(sim: Simulator, client: httpx.AsyncClient) -> None:
    sim.set_memory("orders", 7300)
    sim.restart_pipeline("orders")
    stats = await global_metrics(client)
    assert (stats["memory_pressure"], stats["memory_pressure_epoch"], stats["rss_bytes"]) == ("low", 0, 3_000_000_000)


async def test_a_process_that_starts_above_the_limit_is_an_episode(clock: ManualClock) -> None:
    async with serve(clock, {**LIMITED, "rss_mb": 7000}) as (_, http):
        stats = await global_metrics(http)
        assert (stats["memory_pressure"], stats["memory_pressure_epoch"]) == ("high", 1)


async def test_memory_limit_falls_back_to_the_pod_limit_and_an_explicit_datafusion_pool(clock: ManualClock) -> None:
    pod = {**LIMITED, "runtime_config": {"resources": {"memory_mb_max": 10_000}, "datafusion_memory_mb": 1000}}
    async with serve(clock, pod) as (sim, _):
        assert sim.pipeline("orders").max_rss_bytes == 9_000_000_000
        assert sim.set_memory("orders", 8100) == "high"


# ---- storage and output stalls -----------------------------------------------------------------------------------


async def test_storage_is_the_checkpoints_unless_set(clock: ManualClock) -> None:
    async with serve(clock, {**LIMITED, "checkpoints": 2}) as (sim, http):
        stored = sum(c["size"] for c in sim.pipeline("orders").stored_checkpoints)
        assert (await global_metrics(http))["storage_bytes"] == stored > 0
        sim.set_storage("orders", 20_000)
        assert (await global_metrics(http))["storage_bytes"] == 20_000_000_000
        sim.set_storage("orders", None)
        assert (await global_metrics(http))["storage_bytes"] == stored


async def test_an_output_stall_stops_outputs_fills_input_buffers_and_is_timed(
    sim: Simulator, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    clock.advance(10)
    sim.set_output_stall("orders", "v.out")
    clock.advance(30)
    stats = (await client.get("/v0/pipelines/orders/stats")).json()
    assert stats["global_metrics"]["output_stall_msecs"] == 30_000
    assert stats["global_metrics"]["buffered_input_records"] == 3000  # 30 s at 100 records/s, not processed
    assert stats["global_metrics"]["total_input_records"] == 4000
    outputs = {o["endpoint_name"]: o["metrics"] for o in stats["outputs"]}
    assert outputs["v.out"]["queued_records"] == 1_000_000  # the connector with the full buffer
    assert outputs["v.audit"]["queued_records"] == 0
    assert {m["transmitted_records"] for m in outputs.values()} == {1000}  # nothing sent since the stall began
    sim.set_output_stall("orders", None)
    clock.advance(5)
    stats = (await client.get("/v0/pipelines/orders/stats")).json()
    assert (stats["global_metrics"]["output_stall_msecs"], stats["global_metrics"]["buffered_input_records"]) == (
        0,
        100,
    )


async def test_only_an_output_connector_can_stall_a_pipeline(sim: Simulator) -> None:
    with pytest.raises(ValueError, match="input connector"):
        sim.set_output_stall("orders", "t.in")


# ---- paused output connectors --------------------------------------------------------------------------------


async def test_an_output_connector_paused_over_http_reports_it_and_sends_nothing(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    assert (await client.post("/v0/pipelines/orders/views/v/connectors/audit/pause")).status_code == 200
    clock.advance(10)
    outputs = {o["endpoint_name"]: o for o in (await client.get("/v0/pipelines/orders/stats")).json()["outputs"]}
    assert (outputs["v.audit"]["paused"], outputs["v.out"]["paused"]) == (True, False)
    assert outputs["v.audit"]["metrics"]["transmitted_records"] == 0
    assert outputs["v.out"]["metrics"]["transmitted_records"] == 1000
    assert (await client.post("/v0/pipelines/orders/views/v/connectors/audit/start")).status_code == 200
    one = (await client.get("/v0/pipelines/orders/views/v/connectors/audit/stats")).json()
    assert one["paused"] is False
    missing = await client.post("/v0/pipelines/orders/views/v/connectors/gone/pause")
    assert (missing.status_code, missing.json()["error_code"]) == (404, "UnknownOutputEndpoint")


async def test_servers_up_to_0_337_have_no_paused_output_connectors(clock: ManualClock) -> None:
    async with serve(clock, LIMITED, platform_version="0.337.0") as (_, http):
        outputs = (await http.get("/v0/pipelines/orders/stats")).json()["outputs"]
        assert all("paused" not in o for o in outputs)
        assert (await http.post("/v0/pipelines/orders/views/v/connectors/audit/pause")).status_code == 404
        assert (await http.post("/v0/pipelines/orders/tables/t/connectors/in/pause")).status_code == 200


# ---- suspend errors ------------------------------------------------------------------------------------------


async def test_the_open_source_edition_lists_enterprise_feature_and_has_no_checkpoint_to_fail(
    clock: ManualClock,
) -> None:
    """Every open-source pipeline reports ``EnterpriseFeature``, but none takes or is asked for a checkpoint there:
    fault tolerance is refused (the manager's ``validate_runtime_config``, the process's ``start_controller``) and
    so is ``POST /checkpoint`` (501), so nothing fails (docs/feldera-api.md, "Fault tolerance in runtime_config")."""
    ft = {"fault_tolerance": {"model": "exactly_once", "checkpoint_interval_secs": 10}}
    async with serve(clock, LIMITED, edition="community") as (sim, http):
        stats = (await http.get("/v0/pipelines/orders/stats")).json()
        assert stats["suspend_error"] == {"Permanent": ["EnterpriseFeature"]}
        assert stats["permanent_checkpoint_errors"] == ["EnterpriseFeature"]
        clock.advance(35)
        assert sim.state()["orders"]["automatic_checkpoint_failures"] == 0
        sim.stop_pipeline("orders")
        sim.clear_storage("orders")
        with pytest.raises(ValueError, match="enterprise feature: fault tolerance"):
            sim.set_runtime_config("orders", ft)
        sim.start_pipeline("orders")
        for refused in (sim.checkpoint, sim.fail_checkpoint):
            with pytest.raises(ValueError, match="EnterpriseFeature"):
                refused("orders")
        assert (await http.get("/v0/pipelines/orders/checkpoint_status")).json() == {"success": None, "failure": None}
    with pytest.raises(ValueError, match="enterprise feature: fault tolerance"):
        Scenario.model_validate({"edition": "community", "pipelines": [{"name": "ft", "runtime_config": ft}]})
    async with serve(clock, {**LIMITED, "runtime_config": ft}) as (sim, _):
        with pytest.raises(ValueError, match="pipeline 'orders': InvalidRuntimeConfig"):
            sim.set_edition("community")


async def test_suspend_error_lists_permanent_reasons_before_temporary_ones(clock: ManualClock) -> None:
    no_storage = {**LIMITED, "runtime_config": {"storage": None}}
    async with serve(clock, no_storage, {**LIMITED, "name": "replaying", "status": "Replaying"}) as (sim, http):
        sim.set_permanent_checkpoint_errors("orders", [{"UnsupportedInputEndpoint": "t.in"}])
        stats = (await http.get("/v0/pipelines/orders/stats")).json()
        assert stats["suspend_error"] == {"Permanent": ["StorageRequired", {"UnsupportedInputEndpoint": "t.in"}]}
        assert (await http.get("/v0/pipelines/replaying/stats")).json()["suspend_error"] == {"Temporary": ["Replaying"]}
        sim.set_status("replaying", "Running")
        sim.set_connector_state("replaying", "t.in", barrier=True)
        stats = (await http.get("/v0/pipelines/replaying/stats")).json()
        assert stats["suspend_error"] == {"Temporary": [{"InputEndpointBarrier": "t.in"}]}


# ---- runtime status details ----------------------------------------------------------------------------------


async def test_runtime_status_details_say_why_per_status(clock: ManualClock) -> None:
    pipelines = [{"name": s.lower(), "status": s} for s in ("Running", "Initializing", "Unavailable", "Suspended")]
    async with serve(clock, *pipelines, {"name": "idle", "status": "Stopped"}) as (sim, http):
        listed = (await http.get("/v0/pipelines", params={"selector": "status"})).json()
        details = {p["name"]: p["deployment_runtime_status_details"] for p in listed}
        assert details["running"] == {"connector_stats": {"num_errors": 0}}
        assert details["initializing"] == {"reason": "initializing set by the runner"}
        assert details["unavailable"]["reason"].startswith("Pipeline status endpoint could not be reached: ")
        assert details["suspended"] == {"reason": ""}
        assert details["idle"] is None
        sim.set_runtime_status_reason("initializing", "downloading checkpoint from object storage")
        one = (await http.get("/v0/pipelines/initializing", params={"selector": "status"})).json()
        assert one["deployment_runtime_status_details"] == {"reason": "downloading checkpoint from object storage"}
        sim.set_status("initializing", "Running")  # the reason was the Initializing status's
        one = (await http.get("/v0/pipelines/initializing", params={"selector": "status"})).json()
        assert one["deployment_runtime_status_details"] == {"connector_stats": {"num_errors": 0}}


# ---- the manager's /v0/metrics -------------------------------------------------------------------------------


async def test_manager_metrics_concatenate_the_running_and_paused_pipelines_expositions(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.set_status("unlimited", "Paused")
    sim.create_pipeline({"name": "booting", "status": "Initializing"})
    sim.set_memory("orders", 6900)
    response = await client.get("/v0/metrics")
    assert (response.status_code, response.headers["content-type"]) == (200, "text/plain")
    text = response.text
    assert text.count("# TYPE memory_pressure gauge\n") == 2  # once per pipeline: HELP and TYPE repeat
    assert "\n\n# HELP process_start_time_seconds" in text  # a blank line between families
    orders = sim.pipeline("orders")
    labels = f'pipeline="pipeline-{orders.id}",pipeline_name="orders"'
    assert f"memory_pressure{{{labels}}} 2\n" in text
    assert f"process_resident_memory_bytes{{{labels}}} 6900000000\n" in text
    assert f"max_rss_bytes{{{labels}}} 7600000000\n" in text
    assert f'input_connector_records_total{{{labels},endpoint="t.in"}} ' in text
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    assert {s.labels["pipeline_name"] for s in samples} == {"orders", "unlimited"}  # not stopped, not initializing
    assert all(set(s.labels) <= {"pipeline", "pipeline_name", "endpoint"} for s in samples)


async def test_manager_metrics_leave_out_a_pipeline_that_does_not_answer(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.set_interaction_error("unlimited", "unreachable")
    text = (await client.get("/v0/metrics")).text
    assert 'pipeline_name="unlimited"' not in text and 'pipeline_name="orders"' in text


async def test_manager_metrics_need_the_api_key(clock: ManualClock) -> None:
    async with serve(clock, LIMITED, api_key="apikey:secret") as (_, http):
        assert (await http.get("/v0/metrics")).status_code == 401
        answer = await http.get("/v0/metrics", headers={"Authorization": "Bearer apikey:secret"})
        assert answer.status_code == 200 and "memory_pressure{" in answer.text


@pytest.mark.parametrize(
    ("value", "text"),
    [(1027.0, "1027"), (0.0, "0"), (0.25, "0.25"), (1.5e20, "150000000000000000000"), (-2.5, "-2.5")],
)
def test_values_are_written_as_rust_displays_a_float(value: float, text: str) -> None:
    assert rust_float(value) == text
