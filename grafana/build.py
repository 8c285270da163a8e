"""Grafana dashboards for feldera-exporter, built as code.

Run ``python grafana/build.py`` to (re)write ``grafana/dashboards/*.json``; ``--check`` exits non-zero when the
committed files differ from what this script generates. Every panel and target uses the ``$datasource`` template
variable (no datasource uid is hard-coded), every query is scoped by the ``job``/``instance``/``target`` variables,
and rate queries use ``$__rate_interval``.

The dashboards read the alert rules' config (``prometheus/config.yaml``): its ``selector`` is added to every query
(so a multi-cluster label selects the same series for rules and dashboards), its ``extra_labels`` to the ``ALERTS``
queries, and panels that show an alerting condition link to the alert's runbook under ``runbook_base_url``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

RULES_CONFIG = yaml.safe_load(
    (Path(__file__).resolve().parent.parent / "prometheus" / "config.yaml").read_text(encoding="utf-8")
)
OUT_DIR = Path(__file__).resolve().parent / "dashboards"
SCHEMA_VERSION = 39
TAGS = ["feldera"]
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

OVERVIEW_UID = "feldera-overview"
PIPELINE_UID = "feldera-pipeline"
EXPORTER_UID = "feldera-exporter"

JOB_SCOPE = ", ".join(m for m in ('job=~"$job"', RULES_CONFIG["selector"]) if m)
SCOPE = JOB_SCOPE + ', instance=~"$instance"'
"""The exporter-level selector: scrape job, exporter instance, and the rules' ``selector``."""
SEL = SCOPE + ', target=~"$target"'
"""Selector every query starts from (scrape job, exporter instance, Feldera target)."""
ALERTS_SEL = ", ".join(
    [
        'alertname=~"Feldera.*"',
        'alertstate="firing"',
        'job=~"$job"',
        'instance=~"$instance"',
        'target=~"$target"',
        *(f'{k}="{v}"' for k, v in RULES_CONFIG["extra_labels"].items()),
    ]
)
"""The firing Feldera alerts of the selected exporters and targets (and of the rules' extra labels)."""
RUNBOOKS = RULES_CONFIG["runbook_base_url"]
FLEET = SEL + ', pipeline_name=~"$pipeline_name"'
"""Overview: the selected pipelines (multi-select, All by default)."""
ONE = SEL + ', pipeline_name="$pipeline_name"'
"""Pipeline detail: the one selected pipeline."""

PIPELINE_LINK = (
    f"/d/{PIPELINE_UID}/feldera-pipeline?${{datasource:queryparam}}&var-target=${{__data.fields.target}}"
    "&var-pipeline_name=${__data.fields.pipeline_name}&${__url_time_range}"
)

Json = dict[str, Any]

TABLE_HIDDEN_COLUMNS = ("Time", "__name__", "job", "instance")
"""Label columns tables do not show (the dashboard variables already select them)."""


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False
    """Instant queries feed stats and tables; range queries feed time series."""
    column: str = ""
    """Tables: the header of this query's value column; unnamed value columns are hidden (label-only queries)."""
    unit: str = ""
    """Tables: the unit of this query's value column when it differs from the panel's."""


@dataclass(frozen=True)
class Panel:
    title: str
    kind: str
    """Grafana panel type: stat, timeseries, table, bargauge, state-timeline."""
    queries: tuple[Query, ...]
    unit: str
    w: int = 8
    h: int = 8
    description: str = ""
    key: bool = False
    """A key panel must return data against a Prometheus that scraped the exporter + simulator demo."""
    mappings: tuple[Json, ...] = ()
    thresholds: tuple[tuple[float | None, str], ...] = ((None, "green"),)
    stack: bool = False
    link: bool = False
    """Table rows link to the pipeline detail dashboard (the table must have target and pipeline_name columns)."""
    options: Json = field(default_factory=dict)
    runbook: str = ""
    """The alert whose condition the panel shows: the panel links to its runbook."""
    overrides: tuple[Json, ...] = ()


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


# --- value mappings and thresholds -------------------------------------------------------------------------

UP_MAPPING: Json = {
    "type": "value",
    "options": {"0": {"text": "DOWN", "color": "red"}, "1": {"text": "UP", "color": "green"}},
}
FAILED_MAPPING: Json = {
    "type": "value",
    "options": {"0": {"text": "OK", "color": "green"}, "1": {"text": "FAILED", "color": "red"}},
}
YES_NO_MAPPING: Json = {
    "type": "value",
    "options": {"0": {"text": "no", "color": "green"}, "1": {"text": "yes", "color": "red"}},
}
ACTIVE_MAPPING: Json = {"type": "value", "options": {"1": {"text": "active", "color": "blue"}}}
RED_ABOVE_ZERO = ((None, "green"), (1, "red"))
RED_WHEN_DOWN = ((None, "red"), (1, "green"))
NEUTRAL = ((None, "text"),)
"""Lifetime counters: a number to read, not a condition (a past error is not an alarm now)."""
STATUS_COLORS: dict[str, str] = {
    "Running": "green",
    "Paused": "blue",
    "Stopped": "text",
    "Suspended": "purple",
    "Standby": "purple",
    **dict.fromkeys(("Provisioning", "Initializing", "Bootstrapping", "Replaying", "Stopping"), "yellow"),
    **dict.fromkeys(("Unavailable", "Coordination", "AwaitingApproval"), "orange"),
}
"""Pipeline statuses: a pipeline stopped on purpose is not drawn red."""


