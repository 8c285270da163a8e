"""Feldera's own metrics beside the exporter's: the shipped scrape job for the manager's ``/v0/metrics``
(``prometheus/prometheus.yml``, job ``feldera-native``) scrapes the simulator's exposition into a real Prometheus,
where its series carry ``target`` and ``pipeline_id`` and join ``feldera_pipeline_info``."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from exporter.app import Exporter
from exporter.config import Settings
from exporter.simulator import Scenario, Simulator
from tests.conftest import eventually, free_port
from tests.test_alerts_e2e import process

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "prometheus" / "prometheus.yml"
PROMETHEUS = shutil.which("prometheus")
NATIVE_JOB = "feldera-native"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus binary not installed (./scripts/test installs it)"),
]

SCENARIO: dict[str, Any] = {
    "pipelines": [
        {
            "name": "orders",
            "status": "Running",
            "runtime_config": {"max_rss_mb": 8000},
            "rss_mb": 7000,
            "tables": [{"name": "t", "connectors": ["in"]}],
            "views": [{"name": "v", "connectors": ["out"]}],
        },
        {"name": "billing", "status": "Paused"},
        {"name": "archive", "status": "Stopped"},
    ]
}


def shipped_job(name: str) -> dict[str, Any]:
    config = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == name]
    return dict(job)


def test_the_shipped_native_job_moves_the_uuid_and_adds_target() -> None:
    """(``tests/test_alerts.py`` runs ``promtool check config`` on the whole file.)"""
    job = shipped_job(NATIVE_JOB)
    assert job["metrics_path"] == "/v0/metrics"
    assert [set(c["labels"]) for c in job["static_configs"]] == [{"target"}]
    assert job["metric_relabel_configs"] == [
        {"source_labels": ["pipeline"], "regex": "pipeline-(.+)", "target_label": "pipeline_id"},
        {"regex": "pipeline", "action": "labeldrop"},
    ]


def query(url: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5)
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def prometheus_config(exporter_port: int, feldera_url: str, target: str) -> dict[str, Any]:
    """Scrape the exporter, and Feldera's own ``/v0/metrics`` as ``target`` through the shipped native job, every
    second."""
    native = shipped_job(NATIVE_JOB)
    native["static_configs"] = [{"targets": [urlsplit(feldera_url).netloc], "labels": {"target": target}}]
    # every second as the exporter's job (shipped: 30 s, whose first scrape comes at a random phase within 30 s)
    native["scrape_interval"] = native["scrape_timeout"] = "1s"
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "feldera-exporter", "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]},
            native,
        ],
    }


@asynccontextmanager
async def running_prometheus(tmp_path: Path, config: dict[str, Any]) -> AsyncIterator[str]:
    """A real Prometheus with ``config`` (its TSDB and log in ``tmp_path``); yields its URL once ready."""
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    args = [
        str(PROMETHEUS),
        f"--config.file={path}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    async with process(args, tmp_path / "prometheus.log", f"http://127.0.0.1:{port}/-/ready"):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
async def prometheus(tmp_path: Path) -> AsyncIterator[tuple[str, Simulator]]:
    async with Simulator(Scenario.model_validate(SCENARIO)) as sim:
        settings = Settings.model_validate(
            {
                "web": {"listen_address": "127.0.0.1:0"},
                "poll": {"interval": "1s"},
                "targets": [{"name": "prod", "url": sim.url}],
            }
        )
        async with (
            Exporter(settings) as exporter,
            running_prometheus(tmp_path, prometheus_config(exporter.port, sim.url, "prod")) as url,
        ):
            yield url, sim


@pytest.mark.slow
async def test_native_series_carry_target_and_pipeline_id_and_join_the_pipeline_info(
    prometheus: tuple[str, Simulator],
) -> None:
    url, sim = prometheus
    joined = (
        "memory_pressure * on (target, pipeline_id) group_left (platform_version)"
        " max by (target, pipeline_id, platform_version) (feldera_pipeline_info)"
    )

    def both_joined() -> bool:
        try:
            return len(query(url, joined)) == 2
        except httpx.HTTPError:
            return False

    await eventually(lambda: asyncio.to_thread(both_joined), "the native series joined with feldera_pipeline_info")
    rows = {row["metric"]["pipeline_name"]: row for row in await asyncio.to_thread(query, url, joined)}
    assert set(rows) == {"orders", "billing"}  # only Running and Paused pipelines have native metrics
    for name, row in rows.items():
        assert row["metric"]["pipeline_id"] == sim.pipeline(name).id
        assert row["metric"]["target"] == "prod" and "pipeline" not in row["metric"]
        assert row["metric"]["platform_version"] == sim.pipeline(name).platform_version
    assert rows["orders"]["value"][1] == "2"  # high, as feldera_pipeline_memory_pressure says
    ours = await asyncio.to_thread(query, url, 'feldera_pipeline_memory_pressure{pipeline_name="orders"} == 1')
    assert [row["metric"]["status"] for row in ours] == ["high"]
    up = await asyncio.to_thread(query, url, f'up{{job="{NATIVE_JOB}"}}')
    assert [row["value"][1] for row in up] == ["1"]  # HELP and TYPE repeated per pipeline: the scrape still parses
    connectors = await asyncio.to_thread(
        query, url, 'input_connector_records_total{target="prod", pipeline_name="orders"}'
    )
    assert [row["metric"]["endpoint"] for row in connectors] == ["t.in"]
