"""Reset watches against the simulator over real HTTP: the CLI and HTTP API, every reset_status answer,
restarts of the pipeline and of the exporter, the state file, keep_completed (fake clock, no sleeping)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import Exporter
from exporter.cli import main
from exporter.config import Settings
from exporter.simulator import ManualClock, Scenario, Simulator
from exporter.webserver import ServerLimits
from tests.conftest import LOOP_TURNS, ReplyServer, Request, Response, eventually, running_exporter

START = 1_767_225_600.0
KEEP = 3600.0
STATUS = "feldera_output_reset_watch_status"


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class World:
    def __init__(self, sim: Simulator, state_file: Path, clock: FakeClock) -> None:
        self.sim = sim
        self.state_file = state_file
        self.clock = clock
        self.exporters: list[Exporter] = []
        self.writable = True

    async def exporter(self, limits: ServerLimits | None = None) -> Exporter:
        settings = Settings.model_validate(
            {
                "web": {"listen_address": "127.0.0.1:0", "enable_reset_watch_api": self.writable},
                "targets": [{"name": "default", "url": self.sim.url, "timeout": 5}],
                "reset_watches": {"state_file": str(self.state_file), "keep_completed": KEEP},
            }
        )
        exporter = Exporter(settings, clock=self.clock, limits=limits)
        await exporter.start(poll_loop=False)
        self.exporters.append(exporter)
        return exporter

    def saved_watches(self) -> dict[str, str] | None:
        """watch name -> status in the state file (None: no file yet)."""
        try:
            document = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None
        return {watch["name"]: watch["status"] for watch in document["watches"]}


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    scenario = Scenario.model_validate({"pipelines": [{"name": "orders"}, {"name": "billing"}]})
    async with Simulator(scenario, clock=ManualClock(START)) as sim:
        world = World(sim, tmp_path / "watches.json", FakeClock())
        yield world
        for exporter in world.exporters:
            await exporter.stop()


async def cli(*args: str) -> int:
    """The real CLI in a thread (it is synchronous and talks to the exporter served by this event loop)."""
    return await asyncio.to_thread(main, ["watch-reset", *args])


async def statuses(exporter: Exporter) -> dict[str, str]:
    """watch name -> the state whose one-hot sample is 1, read from /metrics."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{exporter.url}/metrics")).text
    lit = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == STATUS and sample.value == 1:
                lit[sample.labels["watch"]] = sample.labels["status"]
    return lit


async def sample(exporter: Exporter, name: str, **labels: str) -> float | None:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{exporter.url}/metrics")).text
    for family in text_string_to_metric_families(text):
        for item in family.samples:
            if item.name == name and labels.items() <= item.labels.items():
                return item.value
    return None


async def test_registered_token_goes_from_pending_to_completed(world: World) -> None:
    exporter = await world.exporter()
    token = world.sim.issue_reset_token("orders")

    assert await cli("orders", token, "--name", "kafka-out", "--exporter", exporter.url) == 0
    await exporter.poll_once()
    pending = await statuses(exporter)
    world.sim.complete_reset("orders", token)
    world.clock.now += 15
    await exporter.poll_once()

    assert pending == {"kafka-out": "pending"}
    assert await statuses(exporter) == {"kafka-out": "completed"}
    assert await sample(exporter, "feldera_output_reset_watch_age_seconds", watch="kafka-out") == 15
    assert await sample(exporter, "feldera_output_reset_watch_last_checked_timestamp_seconds") == START + 15
    assert await sample(exporter, STATUS, watch="kafka-out", pipeline_name="orders", status="Other") == 0


async def test_invalid_token_becomes_invalid_and_is_not_polled_again(world: World) -> None:
    exporter = await world.exporter()
    await exporter.sidecar.resets.register("orders", "not-a-token", name="bad")

    await exporter.poll_once()
    await exporter.poll_once()

    assert await statuses(exporter) == {"bad": "invalid"}
    assert world.sim.requests("/v0/pipelines/orders/reset_status") == 1


