"""The exposition writer: byte-for-byte what prometheus_client writes (up to label order), and valid gzip built
from shared deflate parts, at any size."""

from __future__ import annotations

import copy
import gzip
import json
import random
import zlib
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from golden.snapshots import GOLDEN_DIR, fixture_names, load_snapshot, rendered, snapshot_from, text_of
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.metrics.spec import format_value
from exporter.render import BATCH_LINES, PLAIN_CHUNK, FamilyWriter, crc32_combine


class _Families:
    def __init__(self, metrics: Iterable[Metric]) -> None:
        self._metrics = list(metrics)

    def collect(self) -> Iterable[Metric]:
        return self._metrics


def _rewritten(text: str, parse: Callable[[str], Iterable[Metric]], generate: Callable[[Any], bytes]) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(parse(text)))
    return generate(registry).decode("utf-8")


def _assert_same_as_prometheus_client(ours: str, theirs: str) -> None:
    """Line by line: comments identical; samples with the same name, value text and length (labels may be in
    another order: the length check and the parsers' label comparison pin down the rest)."""
    our_lines, their_lines = ours.splitlines(), theirs.splitlines()
    assert len(our_lines) == len(their_lines)
    for mine, reference in zip(our_lines, their_lines, strict=True):
        if reference.startswith("#"):
            assert mine == reference
            continue
        assert mine.split("{")[0].split(" ")[0] == reference.split("{")[0].split(" ")[0], (mine, reference)
        assert mine.rsplit(" ", 1)[1] == reference.rsplit(" ", 1)[1], (mine, reference)
        assert len(mine) == len(reference), (mine, reference)


@pytest.mark.parametrize("name", fixture_names())
def test_text_format_is_what_prometheus_client_writes(name: str) -> None:
    ours = text_of(rendered(load_snapshot(name)), openmetrics=False)
    _assert_same_as_prometheus_client(ours, _rewritten(ours, parse_text, generate_latest))


@pytest.mark.parametrize("name", fixture_names())
def test_openmetrics_format_is_what_prometheus_client_writes(name: str) -> None:
    ours = text_of(rendered(load_snapshot(name)), openmetrics=True)
    assert ours.endswith("# EOF\n")
    _assert_same_as_prometheus_client(ours, _rewritten(ours, parse_openmetrics, generate_openmetrics))


def test_labels_come_identity_first_in_declaration_order() -> None:
    text = text_of(rendered(load_snapshot("running")), openmetrics=False)
    line = next(line for line in text.splitlines() if line.startswith("feldera_pipeline_status{"))
    assert line.startswith('feldera_pipeline_status{target="prod",region="eu-west",pipeline_name="orders",status="')


VALUES = [
    (0, "0.0"),
    (1, "1.0"),
    (True, "1.0"),
    (-3, "-3.0"),
    (999_999, "999999.0"),
    (1_000_000, "1e+06"),
    (1_234_567, "1.234567e+06"),
    (0.25, "0.25"),
    (1.7e9, "1.7e+09"),
    (float("inf"), "+Inf"),
    (float("nan"), "NaN"),
]


@pytest.mark.parametrize(("value", "text"), VALUES)
def test_values_are_written_like_go_and_prometheus_client(value: float, text: str) -> None:
    assert format_value(value) == text


def test_crc32_combine_equals_the_crc_of_the_concatenation() -> None:
    rng = random.Random(8)
    for _ in range(200):
        a = rng.randbytes(rng.randrange(0, 3000))
        b = rng.randbytes(rng.choice([0, 1, 7, rng.randrange(0, 70_000)]))
        assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def test_the_family_writer_batches_lines_however_they_arrive() -> None:
    lines = [f'x_total{{n="{i}"}} {i}.0\n' for i in range(3 * BATCH_LINES + 7)]
    writer = FamilyWriter("x", "counter", "Help.")
    writer.extend(lines[:5])
    for line in lines[5 : BATCH_LINES + 1]:  # one line at a time across a batch boundary
        writer.append(line)
    writer.extend(lines[BATCH_LINES + 1 :])  # more than a batch at once
    family = writer.finish()
    assert (family.name, family.type, family.help, family.samples) == ("x", "counter", "Help.", len(lines))
    text = "".join(lines).encode()
    assert zlib.decompressobj(-zlib.MAX_WBITS).decompress(family.body.deflated) == text
    assert (family.body.crc, family.body.size) == (zlib.crc32(text), len(text))
    empty = FamilyWriter("y", "gauge", "Empty.").finish()
    assert (empty.samples, empty.body.deflated, empty.body.size) == (0, b"", 0)


def _fleet(pipelines: int) -> dict[str, Any]:
    """The ``running`` fixture with its pipeline repeated under distinct names."""
    document = json.loads((GOLDEN_DIR / "running.json").read_text(encoding="utf-8"))
    target = document["targets"][0]
    template = target["pipelines"][0]
    target["pipelines"] = []
    for i in range(pipelines):
        pipeline = copy.deepcopy(template)
        pipeline["pipeline"]["name"] = f'pipeline-{i:04d} "quoted\\name"'
        target["pipelines"].append(pipeline)
    return document


def test_a_large_exposition_is_one_valid_gzip_member_in_both_formats() -> None:
    pipelines = 3 * BATCH_LINES // 16  # the 16-state status set alone spills several batches
    result = rendered(snapshot_from(_fleet(pipelines)))
    for openmetrics in (False, True):
        body = b"".join(result.gzip_chunks(openmetrics=openmetrics))
        assert len(body) == result.gzip_size(openmetrics=openmetrics)
        plain = gzip.decompress(body)
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        assert inflater.decompress(body) == plain
        assert inflater.eof and inflater.unused_data == b""  # a single member, nothing after it
        assert len(plain) == result.plain_size(openmetrics=openmetrics) > PLAIN_CHUNK * 64
        chunks = list(result.plain_chunks(openmetrics=openmetrics))
        assert b"".join(chunks) == plain
        assert len(chunks) > 1
    text = text_of(result, openmetrics=False)
    families = list(parse_text(text))
    assert sum(len(family.samples) for family in families) == result.series
    status = next(family for family in families if family.name == "feldera_pipeline_status")
    assert len({sample.labels["pipeline_name"] for sample in status.samples}) == pipelines
    assert [sample.labels["pipeline_name"] for sample in status.samples][:16] == ['pipeline-0000 "quoted\\name"'] * 16
