"""The exporter process's standard metrics, as every Prometheus exporter serves them (prometheus_client's
``ProcessCollector``, ``PlatformCollector`` and ``GCCollector``, read once per cycle by
:class:`exporter.promclient.ProcessStats`).

Names, types and help are prometheus_client's own (:data:`exporter.promclient.PROCESS_FAMILIES`, which a test
compares with what its collectors produce), so dashboards and alerts written for any Python exporter work
unchanged. Sample output::

    process_resident_memory_bytes 5.2953088e+07
    process_cpu_seconds_total 12.5
    process_open_fds 23.0
    python_info{implementation="CPython",major="3",minor="11",patchlevel="7",version="3.11.7"} 1.0
    python_gc_collections_total{generation="2"} 4.0
"""

from __future__ import annotations

from exporter.metrics.spec import FamilyBuilder, MetricSpec
from exporter.promclient import PROCESS_FAMILIES
from exporter.snapshot import Snapshot

GROUP = "process"

SPECS: tuple[MetricSpec, ...] = tuple(
    MetricSpec(
        family.name,
        family.type,
        family.help,
        labels=family.labels,
        group=GROUP,
        per_pipeline=False,
        per_target=False,
        unit=family.unit,
    )
    for family in PROCESS_FAMILIES
)

_BY_NAME = {spec.name: spec for spec in SPECS}


def add_samples(snapshot: Snapshot, out: FamilyBuilder[object]) -> None:
    for sample in snapshot.process:
        spec = _BY_NAME.get(sample.name)
        if spec is not None:  # a sample a newer prometheus_client adds is left out until promclient declares it
            out.add(spec, (), sample.value, **dict(sample.labels))
