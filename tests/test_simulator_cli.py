"""``python -m exporter.simulator`` serves a scenario file (or generated pipelines) until interrupted."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import httpx
import pytest

from exporter.simulator.__main__ import faults, main, parse_args
from exporter.simulator.faults import Fault
from exporter.simulator.scenario import Scenario


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


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("pipelines:\n  - name: a\n    status: Flying\n", "status"),
        (  # the open-source build refuses fault tolerance (docs/feldera-api.md, "Fault tolerance in runtime_config")
            "edition: community\npipelines:\n  - name: a\n    runtime_config: {fault_tolerance: {}}\n",
            "enterprise feature: fault tolerance",
        ),
        ("edition: community\npipelines:\n  - name: a\n    checkpoint_failure: full\n", "POST /checkpoint"),
    ],
)
def test_cli_reports_a_bad_scenario_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, said: str
) -> None:
    scenario = tmp_path / "bad.yaml"
    scenario.write_text(text, encoding="utf-8")
    assert main(["--scenario", str(scenario), "--port", "0"]) == 2
    assert said in capsys.readouterr().err


async def _start(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    """Start ``python -m exporter.simulator ARGS --port 0``; returns the process and its URL."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter.simulator", *args, "--port", "0", stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    line = (await process.stdout.readline()).decode()
    return process, line.split(" listening on ")[1].split()[0]


async def _stop(process: asyncio.subprocess.Process) -> int:
    process.send_signal(signal.SIGINT)
    try:
        async with asyncio.timeout(15):
            return await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise


@pytest.mark.parametrize(
    ("connectors", "inputs", "outputs"),
    [(1, ["t0.in-0"], []), (2, ["t0.in-0"], ["v0.out-0"]), (4, ["t0.in-0", "t0.in-2", "t1.in-1"], ["v0.out-0"])],
)
def test_generate_spreads_n_named_connectors_over_tables_and_views(
    connectors: int, inputs: list[str], outputs: list[str]
) -> None:
    for pipeline in Scenario.generate(3, connectors=connectors).pipelines:
        names = {
            kind: sorted(f"{r.name}.{c}" for r in relations for c in r.connectors)
            for kind, relations in (("in", pipeline.tables), ("out", pipeline.views))
        }
        assert names == {"in": inputs, "out": outputs}


def test_generate_outputs_are_a_quarter_of_the_connectors() -> None:
    pipeline = Scenario.generate(1, connectors=9, views=2).pipelines[0]
    assert [r.connectors for r in pipeline.views] == [["out-0"], ["out-1"]]
    assert sum(len(r.connectors) for r in pipeline.tables) == 7


def test_generate_without_connectors_keeps_the_default_shape() -> None:
    pipeline = Scenario.generate(1).pipelines[0]
    assert [(r.name, r.connectors) for r in pipeline.tables] == [("t0", ["in-0", None]), ("t1", ["in-1", None])]
    assert [(r.name, r.connectors) for r in pipeline.views] == [("v0", ["out-0"])]


def test_generate_rejects_fewer_than_one_connector() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Scenario.generate(1, connectors=0)


async def test_cli_generates_n_connectors_per_pipeline_seen_in_stats() -> None:
    process, url = await _start("--generate", "12", "--connectors", "5")
    try:
        async with asyncio.timeout(30), httpx.AsyncClient(base_url=url) as client:
            listed = (await client.get("/v0/pipelines", params={"selector": "status"})).json()
            running = [p["name"] for p in listed if p["deployment_status"] == "Running"]
            endpoints = {}
            for name in running:
                stats = (await client.get(f"/v0/pipelines/{name}/stats")).json()
                endpoints[name] = sorted(e["endpoint_name"] for e in stats["inputs"] + stats["outputs"])
    finally:
        assert await _stop(process) == 0
    assert len(listed) == 12
    assert len(running) >= 6
    expected = ["t0.in-0", "t0.in-2", "t1.in-1", "t1.in-3", "v0.out-0"]
    assert endpoints == dict.fromkeys(running, expected)


def test_latency_flag_configures_a_latency_fault_on_v0_only() -> None:
    (fault,) = faults(parse_args(["--generate", "1", "--latency", "0.25"]))
    assert fault == Fault("latency", path="/v0/*", seconds=0.25)
    assert fault.matches("GET", "/v0/pipelines")
    assert fault.matches("GET", "/v0/pipelines/p/tables/t/connectors/c/stats")
    assert not fault.matches("GET", "/_sim/state")
    assert faults(parse_args([])) == []


async def test_cli_latency_delays_the_api_but_not_the_control_api() -> None:
    # An hour of latency: the API cannot answer within the short timeout, the control API must answer at once.
    process, url = await _start("--generate", "2", "--latency", "3600")
    try:
        async with asyncio.timeout(30), httpx.AsyncClient(base_url=url) as client:
            state = (await client.get("/_sim/state", timeout=20)).json()
            with pytest.raises(httpx.ReadTimeout):
                await client.get("/v0/pipelines", timeout=1)
    finally:
        await _stop(process)
    assert sorted(state) == ["pipeline-00000", "pipeline-00001"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--generate", "2", "--connectors", "0"], "--connectors: must be at least 1, got 0"),
        (["--generate", "2", "--connectors", "two"], "--connectors: expected a whole number"),
        (["--connectors", "2"], "--connectors needs --generate"),
        (["--latency", "-0.5"], "--latency: must be a finite number of seconds >= 0"),
        (["--latency", "soon"], "--latency: expected a number of seconds"),
    ],
)
def test_cli_rejects_bad_connectors_and_latency(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--port", "0"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
