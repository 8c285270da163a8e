"""Feldera's own Python client (``feldera`` on PyPI, pinned in pyproject.toml) accepts the simulator, unpatched.

The official client is synchronous (``requests``): each of its calls runs in a worker thread while the simulator
serves on the test's event loop, over real HTTP. Every state the official client reads here is read again with the
exporter's own :class:`exporter.client.FelderaClient`, so both clients are held to the same simulator answers and
the exporter has no private notion of the API's shape.

Where the official client and the spec disagree (the simulator follows the spec):

- ``PipelineStatus`` of feldera 0.369.0 has no ``Coordination`` member, although ``CombinedStatus`` in the OpenAPI
  document lists it (a multi-host pipeline coordinating its hosts): ``Pipeline.status()`` raises ``ValueError``
  for such a pipeline. The simulator keeps reporting ``Coordination``; the exporter maps it like any other status.
- ``PipelineFieldSelector`` offers ``all`` and ``status`` only; ``status_with_connectors`` (what the exporter asks
  for) is read through the client's own HTTP layer (``client.http``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest
from feldera import Pipeline
from feldera.enums import CheckpointStatus, PipelineFieldSelector, PipelineStatus
from feldera.rest.errors import FelderaAPIError
from feldera.rest.feldera_client import FelderaClient as OfficialClient
from feldera.rest.feldera_config import FelderaEdition
from feldera.rest.retry import RetryConfig
from feldera.stats import PipelineStatistics

from exporter.client import FelderaClient
from exporter.config import TargetSettings
from exporter.errors import ApiError
from exporter.simulator import ManualClock, Scenario, Simulator

T = TypeVar("T")
API_KEY = "apikey:contract-test"

SCENARIO: dict[str, Any] = {
    "api_key": API_KEY,
    "platform_version": "v0.340.0",
    "server": {"license": "trial", "license_expires_in_days": 10, "latest_version": "0.341.0"},
    "pipelines": [
        {
            "name": "orders",
            "status": "Running",
            "runtime_config": {"max_rss_mb": 8000},
            "rss_mb": 7000,
            "checkpoints": 2,
            "tables": [
                {"name": "orders", "connectors": ["kafka", None]},
                {"name": '"Customers"', "connectors": [{"name": "cdc", "parse_errors": 2, "health": "Healthy"}]},
            ],
            "views": [{"name": "totals", "connectors": ["delta"]}],
        },
        {"name": "old-runtime", "platform_version": "0.337.0+enterprise", "status": "Paused", "checkpoints": 1},
        {"name": "idle", "status": "Stopped"},
        {"name": "starting", "status": "Provisioning"},
        {"name": "init", "status": "Initializing"},
        {"name": "standby", "status": "Standby"},
        {"name": "suspended", "status": "Suspended"},
    ],
}


async def call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one blocking call of the official client off the event loop that serves the simulator."""
    return await asyncio.to_thread(function, *args, **kwargs)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(Scenario.model_validate(SCENARIO), clock=ManualClock(1_767_225_600.0)) as simulator:
        simulator.advance_clock(30)
        yield simulator


@pytest.fixture
async def official(sim: Simulator) -> OfficialClient:
    """Constructed exactly as users do; the constructor itself calls GET /v0/config."""
    return await call(OfficialClient, sim.url, api_key=API_KEY, retry_config=RetryConfig(max_retries=0))


@pytest.fixture
async def ours(sim: Simulator) -> AsyncIterator[FelderaClient]:
    async with FelderaClient(TargetSettings(url=sim.url, api_key=API_KEY), retries=0) as client:
        yield client


async def test_the_constructor_reads_the_server_config_and_both_clients_see_the_same_platform(
    sim: Simulator, official: OfficialClient, ours: FelderaClient
) -> None:
    assert sim.requests("/v0/config") == 1
    config = await call(official.get_config)
    mine = await ours.server_config()
    assert (config.version, mine.version) == ("0.340.0", "0.340.0")
    assert config.edition == FelderaEdition.ENTERPRISE and mine.edition == "Enterprise"
    assert config.revision == mine.revision != ""
    licence = config.license_validity["Exists"]
    assert licence["is_trial"] is True and mine.license_validity is not None
    assert mine.license_validity.valid is True
    assert mine.license_validity.exists is not None and mine.license_validity.exists.is_trial is True
    assert mine.license_validity.exists.valid_until == 1_767_225_600.0 + 10 * 86400
    assert config.update_info["latest_version"] == "0.341.0" and config.update_info["is_latest_version"] is False
    assert mine.update_info is not None and mine.update_info.is_latest_version is False


