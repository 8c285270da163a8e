"""Checkpoint metrics: ``checkpoint_status``, ``checkpoint_activity`` of ``/stats``, and ``checkpoint/sync_status``.

Sample output (``target`` label left out; the activity set is abridged)::

    feldera_pipeline_checkpoint_last_success_sequence_number{pipeline_name="orders"} 41.0
    feldera_pipeline_checkpoint_last_failure_sequence_number{pipeline_name="orders"} 42.0
    feldera_pipeline_checkpoint_last_failure_timestamp_seconds{pipeline_name="orders"} 1.7145648e+09
    feldera_pipeline_checkpoint_last_failure_info{pipeline_name="orders",error="No space left on device"} 1.0
    feldera_pipeline_checkpoint_failed{pipeline_name="orders"} 1.0
    feldera_pipeline_checkpoint_failures_total{pipeline_name="orders"} 3.0
    feldera_pipeline_checkpoint_status_checked_timestamp_seconds{pipeline_name="orders"} 1.7145648e+09
    feldera_pipeline_checkpoint_activity{pipeline_name="orders",status="in_progress"} 1.0
    feldera_pipeline_checkpoint_activity_since_timestamp_seconds{pipeline_name="orders"} 1.7145649e+09
    feldera_pipeline_checkpoint_delay_reason{pipeline_name="orders",reason="Replaying"} 0.0
    feldera_pipeline_checkpoint_permanent_errors{pipeline_name="orders",reason="StorageRequired"} 1.0
    feldera_pipeline_checkpoint_permanent_errors{pipeline_name="orders",reason="UnsupportedInputEndpoint"} 2.0
    feldera_pipeline_fault_tolerance{pipeline_name="orders",model="exactly_once"} 1.0
    feldera_pipeline_checkpoint_interval_seconds{pipeline_name="orders"} 60.0
    feldera_pipeline_checkpointing_since_timestamp_seconds{pipeline_name="orders"} 1.7145640e+09
    feldera_pipeline_checkpoint_sync_failed{pipeline_name="orders"} 0.0
    feldera_pipeline_checkpoint_sync_failures_total{pipeline_name="orders"} 1.0
    feldera_pipeline_checkpoint_sync_last_success_seen_timestamp_seconds{pipeline_name="orders"} 1.7145649e+09
    feldera_pipeline_checkpoint_sync_status_checked_timestamp_seconds{pipeline_name="orders"} 1.7145648e+09

``checkpoint_status`` reports only checkpoints requested with ``POST .../checkpoint``. Feldera keeps the last
success and the last failure side by side (neither clears the other), so "the newest requested attempt failed" is
``failure.sequence_number > success`` (or no success at all). Failure counters come from the exporter's history of
distinct failures (:mod:`exporter.history`) and are emitted for every listed pipeline. Its answer, and sync
status's, is reused while it cannot have changed: ``*_checked_timestamp_seconds`` says when it was received.

Automatic checkpoints leave no trace there when they fail: what shows is their absence. The fault-tolerance model
and interval come from ``runtime_config`` (asked once per pipeline version); ``checkpointing_since`` is when the
current stretch of Running or Paused began, and with
``feldera_pipeline_storage_newest_checkpoint_first_seen_timestamp_seconds`` the shipped rules tell when no
checkpoint appeared for too long (``FelderaAutomaticCheckpointsFailing``).
"""

from __future__ import annotations

from exporter.metrics.spec import OTHER, FamilyBuilder, Labels, MetricSpec, error_text
from exporter.metrics.walk import each_pipeline
from exporter.models import PERMANENT_SUSPEND_ERRORS, CheckpointStatus
from exporter.snapshot import PipelineSnapshot, Snapshot

GROUP = "checkpoints"
SYNC_GROUP = "checkpoint_sync"

ACTIVITY_STATES = ("idle", "delayed", "in_progress")
DELAY_REASONS = ("Replaying", "Bootstrapping", "TransactionInProgress", "InputEndpointBarrier", "Coordination")
"""``TemporarySuspendError`` (``crates/feldera-types/src/suspend.rs``); others show as ``Other``."""
CHECKPOINT_STATUS = ("checkpoint_status",)
STATS = ("stats",)
SYNC_STATUS = ("sync_status",)
FAULT_TOLERANCE = ("fault_tolerance",)
FT_MODELS = ("none", "at_least_once", "exactly_once")

