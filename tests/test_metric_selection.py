"""The metric allow/deny lists (``metrics:``, ``--metric-allowlist``/``--metric-denylist``) and the lean config.

Denied families are not emitted and cost no API calls when a whole group goes; the shipped alert rules and
dashboards (parsed from the repository's files, so rules added later are covered) keep working with the default
and the lean configuration; the exporter warns once at start when its configuration drops one they use.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from exporter.app import Exporter, poll_plan
from exporter.cli import build_parser, main, settings_from
from exporter.config import ConfigError, Settings, build_settings, load_settings
from exporter.metrics import ALL_SPECS, emitted_specs, selection_warnings, shipped
from exporter.simulator import ManualClock, PipelineSpec, RelationSpec, Scenario, Simulator
from tests.conftest import load_module, metrics_after_one_cycle
from tests.test_config import problems_of

REPO = Path(__file__).resolve().parent.parent
ALL_NAMES = {spec.name for spec in ALL_SPECS}


script = load_module(REPO / "scripts" / "shipped_metrics.py", "shipped_metrics")


def settings(metrics: dict[str, Any] | None = None, url: str = "http://localhost:8080", **raw: Any) -> Settings:
    document = {"web": {"listen_address": "127.0.0.1:0"}, "targets": [{"url": url}], **raw}
    if metrics is not None:
        document["metrics"] = metrics
    return build_settings(document, env={})


def emitted(config: Settings) -> set[str]:
    return {spec.name for spec in emitted_specs(config)}


# ---- configuration ---------------------------------------------------------------------------------------------


def test_allowlist_and_denylist_are_mutually_exclusive() -> None:
    problems = problems_of({"metrics": {"allowlist": ["feldera_up"], "denylist": ["feldera_pipeline_.*"]}})
    assert problems == ["metrics: set either allowlist or denylist, not both"]


def test_a_bad_regex_is_a_config_error_naming_the_pattern() -> None:
    problems = problems_of({"metrics": {"denylist": ["feldera_(pipeline"]}})
    assert len(problems) == 1
    assert problems[0].startswith("metrics.denylist: invalid regular expression 'feldera_(pipeline'")


def test_patterns_are_fully_anchored() -> None:
    names = emitted(settings({"denylist": ["feldera_pipeline_status"]}))
    assert "feldera_pipeline_status" not in names
    assert "feldera_pipeline_status_since_timestamp_seconds" in names
    assert emitted(settings({"allowlist": ["pipeline_status"]})) == {"feldera_up"}


def test_allowlist_keeps_only_matching_families_and_feldera_up() -> None:
    names = emitted(settings({"allowlist": ["feldera_pipeline_(info|status)", "feldera_exporter_build_info"]}))
    assert names == {"feldera_up", "feldera_pipeline_info", "feldera_pipeline_status", "feldera_exporter_build_info"}


def test_feldera_up_cannot_be_denied_and_a_pattern_for_it_alone_is_reported() -> None:
    config = settings({"denylist": ["feldera_up", "feldera_exporter_.*"]})
    assert "feldera_up" in emitted(config)
    assert not any(name.startswith("feldera_exporter_") for name in emitted(config))
    assert "metrics: pattern 'feldera_up' matches no metric family (see docs/metrics.md)" in selection_warnings(config)


def test_flags_take_comma_separated_regexes_and_override_the_file(write_config: Any) -> None:
    path = write_config({"metrics": {"denylist": ["feldera_cluster_.*"]}})
    args = build_parser().parse_args(
        ["run", "--config", str(path), "--metric-denylist", "feldera_input_.*, feldera_output_.*"]
    )
    config = settings_from(args)
    assert config.metrics.denylist == ["feldera_input_.*", "feldera_output_.*"]
    assert "feldera_cluster_service_healthy" in emitted(config)


def test_allowlist_flag_with_a_denylist_in_the_file_is_an_error(write_config: Any) -> None:
    path = write_config({"metrics": {"denylist": ["feldera_cluster_.*"]}})
    args = build_parser().parse_args(["run", "--config", str(path), "--metric-allowlist", "feldera_pipeline_.*"])
    with pytest.raises(ConfigError) as caught:
        settings_from(args)
    assert caught.value.problems == ("metrics: set either allowlist or denylist, not both",)


def test_a_request_is_planned_only_while_a_family_read_from_it_is_emitted() -> None:
    everything = {"fault_tolerance", "checkpoint_status", "stats", "sync_status", "cluster", "server"}
    assert poll_plan(settings()).fields == everything  # connector_details: collectors.connector_errors is off
    config = settings({"denylist": ["feldera_cluster_.*", "feldera_pipeline_checkpoint_sync_.*"]})
    assert poll_plan(config).fields == everything - {"cluster", "sync_status"}
    assert "cluster" in poll_plan(settings({"denylist": ["feldera_cluster_service_healthy"]})).fields
    checkpoint_status = "feldera_pipeline_checkpoint_(last_.*|failed|failures_total|status_checked_timestamp_seconds)"
    assert poll_plan(settings({"denylist": [checkpoint_status]})).fields == everything - {"checkpoint_status"}


# ---- what is served and what is asked --------------------------------------------------------------------------


@pytest.fixture
async def running() -> AsyncIterator[Simulator]:
    pipeline = PipelineSpec(
        name="orders",
        status="Running",
        checkpoints=1,
        tables=[RelationSpec(name="t", connectors=["in"])],
        views=[RelationSpec(name="v", connectors=["out"])],
    )
    async with Simulator(Scenario(pipelines=[pipeline]), clock=ManualClock()) as simulator:
        yield simulator


async def test_denied_families_are_not_served_and_fully_denied_groups_are_not_polled(running: Simulator) -> None:
    denylist = [
        "feldera_pipeline_status",
        "feldera_cluster_.*",
        "feldera_(input|output)_connector_.*",
        "feldera_pipeline_checkpoint_(activity|activity_since_timestamp_seconds|permanent_errors)",
    ]
    body = await metrics_after_one_cycle(settings({"denylist": denylist}, url=running.url))
    served = {line.split("{")[0].split(" ")[0] for line in body.splitlines() if not line.startswith("#")}
    assert "feldera_pipeline_status" not in served and "# TYPE feldera_pipeline_status gauge" not in body
    assert not any(
        name.startswith(("feldera_cluster_", "feldera_input_connector_", "feldera_output_connector_"))
        for name in served
    )
    assert {"feldera_up", "feldera_pipeline_desired_status", "feldera_pipeline_checkpoint_failed"} <= served
    assert running.requests("/v0/cluster_healthz") == 0
    # connectors, counters, activity: all denied; stats is still asked, as checkpoint_status relies on it to be
    # asked only when its answer can have changed (a checkpoint in progress, a restart)
    assert running.requests("/v0/pipelines/orders/stats") == 1
    assert running.requests("/v0/pipelines/orders/checkpoint_status") == 1


async def test_the_same_config_without_the_denylist_asks_for_stats_and_cluster_health(running: Simulator) -> None:
    """The counterpart of the test above: these calls are made when their families are emitted."""
    exporter = Exporter(settings(url=running.url))
    await exporter.start(poll_loop=False)
    try:
        await exporter.poll_once()
    finally:
        await exporter.stop()
    assert running.requests("/v0/cluster_healthz") == 1
    assert running.requests("/v0/pipelines/orders/stats") == 1


# ---- the shipped rules, dashboards and the lean configuration --------------------------------------------------


def test_promql_names_ignore_strings_and_reject_selection_by_name() -> None:
    query = 'sum by (target) (rate(feldera_exporter_api_requests_total{code!~"feldera_fake"}[5m])) > feldera_up'
    assert script.names_in(query) == {"feldera_exporter_api_requests_total", "feldera_up"}
    with pytest.raises(script.UnknownMetric):
        script.names_in('count({__name__=~"feldera_.*"})')


def test_histogram_series_count_as_their_family_and_unknown_names_fail() -> None:
    used = script.families_used(["histogram_quantile(0.99, feldera_exporter_api_request_duration_seconds_bucket)"])
    assert used == {"feldera_exporter_api_request_duration_seconds"}
    with pytest.raises(script.UnknownMetric, match="feldera_pipeline_nonexistent"):
        script.families_used(["feldera_pipeline_nonexistent > 0"])


def test_rules_and_dashboards_are_parsed_from_the_repository_files() -> None:
    rules = script.families_used(script.rule_queries())
    dashboards = script.families_used(script.dashboard_queries())
    assert "feldera_pipeline_status" in rules and "feldera_up" in rules | dashboards
    assert len(list(script.dashboard_queries())) > 50  # every panel target and variable, not a hand-made list
    assert rules == shipped.RULES
    assert dashboards == shipped.DASHBOARDS


def test_shipped_list_and_lean_config_are_up_to_date() -> None:
    assert script.main(["--check"]) == 0, "regenerate with: scripts/shipped_metrics.py"


@pytest.mark.parametrize("config_file", [None, "config.lean.yaml", "config.example.yaml"])
def test_default_and_lean_configs_keep_every_family_the_shipped_rules_and_dashboards_use(
    config_file: str | None,
) -> None:
    config = load_settings(REPO / config_file if config_file else None, env={})
    missing = (
        script.families_used(script.rule_queries()) | script.families_used(script.dashboard_queries())
    ) - emitted(config)
    assert not missing, f"{config_file or 'the default config'} drops {sorted(missing)}"
    assert selection_warnings(config) == []


def test_lean_config_emits_only_what_the_rules_and_dashboards_use() -> None:
    lean = load_settings(REPO / "config.lean.yaml", env={})
    assert emitted(lean) == (shipped.RULES | shipped.DASHBOARDS | {"feldera_up"}) - {
        spec.name for spec in ALL_SPECS if spec.group == "connector_errors"
    }


def test_exporter_warns_once_at_start_naming_the_rule_families_it_drops(caplog: pytest.LogCaptureFixture) -> None:
    config = settings({"denylist": ["feldera_pipeline_status", "feldera_input_connector_paused"]})
    with caplog.at_level(logging.WARNING, logger="exporter.app"):
        Exporter(config)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "the shipped alert rules use metric families this configuration does not emit: feldera_pipeline_status",
        "the shipped dashboards use metric families this configuration does not emit: "
        "feldera_input_connector_paused, feldera_pipeline_status",
    ]


def test_check_config_accepts_but_warns_about_a_pattern_that_matches_nothing(
    write_config: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config({"metrics": {"denylist": ["feldera_pipelines_.*", "feldera_pipeline_version"]}})
    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "warning: metrics: pattern 'feldera_pipelines_.*' matches no metric family (see docs/metrics.md)"
    ]
