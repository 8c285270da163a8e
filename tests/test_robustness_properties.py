"""Property-based robustness: API bodies valid per Feldera's OpenAPI schemas, and mutated ones, through the
parsers (exporter.models), cross-cycle history, the metric layer and the renderer. The exporter must never crash
and must always serve an exposition that parses, in both formats, without duplicate series.

Bodies come from the schemas vendored in ``tests/schemas/feldera_openapi_subset.json``. hypothesis-jsonschema
cannot be used: its object generation calls a Hypothesis internal (``many.more``) that current Hypothesis no
longer has, so OpenAPI 3.0 (``nullable``, ``$ref``, ``allOf``/``oneOf``, enums) is translated here, with a depth
budget for recursive schemas.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from golden.snapshots import text_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, ValidationError

from exporter.history import History
from exporter.metrics import families
from exporter.models import (
    CheckpointStatus,
    CheckpointSyncStatus,
    ClusterHealth,
    Configuration,
    ControllerStatus,
    InputEndpointStatus,
    OutputEndpointStatus,
    Pipeline,
)
from exporter.render import render
from exporter.snapshot import PipelineSnapshot, Snapshot, TargetSnapshot

SCHEMAS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "schemas" / "feldera_openapi_subset.json").read_text(encoding="utf-8")
)["components"]["schemas"]
MAX_DEPTH = 6
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Characters that break naive exposition writers: quotes, backslashes, line breaks, braces, non-ASCII, NUL.
TRICKY_TEXT = st.text(
    alphabet=st.one_of(st.sampled_from('"\\\n\r\t{}=,# é€😀\u2028\x00'), st.characters(codec="utf-8")),
    max_size=12,
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    # Negative numbers where Feldera sends counts: test_negative_counter_from_api_does_not_break_rendering below.
    | st.integers(min_value=0, max_value=2**70)
    | st.floats(min_value=0, allow_nan=False, allow_infinity=False)
    | TRICKY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TRICKY_TEXT, inner, max_size=3),
    max_leaves=8,
)
TIMESTAMPS = st.datetimes().map(lambda d: d.isoformat() + "Z") | st.sampled_from(
    ["2024-05-01T12:00:00.123456789Z", "2024-05-01T12:00:00+02:00", "not a time", "9999-12-31T23:59:59Z"]
)


def openapi(schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """A strategy for JSON documents valid against an OpenAPI 3.0 schema object."""
    strategy = _openapi(schema, depth)
    return st.none() | strategy if schema.get("nullable") else strategy


def _openapi(schema: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if depth >= MAX_DEPTH:
            return st.none()
        return st.deferred(lambda: openapi(SCHEMAS[name], depth + 1))
    if "allOf" in schema:
        parts = schema["allOf"]
        if len(parts) == 1:
            return openapi(parts[0], depth)
        merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
        for part in parts:
            resolved = SCHEMAS[part["$ref"].rsplit("/", 1)[-1]] if "$ref" in part else part
            merged["properties"].update(resolved.get("properties", {}))
            merged["required"] += resolved.get("required", [])
        return openapi(merged, depth)
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return st.one_of([openapi(option, depth) for option in schema[key]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object" or "properties" in schema or "additionalProperties" in schema:
        return _object(schema, depth)
    if kind == "array":
        return st.lists(openapi(schema.get("items", {}), depth + 1), max_size=3)
    if kind == "string":
        return TIMESTAMPS if schema.get("format") == "date-time" else TRICKY_TEXT
    if kind == "integer":
        low = schema.get("minimum", 0)  # negatives: test_negative_counter_from_api_does_not_break_rendering
        high = schema.get("maximum", 2**64 - 1)
        return st.integers(min_value=math.ceil(low), max_value=math.floor(high))
    if kind == "number":
        return st.floats(min_value=schema.get("minimum", 0), allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    return JSON_VALUES


def _object(schema: dict[str, Any], depth: int) -> st.SearchStrategy[dict[str, Any]]:
    properties = schema.get("properties", {})
    required = set(schema.get("required", []))
    fixed = st.fixed_dictionaries(
        {name: openapi(sub, depth + 1) for name, sub in properties.items() if name in required},
        optional={name: openapi(sub, depth + 1) for name, sub in properties.items() if name not in required},
    )
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and not properties:
        return st.dictionaries(TRICKY_TEXT, openapi(extra, depth + 1), max_size=3)
    return fixed


def mutated(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid bodies with random damage: fields dropped, replaced by any JSON value, unknown fields added."""

    @st.composite
    def damage(draw: st.DrawFn) -> Any:
        def walk(value: Any) -> Any:
            roll = draw(st.integers(0, 9))
            if roll == 0:
                return draw(JSON_VALUES)
            if isinstance(value, dict):
                out = {k: walk(v) for k, v in value.items() if draw(st.integers(0, 6)) != 0}
                if roll == 1:
                    out[draw(TRICKY_TEXT)] = draw(JSON_VALUES)
                return out
            if isinstance(value, list):
                return [walk(v) for v in value]
            return value

        return walk(draw(strategy))

    return damage()


