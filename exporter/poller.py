"""One poll cycle: ask every target what its :class:`~exporter.plan.PollPlan` says, return one immutable
:class:`Snapshot`.

Per target and cycle (:meth:`Poller.poll_target`): one ``GET /v0/pipelines?selector=status_with_connectors``; then
the plan's per-target requests (cluster health, ``/v0/config``) beside the plan's stages of per-pipeline requests,
each stage a list of jobs worked off by ``poll.concurrency`` workers (:func:`_work`), only for the pipelines whose
status lets the endpoint answer. A failed request leaves that part ``None`` (counted in the request metrics,
logged) and never hides other pipelines or targets. A failed list call, or any exception while polling one target
(a body nested too deeply to parse, ``MemoryError``, a bug), marks that target down with no pipelines for the cycle
(the staleness rule in README.md) with one log line; the other targets and the served snapshot keep updating.

Jobs, not one task per call: at 10,000 pipelines a task per call kept ~40,000 tasks, coroutines and semaphore
waiters alive for the whole cycle, and the garbage collector walked them again and again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from exporter.client import FelderaClient
from exporter.config import Settings, TargetSettings
from exporter.errors import ApiError, FelderaError
from exporter.history import History
from exporter.logsafe import clean
from exporter.plan import UNSUPPORTED_PAUSE, PipelineRequest, PollPlan, TargetRequest, guarded
from exporter.promclient import ProcessStats
from exporter.sidecar import Sidecar
from exporter.snapshot import ExporterStats, PipelineSnapshot, Snapshot, TargetSnapshot

log = logging.getLogger(__name__)


@dataclass(slots=True)
class TargetRuntime:
    """What persists per target between cycles; given to the sidecar (it satisfies ``exporter.sidecar.target``)."""

    settings: TargetSettings
    client: FelderaClient
    polls: dict[str, int] = field(default_factory=lambda: {"success": 0, "failure": 0})
    last_success: float | None = None
    history: History = field(default_factory=History)
    """What the exporter remembers of this target's pipelines between cycles."""
    paused: dict[str, float] = field(default_factory=dict)
    """Requests (by field) the target said it does not offer, until when (monotonic) they are not asked."""

    @property
    def name(self) -> str:
        return self.settings.name


ClientFactory = Callable[[TargetSettings], FelderaClient]