def status_overrides(prefix: str = "") -> tuple[Json, ...]:
    """Field overrides colouring series named after a status (legend ``{prefix}{{status}}``)."""
    return tuple(
        {
            "matcher": {"id": "byName", "options": prefix + status},
            "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}],
        }
        for status, color in STATUS_COLORS.items()
    )


def api_health_panels(h: int) -> tuple[Panel, Panel]:
    """Feldera API reachability and data freshness per target: on the overview and the exporter dashboard."""
    return (
        Panel(
            "Feldera API reachable",
            "stat",
            (Query(f"feldera_up{{{SEL}}}", legend="{{target}}", instant=True),),
            "none",
            w=6,
            h=h,
            key=True,
            mappings=(UP_MAPPING,),
            thresholds=RED_WHEN_DOWN,
            runbook="FelderaApiUnreachable",
        ),
        Panel(
            "Data freshness",
            "stat",
            (
                Query(
                    f"time() - feldera_exporter_last_poll_success_timestamp_seconds{{{SEL}}}",
                    legend="{{target}}",
                    instant=True,
                ),
            ),
            "s",
            w=6,
            h=h,
            key=True,
            thresholds=((None, "green"), (60, "orange"), (300, "red")),
            runbook="FelderaExporterPollsStale",
            description="Seconds since the last successful poll of each target.",
        ),
    )


def _sum0(expr: str) -> str:
    """``sum(expr)`` that is 0, not empty, when nothing matches (stats then show 0 instead of "No data")."""
    return f"(sum({expr}) or vector(0))"


LICENCE_MAPPING: Json = {
    "type": "value",
    "options": {"0": {"text": "NOT VALID", "color": "red"}, "1": {"text": "valid", "color": "green"}},
}
DAY = 86400


def platform_row() -> Row:
    """The Feldera platform (GET /v0/config): version, edition, licence, update check, and per-pipeline runtime
    drift after an upgrade. On the overview, after the fleet row."""
    drift = (
        Query(f"max by (target, pipeline_name, platform_version) (feldera_pipeline_info{{{FLEET}}})", instant=True),
        Query(f"feldera_pipeline_runtime_outdated{{{FLEET}}}", instant=True, column="runtime outdated"),
    )
    return Row(
        "Platform",
        (
            Panel(
                "Feldera version and edition",
                "table",
                (
                    Query(f"max by (target, version, edition, revision) (feldera_server_info{{{SEL}}})", instant=True),
                    Query(
                        f"max by (target, latest_version) (feldera_server_update_available{{{SEL}}})",
                        instant=True,
                        column="update available",
                    ),
                ),
                "none",
                w=9,
                h=7,
                key=True,
                description="Version, edition and revision each Feldera target reports; update available (1) "
                "with the latest version when the server ran its update check.",
            ),
            Panel(
                "Licence",
                "stat",
                (Query(f"feldera_server_license_valid{{{SEL}}}", legend="{{target}}", instant=True),),
                "none",
                w=3,
                h=7,
                key=True,
                mappings=(LICENCE_MAPPING,),
                thresholds=RED_WHEN_DOWN,
                description="Enterprise only: Exists (valid) or DoesNotExistOrNotConfirmed (not valid).",
                runbook="FelderaLicenseInvalid",
            ),
            Panel(
                "Licence expires in",
                "stat",
                (
                    Query(
                        f"feldera_server_license_expiry_timestamp_seconds{{{SEL}}} - time()",
                        legend="{{target}}",
                        instant=True,
                    ),
                ),
                "s",
                w=4,
                h=7,
                key=True,
                thresholds=((None, "red"), (3 * DAY, "orange"), (14 * DAY, "green")),
                runbook="FelderaLicenseExpiryImminent",
                description="Time until valid_until of the licence (trial or not: see feldera_server_license_trial).",
            ),
            Panel(
                "Pipeline runtime vs platform version",
                "table",
                drift,
                "none",
                w=8,
                h=7,
                key=True,
                link=True,
                description="Each pipeline's platform_version; runtime outdated 1 = not recompiled since the "
                "platform was upgraded (POST .../update_runtime on the stopped pipeline recompiles it).",
            ),
        ),
    )


# --- dashboards as data ----------------------------------------------------------------------------------------


