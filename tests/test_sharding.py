"""Sharding (docs/sharding.md): how pipelines are split over processes, and the Prometheus side as documented.

The per-shard request split is checked against the simulator's request log; the Prometheus configs in the doc
with promtool and, for the static one, with a real Prometheus scraping three in-process shards, where the doc's
coverage queries and the shard alerts' expressions are evaluated on what the exporters really serve.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.app import Exporter
from exporter.config import Settings, build_settings
from exporter.mixin.rules import DEFAULT_CONFIG as RULES_CONFIG
from exporter.plan import shard_of
from exporter.simulator import ManualClock, Scenario, Simulator
from tests.conftest import new_poller
from tests.test_alerts_e2e import PROMETHEUS_BIN, eventually, free_port, process, query

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "sharding.md"
RULES = ROOT / "prometheus" / "alerts.yaml"
RULE_TESTS = ROOT / "tests" / "rules" / "sharding.yaml"
EXPORTER_JOB = yaml.safe_load(RULES_CONFIG.read_text(encoding="utf-8"))["exporter_job"]
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
CHECKED = re.compile(r"<!-- checked by tests/test_sharding\.py: ([^>]*?) -->\n```yaml\n(.*?)```", re.DOTALL)
PIPELINES = 30
SHARDS = 3


def documented_configs() -> list[tuple[str, str]]:
    """(what the marker says is checked, YAML) of every marked Prometheus config in docs/sharding.md."""
    return CHECKED.findall(DOC.read_text(encoding="utf-8"))


def settings_for(url: str, **raw: Any) -> Settings:
    return build_settings({"web": {"listen_address": "127.0.0.1:0"}, "targets": [{"url": url}], **raw}, env={})


def scenario() -> Scenario:
    return Scenario.generate(PIPELINES, tables=1, views=1)


# ---- the split --------------------------------------------------------------------------------------------------


def test_shard_of_is_pinned_so_pipelines_never_move_between_releases() -> None:
    # CRC-32 (zlib/IEEE) of the UTF-8 name modulo n; a change here would move pipelines between shards on upgrade.
    names = ["orders", "billing", "fraud-detection", "Ünïcödé", ""]
    assert [[shard_of(name, n) for n in (2, 3, 4, 7)] for name in names] == [
        [0, 2, 2, 5],
        [0, 0, 2, 1],
        [1, 0, 3, 4],
        [1, 0, 3, 6],
        [0, 0, 0, 0],
    ]


@pytest.mark.parametrize("shards", [2, 3, 4, 8])
def test_adding_a_shard_moves_about_n_over_n_plus_one_of_the_pipelines(shards: int) -> None:
    names = [f"pipeline-{i}" for i in range(6000)]
    moved = sum(shard_of(name, shards) != shard_of(name, shards + 1) for name in names) / len(names)
    assert abs(moved - shards / (shards + 1)) < 0.03


async def _requests(shards: int) -> tuple[dict[str, int], list[set[str]]]:
    """Request counts at the simulator after one cycle of every shard, and the pipelines each shard returned."""
    async with Simulator(scenario(), clock=ManualClock()) as sim:
        polled = []
        for shard in range(shards):
            sharding = {"shard": shard, "total_shards": shards}
            poller = new_poller(settings_for(sim.url, sharding=sharding, collectors={"connector_errors": True}))
            try:
                snapshot = await poller.poll_once()
            finally:
                await poller.aclose()
            assert (snapshot.shard, snapshot.total_shards) == (shard, shards)
            polled.append({p.name for p in snapshot.targets[0].pipelines})
        return dict(sim.request_counts), polled


async def test_every_shard_lists_and_checks_cluster_health_and_each_pipeline_is_asked_by_one_shard() -> None:
    alone, (everything,) = await _requests(1)
    sharded, polled = await _requests(SHARDS)
    assert len(everything) == PIPELINES
    # the pipelines are partitioned: each in exactly one shard, the one shard_of names
    assert sorted(name for names in polled for name in names) == sorted(everything)
    for shard, names in enumerate(polled):
        assert names and all(shard_of(name, SHARDS) == shard for name in names)
    # target-level calls: once per shard; per-pipeline calls: exactly as often as a single exporter makes them
    target_calls = {"GET /v0/pipelines", "GET /v0/cluster_healthz", "GET /v0/config"}
    assert {k: sharded[k] for k in target_calls} == {k: SHARDS for k in target_calls}
    assert {k: alone[k] for k in target_calls} == {k: 1 for k in target_calls}
    per_pipeline = {k: v for k, v in sharded.items() if k not in target_calls}
    assert per_pipeline == {k: v for k, v in alone.items() if k not in target_calls}
    assert any(k.endswith("/stats") for k in per_pipeline) and any(k.endswith("_status") for k in per_pipeline)


# ---- the documented Prometheus configs and queries ------------------------------------------------------------


def test_the_doc_marks_the_static_and_the_kubernetes_config() -> None:
    configs = [yaml.safe_load(text) for _, text in documented_configs()]
    assert len(configs) == 2
    assert [
        ("static_configs" in c["scrape_configs"][0], "kubernetes_sd_configs" in c["scrape_configs"][0]) for c in configs
    ] == [
        (True, False),
        (False, True),
    ]


@pytest.mark.parametrize("index", [0, 1])
def test_documented_prometheus_config_passes_promtool_with_all_shards_in_the_alerting_job(
    index: int, tmp_path: Path
) -> None:
    _, text = documented_configs()[index]
    config = yaml.safe_load(text)
    checked = yaml.safe_load(text)
    for job in checked["scrape_configs"]:
        if job.pop("kubernetes_sd_configs", None) is not None:
            # This promtool (Debian's build) has no Kubernetes service discovery: check the rest with static targets.
            job["static_configs"] = [{"targets": ["shard.example.internal:10027"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(checked), encoding="utf-8")
    shutil.copy(RULES, tmp_path / "alerts.yaml")
    result = subprocess.run(
        [PROMTOOL, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (job,) = config["scrape_configs"]  # one job for every shard
    assert job["job_name"] == EXPORTER_JOB
    if "static_configs" in job:
        assert config["rule_files"] == ["alerts.yaml"]
        (group,) = job["static_configs"]
        assert len(group["targets"]) == SHARDS
    else:
        keep = next(r for r in job["relabel_configs"] if r["action"] == "keep")
        service = yaml.safe_load((ROOT / "deploy/kubernetes/sharded/service.yaml").read_text(encoding="utf-8"))
        port = service["spec"]["ports"][0]["name"]
        assert re.fullmatch(keep["regex"], f"{service['metadata']['name']};{port}")


def test_every_unit_tested_query_is_in_the_doc_and_the_doc_s_checks_are_unit_tested() -> None:
    doc = " ".join(DOC.read_text(encoding="utf-8").split())
    exprs = [
        " ".join(check["expr"].split())
        for case in yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
        for check in case.get("promql_expr_test", [])
    ]
    assert exprs
    missing = [expr for expr in exprs if f"`{expr}`" not in doc and expr not in doc]
    assert missing == []
    checks = re.findall(r"^\| `([^`]+)` \|", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert checks and set(checks) <= set(exprs)


# ---- a real Prometheus scraping three shards ----------------------------------------------------------------


def _rule_expr(alertname: str) -> str:
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return next(r["expr"] for g in rules["groups"] for r in g["rules"] if r.get("alert") == alertname)


def _values(result: list[dict[str, Any]]) -> list[tuple[dict[str, str], float]]:
    return sorted(((s["metric"], float(s["value"][1])) for s in result), key=lambda item: sorted(item[0].items()))


@pytest.fixture
async def shards_and_prometheus(tmp_path: Path) -> AsyncIterator[tuple[list[Exporter], str]]:
    async with AsyncExitStack() as stack:
        sim = await stack.enter_async_context(Simulator(scenario()))
        exporters = []
        for shard in range(SHARDS):
            settings = settings_for(
                sim.url, poll={"interval": "500ms"}, sharding={"shard": shard, "total_shards": SHARDS}
            )
            exporter = Exporter(settings)
            await exporter.start()
            stack.push_async_callback(exporter.stop)
            exporters.append(exporter)
        # The documented static config, with the example hosts replaced by the shards and faster intervals.
        (_, text), _ = documented_configs()
        config = yaml.safe_load(text)
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["rule_files"] = [str(RULES)]
        (job,) = config["scrape_configs"]
        job["scrape_timeout"] = "1s"
        job["static_configs"][0]["targets"] = [e.url.removeprefix("http://") for e in exporters]
        prom_config = tmp_path / "prometheus.yml"
        prom_config.write_text(yaml.safe_dump(config), encoding="utf-8")
        port = free_port()
        await stack.enter_async_context(
            process(
                [
                    PROMETHEUS_BIN,
                    f"--config.file={prom_config}",
                    f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                tmp_path / "prometheus.log",
                f"http://127.0.0.1:{port}/-/ready",
            )
        )
        yield exporters, f"http://127.0.0.1:{port}"


@pytest.mark.slow
@pytest.mark.e2e
async def test_one_job_over_three_shards_counts_every_pipeline_once_and_a_lost_shard_is_reported(
    shards_and_prometheus: tuple[list[Exporter], str],
) -> None:
    exporters, url = shards_and_prometheus

    async def all_scraped() -> bool:
        result = await query(url, "count(feldera_pipeline_info)")
        return bool(result) and float(result[0]["value"][1]) == PIPELINES

    await eventually(all_scraped, "Prometheus to see every pipeline")
    assert _values(await query(url, "count by (total_shards) (feldera_exporter_shard_info)")) == [
        ({"total_shards": str(SHARDS)}, SHARDS)
    ]
    assert await query(url, "count by (shard, total_shards) (feldera_exporter_shard_info) > 1") == []
    assert await query(url, "count by (target, pipeline_name) (feldera_pipeline_info) > 1") == []
    # target-level series: one per shard, one after aggregation by target
    assert _values(await query(url, "count by (job, target) (feldera_up)")) == [
        ({"job": EXPORTER_JOB, "target": "default"}, SHARDS)
    ]
    assert _values(await query(url, "min by (target) (feldera_up)")) == [({"target": "default"}, 1)]
    missing, duplicated = _rule_expr("FelderaExporterShardMissing"), _rule_expr("FelderaExporterShardDuplicated")
    assert await query(url, missing) == []
    assert await query(url, duplicated) == []

    await exporters[1].stop()  # the next scrape fails: shard 1's series go stale

    async def reported() -> list[dict[str, Any]]:
        return await query(url, missing)

    result = await eventually(reported, "the missing shard to show in FelderaExporterShardMissing's expression")
    assert _values(result) == [({"job": EXPORTER_JOB, "total_shards": str(SHARDS)}, SHARDS - 1)]
    assert await query(url, duplicated) == []
