"""The simulated state of one Feldera instance and how the real server renders it as JSON.

Everything here is synchronous and clock-driven: the HTTP layer (:mod:`exporter.simulator.server`) reads it,
the control API mutates it. Each mutation bumps the pipeline's revision, which invalidates its cached JSON
fragments (the pipeline list is served from those, so 10,000 pipelines cost one join per change).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from exporter.models import COMBINED_DESIRED_STATUSES as COMBINED_DESIRED
from exporter.models import RUNTIME_DESIRED_STATUSES as RUNTIME_DESIRED
from exporter.models import RUNTIME_STATUSES
from exporter.simulator.clock import Clock, rfc3339
from exporter.simulator.errors import dumps
from exporter.simulator.scenario import (
    ConnectorSpec,
    PipelineSpec,
    RelationSpec,
    Scenario,
    ServerSpec,
)

NAMESPACE = uuid.UUID("5b0f6c1e-3c9a-4e0a-9a55-6f2d1c0de000")
SELECTORS = ("all", "status", "status_with_connectors")
MAX_ERROR_ENTRIES = 5

RUNTIME_CONFIG: dict[str, Any] = {
    "workers": 4,
    "hosts": 1,
    "storage": {
        "backend": {"name": "default"},
        "min_storage_bytes": None,
        "min_step_storage_bytes": None,
        "compression": "default",
        "cache_mib": None,
    },
    "fault_tolerance": {"model": "none", "checkpoint_interval_secs": 60},
    "cpu_profiler": True,
    "tracing": False,
    "tracing_endpoint_jaeger": "",
    "min_batch_size_records": 0,
    "max_buffering_delay_usecs": 0,
    "clock_resolution_usecs": 1000000,
    "pin_cpus": [],
    "provisioning_timeout_secs": None,
    "max_parallel_connector_init": None,
    "init_containers": None,
    "checkpoint_during_suspend": True,
    "http_workers": None,
    "io_workers": None,
    "env": {},
    "dev_tweaks": {},
    "logging": None,
}
PROGRAM_CONFIG: dict[str, Any] = {
    "profile": "optimized",
    "cache": True,
    "runtime_version": None,
    "use_platform_compiler": False,
}


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

    def render(self, with_errors: bool) -> dict[str, Any]:
        records = int(self.records)
        if self.is_input:
            body: dict[str, Any] = {
                "endpoint_name": self.endpoint_name,
                "config": {"stream": self.relation},
                "metrics": {
                    "total_bytes": records * self.bytes_per_record,
                    "total_records": records,
                    "buffered_records": 0 if not self.flowing() else min(records, int(self.rate)),
                    "buffered_bytes": 0 if not self.flowing() else min(records, int(self.rate)) * self.bytes_per_record,
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
                "queued_records": 0,
                "queued_batches": 0,
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


def _relations(specs: Iterable[RelationSpec], is_input: bool) -> list[Relation]:
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


@dataclass
class Since:
    value: str | None
    since: float | None

    def set(self, value: str | None, now: float) -> None:
        if value != self.value:
            self.value = value
            self.since = now


class Pipeline:
    """One pipeline: what pipeline-manager stores plus what its pipeline process reports."""

    def __init__(
        self, spec: PipelineSpec, now: float, platform_version: str, on_change: Callable[[], None] = lambda: None
    ) -> None:
        self._on_change = on_change
        self.name = spec.name
        self.id = spec.id or str(uuid.uuid5(NAMESPACE, spec.name))
        self.description = spec.description
        self.created_at = spec.created_at if spec.created_at is not None else now
        self.platform_version = spec.platform_version or platform_version
        self.version = 1
        self.program_version = 1
        self.refresh_version = 1
        self.revision = 0
        self._cache: dict[str, bytes] = {}
        self.program = Since(spec.program_status, now)
        self.program_error: dict[str, Any] = {"sql_compilation": None, "rust_compilation": None, "system_error": None}
        if spec.program_error is not None:
            self._set_program_error(spec.program_status, spec.program_error)
        self.tables: list[Relation] = []
        self.views: list[Relation] = []
        self.resources = Since("Stopped", now)
        self.resources_desired = Since("Stopped", now)
        self.runtime = Since(None, None)
        self.runtime_desired = Since(None, None)
        self.deployment_initial: str | None = None
        self.deployment_id: str | None = None
        self.deployment_error: dict[str, Any] | None = (
            spec.deployment_error.model_dump() if spec.deployment_error is not None else None
        )
        self.storage_status = spec.storage_status or ("InUse" if spec.checkpoints else "Cleared")
        self.stored_checkpoints: list[dict[str, Any]] = []
        self.next_sequence = 1
        self.checkpoint_success: int | None = None
        self.checkpoint_failure: dict[str, Any] | None = None
        self.checkpoint_activity: dict[str, Any] = {"status": "idle"}
        self.permanent_checkpoint_errors: list[Any] | None = None
        self.sync_mode = spec.sync
        self.sync_success: str | None = None
        self.sync_failure: dict[str, str] | None = None
        self.sync_periodic: str | None = None
        self.sync_pending: list[str] = []
        self.connectors_known = spec.connectors_known
        self.incarnation: str | None = None
        self.incarnations: list[str] = []
        self.start_time: float | None = None
        self.initial_start_time: float | None = None
        self.reset_tokens: dict[str, tuple[str, str]] = {}
        self.interaction_fault: str | None = None
        self.metrics_at = now
        for _ in range(spec.checkpoints):
            self.take_checkpoint(now)
        if spec.status not in ("Stopped",):
            self.deploy(spec.status, now, desired=spec.desired_status)
            if spec.checkpoints:
                self.checkpoint_success = self.next_sequence - 1
        if spec.checkpoint_failure is not None and self.incarnation is not None:
            self.fail_checkpoint(spec.checkpoint_failure, now)
        self.tables = _relations(spec.tables, True)
        self.views = _relations(spec.views, False)
        for relation in self.tables + self.views:
            for connector in relation.connectors:
                if connector.num_errors:
                    counts = connector.errors_a, connector.errors_transport
                    connector.errors_a = connector.errors_transport = 0
                    connector.add_errors("a", counts[0], "invalid record", now)
                    connector.add_errors("transport", counts[1], "connection reset", now)

    # ---- derived status ------------------------------------------------------------------------------------

    @property
    def provisioned(self) -> bool:
        return self.resources.value == "Provisioned"

    @property
    def deployment_status(self) -> str:
        if not self.provisioned:
            return str(self.resources.value)
        return self.runtime.value or "Unavailable"

    @property
    def deployment_status_since(self) -> float:
        if self.provisioned and self.runtime.since is not None:
            return self.runtime.since
        return float(self.resources.since or 0.0)

    @property
    def deployment_desired_status(self) -> str:
        if self.resources_desired.value == "Stopped":
            return "Stopped"
        for candidate in (self.runtime_desired.value, self.deployment_initial):
            if candidate in COMBINED_DESIRED:
                return str(candidate)
        return "Running"

    @property
    def deployment_desired_status_since(self) -> float:
        if self.resources_desired.value != "Stopped" and self.runtime_desired.since is not None:
            return self.runtime_desired.since
        return float(self.resources_desired.since or 0.0)

    def num_errors(self) -> int:
        return sum(c.num_errors for c in self.connectors())

    def connectors(self) -> Iterable[Connector]:
        for relation in self.tables + self.views:
            yield from relation.connectors

    # ---- transitions ---------------------------------------------------------------------------------------

    def touch(self) -> None:
        self.revision += 1
        self._cache.clear()
        self._on_change()

    def deploy(self, status: str, now: float, *, desired: str | None = None) -> None:
        """Set the actual status (combined vocabulary), starting a process when one becomes provisioned."""
        self.advance(now)
        if status in ("Stopped", "Stopping"):
            self.resources.set(status, now)
            if status == "Stopped":
                self.resources_desired.set("Stopped", now)
                self.runtime.set(None, now)
                self.runtime.since = None
                self.runtime_desired.set(None, now)
                self.runtime_desired.since = None
                self.deployment_initial = None
                self.deployment_id = None
                self.incarnation = None
            else:
                self.resources_desired.set("Stopped", now)
            self.touch()
            return
        self.resources_desired.set("Provisioned", now)
        if self.deployment_id is None:
            self.deployment_id = str(uuid.uuid4())
            self.deployment_initial = desired if desired in RUNTIME_DESIRED else "Running"
            if self.deployment_error is not None and not self.provisioned:
                self.deployment_error = None
        if status == "Provisioning":
            self.resources.set("Provisioning", now)
            self.touch()
            return
        if status not in RUNTIME_STATUSES:
            raise ValueError(f"unknown status {status!r}")
        if not self.provisioned or self.incarnation is None:
            self.resources.set("Provisioned", now)
            self.new_incarnation(now)
        self.runtime.set(status, now)
        wanted = desired or (status if status in RUNTIME_DESIRED and status != "Coordination" else None)
        self.runtime_desired.set(wanted or self.deployment_initial or "Running", now)
        if status in ("Running", "Paused", "Suspended", "Standby"):
            self.deployment_initial = self.deployment_initial or "Running"
        if self.storage_status == "Cleared":
            self.storage_status = "InUse"
        self.touch()

    def new_incarnation(self, now: float) -> str:
        """A new pipeline process: fresh incarnation uuid; checkpoint/sync status and connector stats reset."""
        self.incarnation = str(uuid.uuid4())
        self.incarnations.append(self.incarnation)
        self.start_time = now
        if self.initial_start_time is None:
            self.initial_start_time = now
        self.checkpoint_success = None
        self.checkpoint_failure = None
        self.checkpoint_activity = {"status": "idle"}
        self.sync_success = None
        self.sync_failure = None
        self.sync_periodic = None
        self.sync_pending.clear()
        self.metrics_at = now
        for connector in self.connectors():
            connector.reset()
        self.touch()
        return self.incarnation

    def stop(self, now: float, error: dict[str, Any] | None = None) -> None:
        self.deploy("Stopped", now)
        if error is not None:
            self.deployment_error = error
        self.touch()

    def advance(self, now: float) -> None:
        """Move connector counters forward to ``now`` (only a running pipeline ingests)."""
        elapsed = now - self.metrics_at
        self.metrics_at = now
        if elapsed <= 0 or not self.provisioned or self.runtime.value != "Running":
            return
        for connector in self.connectors():
            if connector.flowing():
                connector.records += connector.rate * elapsed
                connector.frontier_at = now

    def _set_program_error(self, status: str, message: str) -> None:
        self.program_error = {"sql_compilation": None, "rust_compilation": None, "system_error": None}
        if status == "SqlError":
            self.program_error["sql_compilation"] = {
                "exit_code": 1,
                "messages": [
                    {
                        "start_line_number": 1,
                        "start_column": 1,
                        "end_line_number": 1,
                        "end_column": 10,
                        "warning": False,
                        "error_type": "Error parsing SQL",
                        "message": message,
                        "snippet": None,
                    }
                ],
            }
        elif status == "RustError":
            self.program_error["rust_compilation"] = {"exit_code": 101, "stdout": "", "stderr": message}
        elif status == "SystemError":
            self.program_error["system_error"] = message

    def set_program_status(self, status: str, now: float, message: str | None = None) -> None:
        self.program.set(status, now)
        if status in ("SqlError", "RustError", "SystemError"):
            self._set_program_error(status, message or f"{status} in program")
        elif status in ("Pending", "CompilingSql"):
            self._set_program_error("", "")
            self.program_version += 1
            self.version += 1
        self.touch()

    def update_runtime(self, platform_version: str, now: float) -> None:
        """``POST .../update_runtime``: recompile for the platform's runtime (compiles at once here); only while
        stopped. A no-op when already current."""
        if self.deployment_status != "Stopped":
            raise ValueError("Pipeline can only be updated while stopped. Stop it first by invoking '/stop'.")
        if self.platform_version == platform_version:
            return
        self.platform_version = platform_version
        self.program_version += 1
        self.version += 1
        self.program.set("Success", now)
        self.touch()

    # ---- checkpoints ---------------------------------------------------------------------------------------

    def take_checkpoint(self, now: float) -> int:
        seq = self.next_sequence
        self.next_sequence += 1
        if self.incarnation is not None:
            self.checkpoint_success = seq
        self.stored_checkpoints.append(
            {
                "uuid": str(uuid.uuid4()),
                "identifier": None,
                "fingerprint": seq * 7919,
                "size": 1_000_000 + seq * 4096,
                "processed_records": seq * 1000,
                "steps": seq * 10,
            }
        )
        del self.stored_checkpoints[:-2]
        self.storage_status = "InUse"
        self.checkpoint_activity = {"status": "idle"}
        self.touch()
        return seq

    def fail_checkpoint(self, error: str, now: float) -> int:
        seq = self.next_sequence
        self.next_sequence += 1
        self.checkpoint_failure = {"sequence_number": seq, "error": error, "failed_at": rfc3339(now, nanos=True)}
        self.checkpoint_activity = {"status": "idle"}
        self.touch()
        return seq

    # ---- rendering -----------------------------------------------------------------------------------------

    def fragment(self, selector: str) -> bytes:
        cached = self._cache.get(selector)
        if cached is None:
            cached = self._cache[selector] = dumps(self.render(selector))
        return cached

    def render(self, selector: str) -> dict[str, Any]:
        run = self.provisioned
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "tags": [],
            "created_at": rfc3339(self.created_at),
            "version": self.version,
            "platform_version": self.platform_version,
        }
        if selector == "all":
            body["runtime_config"] = RUNTIME_CONFIG
            body["program_code"] = self.program_code()
            body["udf_rust"] = ""
            body["udf_toml"] = ""
            body["program_config"] = PROGRAM_CONFIG
        body["program_version"] = self.program_version
        body["program_status"] = self.program.value
        body["program_status_since"] = rfc3339(self.program.since or 0.0)
        if selector == "all":
            body["program_error"] = self.program_error
            body["program_info"] = self.program_info()
        body.update(
            {
                "deployment_error": self.deployment_error,
                "refresh_version": self.refresh_version,
                "storage_status": self.storage_status,
                "storage_status_details": {"checkpoints": self.stored_checkpoints}
                if self.storage_status == "InUse"
                else None,
                "deployment_id": self.deployment_id,
                "deployment_initial": self.deployment_initial,
                "deployment_status": self.deployment_status,
                "deployment_status_since": rfc3339(self.deployment_status_since),
                "deployment_desired_status": self.deployment_desired_status,
                "deployment_desired_status_since": rfc3339(self.deployment_desired_status_since),
                "deployment_resources_status": self.resources.value,
                "deployment_resources_status_details": None,
                "deployment_resources_status_since": rfc3339(self.resources.since or 0.0),
                "deployment_resources_desired_status": self.resources_desired.value,
                "deployment_resources_desired_status_since": rfc3339(self.resources_desired.since or 0.0),
                "deployment_runtime_status": self.runtime.value if run else None,
                "deployment_runtime_status_details": None,
                "deployment_runtime_status_since": rfc3339(self.runtime.since)
                if run and self.runtime.since is not None
                else None,
                "deployment_runtime_desired_status": self.runtime_desired.value if run else None,
                "deployment_runtime_desired_status_since": rfc3339(self.runtime_desired.since)
                if run and self.runtime_desired.since is not None
                else None,
                "bootstrap_policy": "allow",
                "silent_bootstrap": False,
                "concurrent_bootstrap": False,
            }
        )
        if selector == "status_with_connectors" and self.connectors_reported():
            body["connectors"] = {"num_errors": self.num_errors()}
        return body

    def connectors_reported(self) -> bool:
        """The runner only knows connector totals from a live pipeline process."""
        return (
            self.connectors_known
            and self.provisioned
            and self.runtime.value not in (None, "Unavailable", "Initializing", "Suspended")
        )

    def program_code(self) -> str:
        lines = []
        for relation in self.tables:
            quoted = f'"{relation.name}"' if relation.case_sensitive else relation.name
            lines.append(f"CREATE TABLE {quoted} (id BIGINT NOT NULL);")
        for relation in self.views:
            quoted = f'"{relation.name}"' if relation.case_sensitive else relation.name
            lines.append(f"CREATE MATERIALIZED VIEW {quoted} AS SELECT 1 AS id;")
        return "\n".join(lines)

    def program_info(self) -> dict[str, Any] | None:
        if self.program.value not in ("SqlCompiled", "CompilingRust", "Success"):
            return None
        return {
            "schema": {
                "inputs": [r.render_schema() for r in self.tables],
                "outputs": [r.render_schema() for r in self.views],
            },
            "udf_stubs": "",
            "input_connectors": {
                c.endpoint_name: {
                    "stream": c.relation,
                    "transport": {"name": "file_input", "config": {"path": f"/data/{c.endpoint_name}.json"}},
                }
                for r in self.tables
                for c in r.connectors
            },
            "output_connectors": {
                c.endpoint_name: {
                    "stream": c.relation,
                    "transport": {"name": "file_output", "config": {"path": f"/out/{c.endpoint_name}.json"}},
                }
                for r in self.views
                for c in r.connectors
            },
        }

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

    def render_stats(self, now: float) -> dict[str, Any]:
        inputs = [c.render(False) for r in self.tables for c in r.connectors]
        outputs = [c.render(False) for r in self.views for c in r.connectors]
        total_in = sum(i["metrics"]["total_records"] for i in inputs)
        total_bytes = sum(i["metrics"]["total_bytes"] for i in inputs)
        buffered = sum(i["metrics"]["buffered_records"] for i in inputs)
        buffered_bytes = sum(i["metrics"]["buffered_bytes"] for i in inputs)
        uptime_ms = int(max(0.0, now - (self.start_time or now)) * 1000)
        steps = total_in // 100
        return {
            "global_metrics": {
                "state": "Running" if self.runtime.value == "Running" else "Paused",
                "bootstrap_in_progress": self.runtime.value in ("Bootstrapping", "ConcurrentBootstrapping"),
                "transaction_status": "NoTransaction",
                "transaction_id": 0,
                "transaction_initiators": {
                    "transaction_id": None,
                    "initiated_by_api": None,
                    "initiated_by_connectors": {},
                },
                "concurrent_bootstrap_phase": "Inactive",
                "rss_bytes": 256 * 1024 * 1024,
                "memory_pressure": "low",
                "memory_pressure_epoch": 0,
                "cpu_msecs": uptime_ms // 2,
                "uptime_msecs": uptime_ms,
                "start_time": int(self.start_time or now),
                "incarnation_uuid": self.incarnation,
                "initial_start_time": int(self.initial_start_time or now),
                "storage_bytes": sum(c["size"] for c in self.stored_checkpoints),
                "storage_mb_secs": uptime_ms // 1000,
                "runtime_elapsed_msecs": uptime_ms,
                "buffered_input_records": buffered,
                "buffered_input_bytes": buffered_bytes,
                "total_input_records": total_in,
                "total_input_bytes": total_bytes,
                "total_processed_records": total_in,
                "total_processed_bytes": total_bytes,
                "total_completed_records": total_in,
                "output_stall_msecs": 0,
                "total_initiated_steps": steps,
                "total_completed_steps": steps,
                "pipeline_complete": False,
            },
            "suspend_error": None,
            "checkpoint_activity": self.checkpoint_activity,
            "permanent_checkpoint_errors": self.permanent_checkpoint_errors,
            "inputs": inputs,
            "outputs": outputs,
        }


class World:
    """All pipelines of one simulated instance plus instance-wide settings; list rendering is cached."""

    def __init__(self, scenario: Scenario, clock: Clock) -> None:
        self.clock = clock
        self.edition = scenario.edition
        self.sync_api = scenario.sync_api
        self.api_key = scenario.api_key
        self.platform_version = scenario.platform_version
        self.server = scenario.server
        now = clock.now()
        self.started_at = now
        self.cluster: dict[str, dict[str, Any]] = {
            service: {"healthy": healthy, "since": now, "message": _health_message(healthy)}
            for service, healthy in scenario.cluster.model_dump().items()
        }
        self.pipelines: dict[str, Pipeline] = {}
        self._list_cache: dict[str, tuple[int, bytes]] = {}
        self.revision = 0
        for spec in scenario.pipelines:
            self.add(spec)

    def now(self) -> float:
        return self.clock.now()

    def add(self, spec: PipelineSpec) -> Pipeline:
        if spec.name in self.pipelines:
            raise ValueError(f"pipeline {spec.name!r} already exists")
        pipeline = Pipeline(spec, self.now(), self.platform_version, self.changed)
        self.pipelines[spec.name] = pipeline
        self.changed()
        return pipeline

    def remove(self, name: str) -> None:
        del self.pipelines[name]
        self.changed()

    def get(self, name: str) -> Pipeline:
        try:
            return self.pipelines[name]
        except KeyError:
            raise KeyError(f"unknown pipeline {name!r}") from None

    def changed(self) -> None:
        self.revision += 1

    def list_body(self, selector: str) -> bytes:
        """The JSON list; rebuilt from cached per-pipeline fragments only when something changed."""
        stamp = self.revision
        cached = self._list_cache.get(selector)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        body = b"[" + b",".join(p.fragment(selector) for p in self.pipelines.values()) + b"]"
        self._list_cache[selector] = (stamp, body)
        return body

    def config_body(self) -> dict[str, Any]:
        return config_body(self.edition, self.platform_version, self.server, self.started_at, self.now())

    def health_body(self) -> dict[str, Any]:
        now = rfc3339(self.now())
        body: dict[str, Any] = {"all_healthy": all(s["healthy"] for s in self.cluster.values())}
        for service, state in self.cluster.items():
            body[service] = {
                "healthy": state["healthy"],
                "message": state["message"],
                "unchanged_since": rfc3339(state["since"]),
                "checked_at": now,
            }
        return body


DAY = 86400.0


def config_body(
    edition: str, platform_version: str, server: ServerSpec, started_at: float, now: float
) -> dict[str, Any]:
    """``GET /v0/config`` as the real server answers it (schema ``Configuration``).

    ``version`` is ``x.y.z`` (the platform version without a leading ``v``); the open-source edition reports no
    licence (``license_validity`` null), the enterprise edition ``Exists`` or ``DoesNotExistOrNotConfirmed``.
    """
    version = platform_version.removeprefix("v")
    revision = hashlib.sha1(version.encode()).hexdigest()
    enterprise = edition == "enterprise"
    validity: dict[str, Any] | None = None
    if enterprise and server.license in ("valid", "trial"):
        valid_until = started_at + server.license_expires_in_days * DAY
        validity = {
            "Exists": {
                "current": rfc3339(now),
                "valid_until": rfc3339(valid_until),
                "remind_starting_at": rfc3339(valid_until - 30 * DAY),
                "is_trial": server.license == "trial",
                "description_html": "<p>Extend your Feldera Enterprise license.</p>",
                "extension_url": "https://www.feldera.com/contact",
                "remind_schedule": {"Every": {"seconds": 86400}},
            }
        }
    elif enterprise:
        reason = "invalid license key" if server.license == "invalid" else "unable to reach the license server"
        validity = {"DoesNotExistOrNotConfirmed": reason}
    update = None
    if server.latest_version is not None:
        update = {
            "latest_version": server.latest_version,
            "is_latest_version": server.latest_version.removeprefix("v") == version,
            "instructions_url": "https://docs.feldera.com/get-started/upgrade",
            "remind_schedule": "Once",
        }
    return {
        "posthog": "",
        "conceptualhq": "",
        "product_fruits": "",
        "edition": "Enterprise" if enterprise else "Open source",
        "version": version,
        "revision": revision,
        "runtime_revision": revision,
        "changelog_url": f"https://github.com/feldera/feldera/releases/tag/v{version}",
        "build_info": {
            "build_timestamp": "2026-01-01T00:00:00Z",
            "build_cpu": "x86_64",
            "build_os": "linux",
            "cargo_dependencies": "",
            "cargo_features": "",
            "cargo_debug": "false",
            "cargo_opt_level": "3",
            "cargo_target_triple": "x86_64-unknown-linux-gnu",
            "rustc_version": "1.87.0",
        },
        "build_source": "ci",
        "license_validity": validity,
        "update_info": update,
        "unstable_features": None,
    }


def _health_message(healthy: bool) -> str:
    return "healthy" if healthy else "health check failed: connection refused"