@pytest.mark.parametrize(
    ("edition", "license", "expected", "valid"),
    [
        ("community", "valid", FelderaEdition.OPEN_SOURCE, None),
        ("enterprise", "invalid", FelderaEdition.ENTERPRISE, False),
        ("enterprise", "unconfirmed", FelderaEdition.ENTERPRISE, False),
    ],
)
async def test_every_edition_and_licence_state_is_accepted_by_both_clients(
    edition: str, license: str, expected: FelderaEdition, valid: bool | None
) -> None:
    scenario = Scenario.model_validate({"edition": edition, "server": {"license": license}})
    async with Simulator(scenario, clock=ManualClock()) as sim:
        official = await call(OfficialClient, sim.url)
        async with FelderaClient(TargetSettings(url=sim.url)) as ours:
            mine = await ours.server_config()
        config = await call(official.get_config)
    assert config.edition == expected
    assert config.update_info is None and mine.update_info is None
    if valid is None:
        assert config.license_validity is None and mine.license_validity is None
    else:
        assert set(config.license_validity) == {"DoesNotExistOrNotConfirmed"}
        assert mine.license_validity is not None and mine.license_validity.valid is valid


async def test_pipelines_are_listed_alike_with_every_selector(official: OfficialClient, ours: FelderaClient) -> None:
    names = [p["name"] for p in SCENARIO["pipelines"]]
    for selector in PipelineFieldSelector:
        listed = await call(official.pipelines, selector)
        mine = (await ours.list_pipelines(selector.value)).pipelines
        assert [p.name for p in listed] == [p.name for p in mine] == names
        assert [p.deployment_status for p in listed] == [p.deployment_status for p in mine]
        assert [p.platform_version for p in listed] == [p.platform_version for p in mine]
    with_connectors = await call(official.http.get, "/pipelines?selector=status_with_connectors")
    mine = (await ours.list_pipelines()).pipelines
    assert [p["connectors"]["num_errors"] if "connectors" in p else None for p in with_connectors] == [
        None if p.connectors is None else p.connectors.num_errors for p in mine
    ]
    everything = await call(Pipeline.all, official)
    assert [p.name for p in everything] == names
    orders = await call(Pipeline.get, "orders", official)
    tables = await call(orders.tables)
    assert [(t.name, t.case_sensitive) for t in tables] == [("orders", False), ("Customers", True)]
    assert [v.name for v in await call(orders.views)] == ["totals"]


async def listed(ours: FelderaClient, name: str) -> Any:
    """The pipeline as the exporter reads it: from its one list call per cycle."""
    return {p.name: p for p in (await ours.list_pipelines()).pipelines}[name]


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("orders", PipelineStatus.RUNNING),
        ("old-runtime", PipelineStatus.PAUSED),
        ("idle", PipelineStatus.STOPPED),
        ("starting", PipelineStatus.PROVISIONING),
        ("init", PipelineStatus.INITIALIZING),
        ("standby", PipelineStatus.STANDBY),
        ("suspended", PipelineStatus.SUSPENDED),
    ],
)
async def test_status_of_each_pipeline_agrees(
    official: OfficialClient, ours: FelderaClient, name: str, status: PipelineStatus
) -> None:
    pipeline = await call(Pipeline.get, name, official)
    assert await call(pipeline.status) == status
    mine = await listed(ours, name)
    assert PipelineStatus.from_str(mine.deployment_status) == status


