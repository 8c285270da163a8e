"""The simulated state of one Feldera instance: each pipeline's deployment state machine, and the instance.

A :class:`Pipeline` is assembled from parts along the API's seams: checkpoints and sync
(:mod:`exporter.simulator.checkpoints`), connectors and reset tokens (:mod:`exporter.simulator.connectors`), and
the JSON documents the real server answers with (:mod:`exporter.simulator.documents`). Everything here is
synchronous and clock-driven: the HTTP layer (:mod:`exporter.simulator.server`) reads it, the control API mutates
it. Each mutation bumps the pipeline's revision, which invalidates its cached JSON
fragments (the pipeline list is served from those, so 10,000 pipelines cost one join per change).
"""

from __future__ import annotations

import hashlib
import heapq
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exporter.models import COMBINED_DESIRED_STATUSES as COMBINED_DESIRED
from exporter.models import RUNTIME_DESIRED_STATUSES as RUNTIME_DESIRED
from exporter.models import RUNTIME_STATUSES
from exporter.simulator.checkpoints import CHECKPOINTING_RUNTIME, PipelineCheckpoints
from exporter.simulator.clock import Clock, rfc3339
from exporter.simulator.cluster import ClusterMonitor
from exporter.simulator.connectors import PipelineConnectors, Relation, relations
from exporter.simulator.documents import PipelineDocuments
from exporter.simulator.platform import (
    EDITION_NAMES,
    Edition,
    ResetApi,
    enterprise,
    pipeline_platform_version,
    release,
    reset_api_of,
)
from exporter.simulator.resources import PipelineResources
from exporter.simulator.runtime import normalized_runtime_config, refuse_enterprise_features
from exporter.simulator.scenario import PipelineSpec, Scenario, ServerSpec

NAMESPACE = uuid.UUID("5b0f6c1e-3c9a-4e0a-9a55-6f2d1c0de000")
SELECTORS = ("all", "status", "status_with_connectors")


@dataclass
class Since:
    value: str | None
    since: float | None

    def set(self, value: str | None, now: float) -> None:
        if value != self.value:
            self.value = value
            self.since = now


