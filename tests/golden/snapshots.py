"""Build real :class:`~exporter.snapshot.Snapshot` values from JSON fixtures, and render them like the exporter.

A fixture is ``{"taken_at", "targets": [{"name", "labels", "up", "cluster", "pipelines": [{"pipeline",
"checkpoint_status", "stats", "sync_status", "input_details", "output_details", "runtime_config"}]}]}``; every API
document goes through the real lenient models and the real :class:`~exporter.history.History`, as in a poll cycle.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.history import History
from exporter.metrics import GROUPS, families
from exporter.models import (
    CheckpointStatus,
    CheckpointSyncStatus,
    ClusterHealth,
    ControllerStatus,
    InputEndpointStatus,
    OutputEndpointStatus,
    Pipeline,
    PipelineRuntimeConfig,
)
from exporter.render import Rendered, render
from exporter.snapshot import PipelineSnapshot, Snapshot, TargetSnapshot

GOLDEN_DIR = Path(__file__).parent

METRICS_GROUPS = frozenset(
    {
        "pipelines",
        "resources",
        "checkpoints",
        "checkpoint_sync",
        "connectors",
        "connector_counters",
        "connector_errors",
        "cluster",
    }
)
"""Groups of the Feldera-object metric modules; golden files cover exactly these (self-metrics carry versions)."""


def _optional(model: Any, document: Any) -> Any:
    return None if document is None else model.model_validate(document)


def pipeline_snapshot(document: dict[str, Any]) -> PipelineSnapshot:
    details: dict[str, InputEndpointStatus | OutputEndpointStatus] = {}
    for name, detail in document.get("input_details", {}).items():
        details[name] = InputEndpointStatus.model_validate(detail)
    for name, detail in document.get("output_details", {}).items():
        details[name] = OutputEndpointStatus.model_validate(detail)
    pipeline = Pipeline.model_validate(document["pipeline"])
    runtime = document.get("runtime_config")
    fault_tolerance = None
    if runtime is not None:
        fetched = {"name": pipeline.name, "version": pipeline.version, "runtime_config": runtime}
        fault_tolerance = PipelineRuntimeConfig.model_validate(fetched).fault_tolerance
    return PipelineSnapshot(
        pipeline=pipeline,
        checkpoint_status=_optional(CheckpointStatus, document.get("checkpoint_status")),
        stats=_optional(ControllerStatus, document.get("stats")),
        sync_status=_optional(CheckpointSyncStatus, document.get("sync_status")),
        connector_details=details,
        fault_tolerance=fault_tolerance,
    )


def snapshot_from(document: dict[str, Any], history: History | None = None) -> Snapshot:
    """The snapshot a poll cycle would build from these API answers (derived values from ``history``)."""
    history = history or History()
    now = float(document.get("taken_at", 0.0))
    targets = []
    for target in document["targets"]:
        up = bool(target.get("up", True))
        pipelines = [pipeline_snapshot(p) for p in target.get("pipelines", [])] if up else []
        if up:
            pipelines = history.advance(target["name"], pipelines, now)
        targets.append(
            TargetSnapshot(
                name=target["name"],
                labels=tuple(target.get("labels", {}).items()),
                up=up,
                pipelines=tuple(pipelines),
                cluster=_optional(ClusterHealth, target.get("cluster")),
            )
        )
    return Snapshot(targets=tuple(targets), taken_at=now)


def load_snapshot(name: str, history: History | None = None) -> Snapshot:
    return snapshot_from(json.loads((GOLDEN_DIR / f"{name}.json").read_text(encoding="utf-8")), history)


def fixture_names() -> list[str]:
    return sorted(path.stem for path in GOLDEN_DIR.glob("*.json"))


def rendered(snapshot: Snapshot, disabled: frozenset[str] = frozenset()) -> Rendered:
    """What the exporter serves for ``snapshot``."""
    return render(families(snapshot, disabled))


def text_of(result: Rendered, *, openmetrics: bool = False) -> str:
    """The uncompressed exposition, as a client without gzip receives it."""
    return b"".join(result.plain_chunks(openmetrics=openmetrics)).decode("utf-8")


def parsed_families(snapshot: Snapshot, disabled: frozenset[str] = frozenset()) -> list[Metric]:
    """The served text exposition, parsed back by prometheus_client's parser."""
    text = text_of(rendered(snapshot, disabled))
    return list(text_string_to_metric_families(text))


class _Families:
    def __init__(self, metrics: Iterable[Metric]) -> None:
        self._metrics = list(metrics)

    def collect(self) -> Iterable[Metric]:
        return self._metrics


def exposition(snapshot: Snapshot, disabled: frozenset[str] = frozenset()) -> str:
    """The served text exposition, parsed and written again by prometheus_client (sorted labels).

    The golden files were written by prometheus_client from its own metric objects; equality after this round
    trip shows our renderer emits the same families, HELP, TYPE, series and values.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(parsed_families(snapshot, disabled)))
    return generate_latest(registry).decode("utf-8")


def metrics_exposition(snapshot: Snapshot) -> str:
    """Exposition of the Feldera-object groups only."""
    return exposition(snapshot, frozenset(GROUPS) - METRICS_GROUPS)