async def test_pipeline_restart_between_register_and_poll_expires_the_watch(world: World) -> None:
    exporter = await world.exporter()
    token = world.sim.issue_reset_token("orders")
    await exporter.sidecar.resets.register("orders", token, name="w")

    world.sim.restart_pipeline("orders")
    await exporter.poll_once()

    assert await statuses(exporter) == {"w": "expired"}


async def test_unknown_pipeline_makes_the_watch_invalid(world: World) -> None:
    exporter = await world.exporter()
    await exporter.sidecar.resets.register("ghost", "tok", name="w")

    await exporter.poll_once()

    assert (await statuses(exporter))["w"] == "invalid"


@pytest.mark.parametrize(("version", "answer"), [("0.297.0", "400 NotSupported stub"), ("0.337.0", "404, no route")])
async def test_a_server_without_the_reset_endpoint_makes_watches_unsupported_with_one_log_line(
    world: World, caplog: pytest.LogCaptureFixture, version: str, answer: str
) -> None:
    """Open-source Feldera: a stub in 0.290.0-0.297.0, no route since 0.298.0 (docs/feldera-api.md)."""
    world.sim.set_edition("community")
    world.sim.upgrade_platform(version)
    exporter = await world.exporter()
    for pipeline in ("orders", "billing"):
        await exporter.sidecar.resets.register(pipeline, world.sim.issue_reset_token(pipeline), name=pipeline)

    with caplog.at_level(logging.WARNING, logger="exporter.sidecar.resets"):
        await exporter.poll_once()
        world.clock.now += 3 * KEEP / 4
        await exporter.poll_once()

    assert await statuses(exporter) == {"orders": "unsupported", "billing": "unsupported"}, answer
    assert world.sim.requests("/v0/pipelines/*/reset_status") == 2  # final: not polled again
    warnings = [r for r in caplog.records if r.name == "exporter.sidecar.resets" and r.levelno >= logging.WARNING]
    assert [r.getMessage()[:35] for r in warnings] == ["target default has no reset_status "]
    world.clock.now += KEEP / 4
    await exporter.poll_once()
    assert await statuses(exporter) == {}  # dropped keep_completed after they became unsupported


async def test_transient_errors_keep_the_last_state(world: World) -> None:
    exporter = await world.exporter()
    await exporter.sidecar.resets.register("orders", world.sim.issue_reset_token("orders"), name="w")
    await exporter.poll_once()
    world.sim.set_interaction_error("orders", "initialization_error")
    world.clock.now += 15

    await exporter.poll_once()

    assert await statuses(exporter) == {"w": "pending"}
    assert await sample(exporter, "feldera_output_reset_watch_last_checked_timestamp_seconds") == START


async def test_unrecognised_answer_is_unknown_and_polled_again(world: World) -> None:
    exporter = await world.exporter()
    token = world.sim.issue_reset_token("orders")
    await exporter.sidecar.resets.register("orders", token, name="w")
    world.sim.add_fault(kind="malformed", path="/v0/pipelines/orders/reset_status", times=1)

    await exporter.poll_once()
    unknown = await statuses(exporter)
    await exporter.poll_once()

    assert unknown == {"w": "unknown"}
    assert await statuses(exporter) == {"w": "pending"}


async def test_finished_watches_are_dropped_after_keep_completed(world: World) -> None:
    exporter = await world.exporter()
    token = world.sim.issue_reset_token("orders")
    await exporter.sidecar.resets.register("orders", token, name="done")
    await exporter.sidecar.resets.register("billing", world.sim.issue_reset_token("billing"), name="still-pending")
    world.sim.complete_reset("orders", token)
    await exporter.poll_once()

    world.clock.now += KEEP - 1
    await exporter.poll_once()
    kept = await statuses(exporter)
    world.clock.now += 1
    await exporter.poll_once()

    assert kept == {"done": "completed", "still-pending": "pending"}
    assert await statuses(exporter) == {"still-pending": "pending"}
    assert [w["name"] for w in json.loads(world.state_file.read_text())["watches"]] == ["still-pending"]


