"""Connector metrics: every input and output endpoint from ``GET /v0/pipelines/{p}/stats`` (one call per pipeline).

Labels follow Feldera's own ``/v0/metrics`` so the two can be joined: ``endpoint`` is the endpoint name as
Feldera gives it (``table.connector``; unnamed connectors are ``unnamed-0``, …), ``table`` (inputs) or ``view``
(outputs) is the SQL relation (``config.stream``), ``connector`` the rest of the endpoint name.
The newest parse/encode/transport error timestamps need the per-connector endpoints (collector group
``connector_errors``, off by default): ``/stats`` leaves the error lists out.

Sample output (``target`` label left out; health set abridged)::

    feldera_input_connector_fatal_error{pipeline_name="orders",endpoint="orders.kafka",table="orders",connector="kafka"} 0.0
    feldera_output_connector_fatal_error_info{pipeline_name="orders",endpoint="totals.s3",view="totals",connector="s3",error="S3 error: AccessDenied"} 1.0
    feldera_input_connector_health{pipeline_name="orders",endpoint="orders.kafka",table="orders",connector="kafka",status="Healthy"} 1.0
    feldera_input_connector_paused{pipeline_name="orders",endpoint="orders.kafka",table="orders",connector="kafka"} 0.0
    feldera_input_connector_records_total{pipeline_name="orders",endpoint="orders.kafka",table="orders",connector="kafka"} 1.5e+06
    feldera_input_connector_processing_latency_p99_seconds{pipeline_name="orders",endpoint="orders.kafka",table="orders",connector="kafka"} 0.012
    feldera_input_connector_last_parse_error_timestamp_seconds{pipeline_name="orders",endpoint="orders.kafka",table="orders",connector="kafka"} 1.7e+09
    feldera_output_connector_fatal_error{pipeline_name="orders",endpoint="totals.s3",view="totals",connector="s3"} 1.0
    feldera_output_connector_paused{pipeline_name="orders",endpoint="totals.s3",view="totals",connector="s3"} 0.0
    feldera_output_connector_transmitted_records_total{pipeline_name="orders",endpoint="totals.s3",view="totals",connector="s3"} 2e+04
"""  # noqa: E501

from __future__ import annotations

from exporter.endpoint import split_endpoint
from exporter.metrics.spec import FamilyBuilder, Labels, MetricSpec, MetricType, error_text
from exporter.metrics.walk import each_pipeline
from exporter.models import ConnectorErrorEntry, ConnectorHealth, InputEndpointStatus, OutputEndpointStatus
from exporter.snapshot import PipelineSnapshot, Snapshot

STATE = "connectors"
COUNTERS = "connector_counters"
ERRORS = "connector_errors"

HEALTH_STATES = ("Healthy", "Unhealthy", "Unknown")
INPUT_LABELS = ("endpoint", "table", "connector")
OUTPUT_LABELS = ("endpoint", "view", "connector")


def _input(name: str, type_: MetricType, help: str, group: str, unit: str = "", status: bool = False) -> MetricSpec:
    return MetricSpec(
        f"feldera_input_connector_{name}",
        type_,
        help,
        labels=(*INPUT_LABELS, "status") if status else INPUT_LABELS,
        group=group,
        unit=unit,
        states=HEALTH_STATES if status else (),
        reads=("connector_details",) if group == ERRORS else ("stats",),
    )


def _output(name: str, type_: MetricType, help: str, group: str, unit: str = "", status: bool = False) -> MetricSpec:
    return MetricSpec(
        f"feldera_output_connector_{name}",
        type_,
        help,
        labels=(*OUTPUT_LABELS, "status") if status else OUTPUT_LABELS,
        group=group,
        unit=unit,
        states=HEALTH_STATES if status else (),
        reads=("connector_details",) if group == ERRORS else ("stats",),
    )