class Poller:
    """Owns the clients and each target's cross-cycle history; :meth:`poll_once` runs one cycle over all targets.

    With a ``sidecar`` (given here, never added later), each target that is up gets its typed sidecar results
    (:meth:`exporter.sidecar.Sidecar.report`); the exporter's own ``process_*``/``python_*`` samples are read once
    per cycle (:class:`exporter.promclient.ProcessStats`)."""

    def __init__(
        self,
        settings: Settings,
        plan: PollPlan,
        *,
        sidecar: Sidecar | None = None,
        client_factory: ClientFactory | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.plan = plan
        self._sidecar = sidecar
        self._clock = clock
        self._monotonic = monotonic
        self._client_factory = client_factory
        self.targets = tuple(TargetRuntime(settings=t, client=self._client(t)) for t in settings.targets)
        self._process = ProcessStats()

    def _client(self, target: TargetSettings) -> FelderaClient:
        if self._client_factory is not None:
            return self._client_factory(target)
        return FelderaClient(target, max_connections=self.plan.concurrency)

    def reconfigure(self, settings: Settings, plan: PollPlan) -> list[FelderaClient]:
        """Poll with ``settings`` and ``plan`` from the next cycle on (a configuration reload; not during a cycle).

        A target whose settings (and the plan's concurrency) are unchanged keeps everything; a changed one gets a new
        client, and keeps its name's history and poll counters (its request counters start again); a removed one
        is forgotten. Returns the clients no longer used, for the caller to close."""
        previous = {target.name: target for target in self.targets}
        same_pool = plan.concurrency == self.plan.concurrency
        self.settings, self.plan = settings, plan
        targets = []
        for target_settings in settings.targets:
            old = previous.get(target_settings.name)
            if old is not None and same_pool and old.settings == target_settings:
                targets.append(previous.pop(target_settings.name))
                continue
            target = TargetRuntime(settings=target_settings, client=self._client(target_settings))
            if old is not None:
                target.history, target.polls, target.last_success = old.history, old.polls, old.last_success
            targets.append(target)
        self.targets = tuple(targets)
        return [target.client for target in previous.values()]

    async def aclose(self) -> None:
        await asyncio.gather(*(t.client.aclose() for t in self.targets), return_exceptions=True)

    async def poll_once(self) -> Snapshot:
        results = await asyncio.gather(*(self.poll_target(t) for t in self.targets))
        sharding = self.settings.sharding
        return Snapshot(
            targets=tuple(results),
            process=self._process.read(),
            taken_at=self._clock(),
            shard=sharding.shard,
            total_shards=sharding.total_shards,
        )

    async def poll_target(self, target: TargetRuntime) -> TargetSnapshot:
        """One target's cycle; whatever goes wrong marks this target down for the cycle and no other."""
        started = self._monotonic()
        try:
            return await self._poll_target_once(target, started)
        except FelderaError as exc:
            log.warning("%s: listing pipelines failed: %s", target.name, exc)
        except Exception as exc:  # RecursionError, MemoryError, a bug: still only this target, still one line
            log.error("%s: poll failed unexpectedly: %s: %s", target.name, type(exc).__name__, clean(exc))
            log.debug("%s: poll failure details", target.name, exc_info=exc)
        target.polls["failure"] += 1
        return TargetSnapshot(
            name=target.name, labels=target.settings.label_pairs, up=False, exporter=self._stats(target, started)
        )

    async def _poll_target_once(self, target: TargetRuntime, started: float) -> TargetSnapshot:
        takes = self.plan.selection.takes
        listing = await target.client.list_pipelines(keep=takes)
        if listing.skipped:
            log.warning("%s: pipeline list: %s", target.name, listing.skipped.describe())
        pipelines = [PipelineSnapshot(pipeline=p) for p in listing.pipelines]
        answers = await asyncio.gather(
            self._poll_pipelines(target, pipelines),
            *(self._target_request(target, request) for request in self.plan.target_requests),
        )
        now = self._clock()
        snapshot = TargetSnapshot(
            name=target.name,
            labels=target.settings.label_pairs,
            up=True,
            pipelines=tuple(target.history.advance(target.name, answers[0], now)),
        )
        for request, answer in zip(self.plan.target_requests, answers[1:], strict=True):
            if answer is not None:
                snapshot = request.store(snapshot, answer)
        if self._sidecar is not None:
            snapshot = await self._sidecar.report(target, snapshot, now)
        target.polls["success"] += 1
        target.last_success = now
        return replace(snapshot, exporter=self._stats(target, started))

    def _stats(self, target: TargetRuntime, started: float) -> ExporterStats:
        return target.client.api_stats.freeze(
            poll_duration_seconds=self._monotonic() - started,
            last_success_timestamp_seconds=target.last_success,
            polls=tuple(sorted(target.polls.items())),
        )

    async def _target_request(self, target: TargetRuntime, request: TargetRequest[Any]) -> Any:
        return await guarded(request.fetch(target.client), request.field, target.name)

    async def _poll_pipelines(self, target: TargetRuntime, snaps: list[PipelineSnapshot]) -> list[PipelineSnapshot]:
        """The plan's stages in order; each job's answer goes into ``snaps`` (replaced, as snapshots are frozen)."""
        for stage in self.plan.stages:
            now = self._monotonic()
            offered = [request for request in stage if now >= target.paused.get(request.field, 0.0)]
            jobs = [Job(ask, index) for index, snap in enumerate(snaps) for ask in offered if ask.asks(snap)]
            await _work(jobs, self.plan.concurrency, lambda job: self._run(target, job, snaps))
        return snaps

    async def _run(self, target: TargetRuntime, job: Job, snaps: list[PipelineSnapshot]) -> None:
        request, snap = job.request, snaps[job.position]
        if self._monotonic() < target.paused.get(request.field, 0.0):
            return  # the target said earlier in this stage that it does not offer this endpoint
        answer = await guarded(self._fetch(target, request, snap), request.field, target.name, snap.name)
        if answer is not None:
            snaps[job.position] = request.store(snaps[job.position], answer)

    async def _fetch(self, target: TargetRuntime, request: PipelineRequest[Any], snap: PipelineSnapshot) -> Any:
        try:
            return await request.fetch(target.client, snap)
        except ApiError as exc:
            if request.unsupported is None or not request.unsupported(exc):
                raise
            target.paused[request.field] = self._monotonic() + UNSUPPORTED_PAUSE
            hours = UNSUPPORTED_PAUSE / 3600
            log.info("%s: %s is not available (%s); not asking for %gh", target.name, request.field, exc, hours)
            return None


class Job(NamedTuple):
    """One per-pipeline request of a stage: ``request`` for the pipeline at ``position`` in the target's list."""

    request: PipelineRequest[Any]
    position: int


async def _work(jobs: Sequence[Job], workers: int, run: Callable[[Job], Any]) -> None:
    """Run the jobs with at most ``workers`` in flight, in order."""
    pending = iter(jobs)

    async def worker() -> None:
        for job in pending:
            await run(job)

    await asyncio.gather(*(worker() for _ in range(min(workers, len(jobs)))))
