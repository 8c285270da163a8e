"""Fault matrix: the exporter against the simulator with injected failures, scraped over real HTTP.

Each case states the expected ``/metrics`` outcome (staleness rule: a failed list call means ``feldera_up 0``
and no pipeline series for that target; a failed sub-request omits only that part and is counted).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import Exporter
from exporter.config import build_settings
from exporter.simulator import Fault, ManualClock, Scenario, Simulator
from tests.conftest import free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
SCENARIO: dict[str, Any] = {
    "pipelines": [
        {
            "name": "orders",
            "status": "Running",
            "checkpoints": 1,
            "tables": [{"name": "orders", "connectors": ["kafka-in"]}],
            "views": [{"name": "totals", "connectors": ["delta-out"]}],
        },
        {"name": "idle", "status": "Stopped"},
    ]
}


def _settings(url: str, **target: Any) -> Any:
    return build_settings(
        {"web": {"listen_address": "127.0.0.1:0"}, "targets": [{"url": url, "timeout": "1s", **target}]}, env={}
    )


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(Scenario.model_validate(SCENARIO), clock=ManualClock()) as simulator:
        yield simulator


async def _scrape(exporter: Exporter) -> tuple[str, Samples]:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{exporter.url}/metrics")).text
        openmetrics = await client.get(f"{exporter.url}/metrics", headers={"Accept": "application/openmetrics-text"})
    list(parse_openmetrics(openmetrics.text))  # must parse too
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return text, samples


def _pipelines(samples: Samples) -> set[str]:
    return {dict(labels)["pipeline_name"] for _, labels in samples if "pipeline_name" in dict(labels)}


def _requests(samples: Samples, endpoint: str) -> dict[str, float]:
    return {
        dict(labels)["code"]: value
        for (name, labels), value in samples.items()
        if name == "feldera_exporter_api_requests_total" and dict(labels)["endpoint"] == endpoint
    }


async def _cycle(settings: Any) -> tuple[str, Samples]:
    exporter = Exporter(settings)
    await exporter.start(poll_loop=False)
    try:
        await exporter.poll_once()
        return await _scrape(exporter)
    finally:
        await exporter.stop()


async def test_api_down_reports_up_0_and_no_pipeline_series() -> None:
    _, samples = await _cycle(_settings(f"http://127.0.0.1:{free_port()}"))
    assert samples[("feldera_up", frozenset({("target", "default")}))] == 0
    assert _pipelines(samples) == set()
    assert _requests(samples, "list_pipelines").keys() == {"connection_error"}


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault("status", path="/v0/pipelines", status=500), "500"),
        (Fault("html", path="/v0/pipelines"), "502"),
        (Fault("truncated", path="/v0/pipelines"), "invalid_response"),
        (Fault("malformed", path="/v0/pipelines"), "invalid_response"),
        (Fault("hang", path="/v0/pipelines"), "timeout"),
    ],
    ids=["500", "502-html", "truncated-json", "malformed-json", "hang-past-timeout"],
)
async def test_failed_list_call_reports_up_0_no_pipeline_series_and_counts_the_code(
    sim: Simulator, fault: Fault, code: str
) -> None:
    sim.add_fault(fault)
    _, samples = await _cycle(_settings(sim.url, timeout="0.3s"))
    assert samples[("feldera_up", frozenset({("target", "default")}))] == 0
    assert _pipelines(samples) == set()
    assert _requests(samples, "list_pipelines").keys() == {code}
    assert samples[("feldera_exporter_polls_total", frozenset({("target", "default"), ("result", "failure")}))] == 1


async def test_wrong_api_key_gives_401_and_up_0(tmp_path: Any) -> None:
    scenario = Scenario.model_validate({**SCENARIO, "api_key": "apikey:right"})
    key_file = tmp_path / "key"
    key_file.write_text("apikey:wrong\n")
    async with Simulator(scenario, clock=ManualClock()) as simulator:
        text, samples = await _cycle(_settings(simulator.url, api_key_file=str(key_file)))
    assert samples[("feldera_up", frozenset({("target", "default")}))] == 0
    assert _requests(samples, "list_pipelines").keys() == {"401"}
    assert "apikey:" not in text


async def test_slow_api_within_timeout_still_serves_every_pipeline(sim: Simulator) -> None:
    sim.add_fault(Fault("latency", path="/v0/pipelines*", seconds=0.2))
    _, samples = await _cycle(_settings(sim.url, timeout="2s"))
    assert samples[("feldera_up", frozenset({("target", "default")}))] == 1
    assert _pipelines(samples) == {"orders", "idle"}
    assert ("feldera_input_connector_fatal_error", _connector("orders.kafka-in", "orders", "kafka-in")) in samples


def _connector(endpoint: str, table: str, connector: str) -> frozenset[tuple[str, str]]:
    return frozenset(
        {
            ("target", "default"),
            ("pipeline_name", "orders"),
            ("endpoint", endpoint),
            ("table", table),
            ("connector", connector),
        }
    )


async def test_failed_sub_request_omits_only_that_part_and_is_counted(sim: Simulator) -> None:
    sim.add_fault(Fault("status", path="/v0/pipelines/orders/stats", status=500))
    _, samples = await _cycle(_settings(sim.url))
    orders = frozenset({("target", "default"), ("pipeline_name", "orders")})
    assert samples[("feldera_up", frozenset({("target", "default")}))] == 1
    assert ("feldera_pipeline_version", orders) in samples
    assert ("feldera_pipeline_checkpoint_failed", orders) in samples
    assert not any(name.startswith("feldera_input_connector_") for name, _ in samples)
    assert "500" in _requests(samples, "stats")


async def test_pipeline_deleted_mid_cycle_keeps_listed_series_then_vanishes(sim: Simulator) -> None:
    sim.add_fault(Fault("latency", path="/v0/pipelines/orders/checkpoint_status", seconds=0.3))
    exporter = Exporter(_settings(sim.url))
    await exporter.start(poll_loop=False)
    try:
        cycle = asyncio.create_task(exporter.poll_once())
        await sim.wait_for_requests("/v0/pipelines/orders/checkpoint_status")
        sim.delete_pipeline("orders")
        await cycle
        _, during = await _scrape(exporter)
        await exporter.poll_once()
        _, after = await _scrape(exporter)
    finally:
        await exporter.stop()
    orders = frozenset({("target", "default"), ("pipeline_name", "orders")})
    assert ("feldera_pipeline_version", orders) in during
    assert ("feldera_pipeline_checkpoint_failed", orders) not in during
    assert "404" in _requests(during, "checkpoint_status")
    assert _pipelines(after) == {"idle"}
    assert after[("feldera_up", frozenset({("target", "default")}))] == 1


WEIRD = 'we"ird\\name\nwith€ünï😀'


async def test_label_values_with_quotes_backslashes_newlines_and_unicode_round_trip(sim: Simulator) -> None:
    sim.create_pipeline({"name": WEIRD, "status": "Running", "tables": [{"name": "t", "connectors": [WEIRD]}]})
    text, samples = await _cycle(_settings(sim.url, labels={"site": 'a"b\\c\nd é'}))
    assert WEIRD in _pipelines(samples)
    identity = {("target", "default"), ("site", 'a"b\\c\nd é'), ("pipeline_name", WEIRD)}
    assert ("feldera_pipeline_version", frozenset(identity)) in samples
    assert any(dict(labels).get("connector") == WEIRD for _, labels in samples)
    # A raw newline in a label value would start a line that is neither a sample nor a comment.
    assert all(line.startswith(("#", "feldera_", "process_", "python_")) for line in text.splitlines())
