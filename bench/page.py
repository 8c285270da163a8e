#!/usr/bin/env python3
"""Time to page at the shipped settings: simulator -> exporter -> Prometheus -> Alertmanager -> webhook.

Every setting is the one README tells users to start from: the exporter's defaults (``poll.interval`` 15s), the
example ``prometheus/prometheus.yml`` (scrape and evaluation intervals, scrape timeout) with the Prometheus flags
its header names, the shipped rules (``prometheus/alerts.yaml``) and the example Alertmanager configuration
(``exporter/mixin/alertmanager.yml``, its receivers pointed at this script's webhook). Nothing is shortened.

``--injections`` faults are injected at staggered phases (one every ``--spacing`` seconds, which is not a multiple
of the 15 s periods). Each fault has a Feldera target of its own, polled by an exporter of its own (started 15 s /
injections after the previous one) and scraped as one target of the job (Prometheus spreads its targets' scrape
offsets): the faults meet every phase of the poll, scrape and evaluation cycles against each other. Each is the
first alert of its own Alertmanager group, as an incident is. Each injection is three kinds at once: a fatal error
of a connector (``FelderaConnectorFatalError``, critical); a failed checkpoint (``FelderaCheckpointFailed``,
warning): a ``POST /checkpoint`` whose write is in progress for :data:`WRITE_SECONDS` before it fails, as Feldera
reports it (the exporter asks ``checkpoint_status``, a database write in Feldera, while a checkpoint is in progress
and in the cycle after, docs/feldera-api.md "What changes what"; a failed write shorter than a poll shows within
``poll.recheck_interval``); and automatic checkpoints that start failing (``FelderaAutomaticCheckpointsFailing``,
warning) on a second, fault-tolerant pipeline that takes one every :data:`CHECKPOINT_INTERVAL` seconds (Feldera's
default): Feldera only logs such a failure, so nothing reports it; the alert fires on the absence of a new
checkpoint. Each target's Feldera starts 30 s / injections after the previous one, so that its checkpoints (every
60 s from its start) meet the other phases too.

Stages, per fault (wall-clock times; Prometheus's sample timestamps are the scrape and evaluation times):

- ``poll wait``: injection -> the first request of the exporter's cycle that reads it from Feldera (not part of
  the time to page: it is when Feldera first reports the fault to the exporter);
- ``exporter``: that request -> the exporter serves the fault in /metrics (the rest of the cycle; seen by looking
  at /metrics every 50 ms);
- ``scrape``: -> the first Prometheus sample that holds it;
- ``evaluation``: -> the first evaluation at which the alert fires (ALERTS{alertstate="firing"});
- ``alertmanager``: -> Alertmanager lists it (Prometheus's send);
- ``notification``: -> the webhook receives it (group_wait);
- ``time to page``: the first request of the reporting cycle -> the webhook;
- ``from the fault``: injection -> the webhook (the poll wait included).

For ``FelderaAutomaticCheckpointsFailing`` there is no report to wait for; its stages are ``first failure``
(injection -> the first automatic checkpoint that fails, at its scheduled time), ``until firing`` (-> the first
evaluation at which the alert fires), ``alertmanager``, ``notification``, and ``time to page`` from the first failed
automatic checkpoint to the webhook.

Usage (about 8 minutes at the defaults; ``prometheus`` and ``prometheus-alertmanager`` on PATH)::

    .venv/bin/python bench/page.py
    .venv/bin/python bench/page.py --injections 12 --spacing 16.25 --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exporter.mixin import ALERTMANAGER_EXAMPLE  # noqa: E402
from exporter.simulator import PipelineSpec, RelationSpec, Scenario, Simulator  # noqa: E402
from exporter.simulator.monitoring import stop_process  # noqa: E402

PROMETHEUS_EXAMPLE = ROOT / "prometheus" / "prometheus.yml"
EXPORTER_JOB = "feldera-exporter"
"""The example's job of the exporter (``exporter_job`` of the rule config)."""
RULES = ROOT / "prometheus" / "alerts.yaml"
ENDPOINT = "events.kafka-in"
PIPELINE = "orders"
AUTOMATIC = "FelderaAutomaticCheckpointsFailing"
LEDGER = "ledger"
"""The fault-tolerant pipeline whose automatic checkpoints start failing."""
CHECKPOINT_INTERVAL = 60
"""``checkpoint_interval_secs`` of :data:`LEDGER`: Feldera's default."""
KINDS = {
    "FelderaConnectorFatalError": "/v0/pipelines/orders/stats",
    "FelderaCheckpointFailed": "/v0/pipelines/orders/checkpoint_status",
}
"""Alert -> the request in which Feldera first reports its fault to the exporter."""
ALERTS = (*KINDS, AUTOMATIC)
SERIES = {
    "FelderaConnectorFatalError": (
        "feldera_input_connector_fatal_error",
        (f'pipeline_name="{PIPELINE}"', f'endpoint="{ENDPOINT}"'),
    ),
    "FelderaCheckpointFailed": ("feldera_pipeline_checkpoint_failed", (f'pipeline_name="{PIPELINE}"',)),
}
"""Alert -> the exporter's series that carries its fault: (family, label pairs)."""
STAGES = ("poll wait", "exporter", "scrape", "evaluation", "alertmanager", "notification")
AUTOMATIC_STAGES = ("first failure", "until firing", "alertmanager", "notification")
POLL_INTERVAL = 15.0
"""The exporter's default poll.interval, in seconds (the exporters run with their defaults)."""
WRITE_SECONDS = 16.0
"""How long the failing checkpoint's write is in progress before it fails: longer than one poll (15 s)."""
WATCH = 0.05
"""Seconds between two looks at the exporter's /metrics and at Alertmanager's alerts."""


