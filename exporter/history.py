"""What the exporter remembers between poll cycles, and the derived values it contributes to each snapshot.

Feldera reports only the latest checkpoint failure, the latest sync failure and the checkpoints present now.
Counting failures, or telling when a new checkpoint appeared, needs history; this module is the only place that
keeps it. History is keyed by (target, pipeline name) and forgotten when the pipeline disappears from a
successful list, or is replaced by a pipeline of the same name with a new id.

A restarted pipeline (new incarnation) starts with an empty ``checkpoint_status``/``sync_status``: seeing no
failure, or a new ``deployment_id``, clears the remembered "last failure", so the next failure counts again
even if it looks like the old one, while the counters themselves never decrease.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from exporter.models import CheckpointSyncStatus
from exporter.snapshot import Derived, PipelineSnapshot


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


class History:
    def __init__(self) -> None:
        self._history: dict[tuple[str, str], _PipelineHistory] = {}

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
    )


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
