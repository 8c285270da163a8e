"""Server metrics (GET /v0/config): version, edition, licence, update check and runtime drift, from a poll cycle
against the simulator over HTTP, and what is omitted when a fact is unknown."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from golden.snapshots import parsed_families

from exporter.config import build_settings
from exporter.metrics import families
from exporter.metrics.server import normalized_version
from exporter.models import Configuration, Pipeline
from exporter.simulator import Fault, ManualClock, Scenario, Simulator
from exporter.snapshot import PipelineSnapshot, RequestCount, Snapshot, TargetSnapshot
from tests.conftest import new_poller

START = 1_767_225_600.0
SERVER_SERIES = (
    "feldera_server_info",
    "feldera_server_license_valid",
    "feldera_server_license_trial",
    "feldera_server_license_expiry_timestamp_seconds",
    "feldera_server_license_reminder_timestamp_seconds",
    "feldera_server_update_available",
    "feldera_pipeline_runtime_outdated",
)
UPGRADED: dict[str, Any] = {
    "platform_version": "0.340.0",
    "platform_version_suffix": "1a2b3c",  # pipelines report 0.340.0+enterprise.1a2b3c, /v0/config 0.340.0
    "server": {"license": "trial", "license_expires_in_days": 10, "latest_version": "0.341.0"},
    "pipelines": [
        {"name": "orders", "status": "Running"},
        {"name": "legacy", "platform_version": "0.337.0+enterprise", "status": "Running"},
        {"name": "parked", "platform_version": "0.337.0+enterprise.5c7931d", "status": "Stopped"},
        {
            "name": "pinned",
            "platform_version": "0.330.0+enterprise",
            "runtime_version": "v0.330.0",
            "status": "Stopped",
        },
    ],
}


def samples(snapshot: Snapshot, disabled: frozenset[str] = frozenset()) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for family in parsed_families(snapshot, disabled):
        for sample in family.samples:
            out.setdefault(sample.name, []).append({**sample.labels, "value": sample.value})
    return out


async def poll(
    scenario: dict[str, Any],
    collectors: dict[str, bool] | None = None,
    faults: tuple[Fault, ...] = (),
    seen: dict[str, int] | None = None,
) -> Snapshot:
    """One poll cycle against the simulator; ``seen`` receives the simulator's request counts."""
    async with Simulator(Scenario.model_validate(scenario), clock=ManualClock(START)) as simulator:
        for fault in faults:
            simulator.add_fault(fault)
        raw = {"web": {"listen_address": "127.0.0.1:0"}, "targets": [{"url": simulator.url}]}
        settings = build_settings({**raw, "collectors": collectors or {}}, env={})
        poller = new_poller(settings)
        try:
            snapshot = await poller.poll_once()
        finally:
            await poller.aclose()
        if seen is not None:
            seen.update(simulator.request_counts)
    return snapshot


async def test_an_upgraded_enterprise_server_exports_version_licence_update_and_drift() -> None:
    got = samples(await poll(UPGRADED))
    (info,) = got["feldera_server_info"]
    assert (info["version"], info["edition"], info["value"]) == ("0.340.0", "Enterprise", 1.0)
    assert (info["revision"], info["runtime_revision"] != "") == ("1a2b3c", True)
    assert [s["value"] for s in got["feldera_server_license_valid"]] == [1.0]
    assert [s["value"] for s in got["feldera_server_license_trial"]] == [1.0]
    assert [s["value"] for s in got["feldera_server_license_expiry_timestamp_seconds"]] == [START + 10 * 86400]
    assert [s["value"] for s in got["feldera_server_license_reminder_timestamp_seconds"]] == [START - 20 * 86400]
    assert [(s["latest_version"], s["value"]) for s in got["feldera_server_update_available"]] == [("0.341.0", 1.0)]
    drift = {s["pipeline_name"]: s["value"] for s in got["feldera_pipeline_runtime_outdated"]}
    assert drift == {"orders": 0.0, "legacy": 1.0, "parked": 1.0, "pinned": 0.0}


async def test_the_enterprise_dev_edition_is_an_enterprise_edition_with_a_licence() -> None:
    snapshot = await poll({"edition": "enterprise_dev"})
    got = samples(snapshot)
    assert [s["edition"] for s in got["feldera_server_info"]] == ["EnterpriseDev"]
    assert [s["value"] for s in got["feldera_server_license_valid"]] == [1.0]
    server = snapshot.targets[0].server
    assert server is not None and server.enterprise


async def test_the_open_source_edition_has_no_licence_series() -> None:
    got = samples(await poll({"edition": "community", "server": {"latest_version": "0.337.0"}}))
    assert [s["edition"] for s in got["feldera_server_info"]] == ["Open source"]
    assert [(s["latest_version"], s["value"]) for s in got["feldera_server_update_available"]] == [("0.337.0", 0.0)]
    assert not any(name.startswith("feldera_server_license") for name in got)


@pytest.mark.parametrize("license", ["invalid", "unconfirmed"])
async def test_a_licence_the_server_cannot_confirm_is_invalid_without_expiry_or_trial(license: str) -> None:
    got = samples(await poll({"server": {"license": license}}))
    assert [s["value"] for s in got["feldera_server_license_valid"]] == [0.0]
    for name in ("trial", "expiry_timestamp_seconds", "reminder_timestamp_seconds"):
        assert f"feldera_server_license_{name}" not in got
    assert "feldera_server_update_available" not in got  # no update check ran


