"""Grafana dashboards for feldera-exporter, built as code.

``feldera-exporter dashboards --out grafana/dashboards`` (re)writes the repository's ``grafana/dashboards/*.json``;
with ``--check`` it exits non-zero when the files there differ from what this module generates. Every panel and
target uses the ``$datasource`` template
variable (no datasource uid is hard-coded), every query is scoped by the ``job``/``instance``/``target`` variables,
and rate queries use ``$__rate_interval``.

The dashboards read the alert rules' config (the mixin's ``config.yaml``): its ``selector`` is added to every query
(so a multi-cluster label selects the same series for rules and dashboards), its ``extra_labels`` to the ``ALERTS``
queries, and panels that show an alerting condition link to the alert's runbook under ``runbook_base_url``.

Each panel shape is written once (``stat``, ``alarm``, ``status_stat``, ``graph``, ``table``, ``bars``,
``timeline``) and the Grafana options a kind of panel shares are set once, in ``_panel_json``; grafana/README.md
says why this is not built on grafana-foundation-sdk (measured).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 39
TAGS = ["feldera"]
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

OVERVIEW_UID = "feldera-overview"
PIPELINE_UID = "feldera-pipeline"
EXPORTER_UID = "feldera-exporter"


@dataclass(frozen=True)
class Scope:
    """What every query of a dashboard is scoped by and where its panels link, made from the rule config
    (:meth:`of`) so that the dashboards select the same series as the rules and link to the same runbooks."""

    selector: str
    """The rules' ``selector`` (``env="prod"``), added to every query ("" for none)."""
    extra_labels: tuple[tuple[str, str], ...]
    """The rules' ``extra_labels``: the ``ALERTS`` queries select the alerts that carry them."""
    runbooks: str
    """``runbook_base_url``: panels showing an alert's condition link to its runbook there."""

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> Scope:
        """The scope of a complete rule config (:func:`exporter.mixin.rules.load_config`, validated)."""
        return cls(config["selector"], tuple(config["extra_labels"].items()), config["runbook_base_url"])

    def _with(self, *matchers: str) -> str:
        return ", ".join(m for m in (*matchers, self.selector) if m)

    @property
    def job(self) -> str:
        """Scrape job and the rules' selector."""
        return self._with('job=~"$job"')

    @property
    def scope(self) -> str:
        """The exporter-level selector: scrape job, exporter instance, and the rules' ``selector``."""
        return self._with('job=~"$job"', 'instance=~"$instance"')

    @property
    def sel(self) -> str:
        """Selector every query starts from (scrape job, exporter instance, Feldera target)."""
        return self._with('job=~"$job"', 'instance=~"$instance"', 'target=~"$target"')

    @property
    def fleet(self) -> str:
        """Overview: the selected pipelines (multi-select, All by default)."""
        return self.sel + ', pipeline_name=~"$pipeline_name"'

    @property
    def one(self) -> str:
        """Pipeline detail: the one selected pipeline."""
        return self.sel + ', pipeline_name="$pipeline_name"'

    @property
    def native(self) -> str:
        """Pipeline detail: the selected pipeline's series from Feldera's own ``/v0/metrics``, scraped by the
        ``feldera-native`` job of prometheus/prometheus.yml (which adds ``target`` and ``pipeline_id``; its job and
        instance are not the exporter's)."""
        return self._with('target=~"$target"', 'pipeline_name="$pipeline_name"', 'pipeline_id!=""')

    @property
    def alerts(self) -> str:
        """The firing Feldera alerts of the selected job and targets (and of the rules' extra labels). Alerts carry
        no ``instance`` (the rules aggregate the scraping exporters away), so the instance variable does not filter
        them."""
        extra = (f'{name}="{value}"' for name, value in self.extra_labels)
        return ", ".join(['alertname=~"Feldera.*"', 'alertstate="firing"', 'job=~"$job"', 'target=~"$target"', *extra])

    @property
    def pipeline_alerts(self) -> str:
        """Pipeline detail: the firing alerts of the one selected pipeline."""
        return self.alerts + ', pipeline_name="$pipeline_name"'


PIPELINE_LINK = (
    f"/d/{PIPELINE_UID}/feldera-pipeline?${{datasource:queryparam}}&var-target=${{__data.fields.target}}"
    "&var-pipeline_name=${__data.fields.pipeline_name}&${__url_time_range}"
)

Json = dict[str, Any]

TABLE_HIDDEN_COLUMNS = ("Time", "__name__", "job", "instance")
"""Label columns tables do not show (the dashboard variables already select them)."""
INSTANT_KINDS = frozenset({"stat", "table", "bargauge"})
"""Panels that show the value now run instant queries; time series and state timelines run range queries."""


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
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


