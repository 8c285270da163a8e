"""``feldera-exporter demo``: the simulator with a lively scenario plus an exporter polling it.

The :class:`DemoDriver` advances the story one step per tick (deterministically, so it is testable): pipelines
start and stop, checkpoints succeed and sometimes fail, a connector hits a fatal error, a compile fails, the
compiler briefly turns unhealthy. ``python -m exporter.simulator`` serves the same scenario without the driver.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable

from exporter.simulator.scenario import ConnectorSpec, PipelineSpec, RelationSpec, Scenario, ServerSpec
from exporter.simulator.server import Simulator


def demo_scenario() -> Scenario:
    """A small fleet in every interesting state: running, paused, failing checkpoints, a fatal connector
    error, a compile error, a stopped and a crashed pipeline; on a recently upgraded platform (two pipelines
    still on the old runtime), with a trial licence that expires in 10 days and a newer release out."""
    return Scenario(
        edition="enterprise",
        platform_version="v0.340.0",
        server=ServerSpec(license="trial", license_expires_in_days=10, latest_version="0.341.0"),
        pipelines=[
            PipelineSpec(
                name="orders",
                description="Order ingestion and revenue aggregation",
                status="Running",
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
                checkpoints=2,
                checkpoint_failure="failed to write checkpoint: No space left on device (os error 28)",
                tables=[RelationSpec(name="payments", connectors=["kafka-payments"])],
                views=[RelationSpec(name="alerts", connectors=["kafka-alerts", "webhook"])],
            ),
            PipelineSpec(
                name="clickstream",
                status="Running",
                checkpoints=1,
                tables=[
                    RelationSpec(
                        name="clicks",
                        connectors=[
                            "pubsub-clicks",
                            ConnectorSpec(
                                name="s3-backfill",
                                fatal_error="S3 error: AccessDenied: Access Denied (bucket clicks-archive)",
                                health="Unhealthy",
                                health_description="AccessDenied",
                            ),
                        ],
                    )
                ],
                views=[RelationSpec(name="sessions", connectors=["redis-sessions"])],
            ),
            PipelineSpec(
                name="inventory",
                platform_version="v0.337.0",
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
                platform_version="v0.337.0",
                status="Stopped",
                checkpoints=1,
                tables=[RelationSpec(name="events", connectors=["s3-events"])],
                views=[RelationSpec(name="daily_rollup", connectors=["postgres-rollup"])],
            ),
        ],
    )


LIFECYCLE = ("Provisioning", "Initializing", "Running", "Running", "Running", "Running", "Stopping", "Stopped")


class DemoDriver:
    """One :meth:`step` per tick; each action runs on ticks where ``tick % period == offset``."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.tick = 0
        self._actions: tuple[tuple[int, int, Callable[[], None]], ...] = (
            (1, 0, self._nightly_lifecycle),
            (3, 0, lambda: self._checkpoint("orders")),
            (4, 1, lambda: self._checkpoint("clickstream")),
            (5, 2, lambda: self._checkpoint("fraud-detection")),
            (7, 3, lambda: self._fail_checkpoint("fraud-detection")),
            (6, 4, self._parse_errors),
            (10, 5, self._toggle_inventory),
            (12, 6, self._restart_clickstream),
            (12, 9, self._clickstream_fatal_error),
            (15, 7, self._recompile_draft),
            (15, 9, self._draft_fails),
            (20, 10, lambda: self.sim.set_cluster_health("compiler", False, "compiler server unreachable")),
            (20, 12, lambda: self.sim.set_cluster_health("compiler", True)),
        )

    def step(self) -> None:
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

    def _fail_checkpoint(self, name: str) -> None:
        if self._running(name):
            self.sim.fail_checkpoint(name, "failed to write checkpoint: No space left on device (os error 28)")

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
        endpoint = "clicks.s3-backfill"
        self.sim.set_connector_fatal_error(
            "clickstream", endpoint, "S3 error: AccessDenied: Access Denied (bucket clicks-archive)"
        )
        self.sim.set_connector_health("clickstream", endpoint, "Unhealthy", "AccessDenied")

    def _recompile_draft(self) -> None:
        self.sim.set_program_status("reporting-draft", "CompilingSql")

    def _draft_fails(self) -> None:
        self.sim.fail_compile("reporting-draft", "sql", 'Error parsing SQL: Encountered "FORM" at line 3, column 10.')


def add_subcommand(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo", help="run a simulated Feldera with a lively scenario and an exporter polling it"
    )
    parser.add_argument("--scenario", metavar="FILE", help="YAML/JSON scenario instead of the built-in one")
    parser.add_argument("--feldera-port", type=int, default=8080, help="simulator port (default 8080, 0 = any)")
    parser.add_argument("--web.listen-address", dest="listen_address", default="127.0.0.1:10027", metavar="[HOST]:PORT")
    parser.add_argument("--tick", type=float, default=5.0, help="seconds between scenario steps (default 5)")
    parser.add_argument("--interval", default="5s", help="exporter poll interval (default 5s)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        scenario = Scenario.load(args.scenario) if args.scenario else demo_scenario()
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(scenario, args))
    except OSError as exc:
        print(f"error: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


async def serve(scenario: Scenario, args: argparse.Namespace) -> None:
    from exporter.app import Exporter
    from exporter.config import Settings

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with Simulator(scenario, port=args.feldera_port) as sim:
        settings = Settings.model_validate(
            {
                "web": {"listen_address": args.listen_address},
                "poll": {"interval": args.interval},
                "targets": [{"name": "demo", "url": sim.url}],
            }
        )
        exporter = Exporter(settings)
        await exporter.start()
        driver = DemoDriver(sim)
        task = asyncio.create_task(_drive(driver, args.tick), name="demo-driver")
        print(f"Simulated Feldera API: {sim.url}/v0/pipelines", flush=True)
        print(f"Simulator control:     {sim.url}{sim.control_prefix}/state", flush=True)
        print(f"Exporter metrics:      {exporter.url}/metrics", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        try:
            await stop.wait()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await exporter.stop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)


async def _drive(driver: DemoDriver, tick: float) -> None:
    while True:
        driver.step()
        await asyncio.sleep(tick)