class BenchError(Exception):
    """A failure that ends the benchmark with a message (and no traceback)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--injections", type=int, default=12, help="faults to inject, each on its own target")
    parser.add_argument("--spacing", type=float, default=16.25, help="seconds between two injections")
    parser.add_argument("--timeout", type=float, default=330, help="seconds to wait for one fault's notification")
    parser.add_argument("--json", action="store_true", help="print a JSON document instead of the report")
    parser.add_argument("--log-dir", type=Path, help="keep the configs and logs of every process there")
    args = parser.parse_args(argv)
    if args.injections < 1 or args.spacing <= 0:
        parser.error("--injections must be >= 1 and --spacing > 0")
    return args


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def shipped_prometheus_flags() -> list[str]:
    """The flags the example prometheus.yml asks for in its header (they cannot live in the file)."""
    return re.findall(r"(--rules\.alert\.[\w-]+=\S+)", PROMETHEUS_EXAMPLE.read_text(encoding="utf-8"))


def prometheus_config(exporters: list[str], alertmanager: str) -> dict[str, Any]:
    """The example prometheus.yml with its exporter targets and Alertmanager pointed at this run's processes (its
    job for Feldera's own /v0/metrics left out: no alert reads it)."""
    config = yaml.safe_load(PROMETHEUS_EXAMPLE.read_text(encoding="utf-8"))
    config["rule_files"] = [str(RULES)]
    config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == EXPORTER_JOB]
    job["static_configs"] = [{"targets": exporters}]
    config["scrape_configs"] = [job]
    return config


def alertmanager_config(webhook: str) -> dict[str, Any]:
    """The example Alertmanager configuration, every receiver posting to ``webhook`` (send_resolved kept)."""
    config = yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text(encoding="utf-8"))
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = webhook
    return config


def summary(values: Iterable[float]) -> dict[str, float]:
    data = sorted(values)
    return {"min": data[0], "median": statistics.median(data), "max": data[-1], "n": len(data)}