async def test_typed_stats_agree(sim: Simulator, official: OfficialClient, ours: FelderaClient) -> None:
    pipeline = await call(Pipeline.get, "orders", official)
    stats = await call(pipeline.stats)
    mine = await ours.stats("orders")
    assert isinstance(stats, PipelineStatistics)
    assert stats.global_metrics.state == PipelineStatus.RUNNING
    assert stats.global_metrics.incarnation_uuid == uuid.UUID(sim.pipeline("orders").incarnation)
    assert str(stats.global_metrics.incarnation_uuid) == mine.global_metrics.incarnation_uuid
    assert [i.endpoint_name for i in stats.inputs] == [i.endpoint_name for i in mine.inputs]
    assert [o.endpoint_name for o in stats.outputs] == [o.endpoint_name for o in mine.outputs] == ["totals.delta"]
    assert [i.metrics.total_records for i in stats.inputs] == [i.metrics.total_records for i in mine.inputs]
    assert all(i.metrics.total_records > 0 for i in mine.inputs)


async def test_memory_storage_stall_and_a_paused_output_are_read_alike(
    sim: Simulator, official: OfficialClient, ours: FelderaClient
) -> None:
    pipeline = await call(Pipeline.get, "orders", official)
    await call(pipeline.pause_output_connector, "totals", "delta")
    sim.set_output_stall("orders", "totals.delta")
    sim.advance_clock(12)
    stats = await call(pipeline.stats)
    mine = (await ours.stats("orders")).global_metrics
    theirs = stats.global_metrics
    assert (theirs.memory_pressure, mine.memory_pressure) == ("high", "high")  # 7000 of 7600 MB
    assert theirs.memory_pressure_epoch == mine.memory_pressure_epoch == 1
    assert theirs.rss_bytes == mine.rss_bytes == 7_000_000_000
    assert theirs.storage_bytes == mine.storage_bytes > 0
    assert theirs.output_stall_msecs == mine.output_stall_msecs == 12_000
    assert theirs.buffered_input_records == mine.buffered_input_records > 0
    mine_outputs = (await ours.stats("orders")).outputs
    assert [o.paused for o in stats.outputs] == [o.paused for o in mine_outputs] == [True]
    await call(pipeline.start_output_connector, "totals", "delta")
    assert [o.paused for o in (await ours.stats("orders")).outputs] == [False]


async def test_checkpoint_status_agrees(sim: Simulator, official: OfficialClient, ours: FelderaClient) -> None:
    pipeline = await call(Pipeline.get, "orders", official)
    newest = sim.checkpoint("orders")
    failed = sim.fail_checkpoint("orders", "disk full")
    raw = await call(official.checkpoint_pipeline_status, "orders")
    mine = await ours.checkpoint_status("orders")
    assert raw["success"] == mine.success == newest
    assert raw["failure"]["sequence_number"] == mine.failure.sequence_number == failed  # type: ignore[union-attr]
    assert await call(pipeline.checkpoint_status, newest) == CheckpointStatus.Success
    failure = await call(pipeline.checkpoint_status, failed)
    assert failure == CheckpointStatus.Failure and failure.error == "disk full"
    assert await call(pipeline.checkpoint_status, failed + 1) == CheckpointStatus.InProgress


async def test_checkpoint_sync_is_requested_and_its_status_read_alike(
    sim: Simulator, official: OfficialClient, ours: FelderaClient
) -> None:
    pipeline = await call(Pipeline.get, "orders", official)
    sim.set_sync_mode("orders", "pending")
    response = await call(pipeline.sync_checkpoint_response)
    incarnation = sim.pipeline("orders").incarnation
    assert response == {
        "checkpoint_uuid": sim.pipeline("orders").stored_checkpoints[-1]["uuid"],
        "incarnation_uuid": incarnation,
    }
    checkpoint = response["checkpoint_uuid"]
    assert await call(pipeline.sync_checkpoint_status, checkpoint, incarnation) == CheckpointStatus.InProgress
    sim.succeed_sync("orders")
    assert await call(pipeline.sync_checkpoint_status, checkpoint, incarnation) == CheckpointStatus.Success
    assert (await ours.sync_status("orders", incarnation)).success == checkpoint
    assert await call(pipeline.last_successful_checkpoint_sync) == uuid.UUID(checkpoint)

    sim.checkpoint("orders")
    sim.set_sync_mode("orders", "failure")
    with pytest.raises(RuntimeError, match="access denied"):
        await call(pipeline.sync_checkpoint, wait=True, timeout_s=5)
    assert (await ours.sync_status("orders")).failure is not None

    sim.restart_pipeline("orders")
    with pytest.raises(FelderaAPIError) as official_error:
        await call(official.sync_checkpoint_status, "orders", incarnation)
    with pytest.raises(ApiError) as our_error:
        await ours.sync_status("orders", incarnation)
    assert official_error.value.status_code == our_error.value.status == 400
    assert official_error.value.error_code == our_error.value.error_code == "IncarnationUuidMismatch"


