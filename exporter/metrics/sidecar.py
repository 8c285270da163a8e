"""Metrics of the sidecar features: scheduled checkpoint sync and output-connector reset watches.

Both read the typed sidecar fields of the snapshot (``TargetSnapshot.sync``, ``TargetSnapshot.resets``); a target
whose field is None emits nothing for that feature. Sample output::

    feldera_checkpoint_sync_schedule_requests_total{target="default",pipeline_name="orders",result="accepted"} 3.0
    feldera_checkpoint_sync_schedule_last_confirmed_timestamp_seconds{target="default",pipeline_name="orders"} 1.7e9
    feldera_output_reset_watch_status{target="default",pipeline_name="orders",watch="kafka-out",status="pending"} 1.0
    feldera_exporter_reset_watch_state_file_errors_total{operation="load"} 0.0
"""

from __future__ import annotations

from exporter.metrics.spec import FamilyBuilder, MetricSpec, pipeline_identity, target_identity
from exporter.sidecar.store import STATES
from exporter.snapshot import Snapshot

SYNC_GROUP = "checkpoint_sync_schedule"
RESET_GROUP = "reset_watches"

SYNC_INTERVAL = MetricSpec(
    "feldera_checkpoint_sync_schedule_interval_seconds",
    "gauge",
    "Configured interval between scheduled checkpoint syncs of the pipeline (for 'overdue' alerts).",
    group=SYNC_GROUP,
    unit="seconds",
)
SYNC_REQUESTS = MetricSpec(
    "feldera_checkpoint_sync_schedule_requests_total",
    "counter",
    "Scheduled POST checkpoint/sync requests by server answer: synced (200), accepted (202), no_checkpoints "
    "(400/404), multihost_unsupported (400: a multi-host pipeline, not asked again for an hour), unknown_pipeline "
    "(404 UnknownPipelineName), enterprise_only (501), unavailable (503), error.",
    labels=("result",),
    group=SYNC_GROUP,
)
SYNC_LAST_REQUEST = MetricSpec(
    "feldera_checkpoint_sync_schedule_last_request_timestamp_seconds",
    "gauge",
    "When the exporter last requested a checkpoint sync of the pipeline (absent before the first request).",
    group=SYNC_GROUP,
    unit="seconds",
)
SYNC_LAST_CONFIRMED = MetricSpec(
    "feldera_checkpoint_sync_schedule_last_confirmed_timestamp_seconds",
    "gauge",
    "When a sync requested by the exporter was last confirmed successful (200, or sync_status success equal to "
    "the requested checkpoint_uuid); absent before the first confirmation.",
    group=SYNC_GROUP,
    unit="seconds",
)
SYNC_FAILURES = MetricSpec(
    "feldera_checkpoint_sync_schedule_failures_total",
    "counter",
    "Scheduled syncs that did not succeed: rejected (request answered with an error), failed (sync_status "
    "failure for the requested uuid), lost (pipeline restarted or stopped first), unconfirmed (no confirmation "
    "before the next slot).",
    labels=("reason",),
    group=SYNC_GROUP,
)
SYNC_LAST_FAILURE = MetricSpec(
    "feldera_checkpoint_sync_schedule_last_failure_timestamp_seconds",
    "gauge",
    "When the newest scheduled sync that did not succeed was requested, by reason (as the failures counter); absent "
    "for a reason before its first failure.",
    labels=("reason",),
    group=SYNC_GROUP,
    unit="seconds",
)
SYNC_AWAITING = MetricSpec(
    "feldera_checkpoint_sync_schedule_awaiting_confirmation",
    "gauge",
    "1 while a sync accepted by the server (202) is not yet confirmed through checkpoint/sync_status.",
    group=SYNC_GROUP,
)
SYNC_ENTERPRISE_ONLY = MetricSpec(
    "feldera_checkpoint_sync_schedule_enterprise_only",
    "gauge",
    "1 while scheduled syncs of the target are paused because it answered 501 (enterprise feature).",
    group=SYNC_GROUP,
    per_pipeline=False,
)
RESET_STATUS = MetricSpec(
    "feldera_output_reset_watch_status",
    "gauge",
    "State of a watched output-connector reset token: pending, completed, invalid (400), expired (410: token "
    "from a previous incarnation, reissue the reset), unknown (unrecognised answer), unsupported (the server has "
    "no reset endpoint: 400 NotSupported, or 404 without UnknownPipelineName).",
    labels=("watch", "status"),
    group=RESET_GROUP,
    states=STATES,
)
RESET_AGE = MetricSpec(
    "feldera_output_reset_watch_age_seconds",
    "gauge",
    "Seconds since the reset watch was registered.",
    labels=("watch",),
    group=RESET_GROUP,
    unit="seconds",
)
RESET_LAST_CHECKED = MetricSpec(
    "feldera_output_reset_watch_last_checked_timestamp_seconds",
    "gauge",
    "When reset_status last gave a usable answer for the watch (absent before the first one).",
    labels=("watch",),
    group=RESET_GROUP,
    unit="seconds",
)
RESET_STATE_FILE_ERRORS = MetricSpec(
    "feldera_exporter_reset_watch_state_file_errors_total",
    "counter",
    "Errors reading (load: corrupt or unreadable, the file was moved aside) or writing (save) the reset watch "
    "state file since the exporter started (one file for all targets).",
    labels=("operation",),
    group=RESET_GROUP,
    per_pipeline=False,
    per_target=False,
)

