"""Pipeline metrics from the pipeline list (``GET /v0/pipelines?selector=status_with_connectors``).

Sample output (``target`` label left out; status sets abridged: every state plus ``Other`` is emitted)::

    feldera_pipeline_info{pipeline_name="orders",pipeline_id="0190…",platform_version="0.337.0"} 1.0
    feldera_pipeline_status{pipeline_name="orders",status="Running"} 1.0
    feldera_pipeline_status{pipeline_name="orders",status="Stopped"} 0.0
    feldera_pipeline_desired_status{pipeline_name="orders",status="Running"} 1.0
    feldera_pipeline_resources_status{pipeline_name="orders",status="Provisioned"} 1.0
    feldera_pipeline_runtime_status{pipeline_name="orders",status="Running"} 1.0
    feldera_pipeline_runtime_status_reason_info{pipeline_name="billing",reason="status_unreachable"} 1.0
    feldera_pipeline_program_status{pipeline_name="orders",status="Success"} 1.0
    feldera_pipeline_storage_status{pipeline_name="orders",status="InUse"} 1.0
    feldera_pipeline_status_since_timestamp_seconds{pipeline_name="orders"} 1.7145648e+09
    feldera_pipeline_creation_timestamp_seconds{pipeline_name="orders"} 1.7145e+09
    feldera_pipeline_deployment_error{pipeline_name="orders"} 0.0
    feldera_pipeline_version{pipeline_name="orders"} 3.0
    feldera_pipeline_connector_errors_total{pipeline_name="orders"} 0.0
    feldera_pipeline_storage_checkpoints{pipeline_name="orders"} 2.0
    feldera_pipeline_storage_newest_checkpoint_size_bytes{pipeline_name="orders"} 1.048576e+06
    feldera_pipeline_storage_newest_checkpoint_first_seen_timestamp_seconds{pipeline_name="orders"} 1.71e+09

A stopped pipeline has no runtime status: both runtime status sets are emitted with every state at 0. The runtime
status reason is free text; it is shown as one of :data:`RUNTIME_STATUS_REASONS` (the texts the manager and the
pipeline write, recognised by their fixed start) or ``Other``, never as the text itself.
"""

from __future__ import annotations

from exporter.metrics.spec import OTHER, FamilyBuilder, Labels, MetricSpec
from exporter.metrics.walk import each_pipeline
from exporter.models import (
    COMBINED_DESIRED_STATUSES,
    COMBINED_STATUSES,
    PROGRAM_STATUSES,
    RESOURCES_DESIRED_STATUSES,
    RESOURCES_STATUSES,
    RUNTIME_DESIRED_STATUSES,
    RUNTIME_STATUSES,
    STORAGE_STATUSES,
)
from exporter.snapshot import PipelineSnapshot, Snapshot

GROUP = "pipelines"

RUNTIME_STATUS_REASONS: tuple[tuple[str, str], ...] = (
    ("initializing_by_runner", "initializing set by the runner"),
    ("downloading_checkpoint", "downloading checkpoint from object storage"),
    ("initializing_grace_period", "Still in the grace period for initializing."),
    ("status_unreachable", "Pipeline status endpoint could not be reached"),
    ("status_error", "Pipeline status response (503 Service Unavailable) is an error"),
    ("status_invalid", "Pipeline status response (503 Service Unavailable) cannot be deserialized"),
    ("status_invalid", "Pipeline status response (200 OK)"),
)
"""``reason`` label value and the start of the reasons it stands for: what the manager's runner
(``crates/pipeline-manager/src/runner/pipeline_automata.rs``) and the pipeline
(``crates/adapters/src/server.rs``, ``get_status``) write into ``deployment_runtime_status_details``."""


def runtime_status_reason(text: str | None) -> str | None:
    """The bounded ``reason`` of a runtime status reason text; None when there is none (absent or empty).

    >>> runtime_status_reason("Pipeline status endpoint could not be reached: connection refused")
    'status_unreachable'
    >>> runtime_status_reason("out of cheese"), runtime_status_reason("")
    ('Other', None)
    """
    if not text:
        return None
    for reason, start in RUNTIME_STATUS_REASONS:
        if text.startswith(start):
            return reason
    return OTHER


def _gauge(name: str, help: str, unit: str = "", labels: tuple[str, ...] = ()) -> MetricSpec:
    return MetricSpec(name, "gauge", help, labels=labels, group=GROUP, unit=unit)


