"""Metric definitions as data, and the builder every metric module uses to emit samples.

Each metric module declares its metrics once as :class:`MetricSpec` values (the single source of truth for
``docs/metrics.md``) and emits samples through a :class:`FamilyBuilder`, which adds the identity labels
(target labels, ``pipeline_name``) so no module repeats them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from exporter.render import BATCH_LINES, Family, FamilyWriter, escape_label_value, format_value, label_pairs

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


class PipelineGuard:
    """``with out.pipeline(target, name):`` around one pipeline's samples in a metric module: an exception there
    is recorded in :attr:`failed` (first one per pipeline) and swallowed, so the module goes on with the next
    pipeline; :func:`exporter.metrics.families` then translates again without the failed ones. One object serves
    every pipeline (entering it costs an attribute store, not an allocation)."""

    __slots__ = ("failed", "key")

    def __init__(self) -> None:
        self.failed: dict[tuple[str, str], BaseException] = {}
        self.key: tuple[str, str] = ("", "")

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _tb: object) -> bool:
        if error is None or not isinstance(error, Exception):
            return False
        self.failed.setdefault(self.key, error)
        return True


class FamilyBuilder:
    """Collects samples for a set of specs as exposition lines, one :class:`FamilyWriter` per spec.

    Families are emitted in spec order; a spec with no samples is still emitted (HELP/TYPE only) so the
    exposition's shape does not depend on the data. Samples for a spec the builder was not given (its
    collector group is switched off) are dropped; :meth:`wants` lets a module skip that work up front.

    This runs for every series every cycle (~1.6 M at 10,000 pipelines), so the identity labels of a pipeline
    are escaped once and reused while consecutive calls pass the same identity tuple, and a status set's
    label suffixes are prepared once per spec.
    """

    def __init__(self, specs: Iterable[MetricSpec]) -> None:
        self._writers: dict[str, FamilyWriter] = {}
        self._specs: dict[str, MetricSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ValueError(f"metric {spec.name} declared twice")
            self._specs[spec.name] = spec
            self._writers[spec.name] = FamilyWriter(spec.family_name, spec.type, spec.help)
        self._groups = frozenset(spec.group for spec in self._specs.values())
        self._label_names = {name: frozenset(spec.labels) for name, spec in self._specs.items()}
        self._states = {
            name: tuple((state, f'status="{escape_label_value(state)}"') for state in spec.all_states)
            for name, spec in self._specs.items()
        }
        self._identity: Labels | None = None
        self._identity_text = ""
        self._label_texts: dict[tuple[tuple[str, str], ...], str] = {}
        self.guard = PipelineGuard()

    def pipeline(self, target: str, pipeline: str) -> PipelineGuard:
        """The guard for one pipeline's samples (see :class:`PipelineGuard`)."""
        self.guard.key = (target, pipeline)
        return self.guard

    def wants(self, group: str) -> bool:
        """Whether any spec of collector ``group`` is emitted by this builder."""
        return group in self._groups

    def _labels(self, identity: Labels, labels: dict[str, str]) -> str:
        """Escaped ``name="value",...`` for identity plus own labels; cached while the identity stays the same
        (a connector's labels repeat for each of its ~15 metrics)."""
        if identity is not self._identity:
            self._identity = identity
            self._identity_text = label_pairs(identity)
            self._label_texts.clear()
        if not labels:
            return self._identity_text
        key = tuple(labels.items())
        text = self._label_texts.get(key)
        if text is None:
            own = label_pairs(key)
            text = self._label_texts[key] = f"{self._identity_text},{own}" if self._identity_text else own
        return text

    def add(self, spec: MetricSpec, identity: Labels, value: float, **labels: str) -> None:
        """Add one sample: ``identity`` labels first, then the spec's own labels (all must be given)."""
        writer = self._writers.get(spec.name)
        if writer is None:
            return
        if labels.keys() != self._label_names[spec.name]:
            raise ValueError(f"{spec.name}: labels {sorted(labels)} != declared {sorted(spec.labels)}")
        text = self._labels(identity, labels)
        lines = writer.lines
        lines.append(
            f"{spec.name}{{{text}}} {format_value(value)}\n" if text else f"{spec.name} {format_value(value)}\n"
        )
        if len(lines) >= BATCH_LINES:
            writer.spill()

    def add_optional(self, spec: MetricSpec, identity: Labels, value: float | None, **labels: str) -> None:
        """Add a sample only when the value is known (``None`` means unknown, which is not 0)."""
        if value is not None:
            self.add(spec, identity, value, **labels)

    def state_set(self, spec: MetricSpec, identity: Labels, current: str | None, **labels: str) -> None:
        """One-hot status set over ``spec.all_states``; an unknown ``current`` lights ``Other``.

        ``current`` of ``None`` means the status does not apply (e.g. runtime status of a stopped
        pipeline): every state is emitted at 0.
        """
        writer = self._writers.get(spec.name)
        if writer is None:
            return
        if {"status", *labels} != self._label_names[spec.name]:
            raise ValueError(f"{spec.name}: labels {sorted(labels)} + status != declared {sorted(spec.labels)}")
        if current is not None and current not in spec.states:
            current = OTHER
        text = self._labels(identity, labels)
        head = f"{spec.name}{{{text}," if text else f"{spec.name}{{"
        writer.lines += [
            f"{head}{status}}} {'1.0' if state == current else '0.0'}\n" for state, status in self._states[spec.name]
        ]
        if len(writer.lines) >= BATCH_LINES:
            writer.spill()

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
        writer = self._writers.get(spec.name)
        if writer is None:
            return
        text = self._labels(identity, labels)
        bucket = f"{spec.name}_bucket{{{text}," if text else f"{spec.name}_bucket{{"
        braces = f"{{{text}}}" if text else ""
        writer.lines += [
            *(
                f'{bucket}le="{_le(bound)}"}} {format_value(cumulative)}\n'
                for bound, cumulative in zip(bounds, cumulative_counts, strict=True)
            ),
            f'{bucket}le="+Inf"}} {format_value(count)}\n',
            f"{spec.name}_sum{braces} {format_value(total)}\n",
            f"{spec.name}_count{braces} {format_value(count)}\n",
        ]
        if len(writer.lines) >= BATCH_LINES:
            writer.spill()

    def families(self) -> Iterator[Family]:
        for writer in self._writers.values():
            yield writer.finish()


def _le(bound: float) -> str:
    return repr(float(bound))


def target_identity(name: str, labels: Sequence[tuple[str, str]]) -> Labels:
    return (("target", name), *labels)


def pipeline_identity(target: Labels, pipeline_name: str) -> Labels:
    return (*target, ("pipeline_name", pipeline_name))
