"""Metric definitions as data, and the builder every metric module uses to emit samples.

Each metric module declares its metrics once as :class:`MetricSpec` values (the single source of truth for
``docs/metrics.md``) and emits samples through a :class:`FamilyBuilder`, which adds the identity labels
(target labels, ``pipeline_name``) so no module repeats them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client.core import Metric

MetricType = Literal["gauge", "counter", "histogram"]

OTHER = "Other"
"""The fixed value a status set uses for an enum value this exporter does not know."""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One exposed metric family.

    ``name`` is the exposed sample name (counters end in ``_total``); ``labels`` are the labels specific to the
    metric, after the identity labels (``target`` + configured target labels, then ``pipeline_name`` when
    ``per_pipeline``). ``group`` is the collector group that can be switched off in config. ``states`` lists
    the values of a one-hot status set (``Other`` is appended automatically).
    """

    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()
    group: str = "pipelines"
    per_pipeline: bool = True
    per_target: bool = True
    """False for the few process-wide series without ``target`` (build and shard info); documentation only."""
    unit: str = ""
    states: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.type == "counter") != self.name.endswith("_total"):
            raise ValueError(f"{self.name}: only counters, and all counters, end in _total")

    @property
    def family_name(self) -> str:
        return self.name.removesuffix("_total") if self.type == "counter" else self.name

    @property
    def all_states(self) -> tuple[str, ...]:
        return (*self.states, OTHER) if self.states else ()


Labels = tuple[tuple[str, str], ...]


class FamilyBuilder:
    """Collects samples for a set of specs and turns them into prometheus_client metric families.

    Families are emitted in spec order; a spec with no samples is still emitted (HELP/TYPE only) so the
    exposition's shape does not depend on the data. Samples for a spec the builder was not given (its
    collector group is switched off) are dropped; :meth:`wants` lets a module skip that work up front.
    """

    def __init__(self, specs: Iterable[MetricSpec]) -> None:
        self._families: dict[str, Metric] = {}
        self._specs: dict[str, MetricSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ValueError(f"metric {spec.name} declared twice")
            self._specs[spec.name] = spec
            self._families[spec.name] = Metric(spec.family_name, spec.help, spec.type)
        self._groups = frozenset(spec.group for spec in self._specs.values())
        # per-spec facts looked up on every sample (this runs for millions of samples per cycle)
        self._label_names = {name: frozenset(spec.labels) for name, spec in self._specs.items()}
        self._states = {name: spec.all_states for name, spec in self._specs.items()}
        self._identity: Labels = ()
        self._identity_labels: dict[str, str] = {}

    def wants(self, group: str) -> bool:
        """Whether any spec of collector ``group`` is emitted by this builder."""
        return group in self._groups

    def add(self, spec: MetricSpec, identity: Labels, value: float, **labels: str) -> None:
        """Add one sample: ``identity`` labels first, then the spec's own labels (all must be given)."""
        family = self._families.get(spec.name)
        if family is None:
            return
        if labels.keys() != self._label_names[spec.name]:
            raise ValueError(f"{spec.name}: labels {sorted(labels)} != declared {sorted(spec.labels)}")
        family.add_sample(spec.name, {**self._identity_dict(identity), **labels}, float(value))

    def _identity_dict(self, identity: Labels) -> dict[str, str]:
        """``dict(identity)``, reused while consecutive calls pass the same identity tuple (one per pipeline)."""
        if identity is not self._identity:
            self._identity = identity
            self._identity_labels = dict(identity)
        return self._identity_labels

    def add_optional(self, spec: MetricSpec, identity: Labels, value: float | None, **labels: str) -> None:
        """Add a sample only when the value is known (``None`` means unknown, which is not 0)."""
        if value is not None:
            self.add(spec, identity, value, **labels)

    def state_set(self, spec: MetricSpec, identity: Labels, current: str | None, **labels: str) -> None:
        """One-hot status set over ``spec.all_states``; an unknown ``current`` lights ``Other``.

        ``current`` of ``None`` means the status does not apply (e.g. runtime status of a stopped
        pipeline): every state is emitted at 0.
        """
        family = self._families.get(spec.name)
        if family is None:
            return
        if {"status", *labels} != self._label_names[spec.name]:
            raise ValueError(f"{spec.name}: labels {sorted(labels)} + status != declared {sorted(spec.labels)}")
        if current is not None and current not in spec.states:
            current = OTHER
        base = {**self._identity_dict(identity), **labels}
        name = spec.name
        for state in self._states[name]:
            family.add_sample(name, {**base, "status": state}, 1.0 if state == current else 0.0)

    def add_histogram(
        self,
        spec: MetricSpec,
        identity: Labels,
        bounds: Sequence[float],
        cumulative_counts: Sequence[int],
        count: int,
        total: float,
        **labels: str,
    ) -> None:
        """Add one histogram series: ``_bucket`` per bound plus ``+Inf``, ``_sum`` and ``_count``."""
        if spec.type != "histogram":
            raise ValueError(f"{spec.name}: not a histogram")
        if labels.keys() != set(spec.labels):
            raise ValueError(f"{spec.name}: labels {sorted(labels)} != declared {sorted(spec.labels)}")
        family = self._families.get(spec.name)
        if family is None:
            return
        base = {**dict(identity), **labels}
        for bound, cumulative in zip(bounds, cumulative_counts, strict=True):
            family.add_sample(f"{spec.name}_bucket", {**base, "le": _le(bound)}, float(cumulative))
        family.add_sample(f"{spec.name}_bucket", {**base, "le": "+Inf"}, float(count))
        family.add_sample(f"{spec.name}_sum", base, float(total))
        family.add_sample(f"{spec.name}_count", base, float(count))

    def families(self) -> Iterator[Metric]:
        yield from self._families.values()


def _le(bound: float) -> str:
    return repr(float(bound))


def target_identity(name: str, labels: Sequence[tuple[str, str]]) -> Labels:
    return (("target", name), *labels)


def pipeline_identity(target: Labels, pipeline_name: str) -> Labels:
    return (*target, ("pipeline_name", pipeline_name))