IN_FATAL = _input("fatal_error", "gauge", "1 when the connector hit a fatal error (never cleared), else 0.", STATE)
FATAL_INFO_HELP = (
    "The connector's fatal error text in the error label (secrets redacted, at most 256 characters: its start and "
    "end), for alert descriptions; 1, present only while the connector has one."
)
IN_FATAL_INFO = MetricSpec(
    "feldera_input_connector_fatal_error_info", "gauge", FATAL_INFO_HELP, (*INPUT_LABELS, "error"), STATE
)
IN_HEALTH = _input(
    "health", "gauge", "Connector health, one-hot; Unknown until the connector reports.", STATE, status=True
)
IN_PAUSED = _input("paused", "gauge", "1 when the connector is paused, else 0.", STATE)
IN_BARRIER = _input("barrier", "gauge", "1 when the connector is a barrier to checkpointing and suspend.", STATE)
IN_EOI = _input("end_of_input", "gauge", "1 when the connector has reached the end of its input, else 0.", STATE)
IN_INGESTED = _input(
    "completed_frontier_ingested_timestamp_seconds",
    "gauge",
    "When the newest fully processed input of the connector was ingested.",
    STATE,
    "seconds",
)
IN_PROCESSED = _input(
    "completed_frontier_processed_timestamp_seconds",
    "gauge",
    "When the newest fully processed input of the connector was processed.",
    STATE,
    "seconds",
)
IN_COMPLETED = _input(
    "completed_frontier_completed_timestamp_seconds",
    "gauge",
    "When the newest fully processed input of the connector was completed (all outputs written).",
    STATE,
    "seconds",
)
IN_RECORDS = _input("records_total", "counter", "Records received by the connector.", COUNTERS)
IN_BYTES = _input("bytes_total", "counter", "Bytes received by the connector.", COUNTERS, "bytes")
IN_BUFFERED_RECORDS = _input("buffered_records", "gauge", "Records buffered, not yet processed.", COUNTERS)
IN_BUFFERED_BYTES = _input("buffered_bytes", "gauge", "Bytes buffered, not yet processed.", COUNTERS, "bytes")
IN_PARSE_ERRORS = _input("parse_errors_total", "counter", "Records the connector failed to parse.", COUNTERS)
IN_TRANSPORT_ERRORS = _input("transport_errors_total", "counter", "Transport errors of the connector.", COUNTERS)
IN_LATENCY = _input(
    "processing_latency_p99_seconds",
    "gauge",
    "99th percentile of the time from ingesting a record to processing it.",
    COUNTERS,
    "seconds",
)
IN_LAST_PARSE_ERROR = _input(
    "last_parse_error_timestamp_seconds",
    "gauge",
    "When the newest parse error Feldera still lists for the connector happened.",
    ERRORS,
    "seconds",
)
IN_LAST_TRANSPORT_ERROR = _input(
    "last_transport_error_timestamp_seconds",
    "gauge",
    "When the newest transport error Feldera still lists for the connector happened.",
    ERRORS,
    "seconds",
)

OUT_FATAL = _output("fatal_error", "gauge", "1 when the connector hit a fatal error (never cleared), else 0.", STATE)
OUT_FATAL_INFO = MetricSpec(
    "feldera_output_connector_fatal_error_info", "gauge", FATAL_INFO_HELP, (*OUTPUT_LABELS, "error"), STATE
)
OUT_HEALTH = _output(
    "health", "gauge", "Connector health, one-hot; Unknown until the connector reports.", STATE, status=True
)
OUT_PAUSED = _output(
    "paused",
    "gauge",
    "1 when the connector is paused: it discards the view's output instead of writing it, else 0; absent from "
    "servers without pausable output connectors.",
    STATE,
)
OUT_RECORDS = _output("transmitted_records_total", "counter", "Records sent by the connector.", COUNTERS)
OUT_BYTES = _output("transmitted_bytes_total", "counter", "Bytes sent by the connector.", COUNTERS, "bytes")
OUT_QUEUED_RECORDS = _output("queued_records", "gauge", "Records queued for encoding.", COUNTERS)
OUT_QUEUED_BATCHES = _output("queued_batches", "gauge", "Batches queued for encoding.", COUNTERS)
OUT_BUFFERED_RECORDS = _output("buffered_records", "gauge", "Records buffered by the connector.", COUNTERS)
OUT_BUFFERED_BATCHES = _output("buffered_batches", "gauge", "Batches buffered by the connector.", COUNTERS)
OUT_ENCODE_ERRORS = _output("encode_errors_total", "counter", "Records the connector failed to encode.", COUNTERS)
OUT_TRANSPORT_ERRORS = _output("transport_errors_total", "counter", "Transport errors of the connector.", COUNTERS)
OUT_MEMORY = _output("memory_bytes", "gauge", "Memory used by the connector's buffers.", COUNTERS, "bytes")
OUT_LAST_ENCODE_ERROR = _output(
    "last_encode_error_timestamp_seconds",
    "gauge",
    "When the newest encode error Feldera still lists for the connector happened.",
    ERRORS,
    "seconds",
)
OUT_LAST_TRANSPORT_ERROR = _output(
    "last_transport_error_timestamp_seconds",
    "gauge",
    "When the newest transport error Feldera still lists for the connector happened.",
    ERRORS,
    "seconds",
)

