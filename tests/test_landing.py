"""The landing page (``/``) of a real exporter polling the simulator, read back with ``html.parser``."""

from __future__ import annotations

import asyncio
import gc
import types
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from html.parser import HTMLParser

import pytest

from exporter.app import Exporter
from exporter.config import Settings
from exporter.landing import MAX_ROWS
from exporter.simulator import ManualClock, PipelineSpec, RelationSpec, Scenario, Simulator
from exporter.snapshot import PipelineSnapshot
from tests.conftest import free_port

FATAL = "S3 error: <b>AccessDenied</b> & co"


@dataclass
class Page(HTMLParser):
    """Headings, table rows per (h2, h3) section, text per h2 section, links and every tag used."""

    title: str = ""
    tags: set[str] = field(default_factory=set)
    links: list[str] = field(default_factory=list)
    h2: list[str] = field(default_factory=list)
    tables: dict[tuple[str, str], list[list[str]]] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)
    _open: list[str] = field(default_factory=list)
    _heading: str = ""
    _h3: str = ""
    _row: list[str] | None = None
    _cell: str | None = None

    def __post_init__(self) -> None:
        super().__init__(convert_charrefs=True)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag in ("h1", "h2", "h3", "title"):
            self._heading = ""
        elif tag == "a":
            self.links.append(dict(attrs).get("href") or "")
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = ""
        if tag not in ("meta",):
            self._open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1] == tag:
            self._open.pop()
        current = self.h2[-1] if self.h2 else ""
        if tag == "title":
            self.title = self._heading
        elif tag == "h2":
            self.h2.append(self._heading.strip())
            self._h3 = ""
        elif tag == "h3":
            self._h3 = self._heading.split(" (")[0].strip()
        elif tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables.setdefault((current, self._h3), []).append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        self._heading += data
        if self._cell is not None:
            self._cell += data
        if self.h2:
            self.text[self.h2[-1]] = self.text.get(self.h2[-1], "") + data

    def rows(self, h2: str, h3: str) -> list[list[str]]:
        """Data rows (the header row dropped) of one table."""
        return self.tables.get((h2, h3), [])[1:]


def get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers["content-type"], response.read().decode()


async def landing(exporter: Exporter) -> Page:
    status, content_type, body = await asyncio.to_thread(get, exporter.url + "/")
    assert status == 200 and content_type == "text/html; charset=utf-8"
    page = Page()
    page.feed(body)
    page.close()
    return page


async def one_cycle_page(scenario: Scenario, **settings: object) -> Page:
    """The landing page of an exporter (target ``demo``, plus ``settings``) after one cycle over ``scenario``."""
    async with Simulator(scenario) as sim:
        exporter = Exporter(
            Settings.model_validate(
                {"web": {"listen_address": "127.0.0.1:0"}, "targets": [{"name": "demo", "url": sim.url}], **settings}
            )
        )
        await exporter.start(poll_loop=False)
        try:
            await exporter.poll_once()
            return await landing(exporter)
        finally:
            await exporter.stop()


@dataclass
class Setup:
    sim: Simulator
    exporter: Exporter
    clock: list[float]


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    scenario = Scenario(
        pipelines=[
            PipelineSpec(
                name="orders",
                checkpoints=1,
                tables=[RelationSpec(name="orders", connectors=["kafka-in"])],
                views=[RelationSpec(name="totals", connectors=["delta-out"])],
            ),
            PipelineSpec(name="clicks", status="Paused", tables=[RelationSpec(name="c", connectors=["s3"])]),
            PipelineSpec(name="archive", status="Stopped"),
        ]
    )
    clock = [1_767_225_600.0]
    async with Simulator(scenario, clock=ManualClock(clock[0])) as sim:
        settings = Settings.model_validate(
            {
                "web": {"listen_address": "127.0.0.1:0"},
                "targets": [
                    {"name": "demo", "url": sim.url, "labels": {"env": "test"}},
                    {"name": "gone", "url": f"http://127.0.0.1:{free_port()}", "timeout": "1s"},
                ],
                "checkpoint_sync": {"schedules": [{"pipelines": "orders", "every": "1m", "target": "demo"}]},
            }
        )
        exporter = Exporter(settings, clock=lambda: clock[0])
        await exporter.start(poll_loop=False)
        try:
            yield Setup(sim, exporter, clock)
        finally:
            await exporter.stop()