async def test_watches_are_reloaded_after_an_exporter_restart(world: World) -> None:
    first = await world.exporter()
    token = world.sim.issue_reset_token("orders")
    assert await cli("orders", token, "--name", "w", "--exporter", first.url) == 0
    await first.stop()
    world.exporters.remove(first)
    world.sim.complete_reset("orders", token)

    second = await world.exporter()
    await second.poll_once()

    assert await statuses(second) == {"w": "completed"}


async def test_corrupt_state_file_is_reported_and_the_exporter_still_runs(world: World) -> None:
    world.state_file.write_text('{"version": 1, "watches": [')

    exporter = await world.exporter()
    await exporter.poll_once()

    assert await sample(exporter, "feldera_exporter_reset_watch_state_file_errors_total", operation="load") == 1
    assert await sample(exporter, "feldera_exporter_reset_watch_state_file_errors_total", operation="save") == 0
    assert await sample(exporter, "feldera_up", target="default") == 1
    assert world.state_file.with_name("watches.json.corrupt").exists()


async def test_cli_lists_and_removes_watches(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    exporter = await world.exporter()
    await exporter.sidecar.resets.register("orders", "secret-token", name="w")

    listed = await cli("--list", "--exporter", exporter.url)
    listing = capsys.readouterr().out
    removed = await cli("--remove", "w", "--exporter", exporter.url)
    missing = await cli("--remove", "w", "--exporter", exporter.url)

    assert (listed, removed, missing) == (0, 0, 1)
    header, row = listing.splitlines()
    assert header.split() == ["NAME", "TARGET", "PIPELINE", "STATUS", "AGE", "CHECKED", "FINISHED"]
    assert row.split() == ["w", "default", "orders", "pending", "0s", "-", "-"]
    assert header.index("STATUS") == row.index("pending")  # aligned columns
    assert "secret-token" not in listing
    assert exporter.sidecar.resets.watches() == []


async def test_cli_list_shows_ages_and_times_ago_on_the_exporters_clock(capsys: pytest.CaptureFixture[str]) -> None:
    watch = {"target": "prod", "pipeline": "orders", "registered_at": 1_000.0, "finished_at": None}
    watches = [
        {**watch, "name": "a", "status": "completed", "age_seconds": 9e3, "last_checked": 9_990, "finished_at": 9_700},
        {**watch, "name": "long-name", "status": "pending", "age_seconds": 2e5, "last_checked": None},
    ]

    async def exporter(request: Request) -> Response:
        return Response(200, json.dumps({"watches": watches}).encode(), "application/json")

    async with ReplyServer(exporter) as server:
        assert await cli("--list", "--exporter", f"http://127.0.0.1:{server.port}") == 0
    assert capsys.readouterr().out.splitlines() == [
        "NAME       TARGET  PIPELINE  STATUS     AGE    CHECKED  FINISHED",
        "a          prod    orders    completed  2h30m  10s ago  5m ago",
        "long-name  prod    orders    pending    2d7h   -        -",
    ]


async def test_cli_usage_errors_exit_2(world: World) -> None:
    assert await cli("orders") == 2
    assert await cli("orders", "tok", "--list") == 2
    assert await cli("orders", "tok", "--basic-auth-user", "ops", "--exporter", "http://127.0.0.1:9") == 2


async def test_cli_reports_an_unreachable_exporter() -> None:
    assert await cli("orders", "tok", "--exporter", "http://127.0.0.1:9") == 1


async def test_cli_reports_a_success_answer_that_is_not_the_reset_watch_api(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def not_the_exporter(request: Request) -> Response:
        return Response(200, b"<html>a web server</html>", "text/html")

    async with ReplyServer(not_the_exporter) as server:
        url = f"http://127.0.0.1:{server.port}"
        assert await cli("--list", "--exporter", url) == 1
        assert await cli("orders", "tok", "--exporter", url) == 1
    err = capsys.readouterr().err
    assert err.count("with something other than the exporter's reset-watch API: <html>a web server</html>") == 2


Call = Callable[[httpx.AsyncClient, str], Awaitable[httpx.Response]]


@pytest.mark.parametrize(
    ("call", "status"),
    [
        (lambda c, u: c.post(u, content=b"{oops", headers={"content-type": "application/json"}), 400),
        (lambda c, u: c.post(u, json=["orders", "tok"]), 400),
        (lambda c, u: c.post(u, json={"pipeline": "orders", "token": "t", "extra": 1}), 400),
        (lambda c, u: c.post(u, json={"pipeline": "orders"}), 400),
        (lambda c, u: c.post(u, json={"pipeline": "orders", "token": "t", "target": "nope"}), 404),
        (lambda c, u: c.post(u, json={"pipeline": "orders", "token": "t", "name": ".."}), 400),
        (lambda c, u: c.post(u, json={"pipeline": "orders", "token": "t", "name": "."}), 400),
        (lambda c, u: c.post(u, content=b"pipeline=orders", headers={"content-type": "text/plain"}), 415),
        (lambda c, u: c.put(u, json={}), 405),
        (lambda c, u: c.get(f"{u}/w"), 405),
        (lambda c, u: c.post(u, json={"pipeline": "orders", "token": "t", "name": "w"}), 201),
    ],
)
async def test_http_api_validates_registrations(world: World, call: Call, status: int) -> None:
    exporter = await world.exporter()
    async with httpx.AsyncClient() as client:
        response = await call(client, f"{exporter.url}/api/v1/reset-watches")

    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"


async def test_http_api_lists_without_tokens(world: World) -> None:
    exporter = await world.exporter()
    async with httpx.AsyncClient() as client:
        created = await client.post(f"{exporter.url}/api/v1/reset-watches", json={"pipeline": "orders", "token": "s3"})
        listed = (await client.get(f"{exporter.url}/api/v1/reset-watches")).json()

    watch: dict[str, Any] = created.json()
    assert watch["status"] == "pending" and watch["target"] == "default"
    assert listed == {"watches": [watch]}
    assert "s3" not in json.dumps(listed)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA (the CLI trusts it through --ca-file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "exporter")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "exporter.crt", directory / "exporter.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


async def test_cli_registers_through_tls_and_basic_auth(world: World, tmp_path: Path) -> None:
    cert_file, key_file = _self_signed(tmp_path)
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    web_config = tmp_path / "web.yml"
    web_config.write_text(
        f"tls_server_config: {{cert_file: {cert_file}, key_file: {key_file}}}\nbasic_auth_users: {{ops: '{hashed}'}}\n"
    )
    password_file = tmp_path / "password"
    password_file.write_text("s3cret\n")
    settings = Settings.model_validate(
        {
            "web": {"listen_address": "127.0.0.1:0", "config_file": str(web_config), "enable_reset_watch_api": True},
            "targets": [{"name": "default", "url": world.sim.url}],
        }
    )
    exporter = Exporter(settings, clock=world.clock)
    await exporter.start(poll_loop=False)
    world.exporters.append(exporter)
    common = ["--exporter", exporter.url, "--ca-file", str(cert_file)]

    anonymous = await cli("orders", "tok", *common)
    wrong = await cli("orders", "tok", *common, "--basic-auth-user", "ops", "--basic-auth-password-file", __file__)
    allowed = await cli(
        "orders", "tok", *common, "--basic-auth-user", "ops", "--basic-auth-password-file", str(password_file)
    )

    assert exporter.url.startswith("https://")
    assert (anonymous, wrong, allowed) == (1, 1, 0)
    assert [w.pipeline for w in exporter.sidecar.resets.watches()] == ["orders"]


async def test_the_token_feldera_repeats_in_its_400_never_reaches_the_log(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = await world.exporter()
    caplog.set_level(logging.DEBUG)
    await exporter.sidecar.resets.register("orders", "3f2a-never-logged-c9", name="bad")

    await exporter.poll_once()

    assert await statuses(exporter) == {"bad": "invalid"}
    assert "reset watch bad is invalid" in caplog.text
    assert "never-logged" not in caplog.text


async def test_http_api_routes_ignore_a_trailing_slash_and_take_names_with_slashes(world: World) -> None:
    exporter = await world.exporter()
    url = f"{exporter.url}/api/v1/reset-watches"
    async with httpx.AsyncClient() as client:
        posted = await client.post(f"{url}/", json={"pipeline": "orders", "token": "t", "name": "a/b"})
        listed = await client.get(f"{url}/")
        head = await client.head(url)
        wrong = [await client.put(url), await client.get(f"{url}/a/b"), await client.post(f"{url}/a/b")]
        deleted = await client.delete(f"{url}/a%2Fb/")
        gone = await client.delete(f"{url}/a/b")

    assert posted.status_code == 201 and posted.json()["name"] == "a/b"
    assert [w["name"] for w in listed.json()["watches"]] == ["a/b"]
    assert head.status_code == 200 and head.content == b""
    assert [(r.status_code, r.headers["Allow"], r.json()) for r in wrong] == [
        (405, "GET, HEAD, POST", {"error": "method not allowed"}),
        (405, "DELETE", {"error": "method not allowed"}),
        (405, "DELETE", {"error": "method not allowed"}),
    ]
    assert deleted.status_code == 204
    assert (gone.status_code, gone.json()) == (404, {"error": "no such watch"})


# ---- the write API is off by default; what it accepts -----------------------------------------------------------


async def test_write_api_is_disabled_by_default_and_says_how_to_enable_it(world: World) -> None:
    world.writable = False
    exporter = await world.exporter()
    await exporter.sidecar.resets.register("orders", "tok", name="w")
    url = f"{exporter.url}/api/v1/reset-watches"
    async with httpx.AsyncClient() as client:
        posted = await client.post(url, json={"pipeline": "orders", "token": "t", "name": "other"})
        deleted = await client.delete(f"{url}/w")
        listed = await client.get(url)
    for response in (posted, deleted):
        assert response.status_code == 403
        assert "--web.enable-reset-watch-api" in response.json()["error"]
    assert [w["name"] for w in listed.json()["watches"]] == ["w"]
    assert [w.name for w in exporter.sidecar.resets.watches()] == ["w"]


def test_the_flag_switches_the_write_api_on() -> None:
    from exporter.cli import build_parser, settings_from

    def parsed(*flags: str) -> bool:
        args = build_parser().parse_args(["run", "--feldera-url", "http://127.0.0.1:9", *flags])
        return settings_from(args).web.enable_reset_watch_api

    assert (parsed(), parsed("--web.enable-reset-watch-api")) == (False, True)


@pytest.mark.parametrize("pipeline", ["..", ".", "a/b", "../admin", "orders?x=1", "%2e%2e", "", "x" * 513])
async def test_pipeline_names_that_could_leave_the_pipeline_path_are_refused(world: World, pipeline: str) -> None:
    exporter = await world.exporter()
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{exporter.url}/api/v1/reset-watches", json={"pipeline": pipeline, "token": "tok"}
        )
    assert response.status_code == 400
    assert "pipeline must be a Feldera pipeline name" in response.json()["error"]
    assert exporter.sidecar.resets.watches() == []


async def test_a_state_file_with_a_dot_dot_pipeline_or_watch_name_is_not_restored(world: World) -> None:
    exporter = await world.exporter()
    await exporter.sidecar.resets.register("orders", "tok", name="good")
    await exporter.stop()
    world.exporters.remove(exporter)
    document = json.loads(world.state_file.read_text())
    document["watches"].append({**document["watches"][0], "name": "evil", "pipeline": ".."})
    document["watches"].append({**document["watches"][0], "name": ".."})  # could never be removed over the API
    world.state_file.write_text(json.dumps(document))
    restarted = await world.exporter()
    await restarted.poll_once()
    assert [w.name for w in restarted.sidecar.resets.watches()] == ["good"]
    assert world.sim.requests("/v0/pipelines/../*") == 0


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"[" * 50_000 + b"]" * 50_000, 413),  # over the body limit
        (b"[" * 20_000 + b"]" * 20_000, 400),  # deeper than the JSON parser's stack
        (b'{"pipeline": "orders", "token": "\xff\xfe"}', 400),
        (b"\xff\xfe{}", 400),
        (b"not json at all", 400),
    ],
)
async def test_unparsable_bodies_are_400_or_413_never_500(world: World, body: bytes, status: int) -> None:
    exporter = await world.exporter()
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{exporter.url}/api/v1/reset-watches", content=body, headers={"content-type": "application/json"}
        )
        still_serving = await client.get(f"{exporter.url}/-/healthy")
    assert response.status_code == status
    assert "Traceback" not in response.text
    assert still_serving.status_code == 200