def overview_rows() -> list[Row]:
    status_table = (
        Query(f"max by (target, pipeline_name, status) (feldera_pipeline_status{{{FLEET}}} == 1)", instant=True),
        Query(
            "max by (target, pipeline_name, desired_status) (label_replace("
            f'feldera_pipeline_desired_status{{{FLEET}}} == 1, "desired_status", "$1", "status", "(.*)"))',
            instant=True,
        ),
        Query(
            f"time() - feldera_pipeline_status_since_timestamp_seconds{{{FLEET}}}",
            instant=True,
            column="in status for",
            unit="s",
        ),
    )
    checkpoint_table = (
        Query(f"feldera_pipeline_checkpoint_failed{{{FLEET}}}", instant=True, column="checkpoint failed"),
        Query(f"feldera_pipeline_checkpoint_sync_failed{{{FLEET}}}", instant=True, column="sync failed"),
        Query(
            f"time() - feldera_pipeline_storage_newest_checkpoint_first_seen_timestamp_seconds{{{FLEET}}}",
            instant=True,
            column="newest checkpoint age",
            unit="s",
        ),
        Query(
            f"round(increase(feldera_pipeline_checkpoint_failures_total{{{FLEET}}}[$__range]))",
            instant=True,
            column="failures in range",
        ),
    )
    connector_problems = (
        Query(
            "max by (target, pipeline_name, endpoint) ("
            f"feldera_input_connector_fatal_error{{{FLEET}}} == 1"
            f" or feldera_output_connector_fatal_error{{{FLEET}}} == 1)",
            instant=True,
            column="fatal error",
        ),
        Query(
            "max by (target, pipeline_name, endpoint) ("
            f'feldera_input_connector_health{{{FLEET}, status="Unhealthy"}} == 1'
            f' or feldera_output_connector_health{{{FLEET}, status="Unhealthy"}} == 1)',
            instant=True,
            column="unhealthy",
        ),
    )
    return [
        Row(
            "Fleet",
            (
                Panel(
                    "Pipelines",
                    "stat",
                    (Query(f"count(feldera_pipeline_info{{{FLEET}}}) or vector(0)", instant=True),),
                    "none",
                    w=4,
                    h=5,
                    key=True,
                ),
                Panel(
                    "Deployment errors",
                    "stat",
                    (Query(_sum0(f"feldera_pipeline_deployment_error{{{FLEET}}}"), instant=True),),
                    "none",
                    w=4,
                    h=5,
                    key=True,
                    thresholds=RED_ABOVE_ZERO,
                    description="Pipelines whose deployment_error is set.",
                    runbook="FelderaPipelineDeploymentError",
                ),
                Panel(
                    "Failed checkpoints",
                    "stat",
                    (Query(_sum0(f"feldera_pipeline_checkpoint_failed{{{FLEET}}}"), instant=True),),
                    "none",
                    w=4,
                    h=5,
                    key=True,
                    thresholds=RED_ABOVE_ZERO,
                    description="Pipelines whose latest checkpoint attempt failed.",
                    runbook="FelderaCheckpointFailed",
                ),
                Panel(
                    "Connectors with fatal errors",
                    "stat",
                    (
                        Query(
                            _sum0(f"feldera_input_connector_fatal_error{{{FLEET}}}")
                            + " + "
                            + _sum0(f"feldera_output_connector_fatal_error{{{FLEET}}}"),
                            instant=True,
                        ),
                    ),
                    "none",
                    w=4,
                    h=5,
                    key=True,
                    thresholds=RED_ABOVE_ZERO,
                    runbook="FelderaConnectorFatalError",
                ),
                Panel(
                    "Unhealthy connectors",
                    "stat",
                    (
                        Query(
                            _sum0(f'feldera_input_connector_health{{{FLEET}, status="Unhealthy"}}')
                            + " + "
                            + _sum0(f'feldera_output_connector_health{{{FLEET}, status="Unhealthy"}}'),
                            instant=True,
                        ),
                    ),
                    "none",
                    w=4,
                    h=5,
                    key=True,
                    thresholds=RED_ABOVE_ZERO,
                    runbook="FelderaConnectorUnhealthy",
                ),
                Panel(
                    "Firing Feldera alerts",
                    "stat",
                    (Query(f"count(ALERTS{{{ALERTS_SEL}}}) or vector(0)", instant=True),),
                    "none",
                    w=4,
                    h=5,
                    key=True,
                    thresholds=RED_ABOVE_ZERO,
                    description="Alerts of the shipped rules firing for the selected exporters and targets.",
                ),
                Panel(
                    "Pipelines by status",
                    "bargauge",
                    (
                        Query(
                            f"sum by (status) (feldera_pipeline_status{{{FLEET}}}) > 0",
                            legend="{{status}}",
                            instant=True,
                        ),
                    ),
                    "none",
                    w=8,
                    key=True,
                    options={"orientation": "horizontal", "displayMode": "basic"},
                    overrides=status_overrides(),
                ),
                Panel(
                    "Pipelines by status over time",
                    "timeseries",
                    (Query(f"sum by (status) (feldera_pipeline_status{{{FLEET}}}) > 0", legend="{{status}}"),),
                    "none",
                    w=16,
                    key=True,
                    stack=True,
                    overrides=status_overrides(),
                ),
            ),
        ),
        platform_row(),
        Row(
            "Pipelines",
            (
                Panel(
                    "Status vs desired status",
                    "table",
                    status_table,
                    "none",
                    w=14,
                    h=9,
                    key=True,
                    link=True,
                    description="Current and desired status per pipeline, and how long it has been in its status.",
                    runbook="FelderaPipelineNotInDesiredState",
                ),
                Panel(
                    "Deployment error codes",
                    "table",
                    (Query(f"feldera_pipeline_deployment_error_info{{{FLEET}}}", instant=True),),
                    "none",
                    w=10,
                    h=9,
                    link=True,
                    description="Pipelines with a deployment error, by Feldera error code. Messages are in the logs.",
                    runbook="FelderaPipelineDeploymentError",
                ),
            ),
        ),
        Row(
            "Checkpoints",
            (
                Panel(
                    "Checkpoint health",
                    "table",
                    checkpoint_table,
                    "none",
                    w=14,
                    h=9,
                    key=True,
                    link=True,
                    description="Latest checkpoint failed (1), checkpoint sync failed (1), age of the newest "
                    "checkpoint, checkpoint failures in the time range.",
                    runbook="FelderaCheckpointFailed",
                ),
                Panel(
                    "Age of newest checkpoint",
                    "bargauge",
                    (
                        Query(
                            "time() - feldera_pipeline_storage_newest_checkpoint_first_seen_timestamp_seconds"
                            f"{{{FLEET}}}",
                            legend="{{pipeline_name}}",
                            instant=True,
                        ),
                    ),
                    "s",
                    w=10,
                    h=9,
                    key=True,
                    options={"orientation": "horizontal", "displayMode": "gradient"},
                    thresholds=((None, "green"), (3600, "orange"), (4 * 3600, "red")),
                    runbook="FelderaCheckpointOverdue",
                ),
            ),
        ),
        Row(
            "Connectors",
            (
                Panel(
                    "Connectors with a fatal error or unhealthy",
                    "table",
                    connector_problems,
                    "none",
                    w=12,
                    h=8,
                    link=True,
                    description="1 in the first column: fatal error; 1 in the second: health Unhealthy.",
                    runbook="FelderaConnectorFatalError",
                ),
                Panel(
                    "Connector errors (per second)",
                    "timeseries",
                    (
                        Query(
                            "sum by (pipeline_name) (rate(feldera_pipeline_connector_errors_total"
                            f"{{{FLEET}}}[$__rate_interval]))",
                            legend="{{pipeline_name}}",
                        ),
                    ),
                    "suffix:err/s",
                    w=12,
                    h=8,
                ),
            ),
        ),
        Row(
            "Exporter and API health",
            (
                *api_health_panels(h=6),
                Panel(
                    "API errors by endpoint",
                    "timeseries",
                    (
                        Query(
                            "sum by (endpoint, code) (rate(feldera_exporter_api_requests_total"
                            f'{{{SEL}, code!~"2.."}}[$__rate_interval]))',
                            legend="{{endpoint}} {{code}}",
                        ),
                    ),
                    "reqps",
                    w=12,
                    h=6,
                ),
                Panel(
                    "Firing Feldera alerts (details)",
                    "table",
                    (Query(f"ALERTS{{{ALERTS_SEL}}}", instant=True),),
                    "none",
                    w=24,
                    h=6,
                ),
            ),
        ),
    ]


