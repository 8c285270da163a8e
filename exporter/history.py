"""What the exporter remembers between poll cycles, and the derived values it contributes to each snapshot.

Feldera reports only the latest checkpoint failure, the latest sync failure and the checkpoints present now.
Counting failures, or telling when a new checkpoint appeared, needs history; this module is the only place that
keeps it. History is keyed by (target, pipeline name) and forgotten when the pipeline disappears from a
successful list, or is replaced by a pipeline of the same name with a new id.

History also lets a cycle ask only what can have changed (docs/feldera-api.md, "What changes what"):
:meth:`History.recall`, before the cycle's requests, puts into each pipeline's snapshot what is remembered (the
fault-tolerance facts of its current ``version``; the last ``checkpoint_status`` and ``sync_status`` answers,
while the pipeline's status lets those endpoints answer) and, in ``recalled``, what was true when those answers
came. The plan's requests compare that with what the cycle sees and ask again when an answer can have changed, or
when it is older than ``poll.recheck_interval``; a request that fails clears the reused answer. A ``runtime_config``
request that keeps failing is asked again after a doubling pause of at most ``poll.recheck_interval``
(``Recalled.fault_tolerance_paused``). :meth:`advance` then remembers the cycle.

A restarted pipeline (new incarnation) starts with an empty ``checkpoint_status``/``sync_status``: seeing no
failure, or a new ``deployment_id``, clears the remembered "last failure", so the next failure counts again
even if it looks like the old one, while the counters themselves never decrease.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from exporter.models import CheckpointStatus, CheckpointSyncStatus, FaultTolerance, Pipeline
from exporter.snapshot import Derived, PipelineSnapshot, Recalled

RECHECK_INTERVAL = 300.0
"""Default of ``poll.recheck_interval``: the oldest a reused ``checkpoint_status``/``sync_status`` answer gets."""
CHECKPOINTING_RUNTIME = ("Running", "Paused")
"""Runtime statuses in which a fault-tolerant pipeline takes automatic checkpoints (``controller.rs``,
``StepTrigger::trigger``: replaying, bootstrapping and the statuses without a running circuit do not)."""
BUSY_ACTIVITY = ("delayed", "in_progress")
MAX_DOUBLINGS = 16
"""A failing ``runtime_config`` request's pause stops doubling here (``poll.recheck_interval`` ends it sooner)."""


def checkpoint_statuses_answer(pipeline: Pipeline) -> bool:
    """checkpoint_status (and sync_status): provisioned, with a runtime status that has a controller to ask."""
    runtime = pipeline.deployment_runtime_status
    return (
        pipeline.deployment_resources_status == "Provisioned"
        and runtime is not None
        and runtime not in ("Unavailable", "Suspended", "Standby", "Coordination")
    )


def sync_status_answers(pipeline: Pipeline) -> bool:
    """checkpoint/sync_status: as checkpoint_status, except while Initializing, when every interaction endpoint
    but checkpoint_status answers 503 ``Initializing`` (docs/feldera-api.md)."""
    return checkpoint_statuses_answer(pipeline) and pipeline.deployment_runtime_status != "Initializing"


def newest_checkpoint(pipeline: Pipeline) -> str | None:
    details = pipeline.storage_status_details
    if details is None or not details.checkpoints:
        return None
    return details.checkpoints[-1].uuid


@dataclass(slots=True)
class _PipelineHistory:
    pipeline_id: str
    deployment_id: str | None = None
    checkpoint_failures: int = 0
    last_checkpoint_failure: tuple[object, ...] | None = None
    sync_failures: int = 0
    last_sync_failure: tuple[object, ...] | None = None
    sync_success_uuid: str | None = None
    sync_success_seen: float | None = None
    sync_failed: bool | None = None
    newest_checkpoint_uuid: str | None = None
    newest_checkpoint_seen: float | None = None
    fault_tolerance: FaultTolerance | None = None
    fault_tolerance_failures: int = 0
    """``runtime_config`` requests that failed in a row."""
    fault_tolerance_failed_at: float = 0.0
    fault_tolerance_failed_version: int | None = None
    fault_tolerance_skipped: int = 0
    """Cycles the request has waited since it last failed."""
    checkpoint_status: CheckpointStatus | None = None
    checkpoint_status_at: float | None = None
    checkpoint_deployment: str | None = None
    checkpoint_incarnation: str | None = None
    checkpoint_runtime_status: str | None = None
    checkpoint_newest: str | None = None
    checkpoint_busy: bool = False
    sync_status: CheckpointSyncStatus | None = None
    sync_status_at: float | None = None
    sync_deployment: str | None = None
    sync_incarnation: str | None = None
    incarnation: str | None = None
    checkpointing_since: float | None = None


