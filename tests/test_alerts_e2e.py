"""End to end: simulator -> exporter -> real Prometheus (shipped rules) -> real Alertmanager -> webhook receiver.

Prometheus loads the shipped rules built with every wait divided by :data:`FOR_SCALE` (``for``, ``critical_after``,
``settle``, ``relapse_hold``; expressions, windows, labels and annotations as shipped) and Alertmanager
``exporter/mixin/alertmanager.yml`` with the same scale applied to its waits (receivers pointed at the test's
webhook; routing, grouping and inhibitions as shipped). Time-to-alert is printed. A run of failed
checkpoint_status polls (series stale in Prometheus) must not resolve the firing alert.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from exporter.app import Exporter
from exporter.config import Settings
from exporter.mixin import ALERTMANAGER_EXAMPLE
from exporter.mixin.rules import DEFAULT_CONFIG as RULES_CONFIG
from exporter.simulator import PipelineSpec, RelationSpec, Scenario, Simulator
from exporter.simulator.monitoring import stop_process
from tests.conftest import ReplyServer, Request, Response, free_port
from tests.conftest import eventually as wait_until
from tests.test_alerts import build, shipped_config

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "prometheus" / "alerts.yaml"
PROMETHEUS_BIN = shutil.which("prometheus") or "/usr/bin/prometheus"
ALERTMANAGER_BIN = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
EXPORTER_JOB = yaml.safe_load(RULES_CONFIG.read_text(encoding="utf-8"))["exporter_job"]
FOR_SCALE = 30
"""Waits are divided by this (``for`` 1m -> 2s, ``critical_after`` 30m -> 60s, Alertmanager's critical
``group_interval`` 30s -> 1s): their relations (an escalation long after the warning) stay as shipped.
``relapse_hold`` is 1m -> :data:`RELAPSE_HOLD` (1m / 30 would be 2s): it must exceed ``group_interval`` by two
evaluation intervals and a scrape's time to be stored, and this Prometheus evaluates every second, not every 0.5s."""
RELAPSE_HOLD = 4
"""Seconds: the scaled ``group_interval`` (1s), two of the test's evaluation intervals (1s) and a second to spare
for a slow scrape on a loaded machine."""
MINIMUM_WAIT = 1
DEADLINE_SECONDS = 60.0
eventually = functools.partial(wait_until, deadline=DEADLINE_SECONDS)
"""Alertmanager rounds (group_wait, evaluation) need longer than the shared default."""
_DURATION = re.compile(r"\[(\d+[smhd])(:\d+[smhd])?\]")
_FLOOR = re.compile(r"(?:(?<=:bridged, )|(?<=\[\]\)\), ))\d+(?=\))")
"""The ``floor`` in ``clamp_min(factor * interval, floor)`` of FelderaAutomaticCheckpointsFailing and of
FelderaScheduledCheckpointSyncFailing's settling."""


def scaled(duration: str, minimum: int = MINIMUM_WAIT) -> str:
    seconds = build.duration_seconds(duration, "duration")
    return "0s" if seconds == 0 else f"{max(minimum, seconds // FOR_SCALE)}s"


def fast_config(config: dict[str, Any]) -> dict[str, Any]:
    """A rule config with every wait divided by FOR_SCALE (at least 2s for a non-zero ``for``)."""
    alerts: dict[str, dict[str, str]] = {}
    for name, entry in config["alerts"].items():
        alerts[name] = {"for": scaled(entry["for"], minimum=2)}
        for key in ("critical_after", "settle", "floor"):
            if key in entry:
                alerts[name][key] = scaled(entry[key], minimum=2)
    return build.merge(config, {"alerts": alerts, "relapse_hold": scaled(config["relapse_hold"], minimum=RELAPSE_HOLD)})


def fast_rules() -> str:
    return build.render(fast_config(shipped_config()))