def _status_set(name: str, help: str, states: tuple[str, ...]) -> MetricSpec:
    return MetricSpec(name, "gauge", help, labels=("status",), group=GROUP, states=states)


INFO = _gauge(
    "feldera_pipeline_info",
    "Static facts about a pipeline; always 1.",
    labels=("pipeline_id", "platform_version"),
)
STATUS = _status_set(
    "feldera_pipeline_status", "Current combined deployment status (deployment_status), one-hot.", COMBINED_STATUSES
)
DESIRED_STATUS = _status_set(
    "feldera_pipeline_desired_status",
    "Desired combined deployment status (deployment_desired_status), one-hot.",
    COMBINED_DESIRED_STATUSES,
)
RESOURCES_STATUS = _status_set(
    "feldera_pipeline_resources_status", "Current resources status, one-hot.", RESOURCES_STATUSES
)
RESOURCES_DESIRED_STATUS = _status_set(
    "feldera_pipeline_resources_desired_status", "Desired resources status, one-hot.", RESOURCES_DESIRED_STATUSES
)
RUNTIME_STATUS = _status_set(
    "feldera_pipeline_runtime_status",
    "Current runtime status, one-hot; every state 0 when the pipeline has no runtime (stopped).",
    RUNTIME_STATUSES,
)
RUNTIME_DESIRED_STATUS = _status_set(
    "feldera_pipeline_runtime_desired_status",
    "Desired runtime status, one-hot; every state 0 when the pipeline has no runtime (stopped).",
    RUNTIME_DESIRED_STATUSES,
)
RUNTIME_STATUS_REASON = _gauge(
    "feldera_pipeline_runtime_status_reason_info",
    "Why the runtime status is what it is (deployment_runtime_status_details.reason, mostly while Unavailable or "
    f"Initializing): {', '.join(dict.fromkeys(r for r, _ in RUNTIME_STATUS_REASONS))} or Other; 1, present only "
    "while Feldera gives a reason.",
    labels=("reason",),
)
PROGRAM_STATUS = _status_set(
    "feldera_pipeline_program_status", "Program compilation status, one-hot.", PROGRAM_STATUSES
)
STORAGE_STATUS = _status_set("feldera_pipeline_storage_status", "Storage status, one-hot.", STORAGE_STATUSES)
STATUS_SINCE = _gauge(
    "feldera_pipeline_status_since_timestamp_seconds",
    "When the current combined deployment status was entered.",
    "seconds",
)
DESIRED_STATUS_SINCE = _gauge(
    "feldera_pipeline_desired_status_since_timestamp_seconds",
    "When the desired combined deployment status was last set.",
    "seconds",
)
RESOURCES_STATUS_SINCE = _gauge(
    "feldera_pipeline_resources_status_since_timestamp_seconds",
    "When the current resources status was entered.",
    "seconds",
)
RUNTIME_STATUS_SINCE = _gauge(
    "feldera_pipeline_runtime_status_since_timestamp_seconds",
    "When the current runtime status was entered; absent when the pipeline has no runtime.",
    "seconds",
)
PROGRAM_STATUS_SINCE = _gauge(
    "feldera_pipeline_program_status_since_timestamp_seconds",
    "When the current program compilation status was entered.",
    "seconds",
)
CREATION = _gauge("feldera_pipeline_creation_timestamp_seconds", "When the pipeline was created.", "seconds")
DEPLOYMENT_ERROR = _gauge(
    "feldera_pipeline_deployment_error",
    "1 when the pipeline carries a deployment error (the message is logged by Feldera, not exported), else 0.",
)
DEPLOYMENT_ERROR_INFO = _gauge(
    "feldera_pipeline_deployment_error_info",
    "Error code of the current deployment error; 1, present only while there is one.",
    labels=("error_code",),
)
VERSION = _gauge("feldera_pipeline_version", "Pipeline version; increments on every edit.")
PROGRAM_VERSION = _gauge("feldera_pipeline_program_version", "Program version; increments on every program change.")
REFRESH_VERSION = _gauge(
    "feldera_pipeline_refresh_version", "Refresh version; increments when the pipeline is refreshed."
)
CONNECTOR_ERRORS = MetricSpec(
    "feldera_pipeline_connector_errors_total",
    "counter",
    "Errors reported by the pipeline's connectors (connectors.num_errors); absent when Feldera does not report it.",
    group=GROUP,
)
STORAGE_CHECKPOINTS = _gauge("feldera_pipeline_storage_checkpoints", "Checkpoints present in the pipeline's storage.")
NEWEST_CHECKPOINT_SIZE = _gauge(
    "feldera_pipeline_storage_newest_checkpoint_size_bytes", "Size of the newest checkpoint in storage.", "bytes"
)
NEWEST_CHECKPOINT_FIRST_SEEN = _gauge(
    "feldera_pipeline_storage_newest_checkpoint_first_seen_timestamp_seconds",
    "When the exporter first saw the newest checkpoint in storage (Feldera does not report its creation time).",
    "seconds",
)