@functools.cache
def valid_body(name: str) -> st.SearchStrategy[Any]:
    """Built once per schema: a strategy is immutable, and building one (with its recursive parts) for each draw
    cost more than the drawing."""
    return openapi(SCHEMAS[name])


@functools.cache
def body(name: str) -> st.SearchStrategy[Any]:
    valid = valid_body(name)
    return st.one_of(valid, mutated(valid), JSON_VALUES)


def _parse(model: type[BaseModel], document: Any) -> Any:
    """What the client does: a body that does not fit the model is an invalid response (the part is omitted)."""
    try:
        return model.model_validate(document)
    except ValidationError:
        return None


def _parse_list(document: Any) -> list[Pipeline] | None:
    if not isinstance(document, list):
        return None
    parsed = (_parse(Pipeline, entry) for entry in document)
    return [p for p in parsed if p is not None]


@st.composite
def cycles(draw: st.DrawFn) -> list[Snapshot]:
    """Two consecutive cycles of one target built from drawn API bodies, folded through the real History."""
    history = History()
    snapshots = []
    for cycle in range(2):
        listed = _parse_list(draw(st.lists(body("PipelineSelectedInfo"), max_size=3) | JSON_VALUES))
        if listed is None:
            snapshots.append(Snapshot(targets=(TargetSnapshot(name="default", up=False),), taken_at=cycle))
            continue
        # Feldera's names are unique; duplicates in a malformed list: test_client.py's
        # test_repeated_pipeline_names_keep_the_first_entry.
        unique = {p.name: p for p in reversed(listed)}
        pipelines = []
        for pipeline in reversed(unique.values()):
            stats = _parse(ControllerStatus, draw(body("ControllerStatus")))
            if stats is not None:  # endpoint names are unique in Feldera; duplicates: the connector test below
                stats = stats.model_copy(
                    update={
                        "inputs": list({e.endpoint_name: e for e in reversed(stats.inputs)}.values())[::-1],
                        "outputs": list({e.endpoint_name: e for e in reversed(stats.outputs)}.values())[::-1],
                    }
                )
            details: dict[str, InputEndpointStatus | OutputEndpointStatus] = {}
            if stats is not None and draw(st.booleans()):
                for endpoint in stats.inputs:
                    found = _parse(InputEndpointStatus, draw(body("InputEndpointStatus")))
                    if found is not None:
                        details[endpoint.endpoint_name] = found
                for endpoint in stats.outputs:
                    found = _parse(OutputEndpointStatus, draw(body("OutputEndpointStatus")))
                    if found is not None:
                        details[endpoint.endpoint_name] = found
            pipelines.append(
                PipelineSnapshot(
                    pipeline=pipeline,
                    checkpoint_status=_parse(CheckpointStatus, draw(body("CheckpointStatus"))),
                    stats=stats,
                    sync_status=_parse(CheckpointSyncStatus, draw(body("CheckpointSyncStatus"))),
                    connector_details=details,
                )
            )
        now = 1_700_000_000.0 + 15 * cycle
        target = TargetSnapshot(
            name=draw(st.sampled_from(["default", 'we"ird\\name\n€'])),
            labels=(("env", draw(TRICKY_TEXT)),),
            up=True,
            pipelines=tuple(history.advance("default", pipelines, now)),
            cluster=_parse(ClusterHealth, draw(body("HealthStatus"))),
            server=_parse(Configuration, draw(body("Configuration"))),
        )
        snapshots.append(Snapshot(targets=(target,), taken_at=now))
    return snapshots


