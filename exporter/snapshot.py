"""The immutable result of one poll cycle: everything ``/metrics`` shows, and nothing that needs I/O to read.

The poll loop builds one :class:`Snapshot` per cycle; the metric modules turn it into families with pure
functions; the renderer serialises it once. A field is ``None`` when the exporter did not fetch it this cycle
(endpoint not meaningful for the pipeline's status, collector disabled) or when the fetch failed; the metric
layer then emits nothing for it rather than an old value, so stale data is never shown as current.

The sidecar's results are typed fields of :class:`TargetSnapshot` too (``sync``, ``resets``), filled by
:meth:`exporter.sidecar.Sidecar.report`; their frozen report types live here, next to the fields that hold them.
A third sidecar feature is a new module under ``exporter/sidecar/`` plus one field (and its report type) here,
one line in ``Sidecar.report`` and its specs in ``exporter/metrics/sidecar.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from exporter.models import (
    CheckpointStatus,
    CheckpointSyncStatus,
    ClusterHealth,
    Configuration,
    ControllerStatus,
    FaultTolerance,
    InputEndpointStatus,
    OutputEndpointStatus,
    Pipeline,
)

NO_DETAILS: Mapping[str, InputEndpointStatus | OutputEndpointStatus] = MappingProxyType({})


def _no_details() -> Mapping[str, InputEndpointStatus | OutputEndpointStatus]:
    # a mappingproxy is not hashable on Python 3.11, so dataclasses refuse it as a plain default
    return NO_DETAILS


@dataclass(frozen=True, slots=True)
class Derived:
    """Values computed across cycles by :mod:`exporter.history` (they need history, not just this cycle)."""

    checkpoint_failures_total: int = 0
    """Distinct checkpoint failures observed for the pipeline since the exporter started."""
    checkpoint_sync_failures_total: int = 0
    """Distinct checkpoint-sync failures observed since the exporter started."""
    checkpoint_sync_failed: bool | None = None
    """Whether the newest checkpoint sync the exporter knows of failed; None before sync_status was seen."""
    checkpoint_sync_last_success_seen_seconds: float | None = None
    """When the exporter first saw the current ``sync_status.success`` uuid."""
    newest_checkpoint_first_seen_seconds: float | None = None
    """When the exporter first saw the newest checkpoint in ``storage_status_details``."""
    checkpointing_since_seconds: float | None = None
    """When the pipeline's process began its current stretch of Running or Paused (the statuses in which it takes
    automatic checkpoints), as the exporter saw it: a start, a restart, the end of a replay or bootstrap, or the
    exporter's first sight of it. None outside such a stretch."""
    checkpoint_status_checked_seconds: float | None = None
    """When the ``checkpoint_status`` answer in the snapshot was received (it is reused while it cannot change)."""
    sync_status_checked_seconds: float | None = None
    """When the ``sync_status`` answer in the snapshot was received (it is reused while it cannot change)."""


@dataclass(frozen=True, slots=True)
class Recalled:
    """What the exporter knew of a pipeline before this cycle's requests (:meth:`exporter.history.History.recall`):
    the poll plan's requests read it to ask only what can have changed (docs/feldera-api.md, "What changes what")."""

    enterprise: bool | None = None
    """The target's edition is an Enterprise one, which offers checkpoint sync and ``POST /checkpoint`` (from its
    last ``/v0/config``); None before one answered."""
    checkpoint_status_due: bool = True
    """No ``checkpoint_status`` answer is remembered, or it is older than ``poll.recheck_interval``."""
    checkpoint_deployment: str | None = None
    """``deployment_id`` when the remembered ``checkpoint_status`` answer was received."""
    checkpoint_incarnation: str | None = None
    """The process's ``incarnation_uuid`` (from ``/stats``) then."""
    checkpoint_runtime_status: str | None = None
    """``deployment_runtime_status`` then (what tells a new process while ``/stats`` cannot, e.g. Initializing)."""
    checkpoint_newest: str | None = None
    """The newest checkpoint in storage then."""
    checkpoint_busy: bool = False
    """``checkpoint_activity`` was ``delayed`` or ``in_progress`` in the previous cycle."""
    sync_status_due: bool = True
    """As ``checkpoint_status_due``, for ``checkpoint/sync_status``."""
    fault_tolerance_paused: bool = False
    """The ``runtime_config`` request failed lately and waits before it is asked again (:mod:`exporter.history`)."""
    sync_deployment: str | None = None
    sync_incarnation: str | None = None


@dataclass(frozen=True, slots=True)
class PipelineSnapshot:
    pipeline: Pipeline
    checkpoint_status: CheckpointStatus | None = None
    stats: ControllerStatus | None = None
    sync_status: CheckpointSyncStatus | None = None
    connector_details: Mapping[str, InputEndpointStatus | OutputEndpointStatus] = field(default_factory=_no_details)
    """Connectors with their error lists (only when that opt-in collector is on), keyed by endpoint name: from
    ``stats?include_connector_errors=true``, or one request per connector from servers without it."""
    fault_tolerance: FaultTolerance | None = None
    """What ``runtime_config`` says about checkpoints, for the pipeline's current ``version`` (asked once per
    version, then reused); None while unknown."""
    recalled: Recalled = field(default_factory=Recalled)
    """What history knew before this cycle's requests (for the plan; not shown)."""
    failed: frozenset[str] = frozenset()
    """The fields whose request failed this cycle (for history; not shown)."""
    derived: Derived = field(default_factory=Derived)

    @property
    def name(self) -> str:
        return self.pipeline.name