SPECS: tuple[MetricSpec, ...] = (
    IN_FATAL,
    IN_FATAL_INFO,
    IN_HEALTH,
    IN_PAUSED,
    IN_BARRIER,
    IN_EOI,
    IN_INGESTED,
    IN_PROCESSED,
    IN_COMPLETED,
    IN_RECORDS,
    IN_BYTES,
    IN_BUFFERED_RECORDS,
    IN_BUFFERED_BYTES,
    IN_PARSE_ERRORS,
    IN_TRANSPORT_ERRORS,
    IN_LATENCY,
    IN_LAST_PARSE_ERROR,
    IN_LAST_TRANSPORT_ERROR,
    OUT_FATAL,
    OUT_FATAL_INFO,
    OUT_HEALTH,
    OUT_PAUSED,
    OUT_RECORDS,
    OUT_BYTES,
    OUT_QUEUED_RECORDS,
    OUT_QUEUED_BATCHES,
    OUT_BUFFERED_RECORDS,
    OUT_BUFFERED_BATCHES,
    OUT_ENCODE_ERRORS,
    OUT_TRANSPORT_ERRORS,
    OUT_MEMORY,
    OUT_LAST_ENCODE_ERROR,
    OUT_LAST_TRANSPORT_ERROR,
)


def _health(health: ConnectorHealth | None) -> str:
    return "Unknown" if health is None else health.status


def _newest(errors: list[ConnectorErrorEntry] | None) -> float | None:
    if not errors:
        return None
    return max((e.timestamp for e in errors if e.timestamp is not None), default=None)


def _input_samples(
    out: FamilyBuilder[object], pid: Labels, c: InputEndpointStatus, state: bool, counters: bool
) -> None:
    table, connector = split_endpoint(c.endpoint_name, c.config.stream)
    labels = {"endpoint": c.endpoint_name, "table": table, "connector": connector}
    if state:
        out.add(IN_FATAL, pid, 0 if c.fatal_error is None else 1, **labels)
        if c.fatal_error is not None:
            out.add(IN_FATAL_INFO, pid, 1, **labels, error=error_text(c.fatal_error))
        out.state_set(IN_HEALTH, pid, _health(c.health), **labels)
        out.add(IN_PAUSED, pid, 1 if c.paused else 0, **labels)
        out.add(IN_BARRIER, pid, 1 if c.barrier else 0, **labels)
        out.add(IN_EOI, pid, 1 if c.metrics.end_of_input else 0, **labels)
        frontier = c.completed_frontier
        if frontier is not None:
            out.add_optional(IN_INGESTED, pid, frontier.ingested_at, **labels)
            out.add_optional(IN_PROCESSED, pid, frontier.processed_at, **labels)
            out.add_optional(IN_COMPLETED, pid, frontier.completed_at, **labels)
    if counters:
        m = c.metrics
        out.add(IN_RECORDS, pid, m.total_records, **labels)
        out.add(IN_BYTES, pid, m.total_bytes, **labels)
        out.add(IN_BUFFERED_RECORDS, pid, m.buffered_records, **labels)
        out.add(IN_BUFFERED_BYTES, pid, m.buffered_bytes, **labels)
        out.add(IN_PARSE_ERRORS, pid, m.num_parse_errors, **labels)
        out.add(IN_TRANSPORT_ERRORS, pid, m.num_transport_errors, **labels)
        if m.processing_latency_p99_micros is not None:
            out.add(IN_LATENCY, pid, m.processing_latency_p99_micros / 1_000_000, **labels)


