"""The demo: a driver that keeps the default scenario moving, and an exporter that can scrape it."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from exporter.app import Exporter
from exporter.cli import build_parser
from exporter.config import Settings
from exporter.flags import overrides_from
from exporter.metrics.server import normalized_version
from exporter.mixin import ALERTMANAGER_EXAMPLE
from exporter.sidecar.routes import DISABLED
from exporter.simulator import ManualClock, Simulator
from exporter.simulator.demo import (
    CYCLE,
    FATAL_ENDPOINT,
    FAULT_AT,
    HEAL_AT,
    MEMORY_PIPELINE,
    RESET_PIPELINE,
    RESET_WATCH,
    DemoDriver,
    demo_scenario,
    demo_settings,
)
from exporter.simulator.monitoring import demo_alertmanager_config, demo_rules, links
from tests.conftest import ReplyServer, Request, Response, eventually, start_demo, url_of

ROOT = Path(__file__).resolve().parent.parent


def test_demo_driver_moves_pipelines_through_states_and_failures() -> None:
    sim = Simulator(demo_scenario(), clock=ManualClock())
    driver = DemoDriver(sim)
    nightly: set[str] = set()
    draft: set[str] = set()
    fraud_failed = clickstream_fatal = compiler_down = False
    for _ in range(60):
        sim.advance_clock(5)
        driver.step()
        nightly.add(sim.pipeline("nightly-batch").deployment_status)
        draft.add(str(sim.pipeline("reporting-draft").program.value))
        fraud = sim.pipeline("fraud-detection")
        failure, success = fraud.checkpoint_failure, fraud.checkpoint_success
        fraud_failed |= failure is not None and (success is None or failure["sequence_number"] > success)
        clickstream_fatal |= sim.pipeline("clickstream").find_endpoint("clicks.s3-backfill").fatal_error is not None
        compiler_down |= not sim.world.cluster.truth["compiler"][0]
    assert {"Provisioning", "Initializing", "Running", "Stopping", "Stopped"} <= nightly
    assert {"CompilingSql", "SqlError"} <= draft
    assert fraud_failed and clickstream_fatal and compiler_down


def _failing(sim: Simulator) -> tuple[bool, bool]:
    """(fraud-detection's newest checkpoint failed, clickstream's s3 connector has a fatal error)."""
    fraud = sim.pipeline("fraud-detection")
    failure, success = fraud.checkpoint_failure, fraud.checkpoint_success
    failed = failure is not None and (success is None or failure["sequence_number"] > success)  # numbered from 0
    fatal = sim.pipeline("clickstream").find_endpoint(FATAL_ENDPOINT).fatal_error is not None
    return failed, fatal


def test_every_round_a_checkpoint_fails_and_a_connector_fails_until_the_driver_heals_both() -> None:
    watched: list[tuple[str, str, str]] = []
    sim = Simulator(demo_scenario(), clock=ManualClock())
    driver = DemoDriver(sim, lambda pipeline, token, name: watched.append((pipeline, token, name)))
    assert _failing(sim) == (False, False)  # the story starts healthy
    for round_ in range(2):
        states = []
        for tick in range(CYCLE):
            sim.advance_clock(5)
            driver.step()
            states.append(_failing(sim))
            if tick == 0:  # a reset is issued and handed over for watching at the start of every round
                pipeline, token, name = watched[-1]
                assert (pipeline, name) == (RESET_PIPELINE, RESET_WATCH)
                assert sim.world.get(pipeline).reset_tokens[token][1] == "pending"
        checkpoint_failed = [failed for failed, _ in states]
        fatal = [fatal for _, fatal in states]
        assert fatal == [FAULT_AT <= tick < HEAL_AT for tick in range(CYCLE)], round_
        # a requested checkpoint is written for a tick: its result shows on the tick after, so the failure shows
        # from the tick after FAULT_AT and is gone the tick after HEAL_AT at the latest
        assert not any(checkpoint_failed[: FAULT_AT + 1]), round_
        assert all(checkpoint_failed[FAULT_AT + 1 : HEAL_AT]), round_
        assert not any(checkpoint_failed[HEAL_AT + 1 :]), round_
        assert sim.world.get(RESET_PIPELINE).reset_tokens[watched[-1][1]][1] == "completed"
    assert len(watched) == 2


def test_every_round_has_one_memory_pressure_episode() -> None:
    sim = Simulator(demo_scenario(), clock=ManualClock())
    driver = DemoDriver(sim)
    for round_ in range(2):
        levels = []
        for _ in range(CYCLE):
            sim.advance_clock(5)
            driver.step()
            levels.append(sim.pipeline(MEMORY_PIPELINE).memory_pressure)
        assert levels == ["low"] * 4 + ["high"] * 3 + ["critical"] * 7 + ["low"] * 10, round_
    assert sim.pipeline(MEMORY_PIPELINE).memory_pressure_epoch == 2


def test_demo_rules_shorten_only_the_waits_and_the_alertmanager_config_keeps_the_routing() -> None:
    text, job = demo_rules(interval=5.0)
    rules = yaml.safe_load(text)
    shipped = yaml.safe_load((ROOT / "prometheus" / "alerts.yaml").read_text(encoding="utf-8"))
    assert job == "feldera-exporter"
    fors = set()
    durations = re.compile(r"\[\d+[smhd]\]|\[\d+[smhd]:\d+[smhd]\]")  # the demo shortens relapse_hold and settle
    for demo_group, shipped_group in zip(rules["groups"], shipped["groups"], strict=True):
        for demo, original in zip(demo_group["rules"], shipped_group["rules"], strict=True):
            assert {k: v for k, v in demo.items() if k not in ("for", "expr")} == {
                k: v for k, v in original.items() if k not in ("for", "expr")
            }
            assert durations.sub("[]", demo["expr"]) == durations.sub("[]", original["expr"])
            fors.add(demo.get("for"))
    assert fors <= {None, "15s", "30s", "0s"} and {"15s", "30s"} <= fors  # 30s: the critical escalation
    demo_exprs = "\n".join(r["expr"] for g in rules["groups"] for r in g["rules"])
    assert "[15s])" in demo_exprs and "[30s])" in demo_exprs  # relapse_hold and the checkpoint alert's settle

    config = demo_alertmanager_config()
    shipped_am = yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text(encoding="utf-8"))
    assert {k: v for k, v in config.items() if k != "receivers"} == {
        k: v for k, v in shipped_am.items() if k != "receivers"
    }
    assert config["receivers"] == [{"name": r["name"]} for r in shipped_am["receivers"]]


def ui_server(paths: set[str]) -> ReplyServer:
    """A Prometheus or Alertmanager stand-in answering 200 on ``paths`` and 404 elsewhere."""

    async def answer(request: Request) -> Response:
        return Response(200 if request.path in paths else 404)

    return ReplyServer(answer)


async def test_demo_links_use_the_web_uis_of_official_builds() -> None:
    async with ui_server({"/alerts", "/classic/alerts"}) as prometheus, ui_server({"/script.js"}) as alertmanager:
        ports = prometheus.port, alertmanager.port
        rows = await links(*ports)
    assert rows == [
        ("Prometheus alerts", f"http://127.0.0.1:{ports[0]}/alerts"),
        ("Alertmanager alerts", f"http://127.0.0.1:{ports[1]}/#/alerts"),
    ]


async def test_demo_links_fall_back_to_the_classic_ui_the_api_and_amtool(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Debian's Prometheus 2.42 (classic UI only) and Alertmanager 0.25 (no UI) serve; without amtool on PATH,
    only the API is printed for Alertmanager."""
    async with ui_server({"/classic/alerts"}) as prometheus, ui_server({"/"}) as alertmanager:
        ports = prometheus.port, alertmanager.port
        rows = await links(*ports)
        monkeypatch.setenv("PATH", "/nonexistent")
        without_amtool = await links(None, ports[1])
    am = f"http://127.0.0.1:{ports[1]}"
    assert rows == [
        ("Prometheus alerts", f"http://127.0.0.1:{ports[0]}/classic/alerts"),
        ("Alertmanager alerts", f"amtool --alertmanager.url={am} alert query"),
        ("Alertmanager API", f"{am}/api/v2/alerts"),
    ]
    assert without_amtool == [("Alertmanager API", f"{am}/api/v2/alerts")]


