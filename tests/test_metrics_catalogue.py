"""Behaviour of the metric catalogue on snapshots: what is emitted, what is omitted, and how values translate."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from golden.snapshots import GOLDEN_DIR, parsed_families, snapshot_from

from exporter.metrics import GROUPS, families
from exporter.metrics.checkpoints import checkpoint_failed
from exporter.models import CheckpointStatus
from exporter.snapshot import ProcessSample, Snapshot


def _document(name: str) -> dict[str, Any]:
    return json.loads((GOLDEN_DIR / f"{name}.json").read_text(encoding="utf-8"))


def _samples(snapshot: Snapshot, disabled: frozenset[str] = frozenset()) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for family in parsed_families(snapshot, disabled):
        for sample in family.samples:
            out.setdefault(sample.name, []).append({**sample.labels, "value": str(sample.value)})
    return out


def _value(snapshot: Snapshot, name: str, **labels: str) -> float | None:
    for family in parsed_families(snapshot):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return sample.value
    return None


def test_disabled_groups_emit_no_family_at_all() -> None:
    snapshot = snapshot_from(_document("running"))
    disabled = frozenset({"connectors", "connector_counters", "connector_errors"})
    names = {family.name for family in families(snapshot, disabled)}
    assert not any(name.startswith(("feldera_input_connector", "feldera_output_connector")) for name in names)
    assert "feldera_pipeline_status" in names


def test_every_group_can_be_disabled_without_errors() -> None:
    snapshot = snapshot_from(_document("running"))
    assert families(snapshot, frozenset(GROUPS)) == []


def test_families_are_sorted_by_name() -> None:
    names = [family.name for family in families(snapshot_from(_document("running")))]
    assert names == sorted(names)


def test_omitted_connectors_key_produces_no_connector_errors_sample() -> None:
    document = _document("running")
    del document["targets"][0]["pipelines"][0]["pipeline"]["connectors"]
    assert "feldera_pipeline_connector_errors_total" not in _samples(snapshot_from(document))


def test_zero_connector_errors_is_emitted_as_zero() -> None:
    assert _value(snapshot_from(_document("stopped")), "feldera_pipeline_connector_errors_total") == 0.0


def test_target_down_serves_no_pipeline_or_cluster_series() -> None:
    document = _document("running")
    document["targets"][0]["up"] = False
    samples = _samples(snapshot_from(document))
    assert not [name for name in samples if not name.startswith(("feldera_up", "feldera_exporter_"))]


def test_stopped_pipeline_has_every_runtime_state_at_zero() -> None:
    samples = _samples(snapshot_from(_document("stopped")))["feldera_pipeline_runtime_status"]
    assert len(samples) == 13
    assert {s["value"] for s in samples} == {"0.0"}


def test_unknown_status_lights_other_and_nothing_else() -> None:
    samples = _samples(snapshot_from(_document("unknown_enums")))["feldera_pipeline_status"]
    assert [s["status"] for s in samples if s["value"] == "1.0"] == ["Other"]


def test_unfetched_parts_are_omitted_not_zero() -> None:
    samples = _samples(snapshot_from(_document("stopped")))
    for name in (
        "feldera_pipeline_checkpoint_failed",
        "feldera_pipeline_checkpoint_activity",
        "feldera_pipeline_checkpoint_sync_failed",
        "feldera_input_connector_fatal_error",
        "feldera_cluster_service_healthy",
        "feldera_pipeline_runtime_status_since_timestamp_seconds",
        "feldera_pipeline_deployment_error_info",
    ):
        assert name not in samples, name


def test_failed_checkpoint_sets_failed_flag() -> None:
    assert _value(snapshot_from(_document("failed_checkpoint")), "feldera_pipeline_checkpoint_failed") == 1.0


@pytest.mark.parametrize(
    ("success", "failure", "failed"),
    [(None, None, False), (5, None, False), (None, 1, True), (5, 6, True), (7, 6, False), (6, 6, False)],
)
def test_checkpoint_failed_means_failure_newer_than_last_success(
    success: int | None, failure: int | None, failed: bool
) -> None:
    doc = None if failure is None else {"sequence_number": failure, "error": "e", "failed_at": None}
    assert checkpoint_failed(CheckpointStatus.model_validate({"success": success, "failure": doc})) is failed


def test_latency_is_converted_from_micros_to_seconds() -> None:
    value = _value(snapshot_from(_document("running")), "feldera_input_connector_processing_latency_p99_seconds")
    assert value == pytest.approx(0.0125)


def test_null_health_is_unknown() -> None:
    snapshot = snapshot_from(_document("fatal_connector"))
    assert _value(snapshot, "feldera_output_connector_health", status="Unknown") == 1.0
    assert _value(snapshot, "feldera_output_connector_fatal_error") == 1.0


def test_error_timestamps_come_only_from_per_connector_details() -> None:
    document = _document("running")
    pipeline = document["targets"][0]["pipelines"][0]
    without_details = copy.deepcopy(document)
    del without_details["targets"][0]["pipelines"][0]["input_details"]
    # /stats never carries the arrays; even if it did, they are not used
    pipeline["stats"]["inputs"][0]["parse_errors"] = [{"index": 9, "message": "m", "timestamp": "2030-01-01T00:00:00Z"}]
    name = "feldera_input_connector_last_parse_error_timestamp_seconds"
    assert name not in _samples(snapshot_from(without_details))
    assert _value(snapshot_from(document), name) == pytest.approx(1714563900.0)


def test_deployment_error_code_goes_on_info_and_the_message_nowhere() -> None:
    snapshot = snapshot_from(_document("deployment_error"))
    assert _value(snapshot, "feldera_pipeline_deployment_error_info", error_code="RunnerError") == 1.0
    text = json.dumps(_samples(snapshot))
    assert "out of memory" not in text


def test_process_samples_render_through_the_specs_and_unknown_ones_are_left_out() -> None:
    snapshot = Snapshot(
        process=(
            ProcessSample("process_open_fds", (), 7),
            ProcessSample("python_gc_collections_total", (("generation", "2"),), 4),
            ProcessSample("process_new_thing", (), 1),
        )
    )
    found = _samples(snapshot)
    assert found["process_open_fds"] == [{"value": "7.0"}]
    assert found["python_gc_collections_total"] == [{"generation": "2", "value": "4.0"}]
    assert "process_new_thing" not in found
    assert "process_open_fds" not in _samples(snapshot, frozenset({"process"}))