def pipeline_rows() -> list[Row]:
    inputs = (
        Query(f"max by (endpoint) (feldera_input_connector_fatal_error{{{ONE}}})", instant=True, column="fatal error"),
        Query(f"max by (endpoint, status) (feldera_input_connector_health{{{ONE}}} == 1)", instant=True),
        Query(f"max by (endpoint) (feldera_input_connector_paused{{{ONE}}})", instant=True, column="paused"),
        Query(
            f"max by (endpoint) (feldera_input_connector_end_of_input{{{ONE}}})", instant=True, column="end of input"
        ),
        Query(
            f"max by (endpoint) (feldera_input_connector_buffered_records{{{ONE}}})", instant=True, column="buffered"
        ),
    )
    outputs = (
        Query(f"max by (endpoint) (feldera_output_connector_fatal_error{{{ONE}}})", instant=True, column="fatal error"),
        Query(f"max by (endpoint, status) (feldera_output_connector_health{{{ONE}}} == 1)", instant=True),
        Query(f"max by (endpoint) (feldera_output_connector_queued_records{{{ONE}}})", instant=True, column="queued"),
        Query(
            f"max by (endpoint) (feldera_output_connector_buffered_records{{{ONE}}})", instant=True, column="buffered"
        ),
    )
    return [
        Row(
            "Status",
            (
                Panel(
                    "Status",
                    "stat",
                    (Query(f"feldera_pipeline_status{{{ONE}}} == 1", legend="{{status}}", instant=True),),
                    "none",
                    w=4,
                    h=5,
                    key=True,
                    options={"textMode": "name"},
                    overrides=status_overrides(),
                ),
                Panel(
                    "Desired status",
                    "stat",
                    (Query(f"feldera_pipeline_desired_status{{{ONE}}} == 1", legend="{{status}}", instant=True),),
                    "none",
                    w=4,
                    h=5,
                    key=True,
                    options={"textMode": "name"},
                ),
                Panel(
                    "In this status for",
                    "stat",
                    (Query(f"time() - feldera_pipeline_status_since_timestamp_seconds{{{ONE}}}", instant=True),),
                    "s",
                    w=4,
                    h=5,
                    key=True,
                ),
                Panel(
                    "Program status",
                    "stat",
                    (Query(f"feldera_pipeline_program_status{{{ONE}}} == 1", legend="{{status}}", instant=True),),
                    "none",
                    w=4,
                    h=5,
                    options={"textMode": "name"},
                ),
                Panel(
                    "Deployment error",
                    "stat",
                    (Query(f"feldera_pipeline_deployment_error{{{ONE}}}", instant=True),),
                    "none",
                    w=4,
                    h=5,
                    key=True,
                    mappings=(YES_NO_MAPPING,),
                    thresholds=RED_ABOVE_ZERO,
                    runbook="FelderaPipelineDeploymentError",
                ),
                Panel(
                    "Connector errors (num_errors)",
                    "stat",
                    (Query(f"feldera_pipeline_connector_errors_total{{{ONE}}}", instant=True),),
                    "none",
                    w=4,
                    h=5,
                    thresholds=NEUTRAL,
                    description="Errors the pipeline's connectors counted since its process started (a lifetime "
                    "count; see the connector error rates for what happens now).",
                ),
                Panel(
                    "Status timeline",
                    "state-timeline",
                    (
                        Query(f"feldera_pipeline_status{{{ONE}}} == 1", legend="{{status}}"),
                        Query(f"feldera_pipeline_desired_status{{{ONE}}} == 1", legend="desired {{status}}"),
                    ),
                    "none",
                    w=24,
                    h=6,
                    key=True,
                    mappings=(ACTIVE_MAPPING,),
                    overrides=(*status_overrides(), *status_overrides("desired ")),
                ),
            ),
        ),
        Row(
            "Checkpoints and sync",
            (
                Panel(
                    "Latest checkpoint",
                    "stat",
                    (Query(f"feldera_pipeline_checkpoint_failed{{{ONE}}}", instant=True),),
                    "none",
                    w=4,
                    h=5,
                    key=True,
                    mappings=(FAILED_MAPPING,),
                    thresholds=RED_ABOVE_ZERO,
                    runbook="FelderaCheckpointFailed",
                ),
                Panel(
                    "Age of newest checkpoint",
                    "stat",
                    (
                        Query(
                            "time() - feldera_pipeline_storage_newest_checkpoint_first_seen_timestamp_seconds"
                            f"{{{ONE}}}",
                            instant=True,
                        ),
                    ),
                    "s",
                    w=4,
                    h=5,
                    key=True,
                    thresholds=((None, "green"), (3600, "orange"), (4 * 3600, "red")),
                    runbook="FelderaCheckpointOverdue",
                ),
                Panel(
                    "Checkpoints in storage",
                    "stat",
                    (Query(f"feldera_pipeline_storage_checkpoints{{{ONE}}}", instant=True),),
                    "none",
                    w=4,
                    h=5,
                    key=True,
                ),
                Panel(
                    "Latest checkpoint sync",
                    "stat",
                    (Query(f"feldera_pipeline_checkpoint_sync_failed{{{ONE}}}", instant=True),),
                    "none",
                    w=4,
                    h=5,
                    mappings=(FAILED_MAPPING,),
                    thresholds=RED_ABOVE_ZERO,
                    runbook="FelderaCheckpointSyncFailed",
                ),
                Panel(
                    "Since last confirmed sync",
                    "stat",
                    (
                        Query(
                            f"time() - feldera_pipeline_checkpoint_sync_last_success_seen_timestamp_seconds{{{ONE}}}",
                            instant=True,
                        ),
                    ),
                    "s",
                    w=4,
                    h=5,
                ),
                Panel(
                    "Checkpoint permanent errors",
                    "stat",
                    (Query(f"feldera_pipeline_checkpoint_permanent_errors{{{ONE}}}", instant=True),),
                    "none",
                    w=4,
                    h=5,
                    thresholds=RED_ABOVE_ZERO,
                    runbook="FelderaCheckpointFailed",
                ),
                Panel(
                    "Checkpoint sequence numbers",
                    "timeseries",
                    (
                        Query(f"feldera_pipeline_checkpoint_last_success_sequence_number{{{ONE}}}", legend="success"),
                        Query(f"feldera_pipeline_checkpoint_last_failure_sequence_number{{{ONE}}}", legend="failure"),
                    ),
                    "none",
                    key=True,
                ),
                Panel(
                    "Checkpoint and sync failures",
                    "timeseries",
                    (
                        Query(
                            f"round(increase(feldera_pipeline_checkpoint_failures_total{{{ONE}}}[$__rate_interval]))",
                            legend="checkpoint",
                        ),
                        Query(
                            "round(increase(feldera_pipeline_checkpoint_sync_failures_total"
                            f"{{{ONE}}}[$__rate_interval]))",
                            legend="sync",
                        ),
                    ),
                    "none",
                ),
                Panel(
                    "Newest checkpoint size",
                    "timeseries",
                    (Query(f"feldera_pipeline_storage_newest_checkpoint_size_bytes{{{ONE}}}", legend="size"),),
                    "bytes",
                    key=True,
                ),
                Panel(
                    "Checkpoint activity",
                    "state-timeline",
                    (Query(f"feldera_pipeline_checkpoint_activity{{{ONE}}} == 1", legend="{{status}}"),),
                    "none",
                    w=24,
                    h=5,
                    mappings=(ACTIVE_MAPPING,),
                ),
            ),
        ),
        Row(
            "Connectors",
            (
                Panel(
                    "Input connectors",
                    "table",
                    inputs,
                    "none",
                    w=12,
                    h=8,
                    key=True,
                    description="Per input connector: fatal error, health, paused, end of input, buffered records.",
                ),
                Panel(
                    "Output connectors",
                    "table",
                    outputs,
                    "none",
                    w=12,
                    h=8,
                    key=True,
                    description="Per output connector: fatal error, health, queued records, buffered records.",
                ),
            ),
        ),
        Row(
            "Throughput",
            (
                Panel(
                    "Input records",
                    "timeseries",
                    (
                        Query(
                            "sum by (endpoint) (rate(feldera_input_connector_records_total"
                            f"{{{ONE}}}[$__rate_interval]))",
                            legend="{{endpoint}}",
                        ),
                    ),
                    "suffix:rec/s",
                    w=6,
                    key=True,
                ),
                Panel(
                    "Input bytes",
                    "timeseries",
                    (
                        Query(
                            f"sum by (endpoint) (rate(feldera_input_connector_bytes_total{{{ONE}}}[$__rate_interval]))",
                            legend="{{endpoint}}",
                        ),
                    ),
                    "Bps",
                    w=6,
                    key=True,
                ),
                Panel(
                    "Output records",
                    "timeseries",
                    (
                        Query(
                            "sum by (endpoint) (rate(feldera_output_connector_transmitted_records_total"
                            f"{{{ONE}}}[$__rate_interval]))",
                            legend="{{endpoint}}",
                        ),
                    ),
                    "suffix:rec/s",
                    w=6,
                    key=True,
                ),
                Panel(
                    "Output bytes",
                    "timeseries",
                    (
                        Query(
                            "sum by (endpoint) (rate(feldera_output_connector_transmitted_bytes_total"
                            f"{{{ONE}}}[$__rate_interval]))",
                            legend="{{endpoint}}",
                        ),
                    ),
                    "Bps",
                    w=6,
                    key=True,
                ),
            ),
        ),
        Row(
            "Errors",
            (
                Panel(
                    "Input connector errors",
                    "timeseries",
                    (
                        Query(
                            "sum by (endpoint) (rate(feldera_input_connector_parse_errors_total"
                            f"{{{ONE}}}[$__rate_interval]))",
                            legend="parse {{endpoint}}",
                        ),
                        Query(
                            "sum by (endpoint) (rate(feldera_input_connector_transport_errors_total"
                            f"{{{ONE}}}[$__rate_interval]))",
                            legend="transport {{endpoint}}",
                        ),
                    ),
                    "suffix:err/s",
                    w=12,
                    key=True,
                ),
                Panel(
                    "Output connector errors",
                    "timeseries",
                    (
                        Query(
                            "sum by (endpoint) (rate(feldera_output_connector_encode_errors_total"
                            f"{{{ONE}}}[$__rate_interval]))",
                            legend="encode {{endpoint}}",
                        ),
                        Query(
                            "sum by (endpoint) (rate(feldera_output_connector_transport_errors_total"
                            f"{{{ONE}}}[$__rate_interval]))",
                            legend="transport {{endpoint}}",
                        ),
                    ),
                    "suffix:err/s",
                    w=12,
                    key=True,
                ),
            ),
        ),
        Row(
            "Backlog and latency",
            (
                Panel(
                    "Input buffered records",
                    "timeseries",
                    (Query(f"feldera_input_connector_buffered_records{{{ONE}}}", legend="{{endpoint}}"),),
                    "short",
                    w=6,
                    key=True,
                ),
                Panel(
                    "Input buffered bytes",
                    "timeseries",
                    (Query(f"feldera_input_connector_buffered_bytes{{{ONE}}}", legend="{{endpoint}}"),),
                    "bytes",
                    w=6,
                    key=True,
                ),
                Panel(
                    "Output queued records",
                    "timeseries",
                    (
                        Query(f"feldera_output_connector_queued_records{{{ONE}}}", legend="queued {{endpoint}}"),
                        Query(f"feldera_output_connector_buffered_records{{{ONE}}}", legend="buffered {{endpoint}}"),
                    ),
                    "short",
                    w=6,
                    key=True,
                ),
                Panel(
                    "Output connector memory",
                    "timeseries",
                    (Query(f"feldera_output_connector_memory_bytes{{{ONE}}}", legend="{{endpoint}}"),),
                    "bytes",
                    w=6,
                ),
                Panel(
                    "Input processing latency p99",
                    "timeseries",
                    (Query(f"feldera_input_connector_processing_latency_p99_seconds{{{ONE}}}", legend="{{endpoint}}"),),
                    "s",
                    w=12,
                    key=True,
                ),
                Panel(
                    "Input completion lag",
                    "timeseries",
                    (
                        Query(
                            f"time() - feldera_input_connector_completed_frontier_completed_timestamp_seconds{{{ONE}}}",
                            legend="{{endpoint}}",
                        ),
                    ),
                    "s",
                    w=12,
                    description="Seconds since the newest input that is fully processed and written to all outputs.",
                ),
            ),
        ),
    ]


