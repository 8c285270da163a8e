"""``GET /v0/metrics``: the manager's own Prometheus exposition, a faithful subset of what Feldera serves.

Upstream, the manager asks every pipeline whose runtime status is ``Running`` or ``Paused`` for its ``/metrics``
and concatenates the answers, each followed by a newline; a pipeline that does not answer is left out without a
word, and the response is ``text/plain`` (``crates/pipeline-manager/src/api/endpoints/metrics.rs``,
``get_metrics``). So the families repeat their ``# HELP``/``# TYPE`` lines once per pipeline. A pipeline's
exposition (``crates/adapters/src/controller.rs``, ``write_metrics``; ``crates/adapters/src/server/metrics.rs``,
``PrometheusFormatter``; ``crates/adapters/src/server.rs``, ``metrics_handler``):

- every series is labelled ``pipeline`` (the system name ``pipeline-<uuid>``, not the bare uuid:
  ``crates/pipeline-manager/src/db/types/program.rs``, ``generate_pipeline_config``) and ``pipeline_name``;
  connector series add ``endpoint`` (``table.connector``); no other label, no ``target``;
- names carry no common prefix (``memory_pressure``, ``storage_usage_bytes``, ``input_connector_records_total``;
  only a few begin with ``feldera_``), counters need not end in ``_total`` (``checkpoint_sync_push_failures``);
- values are Rust's ``f64`` ``Display``: no exponent, no ``.0`` (``1500000``, ``0.25``, ``inf``);
- a blank line separates the families.

This subset serves the process, memory, storage, stall, input and connector families; the histograms
(step, checkpoint and storage latencies) and the DataFusion, transaction and multihost families are left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import TYPE_CHECKING

from exporter.models import MEMORY_PRESSURES
from exporter.simulator.connectors import MAX_QUEUED_RECORDS

if TYPE_CHECKING:
    from exporter.simulator.connectors import Connector
    from exporter.simulator.model import Pipeline, World

SERVED_RUNTIME = ("Running", "Paused")

Labels = tuple[tuple[str, str], ...]


def rust_float(value: float) -> str:
    """``value`` as Rust's ``Display`` for ``f64`` writes it: shortest round-trip digits, never an exponent.

    >>> rust_float(1027.0), rust_float(0.25), rust_float(1.5e20), rust_float(1e-7), rust_float(math.inf)
    ('1027', '0.25', '150000000000000000000', '0.0000001', 'inf')
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = format(Decimal(repr(float(value))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _escape_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


class Exposition:
    """One pipeline's ``/metrics`` text, written family by family as ``MetricsWriter`` does."""

    def __init__(self, labels: Labels) -> None:
        self.labels = labels
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help: str, samples: Iterable[tuple[Labels, float]]) -> None:
        if self.lines:
            self.lines.append("")
        self.lines.append(f"# HELP {name} {_escape_help(help)}")
        self.lines.append(f"# TYPE {name} {kind}")
        for extra, value in samples:
            text = ",".join(f'{k}="{_escape_value(v)}"' for k, v in (*self.labels, *extra))
            self.lines.append(f"{name}{{{text}}} {rust_float(value)}")

    def value(self, name: str, kind: str, help: str, value: float) -> None:
        self.family(name, kind, help, [((), value)])

    def text(self) -> str:
        return "".join(f"{line}\n" for line in self.lines)


def _per_connector(
    out: Exposition, connectors: list[Connector], name: str, kind: str, help: str, value: Callable[[Connector], float]
) -> None:
    out.family(name, kind, help, [((("endpoint", c.endpoint_name),), value(c)) for c in connectors])


def pipeline_metrics(pipeline: Pipeline, now: float) -> str:
    """The pipeline's own ``/metrics`` (the subset described in the module docstring)."""
    pipeline.advance(now)
    out = Exposition((("pipeline", f"pipeline-{pipeline.id}"), ("pipeline_name", pipeline.name)))
    inputs = [c for r in pipeline.tables for c in r.connectors]
    outputs = [c for r in pipeline.views for c in r.connectors]
    out.value("process_resident_memory_bytes", "gauge", "Resident set size in bytes.", pipeline.rss)
    out.value(
        "process_start_time_seconds",
        "counter",
        "Start time of the process in seconds since the Unix epoch.",
        pipeline.start_time or now,
    )
    out.value(
        "process_panics_total",
        "counter",
        "Number of times the process has panicked.  Panics do not necessarily indicate a bug or a crash but they "
        "can indicate that it is worth examining the log for details.",
        0,
    )
    out.value(
        "records_input_buffered",
        "gauge",
        "Total amount of data currently buffered by all endpoints, in records.",
        sum(c.buffered_records for c in inputs),
    )
    out.value(
        "records_input_total",
        "counter",
        "Total amount of data received from all connectors, in records.",
        sum(int(c.records) for c in inputs),
    )
    out.value(
        "output_stall_seconds_total",
        "counter",
        "Time in seconds that the pipeline was stalled because one or more output connectors' output buffers "
        "were full.\n\nThis value is greater than or equal to `output_stall_seconds`.",
        pipeline.stall_total_seconds(now),
    )
    out.value(
        "output_stall_seconds",
        "gauge",
        "If the pipeline is currently stalled because one or more output connectors' output buffers were full, "
        "this is the time in seconds for which it has been stalled.\n\nIf the pipeline is not currently stalled, "
        "this is zero.\n\nIf this is nonzero, then the output connectors causing the stall can be identified by "
        "observing which values of `output_connector_queued_records` are greater than or equal to the configured "
        "maximum (which defaults to 1,000,000).",
        pipeline.stall_seconds(now),
    )
    out.value("storage_usage_bytes", "gauge", "The number of bytes of storage currently in use", pipeline.storage_bytes)
    out.value(
        "max_rss_bytes",
        "gauge",
        "Configured maximum process RSS in bytes. A value of 0 means no limit is configured.",
        pipeline.max_rss_bytes or 0,
    )
    out.value(
        "memory_pressure",
        "gauge",
        "Current memory pressure level in [0..3]: low=0, moderate=1, high=2, critical=3.",
        MEMORY_PRESSURES.index(pipeline.memory_pressure),
    )
    out.value(
        "memory_pressure_epoch",
        "gauge",
        "Monotonic counter incremented whenever memory pressure transitions to high/critical.",
        pipeline.memory_pressure_epoch,
    )
    _per_connector(
        out,
        inputs,
        "input_connector_records_total",
        "counter",
        "Total number of records received by an input connector.",
        lambda c: int(c.records),
    )
    _per_connector(
        out,
        inputs,
        "input_connector_errors_transport_total",
        "counter",
        "Total number of errors encountered by the input connector at the transport layer.",
        lambda c: c.errors_transport,
    )
    _per_connector(
        out,
        inputs,
        "input_connector_errors_parse_total",
        "counter",
        "Total number of errors encountered parsing records received by the input connector.",
        lambda c: c.errors_a,
    )
    _per_connector(
        out,
        inputs,
        "input_connector_running",
        "gauge",
        "Whether the input connector is running (1) or paused by the user (0).",
        lambda c: 0 if c.paused else 1,
    )
    _per_connector(
        out,
        outputs,
        "output_connector_records_total",
        "counter",
        "Total number of records sent by the output connector.",
        lambda c: int(c.records),
    )
    _per_connector(
        out,
        outputs,
        "output_connector_queued_records",
        "gauge",
        "Number of records currently queued by the output connector.",
        lambda c: MAX_QUEUED_RECORDS if c.queue_full else 0,
    )
    _per_connector(
        out,
        outputs,
        "output_connector_errors_transport_total",
        "counter",
        "Total number of errors encountered at the transport layer sending records.",
        lambda c: c.errors_transport,
    )
    _per_connector(
        out,
        outputs,
        "output_connector_errors_encode_total",
        "counter",
        "Total number of errors encountered encoding records to send.",
        lambda c: c.errors_a,
    )
    return out.text()


def manager_metrics(world: World, now: float) -> bytes:
    """``GET /v0/metrics``: every Running or Paused pipeline's exposition, each followed by a newline."""
    parts = []
    for pipeline in world.pipelines.values():
        if pipeline.provisioned and pipeline.runtime.value in SERVED_RUNTIME and pipeline.interaction_fault is None:
            parts.append(pipeline_metrics(pipeline, now) + "\n")
    return "".join(parts).encode()