async def test_a_failed_config_call_omits_the_server_series_only() -> None:
    seen: dict[str, int] = {}
    snapshot = await poll(UPGRADED, faults=(Fault("status", path="/v0/config", status=500),), seen=seen)
    got = samples(snapshot)
    assert not [name for name in got if name in SERVER_SERIES]
    assert {s["pipeline_name"] for s in got["feldera_pipeline_info"]} == {"orders", "legacy", "parked", "pinned"}
    assert seen["GET /v0/config"] == 1  # a 500 is not retried
    assert RequestCount("config", "500", 1) in snapshot.targets[0].exporter.requests


async def test_the_server_group_switched_off_makes_no_config_call() -> None:
    seen: dict[str, int] = {}
    got = samples(await poll(UPGRADED, collectors={"server": False}, seen=seen))
    assert "GET /v0/config" not in seen
    assert not [name for name in got if name in SERVER_SERIES]


def _snapshot(config: dict[str, Any], *platform_versions: str, up: bool = True) -> Snapshot:
    pipelines = tuple(
        PipelineSnapshot(pipeline=Pipeline.model_validate({"name": f"p{i}", "platform_version": version}))
        for i, version in enumerate(platform_versions)
    )
    target = TargetSnapshot(name="t", up=up, pipelines=pipelines, server=Configuration.model_validate(config))
    return Snapshot(targets=(target,))


def test_a_target_that_is_down_serves_no_server_series() -> None:
    got = samples(_snapshot({"version": "0.340.0", "license_validity": {"Exists": {}}}, "0.337.0", up=False))
    assert not [name for name in got if name in SERVER_SERIES]


def test_an_unknown_licence_variant_or_update_shape_is_omitted_not_zero() -> None:
    config = {"version": "0.340.0", "license_validity": {"Expired": {}}, "update_info": {"latest_version": "1"}}
    got = samples(_snapshot(config))
    assert "feldera_server_license_valid" not in got
    assert "feldera_server_update_available" not in got
    assert [s["version"] for s in got["feldera_server_info"]] == ["0.340.0"]


def test_a_licence_without_expiry_is_valid_without_an_expiry_series() -> None:
    got = samples(_snapshot({"version": "1.0.0", "license_validity": {"Exists": {"is_trial": False}}}))
    assert [s["value"] for s in got["feldera_server_license_valid"]] == [1.0]
    assert [s["value"] for s in got["feldera_server_license_trial"]] == [0.0]
    assert "feldera_server_license_expiry_timestamp_seconds" not in got


def test_drift_ignores_a_leading_v_and_a_build_suffix_and_is_omitted_when_a_version_is_unknown() -> None:
    versions = ("v0.340.0", "0.340.0", "V0.339.0", "", "0.340.0+enterprise", "0.340.0+enterprise.1a2b3c", "0.339.0+x")
    got = samples(_snapshot({"version": "0.340.0"}, *versions))
    drift = {s["pipeline_name"]: s["value"] for s in got["feldera_pipeline_runtime_outdated"]}
    assert drift == {"p0": 0.0, "p1": 0.0, "p2": 1.0, "p4": 0.0, "p5": 0.0, "p6": 1.0}
    assert "feldera_pipeline_runtime_outdated" not in samples(_snapshot({"version": ""}, "0.340.0"))
    assert normalized_version(" v1.2.3+enterprise ") == "1.2.3"


def test_a_pipeline_that_pins_its_runtime_is_not_drift() -> None:
    pinned = Pipeline.model_validate(
        {"name": "pinned", "platform_version": "0.330.0", "program_config": {"runtime_version": "0.330.0"}}
    )
    target = TargetSnapshot(
        name="t",
        up=True,
        pipelines=(PipelineSnapshot(pipeline=pinned),),
        server=Configuration.model_validate({"version": "0.340.0"}),
    )
    got = samples(Snapshot(targets=(target,)))
    assert [s["value"] for s in got["feldera_pipeline_runtime_outdated"]] == [0.0]


def test_the_server_group_switched_off_emits_no_family() -> None:
    names = {family.name for family in families(_snapshot({"version": "1.0.0"}, "0.9.0"), frozenset({"server"}))}
    assert not names & set(SERVER_SERIES)


async def test_an_upgrade_marks_every_pipeline_outdated_until_update_runtime_recompiles_it() -> None:
    scenario = Scenario.model_validate(
        {"pipelines": [{"name": "orders", "status": "Running"}, {"name": "parked", "status": "Stopped"}]}
    )
    async with Simulator(scenario, clock=ManualClock(START)) as sim:
        settings = build_settings({"web": {"listen_address": "127.0.0.1:0"}, "targets": [{"url": sim.url}]}, env={})
        poller = new_poller(settings)

        async def cycle() -> tuple[str, dict[str, float]]:
            got = samples(await poller.poll_once())
            drift = {s["pipeline_name"]: s["value"] for s in got["feldera_pipeline_runtime_outdated"]}
            return got["feldera_server_info"][0]["version"], drift

        try:
            assert await cycle() == ("0.337.0", {"orders": 0.0, "parked": 0.0})
            sim.upgrade_platform("v0.338.0")
            assert await cycle() == ("0.338.0", {"orders": 1.0, "parked": 1.0})
            async with httpx.AsyncClient(base_url=sim.url) as http:
                assert (await http.post("/v0/pipelines/parked/update_runtime")).status_code == 200
                assert (await http.post("/v0/pipelines/orders/update_runtime")).status_code == 400  # running
            assert await cycle() == ("0.338.0", {"orders": 1.0, "parked": 0.0})
        finally:
            await poller.aclose()
