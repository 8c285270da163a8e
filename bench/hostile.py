#!/usr/bin/env python3
"""Peak RSS of the exporter for the largest answers its defaults allow (issue 25: bounded size).

For each shape a fresh exporter process (``python -m exporter run``) polls a Feldera stand-in on loopback that
answers every cycle with that shape; after ``--cycles`` cycles the exporter's own high-water mark (``VmHWM`` of
``/proc/<pid>/status``) is read. The shapes are the worst a hostile or broken Feldera can send within the
defaults (``targets[].max_response_size``, ``targets[].max_pipelines`` and the JSON value bounds of
``exporter/client.py``), next to an empty fleet and a legitimate list of ``max_pipelines`` pipelines. Quoted in
docs/sizing.md; not a test (pytest collects only ``tests/``).

    .venv/bin/python bench/hostile.py                 # every shape, 3 cycles each
    .venv/bin/python bench/hostile.py --shape values  # one shape
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exporter.client import LIST_VALUES_PER_PIPELINE, MAX_JSON_VALUES  # noqa: E402
from exporter.config import TargetSettings  # noqa: E402
from exporter.simulator.monitoring import stop_process  # noqa: E402

DEFAULTS = TargetSettings()
CAP = int(DEFAULTS.max_response_size)
PIPELINES = DEFAULTS.max_pipelines
LIST_VALUES = PIPELINES * LIST_VALUES_PER_PIPELINE
STAMP = "2026-01-01T00:00:00Z"
BUSY = 64


def entry(name: str, running: bool = False) -> dict[str, object]:
    """A list entry shaped as Feldera's ``selector=status_with_connectors`` (program_config and details included)."""
    status = "Running" if running else "Stopped"
    return {
        "id": "9a796ae8-cd52-52c1-9b54-8cf25a762366",
        "name": name,
        "description": "",
        "tags": [],
        "created_at": STAMP,
        "version": 1,
        "platform_version": "v0.337.0",
        "program_config": {"profile": "optimized", "cache": True, "runtime_version": None},
        "program_version": 1,
        "program_status": "Success",
        "program_status_since": STAMP,
        "deployment_error": None,
        "refresh_version": 1,
        "storage_status": "InUse",
        "storage_status_details": {"checkpoints": []},
        "deployment_id": "81877ca9-6cc6-4551-9ff4-7c44d2b7e040",
        "deployment_initial": "Running",
        "deployment_status": status,
        "deployment_status_since": STAMP,
        "deployment_desired_status": status,
        "deployment_desired_status_since": STAMP,
        "deployment_resources_status": "Provisioned" if running else "Stopped",
        "deployment_resources_status_since": STAMP,
        "deployment_resources_desired_status": "Provisioned" if running else "Stopped",
        "deployment_resources_desired_status_since": STAMP,
        "deployment_runtime_status": status if running else None,
        "deployment_runtime_status_details": None,
        "deployment_runtime_status_since": STAMP if running else None,
        "deployment_runtime_desired_status": status if running else None,
        "deployment_runtime_desired_status_since": STAMP if running else None,
        "bootstrap_policy": "allow",
        "connectors": {"num_errors": 0},
    }


def values_of(body: bytes) -> int:
    return body.count(b",") + body.count(b"{") + body.count(b"[") + 1


