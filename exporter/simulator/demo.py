"""``feldera-exporter demo``: the simulator with a lively scenario, an exporter polling it, and (see
:mod:`exporter.simulator.monitoring`) Prometheus with the shipped rules and Alertmanager with the shipped routing.

The :class:`DemoDriver` advances the story one step per tick (deterministically, so it is testable): pipelines
start and stop, a compile fails, the compiler briefly turns unhealthy, and every :data:`CYCLE` ticks a failed
checkpoint and a fatal connector error appear and are healed, so their alerts fire and resolve; it also issues the
reset that the exporter's reset watch follows. ``python -m exporter.simulator`` serves the same scenario (all
healthy at the start) without the driver.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from exporter.config import URL_ENV, ConfigError, Settings, build_settings, read_yaml
from exporter.console import print_config_error, print_web_config_error, setup_logging
from exporter.flags import DEMO_INTERVAL, Overrides, overrides_from
from exporter.simulator.monitoring import Monitoring, MonitoringError, missing_parts
from exporter.simulator.scenario import ConnectorSpec, PipelineSpec, RelationSpec, Scenario, ServerSpec
from exporter.simulator.server import Simulator
from exporter.webconfig import WebConfigError

FAULT_TOLERANT: dict[str, Any] = {"fault_tolerance": {"model": "exactly_once", "checkpoint_interval_secs": 60}}
MEMORY_LIMIT_MB = 8000
"""``orders``'s ``max_rss_mb``: its circuit may use 7600 MB (5 % go to the DataFusion pool)."""
MEMORY_PIPELINE = "orders"
MEMORY_BASELINE_MB = 5200
"""``orders``'s resident set at the start: 68 % of what its circuit may use (memory pressure low)."""


def demo_scenario() -> Scenario:
    """A small fleet in every interesting state: running, paused, failing checkpoints, a fatal connector
    error, a compile error, a stopped and a crashed pipeline; on a recently upgraded platform (two pipelines
    still on the old runtime), with a trial licence that expires in 10 days and a newer release out. The running
    pipelines are fault tolerant (automatic checkpoints every minute); ``orders`` has a memory limit."""
    return Scenario(
        edition="enterprise",
        platform_version="0.340.0",
        server=ServerSpec(license="trial", license_expires_in_days=10, latest_version="0.341.0"),
        pipelines=[
            PipelineSpec(
                name="orders",
                description="Order ingestion and revenue aggregation",
                status="Running",
                runtime_config={**FAULT_TOLERANT, "max_rss_mb": MEMORY_LIMIT_MB},
                rss_mb=MEMORY_BASELINE_MB,
                checkpoints=3,
                tables=[
                    RelationSpec(name="orders", connectors=["kafka-orders", None]),
                    RelationSpec(name='"Customers"', connectors=[ConnectorSpec(name="postgres-cdc")]),
                ],
                views=[RelationSpec(name="revenue_by_region", connectors=["delta-revenue"])],
            ),
            PipelineSpec(
                name="fraud-detection",
                status="Running",
                runtime_config=FAULT_TOLERANT,
                checkpoints=2,
                tables=[RelationSpec(name="payments", connectors=["kafka-payments"])],
                views=[RelationSpec(name="alerts", connectors=["kafka-alerts", "webhook"])],
            ),
            PipelineSpec(
                name="clickstream",
                status="Running",
                runtime_config=FAULT_TOLERANT,
                checkpoints=1,
                tables=[
                    RelationSpec(
                        name="clicks",
                        connectors=[
                            "pubsub-clicks",
                            "s3-backfill",
                        ],
                    )
                ],
                views=[RelationSpec(name="sessions", connectors=["redis-sessions"])],
            ),
            PipelineSpec(
                name="inventory",
                platform_version="0.337.0+enterprise",
                status="Paused",
                checkpoints=1,
                tables=[RelationSpec(name="stock", connectors=["file-stock"])],
                views=[RelationSpec(name="low_stock", connectors=[None])],
            ),
            PipelineSpec(
                name="reporting-draft",
                status="Stopped",
                program_status="SqlError",
                program_error='Error parsing SQL: Encountered "FORM" at line 3, column 10.',
            ),
            PipelineSpec(name="archive", status="Stopped", storage_status="Cleared"),
            PipelineSpec(
                name="nightly-batch",
                platform_version="0.337.0+enterprise",
                status="Stopped",
                checkpoints=1,
                tables=[RelationSpec(name="events", connectors=["s3-events"])],
                views=[RelationSpec(name="daily_rollup", connectors=["postgres-rollup"])],
            ),
        ],
    )


