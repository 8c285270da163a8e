"""What reaches a person (issue 27), end to end: simulator -> exporter -> real Prometheus -> real Alertmanager ->
webhook, with the shipped rules and routing at the waits of :mod:`tests.test_alerts_e2e` (every wait divided by
FOR_SCALE, their relations as shipped):

- a restart that did not fix a fatal error notifies again, one that did sends the resolve;
- sixteen pipelines of one target failing together make at most two notifications, each listing them;
- under the Prometheus Operator's relabelling (the shipped ServiceMonitor) the exporter's own ``endpoint``,
  ``target`` and ``pipeline_name`` reach the rules, and an exporter rollout neither duplicates nor re-notifies;
- a Prometheus restart with its TSDB kept (as long, scaled, as ten minutes) re-pages nothing with the shipped
  flags, and does with Prometheus's defaults (the control that shows the test can fail).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from exporter.app import Exporter
from exporter.mixin import rules as build
from exporter.simulator import PipelineSpec, RelationSpec, Scenario, Simulator
from tests.test_alerts_e2e import (
    EXPORTER_JOB,
    RELAPSE_HOLD,
    Webhook,
    alertmanager,
    eventually,
    exporter_settings,
    held,
    prometheus,
    query,
    scaled,
    static_job,
    webhook_receiver,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
SERVICE_MONITOR = ROOT / "deploy" / "kubernetes" / "monitoring" / "servicemonitor.yaml"
FATAL = "FelderaConnectorFatalError"
CHECKPOINT = "FelderaCheckpointFailed"
ENDPOINT = "events.kafka-in"


def scaled_seconds(duration: str) -> int:
    """A shipped wait as the test waits it (divided by FOR_SCALE), in seconds."""
    return int(scaled(duration).removesuffix("s"))


def pipeline(name: str) -> PipelineSpec:
    return PipelineSpec(name=name, tables=[RelationSpec(name="events", connectors=["kafka-in"])])


@dataclass
class Chain:
    sim: Simulator
    webhook: Webhook
    prometheus_url: str
    alertmanager_url: str
    exits: AsyncExitStack


@asynccontextmanager
async def chain(tmp_path: Path, names: list[str]) -> AsyncIterator[Chain]:
    webhook = Webhook()
    async with AsyncExitStack() as exits:
        sim = await exits.enter_async_context(Simulator(Scenario(pipelines=[pipeline(n) for n in names])))
        exporter = await exits.enter_async_context(Exporter(exporter_settings(("prod", sim.url))))
        am = await exits.enter_async_context(alertmanager(tmp_path, await webhook_receiver(exits, webhook)))
        url = await exits.enter_async_context(prometheus(tmp_path, [static_job(exporter)], am))
        yield Chain(sim, webhook, url, f"http://{am}", exits)


STATUS = 'feldera_pipeline_status{{pipeline_name="{}",status="{}"}}'


async def restart(c: Chain, name: str) -> None:
    """Stop and start ``name`` as Feldera does it, each status long enough for Prometheus to see it."""
    for status in ("Stopping", "Stopped", "Provisioning", "Initializing", "Running"):
        if status == "Stopped":
            c.sim.stop_pipeline(name)
        else:
            c.sim.set_status(name, status)
        await eventually(lambda s=status: held(c.prometheus_url, STATUS.format(name, s), 2), f"{name} {status}")


async def test_a_restart_that_did_not_fix_a_fatal_error_notifies_again_and_one_that_did_sends_the_resolve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On the critical route (the fatal error) and on the warning route (a failed checkpoint, which fires again as
    soon as the new process's checkpoint fails): each route's group_interval plus two evaluation intervals is at most
    relapse_hold, so the resolve of the restart always meets a flush, and the resolve and the relapse are each told,
    never merged into silence within one group_interval."""
    async with chain(tmp_path, ["relapsing", "fixed"]) as c:
        for name in ("relapsing", "fixed"):
            await eventually(lambda n=name: held(c.prometheus_url, STATUS.format(n, "Running")), "Running scraped")
        injected = time.monotonic()
        for name in ("relapsing", "fixed"):
            c.sim.set_connector_fatal_error(name, ENDPOINT, "broker unreachable")
        c.sim.fail_checkpoint("relapsing", "disk full")

        def told(alert: str, status: str, name: str, since: float) -> list[Any]:
            # on its own route: the failed checkpoint's warning, not its escalation after critical_after
            severity = "critical" if alert == FATAL else "warning"
            return [
                n
                for n in c.webhook.of(alert, status, since)
                if n.labels["pipeline_name"] == name and n.labels["severity"] == severity
            ]

        def fired(name: str, since: float, alert: str = FATAL) -> list[Any]:
            return told(alert, "firing", name, since)

        for name in ("relapsing", "fixed"):
            await eventually(lambda n=name: fired(n, injected), f"{name}'s fatal error at the webhook")
        await eventually(lambda: fired("relapsing", injected, CHECKPOINT), "relapsing's failed checkpoint")

        restarted = time.monotonic()
        # relapsing restarts quickly (a new process seen Initializing for one scrape) and fails at once again: the
        # resolve must still be sent before the relapse (group_interval + 2 x evaluation <= relapse_hold); fixed
        # restarts slowly
        c.sim.restart_pipeline("relapsing", status="Initializing")
        initializing = STATUS.format("relapsing", "Initializing") + " == 1"
        await eventually(lambda: query(c.prometheus_url, initializing), "relapsing seen Initializing")
        c.sim.set_status("relapsing", "Running")
        c.sim.set_connector_fatal_error("relapsing", ENDPOINT, "broker unreachable")  # the new process fails too
        c.sim.fail_checkpoint("relapsing", "disk full")
        await restart(c, "fixed")

        def resolved(name: str, alert: str = FATAL) -> list[Any]:
            return told(alert, "resolved", name, restarted)

        # a message lists every alert of its group: the firing ones count only after the pipeline's own resolve
        first_resolve = (await eventually(lambda: resolved("relapsing"), "the resolve of relapsing's restart"))[0]
        again = await eventually(lambda: fired("relapsing", first_resolve.received), "the relapse notified again")
        warning_resolve = (await eventually(lambda: resolved("relapsing", CHECKPOINT), "the warning's resolve"))[0]
        await eventually(lambda: fired("relapsing", warning_resolve.received, CHECKPOINT), "the warning again")
        fixed = (await eventually(lambda: resolved("fixed"), "the resolve of fixed's restart"))[0]
        await asyncio.sleep(RELAPSE_HOLD + 3 * scaled_seconds("30s"))  # a re-fire would be told by now
        assert fired("fixed", fixed.received) == []
        with capsys.disabled():
            print(
                f"\n[page e2e] relapse notified {again[0].received - restarted:.1f}s after the restart began "
                f"(relapse_hold {RELAPSE_HOLD}s, group_interval {scaled_seconds('30s')}s)"
            )


