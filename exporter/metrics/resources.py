"""What a pipeline's process uses and whether it keeps up: memory, storage, output stall and input backlog, from
``global_metrics`` of ``GET /v0/pipelines/{p}/stats`` (docs/feldera-api.md, "What a pipeline process uses");
collector group ``resources``.

Sample output (``target`` label left out; the memory pressure set is abridged)::

    feldera_pipeline_memory_pressure{pipeline_name="orders",status="low"} 0.0
    feldera_pipeline_memory_pressure{pipeline_name="orders",status="high"} 1.0
    feldera_pipeline_memory_pressure_episodes_total{pipeline_name="orders"} 2.0
    feldera_pipeline_resident_memory_bytes{pipeline_name="orders"} 7.6e+09
    feldera_pipeline_storage_usage_bytes{pipeline_name="orders"} 2.1e+10
    feldera_pipeline_storage_limit_bytes{pipeline_name="orders"} 2.5e+10
    feldera_pipeline_output_stall_seconds{pipeline_name="orders"} 0.0
    feldera_pipeline_input_records_total{pipeline_name="orders"} 1.5e+06
    feldera_pipeline_input_buffered_records{pipeline_name="orders"} 12.0

Every family is the current process's: a stopped pipeline has none of them, a restarted one starts again (the
episode and input counters restart at 0 with the process, as Feldera's do). The storage limit comes from the
pipeline's ``runtime_config`` (``resources.storage_mb_max``), asked once per pipeline version while it is
deployed. The names follow Feldera's own ``/metrics`` (``memory_pressure``, ``storage_usage_bytes``,
``output_stall_seconds``, ``records_input_total``) so a dashboard can show either source.
"""

from __future__ import annotations

from exporter.metrics.spec import FamilyBuilder, Labels, MetricSpec, MetricType
from exporter.metrics.walk import each_pipeline
from exporter.models import MEMORY_PRESSURES
from exporter.snapshot import PipelineSnapshot, Snapshot

GROUP = "resources"
STATS = ("stats",)


def _spec(name: str, type_: MetricType, help: str, unit: str = "", states: tuple[str, ...] = ()) -> MetricSpec:
    return MetricSpec(
        name, type_, help, labels=("status",) if states else (), group=GROUP, unit=unit, states=states, reads=STATS
    )


MEMORY_PRESSURE = _spec(
    "feldera_pipeline_memory_pressure",
    "gauge",
    "Memory pressure of the pipeline process, one-hot: low below 85 % of its memory limit (max_rss), moderate "
    "85-90 %, high 90-95 %, critical above (high and critical are held until it falls two levels); always low "
    "without a limit.",
    states=MEMORY_PRESSURES,
)
MEMORY_PRESSURE_EPISODES = _spec(
    "feldera_pipeline_memory_pressure_episodes_total",
    "counter",
    "Times the memory pressure of the current pipeline process rose to high or critical (memory_pressure_epoch).",
)
RESIDENT_MEMORY = _spec(
    "feldera_pipeline_resident_memory_bytes", "gauge", "Resident set size of the pipeline process.", "bytes"
)
STORAGE_USAGE = _spec(
    "feldera_pipeline_storage_usage_bytes", "gauge", "Storage the pipeline process uses now.", "bytes"
)
OUTPUT_STALL = _spec(
    "feldera_pipeline_output_stall_seconds",
    "gauge",
    "How long the pipeline has been stalled because output connectors' buffers are full (their queued records "
    "at the connector's maximum); 0 when it is not stalled.",
    "seconds",
)
STORAGE_LIMIT = MetricSpec(
    "feldera_pipeline_storage_limit_bytes",
    "gauge",
    "The storage the pipeline may use (runtime_config.resources.storage_mb_max, in 10^6-byte MB: the size of its "
    "volume on Enterprise); absent when not set.",
    group=GROUP,
    unit="bytes",
    reads=("fault_tolerance",),
)
INPUT_RECORDS = _spec(
    "feldera_pipeline_input_records_total",
    "counter",
    "Records the pipeline process received from all its input connectors.",
)
INPUT_BUFFERED = _spec(
    "feldera_pipeline_input_buffered_records",
    "gauge",
    "Records the input connectors hold that the pipeline has not processed yet.",
)

SPECS: tuple[MetricSpec, ...] = (
    MEMORY_PRESSURE,
    MEMORY_PRESSURE_EPISODES,
    RESIDENT_MEMORY,
    STORAGE_USAGE,
    STORAGE_LIMIT,
    OUTPUT_STALL,
    INPUT_RECORDS,
    INPUT_BUFFERED,
)


def add_samples(snapshot: Snapshot, out: FamilyBuilder[object]) -> None:
    if out.wants(GROUP):
        each_pipeline(snapshot, out, lambda pid, snap: _pipeline_samples(out, pid, snap))


def _pipeline_samples(out: FamilyBuilder[object], pid: Labels, snap: PipelineSnapshot) -> None:
    if snap.fault_tolerance is not None:
        out.add_optional(STORAGE_LIMIT, pid, snap.fault_tolerance.storage_limit_bytes)
    stats = snap.stats
    if stats is None:
        return
    m = stats.global_metrics
    if m.memory_pressure is not None:
        out.state_set(MEMORY_PRESSURE, pid, m.memory_pressure)
    out.add_optional(MEMORY_PRESSURE_EPISODES, pid, m.memory_pressure_epoch)
    out.add_optional(RESIDENT_MEMORY, pid, m.rss_bytes)
    out.add_optional(STORAGE_USAGE, pid, m.storage_bytes)
    if m.output_stall_msecs is not None:
        out.add(OUTPUT_STALL, pid, m.output_stall_msecs / 1000)
    out.add_optional(INPUT_RECORDS, pid, m.total_input_records)
    out.add_optional(INPUT_BUFFERED, pid, m.buffered_input_records)