DEMO_TARGET = "demo"
SYNC_EVERY = "1m"
FAULT_PIPELINE = "inventory"
"""The pipeline of the printed fault-injection example: the driver never checkpoints it, so the fault stays."""

LIFECYCLE = ("Provisioning", "Initializing", "Running", "Running", "Running", "Running", "Stopping", "Stopped")

CYCLE = 24
"""Ticks of one round of the story (2 minutes at the default 5 s tick)."""
FAULT_AT = 2
"""Tick of the round at which fraud-detection's checkpoints start failing and a clickstream connector fails."""
HEAL_AT = 14
"""Tick of the round at which both are healed (a successful checkpoint; clickstream restarted)."""
PRESSURE_STEPS = ((4, 7000), (7, 7300), (14, MEMORY_BASELINE_MB))
"""(tick of the round, ``orders``'s resident set in MB): memory pressure high (92 %), critical (96 %), low again."""
RESET_PIPELINE = "orders"
RESET_WATCH = "revenue_by_region.delta-revenue"
CHECKPOINT_ERROR = "failed to write checkpoint: No space left on device (os error 28)"
FATAL_ENDPOINT = "clicks.s3-backfill"
FATAL_ERROR = "S3 error: AccessDenied: Access Denied (bucket clicks-archive)"

T = TypeVar("T")

WatchReset = Callable[[str, str, str], None]
"""``(pipeline, token, watch name)``: register a reset watch with the exporter."""


class DemoDriver:
    """One :meth:`step` per tick; each action runs on ticks where ``tick % period == offset``.

    Every :data:`CYCLE` ticks: at :data:`FAULT_AT` fraud-detection's checkpoints start failing (disk full) and
    clickstream's ``clicks.s3-backfill`` connector hits a fatal error; at :data:`HEAL_AT` fraud-detection checkpoints
    again and clickstream is restarted (a new process: connectors start clean). At tick 0 of each round an output
    connector reset of ``orders`` is issued and handed to ``watch_reset``; it completes at :data:`HEAL_AT`.
    fraud-detection's checkpoints are requested (``POST /checkpoint``) and each takes a tick: ``in_progress`` on the
    tick it is requested, its result on the next (what lets the exporter see one happen, docs/feldera-api.md). One
    memory-pressure episode of ``orders`` per round (:data:`PRESSURE_STEPS`): high, then critical, then low again.
    """

    def __init__(self, sim: Simulator, watch_reset: WatchReset | None = None) -> None:
        self.sim = sim
        self.tick = 0
        self._watch_reset = watch_reset
        self._reset_token: str | None = None
        self._fraud_writing = False
        self._actions: tuple[tuple[int, int, Callable[[], None]], ...] = (
            (1, 0, self._nightly_lifecycle),
            (CYCLE, 0, self._issue_reset),
            (3, 0, lambda: self._checkpoint("orders")),
            (4, 1, lambda: self._checkpoint("clickstream")),
            (5, 2, self._fraud_checkpoint),
            (CYCLE, FAULT_AT, self._fraud_checkpoint),
            (CYCLE, FAULT_AT, self._clickstream_fatal_error),
            (CYCLE, HEAL_AT, self._fraud_checkpoint),
            (CYCLE, HEAL_AT, self._restart_clickstream),
            (CYCLE, HEAL_AT, self._complete_reset),
            *((CYCLE, tick, self._memory(rss_mb)) for tick, rss_mb in PRESSURE_STEPS),
            (6, 4, self._parse_errors),
            (10, 5, self._toggle_inventory),
            (15, 7, self._recompile_draft),
            (15, 9, self._draft_fails),
            (20, 10, lambda: self.sim.set_cluster_health("compiler", False, "compiler server unreachable")),
            (20, 12, lambda: self.sim.set_cluster_health("compiler", True)),
        )

    @property
    def faulty(self) -> bool:
        """Whether this tick is in the failing part of the round."""
        return FAULT_AT <= self.tick % CYCLE < HEAL_AT

    def step(self) -> None:
        if self._fraud_writing:
            self._fraud_checkpoint_done()
        for period, offset, action in self._actions:
            if self.tick % period == offset:
                with contextlib.suppress(KeyError, ValueError):
                    action()
        self.tick += 1

    def _running(self, name: str) -> bool:
        return self.sim.pipeline(name).deployment_status == "Running"

    def _checkpoint(self, name: str) -> None:
        if self._running(name):
            self.sim.checkpoint(name)

    def _fraud_checkpoint(self) -> None:
        if self._running("fraud-detection") and not self._fraud_writing:
            self.sim.set_checkpoint_activity("fraud-detection", "in_progress")
            self._fraud_writing = True

    def _fraud_checkpoint_done(self) -> None:
        self._fraud_writing = False
        if not self._running("fraud-detection"):
            return
        if self.faulty:
            self.sim.fail_checkpoint("fraud-detection", CHECKPOINT_ERROR)
        else:
            self.sim.checkpoint("fraud-detection")

    def _issue_reset(self) -> None:
        token = self.sim.issue_reset_token(RESET_PIPELINE)
        self._reset_token = token
        if self._watch_reset is not None:
            self._watch_reset(RESET_PIPELINE, token, RESET_WATCH)

    def _complete_reset(self) -> None:
        if self._reset_token is not None:
            self.sim.complete_reset(RESET_PIPELINE, self._reset_token)

    def _memory(self, rss_mb: int) -> Callable[[], None]:
        return lambda: self._set_memory(rss_mb)

    def _set_memory(self, rss_mb: int) -> None:
        if self._running(MEMORY_PIPELINE):
            self.sim.set_memory(MEMORY_PIPELINE, rss_mb)

    def _nightly_lifecycle(self) -> None:
        self.sim.set_status("nightly-batch", LIFECYCLE[self.tick % len(LIFECYCLE)])

    def _parse_errors(self) -> None:
        if self._running("orders"):
            self.sim.add_connector_errors("orders", "orders.kafka-orders", "parse", 3, "invalid JSON: expected value")

    def _toggle_inventory(self) -> None:
        paused = self.sim.pipeline("inventory").deployment_status == "Paused"
        self.sim.set_status("inventory", "Running" if paused else "Paused")

    def _restart_clickstream(self) -> None:
        self.sim.restart_pipeline("clickstream")

    def _clickstream_fatal_error(self) -> None:
        self.sim.set_connector_fatal_error("clickstream", FATAL_ENDPOINT, FATAL_ERROR)
        self.sim.set_connector_health("clickstream", FATAL_ENDPOINT, "Unhealthy", "AccessDenied")

    def _recompile_draft(self) -> None:
        self.sim.set_program_status("reporting-draft", "CompilingSql")

    def _draft_fails(self) -> None:
        self.sim.fail_compile("reporting-draft", "sql", 'Error parsing SQL: Encountered "FORM" at line 3, column 10.')