class History:
    def __init__(self, recheck_interval: float = RECHECK_INTERVAL) -> None:
        self._history: dict[tuple[str, str], _PipelineHistory] = {}
        self.recheck_interval = recheck_interval
        self.enterprise: bool | None = None
        """Whether the target's edition offers checkpoint sync, from its last ``/v0/config`` answer."""

    def recall(self, target: str, pipelines: Iterable[PipelineSnapshot], now: float) -> list[PipelineSnapshot]:
        """The cycle's snapshots with what is remembered of each pipeline, before the cycle's requests."""
        result: list[PipelineSnapshot] = []
        for snap in pipelines:
            history = self._history.get((target, snap.name))
            if history is None or history.pipeline_id != snap.pipeline.id:
                result.append(replace(snap, recalled=Recalled(enterprise=self.enterprise)))
                continue
            result.append(self._recalled(history, snap, now))
        return result

    def _recalled(self, history: _PipelineHistory, snap: PipelineSnapshot, now: float) -> PipelineSnapshot:
        pipeline = snap.pipeline
        ft = history.fault_tolerance
        if ft is not None and (ft.version is None or ft.version != pipeline.version):
            ft = None
        checkpoint = history.checkpoint_status if checkpoint_statuses_answer(pipeline) else None
        sync = history.sync_status if sync_status_answers(pipeline) and self.enterprise is not False else None
        return replace(
            snap,
            fault_tolerance=ft,
            checkpoint_status=checkpoint,
            sync_status=sync,
            recalled=Recalled(
                enterprise=self.enterprise,
                checkpoint_status_due=self._due(history.checkpoint_status_at, now) or checkpoint is None,
                checkpoint_deployment=history.checkpoint_deployment,
                checkpoint_incarnation=history.checkpoint_incarnation,
                checkpoint_runtime_status=history.checkpoint_runtime_status,
                checkpoint_newest=history.checkpoint_newest,
                checkpoint_busy=history.checkpoint_busy,
                sync_status_due=self._due(history.sync_status_at, now) or sync is None,
                sync_deployment=history.sync_deployment,
                sync_incarnation=history.sync_incarnation,
                fault_tolerance_paused=self._paused(history, snap, now),
            ),
        )

    def _due(self, answered_at: float | None, now: float) -> bool:
        return answered_at is None or now - answered_at >= self.recheck_interval

    def _paused(self, history: _PipelineHistory, snap: PipelineSnapshot, now: float) -> bool:
        """Whether the ``runtime_config`` request waits: after its n-th failure in a row it skips 2^(n-1) - 1
        cycles (none, 1, 3, 7, ...: the doubling backoff the client retries a request with inside a cycle), and
        none once ``poll.recheck_interval`` has passed since that failure or the pipeline has a new ``version``."""
        failures = history.fault_tolerance_failures
        if (
            failures == 0
            or now - history.fault_tolerance_failed_at >= self.recheck_interval
            or snap.pipeline.version != history.fault_tolerance_failed_version
        ):
            return False
        return history.fault_tolerance_skipped < (1 << min(failures - 1, MAX_DOUBLINGS)) - 1

    def advance(self, target: str, pipelines: Iterable[PipelineSnapshot], now: float) -> list[PipelineSnapshot]:
        """Fold this cycle's observations of one target into history; return them with ``derived`` filled.

        Call only with the result of a successful list: pipelines of ``target`` not in it are forgotten.
        """
        result: list[PipelineSnapshot] = []
        present: set[tuple[str, str]] = set()
        for snap in pipelines:
            key = (target, snap.name)
            present.add(key)
            history = self._history.get(key)
            if history is None or history.pipeline_id != snap.pipeline.id:
                history = self._history[key] = _PipelineHistory(pipeline_id=snap.pipeline.id)
            _remember(history, snap, now)
            result.append(replace(snap, derived=_observe(history, snap, now)))
        for key in [k for k in self._history if k[0] == target and k not in present]:
            del self._history[key]
        return result


