"""One poll cycle: ask every target what its :class:`~exporter.plan.PollPlan` says, return one immutable
:class:`Snapshot`.

Per target and cycle (:meth:`Poller.poll_target`): one ``GET /v0/pipelines?selector=status_with_connectors``; what
the target's history remembers and may reuse (:meth:`exporter.history.History.recall`); then the plan's per-target
requests (cluster health, ``/v0/config``) beside the plan's stages of per-pipeline requests, each stage a list of
jobs worked off by ``poll.concurrency`` workers (:func:`_work`), only for the pipelines whose status lets the
endpoint answer and whose answer can have changed. A failed request leaves that part ``None`` (counted in the
request metrics, and summed up with the cycle's other failures in one log line per target and cycle) and never hides
other pipelines or targets. A failed list call, or any exception while polling one target (a body nested too deeply
to parse, ``MemoryError``, a bug), marks that target down with no pipelines for the cycle (the staleness rule in
docs/polling.md) with one log line; the other targets and the served snapshot keep updating.

Bounds per target and cycle: ``poll.cycle_deadline`` cuts a cycle off (what was answered by then is kept, the
target down if the list was not; ``feldera_exporter_polls_cut_off_total``, one log line); ``max_pipelines`` (the
client refuses a longer list) and ``max_connectors`` (the stats of the pipelines past it are not asked) mark the
target over limit (``feldera_exporter_target_over_limit``, one log line).

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
from exporter.errors import ApiError, FelderaError, OverLimit
from exporter.history import History
from exporter.logsafe import clean
from exporter.plan import UNSUPPORTED_PAUSE, PipelineRequest, PollPlan, TargetRequest, failures_summed_up, guarded
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
    cut_off: int = 0
    """Cycles cut off at ``poll.cycle_deadline`` since start."""

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
        self.targets = tuple(
            TargetRuntime(settings=t, client=self._client(t), history=History(settings.poll.recheck_interval))
            for t in settings.targets
        )
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
            target = TargetRuntime(
                settings=target_settings,
                client=self._client(target_settings),
                history=History(settings.poll.recheck_interval),
            )
            if old is not None:
                target.history, target.polls, target.last_success = old.history, old.polls, old.last_success
                target.cut_off = old.cut_off
            targets.append(target)
        self.targets = tuple(targets)
        for target in self.targets:
            target.history.recheck_interval = settings.poll.recheck_interval
        return [target.client for target in previous.values()]

    def target(self, name: str) -> TargetRuntime | None:
        """The configured target of that name (None after a reload removed it)."""
        return next((target for target in self.targets if target.name == name), None)

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
        """One target's cycle, cut off at ``poll.cycle_deadline`` (what was answered by then is kept); whatever goes
        wrong marks this target down for the cycle and no other. Failed requests are summed up in one line per cycle
        (:class:`exporter.plan.Failures`)."""
        started = self._monotonic()
        cycle = _Cycle()
        deadline = self.settings.poll.cycle_deadline
        with failures_summed_up(target.name):
            try:
                async with asyncio.timeout(deadline) as timer:
                    await self._poll(target, cycle)
            except TimeoutError as exc:
                if not timer.expired():
                    cycle.failed(target.name, exc)
                else:
                    target.cut_off += 1
                    cycle.drop_unconfirmed(self.plan)
                    log.warning(
                        "%s: poll cycle cut off after %gs (poll.cycle_deadline): %s", target.name, deadline, cycle
                    )
            except OverLimit as exc:
                cycle.listed = None
                cycle.over_limit.add("pipelines")
                log.warning("%s: over its pipeline limit, not polled: %s", target.name, exc)
            except FelderaError as exc:
                cycle.listed = None
                log.warning("%s: listing pipelines failed: %s", target.name, exc)
            except Exception as exc:  # RecursionError, MemoryError, a bug: still only this target, still one line
                cycle.failed(target.name, exc)
        if cycle.connectors_left_out:
            log.warning(
                "%s: over its connector limit (max_connectors %d): the stats of %d pipeline(s) not kept this cycle",
                target.name,
                target.settings.max_connectors,
                cycle.connectors_left_out,
            )
        if cycle.listed is None:
            target.polls["failure"] += 1
            if self._sidecar is not None:
                self._sidecar.target_down(target.name)
            snapshot = TargetSnapshot(name=target.name, labels=target.settings.label_pairs)
        else:
            target.polls["success"] += 1
            snapshot = cycle.snapshot or self._snapshot(target, cycle)
        return replace(snapshot, over_limit=frozenset(cycle.over_limit), exporter=self._stats(target, started))

    async def _poll(self, target: TargetRuntime, cycle: _Cycle) -> None:
        """Fill ``cycle`` as answers come: the list, then the pipelines' and the target's requests, then the
        sidecar's report; a cut-off cycle is published with what it holds."""
        takes = self.plan.selection.takes
        listing = await target.client.list_pipelines(keep=takes)
        if listing.skipped:
            log.warning("%s: pipeline list: %s", target.name, listing.skipped.describe())
        listed = (PipelineSnapshot(pipeline=p) for p in listing.pipelines)
        cycle.listed = target.history.recall(target.name, listed, self._clock())
        cycle.recalled = tuple(cycle.listed)
        target.last_success = self._clock()
        await asyncio.gather(
            self._poll_pipelines(target, cycle),
            *(self._target_request(target, request, cycle) for request in self.plan.target_requests),
        )
        cycle.snapshot = self._snapshot(target, cycle)
        if self._sidecar is not None:
            cycle.reporting = True
            cycle.snapshot = await self._sidecar.report(target, cycle.snapshot, self._clock())

    def _snapshot(self, target: TargetRuntime, cycle: _Cycle) -> TargetSnapshot:
        """The target's snapshot of what ``cycle`` holds (its history advanced with it)."""
        assert cycle.listed is not None
        snapshot = TargetSnapshot(
            name=target.name,
            labels=target.settings.label_pairs,
            up=True,
            pipelines=tuple(target.history.advance(target.name, cycle.listed, self._clock())),
        )
        for request in self.plan.target_requests:
            if (answer := cycle.answers.get(request.field)) is not None:
                snapshot = request.store(snapshot, answer)
        if snapshot.server is not None:
            target.history.enterprise = snapshot.server.enterprise
        return snapshot

    def _stats(self, target: TargetRuntime, started: float) -> ExporterStats:
        return target.client.api_stats.freeze(
            poll_duration_seconds=self._monotonic() - started,
            last_success_timestamp_seconds=target.last_success,
            polls=tuple(sorted(target.polls.items())),
            cut_off=target.cut_off,
        )

    async def _target_request(self, target: TargetRuntime, request: TargetRequest[Any], cycle: _Cycle) -> None:
        cycle.answers[request.field] = await guarded(request.fetch(target.client), request.field, target.name)

    async def _poll_pipelines(self, target: TargetRuntime, cycle: _Cycle) -> None:
        """The plan's stages in order; each job's answer goes into ``cycle.listed`` (replaced, as snapshots are
        frozen)."""
        snaps = cycle.listed
        assert snaps is not None
        for stage in self.plan.stages:
            now = self._monotonic()
            offered = [request for request in stage if now >= target.paused.get(request.field, 0.0)]
            jobs = [Job(ask, index) for index, snap in enumerate(snaps) for ask in offered if ask.asks(snap)]
            cycle.planned += len(jobs)
            await _work(jobs, self.plan.concurrency, lambda job: self._run(target, job, cycle))

    async def _run(self, target: TargetRuntime, job: Job, cycle: _Cycle) -> None:
        snaps = cycle.listed
        assert snaps is not None
        request, snap = job.request, snaps[job.position]
        if self._monotonic() < target.paused.get(request.field, 0.0):
            cycle.answered += 1
            return  # the target said earlier in this stage that it does not offer this endpoint
        limit = target.settings.max_connectors
        if request.connectors is not None and cycle.connectors >= limit:
            cycle.answered += 1
            cycle.connectors_left_out += 1
            cycle.over_limit.add("connectors")
            return
        answer = await guarded(self._fetch(target, request, snap), request.field, target.name, snap.name)
        cycle.answered += 1
        if answer is None:
            cleared = request.store(snaps[job.position], None)  # failed: clears a reused answer
            snaps[job.position] = replace(cleared, failed=cleared.failed | {request.field})
            return
        if request.connectors is not None:
            cycle.connectors += request.connectors(answer)
            if cycle.connectors > limit:
                cycle.connectors_left_out += 1
                cycle.over_limit.add("connectors")
                return
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


