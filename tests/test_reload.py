"""Reloading the configuration (SIGHUP): what a reload rebuilds, what it keeps, and a refused file.

In process, against the simulator and a scripted server over real HTTP; ``Exporter.reload`` is what the SIGHUP
handler calls (tests/test_app_e2e.py sends the signal to a real process).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest

from exporter import app
from exporter.app import Exporter, changed_keys
from exporter.config import ConfigError, Settings, build_settings, load_settings
from exporter.simulator import ManualClock, PipelineSpec, Scenario, Simulator
from exporter.webconfig import WebSecurity
from tests.conftest import (
    MakeExporter,
    Request,
    Response,
    ScriptedFeldera,
    eventually,
    hang,
    json_response,
    pipeline_json,
)
from tests.test_app import Samples, samples, value


def settings(**raw: Any) -> Settings:
    return build_settings({"web": {"listen_address": "127.0.0.1:0"}, **raw}, env={})


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    pipelines = [PipelineSpec(name="orders", status="Running"), PipelineSpec(name="idle", status="Stopped")]
    async with Simulator(Scenario(pipelines=pipelines), clock=ManualClock()) as simulator:
        yield simulator


async def scrape(exporter: Exporter) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(exporter.url + "/metrics")).text


def reload_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the exporter logged since ``caplog.clear()``."""
    return [r.getMessage() for r in caplog.records if r.name == "exporter.app" and r.levelno >= logging.INFO]