def fast_alertmanager(example: dict[str, Any], webhook_url: str) -> dict[str, Any]:
    """The example Alertmanager config with every receiver posting to ``webhook_url`` and every wait divided by
    FOR_SCALE (at least 1s)."""

    def fast_route(route: dict[str, Any]) -> dict[str, Any]:
        out = {k: scaled(v) if k.endswith(("_wait", "_interval")) else v for k, v in route.items()}
        if "routes" in route:
            out["routes"] = [fast_route(r) for r in route["routes"]]
        return out

    receivers = [
        {"name": r["name"], "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}
        for r in example["receivers"]
    ]
    return {**example, "route": fast_route(example["route"]), "receivers": receivers}


@dataclass
class Notification:
    received: float
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]


@dataclass
class Webhook:
    """Alertmanager webhook receiver: records every alert of every notification, with the time it arrived, and
    every notification (one POST: one message to a person) as the list of its alerts."""

    notifications: list[Notification] = field(default_factory=list)
    messages: list[list[Notification]] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        payload = json.loads(request.body)
        now = time.monotonic()
        message = [Notification(now, a["status"], a["labels"], a["annotations"]) for a in payload["alerts"]]
        self.notifications.extend(message)
        self.messages.append(message)
        return Response(status=200, body=b"ok")

    def of(self, alertname: str, status: str = "", since: float = 0.0) -> list[Notification]:
        """Every notification of ``alertname`` (with ``status``, when given) received after ``since``."""
        return [
            n
            for n in self.notifications
            if n.labels.get("alertname") == alertname and n.received >= since and (not status or n.status == status)
        ]

    def first(self, alertname: str, status: str, since: float, severity: str = "") -> Notification | None:
        """The first ``status`` notification of ``alertname`` (of ``severity``, when given) received after ``since``."""
        for note in self.notifications:
            wanted = note.labels.get("alertname") == alertname and note.status == status and note.received >= since
            if wanted and (not severity or note.labels.get("severity") == severity):
                return note
        return None

    def pipeline_alerts(self) -> set[tuple[str, str, str]]:
        """(alertname, pipeline_name, endpoint) of every pipeline alert received."""
        return {
            (n.labels["alertname"], n.labels["pipeline_name"], n.labels.get("endpoint", ""))
            for n in self.notifications
            if "pipeline_name" in n.labels
        }


def read_log(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")


@asynccontextmanager
async def process(args: list[str], log: Path, ready_url: str) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(*args, stdout=sink, stderr=sink)
    try:
        async with httpx.AsyncClient() as http:

            async def ready() -> bool:
                if proc.returncode is not None:
                    raise AssertionError(f"{args[0]} exited early:\n{read_log(log)}")
                try:
                    return (await http.get(ready_url)).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ready, f"{args[0]} to become ready")
        yield proc
    finally:
        await stop_process(proc)


@dataclass
class Stack:
    sim: Simulator
    webhook: Webhook
    prometheus_url: str


FAST_PROMETHEUS_ARGS = ("--rules.alert.resend-delay=1s",)
"""Prometheus flags of the fast chain: resend unchanged firing alerts every second."""


async def webhook_receiver(exits: AsyncExitStack, webhook: Webhook) -> str:
    receiver = ReplyServer(webhook.handle, "127.0.0.1", 0)
    await receiver.start()
    exits.push_async_callback(receiver.close)
    return f"http://127.0.0.1:{receiver.port}/alerts"


@asynccontextmanager
async def alertmanager(tmp_path: Path, webhook_url: str) -> AsyncIterator[str]:
    """The example Alertmanager configuration (waits scaled) posting to ``webhook_url``; yields its address."""
    port = free_port()
    config = tmp_path / "alertmanager.yml"
    example = yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text(encoding="utf-8"))
    config.write_text(yaml.safe_dump(fast_alertmanager(example, webhook_url)), encoding="utf-8")
    args = [
        ALERTMANAGER_BIN,
        f"--config.file={config}",
        f"--storage.path={tmp_path / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    async with process(args, tmp_path / "alertmanager.log", f"http://127.0.0.1:{port}/-/ready"):
        yield f"127.0.0.1:{port}"


@asynccontextmanager
async def prometheus(
    tmp_path: Path,
    scrape_configs: list[dict[str, Any]],
    alertmanager_address: str,
    *,
    args: tuple[str, ...] = FAST_PROMETHEUS_ARGS,
    port: int = 0,
) -> AsyncIterator[str]:
    """Prometheus scraping and evaluating every second with the fast rules; the TSDB lives in ``tmp_path``, so a
    second start on the same path and port is a restart that kept its data. Yields its URL."""
    port = port or free_port()
    rules = tmp_path / "alerts.yaml"
    rules.write_text(fast_rules(), encoding="utf-8")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules)],
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager_address]}]}]},
                "scrape_configs": scrape_configs,
            }
        ),
        encoding="utf-8",
    )
    command = [
        PROMETHEUS_BIN,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'prom-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        *args,
    ]
    async with process(command, tmp_path / "prometheus.log", f"http://127.0.0.1:{port}/-/ready"):
        yield f"http://127.0.0.1:{port}"


