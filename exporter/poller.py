"""One poll cycle: ask every target what it knows, return one immutable :class:`Snapshot`.

Per target and cycle: one ``GET /v0/pipelines?selector=status_with_connectors``; then, with at most
``poll.concurrency`` requests in flight, per pipeline only the endpoints that can answer in its status
(:func:`wants_checkpoint_status`, :func:`wants_sync_status`, :func:`wants_stats`), per-connector stats only when
the opt-in ``connector_errors`` collector is on, and cluster health once. A failed sub-request leaves that part
``None`` (counted in the request metrics, logged) and never hides other pipelines or targets. A failed list call
marks the target down with no pipelines (the staleness rule in README.md).

The calls of a cycle are a list of jobs worked off by ``poll.concurrency`` workers (:func:`_work`), not one task
per call: at 10,000 pipelines a task per call kept ~40,000 tasks, coroutines and semaphore waiters alive for the
whole cycle, and the garbage collector walked them again and again.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import re
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

from exporter.client import FelderaClient
from exporter.config import PipelineFilter, Settings, TargetSettings
from exporter.errors import ApiError, FelderaError
from exporter.memory import Memory
from exporter.metrics import polled_off_groups, stats_needed
from exporter.models import (
    CheckpointStatus,
    CheckpointSyncStatus,
    ClusterHealth,
    ControllerStatus,
    InputEndpointStatus,
    OutputEndpointStatus,
    Pipeline,
)
from exporter.snapshot import EMPTY, PipelineSnapshot, Snapshot, TargetSnapshot

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
_PLAIN_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


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
    but checkpoint_status answers 503 ``Initializing`` (NOTES.md)."""
    return wants_checkpoint_status(pipeline) and pipeline.deployment_runtime_status != "Initializing"


def wants_stats(pipeline: Pipeline) -> bool:
    return pipeline.deployment_runtime_status in STATS_RUNTIME


def selected(name: str, rules: PipelineFilter) -> bool:
    return any(fnmatch.fnmatchcase(name, g) for g in rules.include) and not any(
        fnmatch.fnmatchcase(name, g) for g in rules.exclude
    )


def shard_of(pipeline_name: str, total_shards: int) -> int:
    """Stable shard of a pipeline (CRC-32 of the name), the same in every process and release."""
    return zlib.crc32(pipeline_name.encode()) % total_shards


def sql_identifier(name: str) -> str:
    """A table/view name as the connector-stats path expects it: quoted unless a plain lower-case identifier."""
    if _PLAIN_IDENTIFIER.match(name):
        return name
    return '"' + name.replace('"', '""') + '"'


def split_endpoint(endpoint_name: str, stream: str) -> tuple[str, str]:
    """``table.connector`` -> (table, connector), using the configured stream name when it is a prefix."""
    if stream and endpoint_name.startswith(stream + "."):
        return stream, endpoint_name[len(stream) + 1 :]
    table, _, connector = endpoint_name.partition(".")
    return table, connector


@dataclass(slots=True)
class TargetRuntime:
    """What persists per target between cycles; given to poll contributors (sidecar features)."""

    settings: TargetSettings
    client: FelderaClient
    polls: dict[str, int] = field(default_factory=lambda: {"success": 0, "failure": 0})
    last_success: float | None = None
    sync_disabled_until: float = 0.0

    @property
    def name(self) -> str:
        return self.settings.name


class PollContributor(Protocol):
    """A sidecar feature adding an immutable result to ``TargetSnapshot.extras[key]`` each cycle."""

    key: str

    def contribute(
        self, target: TargetRuntime, pipelines: Sequence[PipelineSnapshot], now: float
    ) -> Awaitable[object]: ...


ClientFactory = Callable[[TargetSettings], FelderaClient]


