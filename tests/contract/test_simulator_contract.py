"""Every body the simulator serves, across all endpoints and error paths, validates against Feldera's schemas."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from schemas.vendor_openapi import SPEC_ENV

from contract.openapi_check import SUBSET, check_response, errors_in
from exporter.simulator import ManualClock, Scenario, Simulator

SPEC = Path(os.environ.get(SPEC_ENV, "")) if os.environ.get(SPEC_ENV) else None

SCENARIO = {
    "pipelines": [
        {
            "name": "orders",
            "status": "Running",
            "checkpoints": 2,
            "checkpoint_failure": "disk full",
            "tables": [
                {"name": "Orders", "connectors": ["kafka", None, None]},
                {"name": '"Customers"', "connectors": [{"name": "s3", "fatal_error": "gone", "health": "Unhealthy"}]},
            ],
            "views": [{"name": "totals", "connectors": ["delta", None]}],
        },
        {"name": "stopped", "status": "Stopped"},
        {"name": "provisioning", "status": "Provisioning"},
        {"name": "init", "status": "Initializing", "tables": [{"name": "t", "connectors": ["c"]}]},
        {"name": "suspended", "status": "Suspended", "checkpoints": 1},
        {"name": "unavailable", "status": "Unavailable"},
        {"name": "paused", "status": "Paused", "tables": [{"name": "t", "connectors": [{"parse_errors": 7}]}]},
        {"name": "fresh", "status": "Running", "tables": [{"name": "t", "connectors": ["c"]}]},
        {"name": "bad-sql", "status": "Stopped", "program_status": "SqlError", "program_error": "syntax"},
        {"name": "bad-rust", "status": "Stopped", "program_status": "RustError", "program_error": "E0308"},
        {"name": "bad-system", "status": "Stopped", "program_status": "SystemError", "program_error": "oom"},
        {"name": "compiling", "status": "Stopped", "program_status": "CompilingRust"},
        {
            "name": "crashed",
            "status": "Stopped",
            "deployment_error": {"message": "panic", "error_code": "RunnerError", "details": {"x": 1}},
        },
    ]
}


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(Scenario.model_validate(SCENARIO), clock=ManualClock()) as simulator:
        yield simulator


async def test_every_simulator_response_matches_the_openapi_schemas(sim: Simulator) -> None:
    seen: set[tuple[str, int]] = set()

    async def record(response: httpx.Response) -> None:
        await response.aread()
        schema = check_response(response)
        if schema is not None:
            seen.add((schema, response.status_code))

    sim.set_checkpoint_activity("orders", "delayed", ["Replaying", {"InputEndpointBarrier": "orders.kafka"}])
    sim.set_permanent_checkpoint_errors("paused", ["StorageRequired", {"UnsupportedInputEndpoint": "t.unnamed-0"}])
    sim.set_connector_health("orders", "orders.kafka", "Healthy", "ok")
    sim.add_connector_errors("orders", "totals.delta", "encode", 3)
    sim.add_connector_errors("orders", "orders.kafka", "transport", 2)
    sim.set_checkpoint_activity("fresh", "in_progress")
    sim.set_cluster_health("compiler", False, "compiler server unreachable")
    token = sim.issue_reset_token("orders")
    sim.advance_clock(30)

    async with httpx.AsyncClient(base_url=sim.url, event_hooks={"response": [record]}) as client:
        for selector in ("all", "status", "status_with_connectors"):
            await client.get("/v0/pipelines", params={"selector": selector})
            for name in [p["name"] for p in SCENARIO["pipelines"]] + ["missing"]:
                await client.get(f"/v0/pipelines/{name}", params={"selector": selector})
        for name in [p["name"] for p in SCENARIO["pipelines"]] + ["missing"]:
            for path in ("checkpoint_status", "stats", "checkpoint/sync_status", f"reset_status?token={token}"):
                await client.get(f"/v0/pipelines/{name}/{path}")
            await client.post(f"/v0/pipelines/{name}/checkpoint/sync")
        for table, connector in (("orders", "kafka"), ("ORDERS", "unnamed-1"), ('"Customers"', "s3"), ("nope", "x")):
            await client.get(f"/v0/pipelines/orders/tables/{table}/connectors/{connector}/stats")
        for view, connector in (("totals", "delta"), ("totals", "unnamed-0"), ("totals", "missing")):
            await client.get(f"/v0/pipelines/orders/views/{view}/connectors/{connector}/stats")
        await client.get("/v0/pipelines/paused/tables/t/connectors/unnamed-0/stats")
        await client.get("/v0/pipelines/init/tables/t/connectors/c/stats")
        await client.get("/v0/cluster_healthz")
        await client.get("/v0/config")
        sim.upgrade_platform("v0.338.0")
        await client.post("/v0/pipelines/stopped/update_runtime")
        await client.post("/v0/pipelines/orders/update_runtime")
        await client.post("/v0/pipelines/missing/update_runtime")
        sim.set_cluster_health("compiler", True)
        sim.advance_clock(10)  # the cluster monitor's next check stores it
        await client.get("/v0/cluster_healthz")
        await client.get("/v0/pipelines/orders/reset_status", params={"token": "bogus"})
        sim.restart_pipeline("orders")
        await client.get("/v0/pipelines/orders/reset_status", params={"token": token})
        for kind in ("unreachable", "initialization_error", "terminating"):
            sim.set_interaction_error("fresh", kind)
            await client.get("/v0/pipelines/fresh/stats")
        sim.set_sync_api("seed")
        await client.post("/v0/pipelines/suspended/checkpoint/sync")
        sim.set_interaction_error("fresh", None)
        await client.post("/v0/pipelines/fresh/checkpoint/sync")
        sim.checkpoint("fresh")
        await client.post("/v0/pipelines/fresh/checkpoint/sync")
        sim.set_edition("community")
        await client.post("/v0/pipelines/orders/checkpoint/sync")
        await client.get("/v0/pipelines/orders/checkpoint/sync_status")

    expected = {
        ("[PipelineSelectedInfo]", 200),
        ("PipelineSelectedInfo", 200),
        ("CheckpointStatus", 200),
        ("CheckpointSyncResponse", 202),
        ("CheckpointResponse", 200),
        ("CheckpointSyncStatus", 200),
        ("ControllerStatus", 200),
        ("InputEndpointStatus", 200),
        ("OutputEndpointStatus", 200),
        ("HealthStatus", 200),
        ("HealthStatus", 503),
        ("Configuration", 200),
        ("PipelineInfo", 200),
    } | {("ErrorResponse", status) for status in (400, 404, 410, 500, 501, 503)}
    assert expected <= seen


def test_nullable_rewrite_accepts_null_and_rejects_wrong_types() -> None:
    assert errors_in("CheckpointStatus", {"success": None, "failure": None}) == []
    assert errors_in("CheckpointStatus", {"success": "3", "failure": None}) != []


@pytest.mark.skipif(SPEC is None, reason=f"set {SPEC_ENV} to Feldera's openapi.json to compare the vendored subset")
def test_vendored_schemas_equal_the_upstream_openapi_document() -> None:
    from schemas.vendor_openapi import subset

    assert SPEC is not None
    vendored = json.loads(SUBSET.read_text(encoding="utf-8"))
    assert vendored == subset(json.loads(SPEC.read_text(encoding="utf-8")))
