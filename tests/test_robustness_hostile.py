"""Issue 25: what one hostile Feldera or a crowd of hostile clients can make the exporter do, measured through the
whole path (real HTTP, the poller, its log, the endpoint a scraper uses).

- A scraper always gets in: 300 hostile connections (idle keep-alive, slow, unauthenticated, waiting for bcrypt),
  from a process of their own, and a scrape is not held back by them (answered within Prometheus' default scrape
  timeout; issue 25's goal, within 1 s, is measured by ``bench/hostile_clients.py``).
- Bounded logging: however many bad entries an answer holds, a cycle writes one line about them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from statistics import median

import aiohttp
import bcrypt
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import Exporter
from exporter.config import build_settings
from exporter.metrics import families
from exporter.render import render
from exporter.snapshot import Snapshot, TargetSnapshot
from tests.conftest import ScriptedFeldera, eventually, hang, json_response, new_poller, pipeline_json

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "scrape-pässword"
SCRAPES = 10
SCRAPE_TIMEOUT = 10.0
"""Prometheus' default ``scrape_timeout``: a scrape held back by hostile connections ran past it (before issue 25:
15 to 45 s); one that is not takes milliseconds, about a second on a 2-core box at load 9. Issue 25's goal, within
1 s, depends on the machine's load: ``bench/hostile_clients.py`` measures it."""
HOSTILE = 300
SOURCES = [f"127.0.0.{i}" for i in range(10, 20)]
"""Ten remote addresses of 30 connections each: under the per-address share (32), over the cap (128) together."""


@contextlib.asynccontextmanager
async def exporter_with_basic_auth(feldera: ScriptedFeldera, tmp_path: Path) -> AsyncIterator[Exporter]:
    """The exporter with default server limits behind basic auth (bcrypt cost 10, about 60 ms a check)."""
    feldera.list_pipelines(*(pipeline_json(f"p{i}", runtime=None) for i in range(50)))
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
    web_config = tmp_path / "web.yml"
    web_config.write_text(yaml.safe_dump({"basic_auth_users": {"prometheus": hashed}}))
    settings = build_settings(
        {
            "web": {"listen_address": "127.0.0.1:0", "config_file": str(web_config)},
            "poll": {"interval": "1s"},
            "targets": [{"url": feldera.url}],
        },
        env={},
    )
    async with Exporter(settings) as exporter:
        yield exporter


@contextlib.asynccontextmanager
async def hostile_clients(kinds: list[str], port: int) -> AsyncIterator[None]:
    """``HOSTILE`` connections shared between ``kinds``, each kind in a process of its own."""
    children = []
    try:
        for kind in kinds:
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.hostileclients", kind, str(HOSTILE // len(kinds)), str(port),
                *(f"--source={source}" for source in SOURCES), f"--auth=prometheus:{PASSWORD}",
                stdout=asyncio.subprocess.PIPE, cwd=ROOT,
            )  # fmt: skip
            children.append(child)
        for child in children:
            assert child.stdout is not None
            async with asyncio.timeout(60):
                assert await child.stdout.readline() == b"ready\n"
        yield
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()


async def scrape(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> tuple[float, bytes]:
    """One scrape as Prometheus' HTTP client (Go's net/http) makes it, and how long it took: a GET whose
    kept-alive connection turns out closed or reset before the first byte of the answer is sent again on a new
    connection (``Transport.shouldRetryRequest``): at the cap the exporter closes the connection idle the longest,
    which between two scrapes may be the scraper's."""
    started = time.monotonic()
    for attempt in range(2):
        try:
            async with session.get(url, headers=headers) as response:
                assert response.status == 200
                return time.monotonic() - started, await response.read()
        except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
            if attempt:
                raise
    raise AssertionError("unreachable")


async def scrapes(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> list[float]:
    """How long each of :data:`SCRAPES` scrapes took, with a pause between them in which the scraper's connection is
    idle (as between two of Prometheus' scrapes)."""
    latencies = []
    for _ in range(SCRAPES):
        took, body = await scrape(session, url, headers)
        latencies.append(took)
        assert body
        await asyncio.sleep(0.2)  # pacing, not a wait for a condition
    return latencies


@pytest.mark.slow
@pytest.mark.parametrize(
    "kinds", [["idle"], ["slow"], ["unauthenticated"], ["bcrypt"], ["idle", "slow", "unauthenticated", "bcrypt"]]
)
async def test_a_scrape_is_not_held_back_by_300_hostile_connections(
    feldera: ScriptedFeldera, tmp_path: Path, kinds: list[str]
) -> None:
    """Before: 130 idle keep-alive connections held the 128-connection cap (each request re-armed keep-alive, a 401
    kept its slot) and a scrape timed out at 15 s; 300 wrong-password clients held their slots waiting for bcrypt
    (scrapes of 17 to 45 s). Now the connection idle the longest is closed for a new one, a password check waits
    with its slot set aside (at most 16 at once, 4 per address) and a refused one closes its connection."""
    credentials = base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()
    headers = {"Authorization": f"Basic {credentials}", "Accept-Encoding": "gzip"}
    async with (
        exporter_with_basic_auth(feldera, tmp_path) as exporter,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT)) as session,
    ):
        url = f"{exporter.url}/metrics"
        async with session.get(url, headers=headers) as primed:  # remembered from now on
            assert primed.status == 200
        async with hostile_clients(kinds, exporter.port):
            latencies = await scrapes(session, url, headers)
            held = exporter.open_connections
    print(f"{'+'.join(kinds)}: scrape latency median {median(latencies):.3f} s, max {max(latencies):.3f} s")
    assert max(latencies) < SCRAPE_TIMEOUT, latencies
    assert held <= 128 + 16  # the cap, and those counted again after their bcrypt check


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
        "bad: over its pipeline limit, not polled: list_pipelines: the list holds 200000 pipelines, more than 10000 "
        "(max_pipelines 10000)"
    ]
    assert bad.over_limit == {"pipelines"} and good.over_limit == frozenset()


