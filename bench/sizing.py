#!/usr/bin/env python3
"""Series and gzip bytes per /metrics scrape by fleet size, for the default and the lean configuration.

For each fleet size a simulator (``Scenario.generate(P, connectors=C)``, the fleet of bench/run.py: 60 % Running,
10 % each Paused, Stopped, Initializing, Suspended) is served over HTTP on loopback; the exporter's poller
polls it once per configuration (after one warm-up cycle, so checkpoint and failure memories are as in a running
exporter) and the rendered exposition is measured: sample lines, gzip bytes (what Prometheus downloads), plain
bytes. Quoted in docs/performance.md#current. Not a timing benchmark: it reports sizes only.

    .venv/bin/python bench/sizing.py                          # 100, 1,000, 10,000 pipelines x 4 connectors
    .venv/bin/python bench/sizing.py --pipelines 100 --connectors 8
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exporter.app import poll_plan  # noqa: E402
from exporter.config import build_settings, read_yaml  # noqa: E402
from exporter.metrics import emitted_specs, families  # noqa: E402
from exporter.poller import Poller  # noqa: E402
from exporter.render import render  # noqa: E402
from exporter.simulator import Scenario, Simulator  # noqa: E402

CONFIGS = {"default": None, "lean": ROOT / "config.lean.yaml"}


async def measure(pipelines: int, connectors: int) -> list[tuple[str, int, int, int]]:
    rows = []
    async with Simulator(Scenario.generate(pipelines, connectors=connectors)) as simulator:
        for name, path in CONFIGS.items():
            raw = read_yaml(path)[0] if path is not None else {}
            raw |= {"web": {"listen_address": "127.0.0.1:0"}, "targets": [{"url": simulator.url}]}
            settings = build_settings(raw, env={})
            poller = Poller(settings, poll_plan(settings))
            try:
                await poller.poll_once()  # warm-up: first-seen times and failure memories start here
                snapshot = await poller.poll_once()
            finally:
                await poller.aclose()
            rendered = render(families(snapshot, specs=emitted_specs(settings)))
            gzipped = rendered.gzip_size(openmetrics=False)
            rows.append((name, rendered.series, gzipped, rendered.plain_size(openmetrics=False)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipelines", type=int, nargs="+", default=[100, 1_000, 10_000])
    parser.add_argument("--connectors", type=int, default=4)
    args = parser.parse_args()
    print(f"| pipelines (x {args.connectors} connectors) | config | series | per pipeline | gzip bytes | plain bytes |")
    print("|---|---|---|---|---|---|")
    for count in args.pipelines:
        for name, series, gzipped, plain in asyncio.run(measure(count, args.connectors)):
            print(f"| {count:,} | {name} | {series:,} | {series / count:.1f} | {gzipped:,} | {plain:,} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