class SlowDisk:
    """``store.save`` as on a slow or hung mount: each save waits until :attr:`released` is set, then writes; counts
    the saves started and the most in flight at once."""

    def __init__(self, real_save: Callable[[Path, list[Any]], None]) -> None:
        self._real_save = real_save
        self._lock = threading.Lock()
        self.released = threading.Event()
        self.started = 0
        self.running = 0
        self.most = 0

    def save(self, path: Path, watches: list[Any]) -> None:
        with self._lock:
            self.started += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            self.released.wait()
            self._real_save(path, watches)
        finally:
            with self._lock:
                self.running -= 1


@pytest.fixture
def slow_disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlowDisk]:
    from exporter.sidecar import store

    disk = SlowDisk(store.save)
    monkeypatch.setattr(store, "save", disk.save)
    yield disk
    disk.released.set()  # no save thread outlives the test


async def test_the_state_file_is_written_off_the_event_loop(world: World, slow_disk: SlowDisk) -> None:
    """A save that blocks (slow disk) does not stop the exporter from answering other requests."""
    exporter = await world.exporter()
    async with httpx.AsyncClient(base_url=exporter.url) as client:
        registering = asyncio.create_task(
            client.post("/api/v1/reset-watches", json={"pipeline": "orders", "token": "t", "name": "w"})
        )
        healthy = await client.get("/-/healthy")
        assert not registering.done()
        slow_disk.released.set()
        registered = await registering
    assert (healthy.status_code, registered.status_code) == (200, 201)
    assert world.saved_watches() == {"w": "pending"}