@dataclass(frozen=True, slots=True)
class RequestTimings:
    """Frozen histogram of API request durations for one endpoint (operation)."""

    endpoint: str
    bounds: tuple[float, ...]
    """Upper bounds of the buckets, ascending, without +Inf."""
    counts: tuple[int, ...]
    """Cumulative count per bound (``len(bounds)``), as Prometheus buckets are."""
    count: int = 0
    total_seconds: float = 0.0


@dataclass(frozen=True, slots=True, order=True)
class RequestCount:
    """API requests to one endpoint (operation) that ended with one code, since start."""

    endpoint: str
    code: str
    """HTTP status, ``timeout``, ``connection_error`` or ``invalid_response``."""
    count: int


@dataclass(frozen=True, slots=True)
class ExporterStats:
    """The exporter's own view of one target, frozen at the end of the cycle (self-metrics)."""

    poll_duration_seconds: float | None = None
    last_success_timestamp_seconds: float | None = None
    polls: tuple[tuple[str, int], ...] = ()
    """(result, count) since start, result = success | failure."""
    cut_off: int = 0
    """Cycles cut off at ``poll.cycle_deadline`` since start."""
    requests: tuple[RequestCount, ...] = ()
    timings: tuple[RequestTimings, ...] = ()


@dataclass(frozen=True, slots=True)
class PipelineSyncReport:
    pipeline: str
    every: float
    requests: tuple[tuple[str, int], ...]
    """Count per result, in ``exporter.sidecar.sync.RESULTS`` order."""
    failures: tuple[tuple[str, int], ...]
    """Count per reason, in ``exporter.sidecar.sync.FAILURE_REASONS`` order."""
    last_failures: tuple[tuple[str, float], ...]
    """When the newest failed sync of each reason was requested, for the reasons counted at least once."""
    last_request: float | None
    last_confirmed: float | None
    awaiting_confirmation: bool


@dataclass(frozen=True, slots=True)
class SyncReport:
    """Scheduled checkpoint sync of one target (:mod:`exporter.sidecar.sync`)."""

    enterprise_only: bool
    pipelines: tuple[PipelineSyncReport, ...] = ()


@dataclass(frozen=True, slots=True)
class WatchReport:
    name: str
    pipeline: str
    status: str
    registered_at: float
    age: float
    last_checked: float | None
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class ResetReport:
    """Reset watches of one target (:mod:`exporter.sidecar.resets`)."""

    watches: tuple[WatchReport, ...] = ()


LIMITS = ("pipelines", "connectors")
"""What a target's answers may go past: ``targets[].max_pipelines`` and ``targets[].max_connectors``."""


@dataclass(frozen=True, slots=True)
class TargetSnapshot:
    """One monitored Feldera instance."""

    name: str
    labels: tuple[tuple[str, str], ...] = ()
    """Extra static labels from the target's config, added to every series of this target."""
    up: bool = False
    """The pipeline list call succeeded this cycle. When False, ``pipelines`` is empty."""
    pipelines: tuple[PipelineSnapshot, ...] = ()
    cluster: ClusterHealth | None = None
    server: Configuration | None = None
    """``GET /v0/config`` of this cycle (None when the call failed or the ``server`` group is off)."""
    sync: SyncReport | None = None
    """Scheduled checkpoint sync (None: no schedule configured, or the feature failed this cycle)."""
    resets: ResetReport | None = None
    """Reset watches (None only when the feature failed this cycle)."""
    exporter: ExporterStats = field(default_factory=ExporterStats)
    """Self-metrics of this target (request counts, poll timings), frozen for this cycle."""
    dropped_pipelines: frozenset[str] = frozenset()
    """Pipelines left out of this cycle's series because translating them failed (set by
    :func:`exporter.metrics.families`, which also removes them from ``pipelines``)."""
    over_limit: frozenset[str] = frozenset()
    """The limits (:data:`LIMITS`) this cycle's answers went past: ``pipelines`` (the list was refused, the target is
    down), ``connectors`` (stats of the remaining pipelines not asked)."""


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """One sample of the exporter process's standard metrics (:class:`exporter.promclient.ProcessStats`), e.g.
    ``process_resident_memory_bytes``; ``name`` is the sample name (a counter's with ``_total``)."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(frozen=True, slots=True)
class Snapshot:
    targets: tuple[TargetSnapshot, ...] = ()
    process: tuple[ProcessSample, ...] = ()
    """The exporter process's own ``process_*`` and ``python_*`` samples, read at the end of the cycle."""
    taken_at: float = 0.0
    shard: int = 0
    total_shards: int = 1
    state_file_errors: tuple[tuple[str, int], ...] = ()
    """Errors reading/writing the reset-watch state file since start, per operation (one file for all targets)."""