class Poller:
    """Owns the clients and cross-cycle memory; :meth:`poll_once` runs one cycle over all targets."""

    def __init__(
        self,
        settings: Settings,
        *,
        contributors: Sequence[PollContributor] = (),
        client_factory: ClientFactory | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._contributors = tuple(contributors)
        self._clock = clock
        self._monotonic = monotonic
        make_client = client_factory or (
            lambda target: FelderaClient(target, max_connections=settings.poll.concurrency)
        )
        self.targets = tuple(TargetRuntime(settings=t, client=make_client(t)) for t in settings.targets)
        self._memory = Memory()
        self._disabled = polled_off_groups(settings)  # switched off, or every family of the group denied
        self._stats = stats_needed(settings)
        self._everything = settings.pipelines.include == ["*"] and not settings.pipelines.exclude

    def add_contributor(self, contributor: PollContributor) -> None:
        self._contributors = (*self._contributors, contributor)

    async def aclose(self) -> None:
        await asyncio.gather(*(t.client.aclose() for t in self.targets), return_exceptions=True)

    async def poll_once(self) -> Snapshot:
        results = await asyncio.gather(*(self._poll_target(t) for t in self.targets))
        sharding = self.settings.sharding
        return Snapshot(
            targets=tuple(results),
            taken_at=self._clock(),
            shard=sharding.shard,
            total_shards=sharding.total_shards,
        )

    def _on(self, group: str) -> bool:
        return group not in self._disabled

    async def _poll_target(self, target: TargetRuntime) -> TargetSnapshot:
        started = self._monotonic()
        identity = {"name": target.name, "labels": target.settings.label_pairs}
        try:
            listed = await target.client.list_pipelines()
        except FelderaError as exc:
            log.warning("%s: listing pipelines failed: %s", target.name, exc)
            target.polls["failure"] += 1
            return TargetSnapshot(
                **identity,
                up=False,
                exporter=target.client.api_stats.freeze(
                    poll_duration_seconds=self._monotonic() - started,
                    last_success_timestamp_seconds=target.last_success,
                    polls=tuple(sorted(target.polls.items())),
                ),
            )

        pipelines = [p for p in listed if self._mine(p.name)]
        snaps, cluster = await asyncio.gather(self._poll_pipelines(target, pipelines), self._cluster(target))
        now = self._clock()
        advanced = tuple(self._memory.advance(target.name, snaps, now))
        extras = await self._extras(target, advanced, now)
        target.polls["success"] += 1
        target.last_success = now
        return TargetSnapshot(
            **identity,
            up=True,
            pipelines=advanced,
            cluster=cluster,
            extras=extras,
            exporter=target.client.api_stats.freeze(
                poll_duration_seconds=self._monotonic() - started,
                last_success_timestamp_seconds=now,
                polls=tuple(sorted(target.polls.items())),
            ),
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

    async def _poll_pipelines(self, target: TargetRuntime, pipelines: list[Pipeline]) -> list[PipelineSnapshot]:
        """Every call the pipelines' statuses make meaningful, then (opt-in) the per-connector ones."""
        client = target.client
        count = len(pipelines)
        checkpoints: list[CheckpointStatus | None] = [None] * count
        stats: list[ControllerStatus | None] = [None] * count
        syncs: list[CheckpointSyncStatus | None] = [None] * count
        want_checkpoints = self._on("checkpoints")
        want_stats = self._stats
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

    async def _extras(
        self, target: TargetRuntime, pipelines: Sequence[PipelineSnapshot], now: float
    ) -> MappingProxyType[str, object]:
        extras: dict[str, object] = {}
        for contributor in self._contributors:
            try:
                extras[contributor.key] = await contributor.contribute(target, pipelines, now)
            except Exception:
                log.exception("%s: poll contributor %r failed", target.name, contributor.key)
        return MappingProxyType(extras)


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
    except Exception:
        log.exception("%s: %s failed unexpectedly", _subject(target, args), _what(call))
    return None


def _subject(target: str, args: tuple[str, ...]) -> str:
    return f"{target}/{args[0]}" if args else target


def _what(call: Callable[..., object]) -> str:
    return getattr(call, "__name__", "call")


def _level(exc: FelderaError) -> int:
    """503 from a pipeline in transition (Initializing, not yet deployed) is expected: debug; the rest: warning."""
    return logging.DEBUG if isinstance(exc, ApiError) and exc.status == 503 else logging.WARNING
