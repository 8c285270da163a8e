"""Every dashboard query, variables substituted, against a real Prometheus scraping the exporter + simulator."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import shutil
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from exporter.app import Exporter
from exporter.config import Settings
from exporter.mixin import dashboards, rules
from exporter.simulator import Simulator
from exporter.simulator.demo import DemoDriver, demo_scenario
from tests.conftest import eventually
from tests.test_native_metrics_e2e import prometheus_config, running_prometheus

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = shutil.which("prometheus")
DETAIL_PIPELINE = "orders"
"""A running demo pipeline with input and output connectors: the pipeline detail dashboard shows it."""

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus binary not installed (./scripts/test installs it)"),
]


def load_grafana_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"grafana_{name}", ROOT / "grafana" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


preview = load_grafana_module("preview")


@dataclass(frozen=True)
class Stack:
    prometheus_url: str
    started: float


async def _drive(driver: DemoDriver) -> None:
    """The demo story, one step per simulated tick (this is the workload, not a wait)."""
    while True:
        driver.step()
        await asyncio.sleep(1.0)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with Simulator(demo_scenario()) as sim:
        settings = Settings.model_validate(
            {
                "web": {"listen_address": "127.0.0.1:0"},
                "poll": {"interval": "1s"},
                "targets": [{"name": "demo", "url": sim.url}],
            }
        )
        async with Exporter(settings) as exporter:
            driver_task = asyncio.create_task(_drive(DemoDriver(sim)))
            try:
                async with running_prometheus(tmp_path, prometheus_config(exporter.port, sim.url, "demo")) as url:
                    yield Stack(url, time.time())
            finally:
                driver_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await driver_task


def has_samples(url: str, expr: str, minimum: int) -> bool:
    try:
        response = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5)
    except httpx.TransportError:
        return False
    return response.status_code == 200 and len(response.json()["data"]["result"]) >= minimum


async def test_every_panel_query_parses_and_key_panels_return_data(stack: Stack, tmp_path: Path) -> None:
    url = stack.prometheus_url
    # Rates need at least two samples inside the window; 20 scrapes at 1s give every query something to chew on.
    await eventually(
        lambda: asyncio.to_thread(has_samples, url, 'count_over_time(feldera_up{target="demo"}[1m]) >= 20', 1),
        "20 scrapes of the exporter",
        deadline=90,
    )
    await eventually(
        lambda: asyncio.to_thread(
            has_samples, url, f'feldera_input_connector_records_total{{pipeline_name="{DETAIL_PIPELINE}"}}', 1
        ),
        "connector counters of the detail pipeline",
        deadline=60,
    )
    end = time.time()
    start = stack.started
    shipped = dashboards.Scope.of(rules.load_config(rules.DEFAULT_CONFIG))
    key = dashboards.key_panels(shipped)
    queries_run = 0
    empty_key_panels: list[str] = []
    empty_native: list[str] = []
    with httpx.Client(timeout=30) as client:
        prometheus = preview.Prometheus(url, client)
        for uid, dashboard in preview.load_dashboards().items():
            values = preview.variable_values(dashboard, DETAIL_PIPELINE, rate_interval="5s", time_range="1m")
            # run_queries raises on any query Prometheus does not answer with HTTP 200 (parse or evaluation error)
            results = await asyncio.to_thread(preview.run_queries, prometheus, dashboard, values, start, end, 1.0)
            queries_run += len(preview.panel_queries(dashboard))
            for panel in preview.data_panels(dashboard):
                if panel["title"] in key[uid] and not results[panel["id"]]:
                    empty_key_panels.append(f"{uid}: {panel['title']}")
            for query in preview.panel_queries(dashboard):  # Feldera's own series, on their own
                if shipped.native in query.expr:
                    expr = preview.substitute(query.expr, values)
                    if not await asyncio.to_thread(has_samples, url, expr, 1):
                        empty_native.append(f"{uid}: {query.title} [{query.ref_id}]")
            preview.draw_dashboard(dashboard, results, tmp_path / f"{uid}.png", subtitle="e2e")
            assert (tmp_path / f"{uid}.png").stat().st_size > 10_000
    assert queries_run == sum(len(preview.panel_queries(d)) for d in preview.load_dashboards().values())
    assert sum(len(panels) for panels in key.values()) >= 30
    assert empty_key_panels == []
    assert empty_native == []
