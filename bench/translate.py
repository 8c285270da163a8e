#!/usr/bin/env python3
"""CPU time of one cycle's translation and rendering (snapshot → metric families → gzip exposition), in process.

The snapshot is what the exporter's poller builds from a simulator serving the bench's generated fleet
(``Scenario.generate(P, connectors=C)``, as bench/run.py and bench/sizing.py use; second cycle, after one warm-up
cycle). Polling it takes a while at 10,000 pipelines, so ``--save FILE`` keeps it (pickled) and ``--load FILE``
reads it back: the same snapshot can then be measured by two checkouts (``PYTHONPATH=<other checkout>``), in
alternating processes, on a shared machine. Each round is ``families()`` then ``render()``, timed with
``time.process_time`` (this process's CPU, all threads), automatic full garbage collections off as in the
exporter; the SHA-256 of both gzip bodies shows that two checkouts produce the same bytes.

    .venv/bin/python bench/translate.py --pipelines 10000 --save /tmp/snapshot.pickle
    .venv/bin/python bench/translate.py --load /tmp/snapshot.pickle --rounds 3
    PYTHONPATH=/path/to/other/checkout .venv/bin/python bench/translate.py --load /tmp/snapshot.pickle
"""

from __future__ import annotations

import argparse
import asyncio
import copyreg
import gc
import hashlib
import pickle
import sys
import time
import types
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # after PYTHONPATH: another checkout can be measured

import exporter
from exporter.app import poll_plan
from exporter.config import build_settings
from exporter.metrics import families
from exporter.poller import Poller
from exporter.render import render
from exporter.simulator import Scenario, Simulator
from exporter.snapshot import Snapshot


def _frozen(mapping: dict[object, object]) -> types.MappingProxyType[object, object]:
    return types.MappingProxyType(mapping)


copyreg.pickle(types.MappingProxyType, lambda proxy: (_frozen, (dict(proxy),)))  # the snapshot's frozen mappings


async def poll(pipelines: int, connectors: int) -> Snapshot:
    async with Simulator(Scenario.generate(pipelines, connectors=connectors)) as simulator:
        raw = {"web": {"listen_address": "127.0.0.1:0"}, "targets": [{"url": simulator.url}]}
        settings = build_settings(raw, env={})
        poller = Poller(settings, poll_plan(settings))
        try:
            await poller.poll_once()  # warm-up: first-seen times and failure memories start here
            return await poller.poll_once()
        finally:
            await poller.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipelines", type=int, default=10_000)
    parser.add_argument("--connectors", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--save", type=Path, help="pickle the polled snapshot here and stop")
    parser.add_argument("--load", type=Path, help="measure this pickled snapshot instead of polling")
    args = parser.parse_args()
    snapshot = pickle.loads(args.load.read_bytes()) if args.load else asyncio.run(poll(args.pipelines, args.connectors))
    if args.save:
        args.save.write_bytes(pickle.dumps(snapshot, protocol=pickle.HIGHEST_PROTOCOL))
        return 0
    print(f"exporter package: {Path(exporter.__file__).parent}", flush=True)
    gc.collect()
    thresholds = gc.get_threshold()
    gc.set_threshold(thresholds[0], thresholds[1], 1 << 30)
    for round_ in range(1, args.rounds + 1):
        start = time.process_time()
        built = families(snapshot)
        middle = time.process_time()
        rendered = render(built)
        end = time.process_time()
        both = b"".join(rendered.gzip_chunks(openmetrics=False) + rendered.gzip_chunks(openmetrics=True))
        digest = hashlib.sha256(both).hexdigest()[:16]
        print(
            f"round {round_}: build {middle - start:.3f} s, render {end - middle:.3f} s, "
            f"total {end - start:.3f} s CPU; {rendered.series:,} series, gzip sha256 {digest}",
            flush=True,
        )
        del built, rendered
    return 0


if __name__ == "__main__":
    sys.exit(main())