# ---- targets are independent --------------------------------------------------------------------------------


def samples_of(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.slow
async def test_a_target_that_never_answers_its_sub_requests_never_holds_back_another_targets_data(
    feldera: ScriptedFeldera, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's slow target: 64 pipelines whose sub-requests are accepted and never answered (hung pipeline
    controllers do that). Before, one cycle waited for every target and had no deadline of its own: the healthy
    target's data was 55 to 59 s old at a 2 s poll interval. Now each target polls on its own cadence, the slow one
    is cut off at ``poll.cycle_deadline`` with what it had (its pipelines, without their stats), marked by
    ``feldera_exporter_polls_cut_off_total`` and one line per cycle, and the healthy target's data is never older than
    its own interval and cycle."""
    feldera.list_pipelines(*(pipeline_json(f"p{i}") for i in range(64)))
    for i in range(64):
        feldera.routes[f"/v0/pipelines/p{i}"] = hang  # runtime_config (selector=all)
        for endpoint in ("stats", "checkpoint_status", "checkpoint/sync_status"):
            feldera.routes[f"/v0/pipelines/p{i}/{endpoint}"] = hang
    feldera.routes["/good/v0/pipelines"] = json_response([pipeline_json("fine", runtime=None)])
    interval, deadline = 1.0, 3.0
    settings = build_settings(
        {
            "web": {"listen_address": "127.0.0.1:0"},
            "poll": {"interval": interval, "cycle_deadline": deadline},
            "targets": [
                {"name": "good", "url": feldera.url + "/good"},
                {"name": "slow", "url": feldera.url, "timeout": 60},
            ],
            "collectors": {"cluster": False, "server": False},
        },
        env={},
    )
    caplog.set_level(logging.INFO)
    ages: list[float] = []
    async with Exporter(settings) as exporter, aiohttp.ClientSession() as session:
        await eventually(lambda: exporter.ready, "both targets polled once", deadline=20)
        until = time.monotonic() + 3 * deadline
        while time.monotonic() < until:
            async with session.get(f"{exporter.url}/metrics") as response:
                found = samples_of(await response.text())
            polled = found[("feldera_exporter_last_poll_success_timestamp_seconds", frozenset({("target", "good")}))]
            ages.append(time.time() - polled)
            await asyncio.sleep(0.5)  # a scrape every half second, as in the issue
    slow = frozenset({("target", "slow")})
    cut = [m for m in caplog.messages if m.startswith("slow: poll cycle cut off after 3s (poll.cycle_deadline): ")]
    print(f"healthy target's data age: max {max(ages):.2f} s over {len(ages)} scrapes; slow cut off {len(cut)} times")
    assert max(ages) < interval + 1.0, ages  # its own interval, its own cycle (milliseconds) and load: never 3 s
    assert found[("feldera_exporter_polls_cut_off_total", slow)] >= 2
    counted = found[("feldera_exporter_polls_cut_off_total", slow)]  # at the last scrape: one more may follow
    assert counted <= len(cut) <= counted + 1  # one line per cut-off cycle
    # runtime_config and stats; checkpoint_status and sync_status wait for stats (what can have changed)
    assert cut[0].endswith("0 of 128 pipeline request(s) answered so far; the cycle is served without the rest")
    assert found[("feldera_up", slow)] == 1.0  # the list was answered: its pipelines are served, without stats
    assert ("feldera_pipeline_info", frozenset({*slow, ("pipeline_name", "p0")})) in {
        (name, frozenset(label for label in labels if label[0] in ("target", "pipeline_name")))
        for name, labels in found
    }
    assert not any(name == "feldera_input_connector_paused" for name, labels in found if slow <= labels)


async def test_every_failed_sub_request_of_a_cycle_is_summed_up_in_one_line(
    feldera: ScriptedFeldera, caplog: pytest.LogCaptureFixture
) -> None:
    """500 running pipelines whose every sub-request fails (404 here, as no route answers): before, one WARNING per
    failed request, 2,000 per cycle at a rate the server chose (``runtime_config`` is asked again while it fails);
    now one line per target and cycle, with the count per request and the first three."""
    feldera.list_pipelines(*(pipeline_json(f"p{i}") for i in range(500)))
    settings = build_settings(
        {"targets": [{"url": feldera.url}], "collectors": {"cluster": False, "server": False}}, env={}
    )
    poller = new_poller(settings)
    caplog.set_level(logging.INFO)
    try:
        for _ in range(2):
            caplog.clear()
            (target,) = (await poller.poll_once()).targets
            assert target.up and len(target.pipelines) == 500
            (line,) = lines_of(caplog)
            assert line.startswith(
                "default: 2000 request(s) failed this cycle "
                "(checkpoint_status 500, fault_tolerance 500, stats 500, sync_status 500), e.g. default/p"
            )
            assert line.count("; ") == 2 and len(line) < 1_000, line
    finally:
        await poller.aclose()


async def test_past_max_connectors_the_target_is_over_limit_and_the_rest_of_its_stats_are_not_asked(
    feldera: ScriptedFeldera, caplog: pytest.LogCaptureFixture
) -> None:
    feldera.list_pipelines(*(pipeline_json(f"p{i}", runtime="Paused") for i in range(5)))
    inputs = [{"endpoint_name": f"t.c{i}", "config": {"stream": "t"}} for i in range(4)]
    for i in range(5):
        feldera.routes[f"/v0/pipelines/p{i}/stats"] = json_response({"inputs": inputs, "outputs": []})
    settings = build_settings(
        {
            "poll": {"concurrency": 1},  # one after the other: which pipelines come first is known
            "targets": [{"url": feldera.url, "max_connectors": 10}],
            "collectors": {
                "cluster": False,
                "server": False,
                "checkpoints": False,
                "checkpoint_sync": False,
                "resources": False,
            },
        },
        env={},
    )
    poller = new_poller(settings)
    caplog.set_level(logging.INFO)
    try:
        (target,) = (await poller.poll_once()).targets
    finally:
        await poller.aclose()
    assert target.up and target.over_limit == {"connectors"}
    assert [snap.stats is not None for snap in target.pipelines] == [True, True, False, False, False]
    assert feldera.paths().count("/v0/pipelines/p3/stats") == 0  # not asked once the limit was reached
    assert lines_of(caplog) == [
        "default: over its connector limit (max_connectors 10): the stats of 3 pipeline(s) not kept this cycle"
    ]
    over = {
        dict(labels)["limit"]: found
        for (name, labels), found in exposition_of(target).items()
        if name == "feldera_exporter_target_over_limit"
    }
    assert over == {"connectors": 1.0, "pipelines": 0.0}


def exposition_of(target: TargetSnapshot) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = b"".join(render(families(Snapshot(targets=(target,)))).plain_chunks(openmetrics=False)).decode()
    return samples_of(text)


async def test_a_cut_off_cycle_serves_no_reused_answer_that_the_cycle_would_have_asked_again(
    feldera: ScriptedFeldera,
) -> None:
    """The staleness rule in a cut-off cycle: ``checkpoint_status`` is reused only while nothing can have changed
    it. Here the pipeline restarts (a new ``deployment_id``) and the cycle is cut off before the new process's
    ``checkpoint_status`` is asked: the old process's failure is not served (nor counted again), it is unknown until
    a cycle asks."""
    failed = {"success": 7, "failure": {"sequence_number": 8, "error": "disk full", "failed_at": "2026-01-01T00:00Z"}}
    feldera.list_pipelines(pipeline_json("p", deployment_id="first"))
    feldera.routes["/v0/pipelines/p/stats"] = json_response({"global_metrics": {"incarnation_uuid": "a"}})
    feldera.routes["/v0/pipelines/p/checkpoint_status"] = json_response(failed)
    settings = build_settings(
        {
            "poll": {"cycle_deadline": 1},
            "targets": [{"url": feldera.url}],
            "collectors": {"cluster": False, "server": False, "checkpoint_sync": False, "resources": False},
        },
        env={},
    )
    poller = new_poller(settings)
    try:
        (before,) = (await poller.poll_once()).targets
        feldera.list_pipelines(pipeline_json("p", deployment_id="second"))
        feldera.routes["/v0/pipelines/p/stats"] = hang
        (cut,) = (await poller.poll_once()).targets
    finally:
        await poller.aclose()
    assert before.exporter.cut_off == 0 and cut.exporter.cut_off == 1
    assert before.pipelines[0].checkpoint_status is not None
    assert cut.up and cut.pipelines[0].checkpoint_status is None
    served = exposition_of(cut)
    assert not [name for name, _ in served if name == "feldera_pipeline_checkpoint_failed"]
    failures = [value for (name, _), value in served.items() if name == "feldera_pipeline_checkpoint_failures_total"]
    assert failures == [1.0]
