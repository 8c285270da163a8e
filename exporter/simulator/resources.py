"""What a simulated pipeline process uses and whether it keeps up: memory (resident set and memory pressure), storage
and output stalls, as ``global_metrics`` of ``GET .../stats`` and the pipeline's own ``/metrics`` report them; and
their control API.

As upstream:

- Memory pressure is the process's resident set against the circuit's memory limit
  (:func:`exporter.simulator.runtime.max_rss_bytes`): ``low`` below 85 %, ``moderate`` from 85 %, ``high`` from
  90 %, ``critical`` from 95 %, always ``low`` without a limit (``crates/feldera-types/src/memory_pressure.rs``;
  ``crates/dbsp/src/circuit/runtime.rs``, ``raw_memory_pressure``). The level reported is held: ``high`` until the
  raw level is ``low``, ``critical`` until it is ``moderate`` or ``low``; ``memory_pressure_epoch`` counts the
  rises from below ``high`` to ``high`` or ``critical`` (the once-a-second loop in ``runtime.rs``). Upstream
  re-reads the resident set every second; here it changes when the control API sets it, and the level follows at
  once. A new process starts at ``low``, epoch 0, and takes the pipeline's baseline resident set (starting above
  90 % is an episode).
- ``output_stall_msecs`` is how long the current stall has lasted, 0 when there is none; ``/metrics`` also counts
  the stalls' total (``crates/adapters/src/controller/stats.rs``, ``update_output_stall_start``,
  ``current_output_stall_duration``, ``total_output_stall_duration``). While stalled the circuit takes no step:
  outputs send nothing, the output connector whose buffer is full shows ``queued_records`` at its maximum (default
  :data:`~exporter.simulator.connectors.MAX_QUEUED_RECORDS`: ``ExternalGlobalControllerMetrics::output_stall_msecs``),
  and inputs keep receiving into their buffers until those are full (:mod:`exporter.simulator.connectors`).
- ``storage_bytes`` is the storage in use now: here the stored checkpoints' sizes, unless the control API sets it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from exporter.models import MEMORY_PRESSURES
from exporter.simulator.runtime import max_rss_bytes

if TYPE_CHECKING:
    from exporter.simulator.clock import Clock
    from exporter.simulator.connectors import Connector
    from exporter.simulator.model import World

DEFAULT_RSS_BYTES = 256 * 1024 * 1024
THRESHOLDS = ((0.95, "critical"), (0.90, "high"), (0.85, "moderate"))


def raw_pressure(rss: int, limit: int | None) -> str:
    """The level the resident set alone gives (``raw_memory_pressure``)."""
    if limit is None:
        return "low"
    for fraction, level in THRESHOLDS:
        if rss >= fraction * limit:
            return level
    return "low"


def held_pressure(previous: str, current: str) -> str:
    """The level reported after ``previous`` when the resident set gives ``current`` (the hysteresis of the
    memory-pressure loop in ``crates/dbsp/src/circuit/runtime.rs``)."""
    if previous == "high":
        return "critical" if current == "critical" else "low" if current == "low" else "high"
    if previous == "critical":
        return "critical" if current in ("critical", "high") else current
    return current


def _rank(level: str) -> int:
    return MEMORY_PRESSURES.index(level)


class PipelineResources:
    """The resource part of a pipeline (methods take the whole :class:`~exporter.simulator.model.Pipeline`)."""

    runtime_config: dict[str, Any]
    touch: Any
    stored_checkpoints: list[dict[str, Any]]

    if TYPE_CHECKING:  # the Pipeline's own methods

        def connectors(self) -> Iterable[Connector]: ...

        def advance(self, now: float) -> None: ...

    def _init_resources(self, rss_bytes: int | None, storage_bytes: int | None) -> None:
        self.base_rss = DEFAULT_RSS_BYTES if rss_bytes is None else rss_bytes
        self.storage_override = storage_bytes
        self.stall_total = 0.0
        self._new_process_resources()

    def _new_process_resources(self) -> None:
        """A new process: baseline resident set, memory pressure afresh, no stall."""
        self.memory_pressure = "low"
        self.memory_pressure_epoch = 0
        self.set_rss(self.base_rss)
        self.stall_started: float | None = None
        self.stall_total = 0.0

    @property
    def max_rss_bytes(self) -> int | None:
        return max_rss_bytes(self.runtime_config)

    def set_rss(self, rss: int) -> str:
        previous = self.memory_pressure
        level = held_pressure(previous, raw_pressure(rss, self.max_rss_bytes))
        if _rank(previous) < _rank("high") <= _rank(level):
            self.memory_pressure_epoch += 1
        self.rss = rss
        self.memory_pressure = level
        return level

    @property
    def storage_bytes(self) -> int:
        if self.storage_override is not None:
            return self.storage_override
        return sum(int(c["size"]) for c in self.stored_checkpoints)

    def stalled(self) -> bool:
        return self.stall_started is not None

    def stall_seconds(self, now: float) -> float:
        """The current stall's length (0 when none)."""
        return 0.0 if self.stall_started is None else max(0.0, now - self.stall_started)

    def stall_total_seconds(self, now: float) -> float:
        return self.stall_total + self.stall_seconds(now)

    def set_stall(self, endpoint: str | None, now: float) -> None:
        """Stall on output ``endpoint`` (its buffer full) from ``now``, or (``None``) end the stall."""
        self.advance(now)
        if endpoint is None:
            self.stall_total += self.stall_seconds(now)
            self.stall_started = None
        elif self.stall_started is None:
            self.stall_started = now
        for connector in self.connectors():
            connector.queue_full = connector.endpoint_name == endpoint
            if endpoint is None:
                connector.backlog = 0.0

    def resource_metrics(self, now: float) -> dict[str, Any]:
        """The resource keys of ``global_metrics``."""
        return {
            "rss_bytes": self.rss,
            "memory_pressure": self.memory_pressure,
            "memory_pressure_epoch": self.memory_pressure_epoch,
            "storage_bytes": self.storage_bytes,
            "output_stall_msecs": int(self.stall_seconds(now) * 1000),
        }


class ResourceControl:
    """Control API of pipeline resources (part of the simulator)."""

    world: World
    clock: Clock

    def set_memory(self, name: str, rss_mb: float) -> str:
        """The pipeline process's resident set is ``rss_mb`` x 10^6 bytes from now on; returns the memory pressure
        level it reports (held as upstream: see the module docstring)."""
        pipeline = self.world.get(name)
        if pipeline.incarnation is None:
            raise ValueError(f"pipeline {name!r} has no process")
        level = pipeline.set_rss(int(rss_mb * 1_000_000))
        pipeline.touch()
        return level

    def set_storage(self, name: str, storage_mb: float | None) -> None:
        """Storage in use is ``storage_mb`` x 10^6 bytes, or (``None``) the stored checkpoints' sizes."""
        pipeline = self.world.get(name)
        pipeline.storage_override = None if storage_mb is None else int(storage_mb * 1_000_000)
        pipeline.touch()

    def set_output_stall(self, name: str, endpoint: str | None) -> None:
        """The output connector ``endpoint`` (``view.connector``) has a full buffer: the pipeline stalls from now
        on; ``None`` ends the stall."""
        pipeline = self.world.get(name)
        if endpoint is not None:
            connector = pipeline.find_endpoint(endpoint)
            if connector.is_input:
                raise ValueError(f"{endpoint} is an input connector; only an output connector stalls a pipeline")
        pipeline.set_stall(endpoint, self.clock.now())
        pipeline.touch()