async def test_one_save_at_a_time_and_the_file_ends_with_the_latest_watches(world: World, slow_disk: SlowDisk) -> None:
    """Requests cut off by the server's deadline while a save is slow start no save of their own (before, each
    started one more thread: on a hung mount without bound, and the last rename could put an older state on disk);
    the changes made during the slow save are written together by one more save."""
    exporter = await world.exporter(ServerLimits(request_timeout=1.0))
    url = "/api/v1/reset-watches"
    async with httpx.AsyncClient(base_url=exporter.url) as client:

        async def change(method: str, path: str, **body: str) -> None:
            with contextlib.suppress(httpx.TransportError):  # the deadline passes while the save is slow
                await client.request(method, path, json=body or None)

        await change("POST", url, pipeline="orders", token="t0", name="w0")
        await eventually(lambda: slow_disk.started, "the first save to start")
        await asyncio.gather(
            *(change("POST", url, pipeline="orders", token=f"t{i}", name=f"w{i}") for i in range(1, 6)),
            change("DELETE", f"{url}/w0"),
        )
    latest = {f"w{i}": "pending" for i in range(1, 6)}
    assert {w.name: w.status for w in exporter.sidecar.resets.watches()} == latest

    slow_disk.released.set()

    await eventually(lambda: world.saved_watches() == latest and not slow_disk.running, "the latest state saved")
    assert (slow_disk.most, slow_disk.started) == (1, 2)


