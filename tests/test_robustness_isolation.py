"""One target's hostile answers never touch another target: bodies too deep to parse, lone surrogates, huge and
control-character names, garbage, go through the whole path (real HTTP -> client -> models -> metrics -> render)
for target ``bad`` while target ``good`` (the simulator) keeps updating. And a pipeline whose translation fails
loses its own series for the cycle, no one else's."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import build_settings
from exporter.metrics import families
from exporter.metrics.spec import MAX_LABEL_VALUE_BYTES
from exporter.poller import Poller
from exporter.render import render
from exporter.simulator import ManualClock, PipelineSpec, RelationSpec, Scenario, Simulator
from exporter.snapshot import RequestCount, Snapshot
from tests.conftest import ScriptedFeldera, json_response, new_poller, pipeline_json

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Ticks:
    """The poller's wall clock: one second further at every reading, so every cycle's timestamps are new."""

    def __init__(self) -> None:
        self.now = 1_767_225_600.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def nested(depth: int, opener: str, closer: str) -> bytes:
    return (opener * depth + closer * depth).encode()


def listed(*names: str) -> bytes:
    """A pipeline list whose names are written with JSON escapes (so lone surrogates survive the encoding)."""
    return json.dumps([pipeline_json(name) for name in names], ensure_ascii=True).encode()


HOSTILE = st.one_of(
    st.integers(min_value=2_000, max_value=100_000).map(lambda n: nested(n, "[", "]")),
    st.integers(min_value=2_000, max_value=50_000).map(lambda n: nested(n, '{"a":', "}")[:-1] + b"1" + b"}" * n),
    st.sampled_from(["\ud800", "a\udfffb", "\ud83d"]).map(lambda name: listed(name, "fine")),
    st.integers(min_value=MAX_LABEL_VALUE_BYTES, max_value=20_000).map(lambda n: listed("x" * n, "y" * n + "z")),
    st.integers(min_value=MAX_LABEL_VALUE_BYTES // 4, max_value=5_000).map(lambda n: listed("€" * n, "😀" * n)),
    st.text(alphabet=st.sampled_from('\r\n\x1b\x00\u2028\t"\\{}ab'), min_size=1, max_size=40).map(listed),
    st.binary(max_size=200),
)


@pytest.fixture
async def good() -> AsyncIterator[Simulator]:
    scenario = Scenario(
        pipelines=[
            PipelineSpec(
                name="orders",
                status="Running",
                checkpoints=1,
                tables=[RelationSpec(name="orders", connectors=["kafka"])],
                views=[RelationSpec(name="totals", connectors=["s3"])],
            )
        ]
    )
    async with Simulator(scenario, clock=ManualClock()) as sim:
        yield sim


def two_targets(good_url: str, bad_url: str) -> Any:
    return build_settings(
        {
            "targets": [{"name": "good", "url": good_url}, {"name": "bad", "url": bad_url, "timeout": 5}],
            "collectors": {"connector_errors": True},
        },
        env={},
    )


async def polled(poller: Poller, cycles: int = 1) -> list[Snapshot]:
    """``cycles`` poll cycles, then the poller closed."""
    try:
        return [await poller.poll_once() for _ in range(cycles)]
    finally:
        await poller.aclose()


def exposition(snapshot: Snapshot) -> Samples:
    text = b"".join(render(families(snapshot)).plain_chunks(openmetrics=False)).decode("utf-8")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=HOSTILE)
async def test_hostile_bodies_from_one_target_never_stop_the_other(
    body: bytes, good: Simulator, feldera: ScriptedFeldera
) -> None:
    feldera.routes = {"/v0/pipelines": json_response(None)}
    feldera.routes["/v0/pipelines"].body = body  # type: ignore[union-attr]
    for path in ("/v0/pipelines/fine/stats", "/v0/pipelines/fine/checkpoint_status", "/v0/cluster_healthz"):
        feldera.routes[path] = feldera.routes["/v0/pipelines"]
    ticks = Ticks()
    first, second = await polled(new_poller(two_targets(good.url, feldera.url), clock=ticks), cycles=2)

    for snapshot in (first, second):
        found = exposition(snapshot)  # renders, encodes as UTF-8 and parses back: never raises
        good_target, bad_target = snapshot.targets
        assert good_target.up and [p.name for p in good_target.pipelines] == ["orders"]
        assert found[("feldera_up", frozenset({("target", "good")}))] == 1.0
        assert found[("feldera_exporter_last_poll_success_timestamp_seconds", frozenset({("target", "good")}))] == (
            good_target.exporter.last_success_timestamp_seconds
        )
        assert any(name == "feldera_input_connector_records_total" for name, _ in found)
        assert all(len(value.encode()) <= MAX_LABEL_VALUE_BYTES for _, labels in found for _, value in labels)
        if not bad_target.up:
            assert found[("feldera_up", frozenset({("target", "bad")}))] == 0.0
    # the served snapshot moved on: the good target's success time is the second cycle's, not the first's
    assert (
        second.targets[0].exporter.last_success_timestamp_seconds
        > first.targets[0].exporter.last_success_timestamp_seconds
    )


async def test_a_body_too_deep_to_parse_marks_only_its_target_down_as_invalid_response(
    good: Simulator, feldera: ScriptedFeldera
) -> None:
    feldera.routes["/v0/pipelines"] = json_response(None)
    feldera.routes["/v0/pipelines"].body = nested(200_000, "[", "]")  # type: ignore[union-attr]
    (snapshot,) = await polled(new_poller(two_targets(good.url, feldera.url), clock=Ticks()))
    good_target, bad_target = snapshot.targets
    assert good_target.up and not bad_target.up
    assert RequestCount("list_pipelines", "invalid_response", 1) in bad_target.exporter.requests
    assert dict(bad_target.exporter.polls) == {"success": 0, "failure": 1}


async def test_any_exception_polling_a_target_marks_only_that_target_down(
    good: Simulator, feldera: ScriptedFeldera, caplog: pytest.LogCaptureFixture
) -> None:
    feldera.list_pipelines(pipeline_json("p"))
    poller = new_poller(two_targets(good.url, feldera.url), clock=Ticks())

    async def broken(**_: object) -> Any:
        raise MemoryError("simulated\r\nforged line")

    poller.targets[1].client.list_pipelines = broken  # type: ignore[method-assign]
    (snapshot,) = await polled(poller)
    good_target, bad_target = snapshot.targets
    assert good_target.up and not bad_target.up
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert line == "bad: poll failed unexpectedly: MemoryError: simulated\\r\\nforged line"


async def test_a_pipeline_that_cannot_be_translated_loses_only_its_own_series(
    feldera: ScriptedFeldera, caplog: pytest.LogCaptureFixture
) -> None:
    feldera.list_pipelines(pipeline_json("ok"), pipeline_json("bad"), pipeline_json("also-ok"))
    settings_ = build_settings({"targets": [{"url": feldera.url}], "collectors": {"cluster": False}}, env={})
    (snapshot,) = await polled(new_poller(settings_))
    # a value no metric can take, standing in for a bug or an answer the models let through by mistake
    (target,) = snapshot.targets
    object.__setattr__(target.pipelines[1].pipeline, "version", "not a number")

    found = exposition(snapshot)

    names = {dict(labels).get("pipeline_name") for _, labels in found} - {None}
    assert names == {"ok", "also-ok"}
    assert found[("feldera_exporter_dropped_pipelines", frozenset({("target", "default")}))] == 1.0
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert line.startswith(
        "default: 1 pipeline(s) left out of this cycle's series, translating them failed, e.g. bad: "
    )
