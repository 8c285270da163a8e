"""The poll plan: what one cycle asks each target, decided once from the settings (:func:`make_plan`).

The poller works a plan and knows nothing of metrics. The metric layer says which snapshot fields the families a
configuration emits read (``MetricSpec.reads``, :func:`exporter.metrics.fields_read`); a request whose field no
emitted family reads is not planned, so switching a collector off, or denying every family read from an
endpoint, leaves that endpoint alone. Shape::

    PollPlan
      selection        Selection: which listed pipelines are this exporter's (include/exclude globs, shard)
      target_requests  TargetRequest per target and cycle, beside the pipeline list (cluster health, /v0/config)
      stages           PipelineRequest per pipeline, in stages: a request runs in the stage after those it needs
      concurrency      requests in flight per target

    TargetRequest(field, fetch(client), store(target_snapshot, answer))
    PipelineRequest(field, asks(snap), fetch(client, snap), store(snap, answer | None), needs, unsupported)

Per target and cycle the poller lists the pipelines (the one request every cycle makes) and keeps those the
selection takes; the target's history (:meth:`exporter.history.History.recall`) puts into each snapshot what it
remembers and may reuse (``fault_tolerance`` of the current version, the last ``checkpoint_status`` and
``sync_status`` answers) and what was true when those came (``recalled``). Then the poller works the stages in
order, each as one list of jobs: for each pipeline and request whose ``asks(snap)`` says the endpoint can answer now
and its answer can have changed (facts about Feldera read from the pipeline's status, answers of an earlier stage,
and ``recalled``: docs/feldera-api.md, "What changes what"), ``fetch`` the answer and ``store`` it into the
pipeline's snapshot. A failed request stores ``None``, which clears what was reused. A request whose ``unsupported``
recognises the failure (``sync_status`` on an edition without checkpoint sync) is not asked of that target again for
:data:`UNSUPPORTED_PAUSE`. Each target is polled on its own (:meth:`exporter.poller.Poller.poll_target`), with its
own cross-cycle history.

A new polled endpoint is one client method, one entry in :data:`PIPELINE_REQUESTS` or :data:`TARGET_REQUESTS` (its
``field`` a field of :class:`~exporter.snapshot.PipelineSnapshot` or :class:`~exporter.snapshot.TargetSnapshot`),
and one metrics module whose specs name that field in ``reads``; ``tests/test_plan.py`` checks the two agree. A
request that need not be asked every cycle (its answer cannot have changed since a cycle that got it) is an entry
whose ``asks`` also sees what the target's history kept of the pipeline, with that answer carried into the new
snapshot; a target polled on a cadence of its own is a loop over ``poll_target``, each publishing its target's part.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import zlib
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from exporter.client import FelderaClient
from exporter.config import Settings
from exporter.endpoint import split_endpoint, sql_identifier
from exporter.errors import ApiError, FelderaError
from exporter.history import (
    BUSY_ACTIVITY,
    checkpoint_statuses_answer,
    newest_checkpoint,
    sync_status_answers,
)
from exporter.logsafe import clean
from exporter.models import ControllerStatus, FaultTolerance, InputEndpointStatus, OutputEndpointStatus, Pipeline
from exporter.snapshot import NO_DETAILS, PipelineSnapshot, TargetSnapshot

log = logging.getLogger(__name__)

T = TypeVar("T")

UNSUPPORTED_PAUSE = 3600.0
"""After an answer that says a target does not offer an endpoint, that target is not asked for it for this long."""

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


def wants_stats(pipeline: Pipeline) -> bool:
    return pipeline.deployment_runtime_status in STATS_RUNTIME


def asks_fault_tolerance(snap: PipelineSnapshot) -> bool:
    """``runtime_config`` once per pipeline ``version`` (it changes only with the version, docs/feldera-api.md),
    of a pipeline that is deployed with a controller to checkpoint (the answer carries the program code too); after
    failures only once their pause is over (:class:`exporter.history.History`)."""
    return (
        snap.fault_tolerance is None
        and not snap.recalled.fault_tolerance_paused
        and checkpoint_statuses_answer(snap.pipeline)
    )


def asks_checkpoint_status(snap: PipelineSnapshot) -> bool:
    """``checkpoint_status`` only when its answer can have changed: it reports ``POST /checkpoint`` requests of
    the current process, and each GET is a write to Feldera's database (docs/feldera-api.md). So: nothing to reuse
    (first sight, or the last request failed) or the reused answer is older than ``poll.recheck_interval`` (not on
    the open-source edition, which refuses ``POST /checkpoint``); a new deployment or process (told by ``/stats``,
    or without it by a changed runtime status); a checkpoint in progress or delayed now or in the previous cycle;
    or a new newest checkpoint in storage."""
    pipeline = snap.pipeline
    if not checkpoint_statuses_answer(pipeline):
        return False
    recalled = snap.recalled
    if snap.checkpoint_status is None or recalled.checkpoint_busy:
        return True
    if recalled.checkpoint_status_due and recalled.enterprise is not False:
        return True
    if pipeline.deployment_id != recalled.checkpoint_deployment:
        return True
    if newest_checkpoint(pipeline) != recalled.checkpoint_newest:
        return True
    stats = snap.stats
    if stats is None:  # Initializing (stats answers 503), or stats failed
        return pipeline.deployment_runtime_status != recalled.checkpoint_runtime_status
    activity = stats.checkpoint_activity
    return stats.global_metrics.incarnation_uuid != recalled.checkpoint_incarnation or (
        activity is not None and activity.status in BUSY_ACTIVITY
    )


def asks_sync_status(snap: PipelineSnapshot) -> bool:
    """``checkpoint/sync_status`` only where a sync can have changed it: never on the open-source edition
    (checkpoint sync is Enterprise-only there, so the server answers with nothing); else nothing to reuse, an
    answer older than ``poll.recheck_interval``, a new deployment or process, or a pipeline whose storage
    configuration syncs periodically (or whose configuration is not known yet). A sync somebody requests on a
    pipeline without periodic sync shows within ``poll.recheck_interval``."""
    pipeline = snap.pipeline
    recalled = snap.recalled
    if not sync_status_answers(pipeline) or recalled.enterprise is False:
        return False
    if snap.sync_status is None or recalled.sync_status_due:
        return True
    stats = snap.stats
    ft = snap.fault_tolerance
    return (
        stats is None
        or pipeline.deployment_id != recalled.sync_deployment
        or stats.global_metrics.incarnation_uuid != recalled.sync_incarnation
        or ft is None
        or ft.sync_configured
    )


@dataclass(frozen=True, slots=True)
class TargetRequest(Generic[T]):
    """One request per target and cycle, beside the pipeline list."""

    field: str
    """The :class:`~exporter.snapshot.TargetSnapshot` field it fills (what ``MetricSpec.reads`` names)."""
    fetch: Callable[[FelderaClient], Awaitable[T]]
    store: Callable[[TargetSnapshot, T], TargetSnapshot]


@dataclass(frozen=True, slots=True)
class PipelineRequest(Generic[T]):
    """One request per pipeline and cycle, for the pipelines whose snapshot so far ``asks`` for it."""

    field: str
    """The :class:`~exporter.snapshot.PipelineSnapshot` field it fills (what ``MetricSpec.reads`` names)."""
    asks: Callable[[PipelineSnapshot], bool]
    """Whether the endpoint can answer for this pipeline now; sees the answers of the stages before."""
    fetch: Callable[[FelderaClient, PipelineSnapshot], Awaitable[T]]
    store: Callable[[PipelineSnapshot, T], PipelineSnapshot]
    needs: tuple[str, ...] = ()
    """Fields of other requests this one reads: it is planned with them and runs in a later stage."""
    unsupported: Callable[[ApiError], bool] | None = None
    """Whether a failure means the target does not offer the endpoint at all (then: :data:`UNSUPPORTED_PAUSE`)."""
    connectors: Callable[[T], int] | None = None
    """How many connectors an answer holds (counted against ``targets[].max_connectors``)."""


FAILURE_EXAMPLES = 3
"""Failed requests named in the line that sums up a cycle's failures of one kind."""
SHOWN_NAME_CHARS = 60
"""Characters of a pipeline name shown in such a line."""


