"""The exporter process's standard metrics (``process_*``, ``python_*``), read once per poll cycle.

prometheus_client's own collectors (:class:`~prometheus_client.ProcessCollector`,
:class:`~prometheus_client.PlatformCollector`, :class:`~prometheus_client.GCCollector`) on a registry of the
exporter's own (never the library's global one); :meth:`ProcessStats.read` collects them into the cycle's
:class:`~exporter.snapshot.Snapshot` as plain samples, and :mod:`exporter.metrics.process` renders them with the
rest, so a scrape reads nothing from ``/proc`` either. Where a collector has nothing to read (``process_*`` off
Linux) its families are served without samples.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from exporter.snapshot import ProcessSample


class ProcessStats:
    def __init__(self) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self._registry)
        PlatformCollector(registry=self._registry)
        GCCollector(registry=self._registry)

    def read(self) -> tuple[ProcessSample, ...]:
        return tuple(
            ProcessSample(sample.name, tuple(sample.labels.items()), sample.value)
            for family in self._registry.collect()
            for sample in family.samples
        )