def _output_samples(
    out: FamilyBuilder[object], pid: Labels, c: OutputEndpointStatus, state: bool, counters: bool
) -> None:
    view, connector = split_endpoint(c.endpoint_name, c.config.stream)
    labels = {"endpoint": c.endpoint_name, "view": view, "connector": connector}
    if state:
        out.add(OUT_FATAL, pid, 0 if c.fatal_error is None else 1, **labels)
        if c.fatal_error is not None:
            out.add(OUT_FATAL_INFO, pid, 1, **labels, error=error_text(c.fatal_error))
        out.state_set(OUT_HEALTH, pid, _health(c.health), **labels)
        if c.paused is not None:
            out.add(OUT_PAUSED, pid, 1 if c.paused else 0, **labels)
    if counters:
        m = c.metrics
        out.add(OUT_RECORDS, pid, m.transmitted_records, **labels)
        out.add(OUT_BYTES, pid, m.transmitted_bytes, **labels)
        out.add(OUT_QUEUED_RECORDS, pid, m.queued_records, **labels)
        out.add(OUT_QUEUED_BATCHES, pid, m.queued_batches, **labels)
        out.add(OUT_BUFFERED_RECORDS, pid, m.buffered_records, **labels)
        out.add(OUT_BUFFERED_BATCHES, pid, m.buffered_batches, **labels)
        out.add(OUT_ENCODE_ERRORS, pid, m.num_encode_errors, **labels)
        out.add(OUT_TRANSPORT_ERRORS, pid, m.num_transport_errors, **labels)
        out.add(OUT_MEMORY, pid, m.memory, **labels)


def _error_samples(
    out: FamilyBuilder[object], pid: Labels, name: str, c: InputEndpointStatus | OutputEndpointStatus
) -> None:
    """``name`` is the endpoint the exporter asked for, not the name the answer reports (which could repeat
    another endpoint's and make a duplicate series)."""
    relation, connector = split_endpoint(name, c.config.stream)
    if isinstance(c, InputEndpointStatus):
        labels = {"endpoint": name, "table": relation, "connector": connector}
        out.add_optional(IN_LAST_PARSE_ERROR, pid, _newest(c.parse_errors), **labels)
        out.add_optional(IN_LAST_TRANSPORT_ERROR, pid, _newest(c.transport_errors), **labels)
    else:
        labels = {"endpoint": name, "view": relation, "connector": connector}
        out.add_optional(OUT_LAST_ENCODE_ERROR, pid, _newest(c.encode_errors), **labels)
        out.add_optional(OUT_LAST_TRANSPORT_ERROR, pid, _newest(c.transport_errors), **labels)


def add_samples(snapshot: Snapshot, out: FamilyBuilder[object]) -> None:
    state, counters, errors = out.wants(STATE), out.wants(COUNTERS), out.wants(ERRORS)
    if not (state or counters or errors):
        return

    def emit(pid: Labels, snap: PipelineSnapshot) -> None:
        stats = snap.stats
        details = snap.connector_details if errors else None
        if stats is not None and (state or counters):
            for inp in stats.inputs:
                _input_samples(out, pid, inp, state, counters)
            for outp in stats.outputs:
                _output_samples(out, pid, outp, state, counters)
        if details:
            for name, detail in details.items():
                _error_samples(out, pid, name, detail)

    each_pipeline(snapshot, out, emit)
