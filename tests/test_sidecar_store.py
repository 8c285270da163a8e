"""Reset watches: registration rules, the atomic state file, corrupt files, keep_completed, the 200-body parser."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest

from exporter.sidecar import store
from exporter.sidecar.resets import ResetWatches, WatchError, default_watch_name, parse_reset_body


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(path: Path | None, clock: FakeClock, keep: float = 3600.0) -> ResetWatches:
    watches = ResetWatches(["default", "other"], path, keep, clock)
    watches.load()
    return watches


@pytest.mark.parametrize(
    ("body", "state"),
    [
        ({"status": "done"}, "completed"),
        ({"status": "Completed"}, "completed"),
        ({"status": "pending"}, "pending"),
        ({"state": "in_progress"}, "pending"),
        ({"status": {"state": "done"}}, "completed"),
        ({"done": True}, "completed"),
        ({"done": False}, "pending"),
        ({"completed": True}, "completed"),
        ({"pending": False}, "completed"),
        ("done", "completed"),
        ("pending", "pending"),
        (True, "completed"),
        ({"status": "exploded"}, "unknown"),
        ({"something": 1}, "unknown"),
        ([1, 2], "unknown"),
        (None, "unknown"),
        (42, "unknown"),
    ],
)
def test_reset_body_shapes_are_recognised_leniently(body: object, state: str) -> None:
    assert parse_reset_body(body) == state


async def test_watches_survive_a_restart_through_the_state_file(tmp_path: Path) -> None:
    path = tmp_path / "watches.json"
    clock = FakeClock()
    first = make(path, clock)
    await first.register("orders", "tok-1", name="kafka-out")
    await first.register("orders", "tok-2", target="other")

    second = make(path, clock)

    assert [(w.name, w.target, w.pipeline, w.token) for w in second.watches()] == [
        ("kafka-out", "default", "orders", "tok-1"),
        (default_watch_name("orders", "tok-2"), "other", "orders", "tok-2"),
    ]
    assert second.state_file_errors == {"load": 0, "save": 0}


async def test_state_file_is_private_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "watches.json"
    await make(path, FakeClock()).register("orders", "secret-token")

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["watches.json"]
    assert json.loads(path.read_text())["version"] == 1


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"\xff\xfe", b"[]", b'{"version": 2, "watches": []}', b'{"version": 1, "watches": [{"name": 1}]}'],
)
async def test_corrupt_state_file_is_reported_moved_aside_and_does_not_crash(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "watches.json"
    path.write_bytes(content)

    with caplog.at_level(logging.ERROR):
        watches = make(path, FakeClock())

    assert watches.watches() == []
    assert watches.state_file_errors == {"load": 1, "save": 0}
    assert "reset watches not restored" in caplog.text
    assert (tmp_path / "watches.json.corrupt").read_bytes() == content
    await watches.register("orders", "tok")
    assert [w.name for w in make(path, FakeClock()).watches()] == [default_watch_name("orders", "tok")]


def test_corrupt_state_file_log_does_not_echo_tokens(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "watches.json"
    entry = {"name": "x", "target": "default", "pipeline": "p", "token": "very-secret", "registered_at": "soon"}
    path.write_text(json.dumps({"version": 1, "watches": [entry]}))

    with caplog.at_level(logging.ERROR):
        make(path, FakeClock())

    assert "very-secret" not in caplog.text
    assert "watches[0].registered_at" in caplog.text


async def test_unwritable_state_file_is_counted_and_watch_kept_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "gone"
    watches = make(directory / "watches.json", FakeClock())

    with caplog.at_level(logging.ERROR):
        await watches.register("orders", "tok")

    assert [w.pipeline for w in watches.watches()] == ["orders"]
    assert watches.state_file_errors == {"load": 0, "save": 1}
    assert "cannot write reset watch state file" in caplog.text


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_state_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "watches.json"
    path.write_text('{"version": 1, "watches": []}')
    path.chmod(0)

    watches = make(path, FakeClock())

    assert watches.state_file_errors["load"] == 1


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"pipeline": "", "token": "t"}, 400),
        ({"pipeline": "p", "token": ""}, 400),
        ({"pipeline": "p", "token": "a\nb"}, 400),
        ({"pipeline": "p", "token": "t", "name": "has space"}, 400),
        ({"pipeline": "p", "token": "t", "target": "nope"}, 404),
    ],
)
async def test_invalid_registrations_are_refused(tmp_path: Path, kwargs: dict[str, str], status: int) -> None:
    watches = make(None, FakeClock())

    with pytest.raises(WatchError) as caught:
        await watches.register(**kwargs)

    assert caught.value.status == status
    assert watches.watches() == []


async def test_same_name_replaces_the_watch() -> None:
    watches = make(None, FakeClock())
    await watches.register("orders", "old", name="w")
    await watches.register("orders", "new", name="w")

    assert [(w.name, w.token) for w in watches.watches()] == [("w", "new")]


async def test_removed_watch_is_gone_after_restart(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    watches = make(path, FakeClock())
    await watches.register("orders", "tok", name="w")

    assert await watches.remove("w") is True
    assert await watches.remove("w") is False
    assert make(path, FakeClock()).watches() == []


def test_store_save_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    watch = store.StoredWatch(name="a", target="t", pipeline="p", token="x", registered_at=1.0)
    store.save(path, [watch])
    store.save(path, [watch, watch.model_copy(update={"name": "b"})])

    assert [w.name for w in store.load(path)] == ["a", "b"]
    assert "x" not in repr(watch)