SPECS: tuple[MetricSpec, ...] = (
    SYNC_INTERVAL,
    SYNC_REQUESTS,
    SYNC_LAST_REQUEST,
    SYNC_LAST_CONFIRMED,
    SYNC_FAILURES,
    SYNC_LAST_FAILURE,
    SYNC_AWAITING,
    SYNC_ENTERPRISE_ONLY,
    RESET_STATUS,
    RESET_AGE,
    RESET_LAST_CHECKED,
    RESET_STATE_FILE_ERRORS,
)


def add_samples(snapshot: Snapshot, out: FamilyBuilder[object]) -> None:
    for target in snapshot.targets:
        identity = target_identity(target.name, target.labels)
        sync = target.sync
        if sync is not None:
            out.add(SYNC_ENTERPRISE_ONLY, identity, 1.0 if sync.enterprise_only else 0.0)
            for pipe in sync.pipelines:
                if pipe.pipeline in target.dropped_pipelines:
                    continue
                with out.pipeline(target.name, pipe.pipeline):
                    labels = pipeline_identity(identity, pipe.pipeline)
                    out.add(SYNC_INTERVAL, labels, pipe.every)
                    for result, count in pipe.requests:
                        out.add(SYNC_REQUESTS, labels, count, result=result)
                    out.add_optional(SYNC_LAST_REQUEST, labels, pipe.last_request)
                    out.add_optional(SYNC_LAST_CONFIRMED, labels, pipe.last_confirmed)
                    for reason, count in pipe.failures:
                        out.add(SYNC_FAILURES, labels, count, reason=reason)
                    for reason, when in pipe.last_failures:
                        out.add(SYNC_LAST_FAILURE, labels, when, reason=reason)
                    out.add(SYNC_AWAITING, labels, 1.0 if pipe.awaiting_confirmation else 0.0)
        resets = target.resets
        if resets is not None:
            for watch in resets.watches:
                if watch.pipeline in target.dropped_pipelines:
                    continue
                with out.pipeline(target.name, watch.pipeline):
                    labels = pipeline_identity(identity, watch.pipeline)
                    out.state_set(RESET_STATUS, labels, watch.status, watch=watch.name)
                    out.add(RESET_AGE, labels, watch.age, watch=watch.name)
                    out.add_optional(RESET_LAST_CHECKED, labels, watch.last_checked, watch=watch.name)
    for operation, count in snapshot.state_file_errors:
        out.add(RESET_STATE_FILE_ERRORS, (), count, operation=operation)