async def test_exporter_scrapes_the_demo_scenario() -> None:
    scenario = demo_scenario()
    async with Simulator(scenario, clock=ManualClock()) as sim:
        settings = Settings.model_validate(
            {"web": {"listen_address": "127.0.0.1:0"}, "targets": [{"name": "demo", "url": sim.url}]}
        )
        exporter = Exporter(settings)
        await exporter.start(poll_loop=False)
        try:
            snapshot = await exporter.poll_once()
        finally:
            await exporter.stop()
    (target,) = snapshot.targets
    assert target.up
    assert sorted(p.name for p in target.pipelines) == sorted(p.name for p in scenario.pipelines)
    # an upgraded platform: two pipelines still on the old runtime, a trial licence, a newer release out
    assert target.server is not None and target.server.version == "0.340.0"
    drift = {p.name for p in target.pipelines if normalized_version(p.pipeline.platform_version) != "0.340.0"}
    assert drift == {"inventory", "nightly-batch"}
    licence = target.server.license_validity
    assert licence is not None and licence.exists is not None and licence.exists.is_trial is True
    assert target.server.update_info is not None and target.server.update_info.is_latest_version is False


async def test_demo_command_without_the_binaries_says_so_in_one_line_and_stops_on_sigint() -> None:
    path = str(Path(sys.executable).parent)  # the venv: python, but neither prometheus nor alertmanager
    process, lines = await start_demo(env={"PATH": path})
    for label in ("Inject a fault", "Heal it"):  # the printed curl commands work as written: same URL and body
        argv = shlex.split(url_of(lines, label))
        assert argv[:3] == ["curl", "-s", "-X"] and argv[3] == "POST" and argv[5] == "-d"
        request = urllib.request.Request(argv[4], data=argv[6].encode(), method="POST")
        answer = await asyncio.to_thread(lambda r=request: json.load(urllib.request.urlopen(r, timeout=5)))
        assert isinstance(answer["result"], int)  # the checkpoint's sequence number
    process.send_signal(signal.SIGINT)
    async with asyncio.timeout(30):
        code = await process.wait()
    assert code == 0
    assert url_of(lines, "Exporter metrics").endswith("/metrics")
    assert url_of(lines, "Exporter landing page").endswith("/")
    assert url_of(lines, "Simulated Feldera API").startswith("http://127.0.0.1:")
    assert [line for line in lines if line.startswith("Note:")] == [
        "Note: prometheus and prometheus-alertmanager not on PATH: running without them "
        "(scripts/bootstrap as root installs them)"
    ]
    assert not any(line.startswith(("Prometheus", "Alertmanager")) for line in lines)


