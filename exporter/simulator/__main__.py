"""``python -m exporter.simulator --scenario FILE --port N``: serve a scenario until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from exporter.simulator.scenario import Scenario
from exporter.simulator.server import Simulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m exporter.simulator", description=__doc__)
    parser.add_argument("--scenario", help="YAML/JSON scenario file (default: the demo scenario)")
    parser.add_argument("--generate", type=int, metavar="N", help="serve N generated pipelines instead")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    return parser.parse_args(argv)


def load(args: argparse.Namespace) -> Scenario:
    if args.generate is not None:
        return Scenario.generate(args.generate)
    if args.scenario:
        return Scenario.load(args.scenario)
    from exporter.simulator.demo import demo_scenario

    return demo_scenario()


async def serve(scenario: Scenario, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with Simulator(scenario, host=host, port=port) as sim:
        print(f"Feldera simulator listening on {sim.url} ({len(scenario.pipelines)} pipelines)", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        scenario = load(args)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(scenario, args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
