"""One poll cycle: ask every target what it knows, return one immutable :class:`Snapshot`.

Per target and cycle: one ``GET /v0/pipelines?selector=status_with_connectors``; then, with at most
``poll.concurrency`` requests in flight, per pipeline only the endpoints that can answer in its status
(:func:`wants_checkpoint_status`, :func:`wants_sync_status`, :func:`wants_stats`), per-connector stats only when
the opt-in ``connector_errors`` collector is on, and cluster health once. A failed sub-request leaves that part
``None`` (counted in the request metrics, logged) and never hides other pipelines or targets. A failed list call,
or any exception while polling one target (a body nested too deeply to parse, ``MemoryError``, a bug), marks that
target down with no pipelines for the cycle (the staleness rule in README.md) with one log line; the other targets
and the served snapshot keep updating.

The calls of a cycle are a list of jobs worked off by ``poll.concurrency`` workers (:func:`_work`), not one task
per call: at 10,000 pipelines a task per call kept ~40,000 tasks, coroutines and semaphore waiters alive for the
whole cycle, and the garbage collector walked them again and again.

``GET /v0/config`` (version, edition, licence, update check) is asked once per cycle beside cluster health, not
less often: it is one small request per target against the per-pipeline ones, and a cached answer would be shown
as current after the server changed (an upgrade, a renewed licence), which the staleness rule forbids.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, TypeVar

from exporter.client import FelderaClient
from exporter.config import PipelineFilter, Settings, TargetSettings
from exporter.endpoint import split_endpoint, sql_identifier
from exporter.errors import ApiError, FelderaError
from exporter.history import History
from exporter.logsafe import clean
from exporter.metrics import polled_off_groups, stats_needed
from exporter.models import (
    CheckpointStatus,
    CheckpointSyncStatus,
    ClusterHealth,
    Configuration,
    ControllerStatus,
    InputEndpointStatus,
    OutputEndpointStatus,
    Pipeline,
)
from exporter.promclient import ProcessStats
from exporter.sidecar import Sidecar
from exporter.snapshot import EMPTY, ExporterStats, PipelineSnapshot, Snapshot, TargetSnapshot

log = logging.getLogger(__name__)

T = TypeVar("T")

NO_CHECKPOINT_RUNTIME = frozenset({"Unavailable", "Suspended", "Standby", "Coordination"})
STATS_RUNTIME = frozenset(
    {
        "Running",
        "Paused",
        "Bootstrapping",
        "ConcurrentBootstrapping",
        "Replaying",
        "Synchronizing",
        "AwaitingApproval",
    }
)
SYNC_DISABLED_SECONDS = 3600.0
"""After a 501 ``EnterpriseFeature`` answer the target is not asked for sync status again for this long."""


def wants_checkpoint_status(pipeline: Pipeline) -> bool:
    """checkpoint_status and sync_status: provisioned, with a runtime status that has a controller to ask."""
    runtime = pipeline.deployment_runtime_status
    return (
        pipeline.deployment_resources_status == "Provisioned"
        and runtime is not None
        and runtime not in NO_CHECKPOINT_RUNTIME
    )


def wants_sync_status(pipeline: Pipeline) -> bool:
    """checkpoint/sync_status: as checkpoint_status, except while Initializing, when every interaction endpoint
    but checkpoint_status answers 503 ``Initializing`` (docs/feldera-api.md)."""
    return wants_checkpoint_status(pipeline) and pipeline.deployment_runtime_status != "Initializing"


def wants_stats(pipeline: Pipeline) -> bool:
    return pipeline.deployment_runtime_status in STATS_RUNTIME


def selected(name: str, rules: PipelineFilter) -> bool:
    return any(fnmatch.fnmatchcase(name, g) for g in rules.include) and not any(
        fnmatch.fnmatchcase(name, g) for g in rules.exclude
    )


def shard_of(pipeline_name: str, total_shards: int) -> int:
    """Stable shard of a pipeline (CRC-32 of the UTF-8 name), the same in every process and release; a lone
    surrogate (possible in a name the standard-library JSON parser accepted) is hashed as its UTF-8-style bytes."""
    return zlib.crc32(pipeline_name.encode("utf-8", "surrogatepass")) % total_shards


@dataclass(slots=True)
class TargetRuntime:
    """What persists per target between cycles; given to the sidecar (it satisfies ``exporter.sidecar.target``)."""

    settings: TargetSettings
    client: FelderaClient
    polls: dict[str, int] = field(default_factory=lambda: {"success": 0, "failure": 0})
    last_success: float | None = None
    sync_disabled_until: float = 0.0

    @property
    def name(self) -> str:
        return self.settings.name


ClientFactory = Callable[[TargetSettings], FelderaClient]


class Poller:
    """Owns the clients and cross-cycle history; :meth:`poll_once` runs one cycle over all targets.

    With a ``sidecar`` (given here, never added later), each target that is up gets its typed sidecar results
    (:meth:`exporter.sidecar.Sidecar.report`); the exporter's own ``process_*``/``python_*`` samples are read once
    per cycle (:class:`exporter.promclient.ProcessStats`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        sidecar: Sidecar | None = None,
        client_factory: ClientFactory | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._sidecar = sidecar
        self._clock = clock
        self._monotonic = monotonic
        make_client = client_factory or (
            lambda target: FelderaClient(target, max_connections=settings.poll.concurrency)
        )
        self.targets = tuple(TargetRuntime(settings=t, client=make_client(t)) for t in settings.targets)
        self._history = History()
        self._process = ProcessStats()
        self._disabled = polled_off_groups(settings)  # switched off, or every family of the group denied
        self._want_stats = stats_needed(settings)
        self._everything = settings.pipelines.include == ["*"] and not settings.pipelines.exclude

    async def aclose(self) -> None:
        await asyncio.gather(*(t.client.aclose() for t in self.targets), return_exceptions=True)

    async def poll_once(self) -> Snapshot:
        results = await asyncio.gather(*(self._poll_target(t) for t in self.targets))
        sharding = self.settings.sharding
        return Snapshot(
            targets=tuple(results),
            process=self._process.read(),
            taken_at=self._clock(),
            shard=sharding.shard,
            total_shards=sharding.total_shards,
        )

    def _on(self, group: str) -> bool:
        return group not in self._disabled

    async def _poll_target(self, target: TargetRuntime) -> TargetSnapshot:
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
        listed = await target.client.list_pipelines()
        pipelines = [p for p in listed if self._mine(p.name)]
        snaps, cluster, server = await asyncio.gather(
            self._poll_pipelines(target, pipelines), self._cluster(target), self._server(target)
        )
        now = self._clock()
        snapshot = TargetSnapshot(
            name=target.name,
            labels=target.settings.label_pairs,
            up=True,
            pipelines=tuple(self._history.advance(target.name, snaps, now)),
            cluster=cluster,
            server=server,
        )
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

    def _mine(self, name: str) -> bool:
        sharding = self.settings.sharding
        if sharding.total_shards > 1 and shard_of(name, sharding.total_shards) != sharding.shard:
            return False
        return self._everything or selected(name, self.settings.pipelines)

    async def _cluster(self, target: TargetRuntime) -> ClusterHealth | None:
        if not self._on("cluster"):
            return None
        return await _guarded(target.client.cluster_health, (), target.name)

    async def _server(self, target: TargetRuntime) -> Configuration | None:
        if not self._on("server"):
            return None
        return await _guarded(target.client.server_config, (), target.name)

    async def _poll_pipelines(self, target: TargetRuntime, pipelines: list[Pipeline]) -> list[PipelineSnapshot]:
        """Every call the pipelines' statuses make meaningful, then (opt-in) the per-connector ones."""
        client = target.client
        count = len(pipelines)
        checkpoints: list[CheckpointStatus | None] = [None] * count
        stats: list[ControllerStatus | None] = [None] * count
        syncs: list[CheckpointSyncStatus | None] = [None] * count
        want_checkpoints = self._on("checkpoints")
        want_stats = self._want_stats
        want_sync = self._on("checkpoint_sync") and self._monotonic() >= target.sync_disabled_until
        sync_status = self._sync_status_for(target)
        jobs: list[Job] = []
        for index, pipeline in enumerate(pipelines):
            name = pipeline.name
            if want_checkpoints and wants_checkpoint_status(pipeline):
                jobs.append((client.checkpoint_status, (name,), checkpoints, index))
            if want_stats and wants_stats(pipeline):
                jobs.append((client.stats, (name,), stats, index))
            if want_sync and wants_sync_status(pipeline):
                jobs.append((sync_status, (name,), syncs, index))
        workers = self.settings.poll.concurrency
        await _work(jobs, workers, target.name)

        details: list[Mapping[str, InputEndpointStatus | OutputEndpointStatus]] = [EMPTY] * count  # type: ignore[list-item]
        if self._on("connector_errors"):
            detail_jobs: list[Job] = []
            for index, found in enumerate(stats):
                if found is not None:
                    answers: dict[str, InputEndpointStatus | OutputEndpointStatus] = {}
                    detail_jobs.extend(_connector_jobs(client, pipelines[index].name, found, answers))
                    details[index] = MappingProxyType(answers)
            await _work(detail_jobs, workers, target.name)
        return [
            PipelineSnapshot(
                pipeline=pipeline,
                checkpoint_status=checkpoints[index],
                stats=stats[index],
                sync_status=syncs[index],
                connector_details=details[index] or EMPTY,  # type: ignore[arg-type]
            )
            for index, pipeline in enumerate(pipelines)
        ]

    def _sync_status_for(self, target: TargetRuntime) -> Callable[[str], Awaitable[CheckpointSyncStatus | None]]:
        async def sync_status(name: str) -> CheckpointSyncStatus | None:
            if self._monotonic() < target.sync_disabled_until:
                return None  # a 501 earlier in this cycle: the rest are not asked either
            try:
                return await target.client.sync_status(name)
            except ApiError as exc:
                if exc.status == 501 or exc.error_code == "EnterpriseFeature":
                    target.sync_disabled_until = self._monotonic() + SYNC_DISABLED_SECONDS
                    log.info("%s: checkpoint sync is not available (%s); not asking for 1h", target.name, exc)
                    return None
                raise

        return sync_status


Job = tuple[Callable[..., Awaitable[Any]], tuple[str, ...], "list[Any] | dict[str, Any]", "int | str"]
"""(call, args, into, key): ``into[key] = await call(*args)`` unless it failed; ``args[0]`` is the pipeline."""


async def _work(jobs: Sequence[Job], workers: int, target: str) -> None:
    """Run the jobs with at most ``workers`` in flight, in order; a failed call is logged and leaves its slot."""
    pending = iter(jobs)

    async def worker() -> None:
        for call, args, into, key in pending:
            result = await _guarded(call, args, target)
            if result is not None:
                into[key] = result  # type: ignore[index]

    await asyncio.gather(*(worker() for _ in range(min(workers, len(jobs)))))


def _connector_jobs(
    client: FelderaClient,
    name: str,
    stats: ControllerStatus,
    into: dict[str, InputEndpointStatus | OutputEndpointStatus],
) -> list[Job]:
    jobs: list[Job] = []
    for inp in stats.inputs:
        table, connector = split_endpoint(inp.endpoint_name, inp.config.stream)
        jobs.append((client.input_connector_stats, (name, sql_identifier(table), connector), into, inp.endpoint_name))
    for out in stats.outputs:
        view, connector = split_endpoint(out.endpoint_name, out.config.stream)
        jobs.append((client.output_connector_stats, (name, sql_identifier(view), connector), into, out.endpoint_name))
    return jobs


async def _guarded(call: Callable[..., Awaitable[T]], args: tuple[str, ...], target: str) -> T | None:
    try:
        return await call(*args)
    except FelderaError as exc:
        log.log(_level(exc), "%s: %s failed: %s", _subject(target, args), _what(call), exc)
    except Exception as exc:
        subject = _subject(target, args)
        log.error("%s: %s failed unexpectedly: %s: %s", subject, _what(call), type(exc).__name__, clean(exc))
        log.debug("%s: %s failure details", subject, _what(call), exc_info=exc)
    return None


def _subject(target: str, args: tuple[str, ...]) -> str:
    return f"{target}/{clean(args[0])}" if args else target


def _what(call: Callable[..., object]) -> str:
    return getattr(call, "__name__", "call")


def _level(exc: FelderaError) -> int:
    """503 from a pipeline in transition (Initializing, not yet deployed) is expected: debug; the rest: warning."""
    return logging.DEBUG if isinstance(exc, ApiError) and exc.status == 503 else logging.WARNING