def _mapping(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError([f"{key}: expected a mapping"])
    return dict(value)


def demo_settings(config: str | None, overrides: Overrides, interval: float | None, url: str) -> Settings:
    """The demo's settings (target ``demo``, a sync schedule), or those of ``config`` with every target's URL
    replaced by ``url``; ``overrides`` (the demo's flags) and ``interval`` (when given) override. Raises
    :class:`ConfigError`."""
    if config is None:
        raw: dict[str, Any] = {
            "poll": {"interval": interval or DEMO_INTERVAL},
            "targets": [{"name": DEMO_TARGET}],
            "checkpoint_sync": {"schedules": [{"pipelines": "*", "every": SYNC_EVERY, "target": DEMO_TARGET}]},
        }
    else:
        raw, duplicates = read_yaml(Path(config))
        if duplicates:
            raise ConfigError(duplicates)
        if interval is not None:
            raw["poll"] = {**_mapping(raw, "poll"), "interval": interval}
    targets = raw.get("targets") or [{"name": DEMO_TARGET}]
    if not isinstance(targets, list) or not all(isinstance(t, dict) for t in targets):
        raise ConfigError(["targets: expected a list of mappings"])
    raw["targets"] = [{**target, "url": url} for target in targets]
    return build_settings(raw, overrides=overrides, env={k: v for k, v in os.environ.items() if k != URL_ENV})


def run(args: argparse.Namespace) -> int:
    try:
        scenario = Scenario.load(args.scenario) if args.scenario else demo_scenario()
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:  # validated before anything starts; the simulator's URL is filled in once it listens
        settings = demo_settings(args.config, overrides_from(args), args.interval, "http://127.0.0.1:8080")
    except ConfigError as exc:
        print_config_error(exc)
        return 2
    setup_logging(settings.log_level if args.config else "warning", settings.api_keys())
    try:
        asyncio.run(serve(scenario, args, settings))
    except WebConfigError as exc:
        print_web_config_error(settings, exc)
        return 2
    except MonitoringError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


async def serve(scenario: Scenario, args: argparse.Namespace, settings: Settings) -> None:
    from exporter.app import Exporter

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with contextlib.AsyncExitStack() as stack:
            sim = await stack.enter_async_context(Simulator(scenario, port=args.feldera_port))
            targets = [target.model_copy(update={"url": sim.url}) for target in settings.targets]
            settings = settings.model_copy(update={"targets": targets})
            exporter = await stack.enter_async_context(Exporter(settings))

            registering: set[asyncio.Task[object]] = set()  # referenced until done (the loop keeps weak ones)

            def watch_reset(pipeline: str, token: str, name: str) -> None:
                task = asyncio.create_task(
                    exporter.sidecar.resets.register(pipeline, token, name=name, target=targets[0].name)
                )
                registering.add(task)
                task.add_done_callback(_registered(registering))

            task = asyncio.create_task(_drive(DemoDriver(sim, watch_reset), args.tick), name="demo-driver")
            stack.push_async_callback(_cancel, task)
            prometheus, alertmanager = not args.no_prometheus, not args.no_alertmanager
            note = missing_parts(prometheus, alertmanager)
            monitoring = None
            if note is None and (prometheus or alertmanager):
                monitoring = await _unless_stopped(
                    stack.enter_async_context(
                        Monitoring(
                            exporter.url.partition("://")[2],
                            settings.poll.interval,
                            args.prometheus_port if prometheus else None,
                            args.alertmanager_port if alertmanager else None,
                        )
                    ),
                    stop,
                )
                if stop.is_set():  # Ctrl-C/SIGTERM while Prometheus or Alertmanager was starting
                    return
            links = await monitoring.links() if monitoring is not None else []
            print(_banner(sim, exporter.url, links, note, settings, scenario), flush=True)
            await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _banner(
    sim: Simulator,
    exporter: str,
    monitoring: list[tuple[str, str]],
    note: str | None,
    settings: Settings,
    scenario: Scenario,
) -> str:
    """The short table of URLs and what runs, printed once everything is ready (``monitoring``: the rows of
    :meth:`Monitoring.links`)."""
    rows = [("Exporter landing page", f"{exporter}/"), ("Exporter metrics", f"{exporter}/metrics"), *monitoring]
    rows.append(("Simulated Feldera API", f"{sim.url}/v0/pipelines"))
    names = [p.name for p in scenario.pipelines]
    if names:
        pipeline = FAULT_PIPELINE if FAULT_PIPELINE in names else names[0]
        rows.append(
            (
                "Inject a fault",
                f"curl -s -X POST {sim.url}{sim.control_prefix}/fail_checkpoint "
                f'-d \'{{"name": "{pipeline}", "error": "disk full"}}\'',
            )
        )
        rows.append(
            ("Heal it", f'curl -s -X POST {sim.url}{sim.control_prefix}/checkpoint -d \'{{"name": "{pipeline}"}}\'')
        )
    width = max(len(label) for label, _ in rows) + 2
    lines = [f"{label + ':':<{width}}{value}" for label, value in rows]
    if note is not None:
        lines.append(f"Note: {note}")
    schedules = ", ".join(f"{s.pipelines} every {s.every:g}s" for s in settings.checkpoint_sync.schedules) or "none"
    watch = f"{RESET_WATCH} on {RESET_PIPELINE}" if RESET_PIPELINE in names else "none"
    lines.append(
        f"Sidecar: scheduled checkpoint sync: {schedules}; reset watch: {watch} (target {settings.targets[0].name})"
    )
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


async def _unless_stopped(starting: Awaitable[T], stop: asyncio.Event) -> T | None:
    """``await starting``, unless ``stop`` is set first: then it is cancelled (cleaning up after itself) and
    the result is None. A failure after ``stop`` was set is not reported (the processes were told to stop)."""
    task = asyncio.ensure_future(starting)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if stop.is_set():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, MonitoringError, OSError):
            await task
        return None
    return task.result()


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _registered(registering: set[asyncio.Task[object]]) -> Callable[[asyncio.Task[object]], None]:
    def done(task: asyncio.Task[object]) -> None:
        registering.discard(task)
        if not task.cancelled() and task.exception() is not None:
            print(f"demo: registering the reset watch failed: {task.exception()}", file=sys.stderr)

    return done


async def _drive(driver: DemoDriver, tick: float) -> None:
    while True:
        driver.step()
        await asyncio.sleep(tick)