def value_mapping(zero: tuple[str, str], one: tuple[str, str]) -> Json:
    """Show 0 and 1 as ``(text, colour)``."""
    return {
        "type": "value",
        "options": {"0": {"text": zero[0], "color": zero[1]}, "1": {"text": one[0], "color": one[1]}},
    }


UP_MAPPING = value_mapping(("DOWN", "red"), ("UP", "green"))
FAILED_MAPPING = value_mapping(("OK", "green"), ("FAILED", "red"))
YES_NO_MAPPING = value_mapping(("no", "green"), ("yes", "red"))
LICENCE_MAPPING = value_mapping(("NOT VALID", "red"), ("valid", "green"))
ACTIVE_MAPPING: Json = {"type": "value", "options": {"1": {"text": "active", "color": "blue"}}}
PRESSURE_COLORS = {"low": "green", "moderate": "yellow", "high": "orange", "critical": "red"}
PRESSURE_MAPPING: Json = {
    "type": "value",
    "options": {str(i): {"text": level, "color": color} for i, (level, color) in enumerate(PRESSURE_COLORS.items())},
}
"""Feldera's numeric memory pressure (0 low - 3 critical) as its level."""
RED_ABOVE_ZERO = ((None, "green"), (1, "red"))
RED_WHEN_DOWN = ((None, "red"), (1, "green"))
NEUTRAL = ((None, "text"),)
"""Lifetime counters: a number to read, not a condition (a past error is not an alarm now)."""
DAY = 86400
CHECKPOINT_AGE = ((None, "green"), (3600, "orange"), (4 * 3600, "red"))
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


# --- PromQL ------------------------------------------------------------------------------------------------


def rate(metric: str, by: str, sel: str) -> str:
    """Per-second rate of a counter, summed by the ``by`` labels."""
    return f"sum by ({by}) (rate({metric}{{{sel}}}[$__rate_interval]))"


def _sum0(expr: str) -> str:
    """``sum(expr)`` that is 0, not empty, when nothing matches (stats then show 0 instead of "No data")."""
    return f"(sum({expr}) or vector(0))"


def checkpoint_age(sel: str) -> str:
    """Seconds since the exporter first saw the newest checkpoint in storage."""
    return f"time() - feldera_pipeline_storage_newest_checkpoint_first_seen_timestamp_seconds{{{sel}}}"


def connector_series(metric: str, sel: str) -> tuple[str, str]:
    """The input and the output connector series of ``feldera_{input,output}_connector_<metric>``."""
    return (f"feldera_input_connector_{metric}{{{sel}}}", f"feldera_output_connector_{metric}{{{sel}}}")


def connector_columns(one: str, direction: str, *columns: tuple[str, str]) -> tuple[Query, ...]:
    """Pipeline detail: one table row per ``direction`` connector: fatal error, health, then ``(metric, header)``."""
    prefix = f"feldera_{direction}_connector_"
    return (
        Query(f"max by (endpoint) ({prefix}fatal_error{{{one}}})", column="fatal error"),
        Query(f"max by (endpoint, status) ({prefix}health{{{one}}} == 1)"),
        *(Query(f"max by (endpoint) ({prefix}{metric}{{{one}}})", column=header) for metric, header in columns),
    )


# --- panel shapes: each written once ---------------------------------------------------------------------------


def stat(title: str, expr: str, unit: str = "none", *, legend: str = "", w: int = 4, h: int = 5, **kw: Any) -> Panel:
    """One number (or one per series, named by ``legend``): the value now, coloured by the thresholds."""
    return Panel(title, "stat", (Query(expr, legend),), unit, w=w, h=h, **kw)


def graph(title: str, unit: str, *queries: Query, **kw: Any) -> Panel:
    """A time series panel: one line per series of each query."""
    return Panel(title, "timeseries", queries, unit, **kw)


def table(title: str, queries: tuple[Query, ...], *, w: int, h: int, **kw: Any) -> Panel:
    """A table of the queries' series merged on their labels; each query's value is a column (see ``Query.column``)."""
    return Panel(title, "table", queries, "none", w=w, h=h, **kw)


def bars(title: str, query: Query, unit: str, display_mode: str, **kw: Any) -> Panel:
    """Horizontal bars, one per series: the value now."""
    options = {"orientation": "horizontal", "displayMode": display_mode}
    return Panel(title, "bargauge", (query,), unit, options=options, **kw)


def timeline(title: str, *queries: Query, h: int, **kw: Any) -> Panel:
    """A full-width state timeline of one-hot series: each series is drawn "active" while it is 1."""
    return Panel(title, "state-timeline", queries, "none", w=24, h=h, mappings=(ACTIVE_MAPPING,), **kw)


def alarm(title: str, expr: str, runbook: str, **kw: Any) -> Panel:
    """A stat that turns red above 0 (a condition an alert watches), linked to that alert's runbook."""
    return stat(title, expr, thresholds=RED_ABOVE_ZERO, runbook=runbook, **kw)


