"""``python -m exporter.simulator --scenario FILE --port N``: serve a scenario until interrupted.

``--generate N [--connectors C]`` serves N generated pipelines (C connectors each); ``--latency SECONDS`` delays
every ``/v0/*`` answer (a ``latency`` fault; the ``/_sim`` control API is never delayed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from exporter.argtypes import at_least_one, count, port, seconds
from exporter.simulator.faults import Fault
from exporter.simulator.scenario import Scenario
from exporter.simulator.server import Simulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m exporter.simulator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenario", help="YAML/JSON scenario file (default: the demo scenario)")
    parser.add_argument("--generate", type=count, metavar="N", help="serve N generated pipelines instead")
    parser.add_argument(
        "--connectors",
        type=at_least_one,
        metavar="N",
        help="with --generate: N connectors per pipeline (max(1, N // 4) outputs when N >= 2, the rest inputs)",
    )
    parser.add_argument(
        "--latency",
        type=seconds,
        default=0.0,
        metavar="SECONDS",
        help="delay every /v0/* answer by SECONDS (default 0; the /_sim control API is not delayed)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=port, default=8080, help="0..65535, 0 = any free port (default 8080)")
    args = parser.parse_args(argv)
    if args.connectors is not None and args.generate is None:
        parser.error("--connectors needs --generate")
    return args


def faults(args: argparse.Namespace) -> list[Fault]:
    """The faults the command line asks for: ``--latency`` on every ``/v0/*`` request."""
    if args.latency > 0:
        return [Fault("latency", path="/v0/*", seconds=args.latency)]
    return []


def load(args: argparse.Namespace) -> Scenario:
    if args.generate is not None:
        return Scenario.generate(args.generate, connectors=args.connectors)
    if args.scenario:
        return Scenario.load(args.scenario)
    from exporter.simulator.demo import demo_scenario

    return demo_scenario()


async def serve(scenario: Scenario, host: str, port: int, faults_: list[Fault] | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with Simulator(scenario, host=host, port=port) as sim:
        for fault in faults_ or ():
            sim.add_fault(fault)
        print(f"Feldera simulator listening on {sim.url} ({len(scenario.pipelines)} pipelines)", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        scenario = load(args)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(scenario, args.host, args.port, faults(args)))
    except OSError as exc:  # port in use, unknown host
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
