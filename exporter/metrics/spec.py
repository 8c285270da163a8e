"""Metric definitions as data, and the builder every metric module uses to emit samples.

Each metric module declares its metrics once as :class:`MetricSpec` values (the single source of truth for
``docs/metrics.md``) and emits samples through a :class:`FamilyBuilder`, which adds the identity labels
(target labels, ``pipeline_name``) so no module repeats them, and writes each sample as one exposition line
(the format both Prometheus formats share: label escaping, value text, bounded label values).

The builder hands each family's lines to a :class:`FamilySink` and knows nothing else about what happens to
them: the exporter's sink (:class:`exporter.render.FamilyWriter`, chosen in :func:`exporter.metrics.families`)
batches and compresses them; a test can pass a list.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

from exporter.logsafe import clean
from exporter.promclient import go_float

MetricType = Literal["gauge", "counter", "histogram"]

OTHER = "Other"
"""The fixed value a status set uses for an enum value this exporter does not know."""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One exposed metric family.

    ``name`` is the exposed sample name (counters end in ``_total``); ``labels`` are the labels specific to the
    metric, after the identity labels (``target`` + configured target labels, then ``pipeline_name`` when
    ``per_pipeline``). ``group`` is the collector group that can be switched off in config. ``states`` lists the
    values of a one-hot status set (``Other`` is appended automatically), in the label ``state_label``. ``reads``
    names the snapshot fields filled by a request of the poll plan that the family is read from
    (:mod:`exporter.plan`): a request none of whose families is emitted is not made. The pipeline list, asked every
    cycle, is not named.
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
    state_label: str = "status"
    reads: tuple[str, ...] = ()

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


# ---- the sample line format ----------------------------------------------------------------------------------

MAX_LABEL_VALUE_BYTES = 1024
"""Longest label value served, in bytes of UTF-8: what Prometheus' ``label_value_length_limit`` counts (Go's
``len``: a scrape with one longer value fails as a whole, ``up`` 0). Feldera sets no limit on names; a longer value
(a hostile or broken answer) keeps its first 1015 bytes (cut before a character, never inside one) plus ``~`` and 8
hex digits of its SHA-256, so distinct values stay distinct series and no scrape is refused by a
``label_value_length_limit`` of 1024 or more."""
_HASH_CHARS = 8
_KEPT_BYTES = MAX_LABEL_VALUE_BYTES - _HASH_CHARS - 1
_SURROGATE = re.compile("[\ud800-\udfff]")


def escape_label_value(value: str) -> str:
    """Label value escaping, the same in both formats: backslash, newline, double quote."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def format_value(value: float) -> str:
    """A sample value as prometheus_client writes it (Go-style float: ``1.0``, ``+Inf``, ``1.5e+09``)."""
    if type(value) is int and -(10**15) < value < 1_000_000:  # most samples: counts and flags from JSON
        return f"{value}.0"
    return go_float(value)


def label_value(value: str) -> str:
    """A string from outside as a servable label value: valid UTF-8 and at most :data:`MAX_LABEL_VALUE_BYTES` bytes
    of it. Each surrogate code point (a lone ``"\\ud800"`` passes the standard-library JSON parser, and UTF-8
    cannot encode it) becomes U+FFFD; a longer value is cut as :data:`MAX_LABEL_VALUE_BYTES` says.

    >>> label_value("ok\\ud800") == "ok\\ufffd", len(label_value("x" * 5000)), label_value("x" * 5000)[-9:]
    (True, 1024, '~c59d3c04')
    >>> len(label_value("\u20ac" * 1000).encode()), label_value("\u20ac" * 1000).count("\u20ac")
    (1023, 338)
    """
    if value.isascii():
        if len(value) <= MAX_LABEL_VALUE_BYTES:
            return value
        encoded = value.encode()
    else:
        value = _SURROGATE.sub("\ufffd", value)
        if len(value) * 4 <= MAX_LABEL_VALUE_BYTES:  # short enough whatever its characters
            return value
        encoded = value.encode()
        if len(encoded) <= MAX_LABEL_VALUE_BYTES:
            return value
    digest = hashlib.sha256(encoded).hexdigest()[:_HASH_CHARS]
    return f"{encoded[:_KEPT_BYTES].decode(errors='ignore')}~{digest}"


MAX_ERROR_TEXT_LENGTH = 256
"""Longest error text served in an ``error`` label (``*_info`` families that alert descriptions quote), in
characters. Feldera stores up to 8 KiB per connector error; a longer text keeps its start and its end (an error
chain leads with the context and ends with the root cause, as Feldera's own ``bound_error_message`` keeps both)."""
_ELLIPSIS = " … "


def error_text(message: str) -> str:
    """An error message from Feldera as a label value: secrets redacted and control characters escaped
    (:func:`exporter.logsafe.clean`, as for the log), at most :data:`MAX_ERROR_TEXT_LENGTH` characters.

    >>> error_text("AccessDenied: key apikey:0123abcd rejected")
    'AccessDenied: key apikey:[REDACTED] rejected'
    >>> shortened = error_text("context: " + "x" * 300 + " root cause")
    >>> len(shortened), shortened[:12], shortened[-11:]
    (256, 'context: xxx', ' root cause')
    """
    text = clean(message)
    if len(text) <= MAX_ERROR_TEXT_LENGTH:
        return text
    tail = (MAX_ERROR_TEXT_LENGTH - len(_ELLIPSIS)) // 2
    head = MAX_ERROR_TEXT_LENGTH - len(_ELLIPSIS) - tail
    return f"{text[:head]}{_ELLIPSIS}{text[-tail:]}"


