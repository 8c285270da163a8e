"""Checkpoints of a simulated pipeline: the ``checkpoint_status``, ``checkpoint/sync`` and ``checkpoint/sync_status``
seam of the API, ``storage_status_details``, automatic checkpoints, and their control API.

:class:`PipelineCheckpoints` is the checkpoint part of :class:`~exporter.simulator.model.Pipeline`;
:class:`CheckpointControl` the checkpoint part of :class:`~exporter.simulator.server.Simulator`'s control API.
As upstream (``crates/adapters/src/server.rs``, ``CheckpointState``; ``crates/adapters/src/controller.rs``,
``StepTrigger::trigger`` and ``CircuitThread::checkpoint``):

- ``checkpoint_status`` reports only checkpoints requested with ``POST .../checkpoint`` (:meth:`CheckpointControl.
  checkpoint`, :meth:`CheckpointControl.fail_checkpoint`), numbered per process from 0; a new process (incarnation)
  starts with ``{"success": null, "failure": null}``.
- A fault-tolerant pipeline (``runtime_config``, :mod:`exporter.simulator.runtime`) checkpoints by itself every
  interval while Running or Paused, the first one an interval after its process started. The next one is due an
  interval after the previous attempt ended, failed or not (``update_last_checkpoint``). A success adds an entry to
  ``storage_status_details.checkpoints`` (at most the newest two are kept: ``MIN_CHECKPOINT_THRESHOLD`` in
  ``crates/dbsp/src/circuit/checkpointer.rs``); a failure is only logged (``warn!("checkpoint failed: ...")``), so
  nothing a client reads changes. Permanent checkpoint errors make every attempt fail. On the open-source edition
  every pipeline lists one (``EnterpriseFeature``), but none checkpoints there at all: fault tolerance is refused
  (:func:`exporter.simulator.runtime.refuse_enterprise_features`) and ``POST /checkpoint`` answers 501.
- While ``checkpoint_activity`` is ``delayed`` or ``in_progress`` no attempt completes; the one that was due
  completes as soon as the activity is ``idle`` again.
- Storage keeps its checkpoints across processes; checkpoint and sync status do not.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from exporter.simulator.clock import Clock, rfc3339
from exporter.simulator.runtime import checkpoint_interval

if TYPE_CHECKING:
    from exporter.simulator.model import Since, World

SyncMode = Literal["success", "failure", "pending"]
CHECKPOINTING_RUNTIME = ("Running", "Paused")
"""Runtime statuses in which the controller takes automatic checkpoints (replaying, bootstrapping and the
statuses without a running circuit step instead)."""
KEPT_CHECKPOINTS = 2


class PipelineCheckpoints:
    """The checkpoint part of a pipeline."""

    incarnation: str | None
    storage_status: str
    runtime: Since
    runtime_config: dict[str, Any]
    resources: Since
    touch: Callable[[], None]
    enterprise: Callable[[], bool]

    def _init_checkpoints(self, sync_mode: SyncMode, automatic_failure: str | None, now: float) -> None:
        self.stored_checkpoints: list[dict[str, Any]] = []
        self.checkpoints_taken = 0
        self.permanent_checkpoint_errors: list[Any] | None = None
        self.sync_mode = sync_mode
        self.sync_pending: list[str] = []
        self.automatic_failure = automatic_failure
        self.automatic_failures = 0
        """Failed automatic checkpoints so far (upstream only logs them)."""
        self.last_checkpoint_at = now
        self.checkpoint_floor = now
        """No automatic checkpoint before this: when checkpointing became possible again."""
        self._new_process_checkpoints(now)

    def _new_process_checkpoints(self, now: float) -> None:
        """What a new pipeline process (incarnation) starts without."""
        self.next_sequence = 0
        self.checkpoint_success: int | None = None
        self.checkpoint_failure: dict[str, Any] | None = None
        self.checkpoint_activity: dict[str, Any] = {"status": "idle"}
        self.sync_success: str | None = None
        self.sync_failure: dict[str, str] | None = None
        self.sync_periodic: str | None = None
        self.sync_pending.clear()
        self.last_checkpoint_at = now
        self.checkpoint_floor = now

    # ---- storage and requested checkpoints ----------------------------------------------------------------------

    def store_checkpoint(self, count: int = 1) -> None:
        """``count`` checkpoints written to storage; only the newest :data:`KEPT_CHECKPOINTS` stay listed."""
        first = self.checkpoints_taken + 1
        self.checkpoints_taken += count
        for number in range(max(first, self.checkpoints_taken - KEPT_CHECKPOINTS + 1), self.checkpoints_taken + 1):
            self.stored_checkpoints.append(
                {
                    "uuid": str(uuid.uuid4()),
                    "identifier": None,
                    "fingerprint": number * 7919,
                    "size": 1_000_000 + number * 4096,
                    "processed_records": number * 1000,
                    "steps": number * 10,
                }
            )
        del self.stored_checkpoints[:-KEPT_CHECKPOINTS]
        self.storage_status = "InUse"
        self.touch()

    def request_checkpoint(self, now: float) -> int:
        """A ``POST /checkpoint`` that succeeded: its sequence number becomes ``success``."""
        seq = self._next_request()
        self.store_checkpoint()
        if self.checkpoint_success is None or self.checkpoint_success < seq:
            self.checkpoint_success = seq
        self._attempt_ended(now)
        return seq

    def fail_checkpoint(self, error: str, now: float) -> int:
        """A ``POST /checkpoint`` that failed (``failed_at`` with nanoseconds)."""
        seq = self._next_request()
        self.checkpoint_failure = {"sequence_number": seq, "error": error, "failed_at": rfc3339(now, nanos=True)}
        self._attempt_ended(now)
        return seq

    def _next_request(self) -> int:
        if not self.enterprise():
            raise ValueError(
                "EnterpriseFeature: the open-source manager answers POST /checkpoint with 501 "
                "(crates/pipeline-manager/src/api/endpoints/pipeline_interaction.rs, checkpoint_pipeline)"
            )
        if self.incarnation is None:
            raise ValueError("the pipeline has no process to checkpoint")
        seq = self.next_sequence
        self.next_sequence += 1
        return seq

    def _attempt_ended(self, now: float) -> None:
        self.last_checkpoint_at = now
        self.checkpoint_activity = {"status": "idle"}
        self.touch()

    # ---- automatic checkpoints -----------------------------------------------------------------------------------

    @property
    def checkpoint_interval(self) -> float | None:
        return checkpoint_interval(self.runtime_config)

    def checkpoint_due(self) -> float | None:
        """When the next automatic checkpoint completes, or None while none can."""
        interval = self.checkpoint_interval
        if (
            interval is None
            or self.resources.value != "Provisioned"
            or self.incarnation is None
            or self.runtime.value not in CHECKPOINTING_RUNTIME
            or self.checkpoint_activity.get("status") != "idle"
        ):
            return None
        return max(self.last_checkpoint_at + interval, self.checkpoint_floor)

    def run_automatic_checkpoints(self, now: float) -> None:
        """Every automatic checkpoint due by ``now``, at the times they were due."""
        due = self.checkpoint_due()
        interval = self.checkpoint_interval
        if due is None or interval is None or due > now:
            return
        attempts = int((now - due) // interval) + 1
        last = due + (attempts - 1) * interval
        if self.automatic_failure is not None or self.permanent_errors():
            self.automatic_failures += attempts
        else:
            self.store_checkpoint(attempts)
        self.last_checkpoint_at = last
        self.touch()

    def permanent_errors(self) -> list[Any]:
        """Why no checkpoint can succeed (``permanent_checkpoint_errors``, the ``Permanent`` reasons of
        ``suspend_error``), as ``Controller::can_suspend`` (``crates/adapters/src/controller.rs``) lists them:
        ``EnterpriseFeature`` on the open-source edition, ``StorageRequired`` without ``storage`` in
        ``runtime_config``, then what :meth:`CheckpointControl.set_permanent_checkpoint_errors` added."""
        errors: list[Any] = []
        if not self.enterprise():
            errors.append("EnterpriseFeature")
        if self.runtime_config.get("storage") is None:
            errors.append("StorageRequired")
        errors.extend(e for e in self.permanent_checkpoint_errors or () if e not in errors)
        return errors

    def checkpointing_resumed(self, now: float) -> None:
        """Checkpointing just became possible again (a status or activity change): nothing completes before."""
        self.checkpoint_floor = now

    # ---- sync ------------------------------------------------------------------------------------------------

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
        """A successful ``POST /checkpoint``; returns its sequence number. An older failure stays reported."""
        return self.world.get(name).request_checkpoint(self.clock.now())

    def fail_checkpoint(self, name: str, error: str = "checkpoint failed: I/O error") -> int:
        """A failed ``POST /checkpoint`` (``failed_at`` with nanoseconds); returns its sequence number."""
        return self.world.get(name).fail_checkpoint(error, self.clock.now())

    def set_automatic_checkpoints(self, name: str, failure: str | None = None) -> float | None:
        """From now on automatic checkpoints fail with ``failure`` (error text), or succeed (``None``); returns when
        the next one ends (the first to fail or succeed), or None while none can be taken."""
        pipeline = self.world.get(name)
        pipeline.automatic_failure = failure
        pipeline.touch()
        return pipeline.checkpoint_due()

    def set_checkpoint_activity(self, name: str, status: str = "idle", reasons: list[Any] | None = None) -> None:
        """``idle``, ``delayed`` (with ``reasons``, e.g. ``["Replaying"]``) or ``in_progress``; ``delayed_since``
        keeps the start of a delay whose reasons change (``set_checkpoint_coordination``)."""
        pipeline = self.world.get(name)
        now = self.clock.now()
        current = pipeline.checkpoint_activity
        if status == "idle":
            activity: dict[str, Any] = {"status": "idle"}
            if current.get("status") != "idle":
                pipeline.checkpointing_resumed(now)
        elif status == "delayed":
            since = current["delayed_since"] if current.get("status") == "delayed" else rfc3339(now)
            activity = {"status": "delayed", "reasons": reasons or ["Replaying"], "delayed_since": since}
        elif status == "in_progress":
            activity = {"status": "in_progress", "started_at": rfc3339(now)}
        else:
            raise ValueError(f"unknown checkpoint activity {status!r}")
        pipeline.checkpoint_activity = activity
        pipeline.touch()

    def set_permanent_checkpoint_errors(self, name: str, errors_: list[Any] | None) -> None:
        """E.g. ``["StorageRequired"]`` or ``[{"UnsupportedInputEndpoint": "t.c"}]`` (every checkpoint then fails),
        reported after those the edition and ``runtime_config`` give (:meth:`PipelineCheckpoints.permanent_errors`);
        ``None`` clears."""
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