def _observe(history: _PipelineHistory, snap: PipelineSnapshot, now: float) -> Derived:
    deployment_id = snap.pipeline.deployment_id
    if deployment_id is not None and deployment_id != history.deployment_id:
        if history.deployment_id is not None:
            history.last_checkpoint_failure = None
            history.last_sync_failure = None
        history.deployment_id = deployment_id

    status = snap.checkpoint_status
    if status is not None:
        if status.failure is None:
            history.last_checkpoint_failure = None
        else:
            failure = (status.failure.sequence_number, status.failure.failed_at, status.failure.error)
            if failure != history.last_checkpoint_failure:
                history.checkpoint_failures += 1
                history.last_checkpoint_failure = failure

    sync = snap.sync_status
    if sync is not None:
        new_failure = False
        if sync.failure is None:
            history.last_sync_failure = None
        else:
            sync_failure = (sync.failure.uuid, sync.failure.error)
            if sync_failure != history.last_sync_failure:
                new_failure = True
                history.sync_failures += 1
                history.last_sync_failure = sync_failure
        new_success = sync.success is not None and sync.success != history.sync_success_uuid
        if new_success:
            history.sync_success_uuid = sync.success
            history.sync_success_seen = now
        history.sync_failed = _sync_failed(history.sync_failed, sync, new_failure, new_success)

    details = snap.pipeline.storage_status_details
    if details is not None:
        newest = details.checkpoints[-1].uuid if details.checkpoints else None
        if newest != history.newest_checkpoint_uuid:
            history.newest_checkpoint_uuid = newest
            history.newest_checkpoint_seen = now if newest is not None else None

    return Derived(
        checkpoint_failures_total=history.checkpoint_failures,
        checkpoint_sync_failures_total=history.sync_failures,
        checkpoint_sync_failed=history.sync_failed,
        checkpoint_sync_last_success_seen_seconds=history.sync_success_seen,
        newest_checkpoint_first_seen_seconds=history.newest_checkpoint_seen,
        checkpointing_since_seconds=history.checkpointing_since,
        checkpoint_status_checked_seconds=history.checkpoint_status_at if snap.checkpoint_status is not None else None,
        sync_status_checked_seconds=history.sync_status_at if snap.sync_status is not None else None,
    )


def _remember(history: _PipelineHistory, snap: PipelineSnapshot, now: float) -> None:
    """What the next cycle's :meth:`History.recall` needs: the answers received this cycle, with what was true
    when they came, and the current stretch of automatic checkpointing."""
    pipeline = snap.pipeline
    stats = snap.stats
    incarnation = stats.global_metrics.incarnation_uuid if stats is not None else None
    if snap.fault_tolerance is not None:
        history.fault_tolerance = snap.fault_tolerance
        history.fault_tolerance_failures = 0
    elif "fault_tolerance" in snap.failed:
        same_version = pipeline.version == history.fault_tolerance_failed_version
        history.fault_tolerance_failures = history.fault_tolerance_failures + 1 if same_version else 1
        history.fault_tolerance_failed_at = now
        history.fault_tolerance_failed_version = pipeline.version
        history.fault_tolerance_skipped = 0
    elif snap.recalled.fault_tolerance_paused:
        history.fault_tolerance_skipped += 1
    if snap.checkpoint_status is not history.checkpoint_status:  # received this cycle, or cleared
        history.checkpoint_status = snap.checkpoint_status
        history.checkpoint_status_at = now if snap.checkpoint_status is not None else None
        history.checkpoint_deployment = pipeline.deployment_id
        history.checkpoint_incarnation = incarnation
        history.checkpoint_runtime_status = pipeline.deployment_runtime_status
        history.checkpoint_newest = newest_checkpoint(pipeline)
    if snap.sync_status is not history.sync_status:
        history.sync_status = snap.sync_status
        history.sync_status_at = now if snap.sync_status is not None else None
        history.sync_deployment = pipeline.deployment_id
        history.sync_incarnation = incarnation
    activity = stats.checkpoint_activity if stats is not None else None
    history.checkpoint_busy = activity is not None and activity.status in BUSY_ACTIVITY
    checkpointing = (
        pipeline.deployment_resources_status == "Provisioned"
        and pipeline.deployment_runtime_status in CHECKPOINTING_RUNTIME
    )
    restarted = incarnation is not None and incarnation != history.incarnation
    if not checkpointing:
        history.checkpointing_since = None
    elif history.checkpointing_since is None or restarted:
        history.checkpointing_since = now
    if incarnation is not None:
        history.incarnation = incarnation


def _sync_failed(previous: bool | None, sync: CheckpointSyncStatus, new_failure: bool, new_success: bool) -> bool:
    """Whether the newest sync failed. ``sync_status`` keeps the last success and the last failure side by
    side, identified by checkpoint uuids, so order comes from history: whichever changed last wins. When both
    changed at once (or on first sight), Feldera's time-ordered UUIDv7 checkpoint ids decide; without them a
    failure counts as newest only when there is no success at all.
    """
    if sync.failure is None:
        return False
    if sync.success is None:
        return True
    if new_failure and not new_success and previous is not None:
        return True
    if new_success and not new_failure:
        return False
    if not new_failure and not new_success and previous is not None:
        return previous
    return _uuid7_newer(sync.failure.uuid, sync.success)


def _uuid7_newer(left: str, right: str) -> bool:
    """``left`` is a strictly later UUIDv7 than ``right`` (v7 ids sort by creation time); False when not both v7."""
    left, right = left.strip().lower(), right.strip().lower()
    if not (_is_uuid7(left) and _is_uuid7(right)):
        return False
    return left > right


def _is_uuid7(value: str) -> bool:
    return len(value) == 36 and value[14] == "7" and value[8] == value[13] == value[18] == value[23] == "-"