def label_pairs(labels: Iterable[tuple[str, str]]) -> str:
    """``name="escaped value",...`` (no braces); values pass :func:`label_value` first."""
    return ",".join(f'{name}="{escape_label_value(label_value(value))}"' for name, value in labels)


# ---- the builder ---------------------------------------------------------------------------------------------

_Family_co = TypeVar("_Family_co", covariant=True)
FamilyT = TypeVar("FamilyT")


class FamilySink(Protocol[_Family_co]):
    """Where a :class:`FamilyBuilder` writes the samples of one family: complete lines (``name{labels} value\\n``),
    in order. Buffering, encoding and compressing them is the sink's business."""

    def append(self, line: str) -> None: ...

    def extend(self, lines: list[str]) -> None: ...

    def finish(self) -> _Family_co:
        """Called once, after the last line: the finished family."""
        ...


SinkFactory = Callable[[str, MetricType, str], FamilySink[FamilyT]]
"""Makes the sink of one family from its name (a counter's without ``_total``), type and help text."""


class FamilyBuilder(Generic[_Family_co]):
    """Writes samples for a set of specs as exposition lines, into one :class:`FamilySink` per spec.

    Families are finished in spec order; a spec with no samples is still finished (HELP/TYPE only) so the
    exposition's shape does not depend on the data. Samples for a spec the builder was not given (its
    collector group is switched off) are dropped; :meth:`wants` lets a module skip that work up front.

    A metric module takes a ``FamilyBuilder[object]``: it writes samples and never sees what the sink makes of
    them (the builder is covariant in the family type).

    This runs for every series every cycle (~1.3 M at 10,000 pipelines), so the identity labels of a pipeline
    are escaped once and reused while consecutive calls pass the same identity tuple, a status set's label
    suffixes are prepared once per spec, and one dictionary look-up per sample finds the sink and the declared
    labels.
    """

    def __init__(self, specs: Iterable[MetricSpec], sink: SinkFactory[_Family_co]) -> None:
        self._families: dict[str, tuple[FamilySink[_Family_co], frozenset[str], tuple[tuple[str, str], ...]]] = {}
        groups = set()
        for spec in specs:
            if spec.name in self._families:
                raise ValueError(f"metric {spec.name} declared twice")
            states = tuple((state, f'{spec.state_label}="{escape_label_value(state)}"') for state in spec.all_states)
            self._families[spec.name] = (sink(spec.family_name, spec.type, spec.help), frozenset(spec.labels), states)
            groups.add(spec.group)
        self._groups = frozenset(groups)
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
        family = self._families.get(spec.name)
        if family is None:
            return
        sink, names, _ = family
        if labels.keys() != names:
            raise ValueError(f"{spec.name}: labels {sorted(labels)} != declared {sorted(spec.labels)}")
        text = self._labels(identity, labels)
        sink.append(
            f"{spec.name}{{{text}}} {format_value(value)}\n" if text else f"{spec.name} {format_value(value)}\n"
        )

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
        sink, names, states = family
        if {spec.state_label, *labels} != names:
            raise ValueError(
                f"{spec.name}: labels {sorted(labels)} + {spec.state_label} != declared {sorted(spec.labels)}"
            )
        if current is not None and current not in spec.states:
            current = OTHER
        text = self._labels(identity, labels)
        head = f"{spec.name}{{{text}," if text else f"{spec.name}{{"
        sink.extend([f"{head}{status}}} {'1.0' if state == current else '0.0'}\n" for state, status in states])

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
        sink, _, _ = family
        text = self._labels(identity, labels)
        bucket = f"{spec.name}_bucket{{{text}," if text else f"{spec.name}_bucket{{"
        braces = f"{{{text}}}" if text else ""
        sink.extend(
            [
                *(
                    f'{bucket}le="{_le(bound)}"}} {format_value(cumulative)}\n'
                    for bound, cumulative in zip(bounds, cumulative_counts, strict=True)
                ),
                f'{bucket}le="+Inf"}} {format_value(count)}\n',
                f"{spec.name}_sum{braces} {format_value(total)}\n",
                f"{spec.name}_count{braces} {format_value(count)}\n",
            ]
        )

    def families(self) -> Iterator[_Family_co]:
        """Each spec's family, finished by its sink, in spec order."""
        for sink, _, _ in self._families.values():
            yield sink.finish()


def _le(bound: float) -> str:
    return repr(float(bound))


def target_identity(name: str, labels: Sequence[tuple[str, str]]) -> Labels:
    return (("target", name), *labels)


def pipeline_identity(target: Labels, pipeline_name: str) -> Labels:
    return (*target, ("pipeline_name", pipeline_name))
