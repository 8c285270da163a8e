#!/usr/bin/env python3
"""Scrape latency under 300 hostile connections (issue 25, point 2: a scrape is answered within 1 s).

For each kind of hostile client (``tests/hostileclients.py``: idle keep-alive, slow, unauthenticated, wrong
passwords, and the four together) the exporter of ``tests/test_robustness_hostile.py`` (basic auth, bcrypt cost 10,
default server limits, 50 pipelines) is scraped 10 times, 0.2 s apart, while 300 such connections are open. The test
asserts that no scrape is held back (each within Prometheus' default scrape timeout); the 1 s goal depends on the
machine's load and is measured here, on a quiet machine. Not a test (pytest collects only ``tests/``).

    .venv/bin/python bench/hostile_clients.py                # every kind
    .venv/bin/python bench/hostile_clients.py --kind bcrypt  # one kind (repeatable)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import sys
import tempfile
from pathlib import Path
from statistics import median

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import ScriptedFeldera  # noqa: E402
from tests.replyserver import ReplyServer  # noqa: E402
from tests.test_robustness_hostile import (  # noqa: E402
    PASSWORD,
    SCRAPE_TIMEOUT,
    exporter_with_basic_auth,
    hostile_clients,
    scrapes,
)

GOAL = 1.0
"""Seconds: issue 25's goal for the slowest scrape."""
KINDS = {kind: [kind] for kind in ("idle", "slow", "unauthenticated", "bcrypt")} | {
    "all": ["idle", "slow", "unauthenticated", "bcrypt"]
}


async def measure(kinds: list[str]) -> list[float]:
    feldera = ScriptedFeldera()
    feldera.server = ReplyServer(feldera.handle)
    await feldera.server.start()
    credentials = base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()
    headers = {"Authorization": f"Basic {credentials}", "Accept-Encoding": "gzip"}
    try:
        with tempfile.TemporaryDirectory() as workdir:
            async with (
                exporter_with_basic_auth(feldera, Path(workdir)) as exporter,
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT)) as session,
            ):
                url = f"{exporter.url}/metrics"
                async with session.get(url, headers=headers) as primed:
                    primed.raise_for_status()
                async with hostile_clients(kinds, exporter.port):
                    return await scrapes(session, url, headers)
    finally:
        await feldera.server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=sorted(KINDS), action="append", help="only this kind (repeatable)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    logging.getLogger("exporter").setLevel(logging.ERROR)  # the stand-in has no cluster_healthz: a line per cycle
    results = {kind: asyncio.run(measure(KINDS[kind])) for kind in args.kind or KINDS}
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{'kind':<16}{'median s':>10}{'max s':>8}  within {GOAL:g} s")
        for kind, latencies in results.items():
            print(f"{kind:<16}{median(latencies):>10.3f}{max(latencies):>8.3f}  {max(latencies) < GOAL}")
    return 0 if all(max(latencies) < GOAL for latencies in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
