"""Snapshot -> metric families, one module per Feldera object kind, all pure functions.

Every module listed in :data:`MODULES` declares ``SPECS`` (its :class:`~exporter.metrics.spec.MetricSpec`
values, the single source of truth for ``docs/metrics.md``) and ``add_samples(snapshot, out)``, which emits
samples for those specs into a shared :class:`~exporter.metrics.spec.FamilyBuilder`. No module does I/O. The
builder writes each family into a sink; :func:`families` gives it the renderer's
(:class:`~exporter.render.FamilyWriter`, which batches and compresses), the one place the two meet.

A module wraps each pipeline's samples in ``with out.pipeline(target, name):``. When translating a pipeline
raises (an answer the models let through but a module cannot represent, or a bug), :func:`families` logs one line
per target for such pipelines (how many, the first few) and translates the cycle again without them: their series
are absent for the cycle, every other pipeline's are served, and ``feldera_exporter_dropped_pipelines`` counts them
per target.

Which specs are emitted is decided once at start (:func:`emitted_specs`): the ``collectors:`` switches and the
``metrics:`` allow/deny lists. A family that is not emitted costs nothing per cycle: the builder has no sink for
it, so no line is formatted, and a request of the poll plan none of whose families is emitted is not made either
(:func:`fields_read` tells :func:`exporter.plan.make_plan` which snapshot fields the emitted families read).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterable

from exporter.config import MetricsSettings, Settings
from exporter.logsafe import clean
from exporter.metrics import (
    checkpoints,
    cluster,
    connectors,
    exporter,
    pipelines,
    process,
    resources,
    server,
    shipped,
    sidecar,
)
from exporter.metrics.spec import FamilyBuilder, MetricSpec
from exporter.render import Family, FamilyWriter
from exporter.snapshot import Snapshot

log = logging.getLogger(__name__)

MODULES = (exporter, process, pipelines, resources, checkpoints, connectors, cluster, server, sidecar)
"""Metric modules in documentation order; each has ``SPECS`` and ``add_samples(snapshot, out)``."""

ALL_SPECS: tuple[MetricSpec, ...] = tuple(spec for module in MODULES for spec in module.SPECS)

FAILED_EXAMPLES = 3
"""Pipelines named in the line that reports those left out of a target's cycle."""
SHOWN_NAME_CHARS = 60

GROUPS: tuple[str, ...] = tuple(dict.fromkeys(spec.group for spec in ALL_SPECS))
"""Collector groups in first-declared order (config ``collectors:`` keys)."""


def families(
    snapshot: Snapshot, disabled_groups: frozenset[str] = frozenset(), specs: Iterable[MetricSpec] = ALL_SPECS
) -> list[Family]:
    """The metric families of ``specs`` for ``snapshot``, sorted by name; specs of ``disabled_groups`` are not
    emitted."""
    specs = [spec for spec in specs if spec.group not in disabled_groups]
    out = _translate(snapshot, specs)
    failed: dict[tuple[str, str], BaseException] = {}
    while out.guard.failed:  # each pass leaves out at least one more pipeline, so this ends
        failed.update(out.guard.failed)
        snapshot = _without(snapshot, out.guard.failed)
        out = _translate(snapshot, specs)
    _log_failed(failed)
    return sorted(out.families(), key=lambda family: family.name)


def _log_failed(failed: dict[tuple[str, str], BaseException]) -> None:
    """One line per target for the pipelines left out (how many, and the first few): how many an answer can make
    fail is not the exporter's to decide."""
    by_target: dict[str, list[str]] = {}
    for (target, name), error in failed.items():
        shown = name if len(name) <= SHOWN_NAME_CHARS else f"{name[:SHOWN_NAME_CHARS]}..."
        by_target.setdefault(target, []).append(f"{clean(shown)}: {type(error).__name__}: {clean(error)}")
    for target, reasons in by_target.items():
        log.error(
            "%s: %d pipeline(s) left out of this cycle's series, translating them failed, e.g. %s",
            target,
            len(reasons),
            "; ".join(reasons[:FAILED_EXAMPLES]),
        )


def _translate(snapshot: Snapshot, specs: Iterable[MetricSpec]) -> FamilyBuilder[Family]:
    out = FamilyBuilder(specs, FamilyWriter)
    for module in MODULES:
        module.add_samples(snapshot, out)
    return out


def _without(snapshot: Snapshot, failed: Iterable[tuple[str, str]]) -> Snapshot:
    """``snapshot`` with the ``(target, pipeline)`` pairs removed and recorded in ``dropped_pipelines``."""
    by_target: dict[str, set[str]] = {}
    for target_name, name in failed:
        by_target.setdefault(target_name, set()).add(name)
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


def emitted_specs(settings: Settings) -> tuple[MetricSpec, ...]:
    """The specs a configuration emits: group not switched off under ``collectors:``, name allowed by
    ``metrics:``."""
    disabled = settings.collectors.disabled()
    return tuple(spec for spec in ALL_SPECS if spec.group not in disabled and settings.metrics.allows(spec.name))


def fields_read(settings: Settings) -> frozenset[str]:
    """The snapshot fields the families ``settings`` emits read (``MetricSpec.reads``): what the poll plan fills."""
    return frozenset(field for spec in emitted_specs(settings) for field in spec.reads)


def unmatched_patterns(metrics: MetricsSettings) -> list[str]:
    """Patterns of the allow/deny list that match no family (denying ``feldera_up`` does not count: it is always
    emitted)."""
    names = [spec.name for spec in ALL_SPECS]
    denyable = [name for name in names if name != "feldera_up"]
    return [
        pattern
        for patterns, candidates in ((metrics.allowlist, names), (metrics.denylist, denyable))
        for pattern in patterns
        if not any(re.fullmatch(pattern, name) for name in candidates)
    ]


def selection_warnings(settings: Settings) -> list[str]:
    """What an operator should hear about the metric selection: patterns that match nothing, and families the
    shipped alert rules or dashboards use that this configuration does not emit."""
    warnings = []
    for pattern in unmatched_patterns(settings.metrics):
        warnings.append(f"metrics: pattern {pattern!r} matches no metric family (see docs/metrics.md)")
    emitted = {spec.name for spec in emitted_specs(settings)}
    for what, used in (("alert rules", shipped.RULES), ("dashboards", shipped.DASHBOARDS)):
        missing = sorted(used - emitted)
        if missing:
            warnings.append(
                f"the shipped {what} use metric families this configuration does not emit: " + ", ".join(missing)
            )
    return warnings