async def test_a_poll_cycle_ends_while_a_state_file_save_is_stuck(world: World, slow_disk: SlowDisk) -> None:
    """The poll cycle does not wait for the state file (before, a hung mount froze polling: /metrics went stale)."""
    exporter = await world.exporter()
    token = world.sim.issue_reset_token("orders")
    registering = asyncio.create_task(exporter.sidecar.resets.register("orders", token, name="w"))
    await eventually(lambda: slow_disk.started, "the registration's save to start")
    world.sim.complete_reset("orders", token)

    await asyncio.wait_for(exporter.poll_once(), 30)  # a guard against hanging, not a speed limit

    assert await statuses(exporter) == {"w": "completed"}
    assert not registering.done()  # its save is still stuck
    slow_disk.released.set()
    await registering
    await eventually(lambda: world.saved_watches() == {"w": "completed"}, "the poll's change saved")
    assert slow_disk.most == 1


async def test_stopping_writes_the_last_poll_cycles_change_first(world: World, slow_disk: SlowDisk) -> None:
    """The poll cycle does not wait for its write, so stopping does (for a few seconds at most)."""
    exporter = await world.exporter()
    token = world.sim.issue_reset_token("orders")
    slow_disk.released.set()
    await exporter.sidecar.resets.register("orders", token, name="w")
    slow_disk.released.clear()
    world.sim.complete_reset("orders", token)
    await asyncio.wait_for(exporter.poll_once(), 30)  # its write waits for the disk; the cycle does not

    stopping = asyncio.create_task(exporter.sidecar.stop())
    for _ in range(LOOP_TURNS):
        await asyncio.sleep(0)  # a turn of the loop, not a delay
    waited = not stopping.done()
    slow_disk.released.set()
    await stopping

    assert waited
    assert world.saved_watches() == {"w": "completed"}