class Failures:
    """The failed requests of one target's cycle, summed up in one line per level at its end (:meth:`log`): how many
    failed, of which requests, and the first few. How many fail is the upstream's to decide, so never one line per
    request (a Feldera whose every pipeline answers 500 would write a line per pipeline and cycle)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._counts: dict[int, dict[str, int]] = {}
        self._examples: dict[int, list[str]] = {}
        self._details: BaseException | None = None

    def add(self, level: int, what: str, pipeline: str | None, why: str, details: BaseException | None = None) -> None:
        counts = self._counts.setdefault(level, {})
        counts[what] = counts.get(what, 0) + 1
        examples = self._examples.setdefault(level, [])
        if len(examples) < FAILURE_EXAMPLES:
            examples.append(f"{_subject(self.target, pipeline)}: {what} failed{why}")
        if details is not None and self._details is None:
            self._details = details

    def log(self) -> None:
        for level in sorted(self._counts, reverse=True):
            counts = self._counts[level]
            total = sum(counts.values())
            kinds = ", ".join(f"{what} {count}" for what, count in sorted(counts.items()))
            log.log(
                level,
                "%s: %d request(s) failed this cycle (%s), e.g. %s",
                self.target,
                total,
                kinds,
                "; ".join(self._examples[level]),
            )
        if self._details is not None:
            log.debug("%s: details of the first unexpected failure", self.target, exc_info=self._details)


_FAILURES: ContextVar[list[Failures] | None] = ContextVar("exporter.plan.failures", default=None)
"""The cycle's :class:`Failures` in a slot emptied when the cycle ends: a context copied inside (by a pooled
connection's reader, a timer) outlives the cycle, and must keep neither its failures (with an exception and its
traceback) alive nor count a later failure into a summary already logged."""


@contextlib.contextmanager
def failures_summed_up(target: str) -> Iterator[Failures]:
    """Inside (and in the tasks started inside), :func:`guarded` counts failures into the yielded :class:`Failures`
    instead of logging each; one line per level is logged on the way out."""
    failures = Failures(target)
    slot = [failures]
    token = _FAILURES.set(slot)
    try:
        yield failures
    finally:
        _FAILURES.reset(token)
        slot.clear()
        failures.log()


async def guarded(work: Awaitable[T], what: str, target: str, pipeline: str | None = None) -> T | None:
    """``await work``, or None when it failed: counted into the cycle's :class:`Failures` (within
    :func:`failures_summed_up`), else logged as one line ``target[/pipeline]: what failed: why``."""
    try:
        return await work
    except FelderaError as exc:
        _failed(_level(exc), what, target, pipeline, f": {exc}")
    except Exception as exc:
        _failed(logging.ERROR, what, target, pipeline, f" unexpectedly: {type(exc).__name__}: {clean(exc)}", exc)
    return None


def _failed(
    level: int, what: str, target: str, pipeline: str | None, why: str, details: BaseException | None = None
) -> None:
    slot = _FAILURES.get()
    if slot:
        slot[0].add(level, what, pipeline, why, details)
        return
    subject = _subject(target, pipeline)
    log.log(level, "%s: %s failed%s", subject, what, why)
    if details is not None:
        log.debug("%s: %s failure details", subject, what, exc_info=details)


def _subject(target: str, pipeline: str | None) -> str:
    if pipeline is None:
        return target
    shown = pipeline if len(pipeline) <= SHOWN_NAME_CHARS else f"{pipeline[:SHOWN_NAME_CHARS]}..."
    return f"{target}/{clean(shown)}"


def _level(exc: FelderaError) -> int:
    """503 from a pipeline in transition (Initializing, not yet deployed) is expected: debug; the rest: warning."""
    return logging.DEBUG if isinstance(exc, ApiError) and exc.status == 503 else logging.WARNING


async def _connector_details(
    client: FelderaClient, snap: PipelineSnapshot
) -> Mapping[str, InputEndpointStatus | OutputEndpointStatus]:
    """Every connector the pipeline's stats list, one request each (a failed one is left out)."""
    stats = snap.stats  # asked only when there are stats
    inputs, outputs = (stats.inputs, stats.outputs) if stats is not None else ((), ())
    name, target = snap.name, client.settings.name
    answers: dict[str, InputEndpointStatus | OutputEndpointStatus] = {}
    for inp in inputs:
        table, connector = split_endpoint(inp.endpoint_name, inp.config.stream)
        work = client.input_connector_stats(name, sql_identifier(table), connector)
        if (found := await guarded(work, "input_connector_stats", target, name)) is not None:
            answers[inp.endpoint_name] = found
    for out in outputs:
        view, connector = split_endpoint(out.endpoint_name, out.config.stream)
        work_out = client.output_connector_stats(name, sql_identifier(view), connector)
        if (sent := await guarded(work_out, "output_connector_stats", target, name)) is not None:
            answers[out.endpoint_name] = sent
    return MappingProxyType(answers)


