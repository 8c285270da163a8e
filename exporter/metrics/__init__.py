"""Snapshot -> metric families, one module per Feldera object kind, all pure functions.

Every module listed in :data:`MODULES` declares ``SPECS`` (its :class:`~exporter.metrics.spec.MetricSpec`
values, the single source of truth for ``docs/metrics.md``) and ``add_samples(snapshot, out)``, which emits
samples for those specs into a shared :class:`~exporter.metrics.spec.FamilyBuilder`. No module does I/O.

A module wraps each pipeline's samples in ``with out.pipeline(target, name):``. When translating a pipeline
raises (an answer the models let through but a module cannot represent, or a bug), :func:`families` logs one line
per such pipeline and translates the cycle again without them: their series are absent for the cycle, every other
pipeline's are served, and ``feldera_exporter_dropped_pipelines`` counts them per target.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable

from exporter.logsafe import clean
from exporter.metrics import checkpoints, cluster, connectors, exporter, pipelines, process, server, sidecar
from exporter.metrics.spec import FamilyBuilder, MetricSpec
from exporter.render import Family
from exporter.snapshot import Snapshot

log = logging.getLogger(__name__)

MODULES = (exporter, process, pipelines, checkpoints, connectors, cluster, server, sidecar)
"""Metric modules in documentation order; each has ``SPECS`` and ``add_samples(snapshot, out)``."""

ALL_SPECS: tuple[MetricSpec, ...] = tuple(spec for module in MODULES for spec in module.SPECS)

GROUPS: tuple[str, ...] = tuple(dict.fromkeys(spec.group for spec in ALL_SPECS))
"""Collector groups in first-declared order (config ``collectors:`` keys)."""


def families(snapshot: Snapshot, disabled_groups: frozenset[str] = frozenset()) -> list[Family]:
    """All metric families for ``snapshot``, sorted by name; specs of ``disabled_groups`` are not emitted."""
    specs = [spec for spec in ALL_SPECS if spec.group not in disabled_groups]
    out = _translate(snapshot, specs)
    while out.guard.failed:  # each pass leaves out at least one more pipeline, so this ends
        for (target, name), error in out.guard.failed.items():
            log.error(
                "%s/%s: series left out this cycle, translating the pipeline failed: %s: %s",
                target,
                clean(name),
                type(error).__name__,
                clean(error),
            )
        snapshot = _without(snapshot, out.guard.failed)
        out = _translate(snapshot, specs)
    return sorted(out.families(), key=lambda family: family.name)


def _translate(snapshot: Snapshot, specs: Iterable[MetricSpec]) -> FamilyBuilder:
    out = FamilyBuilder(specs)
    for module in MODULES:
        module.add_samples(snapshot, out)
    return out


def _without(snapshot: Snapshot, failed: Iterable[tuple[str, str]]) -> Snapshot:
    """``snapshot`` with the ``(target, pipeline)`` pairs removed and recorded in ``dropped_pipelines``."""
    by_target: dict[str, set[str]] = {}
    for target, name in failed:
        by_target.setdefault(target, set()).add(name)
    targets = []
    for target in snapshot.targets:
        names = by_target.get(target.name)
        if names:
            names |= target.dropped_pipelines
            target = dataclasses.replace(
                target,
                pipelines=tuple(p for p in target.pipelines if p.pipeline.name not in names),
                dropped_pipelines=frozenset(names),
            )
        targets.append(target)
    return dataclasses.replace(snapshot, targets=tuple(targets))