async def test_connector_stats_agree_including_a_quoted_table(official: OfficialClient, ours: FelderaClient) -> None:
    pipeline = await call(Pipeline.get, "orders", official)
    for table, connector in (("orders", "kafka"), ("ORDERS", "unnamed-0"), ('"Customers"', "cdc")):
        status = await call(pipeline.input_connector_stats, table, connector)
        mine = await ours.input_connector_stats("orders", table, connector)
        assert status.endpoint_name == mine.endpoint_name
        assert status.metrics.total_records == mine.metrics.total_records
        assert len(status.parse_errors) == len(mine.parse_errors or [])
    quoted = await call(pipeline.input_connector_stats, '"Customers"', "cdc")
    assert quoted.endpoint_name == "Customers.cdc"
    assert quoted.metrics.num_parse_errors == 2 and quoted.health.status == "Healthy"
    assert [e.message for e in quoted.parse_errors] == ["invalid record", "invalid record"]
    output = await call(pipeline.output_connector_stats, "totals", "delta")
    mine_out = await ours.output_connector_stats("orders", "totals", "delta")
    assert output.endpoint_name == mine_out.endpoint_name == "totals.delta"
    assert output.metrics.transmitted_records == mine_out.metrics.transmitted_records
    with pytest.raises(FelderaAPIError) as missing:
        await call(pipeline.input_connector_stats, "customers", "cdc")  # unquoted: lower-cased, no such table
    assert (missing.value.status_code, missing.value.error_code) == (404, "UnknownInputEndpoint")


async def test_an_unknown_pipeline_is_a_404_to_both_clients(official: OfficialClient, ours: FelderaClient) -> None:
    with pytest.raises(FelderaAPIError) as official_error:
        await call(Pipeline.get, "missing", official)
    with pytest.raises(ApiError) as our_error:
        await ours.checkpoint_status("missing")  # the exporter never reads one pipeline: it lists them
    assert official_error.value.status_code == our_error.value.status == 404
    assert official_error.value.error_code == our_error.value.error_code == "UnknownPipelineName"
    with pytest.raises(FelderaAPIError) as stats_error:
        await call(official.get_pipeline_stats, "missing")
    assert stats_error.value.status_code == 404


async def test_coordination_is_a_spec_status_the_official_client_does_not_know(
    sim: Simulator, official: OfficialClient, ours: FelderaClient
) -> None:
    sim.set_status("standby", "Coordination")
    pipeline = await call(Pipeline.get, "standby", official)
    with pytest.raises(ValueError, match="Coordination"):
        await call(pipeline.status)
    assert (await listed(ours, "standby")).deployment_status == "Coordination"


async def test_after_an_upgrade_update_runtime_recompiles_a_stopped_pipeline_only(
    sim: Simulator, official: OfficialClient, ours: FelderaClient
) -> None:
    sim.upgrade_platform("v0.341.0")
    assert (await call(official.get_config)).version == "0.341.0"
    assert {p.name: p.platform_version for p in (await ours.list_pipelines("status")).pipelines}[
        "idle"
    ] == "0.340.0+enterprise"
    await call(official.update_pipeline_runtime, "idle")
    with pytest.raises(FelderaAPIError) as running:
        await call(official.update_pipeline_runtime, "orders")
    assert (running.value.status_code, running.value.error_code) == (400, "UpdateRestrictedToStopped")
    versions = {p.name: p.platform_version for p in (await ours.list_pipelines("status")).pipelines}
    assert (versions["idle"], versions["orders"], versions["old-runtime"]) == (
        "0.341.0+enterprise",
        "0.340.0+enterprise",
        "0.337.0+enterprise",
    )
    idle = await call(Pipeline.get, "idle", official)
    assert await call(idle.platform_version) == "0.341.0+enterprise"
