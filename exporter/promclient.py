"""Everything the exporter takes from prometheus_client, in one place (``tests/test_promclient.py`` pins it).

The exporter writes its exposition itself (:mod:`exporter.render`) and reaches the library only here:

* :func:`go_float`: sample values as the library writes them, with its ``prometheus_client.utils.floatToGoString``
  (not part of its public API: if it moves or changes, the pinning tests fail here, not in a scrape);
* :data:`OPENMETRICS_CONTENT_TYPE`: the OpenMetrics media type the library serves;
* :data:`PROCESS_FAMILIES` and :class:`ProcessStats`: the process's standard ``process_*``/``python_*`` families,
  read with the library's :class:`~prometheus_client.ProcessCollector`, :class:`~prometheus_client.PlatformCollector`
  and :class:`~prometheus_client.GCCollector` on a registry of the exporter's own (never the library's global
  one), once per poll cycle into the cycle's :class:`~exporter.snapshot.Snapshot` as plain samples, so a scrape
  reads nothing from ``/proc`` either. Their names, types and help are the library's (dashboards written for any
  Python exporter work unchanged); they are declared here because ``process_*`` exist only where ``/proc`` does,
  and the documentation lists them everywhere. Where a collector has nothing to read, its families have no samples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST
from prometheus_client.utils import floatToGoString

from exporter.snapshot import ProcessSample

OPENMETRICS_CONTENT_TYPE: str = CONTENT_TYPE_LATEST


_FLOAT_TO_GO_STRING: Callable[[float], str] = floatToGoString  # the library leaves it unannotated


def go_float(value: float) -> str:
    """``value`` as Go and prometheus_client write a sample value: ``1.0``, ``1e+06``, ``+Inf``, ``NaN``."""
    return _FLOAT_TO_GO_STRING(value)


class ProcessFamily(NamedTuple):
    """One family prometheus_client's process, platform and GC collectors produce."""

    name: str
    """The sample name (a counter's with ``_total``), as served."""
    type: Literal["gauge", "counter"]
    help: str
    labels: tuple[str, ...] = ()
    unit: str = ""


PROCESS_FAMILIES: tuple[ProcessFamily, ...] = (
    ProcessFamily("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", unit="bytes"),
    ProcessFamily("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", unit="bytes"),
    ProcessFamily(
        "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", unit="seconds"
    ),
    ProcessFamily(
        "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", unit="seconds"
    ),
    ProcessFamily("process_open_fds", "gauge", "Number of open file descriptors."),
    ProcessFamily("process_max_fds", "gauge", "Maximum number of open file descriptors."),
    ProcessFamily(
        "python_info",
        "gauge",
        "Python platform information",
        labels=("implementation", "major", "minor", "patchlevel", "version"),
    ),
    ProcessFamily(
        "python_gc_objects_collected_total", "counter", "Objects collected during gc", labels=("generation",)
    ),
    ProcessFamily(
        "python_gc_objects_uncollectable_total",
        "counter",
        "Uncollectable objects found during GC",
        labels=("generation",),
    ),
    ProcessFamily(
        "python_gc_collections_total",
        "counter",
        "Number of times this generation was collected",
        labels=("generation",),
    ),
)


class ProcessStats:
    """The library's three standard collectors on a registry of their own; :meth:`read` once per cycle."""

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