class Pipeline(PipelineCheckpoints, PipelineConnectors, PipelineResources, PipelineDocuments):
    """One pipeline: what pipeline-manager stores plus what its pipeline process reports.

    This class is the deployment state machine (resources and runtime status, incarnations, program status); its
    parts along the API's seams are :class:`~exporter.simulator.checkpoints.PipelineCheckpoints`,
    :class:`~exporter.simulator.connectors.PipelineConnectors`, what its process uses
    (:class:`~exporter.simulator.resources.PipelineResources`) and the JSON documents the server answers with,
    :class:`~exporter.simulator.documents.PipelineDocuments`.
    """

    def __init__(
        self,
        spec: PipelineSpec,
        now: float,
        platform_version: str,
        on_change: Callable[[], None] = lambda: None,
        schedule: Callable[[Pipeline], None] = lambda pipeline: None,
        enterprise: Callable[[], bool] = lambda: True,
    ) -> None:
        self._on_change = on_change
        self._schedule = schedule
        self.enterprise = enterprise
        """Whether the build is an enterprise one (checkpoints and suspend are enterprise features)."""
        self.scheduled_checkpoint: float | None = None
        """The due time of this pipeline's entry in the world's schedule of automatic checkpoints."""
        self.name = spec.name
        self.id = spec.id or str(uuid.uuid5(NAMESPACE, spec.name))
        self.description = spec.description
        self.created_at = spec.created_at if spec.created_at is not None else now
        self.platform_version = spec.platform_version or platform_version
        self.runtime_version = spec.runtime_version
        self.runtime_config = normalized_runtime_config(spec.runtime_config)
        refuse_enterprise_features(self.runtime_config, enterprise())
        self._init_resources(
            None if spec.rss_mb is None else int(spec.rss_mb * 1_000_000),
            None if spec.storage_mb is None else int(spec.storage_mb * 1_000_000),
        )
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
        self.incarnation: str | None = None
        self._init_checkpoints(spec.sync, spec.automatic_checkpoint_failure, now)
        self.connectors_known = spec.connectors_known
        self.incarnations: list[str] = []
        self.start_time: float | None = None
        self.initial_start_time: float | None = None
        self.reset_tokens: dict[str, tuple[str, str]] = {}
        self.interaction_fault: str | None = None
        self.runtime_reason: tuple[str | None, str] | None = None
        """A runtime status reason set by the control API, and the runtime status it was set in."""
        self.metrics_at = now
        if spec.checkpoints:
            self.store_checkpoint(spec.checkpoints)
        if spec.status not in ("Stopped",):
            self.deploy(spec.status, now, desired=spec.desired_status)
        if spec.checkpoint_failure is not None and self.incarnation is not None:
            self.fail_checkpoint(spec.checkpoint_failure, now)
        self.tables = relations(spec.tables, True)
        self.views = relations(spec.views, False)
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

    # ---- transitions ---------------------------------------------------------------------------------------

    def touch(self) -> None:
        self.revision += 1
        self._cache.clear()
        self._on_change()
        self._schedule(self)

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
        if status in CHECKPOINTING_RUNTIME and self.runtime.value not in CHECKPOINTING_RUNTIME:
            self.checkpointing_resumed(now)
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
        self._new_process_checkpoints(now)
        self._new_process_resources()
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

    def set_runtime_config(self, overrides: dict[str, Any]) -> None:
        """Update ``runtime_config`` (keys over the current ones) as ``PATCH /v0/pipelines/{p}`` does: only while
        stopped, ``fault_tolerance``, ``hosts``, ``workers`` and ``resources.storage_mb_max`` only with cleared
        storage; a change bumps ``version``."""
        if self.deployment_status != "Stopped" or self.resources_desired.value != "Stopped":
            raise ValueError("UpdateRestrictedToStopped: the pipeline can only be updated while stopped")
        merged = {**self.runtime_config, **overrides}
        new = normalized_runtime_config(merged)
        refuse_enterprise_features(new, self.enterprise())
        if new == self.runtime_config:
            return
        if self.storage_status != "Cleared":
            locked = [k for k in ("fault_tolerance", "hosts", "workers") if new.get(k) != self.runtime_config.get(k)]
            if _storage_mb_max(new) != _storage_mb_max(self.runtime_config):
                locked.append("resources.storage_mb_max")
            if locked:
                raise ValueError(f"EditRestrictedToClearedStorage: {', '.join(locked)} need cleared storage")
        self.runtime_config = new
        self.version += 1
        self.touch()

    def clear_storage(self) -> None:
        """``POST /v0/pipelines/{p}/clear``: only while stopped; the stored checkpoints are gone."""
        if self.deployment_status != "Stopped":
            raise ValueError("StorageStatusImmutableUnlessStopped: storage can only be cleared while stopped")
        self.stored_checkpoints.clear()
        self.storage_status = "Cleared"
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


def _storage_mb_max(config: dict[str, Any]) -> object:
    return (config.get("resources") or {}).get("storage_mb_max")


