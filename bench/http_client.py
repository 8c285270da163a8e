#!/usr/bin/env python3
"""Client CPU per request of HTTP stacks: N GETs with C in flight against a local server in another process.

One run per stack, each in a fresh process (``--stack``); the report is the client process's CPU time (user +
system, ``time.process_time``) divided by the requests, so the server's CPU does not count. The server is
aiohttp.web answering a 31-byte JSON document (a ``checkpoint_status`` answer) on keep-alive connections.

Stacks:
- ``exporter``: the exporter's own :class:`exporter.client.FelderaClient` (``checkpoint_status``: request, body read
  within ``max_response_size``, JSON validated into the model, stats recorded).
- ``aiohttp``: a bare ``ClientSession`` (``get`` + ``read``), configured as the exporter's;
  ``aiohttp-trust-env``: the same with ``trust_env=True`` (proxy and netrc looked up in a thread per request).
- ``httpx``: ``httpx.AsyncClient``; ``httpx-aiohttp``: httpx's API on aiohttp (``httpx_aiohttp.AiohttpTransport``).
- ``h11-pool``: the keep-alive pool the exporter had before (``exporter/transport.py`` at b6f0255), from the file
  given with ``--h11-pool`` (``git show b6f0255:exporter/transport.py > /tmp/transport.py``).

httpx and httpx-aiohttp are not dependencies of the exporter: install them to measure them. Usage::

    flock /tmp/feldera-bench.lock .venv/bin/python bench/http_client.py --repeat 3 --h11-pool /tmp/transport.py
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BODY = b'{"success": 7, "failure": null}'
PATH = "/v0/pipelines/p/checkpoint_status"
STACKS = ("exporter", "aiohttp", "aiohttp-trust-env", "httpx", "httpx-aiohttp", "h11-pool")


def serve(port: int) -> None:
    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="application/json")

    app = web.Application()
    app.router.add_get(PATH, answer)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def measure(stack: str, url: str, requests: int, in_flight: int, h11_pool: Path | None) -> dict[str, float]:
    get, close = await _client(stack, url, h11_pool)
    for _ in range(in_flight):  # warm-up: open the connections
        await get()
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await get()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await close()
    return {"cpu_us_per_request": cpu / requests * 1e6, "requests_per_second": requests / wall}


async def _client(
    stack: str, url: str, h11_pool: Path | None
) -> tuple[Callable[[], Awaitable[object]], Callable[[], Awaitable[object]]]:
    if stack == "exporter":
        from exporter.client import FelderaClient
        from exporter.config import TargetSettings

        client = FelderaClient(TargetSettings(url=url), max_connections=64)
        return (lambda: client.checkpoint_status("p")), client.aclose
    if stack in ("aiohttp", "aiohttp-trust-env"):
        import aiohttp

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=stack == "aiohttp-trust-env",
            headers={"Accept": "application/json", "Authorization": "Bearer k"},
        )

        async def aiohttp_get() -> bytes:
            async with session.get(url + PATH) as response:
                return await response.read()

        return aiohttp_get, session.close
    if stack in ("httpx", "httpx-aiohttp"):
        import httpx

        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        if stack == "httpx":
            http = httpx.AsyncClient(base_url=url, limits=limits)
        else:
            from httpx_aiohttp import HttpxAiohttpClient

            http = HttpxAiohttpClient(base_url=url, limits=limits)

        async def httpx_get() -> bytes:
            return (await http.get(PATH)).content

        return httpx_get, http.aclose
    if stack == "h11-pool":
        if h11_pool is None:
            raise SystemExit("--h11-pool FILE is needed for the h11-pool stack")
        spec = importlib.util.spec_from_file_location("old_transport", h11_pool)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
        pool = module.Http11Pool(url, [("Accept", "application/json")], timeout=10.0, ssl_context=None)

        async def pool_get() -> bytes:
            return (await pool.request("GET", PATH)).content

        return pool_get, pool.aclose
    raise SystemExit(f"unknown stack {stack!r}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stack", choices=STACKS, action="append", help="stacks to measure (default: all)")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3, help="runs per stack, each in a new process (3)")
    parser.add_argument("--h11-pool", type=Path, help="exporter/transport.py of b6f0255 (for the h11-pool stack)")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    if args.one:
        url = os.environ["BENCH_URL"]
        result = asyncio.run(measure(args.one, url, args.requests, args.in_flight, args.h11_pool))
        print(json.dumps(result))
        return 0
    stacks = args.stack or [s for s in STACKS if s != "h11-pool" or args.h11_pool]
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], cwd=ROOT)
    try:
        _wait_for(port)
        print(f"{args.requests} GETs, {args.in_flight} in flight, load average {_loadavg()}", flush=True)
        for stack in stacks:
            runs = []
            for _ in range(args.repeat):
                command = [sys.executable, __file__, "--one", stack, "--requests", str(args.requests)]
                command += ["--in-flight", str(args.in_flight)]
                if args.h11_pool:
                    command += ["--h11-pool", str(args.h11_pool)]
                env = {**os.environ, "BENCH_URL": f"http://127.0.0.1:{port}", "PYTHONPATH": str(ROOT)}
                out = subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True, text=True).stdout
                runs.append(json.loads(out))
            cpu = [r["cpu_us_per_request"] for r in runs]
            rate = statistics.median(r["requests_per_second"] for r in runs)
            print(
                f"{stack:18} CPU/request {min(cpu):7.0f}-{max(cpu):<7.0f} µs (median {statistics.median(cpu):.0f}), "
                f"{rate:,.0f} requests/s",
                flush=True,
            )
        print(f"load average at the end {_loadavg()}")
    finally:
        server.terminate()
        server.wait(10)
    return 0


def _wait_for(port: int) -> None:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


if __name__ == "__main__":
    sys.exit(main())