def test_the_flag_the_reset_watch_403_names_switches_the_write_api_on_in_the_demo_too() -> None:
    def write_api(*flags: str) -> bool:
        args = build_parser().parse_args(["demo", *flags])
        settings = demo_settings(args.config, overrides_from(args), args.interval, "http://127.0.0.1:9")
        return settings.web.enable_reset_watch_api

    assert "--web.enable-reset-watch-api" in DISABLED
    assert (write_api(), write_api("--web.enable-reset-watch-api")) == (False, True)


async def test_demo_with_config_polls_the_simulator_with_those_settings(tmp_path: Path) -> None:
    config = tmp_path / "mine.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "poll": {"interval": "500ms"},
                "targets": [{"name": "mine", "url": "http://feldera.invalid:8080", "labels": {"env": "trial"}}],
                "pipelines": {"include": ["orders"]},
            }
        ),
        encoding="utf-8",
    )
    process, lines = await start_demo("--config", str(config), "--no-prometheus", "--no-alertmanager")
    try:
        metrics = url_of(lines, "Exporter metrics")

        def scrape() -> str:
            with urllib.request.urlopen(metrics, timeout=5) as response:
                return str(response.read().decode())

        async def polled() -> str:
            text = await asyncio.to_thread(scrape)
            return text if 'feldera_up{target="mine",env="trial"} 1.0' in text else ""

        text = await eventually(polled, "the exporter to poll the simulator as target mine")
        pipelines = {
            line.split('pipeline_name="')[1].split('"')[0] for line in text.splitlines() if "pipeline_name=" in line
        }
        assert pipelines == {"orders"}  # the file's pipeline filter applies
        assert "Sidecar: scheduled checkpoint sync: none;" in " ".join(lines)  # only the file's schedules
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await process.wait() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prometheus-port", "70000"], "--prometheus-port: a port is 0..65535"),
        (["--config", "/nonexistent/demo.yaml"], "/nonexistent/demo.yaml: cannot read"),
    ],
)
def test_bad_demo_arguments_exit_2_with_a_message(args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "demo", *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_taken_prometheus_port_stops_the_demo_with_a_message() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "exporter",
                "demo",
                "--feldera-port=0",
                "--web.listen-address=127.0.0.1:0",
                "--alertmanager-port=0",
                f"--prometheus-port={port}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"error: cannot use port {port} (Address already in use); choose another with --prometheus-port" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
