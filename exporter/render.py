"""Serialise one cycle's metric families once, in both exposition formats; gzip on first demand.

``/metrics`` never renders: it picks bytes from the latest :class:`Rendered`, which the poll loop replaces as a
whole after each cycle (a single reference assignment, so a scrape sees one cycle or the next, never a mix).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Sequence

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector, CollectorRegistry

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_TYPE = OPENMETRICS_CONTENT_TYPE
GZIP_LEVEL = 6


class _Fixed(Collector):
    """Yields the families of one cycle; lives in a private registry that exists only to serialise them."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


class Rendered:
    """Exposition bytes of one cycle: text 0.0.4 and OpenMetrics 1.0, each plain or gzip (compressed lazily)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Fixed(tuple(families)))
        self._plain = {False: generate_latest(registry), True: generate_openmetrics(registry)}
        self._gzipped: dict[bool, bytes] = {}

    def body(self, *, openmetrics: bool, gzipped: bool) -> bytes:
        if not gzipped:
            return self._plain[openmetrics]
        cached = self._gzipped.get(openmetrics)
        if cached is None:
            cached = self._gzipped[openmetrics] = gzip.compress(self._plain[openmetrics], compresslevel=GZIP_LEVEL)
        return cached

    @staticmethod
    def content_type(*, openmetrics: bool) -> str:
        return OPENMETRICS_TYPE if openmetrics else TEXT_CONTENT_TYPE


def render(families: Iterable[Metric]) -> Rendered:
    return Rendered(families)
