"""One poll cycle: ask every target what it knows, return one immutable :class:`Snapshot`.

Per target and cycle: one ``GET /v0/pipelines?selector=status_with_connectors``; then, with at most
``poll.concurrency`` requests in flight, per pipeline only the endpoints that can answer in its status
(:func:`wants_checkpoint_status`, :func:`wants_sync_status`, :func:`wants_stats`), per-connector stats only when
the opt-in ``connector_errors`` collector is on, and cluster health once. A failed sub-request leaves that part ``None``
(counted in the request metrics, logged) and never hides other pipelines or targets. A failed list call
marks the target down with no pipelines (the staleness rule in README.md).
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import re
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Protocol, TypeVar

from exporter.client import FelderaClient
from exporter.config import PipelineFilter, Settings, TargetSettings
from exporter.errors import ApiError, FelderaError
from exporter.memory import Memory
from exporter.models import (
    CheckpointSyncStatus,
    ClusterHealth,
    ControllerStatus,
    InputEndpointStatus,
    OutputEndpointStatus,
    Pipeline,
)
from exporter.snapshot import PipelineSnapshot, Snapshot, TargetSnapshot

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
        self._disabled = settings.collectors.disabled()

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
        semaphore = asyncio.Semaphore(self.settings.poll.concurrency)
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
        cluster_task = self._cluster(target, semaphore)
        snaps, cluster = await asyncio.gather(
            asyncio.gather(*(self._poll_pipeline(target, p, semaphore) for p in pipelines)), cluster_task
        )
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
        return selected(name, self.settings.pipelines)

    async def _cluster(self, target: TargetRuntime, semaphore: asyncio.Semaphore) -> ClusterHealth | None:
        if not self._on("cluster"):
            return None
        return await _guarded(target.name, "cluster", semaphore, target.client.cluster_health)

    async def _poll_pipeline(
        self, target: TargetRuntime, pipeline: Pipeline, semaphore: asyncio.Semaphore
    ) -> PipelineSnapshot:
        client, name = target.client, pipeline.name
        subject = f"{target.name}/{name}"

        async def none() -> None:
            return None

        checkpoint_meaningful = wants_checkpoint_status(pipeline)
        want_stats = wants_stats(pipeline) and (
            self._on("connectors")
            or self._on("connector_counters")
            or self._on("checkpoints")
            or self._on("connector_errors")
        )
        want_sync = (
            wants_sync_status(pipeline)
            and self._on("checkpoint_sync")
            and self._monotonic() >= target.sync_disabled_until
        )
        checkpoint, stats, sync = await asyncio.gather(
            _guarded(subject, "checkpoint_status", semaphore, lambda: client.checkpoint_status(name))
            if checkpoint_meaningful and self._on("checkpoints")
            else none(),
            _guarded(subject, "stats", semaphore, lambda: client.stats(name)) if want_stats else none(),
            self._sync_status(target, name, semaphore) if want_sync else none(),
        )
        details: MappingProxyType[str, InputEndpointStatus | OutputEndpointStatus] | None = None
        if stats is not None and self._on("connector_errors"):
            details = await self._connector_details(client, name, subject, stats, semaphore)
        snap = PipelineSnapshot(pipeline=pipeline, checkpoint_status=checkpoint, stats=stats, sync_status=sync)
        return replace(snap, connector_details=details) if details else snap

    async def _sync_status(
        self, target: TargetRuntime, name: str, semaphore: asyncio.Semaphore
    ) -> CheckpointSyncStatus | None:
        async with semaphore:
            try:
                return await target.client.sync_status(name)
            except ApiError as exc:
                if exc.status == 501 or exc.error_code == "EnterpriseFeature":
                    target.sync_disabled_until = self._monotonic() + SYNC_DISABLED_SECONDS
                    log.info("%s: checkpoint sync is not available (%s); not asking for 1h", target.name, exc)
                else:
                    log.log(_level(exc), "%s: sync_status of %s failed: %s", target.name, name, exc)
            except FelderaError as exc:
                log.log(_level(exc), "%s: sync_status of %s failed: %s", target.name, name, exc)
        return None

    async def _connector_details(
        self,
        client: FelderaClient,
        name: str,
        subject: str,
        stats: ControllerStatus,
        semaphore: asyncio.Semaphore,
    ) -> MappingProxyType[str, InputEndpointStatus | OutputEndpointStatus]:
        calls: list[tuple[str, Callable[[], Awaitable[InputEndpointStatus | OutputEndpointStatus]]]] = []
        for inp in stats.inputs:
            table, connector = split_endpoint(inp.endpoint_name, inp.config.stream)
            calls.append(
                (
                    inp.endpoint_name,
                    lambda t=table, c=connector: client.input_connector_stats(name, sql_identifier(t), c),
                )
            )
        for out in stats.outputs:
            view, connector = split_endpoint(out.endpoint_name, out.config.stream)
            calls.append(
                (
                    out.endpoint_name,
                    lambda v=view, c=connector: client.output_connector_stats(name, sql_identifier(v), c),
                )
            )
        answers = await asyncio.gather(*(_guarded(subject, "connector stats", semaphore, call) for _, call in calls))
        return MappingProxyType({key: a for (key, _), a in zip(calls, answers, strict=True) if a is not None})

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


async def _guarded(subject: str, what: str, semaphore: asyncio.Semaphore, call: Callable[[], Awaitable[T]]) -> T | None:
    async with semaphore:
        try:
            return await call()
        except FelderaError as exc:
            log.log(_level(exc), "%s: %s failed: %s", subject, what, exc)
        except Exception:
            log.exception("%s: %s failed unexpectedly", subject, what)
        return None


def _level(exc: FelderaError) -> int:
    """503 from a pipeline in transition (Initializing, not yet deployed) is expected: debug; the rest: warning."""
    return logging.DEBUG if isinstance(exc, ApiError) and exc.status == 503 else logging.WARNING
