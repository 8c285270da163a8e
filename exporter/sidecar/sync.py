"""Scheduled checkpoint sync: the one write the exporter ever does (opt-in, off unless schedules are configured).

For every running pipeline that matches a schedule, ``POST /v0/pipelines/{p}/checkpoint/sync`` is sent once per
``every``, on a deterministic per-pipeline timetable (first slot when the scheduler first sees the pipeline
running, then every ``every`` seconds; missed slots are skipped, never sent in a burst). A pipeline never has two
requests in flight, and a new sync is not requested while the previous one still awaits confirmation (unless the
next slot has come and a last check still does not confirm it, which counts it as ``unconfirmed``).

The answer decides what happens next:

* 200 ``{checkpoint_sequence_number}`` (older servers): the sync completed; confirmed at once.
* 202 ``{checkpoint_uuid, incarnation_uuid}``: accepted; confirmed later through
  ``GET checkpoint/sync_status?incarnation_uuid=`` -- ``success`` equal to the uuid confirms it, ``failure`` with
  that uuid fails it, 400 (incarnation mismatch) or 503 not-deployed means the pipeline restarted or stopped
  and the sync is lost.
* 400 saying "not supported directly on multihost pipelines" (``crates/adapters/src/server.rs``,
  ``checkpoint_sync``): a multi-host pipeline syncs through its coordinator, never on request; that pipeline is not
  asked again for ``multihost_backoff`` seconds (one log line each time).
* any other 400 / 404 without ``UnknownPipelineName``: no checkpoint to sync yet.
* 501 ``EnterpriseFeature``: the target cannot sync; it is not asked again for ``enterprise_backoff`` seconds.
* 503: not deployed / unavailable; other answers and transport errors count as ``error`` (and a failure).

A sync still awaiting confirmation when its pipeline's next slot comes counts as ``unconfirmed``, unless
``sync_status`` listed it as ``running`` (newer servers): then it is still in progress, the slot is skipped and the
sync is confirmed later. Only syncs requested here are confirmed: Feldera records no failure of its own periodic
syncs (docs/feldera-api.md), so none is reported.

:meth:`CheckpointSyncScheduler.observe` learns which pipelines run from each cycle's snapshot and reports
immutable counters (``TargetSnapshot.sync``); :meth:`tick` (driven by :meth:`run` or a test's fake clock) acts.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from exporter.client import FelderaClient
from exporter.config import SyncSchedule
from exporter.errors import ApiError, FelderaError
from exporter.logsafe import clean
from exporter.models import CheckpointSyncResponse, CheckpointSyncStatus, Pipeline
from exporter.snapshot import PipelineSnapshot, PipelineSyncReport, SyncReport

log = logging.getLogger(__name__)

RESULTS = (
    "synced",
    "accepted",
    "no_checkpoints",
    "multihost_unsupported",
    "unknown_pipeline",
    "enterprise_only",
    "unavailable",
    "error",
)
"""``result`` label of the requests counter, one per kind of server answer."""
FAILURE_REASONS = ("rejected", "failed", "lost", "unconfirmed")
"""``reason`` label of the failures counter: request answered with an error; sync_status reported our sync as
failed; pipeline restarted or stopped before confirmation; no confirmation before the next slot."""

ENTERPRISE_BACKOFF_SECONDS = 3600.0
MULTIHOST_BACKOFF_SECONDS = 3600.0
MULTIHOST_MESSAGE = "not supported directly on multihost pipelines"


def is_running(pipeline: Pipeline) -> bool:
    if pipeline.deployment_runtime_status is not None:
        return pipeline.deployment_resources_status == "Provisioned" and pipeline.deployment_runtime_status == "Running"
    return pipeline.deployment_status == "Running"


@dataclass(slots=True)
class _Pending:
    checkpoint_uuid: str
    incarnation_uuid: str | None
    requested: float
    """When it was requested: the time a failure of it is stamped with."""
    running: bool = False
    """``sync_status`` listed this sync as ``running`` at its last check (newer servers)."""


@dataclass(slots=True)
class _PipelineState:
    every: float
    next_due: float
    in_flight: bool = False
    pending: _Pending | None = None
    requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESULTS, 0))
    failures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAILURE_REASONS, 0))
    last_failures: dict[str, float] = field(default_factory=dict)
    last_request: float | None = None
    last_confirmed: float | None = None
    paused_until: float | None = None
    """A multi-host pipeline: not asked before this."""

    def report(self, name: str) -> PipelineSyncReport:
        return PipelineSyncReport(
            pipeline=name,
            every=self.every,
            requests=tuple(self.requests.items()),
            failures=tuple(self.failures.items()),
            last_failures=tuple(
                (reason, self.last_failures[reason]) for reason in FAILURE_REASONS if reason in self.last_failures
            ),
            last_request=self.last_request,
            last_confirmed=self.last_confirmed,
            awaiting_confirmation=self.pending is not None,
        )

    def fail(self, reason: str, requested: float) -> None:
        """Count a failed sync, stamped with the time it was requested (while the pipeline ran), not the time its
        failure was read, which can come after a pause or a restart."""
        self.failures[reason] += 1
        self.last_failures[reason] = requested


@dataclass(slots=True)
class _TargetState:
    client: FelderaClient
    running: frozenset[str] = frozenset()
    pipelines: dict[str, _PipelineState] = field(default_factory=dict)
    enterprise_until: float | None = None
    enterprise_logged: bool = False


class CheckpointSyncScheduler:
    """Owns the per-pipeline timers; one instance serves every target."""

    def __init__(
        self,
        schedules: Sequence[SyncSchedule],
        clock: Callable[[], float],
        *,
        enterprise_backoff: float = ENTERPRISE_BACKOFF_SECONDS,
        multihost_backoff: float = MULTIHOST_BACKOFF_SECONDS,
        concurrency: int = 8,
    ) -> None:
        self._schedules = tuple(schedules)
        self._clock = clock
        self._enterprise_backoff = enterprise_backoff
        self._multihost_backoff = multihost_backoff
        self._limit = asyncio.Semaphore(concurrency)
        self._targets: dict[str, _TargetState] = {}

    def reschedule(self, schedules: Sequence[SyncSchedule], clients: Mapping[str, FelderaClient]) -> None:
        """New schedules and targets (a configuration reload): each target's pipelines keep their timetables and
        counters while a schedule still matches them (a new ``every`` applies from the next slot), a removed target
        is forgotten, and syncs go out through ``clients`` (the poller's, by target) from now on."""
        self._schedules = tuple(schedules)
        for target in list(self._targets):
            if target in clients:
                self._targets[target].client = clients[target]
            else:
                del self._targets[target]

    def _schedule_for(self, target: str, pipeline: str) -> SyncSchedule | None:
        for schedule in self._schedules:
            if schedule.target in (None, target) and fnmatch.fnmatchcase(pipeline, schedule.pipelines):
                return schedule
        return None

    def observe(
        self, target: str, client: FelderaClient, pipelines: Sequence[PipelineSnapshot], now: float
    ) -> SyncReport:
        """Learn from a cycle's snapshot which scheduled pipelines of ``target`` run now; report the counters."""
        state = self._targets.get(target)
        if state is None:
            state = self._targets[target] = _TargetState(client=client)
        state.client = client
        running: set[str] = set()
        present: set[str] = set()
        for snap in pipelines:
            schedule = self._schedule_for(target, snap.name)
            if schedule is None:
                continue
            present.add(snap.name)
            pipe = state.pipelines.get(snap.name)
            if pipe is None:
                state.pipelines[snap.name] = _PipelineState(every=schedule.every, next_due=now)
            elif pipe.every != schedule.every:  # rescheduled: the next slot at most the new interval away
                pipe.next_due, pipe.every = min(pipe.next_due, now + schedule.every), schedule.every
            if is_running(snap.pipeline):
                running.add(snap.name)
        for gone in [name for name in state.pipelines if name not in present]:
            del state.pipelines[gone]
        state.running = frozenset(running)
        return self._report(state, now)

    def unseen(self, target: str) -> None:
        """``target``'s pipeline list failed: none of its pipelines is known to run, so none is synced until a list
        shows it running again (a Feldera outage counts no failed syncs; FelderaApiUnreachable tells it)."""
        state = self._targets.get(target)
        if state is not None:
            state.running = frozenset()

    def _report(self, state: _TargetState, now: float) -> SyncReport:
        return SyncReport(
            enterprise_only=state.enterprise_until is not None and now < state.enterprise_until,
            pipelines=tuple(state.pipelines[name].report(name) for name in sorted(state.pipelines)),
        )

    async def tick(self, now: float) -> None:
        """Send every due sync and check every sync awaiting confirmation; returns when all answers are in."""
        actions: list[Awaitable[None]] = []
        for target, state in self._targets.items():
            if state.enterprise_until is not None and now >= state.enterprise_until:
                state.enterprise_until = None
            for name, pipe in state.pipelines.items():
                if pipe.in_flight:
                    continue
                if pipe.paused_until is not None and now >= pipe.paused_until:
                    pipe.paused_until = None
                if pipe.pending is not None:
                    pipe.in_flight = True
                    if now < pipe.next_due:
                        actions.append(self._confirm(target, state, name, pipe))
                    else:
                        actions.append(self._slot_with_pending(target, state, name, pipe, now))
                    continue
                if self._may_request(state, name, pipe, now):
                    actions.append(self._request_at_slot(target, state, name, pipe, now))
        if actions:
            await asyncio.gather(*actions)

    def _may_request(self, state: _TargetState, name: str, pipe: _PipelineState, now: float) -> bool:
        return (
            name in state.running
            and state.enterprise_until is None
            and pipe.paused_until is None
            and now >= pipe.next_due
        )

    async def _request_at_slot(
        self, target: str, state: _TargetState, name: str, pipe: _PipelineState, now: float
    ) -> None:
        while pipe.next_due <= now:
            pipe.next_due += pipe.every
        pipe.in_flight = True
        await self._request(target, state, name, pipe, now)

    async def _slot_with_pending(
        self, target: str, state: _TargetState, name: str, pipe: _PipelineState, now: float
    ) -> None:
        """The slot came while a sync awaits confirmation: check it once more; one the server lists as running
        keeps its place (this slot is skipped), any other still unconfirmed is given up and a new one requested."""
        await self._confirm(target, state, name, pipe)
        pending = pipe.pending
        if pending is not None:
            if pending.running:
                while pipe.next_due <= now:
                    pipe.next_due += pipe.every
                return
            pipe.fail("unconfirmed", pending.requested)
            log.warning("checkpoint sync of %s/%s was not confirmed before the next slot", target, clean(name))
            pipe.pending = None
        if self._may_request(state, name, pipe, now):
            await self._request_at_slot(target, state, name, pipe, now)

    def next_wakeup(self, now: float, resolution: float) -> float:
        """Seconds until :meth:`tick` has something to do, at most ``resolution`` (confirmations are polled)."""
        delay = resolution
        for state in self._targets.values():
            for name, pipe in state.pipelines.items():
                if name in state.running and pipe.paused_until is None:
                    delay = min(delay, pipe.next_due - now)
        return max(delay, 0.0)

    async def run(self, resolution: float, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """The scheduler's own timer: tick, sleep until the next slot (at most ``resolution``), forever."""
        while True:
            now = self._clock()
            try:
                await self.tick(now)
            except Exception:
                log.exception("checkpoint sync scheduler tick failed")
            await sleep(self.next_wakeup(self._clock(), resolution))

    async def _request(self, target: str, state: _TargetState, name: str, pipe: _PipelineState, now: float) -> None:
        try:
            async with self._limit:
                answer: CheckpointSyncResponse | FelderaError = await state.client.checkpoint_sync(name)
        except FelderaError as exc:
            answer = exc
        finally:
            pipe.in_flight = False
        pipe.last_request = now
        result = classify(answer)
        pipe.requests[result] += 1
        if result == "synced":
            pipe.last_confirmed = now
        elif result == "accepted":
            assert isinstance(answer, CheckpointSyncResponse) and answer.checkpoint_uuid is not None
            pipe.pending = _Pending(answer.checkpoint_uuid, answer.incarnation_uuid, now)
        elif result == "enterprise_only":
            state.enterprise_until = now + self._enterprise_backoff
            level = logging.DEBUG if state.enterprise_logged else logging.WARNING
            state.enterprise_logged = True
            log.log(
                level,
                "target %s answered checkpoint sync with 501 (enterprise feature): scheduled syncs paused for %.0fs",
                target,
                self._enterprise_backoff,
            )
        elif result == "multihost_unsupported":
            pipe.paused_until = now + self._multihost_backoff
            log.warning(
                "checkpoint sync of %s/%s is not supported: a multi-host pipeline syncs through its coordinator; "
                "not asked again for %.0fs",
                target,
                clean(name),
                self._multihost_backoff,
            )
        elif result == "error":
            pipe.fail("rejected", now)
            log.warning("checkpoint sync of %s/%s failed: %s", target, clean(name), clean(answer))
        else:
            log.info("checkpoint sync of %s/%s not done (%s): %s", target, clean(name), result, clean(answer))

    async def _confirm(self, target: str, state: _TargetState, name: str, pipe: _PipelineState) -> None:
        pending = pipe.pending
        assert pending is not None
        try:
            async with self._limit:
                status: CheckpointSyncStatus | FelderaError = await state.client.sync_status(
                    name, incarnation_uuid=pending.incarnation_uuid
                )
        except FelderaError as exc:
            status = exc
        finally:
            pipe.in_flight = False
        if isinstance(status, CheckpointSyncStatus):
            pending.running = status.running is not None and pending.checkpoint_uuid in status.running
            if status.success == pending.checkpoint_uuid:
                pipe.last_confirmed = self._clock()
                pipe.pending = None
            elif status.failure is not None and status.failure.uuid == pending.checkpoint_uuid:
                pipe.fail("failed", pending.requested)
                pipe.pending = None
                log.warning("checkpoint sync of %s/%s failed: %s", target, clean(name), clean(status.failure.error))
        elif isinstance(status, ApiError) and (
            status.status == 400 or (status.status == 503 and status.error_code == "PipelineInteractionNotDeployed")
        ):
            pipe.fail("lost", pending.requested)
            pipe.pending = None
            log.warning(
                "checkpoint sync of %s/%s lost: the pipeline restarted or stopped first (%s)",
                target,
                clean(name),
                status,
            )


def classify(answer: CheckpointSyncResponse | FelderaError) -> str:
    """The ``result`` label for one answer to POST checkpoint/sync."""
    if isinstance(answer, CheckpointSyncResponse):
        if answer.checkpoint_uuid is not None:
            return "accepted"
        return "synced" if answer.checkpoint_sequence_number is not None else "error"
    if not isinstance(answer, ApiError):
        return "error"
    if answer.status == 404 and answer.error_code == "UnknownPipelineName":
        return "unknown_pipeline"
    if answer.status == 400 and MULTIHOST_MESSAGE in answer.message.lower():
        return "multihost_unsupported"
    if answer.status in (400, 404):
        return "no_checkpoints"
    if answer.status == 501:
        return "enterprise_only"
    if answer.status == 503:
        return "unavailable"
    return "error"
