"""End to end: simulator -> exporter -> real Prometheus (shipped rules) -> real Alertmanager -> webhook receiver.

Prometheus loads a variant of ``prometheus/alerts.yaml`` derived in code (every ``for:`` shortened, nothing else
changed) and Alertmanager a variant of ``exporter/mixin/alertmanager.yml`` (receivers pointed at the test's webhook,
waits shortened; routing, grouping and inhibitions as shipped). Time-to-alert is printed. A run of failed
checkpoint_status polls (series stale in Prometheus) must not resolve the firing alert.
"""

from __future__ import annotations

import asyncio
import functools
import json
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
from tests.conftest import ReplyServer, Request, Response, free_port
from tests.conftest import eventually as wait_until
from tests.test_alerts import build

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "prometheus" / "alerts.yaml"
PROMETHEUS_BIN = shutil.which("prometheus") or "/usr/bin/prometheus"
ALERTMANAGER_BIN = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
EXPORTER_JOB = yaml.safe_load(RULES_CONFIG.read_text(encoding="utf-8"))["exporter_job"]
SHORT_FOR = "2s"
FOR_SCALE = 30
"""``for:`` durations are divided by this (1m -> 2s, 30m -> 60s): an escalation still comes long after the warning."""
DEADLINE_SECONDS = 60.0
eventually = functools.partial(wait_until, deadline=DEADLINE_SECONDS)
"""Alertmanager rounds (group_wait, evaluation) need longer than the shared default."""


def fast_rules(shipped: dict[str, Any]) -> dict[str, Any]:
    """The shipped rule file with every ``for:`` divided by FOR_SCALE (at least SHORT_FOR); expressions, windows,
    labels and annotations untouched (so gap_window still holds the previous process's samples in a restart)."""
    minimum = build.duration_seconds(SHORT_FOR, "for")

    def fast(rule: dict[str, Any]) -> dict[str, Any]:
        if "for" not in rule:
            return dict(rule)
        return {**rule, "for": f"{max(minimum, build.duration_seconds(rule['for'], 'for') // FOR_SCALE)}s"}

    return {"groups": [{**group, "rules": [fast(rule) for rule in group["rules"]]} for group in shipped["groups"]]}


def fast_alertmanager(example: dict[str, Any], webhook_url: str) -> dict[str, Any]:
    """The example Alertmanager config with every receiver posting to ``webhook_url`` and 1s grouping waits."""

    def fast_route(route: dict[str, Any]) -> dict[str, Any]:
        out = {**route, "group_wait": "1s", "group_interval": "1s"}
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
    """Alertmanager webhook receiver: records every alert of every notification, with the time it arrived."""

    notifications: list[Notification] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        payload = json.loads(request.body)
        now = time.monotonic()
        for alert in payload["alerts"]:
            self.notifications.append(Notification(now, alert["status"], alert["labels"], alert["annotations"]))
        return Response(status=200, body=b"ok")

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
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


@dataclass
class Stack:
    sim: Simulator
    webhook: Webhook
    prometheus_url: str


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
    async with AsyncExitStack() as stack:
        sim = await stack.enter_async_context(Simulator(scenario))
        settings = Settings.model_validate(
            {
                "web": {"listen_address": "127.0.0.1:0"},
                "poll": {"interval": "500ms"},
                "targets": [{"name": "default", "url": sim.url}],
            }
        )
        exporter = await stack.enter_async_context(Exporter(settings))
        receiver = ReplyServer(webhook.handle, "127.0.0.1", 0)
        await receiver.start()
        stack.push_async_callback(receiver.close)

        am_port, prom_port = free_port(), free_port()
        am_config = tmp_path / "alertmanager.yml"
        example = yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text(encoding="utf-8"))
        webhook_url = f"http://127.0.0.1:{receiver.port}/alerts"
        am_config.write_text(yaml.safe_dump(fast_alertmanager(example, webhook_url)), encoding="utf-8")
        await stack.enter_async_context(
            process(
                [
                    ALERTMANAGER_BIN,
                    f"--config.file={am_config}",
                    f"--storage.path={tmp_path / 'am-data'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",
                ],
                tmp_path / "alertmanager.log",
                f"http://127.0.0.1:{am_port}/-/ready",
            )
        )

        rules = tmp_path / "alerts.yaml"
        rules.write_text(yaml.safe_dump(fast_rules(yaml.safe_load(RULES.read_text(encoding="utf-8")))))
        prom_config = tmp_path / "prometheus.yml"
        prom_config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(rules)],
                    "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
                    "scrape_configs": [
                        {
                            "job_name": EXPORTER_JOB,
                            "static_configs": [{"targets": [exporter.url.removeprefix("http://")]}],
                        }
                    ],
                }
            ),
            encoding="utf-8",
        )
        await stack.enter_async_context(
            process(
                [
                    PROMETHEUS_BIN,
                    f"--config.file={prom_config}",
                    f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                    "--rules.alert.resend-delay=1s",
                ],
                tmp_path / "prometheus.log",
                f"http://127.0.0.1:{prom_port}/-/ready",
            )
        )
        yield Stack(sim, webhook, f"http://127.0.0.1:{prom_port}")