SPECS: tuple[MetricSpec, ...] = (
    INFO,
    STATUS,
    DESIRED_STATUS,
    RESOURCES_STATUS,
    RESOURCES_DESIRED_STATUS,
    RUNTIME_STATUS,
    RUNTIME_DESIRED_STATUS,
    RUNTIME_STATUS_REASON,
    PROGRAM_STATUS,
    STORAGE_STATUS,
    STATUS_SINCE,
    DESIRED_STATUS_SINCE,
    RESOURCES_STATUS_SINCE,
    RUNTIME_STATUS_SINCE,
    PROGRAM_STATUS_SINCE,
    CREATION,
    DEPLOYMENT_ERROR,
    DEPLOYMENT_ERROR_INFO,
    VERSION,
    PROGRAM_VERSION,
    REFRESH_VERSION,
    CONNECTOR_ERRORS,
    STORAGE_CHECKPOINTS,
    NEWEST_CHECKPOINT_SIZE,
    NEWEST_CHECKPOINT_FIRST_SEEN,
)


def add_samples(snapshot: Snapshot, out: FamilyBuilder[object]) -> None:
    if out.wants(GROUP):
        each_pipeline(snapshot, out, lambda pid, snap: _pipeline_samples(out, pid, snap))


def _pipeline_samples(out: FamilyBuilder[object], pid: Labels, snap: PipelineSnapshot) -> None:
    p = snap.pipeline
    out.add(INFO, pid, 1, pipeline_id=p.id, platform_version=p.platform_version)
    out.state_set(STATUS, pid, p.deployment_status or None)
    out.state_set(DESIRED_STATUS, pid, p.deployment_desired_status or None)
    out.state_set(RESOURCES_STATUS, pid, p.deployment_resources_status or None)
    out.state_set(RESOURCES_DESIRED_STATUS, pid, p.deployment_resources_desired_status or None)
    out.state_set(RUNTIME_STATUS, pid, p.deployment_runtime_status or None)
    out.state_set(RUNTIME_DESIRED_STATUS, pid, p.deployment_runtime_desired_status or None)
    reason = runtime_status_reason(p.runtime_status_reason)
    if reason is not None:
        out.add(RUNTIME_STATUS_REASON, pid, 1, reason=reason)
    out.state_set(PROGRAM_STATUS, pid, p.program_status or None)
    out.state_set(STORAGE_STATUS, pid, p.storage_status or None)
    out.add_optional(STATUS_SINCE, pid, p.deployment_status_since)
    out.add_optional(DESIRED_STATUS_SINCE, pid, p.deployment_desired_status_since)
    out.add_optional(RESOURCES_STATUS_SINCE, pid, p.deployment_resources_status_since)
    out.add_optional(RUNTIME_STATUS_SINCE, pid, p.deployment_runtime_status_since)
    out.add_optional(PROGRAM_STATUS_SINCE, pid, p.program_status_since)
    out.add_optional(CREATION, pid, p.created_at)
    error = p.deployment_error
    out.add(DEPLOYMENT_ERROR, pid, 0 if error is None else 1)
    if error is not None:
        out.add(DEPLOYMENT_ERROR_INFO, pid, 1, error_code=error.error_code)
    out.add_optional(VERSION, pid, p.version)
    out.add_optional(PROGRAM_VERSION, pid, p.program_version)
    out.add_optional(REFRESH_VERSION, pid, p.refresh_version)
    if p.connectors is not None:
        out.add_optional(CONNECTOR_ERRORS, pid, p.connectors.num_errors)
    details = p.storage_status_details
    if details is not None:
        out.add(STORAGE_CHECKPOINTS, pid, len(details.checkpoints))
        if details.checkpoints:
            out.add_optional(NEWEST_CHECKPOINT_SIZE, pid, details.checkpoints[-1].size)
            out.add_optional(NEWEST_CHECKPOINT_FIRST_SEEN, pid, snap.derived.newest_checkpoint_first_seen_seconds)
