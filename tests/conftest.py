"""Shared test helpers: a scripted Feldera-like HTTP server (real sockets) and a config-file writer."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml

from exporter.app import Exporter, poll_plan
from exporter.config import Settings
from exporter.poller import Poller
from tests.replyserver import ReplyServer, Request, Response

__all__ = ["ReplyServer", "Request", "Response"]

Reply = Response | Callable[[Request], Awaitable[Response]]
MakeExporter = Callable[..., Awaitable[Exporter]]


def free_port() -> int:
    """A port that was free a moment ago (for processes that need a port number up front)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ipv6_loopback() -> bool:
    """Whether this machine can listen on ``::1`` (containers may have IPv6 off)."""
    try:
        with socket.create_server(("::1", 0), family=socket.AF_INET6):
            return True
    except OSError:
        return False


async def eventually(condition: Callable[[], Any], what: str, deadline: float = 30.0) -> Any:
    """Poll a sync or async condition until it returns something truthy (and return that), or fail after
    ``deadline`` seconds. Blocking conditions: ``lambda: asyncio.to_thread(check)``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if loop.time() > end:
            raise AssertionError(f"timed out after {deadline:g}s waiting for {what}")
        await asyncio.sleep(0.1)


LOOP_TURNS = 50


@dataclass
class InFlight:
    """Requests in flight at a test server: each handler runs inside :meth:`held`, which holds every request until
    ``limit`` are in flight together (an event, not a timer), then for :data:`LOOP_TURNS` more turns of the event
    loop, so that any request beyond the limit (already written on loopback by a client that allows more) arrives
    while they are held. A client that keeps to ``limit`` is seen at exactly ``limit`` (:attr:`most`)."""

    limit: int
    now: int = 0
    most: int = 0
    full: asyncio.Event = field(default_factory=asyncio.Event)

    @contextlib.asynccontextmanager
    async def held(self, deadline: float = 30.0) -> AsyncIterator[None]:
        self.now += 1
        self.most = max(self.most, self.now)
        if self.now >= self.limit:
            self.full.set()
        try:
            async with asyncio.timeout(deadline):  # fewer than limit ever in flight: fail, never hang
                await self.full.wait()
            for _ in range(LOOP_TURNS):
                await asyncio.sleep(0)  # a turn of the loop, not a delay
            yield
        finally:
            self.now -= 1


def demo_command() -> list[str]:
    """The ``feldera-exporter`` command of this venv (what ``./scripts/demo`` execs), or ``python -m exporter``."""
    script = Path(sys.executable).with_name("feldera-exporter")
    return [str(script)] if script.exists() else [sys.executable, "-m", "exporter"]


async def start_demo(*args: str, env: dict[str, str] | None = None) -> tuple[asyncio.subprocess.Process, list[str]]:
    """``feldera-exporter demo`` with the simulator and exporter on free ports, plus ``args``; returns once the
    demo printed its table (the lines, stripped). The caller stops the process."""
    process = await asyncio.create_subprocess_exec(
        *demo_command(),
        "demo",
        "--feldera-port=0",
        "--web.listen-address=127.0.0.1:0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(90):  # Prometheus and Alertmanager need a few seconds to become ready
            while not lines or not lines[-1].startswith("Press Ctrl-C"):
                line = await process.stdout.readline()
                assert line, f"demo exited early: {lines}"
                lines.append(line.decode().strip())
    except BaseException:
        if process.returncode is None:
            process.terminate()
            await process.wait()
        raise
    return process, lines


def url_of(lines: list[str], label: str) -> str:
    """The value of the demo table's row ``label:``."""
    (line,) = [line for line in lines if line.startswith(label + ":")]
    return line.split(":", 1)[1].strip()


