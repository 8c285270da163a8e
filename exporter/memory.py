"""What the exporter remembers between poll cycles, and the derived values it contributes to each snapshot.

Feldera reports only the latest checkpoint failure, the latest sync failure and the checkpoints present now.
Counting failures, or telling when a new checkpoint appeared, needs history; this module is the only place that
keeps it. History is keyed by (target, pipeline name) and forgotten when the pipeline disappears from a
successful list, or is replaced by a pipeline of the same name with a new id.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from exporter.snapshot import Derived, PipelineSnapshot


@dataclass(slots=True)
class _History:
    pipeline_id: str
    checkpoint_failures: int = 0
    last_checkpoint_failure: tuple[object, ...] | None = None
    sync_failures: int = 0
    last_sync_failure: tuple[object, ...] | None = None
    sync_success_uuid: str | None = None
    sync_success_seen: float | None = None
    newest_checkpoint_uuid: str | None = None
    newest_checkpoint_seen: float | None = None


class Memory:
    def __init__(self) -> None:
        self._history: dict[tuple[str, str], _History] = {}

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
                history = self._history[key] = _History(pipeline_id=snap.pipeline.id)
            result.append(replace(snap, derived=_observe(history, snap, now)))
        for key in [k for k in self._history if k[0] == target and k not in present]:
            del self._history[key]
        return result

    def forget_target(self, target: str) -> None:
        for key in [k for k in self._history if k[0] == target]:
            del self._history[key]


def _observe(history: _History, snap: PipelineSnapshot, now: float) -> Derived:
    status = snap.checkpoint_status
    if status is not None and status.failure is not None:
        failure = (status.failure.sequence_number, status.failure.failed_at, status.failure.error)
        if failure != history.last_checkpoint_failure:
            history.checkpoint_failures += 1
            history.last_checkpoint_failure = failure

    sync = snap.sync_status
    if sync is not None:
        if sync.failure is not None:
            sync_failure = (sync.failure.uuid, sync.failure.error)
            if sync_failure != history.last_sync_failure:
                history.sync_failures += 1
                history.last_sync_failure = sync_failure
        if sync.success is not None and sync.success != history.sync_success_uuid:
            history.sync_success_uuid = sync.success
            history.sync_success_seen = now

    details = snap.pipeline.storage_status_details
    if details is not None:
        newest = details.checkpoints[-1].uuid if details.checkpoints else None
        if newest != history.newest_checkpoint_uuid:
            history.newest_checkpoint_uuid = newest
            history.newest_checkpoint_seen = now if newest is not None else None

    return Derived(
        checkpoint_failures_total=history.checkpoint_failures,
        checkpoint_sync_failures_total=history.sync_failures,
        checkpoint_sync_last_success_seen_seconds=history.sync_success_seen,
        newest_checkpoint_first_seen_seconds=history.newest_checkpoint_seen,
    )
