"""The simulator behaves like Feldera's pipeline-manager: derivation, omitted keys, errors, identifiers, resets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from contract.openapi_check import checked_client

from exporter.simulator import ManualClock, Scenario, Simulator
from tests.conftest import ipv6_loopback

ORDERS: dict[str, Any] = {
    "name": "orders",
    "status": "Running",
    "checkpoints": 1,
    "tables": [
        {"name": "Orders", "connectors": ["kafka", None, None]},
        {"name": '"Customers"', "connectors": ["S3"]},
        {"name": "items", "connectors": [None]},
    ],
    "views": [{"name": "totals", "connectors": ["delta", None]}],
}


def scenario(*pipelines: dict[str, Any], **settings: Any) -> Scenario:
    return Scenario.model_validate({"pipelines": list(pipelines) or [ORDERS], **settings})


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_767_225_600.0)


@pytest.fixture
async def sim(clock: ManualClock) -> AsyncIterator[Simulator]:
    async with Simulator(scenario(ORDERS, {"name": "idle", "status": "Stopped"}), clock=clock) as simulator:
        yield simulator


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with checked_client(sim.url) as http:
        yield http


# ---- pipelines: derivation and omitted keys --------------------------------------------------------------------


async def test_stopped_pipeline_has_null_runtime_fields_and_stopped_status(client: httpx.AsyncClient) -> None:
    body = (await client.get("/v0/pipelines/idle", params={"selector": "status"})).json()
    assert body["deployment_status"] == "Stopped"
    assert body["deployment_desired_status"] == "Stopped"
    assert body["deployment_resources_status"] == "Stopped"
    assert body["deployment_runtime_status"] is None
    assert body["deployment_runtime_status_since"] is None
    assert body["deployment_id"] is None


async def test_deployment_status_is_resources_status_until_provisioned_then_runtime_status(
    sim: Simulator, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    clock.advance(10)
    sim.start_pipeline("idle", "Provisioning")
    body = (await client.get("/v0/pipelines/idle", params={"selector": "status"})).json()
    assert (body["deployment_status"], body["deployment_desired_status"]) == ("Provisioning", "Running")
    assert body["deployment_status_since"] == "2026-01-01T00:00:10.000000Z"
    assert body["deployment_runtime_status"] is None
    clock.advance(5)
    sim.set_status("idle", "Paused")
    body = (await client.get("/v0/pipelines/idle", params={"selector": "status"})).json()
    assert body["deployment_resources_status"] == "Provisioned"
    assert (body["deployment_status"], body["deployment_runtime_status"]) == ("Paused", "Paused")
    assert body["deployment_desired_status"] == "Paused"
    assert body["deployment_status_since"] == "2026-01-01T00:00:15.000000Z"


async def test_status_selector_omits_program_fields_and_all_includes_program_info(client: httpx.AsyncClient) -> None:
    status = (await client.get("/v0/pipelines/orders", params={"selector": "status"})).json()
    assert "program_code" not in status and "program_info" not in status and "runtime_config" not in status
    assert "connectors" not in status
    assert status["bootstrap_policy"] == "allow"
    full = (await client.get("/v0/pipelines/orders")).json()
    assert "CREATE TABLE" in full["program_code"]
    assert sorted(full["program_info"]["input_connectors"]) == [
        "Customers.S3",
        "items.unnamed-0",
        "orders.kafka",
        "orders.unnamed-0",
        "orders.unnamed-1",
    ]


async def test_connectors_key_is_omitted_unless_a_running_process_reports_it(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.add_connector_errors("orders", "orders.kafka", "parse", 4)
    listed = (await client.get("/v0/pipelines", params={"selector": "status_with_connectors"})).json()
    by_name = {p["name"]: p for p in listed}
    assert by_name["orders"]["connectors"] == {"num_errors": 4}
    assert "connectors" not in by_name["idle"]
    sim.set_status("orders", "Initializing")
    body = (await client.get("/v0/pipelines/orders", params={"selector": "status_with_connectors"})).json()
    assert "connectors" not in body


async def test_invalid_selector_is_a_plain_400(client: httpx.AsyncClient) -> None:
    response = await client.get("/v0/pipelines", params={"selector": "everything"})
    assert response.status_code == 400
    assert "unknown variant" in response.text


async def test_list_is_served_from_cache_until_a_pipeline_changes(sim: Simulator) -> None:
    first = sim.world.list_body("status_with_connectors")
    assert sim.world.list_body("status_with_connectors") is first
    sim.fail_checkpoint("orders")
    sim.stop_pipeline("orders")
    assert sim.world.list_body("status_with_connectors") != first


async def test_compile_failure_sets_program_status_and_error(sim: Simulator, client: httpx.AsyncClient) -> None:
    sim.fail_compile("idle", "sql", "unknown column x")
    body = (await client.get("/v0/pipelines/idle")).json()
    assert body["program_status"] == "SqlError"
    assert body["program_error"]["sql_compilation"]["messages"][0]["message"] == "unknown column x"
    assert body["program_info"] is None


async def test_deployment_error_stays_after_stop_until_next_start(sim: Simulator, client: httpx.AsyncClient) -> None:
    sim.stop_pipeline("orders", error_code="RunnerProvisionError", message="image pull failed")
    body = (await client.get("/v0/pipelines/orders", params={"selector": "status"})).json()
    assert body["deployment_status"] == "Stopped"
    assert body["deployment_error"] == {
        "message": "image pull failed",
        "error_code": "RunnerProvisionError",
        "details": None,
    }
    sim.start_pipeline("orders")
    body = (await client.get("/v0/pipelines/orders", params={"selector": "status"})).json()
    assert body["deployment_error"] is None


async def test_deleted_pipeline_disappears_and_created_one_appears(sim: Simulator, client: httpx.AsyncClient) -> None:
    sim.delete_pipeline("idle")
    sim.create_pipeline({"name": "new", "status": "Paused"})
    names = [p["name"] for p in (await client.get("/v0/pipelines", params={"selector": "status"})).json()]
    assert names == ["orders", "new"]
    assert (await client.get("/v0/pipelines/idle")).status_code == 404


# ---- interaction errors --------------------------------------------------------------------------------------


async def test_unknown_pipeline_is_404_unknown_pipeline_name(client: httpx.AsyncClient) -> None:
    response = await client.get("/v0/pipelines/ghost/stats")
    assert response.status_code == 404
    assert response.json() == {
        "message": "Unknown pipeline name 'ghost'",
        "error_code": "UnknownPipelineName",
        "details": {"pipeline_name": "ghost"},
    }


async def test_interaction_with_stopped_pipeline_is_503_not_deployed_with_retry_after(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v0/pipelines/idle/checkpoint_status")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    body = response.json()
    assert body["error_code"] == "PipelineInteractionNotDeployed"
    assert body["details"] == {"pipeline_name": "idle", "status": "Stopped", "desired_status": "Stopped"}


@pytest.mark.parametrize(
    ("runtime", "status", "code"),
    [
        ("Unavailable", 503, "PipelineUnavailable"),
        ("Initializing", 503, "Initializing"),
        ("Suspended", 503, "Suspended"),
    ],
)
async def test_runtime_status_blocks_stats_with_its_error(
    sim: Simulator, client: httpx.AsyncClient, runtime: str, status: int, code: str
) -> None:
    sim.set_status("orders", runtime)
    response = await client.get("/v0/pipelines/orders/stats")
    assert (response.status_code, response.json()["error_code"]) == (status, code)


async def test_initializing_error_has_null_details_but_checkpoint_status_still_answers(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.set_status("orders", "Initializing")
    assert (await client.get("/v0/pipelines/orders/stats")).json()["details"] is None
    assert (await client.get("/v0/pipelines/orders/checkpoint_status")).status_code == 200


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("unreachable", 503, "PipelineInteractionUnreachable"),
        ("terminating", 410, "Terminating"),
        ("initialization_error", 500, "InitializationError"),
    ],
)
async def test_injected_interaction_errors_use_feldera_codes(
    sim: Simulator, client: httpx.AsyncClient, kind: str, status: int, code: str
) -> None:
    sim.set_interaction_error("orders", kind)
    response = await client.get("/v0/pipelines/orders/checkpoint_status")
    assert (response.status_code, response.json()["error_code"]) == (status, code)


# ---- connectors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "connector", "endpoint"),
    [
        ("orders", "kafka", "orders.kafka"),
        ("ORDERS", "unnamed-1", "orders.unnamed-1"),
        ('"Customers"', "S3", "Customers.S3"),
        ("items", "unnamed-0", "items.unnamed-0"),
    ],
)
async def test_table_names_follow_sql_identifier_rules(
    client: httpx.AsyncClient, table: str, connector: str, endpoint: str
) -> None:
    response = await client.get(f"/v0/pipelines/orders/tables/{table}/connectors/{connector}/stats")
    assert response.status_code == 200
    assert response.json()["endpoint_name"] == endpoint


@pytest.mark.parametrize(
    ("table", "connector"), [("customers", "S3"), ('"Customers"', "s3"), ('"ORDERS"', "kafka"), ("orders", "Kafka")]
)
async def test_wrong_case_is_404_unknown_input_endpoint(client: httpx.AsyncClient, table: str, connector: str) -> None:
    response = await client.get(f"/v0/pipelines/orders/tables/{table}/connectors/{connector}/stats")
    assert response.status_code == 404
    assert response.json()["error_code"] == "UnknownInputEndpoint"


async def test_unknown_view_connector_is_404_unknown_output_endpoint(client: httpx.AsyncClient) -> None:
    response = await client.get("/v0/pipelines/orders/views/totals/connectors/nope/stats")
    assert (response.status_code, response.json()["error_code"]) == (404, "UnknownOutputEndpoint")


async def test_counters_advance_with_the_clock_only_while_running(
    sim: Simulator, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    path = "/v0/pipelines/orders/tables/orders/connectors/kafka/stats"
    assert (await client.get(path)).json()["metrics"]["total_records"] == 0
    clock.advance(10)
    assert (await client.get(path)).json()["metrics"]["total_records"] == 1000
    sim.set_status("orders", "Paused")
    clock.advance(10)
    assert (await client.get(path)).json()["metrics"]["total_records"] == 1000


async def test_fatal_error_is_the_first_one_and_never_cleared(sim: Simulator, client: httpx.AsyncClient) -> None:
    sim.set_connector_fatal_error("orders", "orders.kafka", "broker down")
    sim.set_connector_fatal_error("orders", "orders.kafka", "second error")
    sim.set_connector_health("orders", "orders.kafka", "Healthy")
    body = (await client.get("/v0/pipelines/orders/tables/orders/connectors/kafka/stats")).json()
    assert body["fatal_error"] == "broker down"
    assert body["health"] == {"status": "Healthy", "description": None}


async def test_health_is_null_until_reported(client: httpx.AsyncClient) -> None:
    body = (await client.get("/v0/pipelines/orders/views/totals/connectors/delta/stats")).json()
    assert body["health"] is None


async def test_per_connector_endpoint_has_error_arrays_and_stats_does_not(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.add_connector_errors("orders", "orders.kafka", "parse", 2, "bad json")
    single = (await client.get("/v0/pipelines/orders/tables/orders/connectors/kafka/stats")).json()
    assert [e["index"] for e in single["parse_errors"]] == [0, 1]
    assert single["transport_errors"] == []
    stats = (await client.get("/v0/pipelines/orders/stats")).json()
    assert all("parse_errors" not in i and "transport_errors" not in i for i in stats["inputs"])
    assert all("encode_errors" not in o for o in stats["outputs"])
    assert len(stats["inputs"]) == 5 and len(stats["outputs"]) == 2


async def test_stats_with_connector_errors_lists_them_for_every_connector_from_0_292(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.add_connector_errors("orders", "totals.delta", "encode", 1, "bad row")
    stats = (await client.get("/v0/pipelines/orders/stats", params={"include_connector_errors": "true"})).json()
    assert all(i["parse_errors"] is not None and i["transport_errors"] == [] for i in stats["inputs"])
    assert [len(o["encode_errors"]) for o in stats["outputs"]] == [1, 0]
    bad = await client.get("/v0/pipelines/orders/stats", params={"include_connector_errors": "yes"})
    assert bad.status_code == 400
    sim.upgrade_platform("0.291.0")  # before StatsParams: the parameter is ignored
    old = (await client.get("/v0/pipelines/orders/stats", params={"include_connector_errors": "true"})).json()
    assert all("parse_errors" not in i for i in old["inputs"])


# ---- checkpoints and incarnations ---------------------------------------------------------------------------


async def test_failure_is_kept_after_a_later_success(sim: Simulator, client: httpx.AsyncClient) -> None:
    failed = sim.fail_checkpoint("orders", "disk full")
    succeeded = sim.checkpoint("orders")
    body = (await client.get("/v0/pipelines/orders/checkpoint_status")).json()
    assert body["success"] == succeeded > failed
    assert body["failure"]["sequence_number"] == failed
    assert body["failure"]["error"] == "disk full"


async def test_failed_at_carries_nanoseconds(sim: Simulator, client: httpx.AsyncClient, clock: ManualClock) -> None:
    clock.advance(0.123456789)
    sim.fail_checkpoint("orders")
    failed_at = (await client.get("/v0/pipelines/orders/checkpoint_status")).json()["failure"]["failed_at"]
    assert failed_at.startswith("2026-01-01T00:00:00.123456")
    assert len(failed_at.split(".")[1]) == 10


async def test_restart_is_a_new_incarnation_that_resets_process_state(
    sim: Simulator, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    before = (await client.get("/v0/pipelines/orders/stats")).json()["global_metrics"]["incarnation_uuid"]
    sim.fail_checkpoint("orders")
    sim.set_connector_fatal_error("orders", "orders.kafka", "boom")
    clock.advance(5)
    new = sim.restart_pipeline("orders")
    stats = (await client.get("/v0/pipelines/orders/stats")).json()
    assert stats["global_metrics"]["incarnation_uuid"] == new != before
    assert all(i["fatal_error"] is None for i in stats["inputs"])
    assert (await client.get("/v0/pipelines/orders/checkpoint_status")).json() == {"success": None, "failure": None}


async def test_stats_reports_checkpoint_activity_and_permanent_errors(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.set_checkpoint_activity("orders", "delayed", ["Bootstrapping"])
    sim.set_permanent_checkpoint_errors("orders", ["StorageRequired"])
    stats = (await client.get("/v0/pipelines/orders/stats")).json()
    assert stats["checkpoint_activity"]["status"] == "delayed"
    assert stats["checkpoint_activity"]["reasons"] == ["Bootstrapping"]
    assert stats["permanent_checkpoint_errors"] == ["StorageRequired"]


# ---- checkpoint sync -----------------------------------------------------------------------------------------


async def test_sync_answers_202_and_sync_status_reports_success(sim: Simulator, client: httpx.AsyncClient) -> None:
    response = await client.post("/v0/pipelines/orders/checkpoint/sync")
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["incarnation_uuid"] == sim.pipeline("orders").incarnation
    status = (await client.get("/v0/pipelines/orders/checkpoint/sync_status")).json()
    assert status == {"success": accepted["checkpoint_uuid"], "failure": None, "periodic": None}


async def test_pending_sync_completes_or_fails_through_the_control_api(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.set_sync_mode("orders", "pending")
    uuid_ = (await client.post("/v0/pipelines/orders/checkpoint/sync")).json()["checkpoint_uuid"]
    assert (await client.get("/v0/pipelines/orders/checkpoint/sync_status")).json()["success"] is None
    sim.fail_sync("orders", "access denied")
    status = (await client.get("/v0/pipelines/orders/checkpoint/sync_status")).json()
    assert status["failure"] == {"uuid": uuid_, "error": "access denied"}


async def test_sync_without_checkpoints_is_400_with_literal_error_code(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.create_pipeline({"name": "empty", "status": "Running"})
    response = await client.post("/v0/pipelines/empty/checkpoint/sync")
    assert (response.status_code, response.json()["error_code"]) == (400, "400")


async def test_community_edition_refuses_sync_with_501_but_forwards_sync_status(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.set_edition("community")
    for name in ("orders", "ghost"):  # the manager refuses before it looks the pipeline up
        response = await client.post(f"/v0/pipelines/{name}/checkpoint/sync")
        assert (response.status_code, response.json()["error_code"]) == (501, "EnterpriseFeature")
    status = await client.get("/v0/pipelines/orders/checkpoint/sync_status")
    assert (status.status_code, status.json()) == (200, {"success": None, "failure": None, "periodic": None})


async def test_seed_sync_api_answers_200_with_sequence_number(sim: Simulator, client: httpx.AsyncClient) -> None:
    sim.set_sync_api("seed")
    assert (await client.post("/v0/pipelines/orders/checkpoint/sync")).status_code == 404  # none requested yet
    sim.checkpoint("orders")
    response = await client.post("/v0/pipelines/orders/checkpoint/sync")
    assert (response.status_code, response.json()) == (200, {"checkpoint_sequence_number": 0})


async def test_sync_on_a_multi_host_pipeline_is_a_400_that_says_so(sim: Simulator, client: httpx.AsyncClient) -> None:
    sim.create_pipeline({"name": "wide", "status": "Running", "checkpoints": 1, "runtime_config": {"hosts": 2}})
    response = await client.post("/v0/pipelines/wide/checkpoint/sync")
    assert (response.status_code, response.json()["error_code"]) == (400, "400")
    assert "not supported directly on multihost pipelines" in response.json()["message"]


async def test_sync_status_lists_running_syncs_after_0_337(sim: Simulator, client: httpx.AsyncClient) -> None:
    sim.set_sync_mode("orders", "pending")
    started = (await client.post("/v0/pipelines/orders/checkpoint/sync")).json()["checkpoint_uuid"]
    assert "running" not in (await client.get("/v0/pipelines/orders/checkpoint/sync_status")).json()
    sim.upgrade_platform("0.369.0")
    assert (await client.get("/v0/pipelines/orders/checkpoint/sync_status")).json()["running"] == [started]
    sim.succeed_sync("orders")
    status = (await client.get("/v0/pipelines/orders/checkpoint/sync_status")).json()
    assert (status["running"], status["success"]) == ([], started)


# ---- reset tokens ---------------------------------------------------------------------------------------------


async def test_reset_token_goes_from_pending_to_completed(sim: Simulator, client: httpx.AsyncClient) -> None:
    token = sim.issue_reset_token("orders")
    path = "/v0/pipelines/orders/reset_status"
    assert (await client.get(path, params={"token": token})).json() == {"token": token, "status": "pending"}
    sim.complete_reset("orders", token)
    assert (await client.get(path, params={"token": token})).json()["status"] == "completed"


async def test_invalid_reset_token_is_400_and_previous_incarnation_is_410(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    token = sim.issue_reset_token("orders")
    path = "/v0/pipelines/orders/reset_status"
    assert (await client.get(path, params={"token": "garbage"})).status_code == 400
    sim.restart_pipeline("orders")
    assert (await client.get(path, params={"token": token})).status_code == 410


@pytest.mark.parametrize(
    ("edition", "version", "api"),
    [
        ("enterprise", "0.337.0", "implemented"),
        ("community", "0.289.0", "absent"),
        ("community", "0.290.0", "stub"),
        ("community", "0.297.0", "stub"),
        ("community", "0.298.0", "absent"),
        ("community", "0.337.0", "absent"),
    ],
)
async def test_reset_status_is_implemented_a_stub_or_absent_by_edition_and_version(
    clock: ManualClock, edition: str, version: str, api: str
) -> None:
    async with (
        Simulator(scenario(ORDERS, edition=edition, platform_version=version), clock=clock) as sim,
        checked_client(sim.url) as client,
    ):
        token = sim.issue_reset_token("orders")
        answer = await client.get("/v0/pipelines/orders/reset_status", params={"token": token})
        missing = await client.get("/v0/pipelines/ghost/reset_status", params={"token": token})
    if api == "implemented":
        assert (answer.status_code, answer.json()["status"]) == (200, "pending")
        assert (missing.status_code, missing.json()["error_code"]) == (404, "UnknownPipelineName")
    elif api == "stub":
        assert (answer.status_code, answer.json()["error_code"]) == (400, "NotSupported")
        assert answer.json()["message"] == "Not supported: reset status is not yet available on this pipeline"
        assert (missing.status_code, missing.json()["error_code"]) == (404, "UnknownPipelineName")
    else:
        assert (answer.status_code, answer.content, missing.status_code, missing.content) == (404, b"", 404, b"")


# ---- editions and versions -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edition", "suffix", "config_edition", "pipeline_version"),
    [
        ("enterprise", "", "Enterprise", "0.340.0+enterprise"),
        ("enterprise", "1a2b3c", "Enterprise", "0.340.0+enterprise.1a2b3c"),
        ("enterprise_dev", "", "EnterpriseDev", "0.340.0+enterprise"),
        ("community", "", "Open source", "0.340.0"),
    ],
)
async def test_config_reports_the_release_and_pipelines_the_platform_version_of_the_build(
    clock: ManualClock, edition: str, suffix: str, config_edition: str, pipeline_version: str
) -> None:
    settings = {"edition": edition, "platform_version": "0.340.0", "platform_version_suffix": suffix}
    async with (
        Simulator(scenario(ORDERS, **settings), clock=clock) as sim,
        checked_client(sim.url) as client,
    ):
        config = (await client.get("/v0/config")).json()
        listed = (await client.get("/v0/pipelines", params={"selector": "status"})).json()
    assert (config["edition"], config["version"]) == (config_edition, "0.340.0")
    assert config["revision"] == (suffix or config["runtime_revision"])
    assert listed[0]["platform_version"] == pipeline_version


async def test_a_pinned_runtime_is_in_program_config_with_every_selector(clock: ManualClock) -> None:
    pinned = {"name": "pinned", "status": "Stopped", "runtime_version": "0.330.0", "platform_version": "0.330.0"}
    async with (
        Simulator(scenario(pinned), clock=clock) as sim,
        checked_client(sim.url) as client,
    ):
        for selector in ("all", "status", "status_with_connectors"):
            body = (await client.get("/v0/pipelines/pinned", params={"selector": selector})).json()
            assert body["program_config"]["runtime_version"] == "0.330.0"


# ---- what the exporter costs Feldera ---------------------------------------------------------------------------


async def test_each_checkpoint_status_request_is_counted_as_a_database_write(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    await client.get("/v0/pipelines/orders/checkpoint_status")
    await client.get("/v0/pipelines/idle/checkpoint_status")  # 503 not deployed: the manager writes anyway
    await client.get("/v0/pipelines/ghost/checkpoint_status")  # no such row: nothing written
    await client.get("/v0/pipelines/orders/stats")
    assert (await client.get("/_sim/database_writes")).json() == {
        "total": 2,
        "by_endpoint": {"checkpoint_status": 2},
    }
    await client.get("/v0/pipelines/orders/tables/orders/connectors/kafka/stats")
    assert (await client.get("/_sim/requests")).json() == {
        "GET /v0/pipelines/{pipeline}/checkpoint_status": 3,
        "GET /v0/pipelines/{pipeline}/stats": 1,
        "GET /v0/pipelines/{pipeline}/tables/{table}/connectors/{connector}/stats": 1,
    }


# ---- cluster, auth, control over HTTP --------------------------------------------------------------------------


async def test_cluster_healthz_is_503_with_the_same_body_when_a_service_is_unhealthy(
    sim: Simulator, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    sim.set_cluster_health("runner", False, "runner unreachable")
    assert (await client.get("/v0/cluster_healthz")).status_code == 200  # stored at the monitor's next check
    clock.advance(10)
    response = await client.get("/v0/cluster_healthz")
    assert response.status_code == 503
    assert response.json()["all_healthy"] is False
    assert response.json()["runner"] == {
        "healthy": False,
        "message": "runner unreachable",
        "unchanged_since": "2026-01-01T00:00:10.000000Z",
        "checked_at": "2026-01-01T00:00:10.000000Z",
    }


async def test_a_healthy_cluster_is_stored_every_ten_minutes_and_a_stalled_monitor_never_again(
    sim: Simulator, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    async def checked_at() -> str:
        return str((await client.get("/v0/cluster_healthz")).json()["api"]["checked_at"])

    assert await checked_at() == "2026-01-01T00:00:00.000000Z"  # the first check is stored at once
    clock.advance(10)
    assert await checked_at() == "2026-01-01T00:00:10.000000Z"  # and the second (upstream's `first` flag)
    clock.advance(599)
    assert await checked_at() == "2026-01-01T00:00:10.000000Z"
    clock.advance(1)
    assert await checked_at() == "2026-01-01T00:10:10.000000Z"
    sim.stall_cluster_monitor()
    clock.advance(3600)
    body = (await client.get("/v0/cluster_healthz")).json()
    assert (body["all_healthy"], body["runner"]["checked_at"]) == (True, "2026-01-01T00:10:10.000000Z")


async def test_an_unhealthy_cluster_is_stored_with_exponential_backoff(
    sim: Simulator, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    clock.advance(10)
    await client.get("/v0/cluster_healthz")
    sim.set_cluster_health("compiler", False)
    stored = []
    for _ in range(16):
        clock.advance(10)
        stored.append((await client.get("/v0/cluster_healthz")).json()["compiler"]["checked_at"][14:19])
    # checks at 20 s, 30 s, ...: stored at the change, then after 1, 2, 4 and 8 more checks
    assert sorted(set(stored)) == ["00:20", "00:30", "00:50", "01:30", "02:50"]


async def test_no_cluster_monitor_event_yet_is_a_404_with_its_own_code(clock: ManualClock) -> None:
    async with (
        Simulator(scenario(cluster={"first_event_after": 25}), clock=clock) as sim,
        checked_client(sim.url) as client,
    ):
        early = await client.get("/v0/cluster_healthz")
        assert (early.status_code, early.json()["error_code"]) == (404, "NoClusterMonitorEventsAvailable")
        clock.advance(25)
        assert (await client.get("/v0/cluster_healthz")).status_code == 200


async def test_bearer_auth_rejects_missing_key_without_echoing_it(clock: ManualClock) -> None:
    async with (
        Simulator(scenario(api_key="s3cret-key"), clock=clock) as sim,
        checked_client(sim.url) as client,
    ):
        denied = await client.get("/v0/pipelines", headers={"Authorization": "Bearer wrong"})
        assert denied.status_code == 401
        assert denied.json()["error_code"] == "Unauthorized"
        assert "s3cret" not in denied.text and "wrong" not in denied.text
        allowed = await client.get("/v0/pipelines", headers={"Authorization": "Bearer s3cret-key"})
        assert allowed.status_code == 200
    assert "s3cret" not in repr(scenario(api_key="s3cret-key"))


async def test_control_api_over_http_drives_the_same_state(sim: Simulator, client: httpx.AsyncClient) -> None:
    response = await client.post("/_sim/fail_checkpoint", json={"name": "orders", "error": "via http"})
    assert response.json() == {"result": 0}  # the process's first POST /checkpoint
    assert sim.pipeline("orders").checkpoint_failure["error"] == "via http"
    assert (await client.post("/_sim/no_such_action", json={})).status_code == 404
    assert (await client.post("/_sim/checkpoint", json={"name": "ghost"})).status_code == 404
    assert (await client.post("/_sim/checkpoint", json={"bogus": 1})).status_code == 400
    assert (await client.get("/_sim/state")).json()["orders"]["deployment_status"] == "Running"


async def test_request_counts_cover_api_requests_only(sim: Simulator, client: httpx.AsyncClient) -> None:
    await client.get("/v0/pipelines/orders/stats")
    await client.get("/_sim/state")
    assert sim.requests("/v0/pipelines/*/stats") == 1
    assert sim.requests("/_sim/*") == 0


# ---- scenarios -------------------------------------------------------------------------------------------------


def test_scenario_loads_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(
        "edition: community\npipelines:\n  - name: a\n    status: Paused\n"
        "    tables:\n      - name: T\n        connectors: [x, null]\n",
        encoding="utf-8",
    )
    loaded = Scenario.load(path)
    assert loaded.edition == "community"
    sim = Simulator(loaded)
    assert [c.endpoint_name for c in sim.pipeline("a").connectors()] == ["t.x", "t.unnamed-0"]


def test_scenario_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="colour"):
        Scenario.model_validate({"pipelines": [{"name": "a", "colour": "red"}]})


@pytest.mark.slow
async def test_ten_thousand_generated_pipelines_are_listed(clock: ManualClock) -> None:
    async with Simulator(Scenario.generate(10_000), clock=clock) as sim, httpx.AsyncClient(base_url=sim.url) as client:
        response = await client.get("/v0/pipelines", params={"selector": "status_with_connectors"})
        assert response.status_code == 200
        assert len(response.json()) == 10_000


# ---- platform config (GET /v0/config) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "license_validity"),
    [
        ({"edition": "community"}, None),
        ({"server": {"license": "invalid"}}, {"DoesNotExistOrNotConfirmed": "invalid license key"}),
        ({"server": {"license": "unconfirmed"}}, {"DoesNotExistOrNotConfirmed": "unable to reach the license server"}),
    ],
)
async def test_config_reports_the_licence_state_of_the_scenario(
    clock: ManualClock, settings: dict[str, Any], license_validity: dict[str, str] | None
) -> None:
    async with (
        Simulator(scenario(**settings), clock=clock) as sim,
        checked_client(sim.url) as http,
    ):
        body = (await http.get("/v0/config")).json()
    assert body["license_validity"] == license_validity
    assert body["edition"] == ("Open source" if settings.get("edition") == "community" else "Enterprise")


async def test_config_reports_version_licence_expiry_and_update_check(clock: ManualClock) -> None:
    settings = {
        "platform_version": "v0.340.0",
        "server": {"license": "trial", "license_expires_in_days": 10, "latest_version": "0.341.0"},
    }
    async with (
        Simulator(scenario(**settings), clock=clock) as sim,
        checked_client(sim.url) as http,
    ):
        clock.advance(3600)
        body = (await http.get("/v0/config")).json()
        assert (await http.post("/v0/config")).status_code == 405
    assert body["version"] == "0.340.0"
    licence = body["license_validity"]["Exists"]
    assert licence["is_trial"] is True
    assert licence["valid_until"] == "2026-01-11T00:00:00.000000Z"  # 10 days after the simulator started
    assert licence["current"] == "2026-01-01T01:00:00.000000Z"
    assert body["update_info"]["latest_version"] == "0.341.0" and body["update_info"]["is_latest_version"] is False


async def test_pipelines_keep_their_own_platform_version(clock: ManualClock) -> None:
    old = {"name": "old", "platform_version": "0.337.0+enterprise.5c7931d", "status": "Stopped"}
    async with (
        Simulator(scenario(ORDERS, old, platform_version="v0.340.0"), clock=clock) as sim,
        checked_client(sim.url) as http,
    ):
        listed = (await http.get("/v0/pipelines", params={"selector": "status"})).json()
        assert (await http.get("/v0/config")).json()["version"] == "0.340.0"
    versions = {p["name"]: p["platform_version"] for p in listed}
    assert versions == {"orders": "0.340.0+enterprise", "old": "0.337.0+enterprise.5c7931d"}


async def test_url_on_all_ipv6_interfaces_reaches_the_simulator_over_the_ipv6_loopback() -> None:
    """``::`` alone is IPv6 only: ``127.0.0.1`` (the URL before) was refused."""
    if not ipv6_loopback():
        pytest.skip("no IPv6 here")
    async with Simulator(Scenario(), host="::") as sim, httpx.AsyncClient() as client:
        assert sim.url == f"http://[::1]:{sim.port}"
        assert (await client.get(f"{sim.url}/v0/pipelines")).status_code == 200