async def test_a_reload_applies_targets_and_metric_selection_from_the_next_cycle(
    sim: Simulator, make_exporter: MakeExporter, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = await make_exporter(settings(targets=[{"name": "a", "url": sim.url}]))
    await exporter.poll_once()
    served = await scrape(exporter)
    new = settings(
        targets=[{"name": "a", "url": sim.url, "labels": {"env": "prod"}}, {"name": "b", "url": sim.url}],
        metrics={"denylist": ["feldera_pipeline_info"]},
        poll={"interval": "30s"},
    )
    caplog.set_level(logging.INFO)
    caplog.clear()
    assert await exporter.reload(lambda: new)
    assert await scrape(exporter) == served  # the served cycle stays until the next one
    await exporter.poll_once()
    found = samples(await scrape(exporter))
    assert value(found, "feldera_up", target="a", env="prod") == 1
    assert value(found, "feldera_up", target="b") == 1
    # target a keeps its counters across the reload (a new client, the same target): 2 cycles, not 1
    assert value(found, "feldera_exporter_polls_total", target="a", env="prod", result="success") == 2
    assert value(found, "feldera_exporter_polls_total", target="b", result="success") == 1
    assert not [name for name, _ in found if name == "feldera_pipeline_info"]
    assert exporter.settings.poll.interval == 30.0
    assert reload_lines(caplog) == [
        "configuration reloaded: poll.interval, targets[a].labels, targets[b] added, metrics.denylist",
        "the shipped dashboards use metric families this configuration does not emit: feldera_pipeline_info",
    ]


async def test_a_refused_configuration_keeps_the_one_in_force_with_one_log_line(
    sim: Simulator, make_exporter: MakeExporter, caplog: pytest.LogCaptureFixture
) -> None:
    config = settings(targets=[{"url": sim.url}])
    exporter = await make_exporter(config)

    def refused() -> Settings:
        raise ConfigError(["targets[0].url: invalid URL 'garbage'", "poll.interval: invalid duration 'soon'"])

    def broken() -> Settings:
        raise RuntimeError("a bug")

    caplog.set_level(logging.INFO)
    caplog.clear()
    assert not await exporter.reload(refused)
    assert not await exporter.reload(broken)
    assert exporter.settings is config
    await exporter.poll_once()
    assert value(samples(await scrape(exporter)), "feldera_up", target="default") == 1
    assert reload_lines(caplog) == [
        "configuration not reloaded, keeping the one in force: targets[0].url: invalid URL 'garbage'; "
        "poll.interval: invalid duration 'soon'",
        "configuration not reloaded, keeping the one in force: RuntimeError: a bug",
    ]


async def test_the_listen_address_and_the_state_file_wait_for_a_restart(
    sim: Simulator, make_exporter: MakeExporter, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    exporter = await make_exporter(settings(targets=[{"url": sim.url}]))
    url = exporter.url
    new = settings(
        web={"listen_address": "127.0.0.1:1"},
        targets=[{"url": sim.url}],
        reset_watches={"state_file": str(tmp_path / "watches.json")},
        log_level="debug",
    )
    caplog.set_level(logging.INFO)
    caplog.clear()
    assert await exporter.reload(lambda: new)
    assert exporter.url == url and exporter.settings.web.listen_address == "127.0.0.1:0"
    assert exporter.settings.reset_watches.state_file is None
    assert exporter.settings.log_level == "debug" and logging.getLogger().level == logging.DEBUG
    assert reload_lines(caplog) == [
        "configuration reloaded: log_level",
        "not applied until a restart: web.listen_address, reset_watches.state_file",
    ]


async def test_a_reload_checks_the_web_config_at_once(
    sim: Simulator,
    make_exporter: MakeExporter,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGHUP reloads the web config too, as Prometheus does, without waiting for the background check (switched
    off here: it would pick the change up within a second by itself)."""
    monkeypatch.setattr(app, "WebSecurity", functools.partial(WebSecurity, check_every=3600.0))
    web = tmp_path / "web.yml"

    def users(password: str) -> None:  # replaced in one step, as an operator's tooling would
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        (tmp_path / "web.yml.new").write_text(f"basic_auth_users:\n  ops: '{hashed}'\n", encoding="utf-8")
        (tmp_path / "web.yml.new").replace(web)

    async def status(password: str) -> int:
        async with httpx.AsyncClient(auth=("ops", password)) as http:
            return (await http.get(exporter.url + "/metrics")).status_code

    users("old")
    config = settings(targets=[{"url": sim.url}], web={"listen_address": "127.0.0.1:0", "config_file": str(web)})
    exporter = await make_exporter(config)
    assert (await status("old"), await status("new")) == (200, 401)
    users("new")
    caplog.set_level(logging.INFO)
    caplog.clear()
    assert await exporter.reload(lambda: config)
    assert (await status("old"), await status("new")) == (401, 200)
    assert [r.getMessage() for r in caplog.records if r.name == "exporter.webconfig"] == [
        f"web config {web} reloaded (TLS certificates and basic auth users)"
    ]
    web.write_text("basic_auth_users: [\n", encoding="utf-8")
    caplog.clear()
    assert await exporter.reload(lambda: config)
    assert (await status("old"), await status("new")) == (401, 200)
    assert [r.getMessage() for r in caplog.records if r.name == "exporter.webconfig"] == [
        f"web config {web} not reloaded, keeping the one in force: {web}:2:1: expected the node content, but found "
        "'<stream end>' (while parsing a flow node at 2:1)"
    ]


async def test_reset_watches_survive_a_reload_and_the_write_api_follows_it(
    sim: Simulator, make_exporter: MakeExporter
) -> None:
    exporter = await make_exporter(settings(targets=[{"name": "a", "url": sim.url}]))
    await exporter.sidecar.resets.register("orders", "token-1", name="w")
    body = {"pipeline": "orders", "token": "token-2", "name": "w2"}
    async with httpx.AsyncClient() as http:
        refused = await http.post(exporter.url + "/api/v1/reset-watches", json=body)
        new = settings(targets=[{"name": "b", "url": sim.url}], web={"enable_reset_watch_api": True})
        assert await exporter.reload(lambda: new)
        accepted = await http.post(exporter.url + "/api/v1/reset-watches", json=body)
    assert (refused.status_code, accepted.status_code) == (403, 201)
    assert accepted.json()["target"] == "b"  # the new first target is the default
    # a watch of a target no longer configured is kept (listed, removable), not checked
    assert [(w.name, w.target) for w in exporter.sidecar.resets.watches()] == [("w", "a"), ("w2", "b")]


async def every(exporter: Exporter) -> float | None:
    """The sync interval of the scheduled pipeline ``orders``, as served."""
    found = samples(await scrape(exporter))
    return value(found, "feldera_checkpoint_sync_schedule_interval_seconds", target="default", pipeline_name="orders")


async def test_a_reload_starts_changes_and_stops_sync_schedules(sim: Simulator, make_exporter: MakeExporter) -> None:
    exporter = await make_exporter(settings(targets=[{"url": sim.url}]))
    assert exporter.sidecar.scheduler is None
    hourly = settings(targets=[{"url": sim.url}], checkpoint_sync={"schedules": [{"pipelines": "*", "every": "1h"}]})
    assert await exporter.reload(lambda: hourly)
    await exporter.poll_once()
    assert await every(exporter) == 3600

    faster = settings(targets=[{"url": sim.url}], checkpoint_sync={"schedules": [{"pipelines": "*", "every": "10m"}]})
    assert await exporter.reload(lambda: faster)
    await exporter.poll_once()
    assert await every(exporter) == 600

    assert await exporter.reload(lambda: settings(targets=[{"url": sim.url}]))
    assert exporter.sidecar.scheduler is None


async def test_a_rotated_api_key_file_is_used_after_a_reload_and_never_logged(
    feldera: ScriptedFeldera, make_exporter: MakeExporter, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    feldera.routes["/v0/pipelines"] = json_response([pipeline_json("p", runtime=None)])
    key = tmp_path / "api-key"
    key.write_text("apikey:first0123456789\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"web: {{listen_address: '127.0.0.1:0'}}\ncollectors: {{cluster: false, server: false}}\n"
        f"targets: [{{url: '{feldera.url}', api_key_file: '{key}'}}]\n"
    )

    def load() -> Settings:
        return load_settings(config, env={}, deep=True)

    exporter = await make_exporter(load())
    await exporter.poll_once()
    key.write_text("apikey:second0123456789\n")
    caplog.set_level(logging.INFO)
    caplog.clear()
    assert await exporter.reload(load)
    await exporter.poll_once()
    bearers = [r.headers.get("authorization") for r in feldera.requests if r.raw_path == "/v0/pipelines"]
    assert bearers == ["Bearer apikey:first0123456789", "Bearer apikey:second0123456789"]
    assert reload_lines(caplog) == ["configuration reloaded: targets[default].api_key"]
    assert "0123456789" not in caplog.text


def test_changed_keys_name_targets_and_never_show_values() -> None:
    old = settings(targets=[{"name": "a", "url": "http://a:8080"}, {"name": "b"}])
    new = settings(targets=[{"name": "b"}, {"name": "a", "url": "http://secret-host:8080"}])
    assert changed_keys(old, new) == ["targets[a].url"]
    assert changed_keys(old, settings(targets=[{"name": "b"}, {"name": "a", "url": "http://a:8080"}])) == [
        "targets (order: the first is the reset watches' default)"
    ]
    assert changed_keys(old, old) == []


async def test_a_reload_while_another_targets_cycle_runs_polls_a_changed_target_only_as_configured(
    feldera: ScriptedFeldera, caplog: pytest.LogCaptureFixture
) -> None:
    """The reload waits for the cycle in progress (target ``slow``, whose stats never answer, is cut off at its
    deadline); meanwhile ``b``'s loop comes round and waits for it. Its next cycle polls ``b`` as the reload
    configured it (new URL, new client), never with the client the reload retired: before, it polled the old URL
    once more, or failed on the closed client and served ``feldera_up 0`` with an "unexpectedly" line."""
    feldera.routes["/slow/v0/pipelines"] = json_response([pipeline_json("p")])
    feldera.routes["/slow/v0/pipelines/p/stats"] = hang
    feldera.routes["/new/v0/pipelines"] = json_response([pipeline_json("q", runtime=None)])

    def config(b: str) -> Settings:
        return settings(
            poll={"interval": 0.05, "cycle_deadline": 0.5},
            targets=[{"name": "slow", "url": feldera.url + "/slow"}, {"name": "b", "url": feldera.url + b}],
            collectors={"cluster": False, "server": False, "resources": False, "checkpoints": False},
        )

    configured_when_old_was_asked: list[str] = []

    async def old(request: Request) -> Response:
        configured_when_old_was_asked.append(exporter.settings.targets[1].url)
        return json_response([pipeline_json("q", runtime=None)])

    feldera.routes["/old/v0/pipelines"] = old
    caplog.set_level(logging.INFO)
    stats_asked = "/slow/v0/pipelines/p/stats"
    async with Exporter(config("/old")) as exporter:
        await eventually(lambda: exporter.ready, "both targets polled once")
        asked = feldera.paths().count(stats_asked)
        await eventually(lambda: feldera.paths().count(stats_asked) > asked, "a cycle of slow under way")
        assert await exporter.reload(lambda: config("/new"))
        new_asked = feldera.paths().count("/new/v0/pipelines")
        await eventually(lambda: feldera.paths().count("/new/v0/pipelines") > new_asked + 2, "b polled at /new")
        found = samples(await scrape(exporter))
    assert value(found, "feldera_up", target="b") == 1
    assert configured_when_old_was_asked and set(configured_when_old_was_asked) == {feldera.url + "/old"}
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def served_targets(found: Samples) -> set[str]:
    return {value for _, labels in found for name, value in labels if name == "target"}


async def test_a_target_removed_by_a_reload_vanishes_at_once_and_an_added_one_polls_on_its_own(
    feldera: ScriptedFeldera,
) -> None:
    """With the poll loops running: the removed target's series leave ``/metrics`` when the reload returns (not
    served stale until another target's next cycle: here none comes) and its loop asks nothing more; the added
    target gets a loop of its own, which polls it at once."""
    for name in ("a", "b"):
        feldera.routes[f"/{name}/v0/pipelines"] = json_response([pipeline_json(f"{name}-pipeline", runtime=None)])
    c_may_answer = asyncio.Event()

    async def c(request: Request) -> Response:
        await c_may_answer.wait()
        return json_response([pipeline_json("c-pipeline", runtime=None)])

    feldera.routes["/c/v0/pipelines"] = c

    def config(*names: str) -> Settings:
        return settings(
            poll={"interval": "1h"},  # one cycle each: no other cycle publishes meanwhile
            targets=[{"name": name, "url": f"{feldera.url}/{name}"} for name in names],
            collectors={"cluster": False, "server": False},
        )

    async with Exporter(config("a", "b")) as exporter:
        await eventually(lambda: exporter.ready, "a and b polled once")
        assert served_targets(samples(await scrape(exporter))) == {"a", "b"}
        assert await exporter.reload(lambda: config("a", "c"))
        assert served_targets(samples(await scrape(exporter))) == {"a"}  # b gone at once
        c_may_answer.set()
        await eventually(lambda: "/c/v0/pipelines" in feldera.paths(), "c polled on a loop of its own")

        async def with_c() -> Samples | None:
            found = samples(await scrape(exporter))
            return found if served_targets(found) == {"a", "c"} else None

        found = await eventually(with_c, "c served")
        assert exporter.ready
    assert feldera.paths().count("/b/v0/pipelines") == 1
    assert value(found, "feldera_up", target="c") == 1