LAST_SUCCESS = MetricSpec(
    "feldera_pipeline_checkpoint_last_success_sequence_number",
    "gauge",
    "Sequence number of the newest successful checkpoint of the current pipeline process.",
    group=GROUP,
    reads=CHECKPOINT_STATUS,
)
LAST_FAILURE = MetricSpec(
    "feldera_pipeline_checkpoint_last_failure_sequence_number",
    "gauge",
    "Sequence number of the newest failed checkpoint of the current pipeline process.",
    group=GROUP,
    reads=CHECKPOINT_STATUS,
)
LAST_FAILURE_TIME = MetricSpec(
    "feldera_pipeline_checkpoint_last_failure_timestamp_seconds",
    "gauge",
    "When the newest failed checkpoint failed.",
    group=GROUP,
    unit="seconds",
    reads=CHECKPOINT_STATUS,
)
LAST_FAILURE_INFO = MetricSpec(
    "feldera_pipeline_checkpoint_last_failure_info",
    "gauge",
    "The error text of the newest failed checkpoint of the current pipeline process in the error label (secrets "
    "redacted, at most 256 characters), for alert descriptions; 1, present only while checkpoint_status reports one.",
    labels=("error",),
    group=GROUP,
)
FAILED = MetricSpec(
    "feldera_pipeline_checkpoint_failed",
    "gauge",
    "1 when the newest checkpoint attempt failed (failure sequence number above the last success), else 0.",
    group=GROUP,
    reads=CHECKPOINT_STATUS,
)
FAILURES = MetricSpec(
    "feldera_pipeline_checkpoint_failures_total",
    "counter",
    "Distinct checkpoint failures observed by this exporter, across pipeline restarts.",
    group=GROUP,
    reads=CHECKPOINT_STATUS,
)
CHECKPOINT_STATUS_CHECKED = MetricSpec(
    "feldera_pipeline_checkpoint_status_checked_timestamp_seconds",
    "gauge",
    "When the checkpoint_status answer shown was received (it is reused while it cannot have changed, for at "
    "most poll.recheck_interval).",
    group=GROUP,
    unit="seconds",
    reads=CHECKPOINT_STATUS,
)
ACTIVITY = MetricSpec(
    "feldera_pipeline_checkpoint_activity",
    "gauge",
    "Current checkpoint activity from /stats, one-hot.",
    labels=("status",),
    group=GROUP,
    states=ACTIVITY_STATES,
    reads=STATS,
)
ACTIVITY_SINCE = MetricSpec(
    "feldera_pipeline_checkpoint_activity_since_timestamp_seconds",
    "gauge",
    "When the current checkpoint activity began (delayed since / write started); absent when idle.",
    group=GROUP,
    unit="seconds",
    reads=STATS,
)
DELAY_REASON = MetricSpec(
    "feldera_pipeline_checkpoint_delay_reason",
    "gauge",
    "1 for each reason a delayed checkpoint waits for (checkpoint_activity delayed), else 0; several can be 1.",
    labels=("reason",),
    group=GROUP,
    states=DELAY_REASONS,
    state_label="reason",
    reads=STATS,
)
PERMANENT_ERRORS = MetricSpec(
    "feldera_pipeline_checkpoint_permanent_errors",
    "gauge",
    "Reasons the pipeline can never checkpoint or suspend in its current configuration, by reason: "
    "EnterpriseFeature on every pipeline of the open-source edition, one UnsupportedInputEndpoint per such input "
    "connector; every reason is emitted, 0 when absent.",
    labels=("reason",),
    group=GROUP,
    states=PERMANENT_SUSPEND_ERRORS,
    state_label="reason",
    reads=STATS,
)
FT_MODEL = MetricSpec(
    "feldera_pipeline_fault_tolerance",
    "gauge",
    "The pipeline's fault-tolerance model (runtime_config.fault_tolerance.model), one-hot; none: no automatic "
    "checkpoints.",
    labels=("model",),
    group=GROUP,
    states=FT_MODELS,
    state_label="model",
    reads=FAULT_TOLERANCE,
)
INTERVAL = MetricSpec(
    "feldera_pipeline_checkpoint_interval_seconds",
    "gauge",
    "Seconds between the pipeline's automatic checkpoints (checkpoint_interval_secs, clamped to 1-3600); absent "
    "when it takes none.",
    group=GROUP,
    unit="seconds",
    reads=FAULT_TOLERANCE,
)
CHECKPOINTING_SINCE = MetricSpec(
    "feldera_pipeline_checkpointing_since_timestamp_seconds",
    "gauge",
    "When the pipeline's process began its current stretch of Running or Paused, in which it takes automatic "
    "checkpoints (a start, a restart, the end of a replay or bootstrap; or the exporter's first sight of it).",
    group=GROUP,
    unit="seconds",
)
SYNC_FAILED = MetricSpec(
    "feldera_pipeline_checkpoint_sync_failed",
    "gauge",
    "1 when the newest checkpoint sync to object storage the exporter knows of failed, else 0.",
    group=SYNC_GROUP,
    reads=SYNC_STATUS,
)
SYNC_FAILURES = MetricSpec(
    "feldera_pipeline_checkpoint_sync_failures_total",
    "counter",
    "Distinct checkpoint sync failures observed by this exporter.",
    group=SYNC_GROUP,
    reads=SYNC_STATUS,
)
SYNC_LAST_SUCCESS_SEEN = MetricSpec(
    "feldera_pipeline_checkpoint_sync_last_success_seen_timestamp_seconds",
    "gauge",
    "When the exporter first saw the current last successfully synced checkpoint.",
    group=SYNC_GROUP,
    unit="seconds",
    reads=SYNC_STATUS,
)
SYNC_STATUS_CHECKED = MetricSpec(
    "feldera_pipeline_checkpoint_sync_status_checked_timestamp_seconds",
    "gauge",
    "When the checkpoint/sync_status answer shown was received (it is reused while it cannot have changed, for "
    "at most poll.recheck_interval).",
    group=SYNC_GROUP,
    unit="seconds",
    reads=SYNC_STATUS,
)

