"""The API models accept what the real server sends, quirks included, and never fail on harmless surprises."""

from __future__ import annotations

import pytest

from exporter.models import CheckpointStatus, Configuration, ControllerStatus, Pipeline, parse_timestamp


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1970-01-01T00:00:00Z", 0.0),
        ("2024-05-01T12:00:00Z", 1714564800.0),
        ("2024-05-01T12:00:00.5Z", 1714564800.5),
        ("2024-05-01T12:00:00.123456789Z", 1714564800.123456),
        ("2024-05-01T14:00:00+02:00", 1714564800.0),
        ("2024-05-01T14:00:00+0200", 1714564800.0),
        ("2024-05-01 12:00:00", 1714564800.0),
    ],
)
def test_timestamps_parse_to_epoch_seconds_with_any_precision(text: str, expected: float) -> None:
    assert parse_timestamp(text) == pytest.approx(expected)


@pytest.mark.parametrize("junk", ["", "yesterday", "2024-13-45T99:00:00Z", None, [], {}, True])
def test_unparseable_timestamps_become_none(junk: object) -> None:
    assert parse_timestamp(junk) is None


def test_pipeline_keeps_unknown_enum_values_and_ignores_unknown_fields() -> None:
    pipeline = Pipeline.model_validate(
        {
            "id": "67e55044-10b1-426f-9247-bb680e5fe0c8",
            "name": "p1",
            "deployment_status": "Hibernating",
            "program_status": "Success",
            "bootstrap_policy": "allow",
            "silent_bootstrap": True,
            "deployment_status_since": "2024-05-01T12:00:00.123456789Z",
        }
    )
    assert pipeline.deployment_status == "Hibernating"
    assert pipeline.deployment_status_since == pytest.approx(1714564800.123456)
    assert pipeline.connectors is None
    assert pipeline.deployment_runtime_status is None


def test_connectors_key_omitted_is_distinct_from_zero_errors() -> None:
    assert Pipeline.model_validate({"name": "a"}).connectors is None
    with_zero = Pipeline.model_validate({"name": "a", "connectors": {"num_errors": 0}})
    assert with_zero.connectors is not None
    assert with_zero.connectors.num_errors == 0


def test_wrongly_typed_optional_values_degrade_instead_of_failing_the_document() -> None:
    pipeline = Pipeline.model_validate(
        {"name": "p", "version": "seven", "deployment_error": None, "deployment_runtime_status": 3}
    )
    assert pipeline.version is None
    assert pipeline.deployment_runtime_status is None


def test_pipeline_without_a_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="name"):
        Pipeline.model_validate({"id": "x"})


def test_checkpoint_status_keeps_failure_after_later_success() -> None:
    status = CheckpointStatus.model_validate(
        {"success": 7, "failure": {"sequence_number": 5, "error": "disk full", "failed_at": "2024-05-01T12:00:00Z"}}
    )
    assert status.success == 7
    assert status.failure is not None
    assert status.failure.sequence_number == 5


def test_stats_parse_connectors_activity_and_missing_optional_parts() -> None:
    stats = ControllerStatus.model_validate(
        {
            "global_metrics": {"incarnation_uuid": "u1", "state": "Running", "rss_bytes": 5},
            "inputs": [
                {
                    "endpoint_name": "orders.kafka",
                    "config": {"stream": "orders"},
                    "metrics": {"total_records": 10, "processing_latency_p99_micros": 1500},
                    "paused": False,
                    "barrier": False,
                    "health": {"status": "Unhealthy", "description": "broker down"},
                }
            ],
            "outputs": [],
            "checkpoint_activity": {"status": "in_progress", "started_at": "2024-05-01T12:00:00Z"},
        }
    )
    connector = stats.inputs[0]
    assert connector.metrics.total_records == 10
    assert connector.metrics.total_bytes == 0
    assert connector.health is not None and connector.health.status == "Unhealthy"
    assert connector.fatal_error is None
    assert stats.checkpoint_activity is not None and stats.checkpoint_activity.started_at == 1714564800.0


def test_configuration_keeps_unknown_editions_and_degrades_unknown_licence_shapes() -> None:
    config = Configuration.model_validate(
        {
            "version": "0.369.0",
            "edition": "EnterpriseDev",  # a value newer than the spec's two
            "revision": "abc",
            "build_info": {"rustc_version": "1.90"},
            "telemetry": "",
            "license_validity": {"Exists": {"valid_until": "2027-01-01T00:00:00.123456789Z", "is_trial": "yes"}},
            "update_info": {"latest_version": "0.370.0", "is_latest_version": False, "remind_schedule": "Once"},
        }
    )
    assert (config.version, config.edition, config.revision, config.runtime_revision) == (
        "0.369.0",
        "EnterpriseDev",
        "abc",
        "",
    )
    assert config.license_validity is not None and config.license_validity.valid is True
    licence = config.license_validity.exists
    assert licence is not None and licence.valid_until == pytest.approx(1798761600.123456)
    assert licence.is_trial is None  # not a boolean: unknown, not False
    assert config.update_info is not None and config.update_info.is_latest_version is False
    for odd in ("Exists", ["Exists"], {"Exists": "soon"}, {"Revoked": {}}):
        validity = Configuration.model_validate({"license_validity": odd}).license_validity
        assert validity is None or validity.valid is None, odd
    not_confirmed = Configuration.model_validate({"license_validity": {"DoesNotExistOrNotConfirmed": ""}})
    assert not_confirmed.license_validity is not None and not_confirmed.license_validity.valid is False
