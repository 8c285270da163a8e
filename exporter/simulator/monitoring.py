"""Prometheus and Alertmanager for ``feldera-exporter demo``: the shipped rules and routing, real binaries.

* Rules: :mod:`exporter.mixin.rules`' ``render()`` of the mixin's ``config.yaml`` with every ``for:`` shortened to
  :func:`demo_for` (expressions, severities and annotations as shipped), so alerts fire within a minute or two at
  demo intervals.
* Alertmanager: the mixin's ``alertmanager.yml`` with its routes, grouping and inhibitions as shipped; only the
  receivers lose their webhook URLs (nothing leaves the machine: alerts are seen in Alertmanager's UI and API).
* Everything on 127.0.0.1, in one temporary directory (configs, data, logs) removed at exit; Alertmanager's
  cluster listener is switched off. :class:`Monitoring` stops both processes (SIGTERM, then SIGKILL after
  :data:`STOP_TIMEOUT` seconds) and waits for them, whatever ends the demo.

Rules and routing come from the package (:mod:`exporter.mixin`); without the binaries the demo runs without
Prometheus and Alertmanager (:func:`missing_parts` says why in one line).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from exporter.mixin import ALERTMANAGER_EXAMPLE
from exporter.mixin import rules as build

PROMETHEUS_BIN = "prometheus"
ALERTMANAGER_BIN = "prometheus-alertmanager"
AMTOOL_BIN = "amtool"
HOST = "127.0.0.1"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


class MonitoringError(Exception):
    """Prometheus or Alertmanager cannot run (port taken, binary failed); the message says which and why."""


async def stop_process(process: asyncio.subprocess.Process) -> None:
    """Stop a child as a supervisor does: ``SIGTERM``, ``STOP_TIMEOUT`` seconds to exit, then ``SIGKILL``; reaped
    either way (a child that already exited is only reaped)."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
    await process.wait()


def missing_parts(prometheus: bool, alertmanager: bool) -> str | None:
    """One line saying why the wanted parts cannot run, or None when they can (or none is wanted)."""
    if not (prometheus or alertmanager):
        return None
    wanted = [name for name, on in ((PROMETHEUS_BIN, prometheus), (ALERTMANAGER_BIN, alertmanager)) if on]
    absent = [name for name in wanted if shutil.which(name) is None]
    if absent:
        them = "them" if len(absent) > 1 else "it"
        return f"{' and '.join(absent)} not on PATH: running without {them} (scripts/bootstrap as root installs {them})"
    return None


ESCALATING = "FelderaCheckpointFailed"
"""The alert with a warning and a critical form (``critical_after``)."""
MEMORY = "FelderaPipelineMemoryPressure"
"""The alert whose critical form waits ``critical_for``."""


def demo_for(interval: float) -> int:
    """The demo's ``for:`` in seconds: three scrape intervals (a single missed poll does not fire)."""
    return 3 * scrape_seconds(interval)


def scrape_seconds(interval: float) -> int:
    """Prometheus scrapes and evaluates at the exporter's poll interval, at least every second."""
    return max(1, round(interval))


def demo_rules(interval: float) -> tuple[str, str]:
    """(rule file text, scrape job name the rules expect): the shipped rules with every ``for:`` shortened, every
    escalation to critical (``critical_after``) at twice that, ``FelderaCheckpointFailed``'s ``settle`` at twice that
    too (the demo's checkpoints fail a few seconds apart and heal within the minute),
    ``FelderaPipelineMemoryPressure``'s critical form (``critical_for``) at the shortened ``for``, and
    ``relapse_hold`` at the shortened ``for``, so the demo's failing minute shows the warning and then the critical,
    and both end within the round."""
    config = build.load_config(build.DEFAULT_CONFIG)
    short = demo_for(interval)
    overrides: dict[str, Any] = {
        name: {"for": f"{short}s"}
        for name, entry in config["alerts"].items()
        if build.duration_seconds(entry["for"], name) > short
    }
    for name, entry in config["alerts"].items():
        if "critical_after" in entry:
            overrides.setdefault(name, {})["critical_after"] = f"{2 * short}s"
    overrides.setdefault(ESCALATING, {}).update(settle=f"{2 * short}s")
    overrides.setdefault(MEMORY, {}).update(critical_for=f"{short}s")
    config = build.merge(config, {"alerts": overrides, "relapse_hold": f"{short}s"})
    return build.render(config), str(config["exporter_job"])


def demo_alertmanager_config() -> dict[str, Any]:
    """The shipped routing with receivers that notify nobody."""
    shipped = yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text(encoding="utf-8"))
    return {**shipped, "receivers": [{"name": receiver["name"]} for receiver in shipped["receivers"]]}


def prometheus_config(
    rules: Path, job: str, exporter_address: str, interval: float, alertmanager: str | None
) -> dict[str, Any]:
    every = f"{scrape_seconds(interval)}s"
    config: dict[str, Any] = {
        "global": {"scrape_interval": every, "evaluation_interval": every},
        "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [exporter_address]}]}],
    }
    if alertmanager is not None:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return config


def claim_port(port: int, flag: str) -> int:
    """``port`` if it is free on 127.0.0.1 (0: any free port, chosen now); raises :class:`MonitoringError`."""
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            raise MonitoringError(
                f"cannot use port {port} ({exc.strerror or exc}); choose another with {flag} (0 = any free port)"
            ) from None
        return int(sock.getsockname()[1])


