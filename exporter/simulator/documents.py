"""The JSON documents the real server answers with for one pipeline: its entry in ``GET /v0/pipelines`` (per
``selector``, cached until the pipeline changes), ``GET /v0/pipelines/{p}`` and ``GET /v0/pipelines/{p}/stats``.

``selector=status`` and ``status_with_connectors`` leave out ``runtime_config``, the program code and
``program_info`` but keep ``program_config`` (``crates/pipeline-manager/src/api/endpoints/pipeline_management.rs``,
``new_status``), so ``program_config.runtime_version`` (a pinned runtime) comes with every selector.

:class:`PipelineDocuments` is that part of :class:`~exporter.simulator.model.Pipeline`; it only reads the state.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from exporter.simulator.clock import rfc3339
from exporter.simulator.errors import dumps

if TYPE_CHECKING:
    from exporter.simulator.connectors import Relation
    from exporter.simulator.model import Pipeline

PROGRAM_CONFIG: dict[str, Any] = {
    "profile": "optimized",
    "cache": True,
    "runtime_version": None,
    "use_platform_compiler": False,
}


class PipelineDocuments:
    """Rendering part of a pipeline (methods take the whole :class:`~exporter.simulator.model.Pipeline`)."""

    def fragment(self: Pipeline, selector: str) -> bytes:
        cached = self._cache.get(selector)
        if cached is None:
            cached = self._cache[selector] = dumps(self.render(selector))
        return cached

    def render(self: Pipeline, selector: str) -> dict[str, Any]:
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
            body["runtime_config"] = self.runtime_config
            body["program_code"] = self.program_code()
            body["udf_rust"] = ""
            body["udf_toml"] = ""
        body["program_config"] = {**PROGRAM_CONFIG, "runtime_version": self.runtime_version}
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
                "deployment_runtime_status_details": self.runtime_status_details() if run else None,
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

    def runtime_status_details(self: Pipeline) -> dict[str, Any]:
        """``deployment_runtime_status_details`` of a provisioned pipeline, as the runner stores it
        (``crates/pipeline-manager/src/runner/pipeline_automata.rs``) from the pipeline's ``/status``
        (``crates/adapters/src/server.rs``, ``get_status``): a live process gives its connectors' error total, the
        runner a reason while it provisions (``Initializing``) or cannot get a status (``Unavailable``), a suspended
        pipeline an empty reason; a reason set by the control API holds until the runtime status changes."""
        status = self.runtime.value
        if self.runtime_reason is not None and self.runtime_reason[0] == status:
            return {"reason": self.runtime_reason[1]}
        if status in ("Running", "Paused", "Bootstrapping", "ConcurrentBootstrapping", "Synchronizing"):
            return {"connector_stats": {"num_errors": self.num_errors()}}
        if status == "Initializing":
            return {"reason": "initializing set by the runner"}
        if status == "Unavailable":
            return {"reason": f"Pipeline status endpoint could not be reached: {unreachable(self.id)}"}
        if status == "Suspended":
            return {"reason": ""}
        return {}

    def connectors_reported(self: Pipeline) -> bool:
        """The runner only knows connector totals from a live pipeline process."""
        return (
            self.connectors_known
            and self.provisioned
            and self.runtime.value not in (None, "Unavailable", "Initializing", "Suspended")
        )

    def program_code(self: Pipeline) -> str:
        lines = []
        for relation in self.tables:
            quoted = f'"{relation.name}"' if relation.case_sensitive else relation.name
            lines.append(f"CREATE TABLE {quoted} (id BIGINT NOT NULL);")
        for relation in self.views:
            quoted = f'"{relation.name}"' if relation.case_sensitive else relation.name
            lines.append(f"CREATE MATERIALIZED VIEW {quoted} AS SELECT 1 AS id;")
        return "\n".join(lines)

    def program_info(self: Pipeline) -> dict[str, Any] | None:
        if self.program.value not in ("SqlCompiled", "CompilingRust", "Success"):
            return None
        return {
            "schema": {
                "inputs": [r.render_schema() for r in self.tables],
                "outputs": [r.render_schema() for r in self.views],
            },
            "udf_stubs": "",
            "input_connectors": _connector_configs(self.tables, "file_input", "/data"),
            "output_connectors": _connector_configs(self.views, "file_output", "/out"),
        }

    def render_stats(
        self: Pipeline, now: float, with_errors: bool = False, *, output_paused: bool = False
    ) -> dict[str, Any]:
        """``GET .../stats``; ``with_errors``: ``?include_connector_errors=true`` (every connector's error lists);
        ``output_paused``: the build reports ``paused`` of output connectors."""
        inputs = [c.render(with_errors) for r in self.tables for c in r.connectors]
        outputs = [c.render(with_errors, output_paused=output_paused) for r in self.views for c in r.connectors]
        total_in = sum(i["metrics"]["total_records"] for i in inputs)
        total_bytes = sum(i["metrics"]["total_bytes"] for i in inputs)
        buffered = sum(i["metrics"]["buffered_records"] for i in inputs)
        buffered_bytes = sum(i["metrics"]["buffered_bytes"] for i in inputs)
        uptime_ms = int(max(0.0, now - (self.start_time or now)) * 1000)
        steps = total_in // 100
        resources = self.resource_metrics(now)
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
                "rss_bytes": resources["rss_bytes"],
                "memory_pressure": resources["memory_pressure"],
                "memory_pressure_epoch": resources["memory_pressure_epoch"],
                "cpu_msecs": uptime_ms // 2,
                "uptime_msecs": uptime_ms,
                "start_time": int(self.start_time or now),
                "incarnation_uuid": self.incarnation,
                "initial_start_time": int(self.initial_start_time or now),
                "storage_bytes": resources["storage_bytes"],
                "storage_mb_secs": uptime_ms // 1000,
                "runtime_elapsed_msecs": uptime_ms,
                "buffered_input_records": buffered,
                "buffered_input_bytes": buffered_bytes,
                "total_input_records": total_in,
                "total_input_bytes": total_bytes,
                "total_processed_records": total_in,
                "total_processed_bytes": total_bytes,
                "total_completed_records": total_in,
                "output_stall_msecs": resources["output_stall_msecs"],
                "total_initiated_steps": steps,
                "total_completed_steps": steps,
                "pipeline_complete": False,
            },
            "suspend_error": self.suspend_error(),
            "checkpoint_activity": self.checkpoint_activity,
            "permanent_checkpoint_errors": self.permanent_errors() or None,
            "inputs": inputs,
            "outputs": outputs,
        }

    def suspend_error(self: Pipeline) -> dict[str, Any] | None:
        """``suspend_error`` of ``/stats``: why a suspend (or checkpoint) cannot happen now, from
        ``Controller::can_suspend`` (``crates/adapters/src/controller.rs``): the permanent reasons if any, else the
        temporary ones (replaying, bootstrapping, an input connector that is a barrier), else ``null``."""
        permanent = self.permanent_errors()
        if permanent:
            return {"Permanent": permanent}
        temporary: list[Any] = []
        if self.runtime.value == "Replaying":
            temporary.append("Replaying")
        if self.runtime.value in ("Bootstrapping", "ConcurrentBootstrapping"):
            temporary.append("Bootstrapping")
        temporary.extend(
            {"InputEndpointBarrier": c.endpoint_name} for r in self.tables for c in r.connectors if c.barrier
        )
        return {"Temporary": temporary} if temporary else None


def unreachable(pipeline_id: str) -> str:
    """What the runner's HTTP client says when a pipeline's ``/status`` does not answer."""
    host = f"pipeline-{pipeline_id}"
    return f"error sending request for url (http://{host}.{host}:8080/status?storage=true): connection refused"


def _connector_configs(relations: Iterable[Relation], transport: str, directory: str) -> dict[str, Any]:
    return {
        c.endpoint_name: {
            "stream": c.relation,
            "transport": {"name": transport, "config": {"path": f"{directory}/{c.endpoint_name}.json"}},
        }
        for r in relations
        for c in r.connectors
    }