SPECS: tuple[MetricSpec, ...] = (
    LAST_SUCCESS,
    LAST_FAILURE,
    LAST_FAILURE_TIME,
    LAST_FAILURE_INFO,
    FAILED,
    FAILURES,
    CHECKPOINT_STATUS_CHECKED,
    ACTIVITY,
    ACTIVITY_SINCE,
    DELAY_REASON,
    PERMANENT_ERRORS,
    FT_MODEL,
    INTERVAL,
    CHECKPOINTING_SINCE,
    SYNC_FAILED,
    SYNC_FAILURES,
    SYNC_LAST_SUCCESS_SEEN,
    SYNC_STATUS_CHECKED,
)


def checkpoint_failed(status: CheckpointStatus) -> bool:
    """The newest checkpoint attempt failed: a failure newer than the last success, or no success at all."""
    failure = status.failure
    if failure is None:
        return False
    if status.success is None:
        return True
    return failure.sequence_number is not None and failure.sequence_number > status.success


def _permanent_errors(out: FamilyBuilder[object], pid: Labels, reasons: tuple[str, ...]) -> None:
    counts = dict.fromkeys(PERMANENT_ERRORS.all_states, 0)
    for reason in reasons:
        counts[reason if reason in counts else OTHER] += 1
    for reason, count in counts.items():
        out.add(PERMANENT_ERRORS, pid, count, reason=reason)


def add_samples(snapshot: Snapshot, out: FamilyBuilder[object]) -> None:
    checkpoints = out.wants(GROUP)
    sync = out.wants(SYNC_GROUP)
    if not (checkpoints or sync):
        return

    def emit(pid: Labels, snap: PipelineSnapshot) -> None:
        derived = snap.derived
        if checkpoints:
            out.add(FAILURES, pid, derived.checkpoint_failures_total)
            status = snap.checkpoint_status
            if status is not None:
                out.add_optional(LAST_SUCCESS, pid, status.success)
                if status.failure is not None:
                    out.add_optional(LAST_FAILURE, pid, status.failure.sequence_number)
                    out.add_optional(LAST_FAILURE_TIME, pid, status.failure.failed_at)
                    out.add(LAST_FAILURE_INFO, pid, 1, error=error_text(status.failure.error))
                out.add(FAILED, pid, 1 if checkpoint_failed(status) else 0)
                out.add_optional(CHECKPOINT_STATUS_CHECKED, pid, derived.checkpoint_status_checked_seconds)
            stats = snap.stats
            if stats is not None:
                activity = stats.checkpoint_activity
                if activity is not None:
                    out.state_set(ACTIVITY, pid, activity.status)
                    since = activity.delayed_since if activity.status == "delayed" else activity.started_at
                    out.add_optional(ACTIVITY_SINCE, pid, since)
                    reasons = activity.reasons if activity.status == "delayed" else ()
                    other = any(reason not in DELAY_REASONS for reason in reasons)
                    for reason in DELAY_REASONS:
                        out.add(DELAY_REASON, pid, 1 if reason in reasons else 0, reason=reason)
                    out.add(DELAY_REASON, pid, 1 if other else 0, reason=OTHER)
                _permanent_errors(out, pid, stats.permanent_checkpoint_errors)
            ft = snap.fault_tolerance
            if ft is not None:
                out.state_set(FT_MODEL, pid, ft.model)
                out.add_optional(INTERVAL, pid, ft.checkpoint_interval_seconds)
            out.add_optional(CHECKPOINTING_SINCE, pid, derived.checkpointing_since_seconds)
        if sync:
            out.add(SYNC_FAILURES, pid, derived.checkpoint_sync_failures_total)
            if snap.sync_status is not None and derived.checkpoint_sync_failed is not None:
                out.add(SYNC_FAILED, pid, 1 if derived.checkpoint_sync_failed else 0)
                out.add_optional(SYNC_STATUS_CHECKED, pid, derived.sync_status_checked_seconds)
            out.add_optional(SYNC_LAST_SUCCESS_SEEN, pid, derived.checkpoint_sync_last_success_seen_seconds)

    each_pipeline(snapshot, out, emit)
