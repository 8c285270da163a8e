"""The metric layer's builder on its own: samples become exposition lines in a plain list sink, no renderer."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from exporter.metrics.spec import FamilyBuilder, MetricSpec, pipeline_identity, target_identity


class ListSink(list[str]):
    """A :class:`~exporter.metrics.spec.FamilySink` that keeps the lines, and its family's metadata."""

    def __init__(self, name: str, type_: str, help_: str) -> None:
        super().__init__()
        self.name, self.type, self.help = name, type_, help_

    def finish(self) -> ListSink:
        return self


UP = MetricSpec("x_up", "gauge", "Up.", per_pipeline=False)
LAG = MetricSpec("x_lag_seconds", "gauge", "Lag.", labels=("endpoint",))
ERRORS = MetricSpec("x_errors_total", "counter", "Errors.", labels=("endpoint",), group="connectors")
STATUS = MetricSpec("x_status", "gauge", "Status.", labels=("status",), states=("Running", "Paused"))
DURATION = MetricSpec("x_duration_seconds", "histogram", "Duration.", labels=("endpoint",), per_pipeline=False)
SPECS = (UP, LAG, ERRORS, STATUS, DURATION)

TARGET = target_identity("prod", (("region", "eu"),))
PIPELINE = pipeline_identity(TARGET, 'say "hi"\\now')


def _builder(specs: tuple[MetricSpec, ...] = SPECS) -> FamilyBuilder[ListSink]:
    return FamilyBuilder(specs, ListSink)


def test_families_come_from_the_sink_in_spec_order_with_their_metadata_even_when_empty() -> None:
    families = list(_builder().families())
    assert [(f.name, f.type, f.help) for f in families] == [
        ("x_up", "gauge", "Up."),
        ("x_lag_seconds", "gauge", "Lag."),
        ("x_errors", "counter", "Errors."),  # the family of a counter is named without _total
        ("x_status", "gauge", "Status."),
        ("x_duration_seconds", "histogram", "Duration."),
    ]
    assert all(family == [] for family in families)


def test_samples_are_lines_with_identity_labels_first_escaped() -> None:
    out = _builder()
    out.add(UP, TARGET, 1)
    out.add(ERRORS, PIPELINE, 3, endpoint="t.c")
    out.add(ERRORS, PIPELINE, 1.5e9, endpoint="t.d")
    out.add_optional(LAG, PIPELINE, None, endpoint="t.c")  # unknown is not 0: no sample
    out.add_optional(LAG, PIPELINE, 0.25, endpoint="t.c")
    up, lag, errors, _, _ = out.families()
    assert up == ['x_up{target="prod",region="eu"} 1.0\n']
    pid = 'target="prod",region="eu",pipeline_name="say \\"hi\\"\\\\now"'
    assert errors == [
        f'x_errors_total{{{pid},endpoint="t.c"}} 3.0\n',
        f'x_errors_total{{{pid},endpoint="t.d"}} 1.5e+09\n',
    ]
    assert lag == [f'x_lag_seconds{{{pid},endpoint="t.c"}} 0.25\n']


def test_a_status_set_lights_one_state_and_other_for_an_unknown_one() -> None:
    out = _builder()
    out.state_set(STATUS, (), "Paused")
    out.state_set(STATUS, (), "Exploded")
    out.state_set(STATUS, (), None)  # does not apply: every state 0
    status = list(out.families())[3]
    values = [line.rsplit(" ", 1)[1].strip() for line in status]
    assert [line.split(" ")[0] for line in status[:3]] == [
        'x_status{status="Running"}',
        'x_status{status="Paused"}',
        'x_status{status="Other"}',
    ]
    assert values == ["0.0", "1.0", "0.0", "0.0", "0.0", "1.0", "0.0", "0.0", "0.0"]


def test_a_histogram_is_cumulative_buckets_then_sum_and_count() -> None:
    out = _builder()
    out.add_histogram(DURATION, TARGET, (0.1, 1), (2, 5), 6, 3.5, endpoint="stats")
    assert list(out.families())[4] == [
        'x_duration_seconds_bucket{target="prod",region="eu",endpoint="stats",le="0.1"} 2.0\n',
        'x_duration_seconds_bucket{target="prod",region="eu",endpoint="stats",le="1.0"} 5.0\n',
        'x_duration_seconds_bucket{target="prod",region="eu",endpoint="stats",le="+Inf"} 6.0\n',
        'x_duration_seconds_sum{target="prod",region="eu",endpoint="stats"} 3.5\n',
        'x_duration_seconds_count{target="prod",region="eu",endpoint="stats"} 6.0\n',
    ]


def test_samples_of_a_spec_the_builder_was_not_given_are_dropped() -> None:
    out = _builder((UP, STATUS))
    assert out.wants("pipelines") and not out.wants("connectors")
    out.add(ERRORS, PIPELINE, 1, endpoint="t.c")
    out.state_set(STATUS, (), "Running")
    assert [family.name for family in out.families()] == ["x_up", "x_status"]


@pytest.mark.parametrize(
    "emit",
    [
        lambda out: out.add(ERRORS, PIPELINE, 1),
        lambda out: out.add(ERRORS, PIPELINE, 1, endpoint="t.c", extra="x"),
        lambda out: out.state_set(STATUS, (), "Running", endpoint="t.c"),
        lambda out: out.add_histogram(LAG, TARGET, (), (), 0, 0.0, endpoint="t.c"),
    ],
)
def test_labels_other_than_declared_or_a_wrong_type_are_refused(
    emit: Callable[[FamilyBuilder[ListSink]], None],
) -> None:
    out = _builder()
    with pytest.raises(ValueError, match="x_"):
        emit(out)
    assert all(family == [] for family in out.families())


def test_a_spec_declared_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        _builder((UP, UP))