def exporter_rows() -> list[Row]:
    return [
        Row(
            "Exporter",
            (
                *api_health_panels(h=5),
                Panel(
                    "Failed polls",
                    "stat",
                    (
                        Query(
                            "round("
                            + _sum0(f'increase(feldera_exporter_polls_total{{{SEL}, result="failure"}}[$__range])')
                            + ")",
                            instant=True,
                        ),
                    ),
                    "none",
                    w=6,
                    h=5,
                    key=True,
                    thresholds=RED_ABOVE_ZERO,
                    description="Poll cycles that failed in the time range.",
                    runbook="FelderaApiUnreachable",
                ),
                Panel(
                    "Exporter version",
                    "table",
                    (Query(f"feldera_exporter_build_info{{{SCOPE}}}", instant=True),),
                    "none",
                    w=6,
                    h=5,
                    key=True,
                ),
            ),
        ),
        Row(
            "Polling",
            (
                Panel(
                    "Poll duration",
                    "timeseries",
                    (Query(f"feldera_exporter_poll_duration_seconds{{{SEL}}}", legend="{{target}}"),),
                    "s",
                    key=True,
                ),
                Panel(
                    "Polls",
                    "timeseries",
                    (
                        Query(
                            f"sum by (target, result) (rate(feldera_exporter_polls_total{{{SEL}}}[$__rate_interval]))",
                            legend="{{target}} {{result}}",
                        ),
                    ),
                    "reqps",
                    key=True,
                ),
                Panel(
                    "Freshness",
                    "timeseries",
                    (
                        Query(
                            f"time() - feldera_exporter_last_poll_success_timestamp_seconds{{{SEL}}}",
                            legend="{{target}}",
                        ),
                    ),
                    "s",
                    key=True,
                ),
            ),
        ),
        Row(
            "Feldera API requests",
            (
                Panel(
                    "API requests by endpoint and code",
                    "timeseries",
                    (
                        Query(
                            "sum by (endpoint, code) (rate(feldera_exporter_api_requests_total"
                            f"{{{SEL}}}[$__rate_interval]))",
                            legend="{{endpoint}} {{code}}",
                        ),
                    ),
                    "reqps",
                    w=12,
                    h=9,
                    key=True,
                    stack=True,
                ),
                Panel(
                    "API errors by endpoint and code",
                    "timeseries",
                    (
                        Query(
                            "sum by (endpoint, code) (rate(feldera_exporter_api_requests_total"
                            f'{{{SEL}, code!~"2.."}}[$__rate_interval]))',
                            legend="{{endpoint}} {{code}}",
                        ),
                    ),
                    "reqps",
                    w=12,
                    h=9,
                    description="Non-2xx answers, timeouts, connection errors and invalid responses.",
                ),
                Panel(
                    "API request duration p99",
                    "timeseries",
                    (
                        Query(
                            "histogram_quantile(0.99, sum by (endpoint, le) (rate("
                            f"feldera_exporter_api_request_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))",
                            legend="{{endpoint}}",
                        ),
                    ),
                    "s",
                    w=12,
                    h=9,
                    key=True,
                ),
                Panel(
                    "API requests in the time range",
                    "table",
                    (
                        Query(
                            "round(sum by (target, endpoint, code) (increase(feldera_exporter_api_requests_total"
                            f"{{{SEL}}}[$__range])))",
                            instant=True,
                            column="requests",
                        ),
                    ),
                    "none",
                    w=12,
                    h=9,
                    key=True,
                ),
            ),
        ),
    ]


