"""Connectors of a simulated pipeline: the ``tables/{t}/connectors/{c}/stats`` and ``views/...`` seam of the API,
the counters that advance while the pipeline runs, output-connector reset tokens, and their control API.

:class:`PipelineConnectors` is the connector part of :class:`~exporter.simulator.model.Pipeline`;
:class:`ConnectorControl` the connector part of :class:`~exporter.simulator.server.Simulator`'s control API.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from exporter.simulator.clock import Clock, rfc3339
from exporter.simulator.scenario import ConnectorSpec, RelationSpec

if TYPE_CHECKING:
    from exporter.simulator.model import Since, World

MAX_ERROR_ENTRIES = 5
MAX_QUEUED_RECORDS = 1_000_000
"""An output connector's ``max_queued_records`` default (``ConnectorConfig``); here also an input's buffer."""


def sql_identifier(text: str) -> tuple[str, bool]:
    """SQL identifier rules: ``"Quoted"`` keeps case (``""`` escapes a quote), unquoted is lowercased.

    Returns the canonical name and whether it is case-sensitive.
    """
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        return text[1:-1].replace('""', '"'), True
    return text.lower(), False


class UnknownEndpoint(KeyError):
    pass


@dataclass
class ErrorEntry:
    timestamp: float
    index: int
    message: str
    tag: str | None = None

    def render(self) -> dict[str, Any]:
        return {"timestamp": rfc3339(self.timestamp), "index": self.index, "message": self.message, "tag": self.tag}


@dataclass
class Connector:
    """An input (table) or output (view) connector with counters that advance while the pipeline runs."""

    relation: str
    name: str
    is_input: bool
    rate: float = 100.0
    bytes_per_record: int = 64
    records: float = 0.0
    fatal_error: str | None = None
    health: dict[str, Any] | None = None
    paused: bool = False
    barrier: bool = False
    end_of_input: bool = False
    errors_a: int = 0
    """Input: parse errors; output: encode errors."""
    errors_transport: int = 0
    recent_a: list[ErrorEntry] = field(default_factory=list)
    recent_transport: list[ErrorEntry] = field(default_factory=list)
    frontier_at: float | None = None
    backlog: float = 0.0
    """Input: records received during an output stall and not processed yet (at most :data:`MAX_QUEUED_RECORDS`)."""
    queue_full: bool = False
    """Output: its buffer is full and stalls the pipeline (``queued_records`` at its maximum)."""

    @property
    def endpoint_name(self) -> str:
        return f"{self.relation}.{self.name}"

    @property
    def num_errors(self) -> int:
        return self.errors_a + self.errors_transport

    def flowing(self) -> bool:
        return self.fatal_error is None and not self.paused and not self.end_of_input

    def reset(self) -> None:
        """A new pipeline process starts every connector from scratch."""
        self.records = 0.0
        self.fatal_error = None
        self.health = None
        self.barrier = False
        self.end_of_input = False
        self.errors_a = self.errors_transport = 0
        self.recent_a.clear()
        self.recent_transport.clear()
        self.frontier_at = None
        self.backlog = 0.0
        self.queue_full = False

    def add_errors(self, kind: str, count: int, message: str, now: float) -> None:
        if kind == "transport":
            self.errors_transport += count
            target, total = self.recent_transport, self.errors_transport
        else:
            self.errors_a += count
            target, total = self.recent_a, self.errors_a
        for index in range(max(total - count, total - MAX_ERROR_ENTRIES), total):
            target.append(ErrorEntry(now, index, message, kind))
        del target[:-MAX_ERROR_ENTRIES]

    @property
    def buffered_records(self) -> int:
        """Input records received and not processed yet: a stall's backlog, else about a second's worth."""
        if self.backlog:
            return int(self.backlog)
        return min(int(self.records), int(self.rate)) if self.flowing() else 0

    def render(self, with_errors: bool, *, output_paused: bool = False) -> dict[str, Any]:
        """``output_paused``: the build reports ``paused`` of output connectors too (newer servers)."""
        records = int(self.records)
        if self.is_input:
            body: dict[str, Any] = {
                "endpoint_name": self.endpoint_name,
                "config": {"stream": self.relation},
                "metrics": {
                    "total_bytes": records * self.bytes_per_record,
                    "total_records": records,
                    "buffered_records": self.buffered_records,
                    "buffered_bytes": self.buffered_records * self.bytes_per_record,
                    "num_transport_errors": self.errors_transport,
                    "num_parse_errors": self.errors_a,
                    "end_of_input": self.end_of_input,
                    "processing_latency_p99_micros": 1500 if records else None,
                },
                "fatal_error": self.fatal_error,
                "health": self.health,
                "paused": self.paused,
                "barrier": self.barrier,
                "completed_frontier": None
                if self.frontier_at is None
                else {
                    "metadata": {},
                    "ingested_at": rfc3339(self.frontier_at),
                    "processed_at": rfc3339(self.frontier_at),
                    "completed_at": rfc3339(self.frontier_at),
                },
            }
            if with_errors:
                body["parse_errors"] = [e.render() for e in self.recent_a]
                body["transport_errors"] = [e.render() for e in self.recent_transport]
            return body
        body = {
            "endpoint_name": self.endpoint_name,
            "config": {"stream": self.relation},
            "metrics": {
                "transmitted_records": records,
                "transmitted_bytes": records * self.bytes_per_record,
                "queued_records": MAX_QUEUED_RECORDS if self.queue_full else 0,
                "queued_batches": 1 if self.queue_full else 0,
                "buffered_records": 0,
                "buffered_batches": 0,
                "num_encode_errors": self.errors_a,
                "num_transport_errors": self.errors_transport,
                "total_processed_input_records": records,
                "total_processed_steps": records // 100,
                "memory": 4096,
            },
            "fatal_error": self.fatal_error,
            "health": self.health,
        }
        if output_paused:
            body["paused"] = self.paused
        if with_errors:
            body["encode_errors"] = [e.render() for e in self.recent_a]
            body["transport_errors"] = [e.render() for e in self.recent_transport]
        return body


@dataclass
class Relation:
    name: str
    case_sensitive: bool
    connectors: list[Connector]

    def render_schema(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "case_sensitive": self.case_sensitive,
            "fields": [
                {
                    "name": "id",
                    "case_sensitive": False,
                    "columntype": {"type": "BIGINT", "nullable": False},
                    "unused": False,
                }
            ],
            "materialized": False,
            "properties": {},
        }


def relations(specs: Iterable[RelationSpec], is_input: bool) -> list[Relation]:
    out = []
    for spec in specs:
        name, case_sensitive = sql_identifier(spec.name)
        connectors = []
        unnamed = 0
        for entry in spec.connectors:
            cspec = entry if isinstance(entry, ConnectorSpec) else ConnectorSpec(name=entry)
            cname = cspec.name
            if cname is None:
                cname = f"unnamed-{unnamed}"
                unnamed += 1
            connector = Connector(
                relation=name,
                name=cname,
                is_input=is_input,
                rate=cspec.records_per_second,
                bytes_per_record=cspec.bytes_per_record,
                fatal_error=cspec.fatal_error,
                paused=cspec.paused,
                end_of_input=cspec.end_of_input,
                errors_a=cspec.parse_errors if is_input else cspec.encode_errors,
                errors_transport=cspec.transport_errors,
            )
            if cspec.health is not None:
                connector.health = {"status": cspec.health, "description": cspec.health_description}
            connectors.append(connector)
        out.append(Relation(name, case_sensitive, connectors))
    return out


class PipelineConnectors:
    """The connector part of a pipeline: its relations and their connectors, and reset tokens."""

    tables: list[Relation]
    views: list[Relation]
    runtime: Since
    metrics_at: float
    reset_tokens: dict[str, tuple[str, str]]
    """token -> (incarnation it was issued in, pending | completed)."""

    if TYPE_CHECKING:  # the Pipeline's own property and its resource part's method

        @property
        def provisioned(self) -> bool: ...

        def stalled(self) -> bool: ...

    def connectors(self) -> Iterable[Connector]:
        for relation in self.tables + self.views:
            yield from relation.connectors

    def num_errors(self) -> int:
        return sum(c.num_errors for c in self.connectors())

    def advance(self, now: float) -> None:
        """Move connector counters forward to ``now`` (only a running pipeline ingests). During an output stall
        (:mod:`exporter.simulator.resources`) outputs send nothing and inputs receive into their buffers until
        these hold :data:`MAX_QUEUED_RECORDS`; a paused output discards what it would have sent."""
        elapsed = now - self.metrics_at
        self.metrics_at = now
        if elapsed <= 0 or not self.provisioned or self.runtime.value != "Running":
            return
        stalled = self.stalled()
        for connector in self.connectors():
            if not connector.flowing() or (stalled and not connector.is_input):
                continue
            gained = connector.rate * elapsed
            if stalled:
                gained = min(gained, max(0.0, MAX_QUEUED_RECORDS - connector.backlog))
                connector.backlog += gained
            else:
                connector.frontier_at = now
            connector.records += gained

    def find_connector(self, relation_ident: str, connector: str, is_input: bool) -> Connector:
        name, _ = sql_identifier(relation_ident)
        for relation in self.tables if is_input else self.views:
            if relation.name == name:
                for candidate in relation.connectors:
                    if candidate.name == connector:
                        return candidate
        raise UnknownEndpoint(f"{name}.{connector}")

    def find_endpoint(self, endpoint: str) -> Connector:
        """Control-API lookup by exact endpoint name (``table.connector``)."""
        for candidate in self.connectors():
            if candidate.endpoint_name == endpoint:
                return candidate
        raise UnknownEndpoint(endpoint)


class ConnectorControl:
    """Control API of connectors and reset tokens (part of the simulator)."""

    world: World
    clock: Clock

    def _connector(self, name: str, endpoint: str) -> Connector:
        return self.world.get(name).find_endpoint(endpoint)

    def set_connector_fatal_error(self, name: str, endpoint: str, message: str = "fatal connector error") -> None:
        """Record a fatal error; like the server, only the first one is kept and it is never cleared."""
        connector = self._connector(name, endpoint)
        if connector.fatal_error is None:
            connector.fatal_error = message
        self.world.get(name).touch()

    def set_connector_health(
        self, name: str, endpoint: str, status: str | None, description: str | None = None
    ) -> None:
        """``Healthy``/``Unhealthy`` (or ``None``: not reported yet)."""
        connector = self._connector(name, endpoint)
        connector.health = None if status is None else {"status": status, "description": description}
        self.world.get(name).touch()

    def set_connector_state(
        self,
        name: str,
        endpoint: str,
        *,
        paused: bool | None = None,
        barrier: bool | None = None,
        end_of_input: bool | None = None,
        records_per_second: float | None = None,
    ) -> None:
        pipeline = self.world.get(name)
        pipeline.advance(self.clock.now())
        connector = pipeline.find_endpoint(endpoint)
        if paused is not None:
            connector.paused = paused
        if barrier is not None:
            connector.barrier = barrier
        if end_of_input is not None:
            connector.end_of_input = end_of_input
        if records_per_second is not None:
            connector.rate = records_per_second
        pipeline.touch()

    def add_connector_errors(
        self, name: str, endpoint: str, kind: str = "parse", count: int = 1, message: str = "invalid record"
    ) -> None:
        """``kind``: parse (inputs) / encode (outputs) / transport; raises the pipeline's ``num_errors``."""
        connector = self._connector(name, endpoint)
        connector.add_errors("transport" if kind == "transport" else "a", count, message, self.clock.now())
        self.world.get(name).touch()

    def issue_reset_token(self, name: str) -> str:
        """A reset token of the current incarnation, status ``pending``."""
        pipeline = self.world.get(name)
        if pipeline.incarnation is None:
            raise ValueError(f"pipeline {name!r} is not running")
        token = uuid.uuid4().hex
        pipeline.reset_tokens[token] = (pipeline.incarnation, "pending")
        return token

    def complete_reset(self, name: str, token: str) -> None:
        pipeline = self.world.get(name)
        incarnation, _ = pipeline.reset_tokens[token]
        pipeline.reset_tokens[token] = (incarnation, "completed")