def _enterprise_only(exc: ApiError) -> bool:
    return exc.status == 501 or exc.error_code == "EnterpriseFeature"


async def _fault_tolerance(client: FelderaClient, snap: PipelineSnapshot) -> FaultTolerance:
    return (await client.runtime_config(snap.name)).fault_tolerance


def with_error_lists(stats: object) -> Mapping[str, InputEndpointStatus | OutputEndpointStatus] | None:
    """The connectors of a ``stats?include_connector_errors=true`` answer keyed by endpoint name, when it carries
    their error lists (Feldera 0.292.0 on); None when it does not (an older server ignored the parameter)."""
    if not isinstance(stats, ControllerStatus) or not (stats.inputs or stats.outputs):
        return None
    if any(i.parse_errors is None for i in stats.inputs) or any(o.encode_errors is None for o in stats.outputs):
        return None
    connectors: dict[str, InputEndpointStatus | OutputEndpointStatus] = {i.endpoint_name: i for i in stats.inputs}
    connectors.update((o.endpoint_name, o) for o in stats.outputs)
    return MappingProxyType(connectors)


def _store_stats(snap: PipelineSnapshot, answer: ControllerStatus | None) -> PipelineSnapshot:
    details = with_error_lists(answer)
    if details is None:
        return replace(snap, stats=answer)
    return replace(snap, stats=answer, connector_details=details)


