"""What ``/metrics`` and the landing page serve: the latest part of each target beside the exporter's own.

Each target is polled on a cadence of its own (:class:`exporter.app.Exporter`); when its cycle ends, its part is
made once (:meth:`Served.target_part`, in a worker thread): its metric families, deflated, and its landing-page view.
Publishing (:meth:`Served.publish`) makes the exporter's own part (build and shard info, ``process_*``/``python_*``,
the reset-watch state file's errors: families without a ``target``, read now) and combines the parts by family
(:class:`exporter.render.Rendered`: no sample is compressed again), so a scrape sees each target's latest cycle and
never a mix within a target. The parts keep no pipeline data: a target's cycle is freed once its part is made, and
its next cycle is polled beside one cycle's data, not two (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from exporter.landing import LandingView, TargetView, target_view
from exporter.logsafe import clean
from exporter.metrics import families
from exporter.metrics.spec import MetricSpec
from exporter.promclient import ProcessStats
from exporter.render import Family, Rendered
from exporter.snapshot import Snapshot, TargetSnapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Part:
    """One target's latest cycle as served: its families (deflated) and its landing-page view."""

    families: list[Family]
    view: TargetView | None
    published_at: float


class Served:
    """The exposition and landing page of the latest parts; :meth:`publish` replaces one target's part."""

    def __init__(self, specs: Sequence[MetricSpec], shard: int, total_shards: int) -> None:
        self._specs: tuple[MetricSpec, ...] = ()
        self._target_specs: tuple[MetricSpec, ...] = ()
        self.select(specs)
        self._shard, self._total_shards = shard, total_shards
        self._process = ProcessStats()
        self._parts: dict[str, Part] = {}
        self._combining = asyncio.Lock()
        self.rendered = Rendered(self._own_part((), process=False))  # before any cycle: the families' headers
        self.landing = LandingView(shard=shard, total_shards=total_shards)

    def select(self, specs: Sequence[MetricSpec]) -> None:
        """Emit these specs from the next part on (a reload's metric selection)."""
        self._specs = tuple(specs)
        self._target_specs = tuple(spec for spec in specs if spec.per_target)

    def target_part(self, target: TargetSnapshot, published_at: float) -> Part:
        """The target's families and page view (CPU-bound: run it in a worker thread). A failure making the view is
        logged and the page keeps the target's previous one."""
        made = families(
            Snapshot(targets=(target,), shard=self._shard, total_shards=self._total_shards),
            specs=self._target_specs,
        )
        view: TargetView | None
        try:
            view = target_view(target)
        except Exception as exc:  # a bug in the page must not stop /metrics: the page keeps its older cycle and age
            log.error("landing page not updated this cycle: %s: %s", type(exc).__name__, clean(exc))
            previous = self._parts.get(target.name)
            view = previous.view if previous is not None else None
        return Part(made, view, published_at)

    def published(self) -> frozenset[str]:
        """The targets whose part is served."""
        return frozenset(self._parts)

    async def publish(
        self, order: Sequence[str], state_file_errors: Iterable[tuple[str, int]], part: tuple[str, Part] | None
    ) -> None:
        """Serve ``part`` (name, part) from now on beside the others, in ``order`` (the configured targets: a part
        of a target no longer configured is dropped), and the exporter's own part made now. One combination at a
        time, each of the parts current when it starts, so none is lost to another finishing first."""
        if part is not None:
            self._parts[part[0]] = part[1]
        for name in [name for name in self._parts if name not in order]:
            del self._parts[name]
        async with self._combining:
            parts = [self._parts[name] for name in order if name in self._parts]
            errors = tuple(state_file_errors)
            self.rendered, self.landing = await asyncio.to_thread(self._combine, parts, errors)

    def _combine(
        self, parts: list[Part], state_file_errors: tuple[tuple[str, int], ...]
    ) -> tuple[Rendered, LandingView]:
        rendered = Rendered(self._own_part(state_file_errors), *(part.families for part in parts))
        views = tuple(part.view for part in parts if part.view is not None)
        landing = LandingView(
            targets=views,
            taken_at=max((part.published_at for part in parts), default=0.0),
            shard=self._shard,
            total_shards=self._total_shards,
        )
        return rendered, landing

    def _own_part(self, state_file_errors: tuple[tuple[str, int], ...], process: bool = True) -> list[Family]:
        """Every emitted family's headers, and the samples of those without a target (``process``: the process's
        read now)."""
        snapshot = Snapshot(
            process=self._process.read() if process else (),
            shard=self._shard,
            total_shards=self._total_shards,
            state_file_errors=state_file_errors,
        )
        return families(snapshot, specs=self._specs)