PROMETHEUS_ALERT_PAGES = ("/alerts", "/classic/alerts")
"""Prometheus' alerts page, the first that answers 200: the web UI of the official builds, else the classic UI
(Debian's Prometheus 2.42 ships only the classic UI, under ``/classic/``, and answers ``/alerts`` with 404)."""
ALERTMANAGER_UI_SCRIPT = "/script.js"
"""Served by an Alertmanager with its web UI (official builds). Debian's 0.25 has none: ``/`` is a page saying so,
``/script.js`` is 404, and the demo prints the API and an ``amtool`` command instead."""


async def _answers_200(port: int, path: str) -> bool:
    """``GET path`` answers 200 (a bare HTTP/1.0 request: no client library needed)."""
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError:
        return False
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {HOST}:{port}\r\n\r\n".encode())
        await writer.drain()
        status = await reader.readline()
    except OSError:
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return status.split(b" ")[1:2] == [b"200"]


async def _ready(port: int) -> bool:
    return await _answers_200(port, "/-/ready")


async def links(prometheus_port: int | None, alertmanager_port: int | None) -> list[tuple[str, str]]:
    """(label, URL or command) for the demo's table: the pages these Prometheus and Alertmanager serve, or what
    works instead (the API, an ``amtool`` command)."""
    rows = []
    if prometheus_port is not None:
        url = f"http://{HOST}:{prometheus_port}"
        pages = [page for page in PROMETHEUS_ALERT_PAGES if await _answers_200(prometheus_port, page)]
        rows.append(("Prometheus alerts", url + (pages[0] if pages else "/api/v1/alerts")))
    if alertmanager_port is not None:
        url = f"http://{HOST}:{alertmanager_port}"
        if await _answers_200(alertmanager_port, ALERTMANAGER_UI_SCRIPT):
            rows.append(("Alertmanager alerts", f"{url}/#/alerts"))
        else:
            if shutil.which(AMTOOL_BIN) is not None:
                rows.append(("Alertmanager alerts", f"{AMTOOL_BIN} --alertmanager.url={url} alert query"))
            rows.append(("Alertmanager API", f"{url}/api/v2/alerts"))
    return rows


@dataclass
class Child:
    name: str
    port: int
    log: Path
    process: asyncio.subprocess.Process

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(f"  {line}" for line in text.splitlines()[-lines:])

    async def wait_ready(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT
        while not await _ready(self.port):
            if self.process.returncode is not None:
                raise MonitoringError(f"{self.name} exited with status {self.process.returncode}:\n{self.tail()}")
            if loop.time() > deadline:
                raise MonitoringError(f"{self.name} not ready after {READY_TIMEOUT:g}s:\n{self.tail()}")
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        await stop_process(self.process)


@dataclass
class Monitoring:
    """``async with Monitoring(...)``: Alertmanager and/or Prometheus running and ready; both stopped at exit."""

    exporter_address: str
    interval: float
    prometheus_port: int | None
    """None: no Prometheus; 0: any free port."""
    alertmanager_port: int | None
    children: dict[str, Child] = field(default_factory=dict)
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    @property
    def prometheus(self) -> Child | None:
        return self.children.get(PROMETHEUS_BIN)

    @property
    def alertmanager(self) -> Child | None:
        return self.children.get(ALERTMANAGER_BIN)

    async def links(self) -> list[tuple[str, str]]:
        """:func:`links` of the running Prometheus and Alertmanager."""
        return await links(
            None if self.prometheus is None else self.prometheus.port,
            None if self.alertmanager is None else self.alertmanager.port,
        )

    async def __aenter__(self) -> Monitoring:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        ports = {
            name: claim_port(port, flag)
            for name, port, flag in (
                (ALERTMANAGER_BIN, self.alertmanager_port, "--alertmanager-port"),
                (PROMETHEUS_BIN, self.prometheus_port, "--prometheus-port"),
            )
            if port is not None
        }
        workdir = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="feldera-demo-")))
        if ALERTMANAGER_BIN in ports:
            config = _write(workdir / "alertmanager.yml", demo_alertmanager_config())
            await self._spawn(
                ALERTMANAGER_BIN,
                ports[ALERTMANAGER_BIN],
                workdir,
                [
                    f"--config.file={config}",
                    f"--storage.path={workdir / 'alertmanager-data'}",
                    "--cluster.listen-address=",
                ],
            )
        if PROMETHEUS_BIN in ports:
            text, job = demo_rules(self.interval)
            rules = workdir / "alerts.yaml"
            rules.write_text(text, encoding="utf-8")
            alertmanager = f"{HOST}:{ports[ALERTMANAGER_BIN]}" if ALERTMANAGER_BIN in ports else None
            config = _write(
                workdir / "prometheus.yml",
                prometheus_config(rules, job, self.exporter_address, self.interval, alertmanager),
            )
            await self._spawn(
                PROMETHEUS_BIN,
                ports[PROMETHEUS_BIN],
                workdir,
                [f"--config.file={config}", f"--storage.tsdb.path={workdir / 'prometheus-data'}"],
            )
        await asyncio.gather(*(child.wait_ready() for child in self.children.values()))

    async def _spawn(self, name: str, port: int, workdir: Path, args: list[str]) -> None:
        log = workdir / f"{name}.log"
        with log.open("wb") as sink:
            process = await asyncio.create_subprocess_exec(
                name,
                *args,
                f"--web.listen-address={HOST}:{port}",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=sink,
                stderr=sink,
                cwd=workdir,
            )
        child = Child(name, port, log, process)
        self.children[name] = child
        self._stack.push_async_callback(child.stop)


def _write(path: Path, document: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(document), sort_keys=False), encoding="utf-8")
    return path
