"""``python -m exporter.simulator`` serves a scenario file until interrupted."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import httpx
import pytest

from exporter.simulator.__main__ import main


async def test_cli_serves_a_scenario_file_and_stops_on_sigint(tmp_path: Path) -> None:
    scenario = tmp_path / "s.json"
    scenario.write_text('{"pipelines": [{"name": "a", "status": "Paused"}]}', encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "exporter.simulator",
        "--scenario",
        str(scenario),
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    async with asyncio.timeout(30):
        line = (await process.stdout.readline()).decode()
        url = line.split(" listening on ")[1].split()[0]
        async with httpx.AsyncClient(base_url=url) as client:
            body = (await client.get("/v0/pipelines/a", params={"selector": "status"})).json()
        process.send_signal(signal.SIGINT)
        assert await process.wait() == 0
    assert body["deployment_status"] == "Paused"


def test_cli_reports_a_bad_scenario_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "bad.yaml"
    scenario.write_text("pipelines:\n  - name: a\n    status: Flying\n", encoding="utf-8")
    assert main(["--scenario", str(scenario), "--port", "0"]) == 2
    assert "status" in capsys.readouterr().err