def _asks_connector_details(snap: PipelineSnapshot) -> bool:
    """Per-connector requests only where ``stats`` came without the error lists."""
    return snap.stats is not None and not snap.connector_details


STATS = PipelineRequest(
    "stats",
    asks=lambda snap: wants_stats(snap.pipeline),
    fetch=lambda client, snap: client.stats(snap.name),
    store=_store_stats,
    connectors=lambda answer: len(answer.inputs) + len(answer.outputs),
)
STATS_WITH_CONNECTOR_ERRORS = replace(STATS, fetch=lambda client, snap: client.stats(snap.name, connector_errors=True))
"""``stats`` when ``connector_details`` is planned: one request lists every connector's errors where the server
can (:func:`make_plan` puts it in place of :data:`STATS`)."""

PIPELINE_REQUESTS: tuple[PipelineRequest[Any], ...] = (
    PipelineRequest(
        "fault_tolerance",
        asks=asks_fault_tolerance,
        fetch=_fault_tolerance,
        store=lambda snap, answer: replace(snap, fault_tolerance=answer),
    ),
    STATS,
    PipelineRequest(
        "checkpoint_status",
        asks=asks_checkpoint_status,
        fetch=lambda client, snap: client.checkpoint_status(snap.name),
        store=lambda snap, answer: replace(snap, checkpoint_status=answer),
        needs=("stats",),
    ),
    PipelineRequest(
        "sync_status",
        asks=asks_sync_status,
        fetch=lambda client, snap: client.sync_status(snap.name),
        store=lambda snap, answer: replace(snap, sync_status=answer),
        needs=("stats",),
        unsupported=_enterprise_only,
    ),
    PipelineRequest(
        "connector_details",
        asks=_asks_connector_details,
        fetch=_connector_details,
        store=lambda snap, answer: replace(snap, connector_details=NO_DETAILS if answer is None else answer),
        needs=("stats",),
    ),
)
"""Every per-pipeline request the exporter knows, in the order a stage asks them. ``store`` also gets ``None``
(a failed request), which clears a reused answer."""