async def test_landing_page_before_the_first_cycle_says_so_and_links_to_metrics(setup: Setup) -> None:
    page = await landing(setup.exporter)
    assert page.title == "Feldera Exporter"
    assert "metrics" in page.links
    assert page.h2 == []


async def test_landing_page_shows_each_target_its_pipelines_failures_and_watches(setup: Setup) -> None:
    sim, exporter = setup.sim, setup.exporter
    sim.fail_checkpoint("orders", "disk full")
    sim.set_connector_fatal_error("orders", "orders.kafka-in", FATAL)
    token = sim.issue_reset_token("orders")
    await exporter.sidecar.resets.register("orders", token, name="orders-out", target="demo")
    await exporter.sidecar.resets.register("orders", "not-a-token", name="orders-bad", target="demo")
    await exporter.poll_once()  # the scheduler learns that orders runs
    assert exporter.sidecar.scheduler is not None
    await exporter.sidecar.scheduler.tick(setup.clock[0])  # its first sync: requested, accepted (202)
    await exporter.poll_once()
    setup.clock[0] += 95  # the page shows ages at request time

    page = await landing(exporter)

    assert "script" not in page.tags  # plain HTML, no JavaScript
    assert {"metrics", "-/ready", "-/healthy"} <= set(page.links)
    assert any(link.endswith("/docs/runbooks.md") for link in page.links)
    assert any(link.endswith("/docs/metrics.md") for link in page.links)
    assert page.h2 == ["Target demo up env=test", "Target gone down"]

    demo, gone = page.h2
    assert "Last successful poll: 2026-01-01 00:00:00 UTC (95 s ago)" in page.text[demo]
    assert page.rows(demo, "Pipelines by status") == [["Paused", "1"], ["Running", "1"], ["Stopped", "1"]]
    assert page.rows(demo, "Failed checkpoints") == [["orders", "0", "disk full"]]  # numbered from 0
    # the message is escaped: it comes back as text, no <b> element appears
    assert page.rows(demo, "Connectors with a fatal error") == [["orders", "orders.kafka-in", FATAL]]
    assert "b" not in page.tags
    assert page.rows(demo, "Reset watches") == [
        ["orders-bad", "orders", "invalid", "95 s"],
        ["orders-out", "orders", "pending", "95 s"],
    ]

    assert page.rows(demo, "Scheduled checkpoint syncs") == [["orders", "60 s", "95 s ago", "never", "yes", "0"]]

    assert "Last successful poll: never" in page.text[gone]
    assert "pipeline list call failed" in page.text[gone]
    assert (gone, "Pipelines by status") not in page.tables

    # healed: a newer successful checkpoint and a completed reset show on the next cycle
    sim.checkpoint("orders")
    sim.complete_reset("orders", token)
    await exporter.poll_once()
    page = await landing(exporter)
    assert page.rows(demo, "Failed checkpoints") == []
    assert "No pipeline's newest checkpoint failed." in page.text[demo]
    assert ["orders-out", "orders", "completed", "95 s"] in page.rows(demo, "Reset watches")
    assert (gone, "Scheduled checkpoint syncs") not in page.tables  # no schedule names that target


async def test_sections_of_switched_off_collectors_say_not_collected_instead_of_none() -> None:
    scenario = Scenario(pipelines=[PipelineSpec(name="orders", checkpoints=1, checkpoint_failure="disk full")])
    page = await one_cycle_page(scenario, collectors={"checkpoints": False, "connectors": False})
    (demo,) = page.h2
    assert "Not collected (collectors.checkpoints is false)." in page.text[demo]
    assert "Not collected (collectors.connectors is false)." in page.text[demo]
    assert "No pipeline's newest checkpoint failed." not in page.text[demo]
    assert page.rows(demo, "Pipelines by status") == [["Running", "1"]]


