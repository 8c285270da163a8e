"""Issue 25: what one hostile Feldera can make the exporter do, measured through the whole path (real HTTP, the
poller, its log). Bounded logging: however many bad entries an answer holds, a cycle writes one line about them."""

from __future__ import annotations

import logging
import time

import pytest

from exporter.config import build_settings
from tests.conftest import ScriptedFeldera, json_response, new_poller, pipeline_json


def lines_of(caplog: pytest.LogCaptureFixture, logger: str = "exporter") -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith(logger) and r.levelno >= logging.INFO]


async def test_a_list_of_thousands_of_bad_entries_writes_one_line_per_cycle(
    feldera: ScriptedFeldera, caplog: pytest.LogCaptureFixture
) -> None:
    """9,000 malformed entries and 999 repeats of one name: one WARNING per cycle with the counts and three examples
    (before: one line per entry, on the event loop)."""
    feldera.list_pipelines(
        pipeline_json("good", runtime=None),
        *({"name": i} for i in range(9_000)),
        *(pipeline_json("good", runtime=None) for _ in range(999)),
    )
    settings = build_settings(
        {"targets": [{"url": feldera.url}], "collectors": {"cluster": False, "server": False}}, env={}
    )
    poller = new_poller(settings)
    caplog.set_level(logging.INFO)
    try:
        for cycle in range(2):
            caplog.clear()
            started = time.monotonic()
            snapshot = await poller.poll_once()
            took = time.monotonic() - started
            (target,) = snapshot.targets
            assert target.up and [p.name for p in target.pipelines] == ["good"]
            (line,) = lines_of(caplog)
            assert line.startswith("default: pipeline list: 9000 malformed and 999 repeated entries skipped, e.g. ")
            assert len(line) < 600, line
            print(f"cycle {cycle}: {took:.2f} s, {len(lines_of(caplog))} log line(s)")
    finally:
        await poller.aclose()


async def test_a_list_of_200000_malformed_entries_is_over_limit_in_one_line_and_the_other_target_polls_on(
    feldera: ScriptedFeldera, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's 600 KB answer: 200,000 entries are over ``max_pipelines`` (10,000): refused before any entry is
    validated, one line, the target down; the healthy target in the same cycle is unaffected."""
    feldera.routes["/v0/pipelines"] = json_response([{"name": 1}] * 200_000)
    feldera.routes["/good/v0/pipelines"] = json_response([pipeline_json("fine", runtime=None)])
    settings = build_settings(
        {
            "targets": [{"name": "bad", "url": feldera.url}, {"name": "good", "url": feldera.url + "/good"}],
            "collectors": {"cluster": False, "server": False},
        },
        env={},
    )
    poller = new_poller(settings)
    caplog.set_level(logging.INFO)
    try:
        snapshot = await poller.poll_once()
    finally:
        await poller.aclose()
    bad, good = snapshot.targets
    assert not bad.up and good.up and [p.name for p in good.pipelines] == ["fine"]
    assert lines_of(caplog) == [
        "bad: listing pipelines failed: list_pipelines: the list holds 200000 pipelines, more than 10000 "
        "(max_pipelines 10000)"
    ]