def fill_keys(count: int, size: int) -> bytes:
    """One object of ``count`` distinct keys padded so that the whole body is about ``size`` bytes."""
    width = max(8, size // count - 5)
    return b"{" + b",".join(b'"%s":0' % str(i).rjust(width, "k").encode() for i in range(count)) + b"}"


SHAPES: dict[str, tuple[str, Callable[[], bytes]]] = {
    "empty": ("no pipelines: the baseline", lambda: b"[]"),
    "legit": (
        f"{PIPELINES:,} stopped pipelines, Feldera-shaped (the most max_pipelines allows)",
        lambda: json.dumps([entry(f"pipeline-{i:05d}") for i in range(PIPELINES)]).encode(),
    ),
    "values": (
        f'[{{"a":[]}}, ...]: {LIST_VALUES:,} JSON values (the list bound), over max_pipelines once parsed',
        lambda: b"[" + b",".join([b'{"a":[]}'] * (LIST_VALUES // 3 - 1)) + b"]",
    ),
    "keys": (
        f"one entry of {LIST_VALUES - 2:,} distinct keys filling max_response_size: malformed",
        lambda: b"[" + fill_keys(LIST_VALUES - 2, CAP - 16) + b"]",
    ),
    "name": (
        "one pipeline whose name fills max_response_size (kept: names are identities)",
        lambda: b'[{"name":"' + b"n" * (CAP - 16) + b'"}]',
    ),
    "wide": (
        "one text filling max_response_size, ASCII but for one 4-byte character (4 bytes per character once parsed)",
        lambda: b'[{"name":"p","description":"' + b"w" * (CAP - 48) + "😀".encode() + b'"}]',
    ),
    "stats": (
        f"one running pipeline whose stats answer holds {MAX_JSON_VALUES:,} JSON values (the answer bound)",
        lambda: json.dumps([entry("p", running=True)]).encode(),
    ),
    "bodies": (
        f"{BUSY} running pipelines whose stats answers are each {CAP // 4 / 2**20:g} MiB (a quarter of the cap), "
        "read concurrently",
        lambda: json.dumps([entry(f"p{i}", running=True) for i in range(BUSY)]).encode(),
    ),
}
STATS = {
    "stats": b'{"inputs":[' + b",".join([b"{}"] * (MAX_JSON_VALUES // 2 - 2)) + b"]}",
    "bodies": b'{"inputs":[]' + b" " * (CAP // 4 - 16) + b"}",
}


async def serve(body: bytes, stats: bytes | None) -> tuple[web.AppRunner, int, list[float]]:
    listed: list[float] = []

    async def handle(request: web.Request) -> web.Response:
        if request.path == "/v0/pipelines":
            listed.append(time.monotonic())
            return web.Response(body=body, content_type="application/json")
        if stats is not None and request.path.endswith("/stats"):
            return web.Response(body=stats, content_type="application/json")
        if request.path in ("/v0/config", "/v0/cluster_healthz"):
            return web.json_response({})
        return web.json_response({"message": "no", "error_code": "UnknownPipelineName"}, status=404)

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port, listed


def high_water_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    found = re.search(r"^VmHWM:\s*(\d+) kB", status, re.M)
    assert found is not None
    return int(found.group(1)) / 1024


async def measure(shape: str, cycles: int, workdir: Path) -> dict[str, object]:
    what, make = SHAPES[shape]
    body = make()
    runner, port, listed = await serve(body, STATS.get(shape))
    config = workdir / f"{shape}.yaml"
    config.write_text(
        json.dumps(
            {
                "web": {"listen_address": "127.0.0.1:0"},
                "poll": {"interval": "1s"},
                "targets": [{"url": f"http://127.0.0.1:{port}", "timeout": "60s"}],
            }
        )
    )
    log = workdir / f"{shape}.log"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "exporter", "run", "--config", str(config),
            cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while len(listed) < cycles + 1:  # the answer to the last counted cycle has been parsed by the next request
            if process.returncode is not None:
                raise SystemExit(f"exporter exited ({process.returncode}):\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise SystemExit(f"{shape}: no {cycles} cycles within 600 s")
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        peak = high_water_mib(process.pid)
    finally:
        await stop_process(process)
        await runner.cleanup()
    lines = [line for line in log.read_text(errors="replace").splitlines() if " WARNING " in line or " ERROR " in line]
    outcome = lines[-1].split(" ", 3)[-1][:160] if lines else "polled"
    return {
        "shape": shape,
        "what": what,
        "body_mib": len(body) / 2**20,
        "values": values_of(body),
        "peak_mib": peak,
        "outcome": outcome,
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/hostile.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), action="append", help="only this shape (repeatable)")
    parser.add_argument("--cycles", type=int, default=3, help="poll cycles per shape (3)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    print(
        f"defaults: max_response_size {CAP / 2**20:g} MiB, max_pipelines {PIPELINES:,}, "
        f"list bound {LIST_VALUES:,} JSON values, other answers {MAX_JSON_VALUES:,}",
        file=sys.stderr,
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as directory:
        for shape in args.shape or list(SHAPES):
            print(f"{shape} ...", file=sys.stderr)
            results.append(asyncio.run(measure(shape, args.cycles, Path(directory))))
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'shape':8} {'body MiB':>9} {'JSON values':>12} {'peak RSS MiB':>13}  outcome")
    for row in results:
        print(f"{row['shape']:8} {row['body_mib']:9.1f} {row['values']:12,} {row['peak_mib']:13.1f}  {row['outcome']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