async def test_sections_whose_answers_no_emitted_family_reads_say_not_collected() -> None:
    scenario = Scenario(pipelines=[PipelineSpec(name="orders", checkpoints=1, checkpoint_failure="disk full")])
    denied = "feldera_pipeline_checkpoint_(last_.*|failed|failures_total|status_checked_timestamp_seconds)"
    page = await one_cycle_page(scenario, metrics={"denylist": [denied]})
    (demo,) = page.h2
    assert "Not collected (no metric family read from checkpoint_status is emitted)." in page.text[demo]
    assert "No connector has a fatal error." in page.text[demo]


async def test_long_sections_show_the_first_rows_and_count_the_rest() -> None:
    failing = MAX_ROWS + 3
    scenario = Scenario(
        pipelines=[PipelineSpec(name=f"p{i:03}", checkpoints=1, checkpoint_failure="disk full") for i in range(failing)]
    )
    page = await one_cycle_page(scenario)
    (demo,) = page.h2
    rows = page.rows(demo, "Failed checkpoints")
    assert [row[0] for row in rows] == [f"p{i:03}" for i in range(MAX_ROWS)]
    assert f"Failed checkpoints ({failing})" in page.text[demo]
    assert "… and 3 more (see /metrics)." in page.text[demo]
    assert page.rows(demo, "Pipelines by status") == [["Running", str(failing)]]


def _pipeline_snapshots(root: object) -> int:
    """``PipelineSnapshot`` objects reachable from ``root`` (other tests' objects do not count)."""
    seen, todo, found = {id(root)}, [root], 0
    while todo:
        for child in gc.get_referents(todo.pop()):
            if id(child) not in seen and not isinstance(child, type | types.ModuleType):
                seen.add(id(child))
                found += isinstance(child, PipelineSnapshot)
                todo.append(child)
    return found


async def test_the_exporter_keeps_no_pipeline_data_between_cycles(setup: Setup) -> None:
    """A cycle's per-pipeline data is freed once it is rendered: the next cycle is polled beside one cycle's
    data, not two (the landing page keeps a digest)."""
    snapshot = await setup.exporter.poll_once()
    assert len(snapshot.targets[0].pipelines) == 3
    assert _pipeline_snapshots(snapshot) == 3
    del snapshot  # this test's frame is reachable from the exporter too (its loop runs this task)
    assert _pipeline_snapshots(setup.exporter) == 0
    page = await landing(setup.exporter)
    assert page.rows("Target demo up env=test", "Pipelines by status") == [
        ["Paused", "1"],
        ["Running", "1"],
        ["Stopped", "1"],
    ]


async def test_a_failing_page_digest_stops_neither_the_cycle_nor_metrics(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The page keeps the cycle it last showed, with its age; /metrics follows the new one."""
    await setup.exporter.poll_once()
    setup.sim.fail_checkpoint("orders", "disk full")

    def broken(snapshot: object) -> None:
        raise RuntimeError("bug in the page\nforged line")

    monkeypatch.setattr("exporter.served.target_view", broken)
    setup.clock[0] += 300  # poll.recheck_interval: nothing else shows a failed POST /checkpoint
    await setup.exporter.poll_once()

    status, _, body = await asyncio.to_thread(get, setup.exporter.url + "/metrics")
    assert (
        status == 200
        and 'feldera_pipeline_checkpoint_failed{target="demo",env="test",pipeline_name="orders"} 1' in body
    )
    page = await landing(setup.exporter)
    assert page.rows("Target demo up env=test", "Failed checkpoints") == []  # the older cycle's
    assert "(5 min ago)" in page.text["Target demo up env=test"]
    assert "landing page not updated this cycle: RuntimeError: bug in the page\\nforged line" in caplog.messages
