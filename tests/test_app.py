"""The Exporter in-process against the simulator (and a scripted server), scraped over real HTTP."""

from __future__ import annotations

import asyncio
import gzip
import platform
import socket
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import Exporter, wants_gzip, wants_openmetrics
from exporter.config import Settings, build_settings
from exporter.plan import shard_of
from exporter.sidecar import Sidecar
from exporter.simulator import ManualClock, PipelineSpec, RelationSpec, Scenario, Simulator
from exporter.snapshot import ResetReport
from exporter.webserver import ServerLimits
from tests.conftest import (
    MakeExporter,
    ScriptedFeldera,
    eventually,
    feldera_error,
    ipv6_loopback,
    json_response,
    new_poller,
    pipeline_json,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def settings_for(url: str, **raw: Any) -> Settings:
    targets = raw.pop("targets", [{"url": url}])
    return build_settings({"web": {"listen_address": "127.0.0.1:0"}, "targets": targets, **raw}, env={})


def samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def names_with_label(found: Samples, label: str, wanted: str) -> set[str]:
    return {name for name, labels in found if (label, wanted) in labels}


def scenario() -> Scenario:
    return Scenario(
        pipelines=[
            PipelineSpec(
                name="orders",
                status="Running",
                checkpoints=2,
                tables=[RelationSpec(name="orders", connectors=["kafka-in"])],
                views=[RelationSpec(name="totals", connectors=["delta-out"])],
            ),
            PipelineSpec(name="idle", status="Stopped"),
            PipelineSpec(name="paused", status="Paused"),
        ]
    )


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(scenario(), clock=ManualClock()) as simulator:
        yield simulator


async def scrape(exporter: Exporter, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(exporter.url + "/metrics", headers=headers)


async def test_ready_is_503_until_the_first_cycle_completes(sim: Simulator, make_exporter: MakeExporter) -> None:
    exporter = await make_exporter(settings_for(sim.url))
    async with httpx.AsyncClient(base_url=exporter.url) as http:
        assert (await http.get("/-/ready")).status_code == 503
        assert (await http.get("/-/healthy")).status_code == 200
        assert not exporter.ready
        await exporter.poll_once()
        assert (await http.get("/-/ready")).status_code == 200
        assert exporter.ready


async def test_metrics_show_every_pipeline_with_target_and_pipeline_name(
    sim: Simulator, make_exporter: MakeExporter
) -> None:
    exporter = await make_exporter(settings_for(sim.url))
    await exporter.poll_once()
    found = samples((await scrape(exporter)).text)
    assert value(found, "feldera_up", target="default") == 1.0
    for name in ("orders", "idle", "paused"):
        assert names_with_label(found, "pipeline_name", name), name
    assert value(found, "feldera_exporter_polls_total", target="default", result="success") == 1.0
    assert value(found, "feldera_exporter_api_requests_total", target="default", endpoint="list_pipelines", code="200")


async def test_process_and_python_metrics_are_read_with_each_cycle(sim: Simulator, make_exporter: MakeExporter) -> None:
    exporter = await make_exporter(settings_for(sim.url))
    before = samples((await scrape(exporter)).text)
    assert value(before, "process_resident_memory_bytes") is None  # nothing is read at scrape time
    await exporter.poll_once()
    found = samples((await scrape(exporter)).text)
    resident = value(found, "process_resident_memory_bytes")
    assert resident is not None and resident > 1_000_000
    assert (value(found, "process_open_fds") or 0) >= 3  # stdin/out/err at least, plus the listening socket
    assert (value(found, "process_start_time_seconds") or 0) > 1_000_000_000
    assert value(found, "process_cpu_seconds_total") is not None
    info = [labels for name, labels in found if name == "python_info"]
    assert [dict(labels)["version"] for labels in info] == [platform.python_version()]
    assert value(found, "python_gc_collections_total", generation="0") is not None
    assert not names_with_label(found, "target", "default") & {"process_open_fds", "python_info"}


async def test_scrape_does_not_call_feldera(sim: Simulator, make_exporter: MakeExporter) -> None:
    exporter = await make_exporter(settings_for(sim.url))
    await exporter.poll_once()
    before = sim.requests()
    for _ in range(3):
        assert (await scrape(exporter)).status_code == 200
    assert sim.requests() == before


async def test_endpoints_are_asked_only_when_the_status_makes_them_meaningful(
    sim: Simulator, make_exporter: MakeExporter
) -> None:
    exporter = await make_exporter(settings_for(sim.url))
    await exporter.poll_once()
    assert sim.requests("/v0/pipelines") == 1
    assert sim.requests("/v0/pipelines/orders/stats") == 1
    assert sim.requests("/v0/pipelines/orders/checkpoint_status") == 1
    assert sim.requests("/v0/pipelines/paused/stats") == 1
    assert sim.requests("/v0/pipelines/idle/*") == 0
    assert sim.requests("/v0/pipelines/*/tables/*") == 0
    assert sim.requests("/v0/cluster_healthz") == 1


async def test_connector_errors_collector_reads_the_error_lists_from_the_stats_request(
    sim: Simulator, make_exporter: MakeExporter
) -> None:
    exporter = await make_exporter(settings_for(sim.url, collectors={"connector_errors": True}))
    snapshot = await exporter.poll_once()
    assert sim.requests("/v0/pipelines/orders/stats") == 1
    assert sim.requests("/v0/pipelines/*/connectors/*") == 0  # Feldera 0.292+: in stats?include_connector_errors
    (orders,) = [p for p in snapshot.targets[0].pipelines if p.name == "orders"]
    assert set(orders.connector_details) == {"orders.kafka-in", "totals.delta-out"}


async def test_gzip_is_served_when_accepted(sim: Simulator, make_exporter: MakeExporter) -> None:
    exporter = await make_exporter(settings_for(sim.url))
    await exporter.poll_once()
    async with (
        httpx.AsyncClient() as http,
        http.stream("GET", exporter.url + "/metrics", headers={"accept-encoding": "gzip"}) as response,
    ):
        assert response.headers["content-encoding"] == "gzip"
        compressed = b"".join([chunk async for chunk in response.aiter_raw()])
    plain = await scrape(exporter, **{"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert gzip.decompress(compressed).decode() == plain.text


async def test_openmetrics_is_served_when_preferred(sim: Simulator, make_exporter: MakeExporter) -> None:
    exporter = await make_exporter(settings_for(sim.url))
    await exporter.poll_once()
    prometheus_accept = (
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
        "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    )
    response = await scrape(exporter, accept=prometheus_accept)
    assert response.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert response.text.endswith("# EOF\n")
    families = {f.name for f in parse_openmetrics(response.text)}
    assert "feldera_up" in families
    assert "_created" not in response.text
    classic = await scrape(exporter)
    assert classic.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "_created" not in classic.text


def test_accept_negotiation_respects_q_values() -> None:
    assert wants_openmetrics("application/openmetrics-text; version=1.0.0")
    assert not wants_openmetrics("text/plain;version=0.0.4")
    assert not wants_openmetrics("")
    assert not wants_openmetrics("text/plain, application/openmetrics-text;q=0.5")
    assert not wants_openmetrics("application/openmetrics-text;q=0")
    assert wants_gzip("gzip, deflate")
    assert not wants_gzip("gzip;q=0")
    assert not wants_gzip("")
    assert wants_gzip("gzip ; q=0.5") and wants_gzip("gzip;q=1.000")


@pytest.mark.parametrize("q", ["nan", "inf", "1e3", "2", "0.0001", "\u0661", "\u00b9", "-1", "0x1", "1.5"])
def test_a_q_value_outside_rfc_9110_counts_as_not_acceptable(q: str) -> None:
    """``float`` takes ``nan``, ``inf``, ``1e3`` and Unicode digits; RFC 9110 §12.4.2 allows 0 to 1 with three ASCII
    decimals. A value outside it is read as 0, never as a preference."""
    assert not wants_gzip(f"gzip;q={q}")
    assert not wants_openmetrics(f"application/openmetrics-text;q={q}")


async def test_deleted_pipeline_vanishes_on_the_next_cycle(sim: Simulator, make_exporter: MakeExporter) -> None:
    exporter = await make_exporter(settings_for(sim.url))
    await exporter.poll_once()
    assert names_with_label(samples((await scrape(exporter)).text), "pipeline_name", "idle")
    sim.delete_pipeline("idle")
    await exporter.poll_once()
    found = samples((await scrape(exporter)).text)
    assert not names_with_label(found, "pipeline_name", "idle")
    assert names_with_label(found, "pipeline_name", "orders")


async def test_api_down_gives_up_0_and_no_pipeline_series(sim: Simulator, make_exporter: MakeExporter) -> None:
    exporter = await make_exporter(settings_for(sim.url))
    await exporter.poll_once()
    sim.add_fault(kind="status", path="/v0/pipelines", status=500)
    await exporter.poll_once()
    found = samples((await scrape(exporter)).text)
    assert value(found, "feldera_up", target="default") == 0.0
    assert not [name for name, labels in found if any(k == "pipeline_name" for k, _ in labels)]
    assert value(found, "feldera_exporter_polls_total", target="default", result="failure") == 1.0
    assert value(found, "feldera_exporter_last_poll_success_timestamp_seconds", target="default") is not None
    sim.clear_faults()
    await exporter.poll_once()
    assert value(samples((await scrape(exporter)).text), "feldera_up", target="default") == 1.0


async def test_one_pipelines_failing_endpoint_hides_nothing_else(
    feldera: ScriptedFeldera, make_exporter: MakeExporter
) -> None:
    feldera.list_pipelines(pipeline_json("bad"), pipeline_json("good"))
    feldera.routes["/v0/pipelines/bad/stats"] = feldera_error(500, "InitializationError")
    feldera.routes["/v0/pipelines/bad/checkpoint_status"] = feldera_error(503, "PipelineUnavailable", retry_after="0")
    feldera.routes["/v0/pipelines/good/stats"] = json_response({"inputs": [], "outputs": []})
    feldera.routes["/v0/pipelines/good/checkpoint_status"] = json_response({"success": 1, "failure": None})
    exporter = await make_exporter(settings_for(feldera.url, collectors={"checkpoint_sync": False, "cluster": False}))
    snapshot = await exporter.poll_once()
    by_name = {p.name: p for p in snapshot.targets[0].pipelines}
    assert by_name["bad"].stats is None and by_name["bad"].checkpoint_status is None
    assert by_name["good"].stats is not None and by_name["good"].checkpoint_status is not None
    assert snapshot.targets[0].up
    requests = {(r.endpoint, r.code): r.count for r in snapshot.targets[0].exporter.requests}
    assert requests[("stats", "500")] == 1
    assert requests[("checkpoint_status", "503")] == 1  # a 503 about the pipeline's state is not retried


async def test_one_target_down_does_not_hide_another(feldera: ScriptedFeldera, sim: Simulator) -> None:
    feldera.routes["/v0/pipelines"] = feldera_error(401, "Unauthorized")
    settings = settings_for(
        "",
        targets=[
            {"name": "broken", "url": feldera.url, "labels": {"env": "a"}},
            {"name": "sim", "url": sim.url, "labels": {"env": "b"}},
        ],
    )
    poller = new_poller(settings)
    try:
        snapshot = await poller.poll_once()
    finally:
        await poller.aclose()
    broken, ok = snapshot.targets
    assert (broken.name, broken.up, broken.pipelines, broken.labels) == ("broken", False, (), (("env", "a"),))
    assert ok.up and {p.name for p in ok.pipelines} == {"orders", "idle", "paused"}


async def test_sync_status_is_not_asked_for_an_hour_after_501(feldera: ScriptedFeldera) -> None:
    feldera.list_pipelines(pipeline_json("p"))
    feldera.routes["/v0/pipelines/p/checkpoint/sync_status"] = feldera_error(501, "EnterpriseFeature")
    now = [1000.0]
    poller = new_poller(settings_for(feldera.url, collectors={"cluster": False}), monotonic=lambda: now[0])
    try:
        await poller.poll_once()
        await poller.poll_once()
        assert feldera.paths().count("/v0/pipelines/p/checkpoint/sync_status") == 1
        now[0] += 3601
        await poller.poll_once()
        assert feldera.paths().count("/v0/pipelines/p/checkpoint/sync_status") == 2
    finally:
        await poller.aclose()


async def test_disabled_collectors_skip_their_api_calls(sim: Simulator) -> None:
    groups = ("resources", "checkpoints", "checkpoint_sync", "connectors", "connector_counters", "cluster", "server")
    off = {name: False for name in groups}
    poller = new_poller(settings_for(sim.url, collectors=off))
    try:
        await poller.poll_once()
    finally:
        await poller.aclose()
    assert sim.requests() == sim.requests("/v0/pipelines") == 1


async def test_include_exclude_and_sharding_select_pipelines(sim: Simulator) -> None:
    poller = new_poller(settings_for(sim.url, pipelines={"include": ["*d*"], "exclude": ["idle"]}))
    try:
        snapshot = await poller.poll_once()
    finally:
        await poller.aclose()
    assert {p.name for p in snapshot.targets[0].pipelines} == {"orders", "paused"}
    shard = shard_of("orders", 2)
    poller = new_poller(settings_for(sim.url, sharding={"shard": shard, "total_shards": 2}))
    try:
        snapshot = await poller.poll_once()
    finally:
        await poller.aclose()
    names = {p.name for p in snapshot.targets[0].pipelines}
    assert "orders" in names
    assert all(shard_of(n, 2) == shard for n in names)
    assert (snapshot.shard, snapshot.total_shards) == (shard, 2)


async def test_sidecar_results_are_typed_fields_and_a_failing_feature_stands_alone(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(sim.url, checkpoint_sync={"schedules": [{"pipelines": "*", "every": "1m"}]})
    sidecar = Sidecar(settings)
    assert sidecar.scheduler is not None
    poller = new_poller(settings, sidecar=sidecar)
    try:
        target = (await poller.poll_once()).targets[0]
        assert target.resets == ResetReport()
        assert target.sync is not None
        assert [p.pipeline for p in target.sync.pipelines] == sorted(p.name for p in target.pipelines)

        def broken(*args: object) -> None:
            raise RuntimeError("bug")

        monkeypatch.setattr(sidecar.scheduler, "observe", broken)
        target = (await poller.poll_once()).targets[0]
    finally:
        await poller.aclose()
    assert target.up and target.pipelines
    assert target.sync is None
    assert target.resets is not None


async def test_without_schedules_or_sidecar_the_fields_are_empty(sim: Simulator) -> None:
    settings = settings_for(sim.url)
    plain, with_sidecar = new_poller(settings), new_poller(settings, sidecar=Sidecar(settings))
    try:
        bare = (await plain.poll_once()).targets[0]
        target = (await with_sidecar.poll_once()).targets[0]
    finally:
        await plain.aclose()
        await with_sidecar.aclose()
    assert (bare.sync, bare.resets) == (None, None)
    assert target.sync is None and target.resets is not None


async def test_landing_page_links_to_metrics_and_unknown_paths_are_404(
    sim: Simulator, make_exporter: MakeExporter
) -> None:
    exporter = await make_exporter(settings_for(sim.url))
    async with httpx.AsyncClient(base_url=exporter.url) as http:
        landing = await http.get("/")
        assert landing.status_code == 200 and 'href="metrics"' in landing.text
        for path in ("/nope", "/metrics/", "/metrics/x", "/-/ready/"):
            for method in ("GET", "POST"):
                unknown = await http.request(method, path)
                assert (unknown.status_code, unknown.text) == (404, "not found\n")


@pytest.mark.parametrize("path", ["/metrics", "/-/healthy", "/-/ready", "/"])
async def test_pages_answer_get_and_head_and_405_to_other_methods(
    sim: Simulator, make_exporter: MakeExporter, path: str
) -> None:
    exporter = await make_exporter(settings_for(sim.url))
    await exporter.poll_once()
    async with httpx.AsyncClient(base_url=exporter.url) as http:
        got = await http.get(path)
        head = await http.head(path)
        refused = [await http.request(method, path) for method in ("POST", "PUT", "DELETE", "PATCH")]
    assert got.status_code == head.status_code == 200 and got.content
    assert head.content == b"" and head.headers["content-type"] == got.headers["content-type"]
    for response in refused:
        assert (response.status_code, response.headers["Allow"], response.text) == (
            405,
            "GET, HEAD",
            "method not allowed\n",
        )


@pytest.mark.slow
async def test_scrapers_that_never_read_hold_bounded_memory_and_are_dropped_at_the_deadline(
    make_exporter: MakeExporter,
) -> None:
    """40 clients ask for /metrics (13 MB plain, 0.5 MB gzip at 1,000 pipelines) and never read: each holds at most
    a slice of output, and all are dropped at the request deadline while honest scrapes are served. What the
    process allocates meanwhile is measured with ``tracemalloc`` (its peak, from before the first connection until
    the last is dropped): a copy of the output per scraper would be 40 x 13 MB."""
    fleet = Scenario(
        pipelines=[
            PipelineSpec(name=f"p{i}", tables=[RelationSpec(name="t", connectors=["c1", "c2"])]) for i in range(1000)
        ]
    )
    async with Simulator(fleet, clock=ManualClock()) as simulator:
        limits = ServerLimits(request_timeout=3.0, max_connections_per_address=64)  # 40 from one address
        exporter = await make_exporter(settings_for(simulator.url), limits=limits)
        await exporter.poll_once()
        loop = asyncio.get_running_loop()
        stuck: list[socket.socket] = []
        tracemalloc.start()
        try:
            for i in range(40):
                sock = socket.socket()
                stuck.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.setblocking(False)
                await loop.sock_connect(sock, ("127.0.0.1", exporter.port))
                encoding = b"gzip" if i % 2 else b"identity"
                await loop.sock_sendall(
                    sock, b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: " + encoding + b"\r\n\r\n"
                )
            await eventually(lambda: exporter.open_connections == 40, "every stuck scraper connected")
            async with (
                httpx.AsyncClient() as http,
                http.stream("GET", exporter.url + "/metrics", headers={"Accept-Encoding": "gzip"}) as honest,
            ):
                received = sum([len(chunk) async for chunk in honest.aiter_raw()])  # not inflated: not counted
            await eventually(lambda: exporter.open_connections == 0, "the stuck scrapers dropped", deadline=15)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            for sock in stuck:
                sock.close()
    assert (honest.status_code, received > 0) == (200, True)
    assert peak < 64 << 20, f"{peak >> 20} MiB allocated at the peak for 40 stuck scrapers"


@pytest.mark.parametrize(
    ("listen", "logged", "local"),
    [
        ("0.0.0.0:0", "all interfaces (0.0.0.0:{port}, IPv4), locally http://127.0.0.1:{port}", "127.0.0.1"),
        ("[::]:0", "all interfaces ([::]:{port}, IPv6 only), locally http://[::1]:{port}", "[::1]"),
        (":0", "all interfaces ([::]:{port}, IPv6 and IPv4), locally http://127.0.0.1:{port}", "127.0.0.1"),
        ("localhost:0", "http://127.0.0.1:{port}", "127.0.0.1"),  # the address bound, not the name asked for
    ],
)
async def test_the_logged_address_is_the_bound_one_and_url_reaches_the_endpoint(
    sim: Simulator, make_exporter: MakeExporter, caplog: pytest.LogCaptureFixture, listen: str, logged: str, local: str
) -> None:
    """Before, ``0.0.0.0``/``::`` were logged (and given as ``url``) as if one could connect to them."""
    if "::" in logged and not (socket.has_dualstack_ipv6() and ipv6_loopback()):
        pytest.skip("no IPv6 here")
    caplog.set_level("INFO", logger="exporter.app")
    exporter = await make_exporter(settings_for(sim.url, web={"listen_address": listen}))
    assert exporter.url == f"http://{local}:{exporter.port}"
    assert f"listening on {logged.format(port=exporter.port)}, polling 1 target(s)" in caplog.messages
    async with httpx.AsyncClient() as http:
        assert (await http.get(exporter.url + "/-/healthy")).status_code == 200