# --- rendering to Grafana JSON -------------------------------------------------------------------------------


def _variable(name: str, label: str, query: str, *, multi: bool) -> Json:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-variable"},
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "allValue": ".*" if multi else None,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if multi else {},
        "hide": 0,
        "options": [],
        "regex": "",
        "skipUrlSync": False,
    }


def _variables(pipeline: str | None) -> list[Json]:
    """``pipeline``: None (no pipeline variable), "multi" (overview) or "single" (detail)."""
    variables: list[Json] = [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "options": [],
            "refresh": 1,
            "regex": "",
            "skipUrlSync": False,
        },
        _variable("job", "Job", f"label_values(feldera_up{{{RULES_CONFIG['selector']}}}, job)", multi=True),
        _variable("instance", "Instance", f"label_values(feldera_up{{{JOB_SCOPE}}}, instance)", multi=True),
        _variable("target", "Target", f"label_values(feldera_up{{{SCOPE}}}, target)", multi=True),
    ]
    if pipeline is not None:
        variables.append(
            _variable(
                "pipeline_name",
                "Pipeline",
                f"label_values(feldera_pipeline_info{{{SEL}}}, pipeline_name)",
                multi=pipeline == "multi",
            )
        )
    return variables


def _ref_ids(panel: Panel) -> list[str]:
    return [chr(ord("A") + i) for i in range(len(panel.queries))]


