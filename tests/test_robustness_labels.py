"""Label values from Feldera are capped at 1,024 bytes of UTF-8 on the whole path: a Feldera-like server answers
with long and multi-byte names (pipelines, connectors, error codes, the server's version), the exporter polls and
serves them, and a real Prometheus 2.42 with ``label_value_length_limit: 1024`` scrapes it. Prometheus counts that
limit in bytes (Go's ``len``) and drops the whole scrape for one longer value: with a cap of 1,024 *characters*,
one pipeline named ``€`` x 1,000 (3,000 bytes) took ``up`` to 0 and every series of the fleet with it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import yaml

from exporter.app import Exporter
from exporter.config import build_settings
from exporter.metrics.spec import MAX_LABEL_VALUE_BYTES
from tests.conftest import ScriptedFeldera, eventually, free_port, json_response, pipeline_json
from tests.test_alerts_e2e import PROMETHEUS_BIN, process, query

LONG_NAMES = (
    "é" * 600 + "€",  # two- and three-byte characters mixed, the cut between them (the running pipeline: its URL
    # stays under the reply server's 8,190-byte request line)
    "€" * 1_000,  # 1,000 characters, 3,000 bytes: under a character cap, over Prometheus' byte limit
    "😀" * 300,  # 4 bytes each
    "€" * 341 + "xy",  # 1,025 bytes: one over
    '"\\\n' * 340,  # escaped on the wire (1,360 bytes there), 1,020 bytes as Prometheus reads it: kept whole
    "\ud800" * 400,  # lone surrogates: U+FFFD, 3 bytes each
)
"""Names of up to 1,024 characters (a longer one makes its list entry malformed) with more bytes than that."""
FITS = ("€" * 341 + "x", "a" * 1_024, "fine")  # 1,024 bytes exactly, and shorter: served as they are
CUT = {name for name in LONG_NAMES if len(name.replace("\ud800", "\ufffd").encode()) > MAX_LABEL_VALUE_BYTES}


@pytest.fixture
async def hostile_names(feldera: ScriptedFeldera) -> ScriptedFeldera:
    names = (*LONG_NAMES, *FITS)
    feldera.list_pipelines(
        *(pipeline_json(name, runtime=None) for name in names[1:]),
        pipeline_json(names[0], deployment_error={"error_code": "E" + "ü" * 2_000, "message": "m"}),
    )
    inputs = [{"endpoint_name": f"t.{name}", "config": {"stream": "t"}} for name in LONG_NAMES]
    feldera.routes[f"/v0/pipelines/{quote(names[0])}/stats"] = json_response({"inputs": inputs, "outputs": []})
    feldera.routes["/v0/config"] = json_response({"version": "ö" * 700, "edition": "Open source"})
    feldera.routes["/v0/cluster_healthz"] = json_response({"all_healthy": True})
    return feldera


@pytest.fixture
async def exporter(hostile_names: ScriptedFeldera) -> AsyncIterator[Exporter]:
    settings = build_settings(
        {
            "web": {"listen_address": "127.0.0.1:0"},
            "poll": {"interval": "1s"},
            "targets": [{"url": hostile_names.url, "labels": {"site": "€" * 400}}],
            "collectors": {"checkpoints": False, "checkpoint_sync": False},
        },
        env={},
    )
    async with Exporter(settings) as running:
        await eventually(lambda: running.ready, "the first cycle")
        yield running


@pytest.mark.slow
@pytest.mark.e2e
async def test_prometheus_with_a_1024_byte_label_limit_ingests_every_series_of_hostile_names(
    exporter: Exporter, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "prometheus.yml"
    job = {
        "job_name": "exporter",
        "label_value_length_limit": MAX_LABEL_VALUE_BYTES,
        "static_configs": [{"targets": [exporter.url.removeprefix("http://")]}],
    }
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1s"}, "scrape_configs": [job]}))
    url = f"http://127.0.0.1:{port}"
    args = [
        PROMETHEUS_BIN,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    async with process(args, tmp_path / "prometheus.log", f"{url}/-/ready"):

        async def scraped() -> list[dict[str, object]]:
            async with httpx.AsyncClient() as http:
                targets = (await http.get(f"{url}/api/v1/targets")).json()["data"]["activeTargets"]
            return [t for t in targets if t["lastScrape"] != "0001-01-01T00:00:00Z"]

        (target,) = await eventually(scraped, "a scrape")
        assert (target["health"], target["lastError"]) == ("up", "")
        # the target's status is updated before the scrape's samples are committed; `up` is committed with them (one
        # appender, isolated: a query sees all of a scrape or none of it)
        await eventually(lambda: query(url, 'up{job="exporter"}'), "the scrape's samples stored")
        pipelines = await query(url, "feldera_pipeline_info")
        connectors = await query(url, "feldera_input_connector_paused")
        server = await query(url, "feldera_server_info")
        errors = await query(url, "feldera_pipeline_deployment_error_info")

    names = [series["metric"]["pipeline_name"] for series in pipelines]
    assert len(names) == len(set(names)) == len(LONG_NAMES) + len(FITS)  # cut values stay distinct
    assert set(FITS) <= set(names)
    assert sum(bool(re.search("~[0-9a-f]{8}$", name)) for name in names) == len(CUT)  # each cut: its hash
    assert len({series["metric"]["connector"] for series in connectors}) == len(LONG_NAMES)
    values = [
        value
        for found in (pipelines, connectors, server, errors)
        for series in found
        for value in series["metric"].values()
    ]
    assert all(len(value.encode()) <= MAX_LABEL_VALUE_BYTES for value in values)