def static_job(*exporters: Exporter) -> dict[str, Any]:
    return {
        "job_name": EXPORTER_JOB,
        "static_configs": [{"targets": [e.url.removeprefix("http://") for e in exporters]}],
    }


def exporter_settings(*targets: tuple[str, str], interval: str = "500ms") -> Settings:
    return Settings.model_validate(
        {
            "web": {"listen_address": "127.0.0.1:0"},
            # recheck_interval: the tests fail POST /checkpoint requests that leave no other trace; the cycle asks
            # checkpoint_status again at least every second (what asks it when: tests/test_poll_what_can_change.py)
            "poll": {"interval": interval, "recheck_interval": "1s"},
            "targets": [{"name": name, "url": url} for name, url in targets],
        }
    )


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    scenario = Scenario(
        pipelines=[
            PipelineSpec(
                name="orders",
                tables=[RelationSpec(name="orders", connectors=["kafka-in"])],
                views=[RelationSpec(name="totals", connectors=["delta-out"])],
            ),
            PipelineSpec(name="archive", status="Stopped"),
        ]
    )
    webhook = Webhook()
    async with AsyncExitStack() as exits:
        sim = await exits.enter_async_context(Simulator(scenario))
        exporter = await exits.enter_async_context(Exporter(exporter_settings(("default", sim.url))))
        am = await exits.enter_async_context(alertmanager(tmp_path, await webhook_receiver(exits, webhook)))
        url = await exits.enter_async_context(prometheus(tmp_path, [static_job(exporter)], am))
        yield Stack(sim, webhook, url)