def _target(query: Query, ref_id: str, kind: str) -> Json:
    target: Json = {
        "datasource": DATASOURCE,
        "expr": query.expr,
        "legendFormat": query.legend or "__auto",
        "refId": ref_id,
        "instant": query.instant,
        "range": not query.instant,
    }
    if kind == "table":
        target["format"] = "table"
    return target


def _panel_json(panel: Panel, panel_id: int, grid: Json) -> Json:
    defaults: Json = {
        "unit": panel.unit,
        "mappings": list(panel.mappings),
        "thresholds": {
            "mode": "absolute",
            "steps": [{"color": color, "value": value} for value, color in panel.thresholds],
        },
        "color": {"mode": "thresholds" if panel.kind in ("stat", "bargauge") else "palette-classic"},
    }
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "fillOpacity": 20 if panel.stack else 5,
            "lineWidth": 1,
            "showPoints": "never",
            "stacking": {"mode": "normal" if panel.stack else "none", "group": "A"},
        }
    options: Json = {}
    if panel.kind in ("stat", "bargauge"):
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    if panel.kind == "stat":
        options.update({"colorMode": "value", "graphMode": "none", "textMode": "auto"})
    if panel.kind == "timeseries":
        options = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    if panel.kind == "state-timeline":
        options = {"showValue": "never", "mergeValues": True, "legend": {"showLegend": False}}
    options.update(panel.options)
    result: Json = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": grid,
        "targets": [_target(q, ref_id, panel.kind) for ref_id, q in zip(_ref_ids(panel), panel.queries, strict=True)],
        "fieldConfig": {"defaults": defaults, "overrides": list(panel.overrides)},
        "options": options,
    }
    if panel.runbook:
        url = f"{RUNBOOKS}#{panel.runbook.lower()}"
        result["links"] = [{"title": f"Runbook: {panel.runbook}", "url": url, "targetBlank": True}]
    if panel.kind == "table":
        hidden = {name: True for name in TABLE_HIDDEN_COLUMNS}
        renamed = {}
        for ref_id, query in zip(_ref_ids(panel), panel.queries, strict=True):
            value = f"Value #{ref_id}" if len(panel.queries) > 1 else "Value"
            if query.column:
                renamed[value] = query.column
            else:
                hidden[value] = True
        result["fieldConfig"]["overrides"] += [
            {"matcher": {"id": "byName", "options": q.column}, "properties": [{"id": "unit", "value": q.unit}]}
            for q in panel.queries
            if q.column and q.unit
        ]
        result["transformations"] = [
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {"excludeByName": hidden, "renameByName": renamed}},
        ]
        if panel.link:
            defaults["links"] = [{"title": "Open pipeline", "url": PIPELINE_LINK}]
    return result