async def test_sixteen_pipelines_failing_together_make_at_most_two_notifications_listing_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = [f"p{i:02d}" for i in range(16)]
    async with chain(tmp_path, names) as c:
        await eventually(
            lambda: query(c.prometheus_url, f'count(feldera_pipeline_status{{status="Running"}} == 1) == {len(names)}'),
            "all pipelines scraped",
        )
        injected = time.monotonic()
        for name in names:
            c.sim.set_connector_fatal_error(name, ENDPOINT, f"{name}: broker unreachable")

        def paged() -> set[str]:
            return {n.labels["pipeline_name"] for n in c.webhook.of(FATAL, "firing", injected)}

        await eventually(lambda: paged() == set(names), "every pipeline at the webhook")
        await asyncio.sleep(3 * scaled_seconds("1m"))  # a group_interval more: a late straggler would show now
        messages = [m for m in c.webhook.messages if any(n.labels["alertname"] == FATAL for n in m)]
        assert 1 <= len(messages) <= 2, [[n.labels["pipeline_name"] for n in m] for m in messages]
        for message in messages:
            for note in message:
                assert note.labels["endpoint"] == ENDPOINT and note.labels["target"] == "prod"
                name = note.labels["pipeline_name"]
                assert note.annotations["summary"] == f"Feldera prod/{name}: connector {ENDPOINT} hit a fatal error"
                assert f'"{name}: broker unreachable"' in note.annotations["description"]
        with capsys.disabled():
            print(f"\n[page e2e] 16 pipelines failing together: {len(messages)} notification(s)")


# ---- the Prometheus Operator --------------------------------------------------------------------------------