def status_stat(title: str, metric: str, one: str, **kw: Any) -> Panel:
    """The name of the status whose one-hot series of ``metric`` is 1 for the pipeline ``one`` selects."""
    return stat(title, f"{metric}{{{one}}} == 1", legend="{{status}}", options={"textMode": "name"}, **kw)


# --- queries more than one panel shows -----------------------------------------------------------------------


def freshness(sel: str) -> str:
    """Seconds since each target's last successful poll."""
    return f"time() - feldera_exporter_last_poll_success_timestamp_seconds{{{sel}}}"


def api_errors(sel: str) -> Query:
    """Non-2xx answers (and failed requests) per second by endpoint and code."""
    return Query(
        rate("feldera_exporter_api_requests_total", "endpoint, code", sel + ', code!~"2.."'), "{{endpoint}} {{code}}"
    )


def by_status(fleet: str) -> Query:
    """Pipelines per status."""
    return Query(f"sum by (status) (feldera_pipeline_status{{{fleet}}}) > 0", "{{status}}")


def api_health_panels(s: Scope, h: int) -> tuple[Panel, Panel]:
    """Feldera API reachability and data freshness per target: on the overview and the exporter dashboard."""
    return (
        stat(
            "Feldera API reachable",
            f"feldera_up{{{s.sel}}}",
            legend="{{target}}",
            w=6,
            h=h,
            key=True,
            mappings=(UP_MAPPING,),
            thresholds=RED_WHEN_DOWN,
            runbook="FelderaApiUnreachable",
        ),
        stat(
            "Data freshness",
            freshness(s.sel),
            "s",
            legend="{{target}}",
            w=6,
            h=h,
            key=True,
            thresholds=((None, "green"), (60, "orange"), (300, "red")),
            runbook="FelderaExporterPollsStale",
            description="Seconds since the last successful poll of each target.",
        ),
    )


# --- dashboards as data ----------------------------------------------------------------------------------------


def platform_row(s: Scope) -> Row:
    """The Feldera platform (GET /v0/config): version, edition, licence, update check, and per-pipeline runtime
    drift after an upgrade. On the overview, after the fleet row."""
    version = (
        Query(f"max by (target, version, edition, revision) (feldera_server_info{{{s.sel}}})"),
        Query(
            f"max by (target, latest_version) (feldera_server_update_available{{{s.sel}}})", column="update available"
        ),
    )
    drift = (
        Query(f"max by (target, pipeline_name, platform_version) (feldera_pipeline_info{{{s.fleet}}})"),
        Query(f"feldera_pipeline_runtime_outdated{{{s.fleet}}}", column="runtime outdated"),
    )
    return Row(
        "Platform",
        (
            table(
                "Feldera version and edition",
                version,
                w=9,
                h=7,
                key=True,
                description="Version, edition and revision each Feldera target reports; update available (1) "
                "with the latest version when the server ran its update check.",
            ),
            stat(
                "Licence",
                f"feldera_server_license_valid{{{s.sel}}}",
                legend="{{target}}",
                w=3,
                h=7,
                key=True,
                mappings=(LICENCE_MAPPING,),
                thresholds=RED_WHEN_DOWN,
                description="Enterprise only: Exists (valid) or DoesNotExistOrNotConfirmed (not valid).",
                runbook="FelderaLicenseInvalid",
            ),
            stat(
                "Licence expires in",
                f"feldera_server_license_expiry_timestamp_seconds{{{s.sel}}} - time()",
                "s",
                legend="{{target}}",
                w=4,
                h=7,
                key=True,
                thresholds=((None, "red"), (3 * DAY, "orange"), (14 * DAY, "green")),
                runbook="FelderaLicenseExpiryImminent",
                description="Time until valid_until of the licence (trial or not: see feldera_server_license_trial).",
            ),
            table(
                "Pipeline runtime vs platform version",
                drift,
                w=8,
                h=7,
                key=True,
                link=True,
                description="Each pipeline's platform_version; runtime outdated 1 = not recompiled since the "
                "platform was upgraded (POST .../update_runtime on the stopped pipeline recompiles it).",
            ),
        ),
    )