def _layout(rows: Sequence[Row]) -> list[Json]:
    """Place rows and panels left to right, wrapping at Grafana's 24 columns; ids are assigned in order."""
    panels: list[Json] = []
    y = 0
    next_id = 1
    for row in rows:
        panels.append(
            {
                "id": next_id,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        next_id += 1
        y += 1
        x = 0
        line_height = 0
        for panel in row.panels:
            if x + panel.w > 24:
                y += line_height
                x = 0
                line_height = 0
            panels.append(_panel_json(panel, next_id, {"h": panel.h, "w": panel.w, "x": x, "y": y}))
            next_id += 1
            x += panel.w
            line_height = max(line_height, panel.h)
        y += line_height
    return panels


def _links() -> list[Json]:
    return [
        {
            "title": "Feldera",
            "type": "dashboards",
            "tags": TAGS,
            "asDropdown": False,
            "includeVars": True,
            "keepTime": True,
            "targetBlank": False,
            "icon": "external link",
            "tooltip": "",
            "url": "",
        }
    ]


def _dashboard(uid: str, title: str, description: str, rows: Sequence[Row], pipeline: str | None) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": TAGS,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {"list": []},
        "links": _links(),
        "templating": {"list": _variables(pipeline)},
        "panels": _layout(rows),
    }


DASHBOARD_ROWS = {
    OVERVIEW_UID: overview_rows,
    PIPELINE_UID: pipeline_rows,
    EXPORTER_UID: exporter_rows,
}


def dashboards() -> dict[str, Json]:
    """File name (without ``.json``) -> dashboard JSON."""
    return {
        OVERVIEW_UID: _dashboard(
            OVERVIEW_UID,
            "Feldera / Fleet overview",
            "Every Feldera pipeline at a glance: status against desired status, deployment errors, the "
            "platform's version, licence and pipelines left on an old runtime, checkpoint health, broken "
            "connectors, exporter health and firing alerts.",
            overview_rows(),
            "multi",
        ),
        PIPELINE_UID: _dashboard(
            PIPELINE_UID,
            "Feldera / Pipeline",
            "One Feldera pipeline: status timeline, checkpoints and sync, connectors, throughput, errors, "
            "backlog and latency.",
            pipeline_rows(),
            "single",
        ),
        EXPORTER_UID: _dashboard(
            EXPORTER_UID,
            "Feldera / Exporter",
            "feldera-exporter self-monitoring: Feldera API reachability, poll duration and freshness, API "
            "requests and errors by endpoint and code.",
            exporter_rows(),
            None,
        ),
    }


def key_panels() -> dict[str, set[str]]:
    """Dashboard uid -> titles of the panels that must return data against the demo."""
    return {uid: {p.title for row in rows() for p in row.panels if p.key} for uid, rows in DASHBOARD_ROWS.items()}


def render(dashboard: Json) -> str:
    return json.dumps(dashboard, indent=2, sort_keys=False) + "\n"


def write(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, dashboard in dashboards().items():
        path = out_dir / f"{name}.json"
        path.write_text(render(dashboard), encoding="utf-8")
        written.append(path)
    return written


def stale_files(out_dir: Path) -> list[str]:
    """Names of dashboard files that are missing or differ from what :func:`dashboards` generates."""
    stale = []
    for name, dashboard in dashboards().items():
        path = out_dir / f"{name}.json"
        if not path.exists() or path.read_text(encoding="utf-8") != render(dashboard):
            stale.append(path.name)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output directory (default: grafana/dashboards)")
    parser.add_argument("--check", action="store_true", help="fail if the files differ from the generated ones")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.out)
        for name in stale:
            print(f"{args.out / name}: out of date, run python grafana/build.py", file=sys.stderr)
        return 1 if stale else 0
    for path in write(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