TARGET_REQUESTS: tuple[TargetRequest[Any], ...] = (
    TargetRequest(
        "cluster",
        fetch=lambda client: client.cluster_health(),
        store=lambda target, answer: replace(target, cluster=answer),
    ),
    TargetRequest(
        "server",
        fetch=lambda client: client.server_config(),
        store=lambda target, answer: replace(target, server=answer),
    ),
)
"""Every per-target request beside the pipeline list. ``/v0/config`` is asked every cycle, not less often: one
small request per target against the per-pipeline ones, and a cached answer would be shown as current after the
server changed (an upgrade, a renewed licence), which the staleness rule forbids."""


def shard_of(pipeline_name: str, total_shards: int) -> int:
    """Stable shard of a pipeline (CRC-32 of the UTF-8 name), the same in every process and release; a lone
    surrogate (possible in a name the standard-library JSON parser accepted) is hashed as its UTF-8-style bytes."""
    return zlib.crc32(pipeline_name.encode("utf-8", "surrogatepass")) % total_shards


@dataclass(frozen=True, slots=True)
class Selection:
    """Which listed pipelines this exporter polls: fnmatch globs on the name, and its shard."""

    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    shard: int = 0
    total_shards: int = 1

    def takes(self, name: str) -> bool:
        if self.total_shards > 1 and shard_of(name, self.total_shards) != self.shard:
            return False
        if self.include == ("*",) and not self.exclude:
            return True
        return any(fnmatch.fnmatchcase(name, g) for g in self.include) and not any(
            fnmatch.fnmatchcase(name, g) for g in self.exclude
        )


@dataclass(frozen=True, slots=True)
class PollPlan:
    selection: Selection = Selection()
    target_requests: tuple[TargetRequest[Any], ...] = ()
    stages: tuple[tuple[PipelineRequest[Any], ...], ...] = ()
    concurrency: int = 32

    @property
    def fields(self) -> frozenset[str]:
        """The snapshot fields this plan fills."""
        return frozenset(r.field for r in self.target_requests) | {r.field for s in self.stages for r in s}


def make_plan(settings: Settings, read: Collection[str]) -> PollPlan:
    """The plan for ``settings`` that fills the snapshot fields in ``read`` (and the fields those requests need)."""
    by_field: Mapping[str, PipelineRequest[Any]] = {r.field: r for r in PIPELINE_REQUESTS}
    planned: set[str] = set()
    pending = [field for field in read if field in by_field]
    while pending:
        field = pending.pop()
        if field not in planned:
            planned.add(field)
            pending.extend(by_field[field].needs)
    stage_of: dict[str, int] = {}
    for request in PIPELINE_REQUESTS:  # declared after what they need
        if request.field in planned:
            stage_of[request.field] = 1 + max((stage_of[need] for need in request.needs), default=-1)
    requests = tuple(
        STATS_WITH_CONNECTOR_ERRORS if r is STATS and "connector_details" in planned else r for r in PIPELINE_REQUESTS
    )
    stages = tuple(
        tuple(r for r in requests if stage_of.get(r.field) == stage)
        for stage in range(1 + max(stage_of.values(), default=-1))
    )
    sharding, pipelines = settings.sharding, settings.pipelines
    return PollPlan(
        selection=Selection(tuple(pipelines.include), tuple(pipelines.exclude), sharding.shard, sharding.total_shards),
        target_requests=tuple(r for r in TARGET_REQUESTS if r.field in read),
        stages=stages,
        concurrency=settings.poll.concurrency,
    )
