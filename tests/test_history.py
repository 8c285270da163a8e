"""History turns Feldera's "latest only" answers into counters and first-seen times that behave across cycles."""

from __future__ import annotations

from typing import Any

from exporter.history import History
from exporter.models import CheckpointStatus, CheckpointSyncStatus, Pipeline
from exporter.snapshot import Derived, PipelineSnapshot

ID = "0190a3b2-7c1e-7f00-8000-000000000001"
UUID_OLD = "0190a3b2-7c1e-7f00-8000-0000000000a1"
UUID_NEW = "0190a3b2-7c1e-7f00-8000-0000000000a2"


class FakeClock:
    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def _pipeline(
    name: str = "p",
    pipeline_id: str = ID,
    deployment_id: str | None = "d1",
    checkpoints: list[str] | None = None,
) -> Pipeline:
    document: dict[str, Any] = {"name": name, "id": pipeline_id, "deployment_id": deployment_id}
    if checkpoints is not None:
        document["storage_status_details"] = {"checkpoints": [{"uuid": u, "size": 1} for u in checkpoints]}
    return Pipeline.model_validate(document)


def _checkpoint(success: int | None, failure: tuple[int, str] | None = None) -> CheckpointStatus:
    doc = None if failure is None else {"sequence_number": failure[0], "error": "boom", "failed_at": failure[1]}
    return CheckpointStatus.model_validate({"success": success, "failure": doc})


def _sync(success: str | None, failure: str | None = None) -> CheckpointSyncStatus:
    doc = None if failure is None else {"uuid": failure, "error": "denied"}
    return CheckpointSyncStatus.model_validate({"success": success, "failure": doc, "periodic": None})


def _cycle(history: History, now: float, *snaps: PipelineSnapshot) -> list[Derived]:
    return [s.derived for s in history.advance("t", snaps, now)]


def test_a_checkpoint_failure_is_counted_once_however_often_it_is_seen() -> None:
    history, clock = History(), FakeClock()
    failing = PipelineSnapshot(_pipeline(), checkpoint_status=_checkpoint(3, (4, "2024-05-01T12:00:00Z")))
    for _ in range(3):
        (derived,) = _cycle(history, clock.advance(15), failing)
    assert derived.checkpoint_failures_total == 1


def test_each_distinct_checkpoint_failure_counts() -> None:
    history, clock = History(), FakeClock()
    _cycle(history, clock.advance(15), PipelineSnapshot(_pipeline(), checkpoint_status=_checkpoint(3, (4, "12:00"))))
    (derived,) = _cycle(
        history, clock.advance(15), PipelineSnapshot(_pipeline(), checkpoint_status=_checkpoint(5, (6, "12:05")))
    )
    assert derived.checkpoint_failures_total == 2


def test_checkpoint_failures_survive_a_restart_and_a_lookalike_failure_in_the_new_incarnation_counts() -> None:
    history, clock = History(), FakeClock()
    failure = (4, "2024-05-01T12:00:00Z")
    _cycle(history, clock.advance(15), PipelineSnapshot(_pipeline(), checkpoint_status=_checkpoint(3, failure)))
    # restart: new deployment, checkpoint_status starts empty; the counter keeps its value
    (after_restart,) = _cycle(
        history, clock.advance(15), PipelineSnapshot(_pipeline(deployment_id="d2"), checkpoint_status=_checkpoint(None))
    )
    assert after_restart.checkpoint_failures_total == 1
    (again,) = _cycle(
        history,
        clock.advance(15),
        PipelineSnapshot(_pipeline(deployment_id="d2"), checkpoint_status=_checkpoint(3, failure)),
    )
    assert again.checkpoint_failures_total == 2


def test_a_new_deployment_alone_makes_the_next_failure_count_even_unseen_empty_status() -> None:
    history, clock = History(), FakeClock()
    failure = (4, "2024-05-01T12:00:00Z")
    _cycle(history, clock.advance(15), PipelineSnapshot(_pipeline(), checkpoint_status=_checkpoint(3, failure)))
    (derived,) = _cycle(
        history,
        clock.advance(15),
        PipelineSnapshot(_pipeline(deployment_id="d2"), checkpoint_status=_checkpoint(3, failure)),
    )
    assert derived.checkpoint_failures_total == 2


def test_checkpoint_failure_counter_never_decreases_when_status_is_not_fetched() -> None:
    history, clock = History(), FakeClock()
    _cycle(history, clock.advance(15), PipelineSnapshot(_pipeline(), checkpoint_status=_checkpoint(3, (4, "x"))))
    (stopped,) = _cycle(history, clock.advance(15), PipelineSnapshot(_pipeline(deployment_id=None)))
    assert stopped.checkpoint_failures_total == 1


def test_history_is_forgotten_when_the_pipeline_is_recreated_with_a_new_id() -> None:
    history, clock = History(), FakeClock()
    _cycle(history, clock.advance(15), PipelineSnapshot(_pipeline(), checkpoint_status=_checkpoint(3, (4, "x"))))
    (recreated,) = _cycle(
        history,
        clock.advance(15),
        PipelineSnapshot(_pipeline(pipeline_id="0190a3b2-0000-7000-8000-000000000099")),
    )
    assert recreated.checkpoint_failures_total == 0