@dataclass
class Fault:
    target: str
    alert: str
    injected: float = 0.0
    reported: float | None = None
    served: float | None = None
    scraped: float | None = None
    firing: float | None = None
    alertmanager: float | None = None
    notified: float | None = None

    def stages(self) -> dict[str, float]:
        ends = (self.firing, self.alertmanager, self.notified)
        names: tuple[str, ...]
        times: tuple[float | None, ...]
        if self.alert == AUTOMATIC:
            names, times = AUTOMATIC_STAGES, (self.injected, self.reported, *ends)
        else:
            names, times = STAGES, (self.injected, self.reported, self.served, self.scraped, *ends)
        observed = [t for t in times if t is not None]
        if len(observed) < len(times):
            raise BenchError(f"{self.alert} of {self.target}: a stage was not observed: {times}")
        steps = [b - a for a, b in itertools.pairwise(observed)]
        page, fault = observed[-1] - observed[1], observed[-1] - observed[0]
        return {**dict(zip(names, steps, strict=True)), "time to page": page, "from the fault": fault}


@dataclass
class Webhook:
    """Records when each (alert, target) first arrived firing; ``all_in`` is set once every expected one has."""

    expected: set[tuple[str, str]]
    received: dict[tuple[str, str], float] = field(default_factory=dict)
    all_in: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        now = time.time()
        for alert in (await request.json())["alerts"]:
            key = (alert["labels"]["alertname"], alert["labels"].get("target", ""))
            if alert["status"] == "firing":
                self.received.setdefault(key, now)
        if self.expected <= set(self.received):
            self.all_in.set()
        return web.Response(text="ok")


