"""Checkpoints of a simulated pipeline: the ``checkpoint_status``, ``checkpoint/sync`` and ``checkpoint/sync_status``
seam of the API and ``storage_status_details``, with their control API.

:class:`PipelineCheckpoints` is the checkpoint part of :class:`~exporter.simulator.model.Pipeline`;
:class:`CheckpointControl` the checkpoint part of :class:`~exporter.simulator.server.Simulator`'s control API.
A new pipeline process (incarnation) forgets the status of checkpoints and syncs, never the stored checkpoints.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from exporter.simulator.clock import Clock, rfc3339

if TYPE_CHECKING:
    from exporter.simulator.model import World

SyncMode = Literal["success", "failure", "pending"]


class PipelineCheckpoints:
    """The checkpoint part of a pipeline."""

    incarnation: str | None
    storage_status: str
    touch: Callable[[], None]

    def _init_checkpoints(self, sync_mode: SyncMode) -> None:
        self.stored_checkpoints: list[dict[str, Any]] = []
        self.next_sequence = 1
        self.permanent_checkpoint_errors: list[Any] | None = None
        self.sync_mode = sync_mode
        self.sync_pending: list[str] = []
        self._new_process_checkpoints()

    def _new_process_checkpoints(self) -> None:
        """What a new pipeline process (incarnation) starts without."""
        self.checkpoint_success: int | None = None
        self.checkpoint_failure: dict[str, Any] | None = None
        self.checkpoint_activity: dict[str, Any] = {"status": "idle"}
        self.sync_success: str | None = None
        self.sync_failure: dict[str, str] | None = None
        self.sync_periodic: str | None = None
        self.sync_pending.clear()

    def take_checkpoint(self, now: float) -> int:
        seq = self.next_sequence
        self.next_sequence += 1
        if self.incarnation is not None:
            self.checkpoint_success = seq
        self.stored_checkpoints.append(
            {
                "uuid": str(uuid.uuid4()),
                "identifier": None,
                "fingerprint": seq * 7919,
                "size": 1_000_000 + seq * 4096,
                "processed_records": seq * 1000,
                "steps": seq * 10,
            }
        )
        del self.stored_checkpoints[:-2]
        self.storage_status = "InUse"
        self.checkpoint_activity = {"status": "idle"}
        self.touch()
        return seq

    def fail_checkpoint(self, error: str, now: float) -> int:
        seq = self.next_sequence
        self.next_sequence += 1
        self.checkpoint_failure = {"sequence_number": seq, "error": error, "failed_at": rfc3339(now, nanos=True)}
        self.checkpoint_activity = {"status": "idle"}
        self.touch()
        return seq

    def sync_target(self) -> str:
        """The checkpoint a sync completed or failed by the control API is about: the oldest requested one, else
        the newest stored one."""
        if self.sync_pending:
            return self.sync_pending.pop(0)
        if self.stored_checkpoints:
            return str(self.stored_checkpoints[-1]["uuid"])
        return str(uuid.uuid4())


class CheckpointControl:
    """Control API of checkpoints and checkpoint sync (part of the simulator)."""

    world: World
    clock: Clock

    def checkpoint(self, name: str) -> int:
        """A successful checkpoint; returns its sequence number. An older failure stays reported."""
        return self.world.get(name).take_checkpoint(self.clock.now())

    def fail_checkpoint(self, name: str, error: str = "checkpoint failed: I/O error") -> int:
        """A failed checkpoint (``failed_at`` with nanoseconds); returns its sequence number."""
        return self.world.get(name).fail_checkpoint(error, self.clock.now())

    def set_checkpoint_activity(self, name: str, status: str = "idle", reasons: list[Any] | None = None) -> None:
        """``idle``, ``delayed`` (with ``reasons``, e.g. ``["Replaying"]``) or ``in_progress``."""
        pipeline = self.world.get(name)
        now = rfc3339(self.clock.now())
        if status == "idle":
            activity: dict[str, Any] = {"status": "idle"}
        elif status == "delayed":
            activity = {"status": "delayed", "reasons": reasons or ["Replaying"], "delayed_since": now}
        elif status == "in_progress":
            activity = {"status": "in_progress", "started_at": now}
        else:
            raise ValueError(f"unknown checkpoint activity {status!r}")
        pipeline.checkpoint_activity = activity
        pipeline.touch()

    def set_permanent_checkpoint_errors(self, name: str, errors_: list[Any] | None) -> None:
        """E.g. ``["StorageRequired"]`` or ``[{"UnsupportedInputEndpoint": "t.c"}]``; ``None`` clears."""
        pipeline = self.world.get(name)
        pipeline.permanent_checkpoint_errors = errors_
        pipeline.touch()

    def set_sync_mode(self, name: str, mode: str) -> None:
        """What a POST checkpoint/sync does next: ``success``, ``failure`` or ``pending`` (wait for control)."""
        if mode not in ("success", "failure", "pending"):
            raise ValueError(f"unknown sync mode {mode!r}")
        self.world.get(name).sync_mode = mode  # type: ignore[assignment]  # a SyncMode value: checked above

    def succeed_sync(self, name: str, checkpoint_uuid: str | None = None) -> str:
        pipeline = self.world.get(name)
        chosen = checkpoint_uuid or pipeline.sync_target()
        pipeline.sync_success = chosen
        pipeline.touch()
        return chosen

    def fail_sync(
        self, name: str, error: str = "sync failed: access denied", checkpoint_uuid: str | None = None
    ) -> str:
        pipeline = self.world.get(name)
        chosen = checkpoint_uuid or pipeline.sync_target()
        pipeline.sync_failure = {"uuid": chosen, "error": error}
        pipeline.touch()
        return chosen

    def set_periodic_sync(self, name: str, checkpoint_uuid: str | None) -> None:
        pipeline = self.world.get(name)
        pipeline.sync_periodic = checkpoint_uuid
        pipeline.touch()