async def test_a_save_that_fails_with_a_bug_is_counted_and_the_next_change_is_written(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from exporter.sidecar import store

    exporter = await world.exporter()
    real_save = store.save

    def broken_save(path: Path, watches: list[Any]) -> None:
        raise ValueError(f"cannot encode {watches[0].token}")

    monkeypatch.setattr(store, "save", broken_save)
    await exporter.sidecar.resets.register("orders", "secret-token-1", name="w1")
    monkeypatch.setattr(store, "save", real_save)
    await exporter.sidecar.resets.register("orders", "secret-token-2", name="w2")
    await exporter.poll_once()

    await eventually(lambda: world.saved_watches() == {"w1": "invalid", "w2": "invalid"}, "the poll's change saved")
    assert await sample(exporter, "feldera_exporter_reset_watch_state_file_errors_total", operation="save") == 1
    assert "cannot write reset watch state file" in caplog.text
    assert "secret-token" not in caplog.text


_STUCK_SAVE = """
import threading
from pathlib import Path

from exporter.sidecar import store


def save(path: Path, watches: list[object]) -> None:  # as on a hung mount: the write never returns
    (path.parent / "save-started").touch()
    threading.Event().wait()


store.save = save
"""


@pytest.mark.slow
@pytest.mark.e2e
async def test_sigterm_exits_within_seconds_while_a_state_file_save_is_stuck(tmp_path: Path) -> None:
    """The save runs in a daemon thread of its own: before, it ran in asyncio's default pool, which the exit joins,
    and the process never ended. Stopping waits a few seconds for the pending write, then says it gave up."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_STUCK_SAVE)  # loaded by the exporter's interpreter at start
    config = tmp_path / "watches.yaml"
    state = tmp_path / "state" / "watches.json"
    state.parent.mkdir()
    config.write_text(
        f"poll:\n  interval: 1h\nweb:\n  enable_reset_watch_api: true\nreset_watches:\n  state_file: {state}\n"
    )
    scenario = Scenario.model_validate({"pipelines": [{"name": "orders", "status": "Running"}]})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", str(hook), prepend=os.pathsep)  # before the worktree's path, if one is set
        async with (
            Simulator(scenario) as sim,
            running_exporter(sim.url, tmp_path, "1h", "--config", str(config)) as running,
        ):
            async with httpx.AsyncClient(timeout=1) as client:
                with contextlib.suppress(httpx.TimeoutException):  # the request waits for its save
                    await client.post(f"{running.url}/api/v1/reset-watches", json={"pipeline": "orders", "token": "t1"})
            await eventually((state.parent / "save-started").exists, "the state file save to start")
            running.process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(running.process.wait(), 10) == 0
    assert not state.exists()
    assert "not written within 3s of stopping: changes may be lost" in running.log.read_text()