def overview_rows(s: Scope) -> list[Row]:
    status_table = (
        Query(f"max by (target, pipeline_name, status) (feldera_pipeline_status{{{s.fleet}}} == 1)"),
        Query(
            "max by (target, pipeline_name, desired_status) (label_replace("
            f'feldera_pipeline_desired_status{{{s.fleet}}} == 1, "desired_status", "$1", "status", "(.*)"))'
        ),
        Query(
            f"time() - feldera_pipeline_status_since_timestamp_seconds{{{s.fleet}}}", column="in status for", unit="s"
        ),
    )
    checkpoint_table = (
        Query(f"feldera_pipeline_checkpoint_failed{{{s.fleet}}}", column="checkpoint failed"),
        Query(f"feldera_pipeline_checkpoint_sync_failed{{{s.fleet}}}", column="sync failed"),
        Query(checkpoint_age(s.fleet), column="newest checkpoint age", unit="s"),
        Query(
            f"round(increase(feldera_pipeline_checkpoint_failures_total{{{s.fleet}}}[$__range]))",
            column="failures in range",
        ),
    )
    unhealthy = s.fleet + ', status="Unhealthy"'
    connector_problems = tuple(
        Query(f"max by (target, pipeline_name, endpoint) ({a} == 1 or {b} == 1)", column=column)
        for (a, b), column in (
            (connector_series("fatal_error", s.fleet), "fatal error"),
            (connector_series("health", unhealthy), "unhealthy"),
        )
    )
    fleet_alarms = (
        (
            "Deployment errors",
            _sum0(f"feldera_pipeline_deployment_error{{{s.fleet}}}"),
            "FelderaPipelineDeploymentError",
            "Pipelines whose deployment_error is set.",
        ),
        (
            "Failed checkpoints",
            _sum0(f"feldera_pipeline_checkpoint_failed{{{s.fleet}}}"),
            "FelderaCheckpointFailed",
            "Pipelines whose latest checkpoint attempt failed.",
        ),
        (
            "Connectors with fatal errors",
            " + ".join(map(_sum0, connector_series("fatal_error", s.fleet))),
            "FelderaConnectorFatalError",
            "",
        ),
        (
            "Unhealthy connectors",
            " + ".join(map(_sum0, connector_series("health", unhealthy))),
            "FelderaConnectorUnhealthy",
            "",
        ),
        (
            "Firing Feldera alerts",
            f"count(ALERTS{{{s.alerts}}}) or vector(0)",
            "",
            "Alerts of the shipped rules firing for the selected exporters and targets.",
        ),
    )
    return [
        Row(
            "Fleet",
            (
                stat("Pipelines", f"count(feldera_pipeline_info{{{s.fleet}}}) or vector(0)", key=True),
                *(
                    alarm(title, expr, runbook, key=True, description=description)
                    for title, expr, runbook, description in fleet_alarms
                ),
                bars(
                    "Pipelines by status",
                    by_status(s.fleet),
                    "none",
                    "basic",
                    w=8,
                    key=True,
                    overrides=status_overrides(),
                ),
                graph(
                    "Pipelines by status over time",
                    "none",
                    by_status(s.fleet),
                    w=16,
                    key=True,
                    stack=True,
                    overrides=status_overrides(),
                ),
            ),
        ),
        platform_row(s),
        Row(
            "Pipelines",
            (
                table(
                    "Status vs desired status",
                    status_table,
                    w=14,
                    h=9,
                    key=True,
                    link=True,
                    description="Current and desired status per pipeline, and how long it has been in its status.",
                    runbook="FelderaPipelineNotInDesiredState",
                ),
                table(
                    "Deployment error codes",
                    (Query(f"feldera_pipeline_deployment_error_info{{{s.fleet}}}"),),
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
                table(
                    "Checkpoint health",
                    checkpoint_table,
                    w=14,
                    h=9,
                    key=True,
                    link=True,
                    description="Latest checkpoint failed (1), checkpoint sync failed (1), age of the newest "
                    "checkpoint, checkpoint failures in the time range.",
                    runbook="FelderaCheckpointFailed",
                ),
                bars(
                    "Age of newest checkpoint",
                    Query(checkpoint_age(s.fleet), "{{pipeline_name}}"),
                    "s",
                    "gradient",
                    w=10,
                    h=9,
                    key=True,
                    thresholds=CHECKPOINT_AGE,
                    runbook="FelderaAutomaticCheckpointsFailing",
                ),
            ),
        ),
        Row(
            "Connectors",
            (
                table(
                    "Connectors with a fatal error or unhealthy",
                    connector_problems,
                    w=12,
                    h=8,
                    link=True,
                    description="1 in the first column: fatal error; 1 in the second: health Unhealthy.",
                    runbook="FelderaConnectorFatalError",
                ),
                graph(
                    "Connector errors (per second)",
                    "suffix:err/s",
                    Query(
                        rate("feldera_pipeline_connector_errors_total", "pipeline_name", s.fleet), "{{pipeline_name}}"
                    ),
                    w=12,
                ),
            ),
        ),
        Row(
            "Exporter and API health",
            (
                *api_health_panels(s, h=6),
                graph("API errors by endpoint", "reqps", api_errors(s.sel), w=12, h=6),
                table("Firing Feldera alerts (details)", (Query(f"ALERTS{{{s.alerts}}}"),), w=24, h=6),
            ),
        ),
    ]


def pressure_level(sel: str) -> str:
    """The exporter's one-hot memory pressure as Feldera's number: 0 low, 1 moderate, 2 high, 3 critical."""
    return " + ".join(
        f'{weight} * max(feldera_pipeline_memory_pressure{{{sel}, status="{level}"}})'
        for weight, level in enumerate(PRESSURE_COLORS)
        if weight
    )


def either_source(s: Scope, ours: str, native: str, legend: str) -> tuple[Query, Query]:
    """The selected pipeline's value from the exporter and from Feldera's own ``/v0/metrics`` (when scraped)."""
    return Query(f"{ours}{{{s.one}}}", f"{legend} (exporter)"), Query(f"{native}{{{s.native}}}", f"{legend} (Feldera)")


def resource_panels(s: Scope) -> tuple[Panel, ...]:
    """Pipeline detail: memory, storage and output stall, from the exporter and from Feldera's own metrics."""
    return (
        stat(
            "Memory pressure",
            f"feldera_pipeline_memory_pressure{{{s.one}}} == 1",
            legend="{{status}}",
            options={"textMode": "name"},
            key=True,
            runbook="FelderaPipelineMemoryPressure",
            overrides=tuple(
                {
                    "matcher": {"id": "byName", "options": level},
                    "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}],
                }
                for level, color in PRESSURE_COLORS.items()
            ),
        ),
        graph(
            "Memory pressure level",
            "none",
            Query(pressure_level(s.one), "level (exporter)"),
            Query(f"memory_pressure{{{s.native}}}", "level (Feldera)"),
            w=10,
            key=True,
            runbook="FelderaPipelineMemoryPressure",
            mappings=(PRESSURE_MAPPING,),
            description="0 low, 1 moderate (85 % of the memory limit), 2 high (90 %), 3 critical (95 %).",
        ),
        graph(
            "Resident memory",
            "bytes",
            *either_source(s, "feldera_pipeline_resident_memory_bytes", "process_resident_memory_bytes", "resident"),
            Query(f"max_rss_bytes{{{s.native}}} > 0", "limit (Feldera)"),
            w=10,
            key=True,
        ),
        graph(
            "Storage in use",
            "bytes",
            *either_source(s, "feldera_pipeline_storage_usage_bytes", "storage_usage_bytes", "in use"),
            Query(f"feldera_pipeline_storage_limit_bytes{{{s.one}}}", "limit"),
            w=8,
            key=True,
            runbook="FelderaPipelineStorageFillingUp",
            description="Storage the pipeline process uses, and the limit runtime_config.resources.storage_mb_max "
            "sets where it is set.",
        ),
        graph(
            "Output stall",
            "s",
            *either_source(s, "feldera_pipeline_output_stall_seconds", "output_stall_seconds", "stalled for"),
            w=8,
            key=True,
            runbook="FelderaPipelineOutputStalled",
            description="How long the pipeline has been stalled because an output connector's buffer is full; 0 "
            "when it is not.",
        ),
        graph(
            "Input backlog",
            "short",
            *either_source(s, "feldera_pipeline_input_buffered_records", "records_input_buffered", "buffered"),
            w=8,
            key=True,
            description="Records the input connectors received and the pipeline has not processed yet.",
        ),
    )


def pipeline_rows(s: Scope) -> list[Row]:
    def gauge(metric: str, legend: str = "{{endpoint}}") -> Query:
        return Query(f"{metric}{{{s.one}}}", legend)

    def one_hot(metric: str, legend: str) -> Query:
        return Query(f"{metric}{{{s.one}}} == 1", legend)

    def failures(metric: str, legend: str) -> Query:
        return Query(f"round(increase({metric}{{{s.one}}}[$__rate_interval]))", legend)

    def connector_errors(direction: str, kinds: tuple[str, str]) -> Panel:
        errors = (
            Query(rate(f"feldera_{direction}_connector_{kind}_errors_total", "endpoint", s.one), kind + " {{endpoint}}")
            for kind in kinds
        )
        return graph(f"{direction.capitalize()} connector errors", "suffix:err/s", *errors, w=12, key=True)

    throughput = (
        ("Input records", "feldera_input_connector_records_total", "suffix:rec/s"),
        ("Input bytes", "feldera_input_connector_bytes_total", "Bps"),
        ("Output records", "feldera_output_connector_transmitted_records_total", "suffix:rec/s"),
        ("Output bytes", "feldera_output_connector_transmitted_bytes_total", "Bps"),
    )
    fatal_errors = tuple(
        Query(f"max by (endpoint) (feldera_{direction}_connector_fatal_error{{{s.one}}} == 1)", "{{endpoint}}")
        for direction in ("input", "output")
    )
    fatal_texts = tuple(
        Query(f"max by (endpoint, error) (feldera_{direction}_connector_fatal_error_info{{{s.one}}})")
        for direction in ("input", "output")
    )
    return [
        Row(
            "Alerts",
            (
                table(
                    "Firing alerts of this pipeline",
                    (Query(f"ALERTS{{{s.pipeline_alerts}}}"),),
                    w=24,
                    h=5,
                    description="The shipped rules' alerts firing now for this pipeline; the dashboard's time "
                    "series show them as annotations (toggle: Feldera alerts).",
                ),
            ),
        ),
        Row(
            "Status",
            (
                status_stat("Status", "feldera_pipeline_status", s.one, key=True, overrides=status_overrides()),
                status_stat("Desired status", "feldera_pipeline_desired_status", s.one, key=True),
                stat(
                    "In this status for",
                    f"time() - feldera_pipeline_status_since_timestamp_seconds{{{s.one}}}",
                    "s",
                    key=True,
                ),
                status_stat("Program status", "feldera_pipeline_program_status", s.one),
                stat(
                    "Runtime status reason",
                    f"feldera_pipeline_runtime_status_reason_info{{{s.one}}}",
                    legend="{{reason}}",
                    options={"textMode": "name"},
                    thresholds=NEUTRAL,
                    description="Why the runtime status is what it is, while Feldera says (mostly Unavailable and "
                    "Initializing): the start of its reason, e.g. status_unreachable.",
                ),
                alarm(
                    "Deployment error",
                    f"feldera_pipeline_deployment_error{{{s.one}}}",
                    "FelderaPipelineDeploymentError",
                    key=True,
                    mappings=(YES_NO_MAPPING,),
                ),
                stat(
                    "Connector errors (num_errors)",
                    f"feldera_pipeline_connector_errors_total{{{s.one}}}",
                    thresholds=NEUTRAL,
                    description="Errors the pipeline's connectors counted since its process started (a lifetime "
                    "count; see the connector error rates for what happens now).",
                ),
                timeline(
                    "Status timeline",
                    one_hot("feldera_pipeline_status", "{{status}}"),
                    one_hot("feldera_pipeline_desired_status", "desired {{status}}"),
                    h=6,
                    key=True,
                    overrides=(*status_overrides(), *status_overrides("desired ")),
                ),
            ),
        ),
        Row("Memory, storage and output stall", resource_panels(s)),
        Row(
            "Checkpoints and sync",
            (
                alarm(
                    "Latest checkpoint",
                    f"feldera_pipeline_checkpoint_failed{{{s.one}}}",
                    "FelderaCheckpointFailed",
                    key=True,
                    mappings=(FAILED_MAPPING,),
                ),
                stat(
                    "Age of newest checkpoint",
                    checkpoint_age(s.one),
                    "s",
                    key=True,
                    thresholds=CHECKPOINT_AGE,
                    runbook="FelderaAutomaticCheckpointsFailing",
                ),
                stat("Checkpoints in storage", f"feldera_pipeline_storage_checkpoints{{{s.one}}}", key=True),
                alarm(
                    "Latest checkpoint sync",
                    f"feldera_pipeline_checkpoint_sync_failed{{{s.one}}}",
                    "FelderaCheckpointSyncFailed",
                    mappings=(FAILED_MAPPING,),
                ),
                stat(
                    "Since last confirmed sync",
                    f"time() - feldera_pipeline_checkpoint_sync_last_success_seen_timestamp_seconds{{{s.one}}}",
                    "s",
                ),
                alarm(
                    "Checkpoint permanent errors",
                    f"sum without (reason) (feldera_pipeline_checkpoint_permanent_errors{{{s.one}}})",
                    "FelderaCheckpointFailed",
                    description="Reasons no checkpoint can succeed; feldera_pipeline_checkpoint_permanent_errors "
                    "says which (EnterpriseFeature: every pipeline of the open-source edition).",
                ),
                graph(
                    "Checkpoint sequence numbers",
                    "none",
                    gauge("feldera_pipeline_checkpoint_last_success_sequence_number", "success"),
                    gauge("feldera_pipeline_checkpoint_last_failure_sequence_number", "failure"),
                    key=True,
                ),
                graph(
                    "Checkpoint and sync failures",
                    "none",
                    failures("feldera_pipeline_checkpoint_failures_total", "checkpoint"),
                    failures("feldera_pipeline_checkpoint_sync_failures_total", "sync"),
                ),
                graph(
                    "Newest checkpoint size",
                    "bytes",
                    gauge("feldera_pipeline_storage_newest_checkpoint_size_bytes", "size"),
                    key=True,
                ),
                timeline("Checkpoint activity", one_hot("feldera_pipeline_checkpoint_activity", "{{status}}"), h=5),
            ),
        ),
        Row(
            "Connectors",
            (
                table(
                    "Input connectors",
                    connector_columns(
                        s.one,
                        "input",
                        ("paused", "paused"),
                        ("end_of_input", "end of input"),
                        ("buffered_records", "buffered"),
                    ),
                    w=12,
                    h=8,
                    key=True,
                    description="Per input connector: fatal error, health, paused, end of input, buffered records.",
                ),
                table(
                    "Output connectors",
                    connector_columns(
                        s.one,
                        "output",
                        ("paused", "paused"),
                        ("queued_records", "queued"),
                        ("buffered_records", "buffered"),
                    ),
                    w=12,
                    h=8,
                    key=True,
                    description="Per output connector: fatal error, health, paused (its output is discarded; newer "
                    "servers only), queued records, buffered records.",
                ),
                timeline(
                    "Connector fatal errors (when each began)",
                    *fatal_errors,
                    h=4,
                    runbook="FelderaConnectorFatalError",
                    description="A bar from the first poll that reported the connector's fatal error until the "
                    "pipeline restarted (Feldera keeps the error for the life of the process).",
                ),
                table(
                    "Fatal error texts",
                    fatal_texts,
                    w=24,
                    h=4,
                    runbook="FelderaConnectorFatalError",
                    description="Feldera's text of each connector's fatal error (secrets redacted, at most 256 "
                    "characters); the pipeline log has the whole of it.",
                ),
            ),
        ),
        Row(
            "Throughput",
            tuple(
                graph(title, unit, Query(rate(metric, "endpoint", s.one), "{{endpoint}}"), w=6, key=True)
                for title, metric, unit in throughput
            ),
        ),
        Row(
            "Errors",
            (connector_errors("input", ("parse", "transport")), connector_errors("output", ("encode", "transport"))),
        ),
        Row(
            "Backlog and latency",
            (
                graph(
                    "Input buffered records", "short", gauge("feldera_input_connector_buffered_records"), w=6, key=True
                ),
                graph("Input buffered bytes", "bytes", gauge("feldera_input_connector_buffered_bytes"), w=6, key=True),
                graph(
                    "Output queued records",
                    "short",
                    gauge("feldera_output_connector_queued_records", "queued {{endpoint}}"),
                    gauge("feldera_output_connector_buffered_records", "buffered {{endpoint}}"),
                    w=6,
                    key=True,
                ),
                graph("Output connector memory", "bytes", gauge("feldera_output_connector_memory_bytes"), w=6),
                graph(
                    "Input processing latency p99",
                    "s",
                    gauge("feldera_input_connector_processing_latency_p99_seconds"),
                    w=12,
                    key=True,
                ),
                graph(
                    "Input completion lag",
                    "s",
                    Query(
                        f"time() - feldera_input_connector_completed_frontier_completed_timestamp_seconds{{{s.one}}}",
                        "{{endpoint}}",
                    ),
                    w=12,
                    description="Seconds since the newest input that is fully processed and written to all outputs.",
                ),
            ),
        ),
    ]


def exporter_rows(s: Scope) -> list[Row]:
    failed_polls = _sum0(f'increase(feldera_exporter_polls_total{{{s.sel}, result="failure"}}[$__range])')
    return [
        Row(
            "Exporter",
            (
                *api_health_panels(s, h=5),
                alarm(
                    "Failed polls",
                    f"round({failed_polls})",
                    "FelderaApiUnreachable",
                    w=6,
                    key=True,
                    description="Poll cycles that failed in the time range.",
                ),
                table("Exporter version", (Query(f"feldera_exporter_build_info{{{s.scope}}}"),), w=6, h=5, key=True),
            ),
        ),
        Row(
            "Polling",
            (
                graph(
                    "Poll duration",
                    "s",
                    Query(f"feldera_exporter_poll_duration_seconds{{{s.sel}}}", "{{target}}"),
                    key=True,
                ),
                graph(
                    "Polls",
                    "reqps",
                    Query(rate("feldera_exporter_polls_total", "target, result", s.sel), "{{target}} {{result}}"),
                    key=True,
                ),
                graph("Freshness", "s", Query(freshness(s.sel), "{{target}}"), key=True),
            ),
        ),
        Row(
            "Feldera API requests",
            (
                graph(
                    "API requests by endpoint and code",
                    "reqps",
                    Query(
                        rate("feldera_exporter_api_requests_total", "endpoint, code", s.sel), "{{endpoint}} {{code}}"
                    ),
                    w=12,
                    h=9,
                    key=True,
                    stack=True,
                ),
                graph(
                    "API errors by endpoint and code",
                    "reqps",
                    api_errors(s.sel),
                    w=12,
                    h=9,
                    description="Non-2xx answers, timeouts, connection errors and invalid responses.",
                ),
                graph(
                    "API request duration p99",
                    "s",
                    Query(
                        "histogram_quantile(0.99, "
                        + rate("feldera_exporter_api_request_duration_seconds_bucket", "endpoint, le", s.sel)
                        + ")",
                        "{{endpoint}}",
                    ),
                    w=12,
                    h=9,
                    key=True,
                ),
                table(
                    "API requests in the time range",
                    (
                        Query(
                            "round(sum by (target, endpoint, code) (increase(feldera_exporter_api_requests_total"
                            f"{{{s.sel}}}[$__range])))",
                            column="requests",
                        ),
                    ),
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


def _variables(s: Scope, pipeline: str | None) -> list[Json]:
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
        _variable("job", "Job", f"label_values(feldera_up{{{s.selector}}}, job)", multi=True),
        _variable("instance", "Instance", f"label_values(feldera_up{{{s.job}}}, instance)", multi=True),
        _variable("target", "Target", f"label_values(feldera_up{{{s.scope}}}, target)", multi=True),
    ]
    if pipeline is not None:
        variables.append(
            _variable(
                "pipeline_name",
                "Pipeline",
                f"label_values(feldera_pipeline_info{{{s.sel}}}, pipeline_name)",
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
        "instant": kind in INSTANT_KINDS,
        "range": kind not in INSTANT_KINDS,
    }
    if kind == "table":
        target["format"] = "table"
    return target


def _panel_json(panel: Panel, panel_id: int, grid: Json, runbooks: str) -> Json:
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
        url = f"{runbooks}#{panel.runbook.lower()}"
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


def _layout(rows: Sequence[Row], runbooks: str) -> list[Json]:
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
            panels.append(_panel_json(panel, next_id, {"h": panel.h, "w": panel.w, "x": x, "y": y}, runbooks))
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


@dataclass(frozen=True)
class Dashboard:
    title: str
    description: str
    rows: Callable[[Scope], list[Row]]
    pipeline: str | None
    """The pipeline variable: None (none), "multi" (overview) or "single" (detail)."""
    alert_annotations: bool = False
    """The selected pipeline's firing alerts are drawn as annotations on every time series."""


def _annotations(selector: str) -> list[Json]:
    if not selector:
        return []
    return [
        {
            "name": "Feldera alerts",
            "datasource": DATASOURCE,
            "enable": True,
            "iconColor": "red",
            "expr": f"ALERTS{{{selector}}}",
            "step": "30s",
            "titleFormat": "{{alertname}} ({{severity}})",
            "textFormat": "{{endpoint}}",
            "tagKeys": "alertname,severity",
            "useValueForTime": False,
        }
    ]


DASHBOARDS = {
    OVERVIEW_UID: Dashboard(
        "Feldera / Fleet overview",
        "Every Feldera pipeline at a glance: status against desired status, deployment errors, the "
        "platform's version, licence and pipelines left on an old runtime, checkpoint health, broken "
        "connectors, exporter health and firing alerts.",
        overview_rows,
        "multi",
    ),
    PIPELINE_UID: Dashboard(
        "Feldera / Pipeline",
        "One Feldera pipeline: its firing alerts (also drawn on every time series), status timeline, checkpoints "
        "and sync, connectors and their fatal errors, throughput, errors, backlog and latency.",
        pipeline_rows,
        "single",
        alert_annotations=True,
    ),
    EXPORTER_UID: Dashboard(
        "Feldera / Exporter",
        "feldera-exporter self-monitoring: Feldera API reachability, poll duration and freshness, API "
        "requests and errors by endpoint and code.",
        exporter_rows,
        None,
    ),
}


def _dashboard(uid: str, dashboard: Dashboard, s: Scope) -> Json:
    return {
        "uid": uid,
        "title": dashboard.title,
        "description": dashboard.description,
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
        "annotations": {"list": _annotations(s.pipeline_alerts if dashboard.alert_annotations else "")},
        "links": _links(),
        "templating": {"list": _variables(s, dashboard.pipeline)},
        "panels": _layout(dashboard.rows(s), s.runbooks),
    }


def dashboards(config: Mapping[str, Any]) -> dict[str, Json]:
    """File name (without ``.json``) -> dashboard JSON, for a complete rule config (the shipped one and any
    overrides: :func:`exporter.mixin.rules.load_config`)."""
    scope = Scope.of(config)
    return {uid: _dashboard(uid, dashboard, scope) for uid, dashboard in DASHBOARDS.items()}


def key_panels(scope: Scope) -> dict[str, set[str]]:
    """Dashboard uid -> titles of the panels that must return data against the demo."""
    return {uid: {p.title for row in d.rows(scope) for p in row.panels if p.key} for uid, d in DASHBOARDS.items()}


def render(dashboard: Json) -> str:
    return json.dumps(dashboard, indent=2, sort_keys=False) + "\n"