def operator_scrape_config(monitor: dict[str, Any], namespace: str, sd_file: Path) -> dict[str, Any]:
    """The scrape config the Prometheus Operator generates for endpoint 0 of a ServiceMonitor (prometheus-operator
    pkg/prometheus/promcfg.go, generateServiceMonitorConfig; its testdata HonorLabelsOverriding.golden shows the
    output), with file_sd standing in for kubernetes_sd (role endpoints): the targets carry the same
    ``__meta_kubernetes_*`` labels, so the operator's relabelling runs unchanged. Sharding rules left out (one
    shard)."""
    spec = monitor["spec"]
    endpoint = spec["endpoints"][0]
    relabel: list[dict[str, Any]] = [{"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"}]
    for label, value in spec["selector"]["matchLabels"].items():
        name = re.sub(r"[^a-zA-Z0-9_]", "_", label)
        relabel.append(
            {
                "action": "keep",
                "source_labels": [
                    f"__meta_kubernetes_service_label_{name}",
                    f"__meta_kubernetes_service_labelpresent_{name}",
                ],
                "regex": f"({value});true",
            }
        )
    relabel += [
        {"action": "keep", "source_labels": ["__meta_kubernetes_endpoint_port_name"], "regex": endpoint["port"]},
        {
            "source_labels": [
                "__meta_kubernetes_endpoint_address_target_kind",
                "__meta_kubernetes_endpoint_address_target_name",
            ],
            "separator": ";",
            "regex": "Pod;(.*)",
            "replacement": "${1}",
            "target_label": "pod",
        },
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
        {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"},
        {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job", "replacement": "${1}"},
    ]
    if spec.get("jobLabel"):
        name = re.sub(r"[^a-zA-Z0-9_]", "_", spec["jobLabel"])
        relabel.append(
            {
                "source_labels": [f"__meta_kubernetes_service_label_{name}"],
                "target_label": "job",
                "regex": "(.+)",
                "replacement": "${1}",
            }
        )
    relabel.append({"target_label": "endpoint", "replacement": endpoint["port"]})
    return {
        "job_name": f"serviceMonitor/{namespace}/{monitor['metadata']['name']}/0",
        "honor_labels": bool(endpoint.get("honorLabels", False)),
        "metrics_path": endpoint["path"],
        "file_sd_configs": [{"files": [str(sd_file)], "refresh_interval": "1s"}],
        "relabel_configs": relabel,
    }


def pod_target(exporter: Exporter, pod: str, namespace: str, monitor: dict[str, Any]) -> dict[str, Any]:
    """What kubernetes_sd (role endpoints) says of one exporter pod behind the shipped Service."""
    service_labels = {
        f"__meta_kubernetes_service_label_{re.sub(r'[^a-zA-Z0-9_]', '_', k)}": v
        for k, v in monitor["spec"]["selector"]["matchLabels"].items()
    }
    present = {k.replace("_label_", "_labelpresent_", 1): "true" for k in service_labels}
    return {
        "targets": [exporter.url.removeprefix("http://")],
        "labels": {
            "__meta_kubernetes_namespace": namespace,
            "__meta_kubernetes_service_name": "feldera-exporter",
            **service_labels,
            **present,
            "__meta_kubernetes_endpoint_port_name": monitor["spec"]["endpoints"][0]["port"],
            "__meta_kubernetes_endpoint_address_target_kind": "Pod",
            "__meta_kubernetes_endpoint_address_target_name": pod,
            "__meta_kubernetes_pod_name": pod,
            "__meta_kubernetes_pod_container_name": "feldera-exporter",
            "__meta_kubernetes_pod_phase": "Running",
        },
    }


def write_targets(path: Path, groups: list[dict[str, Any]]) -> None:
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(groups), encoding="utf-8")
    staging.replace(path)  # Prometheus must never read half a file


async def alerts_in_alertmanager(url: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{url}/api/v2/alerts")
    response.raise_for_status()
    return list(response.json())


async def test_labels_survive_the_prometheus_operator_and_an_exporter_rollout_changes_no_alert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (monitor,) = [d for d in yaml.safe_load_all(SERVICE_MONITOR.read_text()) if d]
    namespace = "monitoring"
    sd_file = tmp_path / "targets.json"
    webhook = Webhook()
    async with AsyncExitStack() as exits:
        sim = await exits.enter_async_context(Simulator(Scenario(pipelines=[pipeline("orders")])))
        old = await exits.enter_async_context(Exporter(exporter_settings(("prod", sim.url))))
        write_targets(sd_file, [pod_target(old, "feldera-exporter-7d9f-aaaaa", namespace, monitor)])
        am = await exits.enter_async_context(alertmanager(tmp_path, await webhook_receiver(exits, webhook)))
        scrape = operator_scrape_config(monitor, namespace, sd_file)
        prom = await exits.enter_async_context(prometheus(tmp_path, [scrape], am))

        fatal = f'feldera_input_connector_fatal_error{{pipeline_name="orders",endpoint="{ENDPOINT}"}}'
        series = await eventually(lambda: query(prom, fatal), "the operator-relabelled series")
        labels = series[0]["metric"]
        assert labels["job"] == EXPORTER_JOB  # jobLabel
        assert (labels["namespace"], labels["service"], labels["container"]) == (
            namespace,
            "feldera-exporter",
            "feldera-exporter",
        )
        assert (labels["target"], labels["pipeline_name"], labels["endpoint"]) == ("prod", "orders", ENDPOINT)
        assert await query(prom, '{exported_endpoint!=""}') == []
        assert await query(prom, 'feldera_pipeline_status{endpoint="metrics",pipeline_name="orders"} == 1')

        injected = time.monotonic()
        sim.set_connector_fatal_error("orders", ENDPOINT, "broker unreachable")
        sim.set_connector_health("orders", ENDPOINT, "Unhealthy", "retrying")
        page = await eventually(lambda: webhook.of(FATAL, "firing", injected), "the page")
        assert page[0].labels == {
            "alertname": FATAL,
            "severity": "critical",
            "job": EXPORTER_JOB,
            "namespace": namespace,
            "service": "feldera-exporter",
            "container": "feldera-exporter",
            "target": "prod",
            "pipeline_name": "orders",
            "endpoint": ENDPOINT,
            "table": "events",
            "connector": "kafka-in",
        }

        async def unhealthy_inhibited() -> bool:
            found = [
                a
                for a in await alerts_in_alertmanager(f"http://{am}")
                if a["labels"]["alertname"] == "FelderaConnectorUnhealthy"
            ]
            return bool(found) and all(a["status"]["inhibitedBy"] for a in found)

        await eventually(unhealthy_inhibited, "the fatal error to inhibit the same connector's Unhealthy")

        # the rollout: a new pod scrapes beside the old one, then the old one leaves the Service
        new = await exits.enter_async_context(Exporter(exporter_settings(("prod", sim.url))))
        write_targets(
            sd_file,
            [
                pod_target(old, "feldera-exporter-7d9f-aaaaa", namespace, monitor),
                pod_target(new, "feldera-exporter-5c8b-bbbbb", namespace, monitor),
            ],
        )
        await eventually(lambda: held(prom, f"count(count by (pod) ({fatal})) / 2", 2), "both pods scraped")
        write_targets(sd_file, [pod_target(new, "feldera-exporter-5c8b-bbbbb", namespace, monitor)])
        await old.stop()
        gone = 'up{pod="feldera-exporter-7d9f-aaaaa"}'
        await eventually(lambda: query(prom, f"absent({gone})"), "the old pod to leave")
        settled = time.monotonic()
        await asyncio.sleep(3 * scaled_seconds("1m"))  # a few group_intervals: a changed group would be told now
        span = int(time.monotonic() - injected) + 1
        firing = f'ALERTS{{alertname="{FATAL}",alertstate="firing",pipeline_name="orders"}}'
        assert [s["value"][1] for s in await query(prom, f"max_over_time(count({firing})[{span}s:1s])")] == ["1"]
        notes = [n for n in webhook.notifications if n.labels["alertname"] == FATAL]
        assert [n.status for n in notes] == ["firing"]  # one page; no resolve, no second page
        assert await query(prom, 'ALERTS{alertname="FelderaExporterPollsStale"}') == []
        with capsys.disabled():
            print(
                f"\n[page e2e] operator labels kept; rollout: one firing alert, one notification "
                f"({time.monotonic() - settled:.0f}s watched after the old pod left)"
            )


# ---- a Prometheus restart ----------------------------------------------------------------------------------------

OUTAGE = "10m"
SHIPPED_FLAGS = {"resend-delay": "6m", "for-grace-period": "0s"}
DEFAULT_FLAGS = {"resend-delay": "1m", "for-grace-period": "10m"}
"""Prometheus's own defaults: Alertmanager ends an alert 4 x 1m after its last resend, and the `for` state of an
alert with a shorter `for` than 10m is not restored."""


DISCOVERY_MS = 5000
"""How long a started Prometheus may take to discover Alertmanager (its discovery updates are sent every 5 s); an
alert sent before is dropped and sent again resend-delay later. Not scaled: a restart bridges an outage shorter
than 2 x resend-delay - 5 s, so the test's resend-delay gets half of it on top of its scaled value, which keeps the
shipped margin (12m - 5s against 10m) in proportion."""


def restart_flags(flags: dict[str, str]) -> tuple[str, ...]:
    def value(name: str, shipped: str) -> str:
        if shipped == "0s":
            return shipped
        if name == "resend-delay":
            return f"{build.duration_seconds(scaled(shipped), name) * 1000 + DISCOVERY_MS // 2}ms"
        return scaled(shipped)

    return tuple(f"--rules.alert.{name}={value(name, shipped)}" for name, shipped in flags.items())


def restart_cases() -> Iterator[Any]:
    yield pytest.param(SHIPPED_FLAGS, True, id="shipped-flags")
    yield pytest.param(DEFAULT_FLAGS, False, id="prometheus-defaults")


@pytest.mark.parametrize(("flags", "quiet"), list(restart_cases()))
async def test_a_prometheus_restart_of_ten_minutes_re_pages_nothing_with_the_shipped_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: dict[str, str], quiet: bool
) -> None:
    """Prometheus stops and is ready again on its TSDB OUTAGE (scaled) later. With the shipped flags Alertmanager
    still holds every alert when the rules fire them again (restored `for` state included): no resolve, no second
    page. With Prometheus's defaults the same outage resolves and re-pages: the test tells the two apart.

    The outage is measured from the stop to the restarted Prometheus being ready, start-up included, as an operator
    counts it: the new process starts as long before the end of the outage as the first one took to become ready.
    Start-up is not scaled (a second here is 30 s of a real outage): were it added to the outage, a loaded machine
    would test a longer restart than claimed and eat the margin the claim leaves (a 24-minute hold, at least 18m
    after the stop)."""
    webhook = Webhook()
    names = ("FelderaConnectorFatalError", "FelderaConnectorUnhealthy", "FelderaCheckpointFailed")
    outage = scaled_seconds(OUTAGE)
    async with AsyncExitStack() as exits:
        scenario = Scenario(pipelines=[pipeline("orders"), pipeline("flaky")])
        sim = await exits.enter_async_context(Simulator(scenario))
        exporter = await exits.enter_async_context(Exporter(exporter_settings(("prod", sim.url))))
        am = await exits.enter_async_context(alertmanager(tmp_path, await webhook_receiver(exits, webhook)))
        args = restart_flags(flags)
        first = prometheus(tmp_path, [static_job(exporter)], am, args=args)
        starting = time.monotonic()
        prom = await first.__aenter__()
        start_up = time.monotonic() - starting
        port = int(prom.rsplit(":", 1)[1])
        try:
            await eventually(lambda: held(prom, STATUS.format("orders", "Running")), "Running scraped")
            injected = time.monotonic()
            sim.set_connector_fatal_error("orders", ENDPOINT, "broker unreachable")
            sim.fail_checkpoint("orders", "disk full")
            sim.set_connector_health("flaky", ENDPOINT, "Unhealthy", "retrying")  # a `for` to restore
            for name in names:
                await eventually(lambda n=name: webhook.of(n, "firing", injected), f"{name} at the webhook")
            paged = {frozenset(n.labels.items()) for n in webhook.notifications}
        finally:
            await first.__aexit__(None, None, None)
        stopped = time.monotonic()
        await asyncio.sleep(max(0.0, outage - start_up))
        async with prometheus(tmp_path, [static_job(exporter)], am, args=args, port=port) as prom:
            restarted = time.monotonic()

            async def firing_again(name: str) -> bool:
                # samples written since the restart (the TSDB still holds the ones from before it)
                since = int(time.monotonic() - restarted) + 1
                alert = f'ALERTS{{alertname="{name}",alertstate="firing"}}'
                return bool(await query(prom, f"count_over_time({alert}[{since}s]) >= 2"))

            for name in names:
                await eventually(lambda n=name: firing_again(n), f"{name} firing again")
            await asyncio.sleep(3 * scaled_seconds("1m"))  # a few group_intervals: a changed group would be told now
            # the alerts paged before the stop (FelderaCheckpointFailed escalating to critical after critical_after is
            # another alert, restart or not)
            after = {
                n: [x.status for x in webhook.of(n, since=stopped) if frozenset(x.labels.items()) in paged]
                for n in names
            }
        down = restarted - stopped
        with capsys.disabled():
            print(
                f"\n[page e2e] Prometheus down {down:.1f}s (outage {outage}s, start-up {start_up:.1f}s) with {flags}: "
                f"notifications since {after}"
            )
    # a restart quicker than the first start by less than an evaluation interval (1 s: what the rules can tell apart)
    assert down > outage - 1, f"the restart took {down:.1f}s, not the {outage}s outage under test"
    if quiet:
        assert after == {n: [] for n in names}
    else:
        assert all("resolved" in after[n] and "firing" in after[n] for n in names), after
