"""End to end, as a user runs it: ``feldera-exporter demo`` (the command ``./scripts/demo`` execs) with the real
Prometheus and Alertmanager. Every URL the demo prints answers 200 and every command it prints works; the
scenario's failed checkpoint, fatal connector error and memory-pressure episode must reach Alertmanager (API v2, and
the printed ``amtool`` command) and leave it when the driver heals them; SIGTERM must stop the demo and every
process it started."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import eventually, start_demo

EXPECTED = {
    ("FelderaCheckpointFailed", "fraud-detection", ""),
    ("FelderaConnectorFatalError", "clickstream", "clicks.s3-backfill"),
    ("FelderaPipelineMemoryPressure", "orders", ""),
}
DEADLINE = 120.0
"""One round of the story is 24 ticks (24 s at --tick 1); Prometheus needs a few seconds to start."""


def children_of(pid: int) -> dict[int, str]:
    """{pid: command name} of the live processes whose parent is ``pid``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, _, rest = stat.rpartition(")")
        if int(rest.split()[1]) == pid:
            found[int(entry.name)] = name.partition("(")[2]
    return found


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def printed(lines: list[str]) -> dict[str, str]:
    """The demo's table: {label: URL or command}."""
    return dict(line.split(": ", 1) for line in lines if re.match(r"^[A-Z][\w ()-]*: +\S", line))


def status_of(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        return int(response.status)


def run_printed(command: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*shlex.split(command), *extra], capture_output=True, text=True, timeout=30, check=False)


def active_alerts(alertmanager: str) -> set[tuple[str, str, str]]:
    with urllib.request.urlopen(f"{alertmanager}/api/v2/alerts?active=true", timeout=5) as response:
        alerts: list[dict[str, Any]] = json.load(response)
    return {
        (a["labels"]["alertname"], a["labels"].get("pipeline_name", ""), a["labels"].get("endpoint", ""))
        for a in alerts
        if a["status"]["state"] == "active"
    }


@pytest.mark.slow
@pytest.mark.e2e
async def test_demo_alerts_reach_alertmanager_recover_and_sigterm_leaves_no_process(
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = time.monotonic()
    process, lines = await start_demo("--prometheus-port=0", "--alertmanager-port=0", "--tick=1", "--interval=1s")
    children: dict[int, str] = {}
    try:
        table = {label: value.strip() for label, value in printed(lines).items()}
        urls = {label: value for label, value in table.items() if value.startswith("http://")}
        assert {"Exporter landing page", "Exporter metrics", "Prometheus alerts", "Simulated Feldera API"} <= set(urls)
        for label, url in urls.items():  # (a fragment such as #/alerts stays in the browser)
            assert await asyncio.to_thread(status_of, url) == 200, (label, url)
        alertmanager = re.match(r"http://[^/]+", table.get("Alertmanager API") or table["Alertmanager alerts"])
        assert alertmanager is not None, table
        alertmanager_url = alertmanager.group(0)
        children = children_of(process.pid)
        assert sorted(children.values()) == ["prometheus", "prometheus-aler"]  # comm is cut at 15 characters

        seen: dict[tuple[str, str, str], float] = {}

        async def all_seen() -> bool:
            now = time.monotonic()
            for alert in (await asyncio.to_thread(active_alerts, alertmanager_url)) & EXPECTED:
                seen.setdefault(alert, now - started)
            return set(seen) == EXPECTED

        await eventually(all_seen, "the demo's alerts at Alertmanager", deadline=DEADLINE)
        fired = time.monotonic()
        if table["Alertmanager alerts"].startswith("amtool "):  # an Alertmanager without web UI (Debian's)
            listed = await asyncio.to_thread(run_printed, table["Alertmanager alerts"])
            assert listed.returncode == 0, listed.stderr
            assert {name for name, _, _ in EXPECTED} <= set(listed.stdout.split()), listed.stdout

        async def healed() -> bool:
            return not (await asyncio.to_thread(active_alerts, alertmanager_url)) & EXPECTED

        await eventually(healed, "the alerts to resolve after the driver heals them", deadline=DEADLINE)
        resolved = time.monotonic() - fired
        for label in ("Inject a fault", "Heal it"):
            sent = await asyncio.to_thread(run_printed, table[label], "-o", "/dev/null", "-w", "%{http_code}")
            assert (sent.returncode, sent.stdout) == (0, "200"), (label, sent)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await process.wait()
    assert code == 0
    assert children and not [pid for pid in children if alive(pid)]
    with capsys.disabled():
        print(
            "\n[demo e2e] tick 1s, poll/scrape/eval 1s: at Alertmanager after "
            + ", ".join(f"{name} {seconds:.1f}s" for (name, _, _), seconds in sorted(seen.items()))
            + f" (from start); gone {resolved:.1f}s after all were seen"
        )