@dataclass(slots=True)
class _Cycle:
    """What one target's cycle has gathered so far (a cut-off cycle is published with it)."""

    listed: list[PipelineSnapshot] | None = None
    """The pipelines this exporter polls, each with the answers so far; None until the list is answered."""
    recalled: tuple[PipelineSnapshot, ...] = ()
    """``listed`` as the target's history filled it, before the cycle's requests (what was reused)."""
    answers: dict[str, Any] = field(default_factory=dict)
    """Per-target answers by field (None for a failed one)."""
    snapshot: TargetSnapshot | None = None
    """The snapshot once every request is answered, then with the sidecar's report (None until then)."""
    reporting: bool = False
    """The sidecar's report was being made (every request of the cycle answered)."""
    planned: int = 0
    answered: int = 0
    connectors: int = 0
    connectors_left_out: int = 0
    """Pipelines whose stats were not asked or not kept: the connector limit was reached."""
    over_limit: set[str] = field(default_factory=set)

    def drop_unconfirmed(self, plan: PollPlan) -> None:
        """Cut off: clear each reused answer (``checkpoint_status``, ``sync_status``) that this cycle would have
        asked again, by what it has seen (a new deployment or process, a checkpoint in progress, its age), and has no
        new answer for. Such an answer can have changed; served, it would be an old value shown as current (and an
        old failure counted again for a new process). A reused answer the cycle had no reason to ask again stays."""
        if self.listed is None or self.snapshot is not None:
            return
        for position, (snap, before) in enumerate(zip(self.listed, self.recalled, strict=True)):
            for stage in plan.stages:
                for request in stage:
                    reused = getattr(snap, request.field)
                    if reused is not None and reused is getattr(before, request.field) and request.asks(snap):
                        snap = request.store(snap, None)
            self.listed[position] = snap

    def failed(self, target: str, exc: BaseException) -> None:
        """Something unexpected (a bug, ``MemoryError``): the target is down this cycle, one line says why."""
        self.listed = None
        log.error("%s: poll failed unexpectedly: %s: %s", target, type(exc).__name__, clean(exc))
        log.debug("%s: poll failure details", target, exc_info=exc)

    def __str__(self) -> str:
        """What a cut-off cycle had: for its log line."""
        if self.listed is None:
            return "the pipeline list was not answered: the target is down this cycle"
        if self.reporting:
            return "every request was answered; the sidecar's report (sync, reset watches) is left out this cycle"
        return (
            f"{self.answered} of {self.planned} pipeline request(s) answered so far; the cycle is served without "
            "the rest"
        )


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
