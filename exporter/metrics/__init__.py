"""Snapshot -> metric families, one module per Feldera object kind, all pure functions.

Every module listed in :data:`MODULES` declares ``SPECS`` (its :class:`~exporter.metrics.spec.MetricSpec`
values, the single source of truth for ``docs/metrics.md``) and ``add_samples(snapshot, out)``, which emits
samples for those specs into a shared :class:`~exporter.metrics.spec.FamilyBuilder`. No module does I/O.
"""

from __future__ import annotations

from exporter.metrics import checkpoints, cluster, connectors, exporter, pipelines, server, sidecar
from exporter.metrics.spec import FamilyBuilder, MetricSpec
from exporter.render import Family
from exporter.snapshot import Snapshot

MODULES = (exporter, pipelines, checkpoints, connectors, cluster, server, sidecar)
"""Metric modules in documentation order; each has ``SPECS`` and ``add_samples(snapshot, out)``."""

ALL_SPECS: tuple[MetricSpec, ...] = tuple(spec for module in MODULES for spec in module.SPECS)

GROUPS: tuple[str, ...] = tuple(dict.fromkeys(spec.group for spec in ALL_SPECS))
"""Collector groups in first-declared order (config ``collectors:`` keys)."""


def families(snapshot: Snapshot, disabled_groups: frozenset[str] = frozenset()) -> list[Family]:
    """All metric families for ``snapshot``, sorted by name; specs of ``disabled_groups`` are not emitted."""
    out = FamilyBuilder(spec for spec in ALL_SPECS if spec.group not in disabled_groups)
    for module in MODULES:
        module.add_samples(snapshot, out)
    return sorted(out.families(), key=lambda family: family.name)
