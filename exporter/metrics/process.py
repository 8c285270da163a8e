"""The exporter process's standard metrics, as every Prometheus exporter serves them (prometheus_client's
``ProcessCollector``, ``PlatformCollector`` and ``GCCollector``, read once per cycle by :mod:`exporter.process`).

Names, types and help are prometheus_client's own (a test compares them with what its collectors produce), so
dashboards and alerts written for any Python exporter work unchanged. Sample output::

    process_resident_memory_bytes 5.2953088e+07
    process_cpu_seconds_total 12.5
    process_open_fds 23.0
    python_info{implementation="CPython",major="3",minor="11",patchlevel="7",version="3.11.7"} 1.0
    python_gc_collections_total{generation="2"} 4.0
"""

from __future__ import annotations

from exporter.metrics.spec import FamilyBuilder, MetricSpec, MetricType
from exporter.snapshot import Snapshot

GROUP = "process"


def _process(name: str, type_: MetricType, help_: str, *, labels: tuple[str, ...] = (), unit: str = "") -> MetricSpec:
    return MetricSpec(name, type_, help_, labels=labels, group=GROUP, per_pipeline=False, per_target=False, unit=unit)


SPECS: tuple[MetricSpec, ...] = (
    _process("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", unit="bytes"),
    _process("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", unit="bytes"),
    _process(
        "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", unit="seconds"
    ),
    _process(
        "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", unit="seconds"
    ),
    _process("process_open_fds", "gauge", "Number of open file descriptors."),
    _process("process_max_fds", "gauge", "Maximum number of open file descriptors."),
    _process(
        "python_info",
        "gauge",
        "Python platform information",
        labels=("implementation", "major", "minor", "patchlevel", "version"),
    ),
    _process("python_gc_objects_collected_total", "counter", "Objects collected during gc", labels=("generation",)),
    _process(
        "python_gc_objects_uncollectable_total",
        "counter",
        "Uncollectable objects found during GC",
        labels=("generation",),
    ),
    _process(
        "python_gc_collections_total",
        "counter",
        "Number of times this generation was collected",
        labels=("generation",),
    ),
)

_BY_NAME = {spec.name: spec for spec in SPECS}


def add_samples(snapshot: Snapshot, out: FamilyBuilder) -> None:
    for sample in snapshot.process:
        spec = _BY_NAME.get(sample.name)
        if spec is not None:  # a sample a newer prometheus_client adds is left out until it is declared here
            out.add(spec, (), sample.value, **dict(sample.labels))