def assert_valid_exposition(snapshot: Snapshot) -> None:
    rendered = render(families(snapshot))
    text = text_of(rendered, openmetrics=False)
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for family in text_string_to_metric_families(text):
        assert METRIC_NAME.match(family.name), family.name
        for sample in family.samples:
            assert sample.name.startswith(family.name), (family.name, sample.name)
            assert all(LABEL_NAME.match(label) for label in sample.labels), sample
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in seen, f"duplicate series {key}"
            seen.add(key)
    openmetrics = text_of(rendered, openmetrics=True)
    assert openmetrics.endswith("# EOF\n")
    assert sum(len(f.samples) for f in parse_openmetrics(openmetrics)) >= len(seen)


ROBUSTNESS = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@pytest.mark.slow
@ROBUSTNESS
@given(cycles())
def test_any_api_bodies_give_a_valid_exposition_without_duplicate_series(snapshots: list[Snapshot]) -> None:
    for snapshot in snapshots:
        assert_valid_exposition(snapshot)


PARSERS: dict[str, Callable[[Any], Any]] = {
    "PipelineSelectedInfo": lambda doc: _parse(Pipeline, doc),
    "CheckpointStatus": lambda doc: _parse(CheckpointStatus, doc),
    "CheckpointSyncStatus": lambda doc: _parse(CheckpointSyncStatus, doc),
    "ControllerStatus": lambda doc: _parse(ControllerStatus, doc),
    "InputEndpointStatus": lambda doc: _parse(InputEndpointStatus, doc),
    "OutputEndpointStatus": lambda doc: _parse(OutputEndpointStatus, doc),
    "HealthStatus": lambda doc: _parse(ClusterHealth, doc),
    "Configuration": lambda doc: _parse(Configuration, doc),
}


@pytest.mark.slow
@ROBUSTNESS
@given(st.sampled_from(sorted(PARSERS)).flatmap(lambda name: st.tuples(st.just(name), valid_body(name))))
def test_every_schema_valid_body_is_accepted_by_its_parser(case: tuple[str, Any]) -> None:
    name, document = case
    assert PARSERS[name](document) is not None, f"{name} rejected a schema-valid body"


def test_connector_answers_that_report_another_endpoints_name_give_no_duplicate_series() -> None:
    """Found by this suite: per-connector answers were labelled by the name they report, so two answers naming the
    same endpoint made duplicate series; they are labelled by the endpoint asked for."""
    answer = {"endpoint_name": "v.same", "config": {"stream": "v"}, "metrics": {}, "transport_errors": []}
    answer["transport_errors"] = [{"index": 1, "timestamp": "2024-05-01T10:00:00Z"}]
    detail = OutputEndpointStatus.model_validate(answer)
    stats = ControllerStatus.model_validate({"global_metrics": {}, "inputs": [], "outputs": []})
    pipeline = Pipeline.model_validate({"name": "orders"})
    snap = PipelineSnapshot(pipeline=pipeline, stats=stats, connector_details={"v.a": detail, "v.b": detail})
    target = TargetSnapshot(name="default", up=True, pipelines=(snap,))
    assert_valid_exposition(Snapshot(targets=(target,)))


def test_negative_counter_from_api_does_not_break_rendering() -> None:
    """Found by this suite: a negative num_errors used to become a negative counter and fail the render."""
    pipeline = Pipeline.model_validate({"name": "orders", "connectors": {"num_errors": -5}})
    target = TargetSnapshot(name="default", up=True, pipelines=(PipelineSnapshot(pipeline=pipeline),))
    assert_valid_exposition(Snapshot(targets=(target,)))