async def query(prometheus_url: str, promql: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        response = await http.get(prometheus_url + "/api/v1/query", params={"query": promql})
    response.raise_for_status()
    return list(response.json()["data"]["result"])


def test_fast_rules_only_shorten_the_waits() -> None:
    shipped = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    fast = yaml.safe_load(fast_rules())
    waits = {"relapse_hold": "[4s]", "settle": "[10s]"}
    for old_group, new_group in zip(shipped["groups"], fast["groups"], strict=True):
        for old, new in zip(old_group["rules"], new_group["rules"], strict=True):
            assert {k: v for k, v in new.items() if k not in ("for", "expr")} == {
                k: v for k, v in old.items() if k not in ("for", "expr")
            }
            assert ("for" in new) == ("for" in old)
            # expressions differ only in the scaled waits (relapse_hold 1m -> 4s, the checkpoint settle 5m -> 10s, the
            # automatic-checkpoint floor 180 -> 6 seconds)
            masked = _FLOOR.sub("", _DURATION.sub("[]", new["expr"]))
            assert masked == _FLOOR.sub("", _DURATION.sub("[]", old["expr"]))
    assert waits["relapse_hold"] in fast_rules() and waits["settle"] in fast_rules()


@pytest.mark.slow
@pytest.mark.e2e
async def test_checkpoint_failure_and_connector_fatal_error_reach_the_webhook_and_resolve_after_restart(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    sim, webhook = stack.sim, stack.webhook

    async def scraped() -> bool:
        series = await query(stack.prometheus_url, 'feldera_pipeline_status{pipeline_name="orders",status="Running"}')
        return any(s["value"][1] == "1" for s in series)

    await eventually(scraped, "Prometheus to scrape the running pipeline")

    injected = time.monotonic()
    sim.fail_checkpoint("orders", "disk full")
    sim.set_connector_fatal_error("orders", "orders.kafka-in", "broker unreachable")

    checkpoint = await eventually(
        lambda: webhook.first("FelderaCheckpointFailed", "firing", injected, "warning"),
        "FelderaCheckpointFailed at the webhook",
    )
    fatal = await eventually(
        lambda: webhook.first("FelderaConnectorFatalError", "firing", injected),
        "FelderaConnectorFatalError at the webhook",
    )
    identity = {"job": EXPORTER_JOB, "target": "default", "pipeline_name": "orders"}
    assert checkpoint.labels == {**identity, "alertname": "FelderaCheckpointFailed", "severity": "warning"}
    assert checkpoint.annotations["summary"] == "Feldera default/orders: checkpoints fail"
    assert checkpoint.annotations["description"] == (
        'Checkpoints of pipeline orders on target default fail; newest failure: "disk full". A restart would lose '
        "the work done since the last good checkpoint."
    )
    assert checkpoint.annotations["runbook_url"].endswith("docs/runbooks.md#felderacheckpointfailed")
    assert fatal.labels == {
        **identity,
        "alertname": "FelderaConnectorFatalError",
        "severity": "critical",
        "endpoint": "orders.kafka-in",
        "table": "orders",
        "connector": "kafka-in",
    }
    assert fatal.annotations["summary"] == "Feldera default/orders: connector orders.kafka-in hit a fatal error"
    assert fatal.annotations["description"] == (
        "Connector orders.kafka-in of pipeline orders on target default hit a fatal error and stopped moving data: "
        '"broker unreachable".'
    )
    assert fatal.annotations["dashboard_url"] == (
        "http://localhost:3000/d/feldera-pipeline/feldera-pipeline?var-job=feldera-exporter&var-target=default"
        "&var-pipeline_name=orders"
    )

    # Missed polls: checkpoint_status fails, the exporter omits the series, Prometheus marks it stale. The alert
    # must keep firing through the gap (no resolved notification, no new firing one).
    series = 'feldera_pipeline_checkpoint_failed{pipeline_name="orders"}'
    firing = 'ALERTS{alertname="FelderaCheckpointFailed",alertstate="firing"}'
    sim.add_fault(kind="status", path="/v0/pipelines/orders/checkpoint_status", status=500)

    async def gap_seen_while_firing() -> bool:
        gap = await query(stack.prometheus_url, f"absent({series})")
        return bool(gap) and bool(await query(stack.prometheus_url, firing))

    await eventually(gap_seen_while_firing, "Prometheus to see the gap while the alert fires")
    sim.clear_faults()
    await eventually(lambda: query(stack.prometheus_url, f"{series} == 1"), "the series to come back")
    await eventually(lambda: query(stack.prometheus_url, firing), "the alert to be firing after the gap")
    assert webhook.first("FelderaCheckpointFailed", "resolved", injected, "warning") is None

    restarted = time.monotonic()
    sim.restart_pipeline("orders")  # new incarnation: checkpoint status and connector stats start clean

    checkpoint_resolved = await eventually(
        lambda: webhook.first("FelderaCheckpointFailed", "resolved", restarted, "warning"),
        "FelderaCheckpointFailed resolved",
    )
    fatal_resolved = await eventually(
        lambda: webhook.first("FelderaConnectorFatalError", "resolved", restarted),
        "FelderaConnectorFatalError resolved",
    )
    assert checkpoint_resolved.labels == checkpoint.labels
    assert fatal_resolved.labels == fatal.labels
    # the healthy connector and the intentionally stopped pipeline raised nothing
    assert webhook.pipeline_alerts() == {
        ("FelderaCheckpointFailed", "orders", ""),
        ("FelderaConnectorFatalError", "orders", "orders.kafka-in"),
    }

    with capsys.disabled():
        print(
            f"\n[alerts e2e] poll 0.5s, scrape/eval 1s, waits / {FOR_SCALE}: time to alert "
            f"FelderaCheckpointFailed {checkpoint.received - injected:.1f}s, "
            f"FelderaConnectorFatalError {fatal.received - injected:.1f}s; time to resolve "
            f"{checkpoint_resolved.received - restarted:.1f}s / {fatal_resolved.received - restarted:.1f}s"
        )


PROCESS_ALERTS = "FelderaConnectorFatalError|FelderaCheckpointFailed|FelderaConnectorUnhealthy"


async def held(prometheus_url: str, promql: str, seconds: int = 3) -> bool:
    """``promql`` (one series) has been 1 in every scrape for ``seconds`` (rules evaluated that state meanwhile)."""
    found = await query(prometheus_url, f"min_over_time(({promql})[{seconds}s:1s]) == 1")
    return bool(found)


@pytest.mark.slow
@pytest.mark.e2e
async def test_stop_and_start_of_a_pipeline_with_a_fatal_connector_sends_nothing_for_the_old_process(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """The runbook's remedy (stop, start) must not page: no alert for the previous process while the pipeline is
    Stopping, Stopped, Provisioning, Initializing, Running before the new process reports, or after it has."""
    sim, webhook, prom = stack.sim, stack.webhook, stack.prometheus_url
    status = 'feldera_pipeline_status{{pipeline_name="orders",status="{}"}}'
    await eventually(lambda: held(prom, status.format("Running")), "Prometheus to scrape the running pipeline")
    injected = time.monotonic()
    sim.set_connector_fatal_error("orders", "orders.kafka-in", "broker unreachable")
    sim.fail_checkpoint("orders", "disk full")
    for name in ("FelderaConnectorFatalError", "FelderaCheckpointFailed"):
        await eventually(lambda name=name: webhook.first(name, "firing", injected), f"{name} at the webhook")

    stopped = time.monotonic()
    sim.set_status("orders", "Stopping")
    await eventually(lambda: held(prom, status.format("Stopping"), 2), "Prometheus to see Stopping")
    sim.stop_pipeline("orders")
    resolved = [
        await eventually(lambda name=name: webhook.first(name, "resolved", stopped), f"{name} resolved")
        for name in ("FelderaConnectorFatalError", "FelderaCheckpointFailed")
    ]
    quiet_since = max(note.received for note in resolved)
    await eventually(lambda: held(prom, status.format("Stopped")), "Prometheus to see Stopped")
    sim.set_status("orders", "Provisioning")
    await eventually(lambda: held(prom, status.format("Provisioning")), "Prometheus to see Provisioning")
    sim.set_status("orders", "Initializing")  # the new process
    await eventually(lambda: held(prom, status.format("Initializing")), "Prometheus to see Initializing")
    # Running, but the new process's stats and checkpoint status cannot be read yet
    sim.add_fault(kind="status", path="/v0/pipelines/orders/stats", status=503)
    sim.add_fault(kind="status", path="/v0/pipelines/orders/checkpoint_status", status=503)
    sim.set_status("orders", "Running")
    await eventually(lambda: held(prom, status.format("Running"), 4), "Prometheus to see Running (not reported)")
    sim.clear_faults()
    fatal = 'feldera_input_connector_fatal_error{pipeline_name="orders",endpoint="orders.kafka-in"} == 0'
    await eventually(lambda: held(prom, f"({fatal}) + 1", 4), "the new process's connector stats")

    since = int(time.monotonic() - quiet_since)
    alerts = f'ALERTS{{pipeline_name="orders",alertname=~"{PROCESS_ALERTS}"}}'
    assert await query(prom, f"count_over_time({alerts}[{since}s])") == []  # not even pending
    later = [n for n in webhook.notifications if n.received > quiet_since and n.labels.get("pipeline_name")]
    assert later == []
    with capsys.disabled():
        print(f"\n[alerts e2e] stop/start: no pending or firing process alert for orders during {since}s")


@pytest.mark.slow
@pytest.mark.e2e
async def test_intermittent_checkpoint_failures_hold_one_warning_and_a_heal_ends_it(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """Failures each followed by a success, less than ``settle`` apart: one firing notification, no resolve in
    between; once they stop, the resolve comes ``settle`` after the last one."""
    sim, webhook, prom = stack.sim, stack.webhook, stack.prometheus_url
    failures = 'feldera_pipeline_checkpoint_failures_total{pipeline_name="orders"}'
    await eventually(lambda: query(prom, f"{failures} == 0"), "Prometheus to scrape the checkpoint counters")
    started = time.monotonic()
    for count in (1, 2, 3):
        sim.fail_checkpoint("orders", "object store timeout")
        sim.checkpoint("orders")  # the next attempt succeeds: the newest attempt never shows as failed
        await eventually(lambda count=count: query(prom, f"{failures} == {count}"), f"failure {count} scraped")
        await eventually(lambda: webhook.of("FelderaCheckpointFailed", "firing", started), "the warning")
    healed = time.monotonic()
    resolved = await eventually(
        lambda: webhook.of("FelderaCheckpointFailed", "resolved", started), "the warning to end after the heal"
    )
    firing = webhook.of("FelderaCheckpointFailed", "firing", started)
    assert [n.labels["severity"] for n in firing] == ["warning"]  # one notification, no flapping
    assert len(resolved) == 1
    with capsys.disabled():
        print(
            f"\n[alerts e2e] intermittent: warning {firing[0].received - started:.1f}s after the first failure, "
            f"resolved {resolved[0].received - healed:.1f}s after the last one (settle / {FOR_SCALE})"
        )


SYNC_EVERY = 2.0
"""Seconds between the scheduled syncs of the test below: the alert's ``settle_intervals`` (3) x this is the heal's
settling time."""


@pytest.mark.slow
@pytest.mark.e2e
async def test_scheduled_syncs_failing_every_other_time_hold_one_warning_and_a_heal_ends_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """FelderaScheduledCheckpointSyncFailing at a person: the exporter's own schedule syncs every 2s and every
    other sync fails (the mode flips between slots). One firing notification, no resolve while it goes on; once
    the syncs succeed, one resolve, ``settle_intervals`` x every after the last failure."""
    scenario = Scenario(pipelines=[PipelineSpec(name="orders", checkpoints=1, sync="failure")])
    settings = exporter_settings(("default", "http://placeholder"))
    webhook = Webhook()
    name = "FelderaScheduledCheckpointSyncFailing"
    async with AsyncExitStack() as exits:
        sim = await exits.enter_async_context(Simulator(scenario))
        settings = settings.model_copy(
            update={
                "targets": [settings.targets[0].model_copy(update={"url": sim.url})],
                "checkpoint_sync": Settings.model_validate(
                    {"checkpoint_sync": {"schedules": [{"pipelines": "orders", "every": SYNC_EVERY}]}}
                ).checkpoint_sync,
            }
        )
        exporter = await exits.enter_async_context(Exporter(settings))
        am = await exits.enter_async_context(alertmanager(tmp_path, await webhook_receiver(exits, webhook)))
        prom = await exits.enter_async_context(prometheus(tmp_path, [static_job(exporter)], am))
        failures = 'sum(feldera_checkpoint_sync_schedule_failures_total{pipeline_name="orders",reason="failed"})'
        await eventually(lambda: query(prom, f"{failures} >= 1"), "the first failed sync scraped")
        started = time.monotonic()
        posts = sim.requests("/v0/pipelines/orders/checkpoint/sync", "POST")
        for mode in ("success", "failure") * 4:  # flip between slots: the next sync succeeds, the one after fails
            await eventually(
                lambda posts=posts: sim.requests("/v0/pipelines/orders/checkpoint/sync", "POST") > posts, "a sync"
            )
            posts = sim.requests("/v0/pipelines/orders/checkpoint/sync", "POST")
            await asyncio.sleep(SYNC_EVERY / 2)  # after the exporter has read this sync's outcome
            sim.checkpoint("orders")  # the next sync is of a new checkpoint (a new uuid), as a running pipeline's are
            sim.set_sync_mode("orders", mode)
        sim.set_sync_mode("orders", "success")
        healed = time.monotonic()
        assert webhook.of(name, "firing", started), "the warning while every other sync fails"
        resolved = await eventually(lambda: webhook.of(name, "resolved", started), "the warning to end after the heal")
        counted = await query(prom, f"{failures}")
    messages = [m for m in webhook.messages if any(n.labels["alertname"] == name for n in m)]
    assert [[n.status for n in m] for m in messages] == [["firing"], ["resolved"]]  # what a person gets
    assert float(counted[0]["value"][1]) >= 5  # the failures went on while it held
    with capsys.disabled():
        print(
            f"\n[alerts e2e] scheduled syncs failing every other time ({SYNC_EVERY:g}s): 2 messages; resolved "
            f"{resolved[0].received - healed:.1f}s after the heal (settle_intervals 3 x {SYNC_EVERY:g}s)"
        )


def _alert(name: str, severity: str, **labels: str) -> dict[str, str]:
    return {"alertname": name, "severity": severity, **labels}


INHIBITION_CASES: list[tuple[dict[str, str], bool]] = [
    # (alert labels, inhibited?) -- all posted together; each case uses its own pipeline or target
    (_alert("FelderaConnectorFatalError", "critical", pipeline_name="p1", endpoint="t.a"), False),
    (_alert("FelderaConnectorUnhealthy", "warning", pipeline_name="p1", endpoint="t.a"), True),
    (_alert("FelderaConnectorErrorsIncreasing", "warning", pipeline_name="p1", endpoint="t.a"), True),
    (_alert("FelderaConnectorUnhealthy", "warning", pipeline_name="p1", endpoint="t.b"), False),
    (_alert("FelderaPipelineDeploymentError", "critical", pipeline_name="p2"), False),
    (_alert("FelderaConnectorFatalError", "critical", pipeline_name="p2", endpoint="t.a"), True),
    (_alert("FelderaCheckpointFailed", "warning", pipeline_name="p2"), True),
    (_alert("FelderaCheckpointFailed", "critical", pipeline_name="p3"), False),
    (_alert("FelderaCheckpointFailed", "warning", pipeline_name="p3"), True),
    (_alert("FelderaCheckpointFailed", "warning", pipeline_name="p4"), False),
    (_alert("FelderaClusterServiceUnhealthy", "critical", service="runner"), False),
    (_alert("FelderaClusterServiceUnhealthy", "warning", service="compiler"), False),
    (_alert("FelderaApiUnreachable", "critical", target="other"), False),
    (_alert("FelderaConnectorFatalError", "critical", target="other", pipeline_name="p1"), True),
    (_alert("FelderaExporterDown", "critical", target="third", instance="exp:10027"), False),
    (_alert("FelderaExporterPollsStale", "warning", target="third", instance="exp:10027"), True),
    (_alert("FelderaExporterPollsStale", "warning", target="third", instance="exp2:10027"), False),
]


@pytest.mark.e2e
async def test_shipped_inhibitions_in_a_real_alertmanager(tmp_path: Path) -> None:
    """One incident, one page: the example config's inhibitions, as a real Alertmanager applies them."""
    identity = {"job": EXPORTER_JOB, "target": "prod"}
    posted = [{"labels": {**identity, **labels}, "annotations": {}} for labels, _ in INHIBITION_CASES]
    expected = {frozenset({**identity, **labels}.items()): inhibited for labels, inhibited in INHIBITION_CASES}
    seen: dict[frozenset[tuple[str, str]], bool] = {}
    async with alertmanager(tmp_path, "http://127.0.0.1:9/unused") as address, httpx.AsyncClient() as http:
        base = f"http://{address}/api/v2/alerts"
        (await http.post(base, json=posted)).raise_for_status()

        async def as_expected() -> bool:  # inhibition marks follow the alerts' processing: poll until settled
            alerts = (await http.get(base)).json()
            seen.clear()
            seen.update({frozenset(a["labels"].items()): bool(a["status"]["inhibitedBy"]) for a in alerts})
            return seen == expected

        try:
            await eventually(as_expected, "Alertmanager to apply the inhibitions", deadline=15)
        except AssertionError:
            assert seen == expected


@pytest.mark.slow
@pytest.mark.e2e
async def test_feldera_as_it_really_behaves_automatic_checkpoints_page_resets_and_versions_do_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 23, end to end with the shipped rules (waits scaled, the automatic-checkpoint floor too: 3m -> 6s):
    an Enterprise target whose pipelines report ``0.340.0+enterprise.1a2b3c`` where /v0/config says ``0.340.0``, one
    of them fault tolerant with automatic checkpoints every second that start failing (Feldera only logs that); an
    open-source target (0.337: no reset endpoint) with a watched reset, whose pipeline can never checkpoint
    (``EnterpriseFeature``) and has no fault tolerance (the open-source build refuses it): no checkpoint alert."""
    ft = {"fault_tolerance": {"model": "exactly_once", "checkpoint_interval_secs": 1}}
    enterprise = Scenario.model_validate(
        {
            "platform_version": "0.340.0",
            "platform_version_suffix": "1a2b3c",
            "pipelines": [
                {"name": "orders", "checkpoints": 1, "runtime_config": ft},
                {"name": "plain", "checkpoints": 1},
            ],
        }
    )
    oss = Scenario.model_validate({"edition": "community", "pipelines": [{"name": "orders"}]})
    webhook = Webhook()
    async with AsyncExitStack() as exits:
        sim = await exits.enter_async_context(Simulator(enterprise))
        oss_sim = await exits.enter_async_context(Simulator(oss))
        exporter = await exits.enter_async_context(Exporter(exporter_settings(("ee", sim.url), ("oss", oss_sim.url))))
        assert exporter.sidecar.resets is not None
        await exporter.sidecar.resets.register("orders", oss_sim.issue_reset_token("orders"), "out", "oss")
        am = await exits.enter_async_context(alertmanager(tmp_path, await webhook_receiver(exits, webhook)))
        prom = await exits.enter_async_context(prometheus(tmp_path, [static_job(exporter)], am))

        healthy = time.monotonic()
        checkpoints = 'feldera_pipeline_storage_newest_checkpoint_first_seen_timestamp_seconds{pipeline_name="orders"}'
        # 8 new checkpoints seen within 10 s: a healthy stretch longer than the floor (6 s), which must not fire
        await eventually(lambda: query(prom, f"changes({checkpoints}[10s]) >= 8"), "automatic checkpoints scraped")
        await eventually(
            lambda: query(prom, 'feldera_output_reset_watch_status{target="oss",status="unsupported"} == 1'),
            "the watch on the open-source server to be unsupported",
        )
        injected = time.monotonic()
        sim.set_automatic_checkpoints("orders", "failed to write checkpoint: No space left on device (os error 28)")
        fired = await eventually(
            lambda: webhook.first("FelderaAutomaticCheckpointsFailing", "firing", injected, "warning"),
            "FelderaAutomaticCheckpointsFailing at the webhook",
        )
        assert (fired.labels["target"], fired.labels["pipeline_name"]) == ("ee", "orders")
        assert webhook.first("FelderaAutomaticCheckpointsFailing", "firing", 0.0) is fired  # not before the fault
        told = await eventually(
            lambda: webhook.first("FelderaOutputResetUnsupported", "firing", 0.0, "info"),
            "FelderaOutputResetUnsupported (info) at the webhook",
        )
        assert (told.labels["target"], told.labels["watch"]) == ("oss", "out")
        since = int(time.monotonic() - healthy) + 2
        quiet = "FelderaOutputResetNeedsReissue|FelderaOutputResetStuck|FelderaPipelineRuntimeOutdated"
        assert await query(prom, f'count_over_time(ALERTS{{alertname=~"{quiet}"}}[{since}s])') == []
        oss_quiet = "FelderaAutomaticCheckpointsFailing|FelderaCheckpointFailed|FelderaPipelineMetricsMissing"
        assert await query(prom, f'count_over_time(ALERTS{{target="oss",alertname=~"{oss_quiet}"}}[{since}s])') == []
        never = 'feldera_pipeline_checkpoint_permanent_errors{target="oss",reason="EnterpriseFeature"} == 1'
        assert [r["metric"]["pipeline_name"] for r in await query(prom, never)] == ["orders"]
        assert await query(prom, 'feldera_pipeline_fault_tolerance{target="oss",model="none"} == 1') != []
        drift = await query(prom, 'feldera_pipeline_runtime_outdated{target="ee"}')
        assert sorted((d["metric"]["pipeline_name"], d["value"][1]) for d in drift) == [("orders", "0"), ("plain", "0")]
        assert not [n for n in webhook.notifications if n.labels.get("pipeline_name") == "plain"]
    with capsys.disabled():
        print(
            f"\n[alerts e2e] automatic checkpoints every 1s, floor 6s (3m / {FOR_SCALE}): "
            "FelderaAutomaticCheckpointsFailing at the webhook "
            f"{fired.received - injected:.1f}s after they began to fail"
        )