async def query(prometheus_url: str, promql: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        response = await http.get(prometheus_url + "/api/v1/query", params={"query": promql})
    response.raise_for_status()
    return list(response.json()["data"]["result"])


def test_fast_rules_only_shorten_for() -> None:
    shipped = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    fast = fast_rules(shipped)
    for old_group, new_group in zip(shipped["groups"], fast["groups"], strict=True):
        for old, new in zip(old_group["rules"], new_group["rules"], strict=True):
            assert {k: v for k, v in new.items() if k != "for"} == {k: v for k, v in old.items() if k != "for"}
            assert ("for" in new) == ("for" in old)


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
    assert checkpoint.labels == {
        **identity,
        "alertname": "FelderaCheckpointFailed",
        "severity": "warning",
        "instance": checkpoint.labels["instance"],
    }
    assert checkpoint.annotations["description"] == (
        "Checkpoints of pipeline orders on target default fail (the newest attempt failed, or several failed within "
        "the last hour); a restart would lose the work done since the last good checkpoint."
    )
    assert checkpoint.annotations["runbook_url"].endswith("docs/runbooks.md#felderacheckpointfailed")
    assert fatal.labels == {
        **identity,
        "alertname": "FelderaConnectorFatalError",
        "severity": "critical",
        "instance": checkpoint.labels["instance"],
        "endpoint": "orders.kafka-in",
        "table": "orders",
        "connector": "kafka-in",
    }
    assert fatal.annotations["description"] == (
        "Connector orders.kafka-in of pipeline orders on target default hit a fatal error and stopped moving data."
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
            f"\n[alerts e2e] poll 0.5s, scrape/eval 1s, for 1m -> {SHORT_FOR}, group_wait 1s: time to alert "
            f"FelderaCheckpointFailed {checkpoint.received - injected:.1f}s, "
            f"FelderaConnectorFatalError {fatal.received - injected:.1f}s; time to resolve "
            f"{checkpoint_resolved.received - restarted:.1f}s / {fatal_resolved.received - restarted:.1f}s"
        )


PROCESS_ALERTS = "FelderaConnectorFatalError|FelderaCheckpointFailed|FelderaConnectorUnhealthy"


async def held(prometheus_url: str, promql: str, seconds: int = 3) -> bool:
    """``promql`` (one series) has been 1 in every scrape for ``seconds`` (rules evaluated that state meanwhile)."""
    found = await query(prometheus_url, f"min_over_time(({promql})[{seconds}s:1s]) == 1")
    return bool(found)


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


@pytest.mark.e2e
async def test_intermittent_checkpoint_failures_fire_although_every_failure_is_followed_by_a_success(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    sim, webhook, prom = stack.sim, stack.webhook, stack.prometheus_url
    failures = 'feldera_pipeline_checkpoint_failures_total{pipeline_name="orders"}'
    await eventually(lambda: query(prom, f"{failures} == 0"), "Prometheus to scrape the checkpoint counters")
    started = time.monotonic()
    for count in (1, 2, 3):
        sim.fail_checkpoint("orders", "object store timeout")
        sim.checkpoint("orders")  # the next attempt succeeds: the newest attempt never shows as failed
        await eventually(lambda count=count: query(prom, f"{failures} == {count}"), f"failure {count} scraped")
        assert webhook.first("FelderaCheckpointFailed", "firing", started) is None or count == 3
    fired = await eventually(
        lambda: webhook.first("FelderaCheckpointFailed", "firing", started), "FelderaCheckpointFailed at the webhook"
    )
    assert fired.labels["severity"] == "warning" and fired.labels["pipeline_name"] == "orders"
    window = int(time.monotonic() - started) + 1
    newest = f'max_over_time(feldera_pipeline_checkpoint_failed{{pipeline_name="orders"}}[{window}s])'
    assert [s["value"][1] for s in await query(prom, newest)] == ["0"]
    with capsys.disabled():
        print(f"\n[alerts e2e] intermittent: fired {fired.received - started:.1f}s after the first of 3 failures")


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
]


@pytest.mark.e2e
async def test_shipped_inhibitions_in_a_real_alertmanager(tmp_path: Path) -> None:
    """One incident, one page: the example config's inhibitions, as a real Alertmanager applies them."""
    port = free_port()
    config = tmp_path / "alertmanager.yml"
    example = yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text(encoding="utf-8"))
    config.write_text(yaml.safe_dump(fast_alertmanager(example, "http://127.0.0.1:9/unused")), encoding="utf-8")
    args = [
        ALERTMANAGER_BIN,
        f"--config.file={config}",
        f"--storage.path={tmp_path / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    base = f"http://127.0.0.1:{port}/api/v2/alerts"
    identity = {"job": EXPORTER_JOB, "instance": "exp:10027", "target": "prod"}
    posted = [{"labels": {**identity, **labels}, "annotations": {}} for labels, _ in INHIBITION_CASES]
    expected = {frozenset({**identity, **labels}.items()): inhibited for labels, inhibited in INHIBITION_CASES}
    seen: dict[frozenset[tuple[str, str]], bool] = {}
    ready = f"http://127.0.0.1:{port}/-/ready"
    async with process(args, tmp_path / "alertmanager.log", ready), httpx.AsyncClient() as http:
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