def test_history_is_forgotten_when_the_pipeline_is_deleted() -> None:
    history, clock = History(), FakeClock()
    _cycle(history, clock.advance(15), PipelineSnapshot(_pipeline(), checkpoint_status=_checkpoint(3, (4, "x"))))
    assert _cycle(history, clock.advance(15)) == []
    (back,) = _cycle(history, clock.advance(15), PipelineSnapshot(_pipeline()))
    assert back.checkpoint_failures_total == 0


def test_other_targets_keep_their_history() -> None:
    history, clock = History(), FakeClock()
    failing = PipelineSnapshot(_pipeline(), checkpoint_status=_checkpoint(3, (4, "x")))
    history.advance("a", [failing], clock.advance(15))
    history.advance("b", [], clock.advance(15))
    (derived,) = [s.derived for s in history.advance("a", [failing], clock.advance(15))]
    assert derived.checkpoint_failures_total == 1


def test_sync_failed_flag_follows_whichever_of_success_and_failure_changed_last() -> None:
    history, clock = History(), FakeClock()
    (first,) = _cycle(history, clock.advance(15), PipelineSnapshot(_pipeline(), sync_status=_sync("s1")))
    assert first.checkpoint_sync_failed is False
    (failed,) = _cycle(history, clock.advance(15), PipelineSnapshot(_pipeline(), sync_status=_sync("s1", "f1")))
    assert (failed.checkpoint_sync_failed, failed.checkpoint_sync_failures_total) == (True, 1)
    (still,) = _cycle(history, clock.advance(15), PipelineSnapshot(_pipeline(), sync_status=_sync("s1", "f1")))
    assert (still.checkpoint_sync_failed, still.checkpoint_sync_failures_total) == (True, 1)
    (recovered,) = _cycle(history, clock.advance(15), PipelineSnapshot(_pipeline(), sync_status=_sync("s2", "f1")))
    assert (recovered.checkpoint_sync_failed, recovered.checkpoint_sync_failures_total) == (False, 1)


def test_sync_failed_on_first_sight_uses_uuid7_order() -> None:
    newer_failure = _cycle(History(), 1.0, PipelineSnapshot(_pipeline(), sync_status=_sync(UUID_OLD, UUID_NEW)))
    older_failure = _cycle(History(), 1.0, PipelineSnapshot(_pipeline(), sync_status=_sync(UUID_NEW, UUID_OLD)))
    only_failure = _cycle(History(), 1.0, PipelineSnapshot(_pipeline(), sync_status=_sync(None, "f1")))
    not_v7 = _cycle(History(), 1.0, PipelineSnapshot(_pipeline(), sync_status=_sync("s1", "f1")))
    assert [d.checkpoint_sync_failed for (d,) in (newer_failure, older_failure, only_failure, not_v7)] == [
        True,
        False,
        True,
        False,
    ]


def test_sync_failed_is_unknown_until_sync_status_is_seen() -> None:
    (derived,) = _cycle(History(), 1.0, PipelineSnapshot(_pipeline()))
    assert derived.checkpoint_sync_failed is None


def test_sync_last_success_seen_is_when_the_success_uuid_first_appeared() -> None:
    history, clock = History(), FakeClock(100.0)
    seen_at = clock.advance(15)
    _cycle(history, seen_at, PipelineSnapshot(_pipeline(), sync_status=_sync("s1")))
    (same,) = _cycle(history, clock.advance(15), PipelineSnapshot(_pipeline(), sync_status=_sync("s1")))
    assert same.checkpoint_sync_last_success_seen_seconds == seen_at
    new_at = clock.advance(15)
    (new,) = _cycle(history, new_at, PipelineSnapshot(_pipeline(), sync_status=_sync("s2")))
    assert new.checkpoint_sync_last_success_seen_seconds == new_at


def test_newest_checkpoint_first_seen_time_follows_the_newest_uuid() -> None:
    history, clock = History(), FakeClock(100.0)
    first = clock.advance(15)
    (a,) = _cycle(history, first, PipelineSnapshot(_pipeline(checkpoints=["c1"])))
    (b,) = _cycle(history, clock.advance(15), PipelineSnapshot(_pipeline(checkpoints=["c1"])))
    (unknown,) = _cycle(history, clock.advance(15), PipelineSnapshot(_pipeline()))
    second = clock.advance(15)
    (c,) = _cycle(history, second, PipelineSnapshot(_pipeline(checkpoints=["c1", "c2"])))
    (none,) = _cycle(history, clock.advance(15), PipelineSnapshot(_pipeline(checkpoints=[])))
    assert [a, b, unknown, c, none] == [
        Derived(newest_checkpoint_first_seen_seconds=first),
        Derived(newest_checkpoint_first_seen_seconds=first),
        Derived(newest_checkpoint_first_seen_seconds=first),
        Derived(newest_checkpoint_first_seen_seconds=second),
        Derived(newest_checkpoint_first_seen_seconds=None),
    ]