def load_module(path: Path, name: str) -> ModuleType:
    """Import a script of the repository that is not part of the package (scripts/shipped_metrics.py, ...)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def new_poller(settings: Settings, **options: Any) -> Poller:
    """A poller with the plan the exporter makes for ``settings``."""
    return Poller(settings, poll_plan(settings), **options)


async def metrics_after_one_cycle(settings: Settings) -> str:
    """The ``/metrics`` body an exporter with ``settings`` serves after one poll cycle (no poll loop)."""
    exporter = Exporter(settings)
    await exporter.start(poll_loop=False)
    try:
        await exporter.poll_once()
        async with httpx.AsyncClient() as client:
            return (await client.get(f"{exporter.url}/metrics")).text
    finally:
        await exporter.stop()


def json_response(document: Any, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(
        status=status, body=json.dumps(document).encode(), content_type="application/json", headers=headers or []
    )


def feldera_error(status: int, error_code: str, message: str = "", retry_after: str | None = None) -> Response:
    headers = [("retry-after", retry_after)] if retry_after is not None else []
    return json_response({"message": message, "error_code": error_code, "details": None}, status, headers)


def pipeline_json(name: str, runtime: str | None = "Running", **fields: Any) -> dict[str, Any]:
    """A list entry as ``selector=status_with_connectors`` returns it (resources Provisioned unless stopped)."""
    provisioned = runtime is not None
    return {
        "id": f"id-{name}",
        "name": name,
        "platform_version": "v0.337.0",
        "program_status": "Success",
        "deployment_status": runtime or "Stopped",
        "deployment_desired_status": runtime or "Stopped",
        "deployment_resources_status": "Provisioned" if provisioned else "Stopped",
        "deployment_resources_desired_status": "Provisioned" if provisioned else "Stopped",
        "deployment_runtime_status": runtime,
        "deployment_runtime_desired_status": runtime,
        "connectors": {"num_errors": 0},
        **fields,
    }


@dataclass
class ScriptedFeldera:
    """A real HTTP server answering from per-path scripts; records every request.

    ``routes[path]`` is a list of replies consumed in order (the last one repeats) or a single reply; a reply
    is a :class:`Response` or an async callable ``request -> Response``. Unscripted paths answer 404.
    """

    routes: dict[str, Reply | list[Reply]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    server: ReplyServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}"

    def paths(self) -> list[str]:
        return [r.raw_path for r in self.requests]

    async def handle(self, request: Request) -> Response:
        self.requests.append(request)
        script = self.routes.get(request.raw_path)
        if script is None:
            return feldera_error(404, "UnknownPipelineName", f"no route {request.raw_path}")
        if not isinstance(script, list):
            script = [script]
        reply = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(reply, Response):
            return reply
        return await reply(request)

    def list_pipelines(self, *pipelines: dict[str, Any]) -> None:
        self.routes["/v0/pipelines"] = json_response(list(pipelines))


@pytest.fixture
async def feldera() -> AsyncIterator[ScriptedFeldera]:
    scripted = ScriptedFeldera()
    scripted.server = ReplyServer(scripted.handle)
    await scripted.server.start()
    try:
        yield scripted
    finally:
        await scripted.server.close()


@pytest.fixture
async def make_exporter() -> AsyncIterator[MakeExporter]:
    """``await make_exporter(settings, **options)``: an Exporter serving on a free port without its poll loops (the
    test runs cycles with ``poll_once()``); each one is stopped when the test ends."""
    started: list[Exporter] = []

    async def make(settings: Settings, **options: Any) -> Exporter:
        exporter = Exporter(settings, **options)
        await exporter.start(poll_loop=False)
        started.append(exporter)
        return exporter

    yield make
    for exporter in started:
        await exporter.stop()


async def hang(request: Request) -> Response:
    """A reply that never comes (until the server closes the connection)."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[Any], Path]:
    """Write a YAML config (a mapping, or raw text) to a temp file and return its path."""

    def write(content: Any, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content), encoding="utf-8")
        return path

    return write


SLOW_LIMIT_SECONDS = 10.0
"""A test call longer than this without the ``slow`` marker fails the run. ``slow`` marks the tests over about 3 s
alone on the 2-core machine; the limit leaves room for a loaded one. The quick loop (``-m "not slow"``) stays quick
only while this holds."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``slow`` tests first, the rest in file order (a stable sort): handed out to the xdist workers first, the long
    ones never end the run alone on one worker while the others wait."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """On an xdist worker of ``--dist loadgroup``, a test of an ``xdist_group`` fails before its set-up when it was
    not given its group (xdist writes it into the node id, which pytest 9.2 no longer lets it do:
    pytest-xdist#1386): spread over the workers, each would set up the group's module-scoped fixture (the release
    build) again."""
    config = item.config
    grouped = item.get_closest_marker("xdist_group") is not None
    if grouped and hasattr(config, "workerinput") and config.getoption("loadgroup", False) and "@" not in item.nodeid:
        pytest.fail("--dist loadgroup lost this test's xdist_group (pytest-xdist#1386; pyproject.toml pins pytest)")


class SlowCheck:
    """Where the reports arrive (the only process without xdist, the controller with it): every test call over
    :data:`SLOW_LIMIT_SECONDS` without the ``slow`` marker is listed after the run, which then fails."""

    def __init__(self) -> None:
        self.unmarked: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and report.duration > SLOW_LIMIT_SECONDS and "slow" not in report.keywords:
            self.unmarked.append(f"{report.nodeid} took {report.duration:.1f}s")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.unmarked and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.unmarked:
            terminalreporter.section(f"over {SLOW_LIMIT_SECONDS:g}s without @pytest.mark.slow", red=True)
            for line in self.unmarked:
                terminalreporter.line(line)


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # an xdist worker sends its reports to the controller
        config.pluginmanager.register(SlowCheck(), "slow-check")


EXPORTER = Path(sys.executable).parent / "feldera-exporter"


@dataclass
class Running:
    process: asyncio.subprocess.Process
    url: str
    log: Path


@contextlib.asynccontextmanager
async def running_exporter(feldera_url: str, tmp_path: Path, interval: str, *flags: str) -> AsyncIterator[Running]:
    """The ``feldera-exporter`` process on a free port (more ``flags`` after the others), killed on exit if it is
    still running."""
    config = tmp_path / "config.yaml"
    config.write_text(f"poll:\n  interval: {interval}\n")
    log = tmp_path / "exporter.log"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            str(EXPORTER),
            "--config",
            str(config),
            "--feldera-url",
            feldera_url,
            "--web.listen-address",
            "127.0.0.1:0",
            *flags,
            stdout=sink,
            stderr=sink,
        )
    try:

        def listening() -> str | None:
            match = re.search(r"listening on (http://\S+?),", log.read_text())
            if match is None and process.returncode is not None:
                raise AssertionError(f"exporter exited early:\n{log.read_text()}")
            return match.group(1) if match else None

        url = str(await eventually(listening, "the exporter to listen"))
        yield Running(process, url, log)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