class World:
    """All pipelines of one simulated instance plus instance-wide settings; list rendering is cached.

    Time-driven changes (automatic checkpoints, the cluster monitor) happen lazily: :meth:`tick` runs whatever was
    due by now before any request or control action reads or changes the state (a heap of due times, so a fleet
    of 10,000 pipelines costs nothing between checkpoints).
    """

    def __init__(self, scenario: Scenario, clock: Clock) -> None:
        self.clock = clock
        self.edition: Edition = scenario.edition
        self.sync_api = scenario.sync_api
        self.api_key = scenario.api_key
        self.release = scenario.release
        self.suffix = scenario.platform_version_suffix
        self.reset_api_override: ResetApi | None = scenario.reset_api
        self.server = scenario.server
        now = clock.now()
        self.started_at = now
        self.cluster = ClusterMonitor(scenario.cluster, now)
        self.pipelines: dict[str, Pipeline] = {}
        self._list_cache: dict[str, tuple[int, bytes]] = {}
        self._due: list[tuple[float, int, str]] = []
        self._due_counter = 0
        self.database_writes: Counter[str] = Counter()
        """Writes to the manager's database caused by API requests, by endpoint (see :meth:`count_write`)."""
        self.revision = 0
        for spec in scenario.pipelines:
            self.add(spec)

    def now(self) -> float:
        return self.clock.now()

    @property
    def platform_version(self) -> str:
        """The ``platform_version`` of pipelines this build compiles."""
        return pipeline_platform_version(self.edition, self.release, self.suffix)

    @property
    def reset_api(self) -> ResetApi:
        return self.reset_api_override or reset_api_of(self.edition, self.release)

    @property
    def enterprise(self) -> bool:
        return enterprise(self.edition)

    def add(self, spec: PipelineSpec) -> Pipeline:
        if spec.name in self.pipelines:
            raise ValueError(f"pipeline {spec.name!r} already exists")
        self.tick()
        pipeline = Pipeline(
            spec, self.now(), self.platform_version, self.changed, self.schedule, lambda: self.enterprise
        )
        self.pipelines[spec.name] = pipeline
        self.schedule(pipeline)
        self.changed()
        return pipeline

    def remove(self, name: str) -> None:
        del self.pipelines[name]
        self.changed()

    def get(self, name: str) -> Pipeline:
        self.tick()
        try:
            return self.pipelines[name]
        except KeyError:
            raise KeyError(f"unknown pipeline {name!r}") from None

    def changed(self) -> None:
        self.revision += 1

    def schedule(self, pipeline: Pipeline) -> None:
        """Keep ``pipeline``'s next automatic checkpoint in the heap (called on every change of the pipeline)."""
        due = pipeline.checkpoint_due()
        if due == pipeline.scheduled_checkpoint:
            return
        pipeline.scheduled_checkpoint = due
        if due is not None:
            self._due_counter += 1
            heapq.heappush(self._due, (due, self._due_counter, pipeline.name))

    def tick(self) -> None:
        """Run every automatic checkpoint due by now (entries of changed or deleted pipelines are skipped)."""
        now = self.now()
        while self._due and self._due[0][0] <= now:
            due, _, name = heapq.heappop(self._due)
            pipeline = self.pipelines.get(name)
            if pipeline is None or pipeline.scheduled_checkpoint != due:
                continue
            pipeline.scheduled_checkpoint = None
            pipeline.run_automatic_checkpoints(now)
            self.schedule(pipeline)

    def count_write(self, endpoint: str) -> None:
        """A request that writes to the manager's database: ``GET .../checkpoint_status`` increments the
        pipeline's ``notify_counter`` (``crates/pipeline-manager/src/api/endpoints/pipeline_interaction.rs``,
        ``get_checkpoint_status``; ``db/operations/pipeline.rs``, ``increment_notify_counter``: an ``UPDATE``
        whose ``NOTIFY`` also wakes the pipeline's runner automaton), whatever the pipeline answered."""
        self.database_writes[endpoint] += 1

    def list_body(self, selector: str) -> bytes:
        """The JSON list; rebuilt from cached per-pipeline fragments only when something changed."""
        self.tick()
        stamp = self.revision
        cached = self._list_cache.get(selector)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        body = b"[" + b",".join(p.fragment(selector) for p in self.pipelines.values()) + b"]"
        self._list_cache[selector] = (stamp, body)
        return body

    def config_body(self) -> dict[str, Any]:
        return config_body(self.edition, self.release, self.suffix, self.server, self.started_at, self.now())


DAY = 86400.0


def config_body(
    edition: Edition, version: str, suffix: str, server: ServerSpec, started_at: float, now: float
) -> dict[str, Any]:
    """``GET /v0/config`` as the real server answers it (schema ``Configuration``;
    ``crates/pipeline-manager/src/api/endpoints/config.rs``, ``Configuration::gather``).

    ``version`` is the release ``x.y.z`` alone on every edition (pipelines report ``x.y.z+enterprise...``);
    ``revision`` is the build's version suffix, else the git commit. The open-source edition reports no licence
    (``license_validity`` null), the enterprise editions ``Exists`` or ``DoesNotExistOrNotConfirmed``.
    """
    version = release(version)
    commit = hashlib.sha1(version.encode()).hexdigest()
    revision = suffix or commit
    is_enterprise = enterprise(edition)
    validity: dict[str, Any] | None = None
    if is_enterprise and server.license in ("valid", "trial"):
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
    elif is_enterprise:
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
        "edition": EDITION_NAMES[edition],
        "version": version,
        "revision": revision,
        "runtime_revision": commit,
        "changelog_url": "https://docs.feldera.com/changelog/"
        if is_enterprise
        else f"https://github.com/feldera/feldera/releases/tag/v{version}",
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
