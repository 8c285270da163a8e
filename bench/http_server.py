"""Server CPU per request of the exporter's HTTP server, measured from outside the server process.

    flock /tmp/feldera-bench.lock .venv/bin/python bench/http_server.py [--requests 20000] [--in-flight 32]
        [--old-commit b6f0255]

Each server runs alone in a child process and answers ``GET /-/healthy``-like requests with a 3-byte body (so the
number is the HTTP layer's cost, not the exposition's); the client (aiohttp, keep-alive, ``--in-flight``
concurrent requests) runs in this process. Server CPU = user + system time of the child from ``/proc/PID/stat``
over the measured requests, after a warm-up. ``--old-commit`` serves with ``exporter/httpserver.py`` as it was at
that commit (the h11 server this repository used before issue #14; h11 must be installed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")

NEW_SERVER = """
import asyncio, sys
from aiohttp import web
from exporter.webserver import EVERY_PATH, WebServer

async def ok(request):
    return web.Response(text="OK\\n")

async def main():
    app = web.Application()
    app.router.add_route("*", EVERY_PATH, ok)
    async with WebServer(app) as server:
        print(server.port, flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""

OLD_SERVER = """
import asyncio, importlib.util, sys
spec = importlib.util.spec_from_file_location("old_httpserver", sys.argv[1])
old = importlib.util.module_from_spec(spec)
sys.modules["old_httpserver"] = old
spec.loader.exec_module(old)

async def ok(request):
    return old.Response(body=b"OK\\n")

async def main():
    async with old.HttpServer(ok) as server:
        print(server.port, flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def load(port: int, requests: int, in_flight: int) -> None:
    url = f"http://127.0.0.1:{port}/-/healthy"
    remaining = requests
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight)) as session:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                async with session.get(url) as response:
                    await response.read()
                    assert response.status == 200, response.status

        await asyncio.gather(*(worker() for _ in range(in_flight)))


def measure(name: str, args: list[str], requests: int, in_flight: int) -> None:
    child = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        asyncio.run(load(port, 2000, in_flight))  # warm-up
        before, started = cpu_seconds(child.pid), time.perf_counter()
        asyncio.run(load(port, requests, in_flight))
        cpu, wall = cpu_seconds(child.pid) - before, time.perf_counter() - started
    finally:
        child.terminate()
        child.wait()
    print(
        f"{name}: {requests} requests, {in_flight} in flight: server CPU {cpu / requests * 1e6:.0f} µs/request, "
        f"{requests / wall:.0f} requests/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--old-commit", help="also measure exporter/httpserver.py of this commit")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"load average before: {Path('/proc/loadavg').read_text().strip()}")
    with tempfile.TemporaryDirectory() as tmp:
        servers = [("aiohttp.web (exporter/webserver.py)", ["-c", NEW_SERVER])]
        if args.old_commit:
            old = Path(tmp) / "old_httpserver.py"
            source = subprocess.run(
                ["git", "show", f"{args.old_commit}:exporter/httpserver.py"], cwd=ROOT, check=True, capture_output=True
            ).stdout
            old.write_bytes(source)
            servers.append((f"h11 httpserver.py ({args.old_commit})", ["-c", OLD_SERVER, str(old)]))
        for _ in range(args.rounds):
            for name, server_args in servers:
                measure(name, server_args, args.requests, args.in_flight)
    print(f"load average after: {Path('/proc/loadavg').read_text().strip()}")


if __name__ == "__main__":
    main()