@asynccontextmanager
async def child(name: str, argv: list[str], logs: Path, ready: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """A process in its own session, its output in ``logs/name.log``, ready when ``ready`` answers 200."""
    with (logs / f"{name}.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 60
            while True:
                if process.returncode is not None:
                    raise BenchError(f"{name} exited with {process.returncode}; see {logs / (name + '.log')}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(ready) as response:
                        if response.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise BenchError(f"{name} not ready after 60s")
                await asyncio.sleep(0.2)
        yield process
    finally:
        await stop_process(process)


def scenario() -> Scenario:
    fault_tolerant = {"fault_tolerance": {"model": "exactly_once", "checkpoint_interval_secs": CHECKPOINT_INTERVAL}}
    return Scenario(
        pipelines=[
            PipelineSpec(name=PIPELINE, tables=[RelationSpec(name="events", connectors=["kafka-in"])]),
            PipelineSpec(name=LEDGER, runtime_config=fault_tolerant, checkpoints=1),
        ]
    )


async def first_sample(http: aiohttp.ClientSession, prometheus: str, selector: str, after: float) -> float | None:
    """Timestamp of the first sample at or after ``after`` whose value is 1 (a range query at 1s steps would round)."""
    query = f"{selector}[10m]"
    async with http.get(f"{prometheus}/api/v1/query", params={"query": query, "time": str(time.time())}) as r:
        result = (await r.json())["data"]["result"]
    for series in result:
        for ts, value in series["values"]:
            if float(ts) >= after - 0.001 and value == "1":
                return float(ts)
    return None


async def watch_exporter(
    http: aiohttp.ClientSession, exporters: dict[str, str], faults: list[Fault], stop: asyncio.Event
) -> None:
    """When each reported fault is first served in /metrics (the exporter's cycle done and its snapshot swapped)."""
    while not stop.is_set():
        for fault in faults:
            if fault.alert not in SERIES or fault.reported is None or fault.served is not None:
                continue
            async with http.get(f"{exporters[fault.target]}/metrics") as response:
                text = await response.text()
            family = SERIES[fault.alert][0]
            if any(
                line.startswith(family + "{") and line.endswith(" 1.0") and all(p in line for p in _parts(fault))
                for line in text.splitlines()
            ):
                fault.served = time.time()
        await asyncio.sleep(WATCH)


def _parts(fault: Fault) -> list[str]:
    """The label pairs of the fault's series (``name="value"``), in any order."""
    return [*SERIES[fault.alert][1], f'target="{fault.target}"']


def selector(fault: Fault) -> str:
    family = SERIES[fault.alert][0]
    return f"{family}{{{','.join(_parts(fault))}}}"


async def watch_alertmanager(http: aiohttp.ClientSession, url: str, faults: list[Fault], stop: asyncio.Event) -> None:
    while not stop.is_set():
        async with http.get(f"{url}/api/v2/alerts") as response:
            alerts = await response.json()
        now = time.time()
        seen = {(a["labels"]["alertname"], a["labels"].get("target", "")) for a in alerts}
        for fault in faults:
            if fault.alertmanager is None and (fault.alert, fault.target) in seen and fault.injected:
                fault.alertmanager = now
        await asyncio.sleep(WATCH)


async def run(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    for binary in ("prometheus", "prometheus-alertmanager"):
        if shutil.which(binary) is None:
            raise BenchError(f"{binary} not on PATH (scripts/bootstrap installs it)")
    targets = [f"t{i:02d}" for i in range(args.injections)]
    webhook = Webhook({(alert, t) for t in targets for alert in ALERTS})
    async with AsyncExitStack() as exits:
        sims: dict[str, Simulator] = {}
        for index, target in enumerate(targets):
            # a Feldera process's automatic checkpoints run on a grid from its start: staggered starts put each
            # target's first failed checkpoint at another phase of the evaluations and of its exporter's polls
            await asyncio.sleep(2 * POLL_INTERVAL / len(targets) if index else 0)
            sims[target] = await exits.enter_async_context(Simulator(scenario()))
        app = web.Application()
        app.router.add_post("/alerts", webhook.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        exits.push_async_callback(runner.cleanup)
        hook_port = free_port()
        await web.TCPSite(runner, "127.0.0.1", hook_port).start()

        am_port, prom_port = free_port(), free_port()
        exporters: dict[str, str] = {}
        for index, target in enumerate(targets):  # one exporter per target, their poll cycles at staggered phases
            await asyncio.sleep(POLL_INTERVAL / len(targets) if index else 0)
            port = free_port()
            config = logs / f"exporter-{target}.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "web": {"listen_address": f"127.0.0.1:{port}"},
                        "targets": [{"name": target, "url": sims[target].url}],
                    }
                )
            )
            exporters[target] = f"http://127.0.0.1:{port}"
            await exits.enter_async_context(
                child(
                    f"exporter-{target}",
                    [sys.executable, "-m", "exporter", "run", "--config", str(config)],
                    logs,
                    f"{exporters[target]}/-/ready",
                )
            )
        am_config = logs / "alertmanager.yml"
        am_config.write_text(yaml.safe_dump(alertmanager_config(f"http://127.0.0.1:{hook_port}/alerts")))
        await exits.enter_async_context(
            child(
                "alertmanager",
                [
                    "prometheus-alertmanager",
                    f"--config.file={am_config}",
                    f"--storage.path={logs / 'alertmanager-data'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",
                ],
                logs,
                f"http://127.0.0.1:{am_port}/-/ready",
            )
        )
        prom_config = logs / "prometheus.yml"
        addresses = [url.removeprefix("http://") for url in exporters.values()]
        prom_config.write_text(yaml.safe_dump(prometheus_config(addresses, f"127.0.0.1:{am_port}")))
        prometheus = f"http://127.0.0.1:{prom_port}"
        await exits.enter_async_context(
            child(
                "prometheus",
                [
                    "prometheus",
                    f"--config.file={prom_config}",
                    f"--storage.tsdb.path={logs / 'prometheus-data'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                    *shipped_prometheus_flags(),
                ],
                logs,
                f"{prometheus}/-/ready",
            )
        )
        http = await exits.enter_async_context(aiohttp.ClientSession())
        print("waiting for the first scrapes and evaluations (one minute) ...", file=sys.stderr)
        await asyncio.sleep(60)  # Prometheus's first scrapes and rule evaluations (and the relapse hold) settle

        faults = [Fault(t, alert) for t in targets for alert in ALERTS]
        stop = asyncio.Event()
        watchers = [
            asyncio.create_task(watch_exporter(http, exporters, faults, stop)),
            asyncio.create_task(watch_alertmanager(http, f"http://127.0.0.1:{am_port}", faults, stop)),
        ]

        async def inject(index: int, target: str) -> None:
            await asyncio.sleep(index * args.spacing)
            sim = sims[target]
            sim.set_checkpoint_activity(PIPELINE, "in_progress")  # the requested checkpoint is being written
            await asyncio.sleep(WRITE_SECONDS)
            counts = {alert: sim.requests(path) for alert, path in KINDS.items()}
            now = time.time()
            sim.set_connector_fatal_error(PIPELINE, ENDPOINT, "broker unreachable")
            sim.fail_checkpoint(PIPELINE, "No space left on device (os error 28)")
            first_failure = sim.set_automatic_checkpoints(LEDGER, "failed to write checkpoint: No space left on device")
            if first_failure is None:
                raise BenchError(f"{LEDGER} of {target} takes no automatic checkpoints")
            mine = [f for f in faults if f.target == target]
            for fault in mine:
                fault.injected = now
            print(f"injected {target} at {time.strftime('%H:%M:%S')}", file=sys.stderr)

            async def reported(fault: Fault) -> None:
                if fault.alert == AUTOMATIC:
                    fault.reported = first_failure  # the simulator's clock is the wall clock
                    return
                await sim.wait_for_requests(KINDS[fault.alert], counts[fault.alert] + 1)
                fault.reported = time.time()

            await asyncio.gather(*(reported(f) for f in mine))

        try:
            async with asyncio.timeout(args.injections * args.spacing + args.timeout):
                await asyncio.gather(*(inject(i, t) for i, t in enumerate(targets)))
                await webhook.all_in.wait()
        except TimeoutError:
            missing = sorted({(f.alert, f.target) for f in faults} - set(webhook.received))
            raise BenchError(f"no notification within the timeout for {missing}") from None
        finally:
            stop.set()
            await asyncio.gather(*watchers, return_exceptions=True)
        for fault in faults:
            fault.notified = webhook.received[(fault.alert, fault.target)]
            if fault.alert in SERIES:
                # a scrape's timestamp is when it began: it may precede the moment this script saw the fault served
                fault.scraped = await first_sample(http, prometheus, selector(fault), fault.reported or 0)
            alert = f'ALERTS{{alertname="{fault.alert}",alertstate="firing",target="{fault.target}"}}'
            fault.firing = await first_sample(http, prometheus, alert, fault.scraped or fault.reported or 0)

    results: dict[str, Any] = {}
    for alert in ALERTS:
        stages = [f.stages() for f in faults if f.alert == alert]
        results[alert] = {stage: summary(s[stage] for s in stages) for stage in stages[0]}
    return {
        "settings": {
            "poll.interval": "15s (exporter default)",
            "prometheus": {k: v for k, v in yaml.safe_load(PROMETHEUS_EXAMPLE.read_text())["global"].items()},
            "prometheus flags": shipped_prometheus_flags(),
            "alertmanager": ALERTMANAGER_EXAMPLE.relative_to(ROOT).as_posix(),
            "injections": args.injections,
            "spacing": args.spacing,
        },
        "load average": os.getloadavg(),
        "results": results,
    }


def report(doc: dict[str, Any]) -> str:
    settings = doc["settings"]
    load = " ".join(f"{x:.2f}" for x in doc["load average"])
    lines = [
        "time to page at the shipped settings (seconds; min / median / max over "
        f"{settings['injections']} injections {settings['spacing']} s apart)",
        f"settings: exporter poll 15s; Prometheus {settings['prometheus']} {' '.join(settings['prometheus flags'])};",
        f"  Alertmanager {settings['alertmanager']}; load average {load}",
    ]
    for alert, stages in doc["results"].items():
        lines.append(f"\n{alert}")
        lines.append(f"  {'stage':<14} {'min':>7} {'median':>7} {'max':>7}")
        for stage, s in stages.items():
            lines.append(f"  {stage:<14} {s['min']:7.1f} {s['median']:7.1f} {s['max']:7.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="feldera-page-") as tmp:
        logs = args.log_dir or Path(tmp)
        logs.mkdir(parents=True, exist_ok=True)
        try:
            doc = asyncio.run(run(args, logs))
        except BenchError as exc:
            print(f"page: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(doc, indent=2) if args.json else report(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
